import type { AttributionConfig, GpuPeriodInput, GpuPeriodTotals, RequestPeriodShare } from './attribution-types.js';
import { settlePeriod } from './attribution.js';
import { BATCH_BUCKETS, CACHE_BUCKETS } from './buckets.js';
import { foldCounterReadings, WINDOW_TIMESTAMPS_AFTER_END, type CounterHighWater, type CounterReadings } from './energy-timeline.js';
import { fullyLoadedFactor } from './fully-loaded.js';
import { IDLE_QUANTILE, idleBaselineFromObservations, resolveIdleBaseline, type IdleBaselineSource, type IdleObservation } from './idle-baseline.js';
import type { PowerSample } from './power-sample.js';
import { PowerSampleColumns, SAMPLE_COUNTER_RUN_START, SAMPLE_SIMULATED } from './power-sample-columns.js';
import type { ResolvedRequest } from './request-record.js';
import { emptyAccumulator, finalizeRequest, isFinalAfter, type EnergyBeforeEndHour, type RequestAccumulator, type RequestResult } from './request-result.js';
import { alignDown } from './settlement-schedule.js';
import { jPerSuccessfulTask, taskSummary, type TaskRequest } from './tasks.js';
import { epochMs, joules, watts, type Watts } from './units.js';
import { compareStrings } from './compare.js';

/**
 * `tokenwatt analyze`: offline, deterministic attribution of a recorded run (power samples +
 * request records), with the same model the agent settles with (settlePeriod over a grid of
 * periods), so the answer does not depend on the period length beyond floating point.
 *
 * Idle baselines: a configured baseline wins; otherwise a first pass settles the run in 1 s periods
 * with no baseline, collects each period's idle power, and takes the duration-weighted low quantile
 * (model/idle-baseline.ts). The second pass settles with those baselines.
 *
 * The report's shape is DESIGN.md's `analyze --json` contract (snake_case); fields are only added.
 */

/** Input of {@link analyzeRun}. */
export interface AnalyzeInput {
  /** In any order. A long trace comes in columns (collectors/trace-file.ts), a short list as objects. */
  readonly samples: readonly PowerSample[] | PowerSampleColumns;
  readonly requests: readonly ResolvedRequest[];
  /** GPUs of the run; GPUs that appear only in samples are added with their sample index. */
  readonly gpus: readonly { readonly uuid: string; readonly index: number }[];
  readonly config: AttributionConfig;
  /**
   * Settlement period length (ms). With whole seconds, results do not depend on it beyond floating
   * point (the attribution grid is whole seconds, see ATTRIBUTION_GRID_MS). Default 60 s.
   */
  readonly periodMs?: number;
  /** Host (CPU, DRAM) energy over the run in joules, spread by the fully loaded figures. Default 0. */
  readonly hostJ?: number;
  /** Include one entry per request in the report. */
  readonly perRequest?: boolean;
}

export const DEFAULT_ANALYZE_PERIOD_MS = 60_000;
/** Period length of the idle-learning pass: short, so idle stretches between requests are seen on their own. */
export const IDLE_OBSERVATION_PERIOD_MS = 1_000;

export type AnalyzeGroupBy = 'tier' | 'model' | 'batch_bucket' | 'cache_bucket' | 'gpu';
export const ANALYZE_GROUP_BY: readonly AnalyzeGroupBy[] = ['tier', 'model', 'batch_bucket', 'cache_bucket', 'gpu'];

export interface AnalyzeTotals {
  readonly measured_j: number;
  readonly idle_j: number;
  /** static_j + dynamic_j: energy given to requests. */
  readonly attributed_j: number;
  readonly unattributed_j: number;
  /** measured_j - (idle_j + attributed_j + unattributed_j): ~0, the conservation self-check. */
  readonly residual_j: number;
  readonly static_j: number;
  readonly dynamic_j: number;
  readonly estimated_j: number;
  readonly host_j: number;
  /** (attributed + idle + unattributed + host) / attributed; null when nothing was attributed. */
  readonly fully_loaded_factor: number | null;
}

/**
 * One group of requests. In the `gpu` grouping a request on k GPUs counts as a request on each of
 * them, with the joules it received on that GPU and 1/k of its tokens (tensor parallelism splits the
 * work evenly), so J/token per GPU stays meaningful; the other groupings partition the requests.
 */
export interface AnalyzeGroup {
  readonly by: AnalyzeGroupBy;
  readonly key: string;
  readonly requests: number;
  readonly prompt_tokens: number;
  readonly cached_tokens: number;
  readonly completion_tokens: number;
  readonly joules: number;
  readonly static_j: number;
  readonly dynamic_j: number;
  /** Marginal: joules / completion_tokens, null without completion tokens. */
  readonly j_per_output_token: number | null;
  /** j_per_output_token x the run's fully loaded factor. */
  readonly j_per_output_token_fully_loaded: number | null;
}

export interface AnalyzeTask {
  readonly task_id: string;
  readonly requests: number;
  readonly succeeded: boolean;
  readonly joules: number;
  readonly waste_j: number;
  readonly waste_share: number;
  readonly completion_tokens: number;
  readonly tier: string;
}

export interface AnalyzeGpu {
  readonly uuid: string;
  readonly index: number;
  readonly measured_j: number;
  readonly idle_j: number;
  readonly static_j: number;
  readonly dynamic_j: number;
  readonly unattributed_j: number;
  readonly residual_j: number;
  readonly estimated_j: number;
  readonly covered_ms: number;
  /** covered_ms / the run's window. */
  readonly coverage: number;
  readonly counter_resets: number;
  readonly gaps: number;
  readonly samples: number;
  readonly idle_ms: number;
  readonly idle_baseline_w: number | null;
  readonly idle_baseline_source: IdleBaselineSource;
}

export interface AnalyzeQuality {
  readonly samples: number;
  readonly window_start_ms: number | null;
  readonly window_end_ms: number | null;
  /** Covered GPU time / (window x GPUs): time with samples no further apart than 3 sampling periods. */
  readonly coverage: number;
  readonly estimated_j: number;
  readonly counter_resets: number;
  readonly gaps: number;
  /** Request records analysed (after removing repeated request_ids). */
  readonly records: number;
  readonly duplicate_records: number;
  /** Records with some energy estimated or missing (gaps, no data for part of their time, unknown GPU). */
  readonly estimated_records: number;
  /** Records with time outside the power window: that part received no energy. */
  readonly records_outside_window: number;
  /** Records naming a GPU that has no power data. */
  readonly records_unknown_gpu: number;
  readonly tokens_estimated_records: number;
  /** Records synthesised from engine counters rather than per-request data. */
  readonly interval_granularity_records: number;
  /** Offline analysis has no settlement deadline: always 0. */
  readonly late_records: number;
  /** True when any sample or record came from the simulator: the figures are not measurements. */
  readonly simulated: boolean;
  readonly simulated_samples: number;
  readonly simulated_records: number;
}

export interface AnalyzeRequest {
  readonly request_id: string;
  readonly task_id: string | null;
  readonly attempt: number | null;
  readonly model: string;
  readonly tier: string;
  readonly status: string;
  readonly gpus: readonly string[];
  readonly start_ms: number;
  readonly end_ms: number;
  readonly prompt_tokens: number;
  readonly cached_tokens: number;
  readonly completion_tokens: number;
  readonly joules: number;
  readonly static_j: number;
  readonly dynamic_j: number;
  readonly prefill_j: number;
  readonly decode_j: number;
  readonly joules_fully_loaded: number | null;
  readonly j_per_output_token: number | null;
  readonly batch_size: number;
  readonly batch_size_source: 'engine' | 'observed';
  readonly batch_bucket: string;
  readonly cache_bucket: string;
  readonly estimated: boolean;
}

export interface AnalyzeMethod {
  readonly w_prefill: number;
  readonly w_cached: number;
  readonly w_decode: number;
  readonly sample_period_ms: number;
  readonly max_attributable_gap_ms: number;
  readonly period_ms: number;
  readonly idle_baseline_quantile: number;
}

/** The `analyze --json` report. */
export interface AnalyzeReport {
  readonly totals: AnalyzeTotals;
  readonly groups: AnalyzeGroup[];
  readonly tasks: AnalyzeTask[];
  /** All task energy (waste included) / tasks that succeeded; null when none did. */
  readonly j_per_successful_task: number | null;
  readonly quality: AnalyzeQuality;
  readonly gpus: AnalyzeGpu[];
  readonly method: AnalyzeMethod;
  /** Only with perRequest. */
  readonly requests?: AnalyzeRequest[];
}

/** Index of the first of `n` sorted values >= t (lower) or > t (upper); `valueAt(k)` reads the k-th. */
function bound(valueAt: (k: number) => number, n: number, t: number, upper: boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = valueAt(mid);
    if (upper ? v <= t : v < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * One GPU's samples sorted by time (a stable sort: equal times keep their input order), held as
 * positions in the run's columns; a window's samples are made into objects only when settled.
 */
class GpuSamples {
  /** How many samples the GPU has. */
  readonly count: number;
  private readonly positions: Uint32Array;
  /** The k-th sample's time (read from the columns: a copy would be 8 bytes more a sample). */
  private readonly timeAt: (k: number) => number;
  /** highWaterBefore's fold: how many samples it has folded, and the mark after them. */
  private foldedTo = 0;
  private foldedHighWater: CounterHighWater | null = null;
  /** This GPU's samples as counter readings, for the fold. */
  private readonly readings: CounterReadings;

  constructor(
    readonly uuid: string,
    readonly index: number,
    private readonly columns: PowerSampleColumns,
    positions: Uint32Array,
    /** Whether any sample starts a counter run (most traces: none, and the fold need not ask). */
    runStarts: boolean,
  ) {
    let sorted = true;
    for (let k = 1; sorted && k < positions.length; k++) sorted = columns.timestampAt(positions[k - 1] as number) <= columns.timestampAt(positions[k] as number);
    if (!sorted) positions = Uint32Array.from(Array.from(positions).sort((a, b) => columns.timestampAt(a) - columns.timestampAt(b)));
    this.positions = positions;
    this.count = positions.length;
    this.timeAt = (k) => columns.timestampAt(positions[k] as number);
    this.readings = {
      count: this.count,
      timeAt: this.timeAt,
      energyAt: (k) => columns.energyAt(positions[k] as number),
      ...(runStarts && { runStartAt: (k: number) => columns.flaggedAt(positions[k] as number, SAMPLE_COUNTER_RUN_START) }),
    };
  }

  /**
   * Samples of [p0, p1) plus the last reading at or before p0 and the first at or after p1 (each
   * with any repeats of its timestamp), so the intervals crossing the bounds are included whole,
   * and the counter's high-water mark over the samples before them.
   */
  window(p0: number, p1: number): { samples: PowerSample[]; counterHighWater: CounterHighWater | null } {
    const { timeAt, count } = this;
    const before = bound(timeAt, count, p0, true) - 1;
    const from = before < 0 ? 0 : bound(timeAt, count, timeAt(before), false);
    const after = bound(timeAt, count, p1, false);
    let to = after < count ? bound(timeAt, count, timeAt(after), true) : count;
    // And the timestamps after that whose readings judge the readings up to it (foldCounterReadings).
    for (let groups = 0; groups < WINDOW_TIMESTAMPS_AFTER_END && to < count; groups++) to = bound(timeAt, count, timeAt(to), true);
    const samples = new Array<PowerSample>(to - from);
    for (let k = from; k < to; k++) samples[k - from] = this.columns.at(this.positions[k] as number);
    return { samples, counterHighWater: this.highWaterBefore(from) };
  }

  /**
   * The counter's high-water mark over the samples before position `k` (the first of its
   * timestamp), one merged reading per timestamp as the timeline merges them (foldCounterReadings,
   * over columns). Windows move forward in time within a pass, so the fold goes on from where the
   * last call left it: each sample is folded once per pass (a call for an earlier position starts
   * again from the first sample).
   */
  highWaterBefore(k: number): CounterHighWater | null {
    if (k < this.foldedTo) {
      this.foldedTo = 0;
      this.foldedHighWater = null;
    }
    this.foldedHighWater = foldCounterReadings(this.foldedHighWater, this.readings, this.foldedTo, k);
    this.foldedTo = k;
    return this.foldedHighWater;
  }

  /** The first sample time at or after t, or Infinity. */
  firstTimeFrom(t: number): number {
    const at = bound(this.timeAt, this.count, t, false);
    return at < this.count ? this.timeAt(at) : Number.POSITIVE_INFINITY;
  }
}

/**
 * Settle [windowStart, windowEnd) period by period; calls `onPeriod` with each settlement and the
 * positions (in `requests`) of the requests it settled. `byStart`: positions in (start,
 * request_id) order.
 */
function settleRun(
  gpus: readonly GpuSamples[],
  requests: readonly ResolvedRequest[],
  byStart: Uint32Array,
  grid: { readonly startMs: number; readonly endMs: number; readonly periodMs: number },
  config: AttributionConfig,
  baselines: ReadonlyMap<string, Watts | null>,
  onPeriod: (totals: readonly GpuPeriodTotals[], shares: readonly RequestPeriodShare[], settled: readonly number[]) => void,
): void {
  // `open` holds the requests started but not final (a sweep, not periods x requests).
  const at = (i: number): ResolvedRequest => requests[i] as ResolvedRequest;
  let next = 0;
  let open: number[] = [];
  for (let p0 = grid.startMs, p1 = p0; p0 < grid.endMs; p0 = p1) {
    const nextStart = next < byStart.length ? at(byStart[next] as number).startMs : Number.POSITIVE_INFINITY;
    p1 = quietUntil(gpus, nextStart, open.length, p0, grid);
    while (next < byStart.length && at(byStart[next] as number).startMs < p1) {
      open.push(byStart[next] as number);
      next += 1;
    }
    const inputs: GpuPeriodInput[] = gpus.map((g) => ({
      gpuUuid: g.uuid,
      gpuIndex: g.index,
      ...g.window(p0, p1),
      idleBaselineW: baselines.get(g.uuid) ?? null,
    }));
    const settled = open.filter((i) => !isFinalAfter(at(i), p0));
    const settlement = settlePeriod({
      periodStartMs: epochMs(p0),
      periodEndMs: epochMs(p1),
      gpus: inputs,
      requests: settled.map(at),
      config,
    });
    onPeriod(settlement.gpus, settlement.shares, settled);
    open = open.filter((i) => !isFinalAfter(at(i), p1));
  }
}

/**
 * The end of the period starting at p0: normally one period later; when no GPU has a sample and no
 * request is open or starts before then, the grid point before the next sample or request start,
 * so that a stretch with nothing in it (a gap between captures, a stray timestamp years off) is
 * one settlement, not millions. Its energy is the same: within an interval it is linear in time.
 */
function quietUntil(
  gpus: readonly GpuSamples[],
  nextStart: number,
  openRequests: number,
  p0: number,
  grid: { readonly endMs: number; readonly periodMs: number },
): number {
  const p1 = p0 + grid.periodMs;
  if (openRequests > 0 || nextStart < p1) return p1;
  let nextSample = Number.POSITIVE_INFINITY;
  for (const g of gpus) nextSample = Math.min(nextSample, g.firstTimeFrom(p0));
  if (nextSample < p1) return p1;
  const nextEvent = Math.min(nextStart, nextSample);
  const resume = Number.isFinite(nextEvent) ? Math.min(grid.endMs, alignDown(nextEvent, grid.periodMs)) : grid.endMs;
  return Math.max(p1, resume);
}

interface GpuSums {
  measured: number;
  idle: number;
  static: number;
  dynamic: number;
  unattributed: number;
  residual: number;
  estimated: number;
  coveredMs: number;
  counterResets: number;
  gaps: number;
  samples: number;
  idleMs: number;
}

const emptySums = (): GpuSums => ({
  measured: 0, idle: 0, static: 0, dynamic: 0, unattributed: 0, residual: 0, estimated: 0,
  coveredMs: 0, counterResets: 0, gaps: 0, samples: 0, idleMs: 0,
});

/**
 * The running totals of every request of the run (RequestAccumulator's figures), held by position
 * in the run's requests in columns: a few numbers a request, not an object and a per-GPU record.
 * Shares are added in the order they come, as addShares adds them, so the sums are the same.
 */
class RequestTotals {
  private readonly staticJ: Float64Array;
  private readonly dynamicJ: Float64Array;
  private readonly prefillJ: Float64Array;
  private readonly decodeJ: Float64Array;
  private readonly activeMs: Float64Array;
  private readonly concurrencyMs: Float64Array;
  /** SHARED: the request has received a share; ESTIMATED: one of them was estimated. */
  private readonly flags: Uint8Array;
  /** Joules per GPU: request i's, in the order of its `gpus`, at gpuJ[gpuFrom[i]] onwards. */
  private readonly gpuFrom: Uint32Array;
  private readonly gpuJ: Float64Array;

  constructor(private readonly requests: readonly ResolvedRequest[]) {
    const n = requests.length;
    this.staticJ = new Float64Array(n);
    this.dynamicJ = new Float64Array(n);
    this.prefillJ = new Float64Array(n);
    this.decodeJ = new Float64Array(n);
    this.activeMs = new Float64Array(n);
    this.concurrencyMs = new Float64Array(n);
    this.flags = new Uint8Array(n);
    this.gpuFrom = new Uint32Array(n + 1);
    for (let i = 0; i < n; i++) this.gpuFrom[i + 1] = (this.gpuFrom[i] as number) + (requests[i] as ResolvedRequest).gpus.length;
    this.gpuJ = new Float64Array(this.gpuFrom[n] as number);
  }

  add(i: number, share: RequestPeriodShare): void {
    this.staticJ[i] = (this.staticJ[i] as number) + share.staticJ;
    this.dynamicJ[i] = (this.dynamicJ[i] as number) + share.dynamicJ;
    this.prefillJ[i] = (this.prefillJ[i] as number) + share.prefillJ;
    this.decodeJ[i] = (this.decodeJ[i] as number) + share.decodeJ;
    this.activeMs[i] = (this.activeMs[i] as number) + share.activeMs;
    this.concurrencyMs[i] = (this.concurrencyMs[i] as number) + share.concurrencyMs;
    this.flags[i] = (this.flags[i] as number) | SHARED | (share.estimated ? ESTIMATED : 0);
    // settlePeriod gives a request shares only on GPUs it names.
    const on = (this.requests[i] as ResolvedRequest).gpus.indexOf(share.gpuUuid);
    if (on === -1) throw new Error(`internal: a share of request ${share.requestId} on GPU ${share.gpuUuid}, which it does not name`);
    const k = (this.gpuFrom[i] as number) + on;
    this.gpuJ[k] = (this.gpuJ[k] as number) + share.staticJ + share.dynamicJ;
  }

  /** Request i's totals as an accumulator (what addShares over its shares would have made). */
  accumulator(i: number): RequestAccumulator {
    const flags = this.flags[i] as number;
    if ((flags & SHARED) === 0) return emptyAccumulator();
    const perGpuJ: Record<string, number> = {};
    const { gpus } = this.requests[i] as ResolvedRequest;
    // A GPU listed twice has its joules at its first place (add's indexOf).
    for (let g = 0; g < gpus.length; g++) if (!Object.hasOwn(perGpuJ, gpus[g] as string)) perGpuJ[gpus[g] as string] = this.gpuJ[(this.gpuFrom[i] as number) + g] as number;
    return {
      staticJ: this.staticJ[i] as number,
      dynamicJ: this.dynamicJ[i] as number,
      prefillJ: this.prefillJ[i] as number,
      decodeJ: this.decodeJ[i] as number,
      activeMs: this.activeMs[i] as number,
      concurrencyMs: this.concurrencyMs[i] as number,
      estimated: (flags & ESTIMATED) !== 0,
      perGpuJ,
      // The offline analysis books no hourly rows.
      beforeEndHourJ: NO_HOURS,
    };
  }
}

const NO_HOURS: EnergyBeforeEndHour = Object.freeze({});

const SHARED = 1;
const ESTIMATED = 2;

function groupKeyOrder(by: AnalyzeGroupBy, key: string): number {
  if (by === 'batch_bucket') return (BATCH_BUCKETS as readonly string[]).indexOf(key);
  if (by === 'cache_bucket') return (CACHE_BUCKETS as readonly string[]).indexOf(key);
  if (by === 'gpu') return Number(key);
  return 0;
}

interface MutableGroup {
  requests: number;
  prompt: number;
  cached: number;
  completion: number;
  joules: number;
  staticJ: number;
  dynamicJ: number;
}

/**
 * Attribute a recorded run offline. Deterministic: the same input (in any order) gives the same report.
 */
export function analyzeRun(input: AnalyzeInput): AnalyzeReport {
  const { config } = input;
  const periodMs = input.periodMs !== undefined && Number.isFinite(input.periodMs) && input.periodMs > 0 ? input.periodMs : DEFAULT_ANALYZE_PERIOD_MS;
  const hostJ = input.hostJ !== undefined && Number.isFinite(input.hostJ) && input.hostJ > 0 ? input.hostJ : 0;

  // GPUs: listed ones plus any that only appear in the samples.
  const indexOf = new Map<string, number>();
  for (const g of input.gpus) if (!indexOf.has(g.uuid)) indexOf.set(g.uuid, g.index);
  const columns = input.samples instanceof PowerSampleColumns ? input.samples : PowerSampleColumns.of(input.samples);
  // Each sample's GPU by UUID (`slot`): the columns' GPU positions are (UUID, index) pairs.
  const { slotOfPosition, slotOf } = columns.uuidSlots();
  const uuids = [...slotOf.keys()];
  const counts = new Uint32Array(uuids.length);
  let windowStart = Infinity;
  let windowEnd = -Infinity;
  let simulatedSamples = 0;
  let runStarts = false;
  for (let i = 0; i < columns.length; i++) {
    const t = columns.timestampAt(i);
    if (!Number.isFinite(t)) continue;
    const slot = slotOfPosition[columns.gpuAt(i)] as number;
    // A GPU not listed takes the index of its first sample.
    if (counts[slot] === 0 && !indexOf.has(uuids[slot] as string)) indexOf.set(uuids[slot] as string, (columns.gpus[columns.gpuAt(i)] as { index: number }).index);
    counts[slot] = (counts[slot] as number) + 1;
    windowStart = Math.min(windowStart, t);
    windowEnd = Math.max(windowEnd, t);
  }
  const positionsOf = uuids.map((_, slot) => new Uint32Array(counts[slot] as number));
  const filled = new Uint32Array(uuids.length);
  for (let i = 0; i < columns.length; i++) {
    if (!Number.isFinite(columns.timestampAt(i))) continue;
    const slot = slotOfPosition[columns.gpuAt(i)] as number;
    (positionsOf[slot] as Uint32Array)[filled[slot] as number] = i;
    filled[slot] = (filled[slot] as number) + 1;
    if (columns.flaggedAt(i, SAMPLE_SIMULATED)) simulatedSamples += 1;
    if (columns.flaggedAt(i, SAMPLE_COUNTER_RUN_START)) runStarts = true;
  }
  const gpus = [...indexOf]
    .sort(([ua, ia], [ub, ib]) => ia - ib || compareStrings(ua, ub))
    .map(([uuid, index]) => {
      const slot = slotOf.get(uuid);
      return new GpuSamples(uuid, index, columns, slot === undefined ? new Uint32Array(0) : (positionsOf[slot] as Uint32Array), runStarts);
    });
  const withData = new Set(uuids.filter((_, slot) => (counts[slot] as number) > 0));

  const requests = firstOfEachId(input.requests);
  const duplicateRecords = input.requests.length - requests.length;
  // Positions in `requests` by (start, request_id): the order of settling and of the report.
  const byStart = new Uint32Array(requests.length);
  for (let i = 0; i < byStart.length; i++) byStart[i] = i;
  byStart.sort((i, j) => {
    const x = requests[i] as ResolvedRequest;
    const y = requests[j] as ResolvedRequest;
    return x.startMs - y.startMs || compareStrings(x.requestId, y.requestId);
  });

  const hasWindow = windowEnd >= windowStart;
  const gridOf = (length: number) => ({
    startMs: hasWindow ? alignDown(windowStart, length) : 0,
    endMs: hasWindow ? Math.max(Math.ceil(windowEnd / length) * length, alignDown(windowStart, length) + length) : 0,
    periodMs: length,
  });

  // Pass 1: learn idle baselines of GPUs without a configured one.
  const learned = new Map<string, Watts | null>();
  const toLearn = gpus.filter((g) => config.idleBaselineW[g.uuid] === undefined);
  if (toLearn.length > 0 && hasWindow) {
    const observations = new Map<string, IdleObservation[]>(toLearn.map((g) => [g.uuid, []]));
    settleRun(toLearn, requests, byStart, gridOf(IDLE_OBSERVATION_PERIOD_MS), config, new Map(), (totals) => {
      for (const t of totals) {
        if (t.observedIdlePowerW !== null && t.idleMs > 0) observations.get(t.gpuUuid)?.push({ powerW: t.observedIdlePowerW, durationMs: t.idleMs });
      }
    });
    for (const [uuid, obs] of observations) learned.set(uuid, idleBaselineFromObservations(obs));
  }
  const baselines = new Map<string, Watts | null>();
  const baselineSource = new Map<string, IdleBaselineSource>();
  for (const g of gpus) {
    const resolved = resolveIdleBaseline(config, g.uuid, learned.get(g.uuid) ?? null);
    baselines.set(g.uuid, resolved.baselineW);
    baselineSource.set(g.uuid, resolved.source);
  }

  // Pass 2: settle.
  const sums = new Map<string, GpuSums>(gpus.map((g) => [g.uuid, emptySums()]));
  const requestTotals = new RequestTotals(requests);
  if (hasWindow) {
    settleRun(gpus, requests, byStart, gridOf(periodMs), config, baselines, (totals, shares, settled) => {
      for (const t of totals) {
        const s = sums.get(t.gpuUuid) as GpuSums;
        s.measured += t.measuredJ;
        s.idle += t.idleJ;
        s.static += t.staticJ;
        s.dynamic += t.dynamicJ;
        s.unattributed += t.unattributedJ;
        s.residual += t.residualJ;
        s.estimated += t.estimatedJ;
        s.coveredMs += t.coveredMs;
        s.counterResets += t.counterResets;
        s.gaps += t.gaps;
        s.idleMs += t.idleMs;
      }
      if (shares.length === 0) return;
      const positionOf = new Map<string, number>();
      for (const i of settled) positionOf.set((requests[i] as ResolvedRequest).requestId, i);
      for (const share of shares) requestTotals.add(positionOf.get(share.requestId) as number, share);
    });
  }

  // Samples are counted directly, not summed over the periods: those count [p0, p1), so a last
  // sample lying on the grid end (the window ends on a period bound) would be in none of them.
  for (const g of gpus) (sums.get(g.uuid) as GpuSums).samples = g.count;

  const gpuTotals = gpus.map((g) => sums.get(g.uuid) as GpuSums);
  const totalsOf = (pick: (s: GpuSums) => number): number => gpuTotals.reduce((sum, s) => sum + pick(s), 0);
  const measured = totalsOf((s) => s.measured);
  const idle = totalsOf((s) => s.idle);
  const staticJ = totalsOf((s) => s.static);
  const dynamicJ = totalsOf((s) => s.dynamic);
  const unattributed = totalsOf((s) => s.unattributed);
  const factor = fullyLoadedFactor({ attributedJ: staticJ + dynamicJ, idleJ: idle, unattributedJ: unattributed, hostJ });

  // Finalize the requests in (start, request_id) order, each folded into the groups and counts as it
  // is made and then dropped (a million results are not held at once); flag those with time
  // outside the power window or on GPUs without data.
  const groups = new GroupSums(gpus);
  const perRequest: AnalyzeRequest[] | null = input.perRequest ? [] : null;
  const requestJ = new Float64Array(requests.length);
  let outsideWindow = 0;
  let unknownGpu = 0;
  let estimatedRecords = 0;
  let tokensEstimatedRecords = 0;
  let intervalRecords = 0;
  let simulatedRecords = 0;
  for (let k = 0; k < byStart.length; k++) {
    const i = byStart[k] as number;
    const record = requests[i] as ResolvedRequest;
    const result = finalizeRequest(record, requestTotals.accumulator(i), { late: false });
    const outside = !hasWindow || record.startMs < windowStart || record.endMs > windowEnd;
    const unknown = record.gpus.length === 0 || record.gpus.some((uuid) => !withData.has(uuid));
    if (outside) outsideWindow += 1;
    if (unknown) unknownGpu += 1;
    const estimated = result.estimated || outside || unknown;
    if (estimated) estimatedRecords += 1;
    if (result.tokensEstimated) tokensEstimatedRecords += 1;
    if (result.granularity === 'interval') intervalRecords += 1;
    if (result.source === 'simulated') simulatedRecords += 1;
    requestJ[i] = result.joules;
    groups.add(result);
    perRequest?.push(requestEntry(result, estimated, factor));
  }
  const tasks = taskEntries(requests, byStart, requestJ);
  const windowMs = hasWindow ? windowEnd - windowStart : 0;

  const report: AnalyzeReport = {
    totals: {
      measured_j: measured,
      idle_j: idle,
      attributed_j: staticJ + dynamicJ,
      unattributed_j: unattributed,
      residual_j: measured - (idle + staticJ + dynamicJ + unattributed),
      static_j: staticJ,
      dynamic_j: dynamicJ,
      estimated_j: totalsOf((s) => s.estimated),
      host_j: hostJ,
      fully_loaded_factor: factor,
    },
    groups: groups.list(factor),
    tasks,
    j_per_successful_task: jPerSuccessfulTask(tasks),
    quality: {
      samples: totalsOf((s) => s.samples),
      window_start_ms: hasWindow ? windowStart : null,
      window_end_ms: hasWindow ? windowEnd : null,
      coverage: windowMs > 0 && gpus.length > 0 ? totalsOf((s) => s.coveredMs) / (windowMs * gpus.length) : 0,
      estimated_j: totalsOf((s) => s.estimated),
      counter_resets: totalsOf((s) => s.counterResets),
      gaps: totalsOf((s) => s.gaps),
      records: requests.length,
      duplicate_records: duplicateRecords,
      estimated_records: estimatedRecords,
      records_outside_window: outsideWindow,
      records_unknown_gpu: unknownGpu,
      tokens_estimated_records: tokensEstimatedRecords,
      interval_granularity_records: intervalRecords,
      late_records: 0,
      simulated: simulatedSamples > 0 || simulatedRecords > 0,
      simulated_samples: simulatedSamples,
      simulated_records: simulatedRecords,
    },
    gpus: gpus.map((g) => {
      const s = sums.get(g.uuid) as GpuSums;
      const baseline = baselines.get(g.uuid) ?? null;
      return {
        uuid: g.uuid,
        index: g.index,
        measured_j: s.measured,
        idle_j: s.idle,
        static_j: s.static,
        dynamic_j: s.dynamic,
        unattributed_j: s.unattributed,
        residual_j: s.residual,
        estimated_j: s.estimated,
        covered_ms: s.coveredMs,
        coverage: windowMs > 0 ? s.coveredMs / windowMs : 0,
        counter_resets: s.counterResets,
        gaps: s.gaps,
        samples: s.samples,
        idle_ms: s.idleMs,
        idle_baseline_w: baseline === null ? null : watts(baseline),
        idle_baseline_source: baselineSource.get(g.uuid) ?? 'none',
      };
    }),
    method: {
      w_prefill: config.wPrefill,
      w_cached: config.wCached,
      w_decode: config.wDecode,
      sample_period_ms: config.samplePeriodMs,
      max_attributable_gap_ms: config.maxAttributableGapMs,
      period_ms: periodMs,
      idle_baseline_quantile: IDLE_QUANTILE,
    },
  };
  return perRequest === null ? report : { ...report, requests: perRequest };
}

/** One record per request_id (the first given), as the ledger's idempotency key would keep. */
function firstOfEachId(records: readonly ResolvedRequest[]): readonly ResolvedRequest[] {
  const seen = new Set<string>();
  const first: ResolvedRequest[] = [];
  for (const r of records) {
    if (seen.has(r.requestId)) continue;
    seen.add(r.requestId);
    first.push(r);
  }
  return first.length === records.length ? records : first;
}

/** A request's entry in the report; `estimated` also counts time outside the window and GPUs without data. */
function requestEntry(r: RequestResult, estimated: boolean, factor: number | null): AnalyzeRequest {
  return {
    request_id: r.requestId,
    task_id: r.taskId,
    attempt: r.attempt,
    model: r.model,
    tier: r.tier,
    status: r.status,
    gpus: r.gpus,
    start_ms: r.startMs,
    end_ms: r.endMs,
    prompt_tokens: r.promptTokens,
    cached_tokens: r.cachedTokens,
    completion_tokens: r.completionTokens,
    joules: r.joules,
    static_j: r.staticJ,
    dynamic_j: r.dynamicJ,
    prefill_j: r.prefillJ,
    decode_j: r.decodeJ,
    joules_fully_loaded: factor === null ? null : r.joules * factor,
    j_per_output_token: r.jPerOutputToken,
    batch_size: r.observedBatchSize,
    batch_size_source: r.batchSizeSource,
    batch_bucket: r.batchBucket,
    cache_bucket: r.cacheBucket,
    estimated,
  };
}

/**
 * The report's tasks, by task_id, each summarised from its requests in (start, request_id) order
 * as aggregateTasks groups them, one task at a time: only the report's entries are kept.
 * `requestJ`: each request's joules, by position in `requests`.
 */
function taskEntries(requests: readonly ResolvedRequest[], byStart: Uint32Array, requestJ: Float64Array): AnalyzeTask[] {
  const at = (k: number): ResolvedRequest => requests[byStart[k] as number] as ResolvedRequest;
  // Places in byStart of the requests with a task, by (task_id, place): a task's requests are a run.
  let withTask = 0;
  for (const r of requests) if (r.taskId !== null) withTask += 1;
  const places = new Uint32Array(withTask);
  for (let k = 0, n = 0; k < byStart.length; k++) if (at(k).taskId !== null) places[n++] = k;
  places.sort((k, l) => compareStrings(at(k).taskId as string, at(l).taskId as string) || k - l);
  const tasks: AnalyzeTask[] = [];
  for (let from = 0; from < places.length; ) {
    const taskId = at(places[from] as number).taskId as string;
    const members: TaskRequest[] = [];
    let to = from;
    for (; to < places.length && at(places[to] as number).taskId === taskId; to++) {
      const r = at(places[to] as number);
      members.push({
        requestId: r.requestId,
        taskId: r.taskId,
        attempt: r.attempt,
        tier: r.tier,
        status: r.status,
        startMs: r.startMs,
        endMs: r.endMs,
        joules: joules(requestJ[byStart[places[to] as number] as number] as number),
        completionTokens: r.completionTokens,
        labels: r.labels,
      });
    }
    const t = taskSummary(taskId, members);
    tasks.push({
      task_id: t.taskId,
      requests: t.requests,
      succeeded: t.succeeded,
      joules: t.joules,
      waste_j: t.wasteJ,
      waste_share: t.wasteShare,
      completion_tokens: t.completionTokens,
      tier: t.tier,
    });
    from = to;
  }
  return tasks;
}

/** The groups (DESIGN's `analyze --json` groupings), with requests added one by one in report order. */
class GroupSums {
  private readonly groups = new Map<string, { by: AnalyzeGroupBy; key: string; g: MutableGroup }>();
  private readonly gpuIndex: ReadonlyMap<string, number>;

  constructor(gpus: readonly GpuSamples[]) {
    this.gpuIndex = new Map(gpus.map((g) => [g.uuid, g.index]));
  }

  add(r: RequestResult): void {
    const whole = { total: r.joules, staticJ: r.staticJ, dynamicJ: r.dynamicJ };
    this.addTo('tier', r.tier, r, 1, whole);
    this.addTo('model', r.model, r, 1, whole);
    this.addTo('batch_bucket', r.batchBucket, r, 1, whole);
    this.addTo('cache_bucket', r.cacheBucket, r, 1, whole);
    const onGpus = r.gpus.filter((uuid) => this.gpuIndex.has(uuid));
    for (const uuid of onGpus) {
      const onThis = r.perGpuJ[uuid] ?? 0;
      // Static/dynamic per GPU are not kept per request; split this GPU's joules by the request's ratio.
      const staticShare = r.joules > 0 ? r.staticJ / r.joules : 0;
      this.addTo('gpu', String(this.gpuIndex.get(uuid)), r, 1 / onGpus.length, { total: onThis, staticJ: onThis * staticShare, dynamicJ: onThis * (1 - staticShare) });
    }
  }

  list(factor: number | null): AnalyzeGroup[] {
    return [...this.groups.values()]
      .sort(
        (x, y) =>
          ANALYZE_GROUP_BY.indexOf(x.by) - ANALYZE_GROUP_BY.indexOf(y.by) ||
          groupKeyOrder(x.by, x.key) - groupKeyOrder(y.by, y.key) ||
          compareStrings(x.key, y.key),
      )
      .map(({ by, key, g }) => {
        const perToken = g.completion > 0 ? g.joules / g.completion : null;
        return {
          by,
          key,
          requests: g.requests,
          prompt_tokens: g.prompt,
          cached_tokens: g.cached,
          completion_tokens: g.completion,
          joules: g.joules,
          static_j: g.staticJ,
          dynamic_j: g.dynamicJ,
          j_per_output_token: perToken,
          j_per_output_token_fully_loaded: perToken === null || factor === null ? null : perToken * factor,
        };
      });
  }

  private addTo(by: AnalyzeGroupBy, key: string, r: RequestResult, share: number, energy: { total: number; staticJ: number; dynamicJ: number }): void {
    const id = `${by}\u0000${key}`;
    let entry = this.groups.get(id);
    if (!entry) {
      entry = { by, key, g: { requests: 0, prompt: 0, cached: 0, completion: 0, joules: 0, staticJ: 0, dynamicJ: 0 } };
      this.groups.set(id, entry);
    }
    const { g } = entry;
    g.requests += 1;
    g.prompt += r.promptTokens * share;
    g.cached += r.cachedTokens * share;
    g.completion += r.completionTokens * share;
    g.joules += energy.total;
    g.staticJ += energy.staticJ;
    g.dynamicJ += energy.dynamicJ;
  }
}
