import type { FittedCurve } from './calibration-fit.js';

/**
 * Constants of the simulated GPU node, with where each comes from.
 *
 * REFERENCE_CURVES: fitted by calibration-fit.ts (fitReferenceCurves) on the ML.ENERGY
 * Leaderboard v3 LLM figures (https://ml.energy/leaderboard; vLLM, steady state, GPU energy
 * only), task lm-arena-chat, GPUs H100 and B200, Dense and MoE models. The rows are kept in
 * test/fixtures/mlenergy/mlenergy-v3-lm-arena-chat.csv and test/simulated/calibration.test.ts
 * re-fits them and compares with this table, so an edit here that the data does not support
 * fails the tests. Values are rounded to 6 significant digits.
 */
export const REFERENCE_CURVES: readonly FittedCurve[] = [
  { gpu: 'B200', model: 'deepseek-ai/DeepSeek-V3.1', arch: 'moe', totalParamsB: 671, activeParamsB: 37, bytesPerParam: 1, numGpus: 8, stepT0S: 0.0213754, stepT1S: 0.000116856, powerBaseW: 481.104, powerPerLnBatchW: 32.357, batchMin: 7.99, batchMax: 3007.51, rows: 11, maxRelErrJPerToken: 0.429983 },
  { gpu: 'B200', model: 'google/gemma-3-12b-it', arch: 'dense', totalParamsB: 12, activeParamsB: 12, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00799692, stepT1S: 0.0000915738, powerBaseW: 449.472, powerPerLnBatchW: 78.6385, batchMin: 7.96, batchMax: 486.64, rows: 7, maxRelErrJPerToken: 0.0602115 },
  { gpu: 'B200', model: 'google/gemma-3-27b-it', arch: 'dense', totalParamsB: 27, activeParamsB: 27, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0124243, stepT1S: 0.000131059, powerBaseW: 668.081, powerPerLnBatchW: 56.3677, batchMin: 7.97, batchMax: 247.31, rows: 6, maxRelErrJPerToken: 0.0554268 },
  { gpu: 'B200', model: 'meta-llama/Llama-3.1-405B-Instruct', arch: 'dense', totalParamsB: 405, activeParamsB: 405, bytesPerParam: 2, numGpus: 8, stepT0S: 0.02823, stepT1S: 0.000133896, powerBaseW: 727.491, powerPerLnBatchW: 31.936, batchMin: 7.98, batchMax: 3588.66, rows: 12, maxRelErrJPerToken: 0.169533 },
  { gpu: 'B200', model: 'meta-llama/Llama-3.1-405B-Instruct-FP8', arch: 'dense', totalParamsB: 405, activeParamsB: 405, bytesPerParam: 1, numGpus: 4, stepT0S: 0.0288841, stepT1S: 0.00023749, powerBaseW: 777.81, powerPerLnBatchW: 33.6495, batchMin: 7.97, batchMax: 510.47, rows: 7, maxRelErrJPerToken: 0.0160572 },
  { gpu: 'B200', model: 'meta-llama/Llama-3.1-70B-Instruct', arch: 'dense', totalParamsB: 70, activeParamsB: 70, bytesPerParam: 2, numGpus: 2, stepT0S: 0.0168365, stepT1S: 0.000101837, powerBaseW: 811.968, powerPerLnBatchW: 22.4795, batchMin: 7.98, batchMax: 2041.93, rows: 10, maxRelErrJPerToken: 0.147469 },
  { gpu: 'B200', model: 'meta-llama/Llama-3.1-8B-Instruct', arch: 'dense', totalParamsB: 8, activeParamsB: 8, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00481718, stepT1S: 0.0000866382, powerBaseW: 602.967, powerPerLnBatchW: -1.63884, batchMin: 7.96, batchMax: 2042.92, rows: 9, maxRelErrJPerToken: 0.247025 },
  { gpu: 'B200', model: 'meta-llama/Llama-3.3-70B-Instruct', arch: 'dense', totalParamsB: 70, activeParamsB: 70, bytesPerParam: 2, numGpus: 2, stepT0S: 0.0165827, stepT1S: 0.000106027, powerBaseW: 797.022, powerPerLnBatchW: 27.5762, batchMin: 7.98, batchMax: 1021.56, rows: 8, maxRelErrJPerToken: 0.105296 },
  { gpu: 'B200', model: 'Qwen/Qwen3-14B', arch: 'dense', totalParamsB: 14, activeParamsB: 14, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00799829, stepT1S: 0.0000644338, powerBaseW: 620.219, powerPerLnBatchW: 39.3, batchMin: 7.94, batchMax: 2044.59, rows: 9, maxRelErrJPerToken: 0.15877 },
  { gpu: 'B200', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 2, numGpus: 4, stepT0S: 0.0259857, stepT1S: 0.0000775562, powerBaseW: 688.393, powerPerLnBatchW: 14.1009, batchMin: 7.99, batchMax: 3764.65, rows: 12, maxRelErrJPerToken: 0.480531 },
  { gpu: 'B200', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 2, numGpus: 8, stepT0S: 0.0209372, stepT1S: 0.0000807324, powerBaseW: 511.774, powerPerLnBatchW: 15.5167, batchMin: 7.99, batchMax: 4090.4, rows: 11, maxRelErrJPerToken: 0.400293 },
  { gpu: 'B200', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 1, numGpus: 2, stepT0S: 0.0389501, stepT1S: 0.000123693, powerBaseW: 888.001, powerPerLnBatchW: 10.902, batchMin: 7.99, batchMax: 255.75, rows: 6, maxRelErrJPerToken: 0.0810169 },
  { gpu: 'B200', model: 'Qwen/Qwen3-30B-A3B-Instruct-2507', arch: 'moe', totalParamsB: 30, activeParamsB: 3, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0103992, stepT1S: 0.0000915305, powerBaseW: 792.802, powerPerLnBatchW: -14.5643, batchMin: 7.94, batchMax: 1478.22, rows: 12, maxRelErrJPerToken: 0.480598 },
  { gpu: 'B200', model: 'Qwen/Qwen3-32B', arch: 'dense', totalParamsB: 32, activeParamsB: 32, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0136184, stepT1S: 0.000111203, powerBaseW: 762.498, powerPerLnBatchW: 37.8249, batchMin: 7.97, batchMax: 455.73, rows: 10, maxRelErrJPerToken: 0.0699147 },
  { gpu: 'B200', model: 'Qwen/Qwen3-8B', arch: 'dense', totalParamsB: 8, activeParamsB: 8, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00602336, stepT1S: 0.0000697484, powerBaseW: 436.092, powerPerLnBatchW: 49.5751, batchMin: 7.95, batchMax: 1426.7, rows: 9, maxRelErrJPerToken: 0.15042 },
  { gpu: 'H100', model: 'google/gemma-3-12b-it', arch: 'dense', totalParamsB: 12, activeParamsB: 12, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0117278, stepT1S: 0.00018918, powerBaseW: 284.615, powerPerLnBatchW: 62.0433, batchMin: 7.98, batchMax: 127.78, rows: 6, maxRelErrJPerToken: 0.0263035 },
  { gpu: 'H100', model: 'google/gemma-3-27b-it', arch: 'dense', totalParamsB: 27, activeParamsB: 27, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0218262, stepT1S: 0.000231661, powerBaseW: 417.876, powerPerLnBatchW: 44.2288, batchMin: 7.99, batchMax: 31.73, rows: 3, maxRelErrJPerToken: 0.000598741 },
  { gpu: 'H100', model: 'google/gemma-3-27b-it', arch: 'dense', totalParamsB: 27, activeParamsB: 27, bytesPerParam: 2, numGpus: 2, stepT0S: 0.0137985, stepT1S: 0.000161309, powerBaseW: 263.365, powerPerLnBatchW: 62.9022, batchMin: 7.99, batchMax: 186.99, rows: 7, maxRelErrJPerToken: 0.0389249 },
  { gpu: 'H100', model: 'meta-llama/Llama-3.1-405B-Instruct-FP8', arch: 'dense', totalParamsB: 405, activeParamsB: 405, bytesPerParam: 1, numGpus: 8, stepT0S: 0.0309662, stepT1S: 0.000290273, powerBaseW: 257.873, powerPerLnBatchW: 64.3341, batchMin: 7.98, batchMax: 255.21, rows: 8, maxRelErrJPerToken: 0.0654188 },
  { gpu: 'H100', model: 'meta-llama/Llama-3.1-70B-Instruct', arch: 'dense', totalParamsB: 70, activeParamsB: 70, bytesPerParam: 2, numGpus: 4, stepT0S: 0.0164723, stepT1S: 0.000135158, powerBaseW: 318.276, powerPerLnBatchW: 46.9145, batchMin: 7.99, batchMax: 898.45, rows: 12, maxRelErrJPerToken: 0.0486208 },
  { gpu: 'H100', model: 'meta-llama/Llama-3.1-8B-Instruct', arch: 'dense', totalParamsB: 8, activeParamsB: 8, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00667217, stepT1S: 0.0000894593, powerBaseW: 393.577, powerPerLnBatchW: 50.4357, batchMin: 7.98, batchMax: 690.87, rows: 11, maxRelErrJPerToken: 0.0489266 },
  { gpu: 'H100', model: 'meta-llama/Llama-3.3-70B-Instruct', arch: 'dense', totalParamsB: 70, activeParamsB: 70, bytesPerParam: 2, numGpus: 4, stepT0S: 0.0160655, stepT1S: 0.000137139, powerBaseW: 331.187, powerPerLnBatchW: 49.3722, batchMin: 7.98, batchMax: 724.24, rows: 11, maxRelErrJPerToken: 0.032992 },
  { gpu: 'H100', model: 'meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8', arch: 'moe', totalParamsB: 400, activeParamsB: 17, bytesPerParam: 1, numGpus: 8, stepT0S: 0.0127093, stepT1S: 0.000120797, powerBaseW: 93.1993, powerPerLnBatchW: 60.0368, batchMin: 7.98, batchMax: 383.32, rows: 9, maxRelErrJPerToken: 0.145523 },
  { gpu: 'H100', model: 'meta-llama/Llama-4-Scout-17B-16E-Instruct', arch: 'moe', totalParamsB: 109, activeParamsB: 17, bytesPerParam: 2, numGpus: 4, stepT0S: 0.0275135, stepT1S: 0.000127297, powerBaseW: 263.368, powerPerLnBatchW: 37.2313, batchMin: 7.98, batchMax: 472.82, rows: 10, maxRelErrJPerToken: 0.225252 },
  { gpu: 'H100', model: 'meta-llama/Llama-4-Scout-17B-16E-Instruct', arch: 'moe', totalParamsB: 109, activeParamsB: 17, bytesPerParam: 2, numGpus: 8, stepT0S: 0.0215495, stepT1S: 0.0000970914, powerBaseW: 190.599, powerPerLnBatchW: 36.0399, batchMin: 7.99, batchMax: 510.91, rows: 10, maxRelErrJPerToken: 0.125222 },
  { gpu: 'H100', model: 'Qwen/Qwen3-14B', arch: 'dense', totalParamsB: 14, activeParamsB: 14, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0117434, stepT1S: 0.000130443, powerBaseW: 309.159, powerPerLnBatchW: 55.868, batchMin: 7.99, batchMax: 253.41, rows: 8, maxRelErrJPerToken: 0.0362277 },
  { gpu: 'H100', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 2, numGpus: 8, stepT0S: 0.02272, stepT1S: 0.000193309, powerBaseW: 273.467, powerPerLnBatchW: 44.0041, batchMin: 7.99, batchMax: 228.47, rows: 8, maxRelErrJPerToken: 0.215698 },
  { gpu: 'H100', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 1, numGpus: 4, stepT0S: 0.0365684, stepT1S: 0.000158271, powerBaseW: 460.136, powerPerLnBatchW: 28.8091, batchMin: 7.99, batchMax: 191.75, rows: 7, maxRelErrJPerToken: 0.0397227 },
  { gpu: 'H100', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8', arch: 'moe', totalParamsB: 235, activeParamsB: 22, bytesPerParam: 1, numGpus: 8, stepT0S: 0.0259412, stepT1S: 0.000137562, powerBaseW: 410.034, powerPerLnBatchW: 16.0379, batchMin: 7.99, batchMax: 511.19, rows: 10, maxRelErrJPerToken: 0.0539279 },
  { gpu: 'H100', model: 'Qwen/Qwen3-30B-A3B-Instruct-2507', arch: 'moe', totalParamsB: 30, activeParamsB: 3, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0121291, stepT1S: 0.000265284, powerBaseW: 329.24, powerPerLnBatchW: 37.4261, batchMin: 7.97, batchMax: 88.51, rows: 5, maxRelErrJPerToken: 0.118148 },
  { gpu: 'H100', model: 'Qwen/Qwen3-30B-A3B-Instruct-2507', arch: 'moe', totalParamsB: 30, activeParamsB: 3, bytesPerParam: 2, numGpus: 2, stepT0S: 0.0116506, stepT1S: 0.0000847012, powerBaseW: 264.528, powerPerLnBatchW: 40.8186, batchMin: 7.99, batchMax: 1018.84, rows: 14, maxRelErrJPerToken: 0.309755 },
  { gpu: 'H100', model: 'Qwen/Qwen3-32B', arch: 'dense', totalParamsB: 32, activeParamsB: 32, bytesPerParam: 2, numGpus: 1, stepT0S: 0.0236633, stepT1S: 0.000229041, powerBaseW: 439.603, powerPerLnBatchW: 46.8312, batchMin: 7.99, batchMax: 29.26, rows: 3, maxRelErrJPerToken: 0.0132692 },
  { gpu: 'H100', model: 'Qwen/Qwen3-32B', arch: 'dense', totalParamsB: 32, activeParamsB: 32, bytesPerParam: 2, numGpus: 2, stepT0S: 0.0141511, stepT1S: 0.000146821, powerBaseW: 311.05, powerPerLnBatchW: 47.3842, batchMin: 7.99, batchMax: 340.19, rows: 9, maxRelErrJPerToken: 0.0489776 },
  { gpu: 'H100', model: 'Qwen/Qwen3-8B', arch: 'dense', totalParamsB: 8, activeParamsB: 8, bytesPerParam: 2, numGpus: 1, stepT0S: 0.00764557, stepT1S: 0.000103355, powerBaseW: 304.552, powerPerLnBatchW: 53.8615, batchMin: 7.97, batchMax: 474.4, rows: 10, maxRelErrJPerToken: 0.0541756 },
];

/**
 * How step times scale with the active weight GB each GPU reads per step, used to scale the
 * nearest reference to a configuration the data does not cover: for dense models the slopes of
 * ln t0 and ln t1 across the dense references of the GPU type (calibration-fit.ts
 * fitSizeExponents); for MoE models the median slope over one model measured at two GPU counts
 * (fitMoePairExponents), since across MoE models weight bytes explain little.
 */
export const SIZE_EXPONENTS: Readonly<Record<'H100' | 'B200', Readonly<Record<'dense' | 'moe', { readonly stepT0: number; readonly stepT1: number }>>>> = {
  H100: { dense: { stepT0: 0.966867, stepT1: 0.661311 }, moe: { stepT0: 0.352485, stepT1: 0.390783 } },
  B200: { dense: { stepT0: 0.834509, stepT1: 0.400657 }, moe: { stepT0: 0.311651, stepT1: -0.0579058 } },
};

/** GPU types the simulator knows. */
export type GpuType = 'H100' | 'H200' | 'B200';

/** What the simulator needs to know about one GPU type, each figure with its source. */
export interface GpuTypeSpec {
  readonly type: GpuType;
  /** Product name as nvidia-smi prints it (the simulator appends "(simulated)"). */
  readonly name: string;
  /** Board power with nothing running, watts. */
  readonly idlePowerW: number;
  readonly idlePowerSource: string;
  /** Enforced power limit, watts: simulated power never exceeds it. */
  readonly powerLimitW: number;
  readonly powerLimitSource: string;
  /** Whose ML.ENERGY curves this type uses. */
  readonly curvesFrom: 'H100' | 'B200';
  /** Dense BF16 tensor throughput, FLOP/s (datasheet); FP8 is twice this. */
  readonly peakBf16Flops: number;
  /** Caveats shown in the source's quality notes. */
  readonly notes: readonly string[];
}

/**
 * Share of peak tensor throughput that prefill achieves. An assumption, not from ML.ENERGY
 * (whose figures mix prefill into steady-state decode): prefill is compute-bound and vLLM
 * reaches roughly 40% MFU on long prompts. The same rate is the compute roof of an engine step
 * that mixes decode tokens and prefill chunks (ReplicaCurves.engineStepS).
 */
export const PREFILL_MFU = 0.4;

export const GPU_TYPES: Readonly<Record<GpuType, GpuTypeSpec>> = {
  H100: {
    type: 'H100',
    name: 'NVIDIA H100 80GB HBM3',
    // power.draw.instant of the idle query-gpu row; test/fixtures/traces/nvidia-smi-h100-80gb-hbm3-590.48.01.csv
    idlePowerW: 69.62,
    idlePowerSource: 'nvidia-smi capture, H100 80GB HBM3, driver 590.48.01, idle power.draw.instant',
    powerLimitW: 700,
    powerLimitSource: 'enforced.power.limit in the same capture',
    curvesFrom: 'H100',
    peakBf16Flops: 989e12, // H100 SXM datasheet, dense
    notes: [],
  },
  H200: {
    type: 'H200',
    name: 'NVIDIA H200',
    // power.draw.instant of the idle query-gpu row; test/fixtures/traces/nvidia-smi-h200-590.48.01.csv
    idlePowerW: 78.21,
    idlePowerSource: 'nvidia-smi capture, H200, driver 590.48.01, idle power.draw.instant',
    powerLimitW: 700,
    powerLimitSource: 'enforced.power.limit in the same capture',
    curvesFrom: 'H100',
    peakBf16Flops: 989e12, // same GH100 compute as H100 SXM
    notes: ['H200: ML.ENERGY v3 has no H200 figures; decode speed and power use the H100 curves (same die and power limit; H200 memory is faster, so these are conservative)'],
  },
  B200: {
    type: 'B200',
    name: 'NVIDIA B200',
    // No B200 capture: the H100's idle/limit ratio (69.62/700) applied to the B200 limit.
    idlePowerW: 99.46,
    idlePowerSource: 'assumption: no B200 capture; H100 idle/limit ratio x 1000 W',
    powerLimitW: 1000,
    powerLimitSource: 'NVIDIA HGX B200 specification (1000 W per GPU)',
    curvesFrom: 'B200',
    peakBf16Flops: 2.25e15, // HGX B200 datasheet, dense
    notes: ['B200: idle power is an assumption (no capture); several B200 ML.ENERGY fits are loose (see maxRelErrJPerToken)'],
  },
};
