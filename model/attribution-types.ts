import type { CounterHighWater } from './energy-timeline.js';
import type { PowerSample } from './power-sample.js';
import type { ResolvedRequest } from './request-record.js';
import type { EpochMs, Joules, Watts } from './units.js';

/** Knobs of the attribution method (DESIGN.md "Attribution"). Defaults in DEFAULT_ATTRIBUTION_CONFIG. */
export interface AttributionConfig {
  /** Work weight of one uncached prompt token (prefill). */
  readonly wPrefill: number;
  /** Work weight of one prefix-cache-hit prompt token. */
  readonly wCached: number;
  /** Work weight of one completion token (decode). */
  readonly wDecode: number;
  /** Nominal sampling period; a gap longer than 3x this is flagged as estimated energy. */
  readonly samplePeriodMs: number;
  /** A gap longer than this is not attributed to requests: it is reported as unattributed. */
  readonly maxAttributableGapMs: number;
  /** Configured idle baseline per GPU UUID (watts); absent GPUs use the learned baseline. */
  readonly idleBaselineW: Readonly<Record<string, number>>;
}

/** Energy of one GPU over [startMs, endMs), with how it was obtained. */
export interface EnergyInterval {
  readonly gpuUuid: string;
  readonly startMs: EpochMs;
  readonly endMs: EpochMs;
  readonly energyJ: Joules;
  /** counter: from energy counter deltas; integrated: trapezoid of power. */
  readonly method: 'counter' | 'integrated';
  /** The counter went backwards here (driver reload): fell back to integration. */
  readonly counterReset: boolean;
  /** The samples are further apart than 3x the sampling period. */
  readonly gap: boolean;
  /** Energy is an estimate (gap, reset, or missing readings). */
  readonly estimated: boolean;
  /** Longer than maxAttributableGapMs: counted as unattributed, never given to requests. */
  readonly unattributable: boolean;
  /** Mean power over the interval. */
  readonly meanPowerW: Watts;
}

/** One GPU's input to the settlement of one period. */
export interface GpuPeriodInput {
  readonly gpuUuid: string;
  readonly gpuIndex: number;
  /**
   * Samples of this GPU, sorted by time, including the last sample at or before the period start
   * and the first at or after its end when they exist (so intervals crossing a boundary are split).
   */
  readonly samples: readonly PowerSample[];
  /**
   * The energy counter's high-water mark over this GPU's readings before `samples` (absent or null:
   * none), folded with foldCounterHighWater (energy-timeline.ts), so that a counter glitch at the
   * start of the window is judged as it would be without the cut.
   */
  readonly counterHighWater?: CounterHighWater | null;
  /** Idle baseline to use for this GPU in this period (configured or learned), or null if unknown yet. */
  readonly idleBaselineW: Watts | null;
  /**
   * Time from which this GPU's energy has not been counted by earlier periods (absent, or not
   * before the period start: everything before the period start was counted). It is earlier when an
   * earlier period was settled before the sample closing its last interval existed (the power
   * source stalled for longer than the settlement lateness). The energy of [countedUntilMs, period
   * start) is then counted in THIS period, as unattributed and estimated, with the flags (gaps,
   * counter resets) and samples of that stretch; `samples` must then reach back to the last sample
   * at or before it. See {@link countedUntilAfter} in settlement-schedule.ts.
   */
  readonly countedUntilMs?: EpochMs;
}

/** Everything needed to settle one period. Pure data: no clock, no I/O. */
export interface SettlePeriodInput {
  readonly periodStartMs: EpochMs;
  readonly periodEndMs: EpochMs;
  readonly gpus: readonly GpuPeriodInput[];
  /** Requests overlapping [periodStartMs, periodEndMs) (or with a zero-length point inside it). */
  readonly requests: readonly ResolvedRequest[];
  readonly config: AttributionConfig;
}

/** Per GPU totals of a settled period. measured = idle + static + dynamic + unattributed + residual. */
export interface GpuPeriodTotals {
  readonly gpuUuid: string;
  readonly gpuIndex: number;
  readonly measuredJ: Joules;
  readonly idleJ: Joules;
  readonly staticJ: Joules;
  readonly dynamicJ: Joules;
  readonly unattributedJ: Joules;
  /** measured - (idle + static + dynamic + unattributed); ~0 up to floating point. */
  readonly residualJ: Joules;
  /**
   * Part of measuredJ that is estimated (gaps, resets, missing readings, and energy of earlier time
   * carried into this period: see {@link GpuPeriodInput.countedUntilMs}).
   */
  readonly estimatedJ: Joules;
  /** Milliseconds of the period covered by samples. */
  readonly coveredMs: number;
  readonly counterResets: number;
  readonly gaps: number;
  readonly samples: number;
  /** Idle baseline used (null when unknown, in which case static = 0 and all active energy is dynamic). */
  readonly idleBaselineW: Watts | null;
  /** Mean power of the intervals with no active request (for learning the idle baseline), or null. */
  readonly observedIdlePowerW: Watts | null;
  /** Milliseconds with no active request. */
  readonly idleMs: number;
}

/** One request's share of one GPU in one period. */
export interface RequestPeriodShare {
  readonly requestId: string;
  readonly gpuUuid: string;
  readonly staticJ: Joules;
  readonly dynamicJ: Joules;
  /** Phase split of staticJ + dynamicJ. */
  readonly prefillJ: Joules;
  readonly decodeJ: Joules;
  /** Time this request was active on this GPU within the period. */
  readonly activeMs: number;
  /** Integral of the number of requests concurrently active on the GPU over this request's active time (ms). */
  readonly concurrencyMs: number;
  /** True if any of the energy given to this request was estimated. */
  readonly estimated: boolean;
}

export interface PeriodSettlement {
  readonly periodStartMs: EpochMs;
  readonly periodEndMs: EpochMs;
  readonly gpus: readonly GpuPeriodTotals[];
  readonly shares: readonly RequestPeriodShare[];
}
