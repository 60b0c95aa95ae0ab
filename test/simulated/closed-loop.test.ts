import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseMlEnergyCsv, type MlEnergyRow } from '../../collectors/simulated/calibration-fit.js';
import { curvesFor } from '../../collectors/simulated/calibration.js';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import { defaultDemoNodeConfig } from '../../agent/demo-workload.js';

/**
 * The ML.ENERGY rows are steady-state runs of vLLM at a fixed concurrency, prefill included.
 * Driven the same way (closed loop: a finished request is replaced at once), the simulator must
 * give each row's tokens/s and J/token back, within the error of the curves fitted to the rows.
 * Covered: every H100 row of the configurations the demo's replicas take their curves from, up to
 * the replica's maxBatch (the batches the demo can reach): Llama-3.1-8B x1 at 8..512,
 * Llama-3.1-70B x4 (the medium tier's reference) at 8..256, Qwen3-235B-A22B FP8 x4 at 8..192.
 */

const T0 = Date.UTC(2026, 10, 2, 0, 0, 0);
const text = readFileSync(new URL('../fixtures/mlenergy/mlenergy-v3-lm-arena-chat.csv', import.meta.url), 'utf8');
const { rows } = parseMlEnergyCsv(text);
// parseMlEnergyCsv reads what the fit needs; the closed loop also needs the mean output length.
const lines = text.split(/\r?\n/);
const outputCol = (lines[0] ?? '').split(',').indexOf('avg_output_len');
const outputLen = (row: MlEnergyRow): number => Number((lines[row.line - 1] ?? '').split(',')[outputCol]);

/** A short chat prompt, uncached: ML.ENERGY does not publish its input lengths (an assumption). */
const PROMPT_TOKENS = 150;

interface LoopResult { tokPerS: number; jPerToken: number; meanRunning: number }

function closedLoop(row: MlEnergyRow): LoopResult {
  const concurrency = Math.round(row.avgBatchSize);
  const meanOut = outputLen(row);
  const precision = row.modelId.endsWith('-FP8') ? 'fp8' as const : 'bf16' as const;
  const node = new SimulatedGpuNode({
    gpuType: 'H100', gpuCount: row.numGpus, startMs: T0, seed: 1,
    replicas: [{
      name: 'r', model: row.modelId, tier: 't', paramsB: row.totalParamsB, activeParamsB: row.activeParamsB, precision,
      gpus: Array.from({ length: row.numGpus }, (_, i) => i), maxBatch: concurrency,
    }],
  });
  let seq = 0;
  let tokens = 0;
  const submit = (atMs: number): void => {
    // Output lengths spread evenly over [0.5, 1.5] x the row's mean, so requests end at different steps.
    const out = Math.max(1, Math.round(meanOut * (0.5 + ((seq * 0.618034) % 1))));
    node.submit({ requestId: `q${seq++}`, replica: 'r', promptTokens: PROMPT_TOKENS, cachedTokens: 0, maxCompletionTokens: 16_384, outputTokens: out, atMs });
  };
  node.onRequestDone((r) => {
    tokens += r.completionTokens;
    submit(r.endMs);
  });
  for (let i = 0; i < concurrency; i++) submit(T0);
  // Time for one generation at the row's own speed; warm up for three, measure over ten.
  const cycleMs = (1000 * meanOut * concurrency) / row.outputTokPerS;
  const energy = (): number => Object.values(node.truth().perGpuJ).reduce((a, b) => a + b, 0);
  node.advanceTo(T0 + 3 * cycleMs);
  const e0 = energy();
  const k0 = tokens;
  let running = 0;
  let samples = 0;
  const from = T0 + 3 * cycleMs;
  const to = from + 10 * cycleMs;
  for (let t = from; t < to; t += cycleMs / 50) {
    node.advanceTo(t);
    running += node.replicaState()[0]?.running as number;
    samples++;
  }
  node.advanceTo(to);
  const seconds = (to - from) / 1000;
  return { tokPerS: (tokens - k0) / seconds, jPerToken: (energy() - e0) / (tokens - k0), meanRunning: running / samples };
}

const demoModels = defaultDemoNodeConfig().replicas.map((r) => ({
  ref: curvesFor('H100', { paramsB: r.paramsB, activeParamsB: r.activeParamsB, precision: r.precision, numGpus: r.gpus.length, model: r.model }).reference,
  maxBatch: r.maxBatch ?? 256,
}));

test('closed loop at each H100 reference row of the demo\'s models gives the row\'s tokens/s and J/token', () => {
  const report: string[] = [];
  const failures: string[] = [];
  let checked = 0;
  for (const { ref, maxBatch } of demoModels) {
    const refRows = rows.filter((r) => r.gpu === 'H100' && r.modelId === ref.model && r.numGpus === ref.numGpus);
    assert.equal(refRows.length, ref.rows, ref.model);
    const curves = curvesFor('H100', { paramsB: ref.totalParamsB, activeParamsB: ref.activeParamsB, precision: ref.bytesPerParam === 1 ? 'fp8' : 'bf16', numGpus: ref.numGpus, model: ref.model });
    // The fit's own error over this configuration's rows, for tokens/s and J/token (power clamped, as simulated).
    const fitTokErr = Math.max(...refRows.map((r) => Math.abs(curves.tokensPerS(r.avgBatchSize) / r.outputTokPerS - 1)));
    const fitJErr = Math.max(ref.maxRelErrJPerToken, ...refRows.map((r) => Math.abs(curves.joulesPerToken(r.avgBatchSize) / r.energyPerTokenJ - 1)));
    for (const row of refRows.filter((r) => r.avgBatchSize <= maxBatch)) {
      const sim = closedLoop(row);
      const tokErr = sim.tokPerS / row.outputTokPerS - 1;
      const jErr = sim.jPerToken / row.energyPerTokenJ - 1;
      report.push(`${ref.model} x${ref.numGpus} batch ${row.avgBatchSize}: ${sim.tokPerS.toFixed(0)} tok/s (${row.outputTokPerS}, ${(100 * tokErr).toFixed(1)}%), ${sim.jPerToken.toFixed(4)} J/tok (${row.energyPerTokenJ}, ${(100 * jErr).toFixed(1)}%), running ${sim.meanRunning.toFixed(1)}`);
      // A 2% allowance for what the closed loop adds to the fit: spread output lengths, prefill steps.
      if (Math.abs(tokErr) > fitTokErr + 0.02) failures.push(`tokens/s off by more than the fit's ${(100 * fitTokErr).toFixed(1)}% + 2%: ${report.at(-1)}`);
      if (Math.abs(jErr) > fitJErr + 0.02) failures.push(`J/token off by more than the fit's ${(100 * fitJErr).toFixed(1)}% + 2%: ${report.at(-1)}`);
      if (Math.abs(sim.meanRunning / row.avgBatchSize - 1) > 0.02) failures.push(`running batch is not the row's: ${report.at(-1)}`);
      checked++;
    }
  }
  if (process.env.TOKENWATT_TEST_VERBOSE) console.log(report.join('\n'));
  assert.deepEqual(failures, []);
  assert.equal(checked, 10 + 8 + 7);
});
