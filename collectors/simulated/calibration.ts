import { activeWeightGbPerGpu, type FittedCurve } from './calibration-fit.js';
import { GPU_TYPES, PREFILL_MFU, REFERENCE_CURVES, SIZE_EXPONENTS, type GpuType, type GpuTypeSpec } from './calibration-data.js';

export { GPU_TYPES, type GpuType, type GpuTypeSpec } from './calibration-data.js';

/** The model a replica serves, as far as the energy model cares. */
export interface ModelShape {
  /** Total parameters, billions. */
  readonly paramsB: number;
  /** Parameters active per token (MoE), billions; defaults to paramsB (dense). */
  readonly activeParamsB?: number;
  readonly precision?: 'bf16' | 'fp8';
  /** GPUs the replica spans (tensor/pipeline parallel). */
  readonly numGpus: number;
  /** Model name; breaks ties between references of the same shape. */
  readonly model?: string;
}

/** Decode speed, power and prefill rate of one replica on one GPU type. */
export interface ReplicaCurves {
  readonly gpu: GpuTypeSpec;
  /** The ML.ENERGY reference the curves come from. */
  readonly reference: FittedCurve;
  /** 'reference' when the replica is a configuration ML.ENERGY measured, 'scaled' otherwise. */
  readonly basis: 'reference' | 'scaled';
  /** One line for logs and quality notes. */
  readonly description: string;
  /** Seconds per decode step with `batch` sequences running (each gains one token per step). */
  stepTimeS(batch: number): number;
  /**
   * Seconds of one engine step that schedules `seqs` sequences (decoding ones and prefill chunks)
   * and `tokens` tokens in all (one per decoding sequence plus the chunks' prompt tokens), as a
   * roofline: the fitted decode step time of `seqs` (weight and KV reads, per-sequence
   * overheads), or the time the tokens' arithmetic takes at the prefill rate when that is longer.
   * Prompt tokens that fit under a memory-bound decode step cost no extra time, as in vLLM's
   * chunked prefill; so the ML.ENERGY rows, steady state with their chat prompts prefilled
   * inside the decode steps, are reproduced (test/simulated/closed-loop.test.ts).
   */
  engineStepS(seqs: number, tokens: number): number;
  /** Aggregate output tokens per second at `batch` (the ML.ENERGY output_tok_per_s). */
  tokensPerS(batch: number): number;
  /** Power of each of the replica's GPUs with `running` requests in flight; idle power at 0. */
  powerPerGpuW(running: number): number;
  /**
   * Power of each GPU during an engine step of `seqs` sequences and `tokens` tokens: the fitted
   * power of `seqs` while the step is bound by the decode curve (prompt tokens hidden under it,
   * as in the ML.ENERGY runs), rising with the tokens beyond what the decode step time covers at
   * the prefill rate when the step is compute-bound (a long prefill chunk runs near the limit).
   */
  enginePowerPerGpuW(seqs: number, tokens: number): number;
  /** Joules per output token at a steady `batch`, all the replica's GPUs together. */
  joulesPerToken(batch: number): number;
  /** Uncached prompt tokens per second that prefill processes (compute-bound estimate). */
  readonly prefillTokensPerS: number;
}

/** Fits looser than this are used only when the configuration matches exactly. */
const MAX_NEIGHBOUR_FIT_ERROR = 0.25;


function bytesOf(precision: 'bf16' | 'fp8' | undefined): number {
  return precision === 'fp8' ? 1 : 2;
}

function distance(ref: FittedCurve, total: number, active: number, bytes: number, gpus: number): number {
  const d = (a: number, b: number): number => Math.abs(Math.log(a / b));
  return d(ref.totalParamsB, total) + d(ref.activeParamsB, active) + d(ref.bytesPerParam, bytes) + d(ref.numGpus, gpus);
}

/**
 * Curves for a replica: the ML.ENERGY reference of exactly this configuration when there is one
 * (a model-name match wins ties, then the tighter fit); otherwise the nearest reliable reference
 * of the same architecture (dense or MoE) in (total params, active params, precision, GPUs),
 * with its step times scaled by the active weight bytes each GPU reads per step (exponents in
 * SIZE_EXPONENTS). Power per GPU is taken from the reference unchanged.
 * Leave-one-out over the H100 references (test/simulated/calibration.test.ts prints it) a
 * dense configuration lands at a median 7% (worst ~50%) from the published J/token; MoE
 * configurations differ too much among themselves for better than a median ~25% (worst ~3x).
 * Good for realistic demos, not a prediction for capacity planning. `references` replaces the
 * embedded table (tests).
 */
export function curvesFor(gpuType: GpuType, shape: ModelShape, references: readonly FittedCurve[] = REFERENCE_CURVES): ReplicaCurves {
  const gpu = GPU_TYPES[gpuType];
  if (!gpu) throw new Error(`unknown GPU type ${JSON.stringify(gpuType)} (known: ${Object.keys(GPU_TYPES).join(', ')})`);
  const total = shape.paramsB;
  const active = shape.activeParamsB ?? shape.paramsB;
  if (!(total > 0) || !(active > 0) || active > total) throw new Error(`model size must satisfy 0 < activeParamsB <= paramsB (got ${active} of ${total})`);
  if (!Number.isInteger(shape.numGpus) || shape.numGpus < 1) throw new Error(`numGpus must be a positive integer (got ${shape.numGpus})`);
  const bytes = bytesOf(shape.precision);
  const arch = active < total ? 'moe' : 'dense';
  const refs = references.filter((c) => c.gpu === gpu.curvesFrom);

  const exact = refs
    .filter((r) => r.totalParamsB === total && r.activeParamsB === active && r.bytesPerParam === bytes && r.numGpus === shape.numGpus)
    .sort((a, b) => Number(b.model === shape.model) - Number(a.model === shape.model) || a.maxRelErrJPerToken - b.maxRelErrJPerToken);
  if (exact[0]) return build(gpu, exact[0], 'reference', exact[0].stepT0S, exact[0].stepT1S, shape, bytes);

  const sameArch = refs.filter((r) => r.arch === arch);
  const reliable = sameArch.filter((r) => r.maxRelErrJPerToken <= MAX_NEIGHBOUR_FIT_ERROR);
  const pool = reliable.length > 0 ? reliable : sameArch.length > 0 ? sameArch : refs;
  const nearest = [...pool].sort((a, b) => distance(a, total, active, bytes, shape.numGpus) - distance(b, total, active, bytes, shape.numGpus))[0];
  if (!nearest) throw new Error(`no ML.ENERGY reference curves for ${gpu.curvesFrom}`);
  const ratio = activeWeightGbPerGpu({ activeParamsB: active, bytesPerParam: bytes, numGpus: shape.numGpus }) / activeWeightGbPerGpu(nearest);
  const exp = SIZE_EXPONENTS[gpu.curvesFrom][arch];
  return build(gpu, nearest, 'scaled', nearest.stepT0S * ratio ** exp.stepT0, nearest.stepT1S * ratio ** exp.stepT1, shape, bytes);
}

function build(gpu: GpuTypeSpec, ref: FittedCurve, basis: 'reference' | 'scaled', t0: number, t1: number, shape: ModelShape, bytes: number): ReplicaCurves {
  const active = shape.activeParamsB ?? shape.paramsB;
  const gpus = shape.numGpus;
  const powerPerGpuW = (running: number): number => {
    if (running <= 0) return gpu.idlePowerW;
    const p = ref.powerBaseW + ref.powerPerLnBatchW * Math.log(running);
    return Math.min(gpu.powerLimitW, Math.max(gpu.idlePowerW, p));
  };
  const stepTimeS = (batch: number): number => t0 + t1 * Math.max(1, batch);
  // 2 FLOP per active parameter per token; FP8 tensor cores run twice the BF16 rate.
  const prefillTokensPerS = (gpus * gpu.peakBf16Flops * (bytes === 1 ? 2 : 1) * PREFILL_MFU) / (2 * active * 1e9);
  const how = basis === 'reference'
    ? `ML.ENERGY v3 ${ref.gpu} x${ref.numGpus} ${ref.model} (fit error <= ${(ref.maxRelErrJPerToken * 100).toFixed(0)}%)`
    : `scaled from ML.ENERGY v3 ${ref.gpu} x${ref.numGpus} ${ref.model} by active weight bytes per GPU`;
  return {
    gpu,
    reference: ref,
    basis,
    description: `${gpu.type} x${gpus} ${shape.model ?? `${shape.paramsB}B`}: ${how}`,
    stepTimeS,
    engineStepS: (seqs, tokens) => Math.max(stepTimeS(seqs), Math.max(0, tokens) / prefillTokensPerS),
    enginePowerPerGpuW: (seqs, tokens) => powerPerGpuW(seqs + Math.max(0, tokens - stepTimeS(seqs) * prefillTokensPerS)),
    tokensPerS: (batch) => Math.max(1, batch) / stepTimeS(batch),
    powerPerGpuW,
    joulesPerToken: (batch) => (powerPerGpuW(batch) * gpus * stepTimeS(batch)) / Math.max(1, batch),
    prefillTokensPerS,
  };
}
