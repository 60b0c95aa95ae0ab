import type { AttributionConfig } from './attribution-types.js';

/**
 * Default knobs of the attribution method (DESIGN.md "Attribution"). Every one is configurable;
 * the reasons for each default:
 *
 * - `wDecode = 1`: the unit of work is one decoded (completion) token.
 * - `wPrefill = 0.15`: prefill is compute-bound and processes the whole prompt in large matrix
 *   multiplications at high utilisation, while decode is memory-bound: every step re-reads all
 *   weights for a batch of one token per sequence. A prompt token costs about 2 x params FLOPs;
 *   for an 8B model on an H100 (~1e15 FLOP/s at ~700 W, ~50% utilisation) that is ~0.02 J, while the
 *   ML.ENERGY v3 measurements (reference/mlenergy-v3-llm.csv) put Llama-3.1-8B decode at
 *   0.12-0.17 J per output token at batch 32-64. The ratio is ~0.15.
 * - `wCached = 0.01`: a prefix-cache hit skips the projections and MLP for that token; what is left
 *   (block-table lookup, copying) is near zero. The attention of new tokens over the cached prefix
 *   is already in their own work. Not exactly zero, so a full-hit request is not weightless.
 * - `samplePeriodMs = 100`: the agent samples NVML at 10 Hz; set it to the source's real period
 *   (e.g. 1000 for nvidia-smi at 1 Hz), since gaps are judged against it.
 * - `maxAttributableGapMs = 30_000`: beyond ~30 s without samples, typical requests have started
 *   and ended inside the gap, so which of them drew the energy cannot be told; that energy is
 *   reported as unattributed rather than guessed.
 * - `idleBaselineW = {}`: learned per GPU from its own idle time (model/idle-baseline.ts) unless
 *   configured.
 */
export const DEFAULT_ATTRIBUTION_CONFIG: AttributionConfig = Object.freeze({
  wPrefill: 0.15,
  wCached: 0.01,
  wDecode: 1,
  samplePeriodMs: 100,
  maxAttributableGapMs: 30_000,
  idleBaselineW: Object.freeze({}),
});
