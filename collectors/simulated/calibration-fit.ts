/**
 * Fits the simulated GPU's curves to published ML.ENERGY v3 figures. Pure functions: the
 * constants in calibration-data.ts were produced by these, and a test re-runs them on the copy
 * of the rows in test/fixtures/mlenergy/ to prove the constants match the data.
 *
 * Per reference configuration (GPU type, model, GPU count) two curves are fitted over the rows'
 * mean running batch b:
 *  - decode step time s(b) = t0 + t1*b seconds (so aggregate output tokens/s = b / s(b), and
 *    each running request decodes at 1/s(b) tokens/s). t0 is the weight-read floor of one
 *    step, t1 the per-sequence cost; the fit minimises the *relative* error of s (hence of
 *    tokens/s) so small and large batches weigh alike.
 *  - power per GPU P(b) = a + c*ln(b) watts, ordinary least squares.
 */

/** The columns of one ML.ENERGY v3 LLM row that the calibration reads. */
export interface MlEnergyRow {
  readonly line: number;
  readonly modelId: string;
  readonly task: string;
  readonly arch: string;
  readonly totalParamsB: number;
  readonly activeParamsB: number;
  readonly precision: string;
  readonly gpu: string;
  readonly numGpus: number;
  readonly avgBatchSize: number;
  readonly energyPerTokenJ: number;
  readonly powerPerGpuW: number;
  readonly outputTokPerS: number;
}

/** Curves fitted for one reference configuration. */
export interface FittedCurve {
  readonly gpu: string;
  readonly model: string;
  readonly arch: 'dense' | 'moe';
  readonly totalParamsB: number;
  readonly activeParamsB: number;
  /** 2 for bfloat16, 1 for fp8, 0.5 for mxfp4. */
  readonly bytesPerParam: number;
  readonly numGpus: number;
  /** Decode step time at batch -> 0, seconds. */
  readonly stepT0S: number;
  /** Added decode step time per running sequence, seconds. */
  readonly stepT1S: number;
  /** Power per GPU at batch 1, watts. */
  readonly powerBaseW: number;
  /** Power per GPU added per e-fold of batch, watts. */
  readonly powerPerLnBatchW: number;
  /** Range of mean batch sizes the fit saw. */
  readonly batchMin: number;
  readonly batchMax: number;
  readonly rows: number;
  /** Largest relative error of the fitted J/token over the rows (power not clamped). */
  readonly maxRelErrJPerToken: number;
}

const REQUIRED_COLUMNS = [
  'model_id', 'task', 'arch', 'total_params_b', 'active_params_b', 'precision', 'gpu', 'num_gpus',
  'avg_batch_size', 'energy_per_token_J', 'avg_power_W_per_gpu', 'output_tok_per_s',
] as const;

/** Parse the ML.ENERGY v3 CSV (unquoted, comma-separated, one header line). Bad rows are reported by line. */
export function parseMlEnergyCsv(text: string): { rows: MlEnergyRow[]; errors: { line: number; message: string }[] } {
  const lines = text.split(/\r?\n/);
  const header = (lines[0] ?? '').split(',').map((h) => h.trim());
  const col = new Map(header.map((name, i) => [name, i]));
  const missing = REQUIRED_COLUMNS.filter((c) => !col.has(c));
  if (missing.length > 0) return { rows: [], errors: [{ line: 1, message: `header lacks ${missing.join(', ')}` }] };
  const at = (name: (typeof REQUIRED_COLUMNS)[number]): number => col.get(name) as number;
  const rows: MlEnergyRow[] = [];
  const errors: { line: number; message: string }[] = [];
  for (let i = 1; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    if (raw.trim() === '') continue;
    const f = raw.split(',');
    if (f.length !== header.length) {
      errors.push({ line: i + 1, message: `expected ${header.length} fields, got ${f.length}` });
      continue;
    }
    const num = (name: (typeof REQUIRED_COLUMNS)[number]): number => Number(f[at(name)]);
    const row: MlEnergyRow = {
      line: i + 1,
      modelId: f[at('model_id')] ?? '',
      task: f[at('task')] ?? '',
      arch: f[at('arch')] ?? '',
      totalParamsB: num('total_params_b'),
      activeParamsB: num('active_params_b'),
      precision: f[at('precision')] ?? '',
      gpu: f[at('gpu')] ?? '',
      numGpus: num('num_gpus'),
      avgBatchSize: num('avg_batch_size'),
      energyPerTokenJ: num('energy_per_token_J'),
      powerPerGpuW: num('avg_power_W_per_gpu'),
      outputTokPerS: num('output_tok_per_s'),
    };
    const bad = (['totalParamsB', 'activeParamsB', 'numGpus', 'avgBatchSize', 'powerPerGpuW', 'outputTokPerS'] as const)
      .filter((k) => !(Number.isFinite(row[k]) && row[k] > 0));
    if (bad.length > 0) errors.push({ line: i + 1, message: `not a positive number: ${bad.join(', ')}` });
    else rows.push(row);
  }
  return { rows, errors };
}

/** Bytes per parameter for an ML.ENERGY precision string. */
export function bytesPerParamOf(precision: string): number {
  const p = precision.toLowerCase();
  if (p === 'fp8') return 1;
  if (p === 'mxfp4') return 0.5;
  return 2; // bfloat16 / float16
}

/** Solve the 2x2 least-squares problem min sum (x0*u_i + x1*v_i - y_i)^2. */
function leastSquares2(u: readonly number[], v: readonly number[], y: readonly number[]): [number, number] {
  let suu = 0, suv = 0, svv = 0, suy = 0, svy = 0;
  for (let i = 0; i < y.length; i++) {
    const ui = u[i] as number, vi = v[i] as number, yi = y[i] as number;
    suu += ui * ui; suv += ui * vi; svv += vi * vi; suy += ui * yi; svy += vi * yi;
  }
  const det = suu * svv - suv * suv;
  if (!(Math.abs(det) > 1e-300)) throw new Error('degenerate fit: need at least two distinct batch sizes');
  return [(suy * svv - svy * suv) / det, (svy * suu - suy * suv) / det];
}

/** Fit both curves to the rows of one configuration (at least two distinct batch sizes). */
export function fitCurve(rows: readonly MlEnergyRow[]): FittedCurve {
  const first = rows[0];
  if (!first) throw new Error('no rows to fit');
  const b = rows.map((r) => r.avgBatchSize);
  const step = rows.map((r) => r.avgBatchSize / r.outputTokPerS);
  // Relative error: divide each equation t0 + t1*b = s by s.
  const [t0, t1] = leastSquares2(step.map((s) => 1 / s), b.map((bi, i) => bi / (step[i] as number)), step.map(() => 1));
  const [a, c] = leastSquares2(b.map(() => 1), b.map(Math.log), rows.map((r) => r.powerPerGpuW));
  let maxRelErr = 0;
  for (const r of rows) {
    const fittedJ = ((a + c * Math.log(r.avgBatchSize)) * r.numGpus * (t0 + t1 * r.avgBatchSize)) / r.avgBatchSize;
    const measuredJ = (r.powerPerGpuW * r.numGpus) / r.outputTokPerS;
    maxRelErr = Math.max(maxRelErr, Math.abs(fittedJ / measuredJ - 1));
  }
  return {
    gpu: first.gpu,
    model: first.modelId,
    arch: first.arch === 'MoE' ? 'moe' : 'dense',
    totalParamsB: first.totalParamsB,
    activeParamsB: first.activeParamsB,
    bytesPerParam: bytesPerParamOf(first.precision),
    numGpus: first.numGpus,
    stepT0S: t0,
    stepT1S: t1,
    powerBaseW: a,
    powerPerLnBatchW: c,
    batchMin: Math.min(...b),
    batchMax: Math.max(...b),
    rows: rows.length,
    maxRelErrJPerToken: maxRelErr,
  };
}

/**
 * Fit every (gpu, model, GPU count) configuration of the given task, architectures Dense and
 * MoE (hybrids are left out: the simulator has no notion of them). Sorted by gpu, model, GPUs.
 */
export function fitReferenceCurves(rows: readonly MlEnergyRow[], task = 'lm-arena-chat'): FittedCurve[] {
  const groups = new Map<string, MlEnergyRow[]>();
  for (const r of rows) {
    if (r.task !== task || (r.arch !== 'Dense Transformer' && r.arch !== 'MoE')) continue;
    const key = `${r.gpu}\u0000${r.modelId}\u0000${r.numGpus}`;
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()]
    .filter((g) => new Set(g.map((r) => r.avgBatchSize)).size >= 2)
    .map(fitCurve)
    .sort((x, y) => x.gpu.localeCompare(y.gpu) || x.model.localeCompare(y.model) || x.numGpus - y.numGpus);
}

/** Weight bytes of the active parameters held by one GPU, in GB: what one decode step must read. */
export function activeWeightGbPerGpu(shape: { activeParamsB: number; bytesPerParam: number; numGpus: number }): number {
  return (shape.activeParamsB * shape.bytesPerParam) / shape.numGpus;
}

/**
 * How step time scales with the active weight bytes per GPU, fitted across the dense reference
 * curves of one GPU type: the slopes of ln t0 and ln t1 against ln(GB per GPU). Used to scale a
 * neighbouring reference to a configuration the data does not cover.
 */
export function fitSizeExponents(curves: readonly FittedCurve[], gpu: string): { stepT0: number; stepT1: number } {
  const dense = curves.filter((c) => c.gpu === gpu && c.arch === 'dense');
  const x = dense.map((c) => Math.log(activeWeightGbPerGpu(c)));
  const slope = (y: readonly number[]): number => leastSquares2(x.map(() => 1), x, y)[1];
  return { stepT0: slope(dense.map((c) => Math.log(c.stepT0S))), stepT1: slope(dense.map((c) => Math.log(c.stepT1S))) };
}

/**
 * The same scaling for MoE models, where cross-model regression says little (expert routing,
 * not weight bytes, sets the step time): the median slope over pairs of references of one model
 * at different GPU counts.
 */
export function fitMoePairExponents(curves: readonly FittedCurve[], gpu: string): { stepT0: number; stepT1: number } {
  const moe = curves.filter((c) => c.gpu === gpu && c.arch === 'moe');
  const t0: number[] = [];
  const t1: number[] = [];
  for (const a of moe) {
    for (const b of moe) {
      if (a.model !== b.model || a.numGpus >= b.numGpus) continue;
      const dx = Math.log(activeWeightGbPerGpu(a) / activeWeightGbPerGpu(b));
      t0.push(Math.log(a.stepT0S / b.stepT0S) / dx);
      t1.push(Math.log(a.stepT1S / b.stepT1S) / dx);
    }
  }
  if (t0.length === 0) throw new Error(`no MoE model measured at two GPU counts on ${gpu}`);
  return { stepT0: median(t0), stepT1: median(t1) };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
