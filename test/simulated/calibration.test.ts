import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { fitMoePairExponents, fitReferenceCurves, fitSizeExponents, parseMlEnergyCsv, type FittedCurve } from '../../collectors/simulated/calibration-fit.js';
import { REFERENCE_CURVES, SIZE_EXPONENTS } from '../../collectors/simulated/calibration-data.js';
import { curvesFor, GPU_TYPES } from '../../collectors/simulated/calibration.js';
import { parsePowerTrace } from '../../collectors/trace-file.js';

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const { rows, errors: csvErrors } = parseMlEnergyCsv(fixture('mlenergy/mlenergy-v3-lm-arena-chat.csv'));
const refit = fitReferenceCurves(rows);
const key = (c: FittedCurve): string => `${c.gpu} ${c.model} x${c.numGpus}`;
const relClose = (actual: number, expected: number, tol: number): boolean => Math.abs(actual - expected) <= tol * Math.max(Math.abs(expected), 1e-12);

test('the ML.ENERGY copy parses without a bad row', () => {
  assert.deepEqual(csvErrors, []);
  assert.equal(rows.length, 300);
});

test('every embedded reference curve is what the data re-fits to (6 significant digits)', () => {
  assert.deepEqual(REFERENCE_CURVES.map(key), refit.map(key));
  for (const fitted of refit) {
    const embedded = REFERENCE_CURVES.find((c) => key(c) === key(fitted)) as FittedCurve;
    for (const field of ['stepT0S', 'stepT1S', 'powerBaseW', 'powerPerLnBatchW', 'maxRelErrJPerToken'] as const) {
      assert.ok(relClose(embedded[field], fitted[field], 1e-5), `${key(fitted)} ${field}: embedded ${embedded[field]}, data gives ${fitted[field]}`);
    }
    for (const field of ['totalParamsB', 'activeParamsB', 'bytesPerParam', 'batchMin', 'batchMax', 'rows', 'arch'] as const) {
      assert.equal(embedded[field], fitted[field], `${key(fitted)} ${field}`);
    }
  }
});

test('embedded scaling exponents are what the data gives', () => {
  for (const gpu of ['H100', 'B200'] as const) {
    const dense = fitSizeExponents(refit, gpu);
    const moe = fitMoePairExponents(refit, gpu);
    assert.ok(relClose(SIZE_EXPONENTS[gpu].dense.stepT0, dense.stepT0, 1e-5) && relClose(SIZE_EXPONENTS[gpu].dense.stepT1, dense.stepT1, 1e-5), `${gpu} dense`);
    assert.ok(relClose(SIZE_EXPONENTS[gpu].moe.stepT0, moe.stepT0, 1e-5) && relClose(SIZE_EXPONENTS[gpu].moe.stepT1, moe.stepT1, 1e-5), `${gpu} moe`);
  }
});

test('Llama-3.1-8B on one H100 reproduces the published anchors (power within 4%, J/token within 5%)', () => {
  const curves = curvesFor('H100', { paramsB: 8, numGpus: 1, model: 'meta-llama/Llama-3.1-8B-Instruct' });
  assert.equal(curves.basis, 'reference');
  assert.equal(curves.reference.model, 'meta-llama/Llama-3.1-8B-Instruct');
  // ML.ENERGY v3, lm-arena-chat, max_num_seqs 8 / 64 / 512 (published figures).
  for (const [batch, watts, jPerToken] of [[8, 486, 0.455], [64, 610, 0.119], [512, 688, 0.07]] as const) {
    const p = curves.powerPerGpuW(batch);
    const j = curves.joulesPerToken(batch);
    assert.ok(relClose(p, watts, 0.04), `batch ${batch}: ${p.toFixed(1)} W vs ${watts} W`);
    assert.ok(relClose(j, jPerToken, 0.05), `batch ${batch}: ${j.toFixed(4)} J/token vs ${jPerToken}`);
  }
});

test('every H100 reference reproduces its own rows within its stated fit error', () => {
  for (const ref of REFERENCE_CURVES.filter((c) => c.gpu === 'H100')) {
    const curves = curvesFor('H100', { paramsB: ref.totalParamsB, activeParamsB: ref.activeParamsB, precision: ref.bytesPerParam === 1 ? 'fp8' : 'bf16', numGpus: ref.numGpus, model: ref.model });
    assert.equal(curves.reference, ref);
    for (const r of rows.filter((x) => x.gpu === 'H100' && x.modelId === ref.model && x.numGpus === ref.numGpus)) {
      const err = Math.abs(curves.joulesPerToken(r.avgBatchSize) / r.energyPerTokenJ - 1);
      // The power-limit clamp can only pull an over-limit fit towards the data (limit >= measured).
      assert.ok(err <= ref.maxRelErrJPerToken + 1e-3, `${key(ref)} batch ${r.avgBatchSize}: error ${err.toFixed(3)} > ${ref.maxRelErrJPerToken}`);
    }
  }
});

test('leave-one-out: a configuration the data lacks is estimated from its neighbours (printed; dense H100 within 50%)', () => {
  const spread = (gpu: 'H100' | 'B200', arch: 'dense' | 'moe'): { median: number; max: number } => {
    const errs: number[] = [];
    for (const ref of REFERENCE_CURVES.filter((c) => c.gpu === gpu && c.arch === arch)) {
      const others = REFERENCE_CURVES.filter((c) => c !== ref);
      const curves = curvesFor(gpu, { paramsB: ref.totalParamsB, activeParamsB: ref.activeParamsB, precision: ref.bytesPerParam === 1 ? 'fp8' : 'bf16', numGpus: ref.numGpus }, others);
      assert.notEqual(curves.reference, ref);
      for (const r of rows.filter((x) => x.gpu === gpu && x.modelId === ref.model && x.numGpus === ref.numGpus)) {
        errs.push(Math.abs(curves.joulesPerToken(r.avgBatchSize) / r.energyPerTokenJ - 1));
      }
    }
    errs.sort((a, b) => a - b);
    return { median: errs[errs.length >> 1] as number, max: errs[errs.length - 1] as number };
  };
  for (const gpu of ['H100', 'B200'] as const) {
    for (const arch of ['dense', 'moe'] as const) {
      const s = spread(gpu, arch);
      console.log(`  leave-one-out J/token error, ${gpu} ${arch}: median ${(s.median * 100).toFixed(0)}%, worst ${(s.max * 100).toFixed(0)}%`);
    }
  }
  const h100dense = spread('H100', 'dense');
  assert.ok(h100dense.median < 0.1 && h100dense.max < 0.5, JSON.stringify(h100dense));
  assert.ok(spread('H100', 'moe').median < 0.3);
});

test('idle power and power limit of H100 and H200 are the ones in the real nvidia-smi captures', () => {
  for (const [type, file] of [['H100', 'nvidia-smi-h100-80gb-hbm3-590.48.01.csv'], ['H200', 'nvidia-smi-h200-590.48.01.csv']] as const) {
    const trace = parsePowerTrace(fixture(`traces/${file}`));
    const idle = trace.samples.toArray()[0];
    assert.ok(idle);
    assert.equal(GPU_TYPES[type].idlePowerW, idle.powerW, `${type} idle`);
    assert.equal(GPU_TYPES[type].powerLimitW, trace.gpus[0]?.powerLimitW, `${type} limit`);
    assert.ok(GPU_TYPES[type].name.startsWith(trace.gpus[0]?.name ?? '?'), `${type} name`);
  }
  // B200 has no capture: its idle is the H100 idle/limit ratio applied to 1000 W, and says so.
  assert.ok(relClose(GPU_TYPES.B200.idlePowerW, (GPU_TYPES.H100.idlePowerW / GPU_TYPES.H100.powerLimitW) * GPU_TYPES.B200.powerLimitW, 1e-3));
  assert.match(GPU_TYPES.B200.idlePowerSource, /assumption/);
});

test('curves are physical for any model shape: throughput rises with batch, power stays between idle and the limit', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('H100' as const, 'H200' as const, 'B200' as const),
      fc.double({ min: 0.5, max: 700, noNaN: true }),
      fc.double({ min: 0.05, max: 1, noNaN: true }),
      fc.boolean(),
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 2000 }),
      (gpu, paramsB, activeShare, fp8, numGpus, batch) => {
        const shape = { paramsB, activeParamsB: activeShare === 1 ? paramsB : paramsB * activeShare, precision: fp8 ? ('fp8' as const) : ('bf16' as const), numGpus };
        const c = curvesFor(gpu, shape);
        const spec = GPU_TYPES[gpu];
        assert.ok(c.tokensPerS(batch + 1) > c.tokensPerS(batch));
        const p = c.powerPerGpuW(batch);
        assert.ok(p >= spec.idlePowerW && p <= spec.powerLimitW);
        assert.equal(c.powerPerGpuW(0), spec.idlePowerW);
        const j = c.joulesPerToken(batch);
        assert.ok(Number.isFinite(j) && j > 0);
        assert.ok(c.prefillTokensPerS > 0 && Number.isFinite(c.prefillTokensPerS));
      },
    ),
    { numRuns: 300 },
  );
});

test('the tier ladder of the demo is ordered: small < medium < large J/token at the same batch', () => {
  const small = curvesFor('H100', { paramsB: 8, numGpus: 1 });
  const medium = curvesFor('H100', { paramsB: 70, precision: 'fp8', numGpus: 2 });
  const large = curvesFor('H100', { paramsB: 235, activeParamsB: 22, precision: 'fp8', numGpus: 4 });
  assert.equal(medium.basis, 'scaled');
  assert.equal(large.basis, 'reference');
  for (const batch of [1, 8, 64, 128]) {
    assert.ok(small.joulesPerToken(batch) < medium.joulesPerToken(batch) && medium.joulesPerToken(batch) < large.joulesPerToken(batch), `batch ${batch}`);
  }
});

test('bad model shapes are refused with the reason', () => {
  assert.throws(() => curvesFor('H100', { paramsB: 8, activeParamsB: 9, numGpus: 1 }), /activeParamsB <= paramsB/);
  assert.throws(() => curvesFor('H100', { paramsB: 8, numGpus: 0 }), /numGpus/);
  assert.throws(() => curvesFor('A100' as 'H100', { paramsB: 8, numGpus: 1 }), /unknown GPU type/);
});
