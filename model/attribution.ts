import type {
  AttributionConfig,
  EnergyInterval,
  GpuPeriodInput,
  GpuPeriodTotals,
  PeriodSettlement,
  RequestPeriodShare,
  SettlePeriodInput,
} from './attribution-types.js';
import { buildEnergyTimeline, sliceInterval } from './energy-timeline.js';
import type { ResolvedRequest } from './request-record.js';
import { joules, watts, type Watts } from './units.js';

/**
 * Intervals are also cut at multiples of this many epoch milliseconds (whole seconds), and each
 * piece is attributed on its own. Period bounds on whole seconds then add no cut of their own, so the
 * result does not depend on how time is divided into periods: settling 1 s, 10 s or 1 h periods, or
 * the whole run at once, gives the same figures (to floating point). It also keeps a long gap
 * interval from handing all its energy to a request that was active for a moment of it.
 */
export const ATTRIBUTION_GRID_MS = 1000;

/**
 * Settlement of one period: every joule each GPU measured in [periodStart, periodEnd) is given to
 * exactly one of idle, a request (static or dynamic), or unattributed (DESIGN.md "Attribution").
 *
 * Per GPU, per energy interval (the sample grid, cut at the period bounds and on the
 * {@link ATTRIBUTION_GRID_MS} grid; a piece of an interval has the interval's mean power):
 * 1. Unattributable interval (a gap longer than `maxAttributableGapMs`): unattributed.
 * 2. No request active: idle.
 * 3. Otherwise static = min(idle baseline x dt, E) (0 when the baseline is unknown), dynamic = E - static.
 *    - Static is shared in proportion to each request's time in the interval.
 *    - Dynamic is shared in proportion to each request's work in the interval. Prefill work
 *      (uncached prompt x wPrefill + cached x wCached) is spread uniformly over [start, firstToken);
 *      decode work (completion x wDecode) over [firstToken, end); without firstToken all the work is
 *      spread over [start, end).
 *    - A zero-length phase or request puts its work as a point mass at that instant. Points at the
 *      request's start side (a zero-length prefill, a zero-length request) belong to the interval
 *      [a, b) with a <= t < b; a zero-length decode at the end of a request that lasted belongs to the
 *      interval (a, b] with a < t <= b, i.e. the last one the request was active in. So a request
 *      needs no period after the one its end closes (see {@link isFinalAfter} in request-result.ts).
 *    - Fallbacks, so that every joule of an interval with an active request goes to requests:
 *      no work in the interval => dynamic by time too; no time (only point masses) => static by work
 *      too; neither (only zero-length, zero-work requests) => equal parts.
 * 4. Phase split of a request's share: static by its time in each phase, dynamic by its work in each
 *    phase; without firstToken (and for a zero-length request) by its prefill/decode work fractions.
 *
 * Per GPU the totals also report data quality: estimatedJ (energy of estimated intervals), coveredMs
 * (time in intervals that are not gaps), gaps and counterResets (each interval or uncovered stretch
 * counted once, in the period holding its start), and observedIdlePowerW: the mean power of the idle
 * time whose energy is not estimated, which is what the idle baseline is learned from (idleMs counts
 * all idle time).
 *
 * Per request and GPU it also reports active time and the integral of the number of requests active
 * on that GPU over the request's active time (exact, from the request boundaries, uncovered time
 * included); their ratio is the observed batch size.
 *
 * Cost: O(R log R + n log n + sum of intervals each request overlaps) per GPU, with the inner loops
 * over typed arrays (no interval x all requests product). Results do not depend on the order of
 * the requests in the input: they are processed in (start, end, request_id) order, and a repeated
 * request_id is one request (the first in that order).
 */

/** Placement of one request's work in time; the same for all its GPUs. */
interface RequestGeometry {
  readonly record: ResolvedRequest;
  readonly startMs: number;
  readonly endMs: number;
  readonly firstTokenMs: number | null;
  readonly prefillWork: number;
  readonly decodeWork: number;
  /** Prefill's part of energy that cannot be placed in a phase (no firstToken, or zero length). */
  readonly prefillFraction: number;
}

const nonNegative = (value: number): number => (Number.isFinite(value) && value > 0 ? value : 0);

/**
 * Work and timing of a request. Records are validated at ingest; here out-of-range values are
 * clamped (end before start => zero length, firstToken outside [start, end] => clamped) so a bad
 * record can never break conservation.
 */
function geometryOf(record: ResolvedRequest, config: AttributionConfig): RequestGeometry {
  const startMs = record.startMs;
  const endMs = record.endMs >= startMs ? record.endMs : startMs;
  const firstTokenMs =
    record.firstTokenMs === null || !Number.isFinite(record.firstTokenMs)
      ? null
      : Math.min(Math.max(record.firstTokenMs, startMs), endMs);
  const prompt = nonNegative(record.promptTokens);
  const cached = Math.min(nonNegative(record.cachedTokens), prompt);
  const completion = nonNegative(record.completionTokens);
  const prefillWork = (prompt - cached) * nonNegative(config.wPrefill) + cached * nonNegative(config.wCached);
  const decodeWork = completion * nonNegative(config.wDecode);
  const total = prefillWork + decodeWork;
  const prefillFraction = total > 0 ? prefillWork / total : completion > 0 ? 0 : 1;
  return { record, startMs, endMs, firstTokenMs, prefillWork, decodeWork, prefillFraction };
}

/** The period's energy intervals of one GPU as parallel typed arrays, sorted and disjoint. */
interface IntervalGrid {
  readonly n: number;
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly energy: Float64Array;
  readonly estimated: Uint8Array;
  readonly unattributable: Uint8Array;
}

function gridOf(intervals: readonly EnergyInterval[]): IntervalGrid {
  const n = intervals.length;
  const grid = {
    n,
    start: new Float64Array(n),
    end: new Float64Array(n),
    energy: new Float64Array(n),
    estimated: new Uint8Array(n),
    unattributable: new Uint8Array(n),
  };
  intervals.forEach((interval, k) => {
    grid.start[k] = interval.startMs;
    grid.end[k] = interval.endMs;
    grid.energy[k] = interval.energyJ;
    grid.estimated[k] = interval.estimated ? 1 : 0;
    grid.unattributable[k] = interval.unattributable ? 1 : 0;
  });
  return grid;
}

/** First k with end[k] > t (or >= t when `inclusive`); n when none. */
function firstEndingAfter(grid: IntervalGrid, t: number, inclusive: boolean): number {
  let lo = 0;
  let hi = grid.n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = grid.end[mid] as number;
    if (inclusive ? e >= t : e > t) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Interval holding a start-side point t (a <= t < b), or -1. */
function intervalAtStart(grid: IntervalGrid, t: number): number {
  const k = firstEndingAfter(grid, t, false);
  return k < grid.n && (grid.start[k] as number) <= t ? k : -1;
}

/** Interval holding an end-side point t (a < t <= b), or -1. */
function intervalAtEnd(grid: IntervalGrid, t: number): number {
  const k = firstEndingAfter(grid, t, true);
  return k < grid.n && (grid.start[k] as number) < t ? k : -1;
}

/** Pass 1 totals per interval: requests' time (T), work (W), zero-length zero-work requests (Z). */
interface IntervalLoad {
  readonly time: Float64Array;
  readonly work: Float64Array;
  readonly zeroCount: Float64Array;
}

/** Pass 2 coefficients per interval: what one ms of presence, one unit of work, or one zero-length request receives. */
interface IntervalRates {
  readonly staticPerMs: Float64Array;
  readonly dynamicPerMs: Float64Array;
  readonly dynamicPerWork: Float64Array;
  readonly staticPerWork: Float64Array;
  readonly staticPerZero: Float64Array;
  readonly dynamicPerZero: Float64Array;
}

/** Add the time of [x, y), and work at density rho (per ms) over it, to every interval it overlaps. */
function spread(grid: IntervalGrid, x: number, y: number, rho: number, load: IntervalLoad): void {
  const { time, work } = load;
  for (let k = firstEndingAfter(grid, x, false); k < grid.n && (grid.start[k] as number) < y; k += 1) {
    const overlap = Math.min(grid.end[k] as number, y) - Math.max(grid.start[k] as number, x);
    time[k] = (time[k] as number) + overlap;
    if (rho > 0) work[k] = (work[k] as number) + rho * overlap;
  }
}

function addPoint(into: Float64Array, k: number, amount: number): void {
  if (k >= 0) into[k] = (into[k] as number) + amount;
}

/** Pass 1: the load one request puts on each interval. Mirrors {@link RequestShareBuilder}. */
function loadRequest(grid: IntervalGrid, g: RequestGeometry, load: IntervalLoad): void {
  const { startMs: s, endMs: e, firstTokenMs: f } = g;
  if (e > s) {
    if (f === null) {
      spread(grid, s, e, (g.prefillWork + g.decodeWork) / (e - s), load);
      return;
    }
    if (f > s) spread(grid, s, f, g.prefillWork / (f - s), load);
    else if (g.prefillWork > 0) addPoint(load.work, intervalAtStart(grid, s), g.prefillWork);
    if (e > f) spread(grid, f, e, g.decodeWork / (e - f), load);
    else if (g.decodeWork > 0) addPoint(load.work, intervalAtEnd(grid, e), g.decodeWork);
    return;
  }
  const work = g.prefillWork + g.decodeWork;
  if (work > 0) addPoint(load.work, intervalAtStart(grid, s), work);
  else addPoint(load.zeroCount, intervalAtStart(grid, s), 1);
}

/** Pass 2: one request's share of one GPU, accumulated phase by phase. */
class RequestShareBuilder {
  staticPrefill = 0;
  staticDecode = 0;
  dynamicPrefill = 0;
  dynamicDecode = 0;
  coveredMs = 0;
  estimated = false;
  // scratch of the last segment or point
  private segStatic = 0;
  private segDynamic = 0;

  constructor(
    private readonly grid: IntervalGrid,
    private readonly rates: IntervalRates,
    private readonly periodStartMs: number,
    private readonly periodEndMs: number,
  ) {}

  /** Time-and-work segment [x, y) with work density rho (per ms). */
  private segment(x: number, y: number, rho: number): void {
    const { grid, rates } = this;
    let st = 0;
    let dy = 0;
    for (let k = firstEndingAfter(grid, x, false); k < grid.n && (grid.start[k] as number) < y; k += 1) {
      const overlap = Math.min(grid.end[k] as number, y) - Math.max(grid.start[k] as number, x);
      st += (rates.staticPerMs[k] as number) * overlap;
      dy += (rates.dynamicPerMs[k] as number) * overlap + (rates.dynamicPerWork[k] as number) * (rho * overlap);
      this.coveredMs += overlap;
      if (grid.estimated[k] === 1) this.estimated = true;
    }
    this.segStatic = st;
    this.segDynamic = dy;
  }

  /**
   * Point mass of `work` at t (`endSide`: the (a, b] convention). Outside every interval it receives
   * nothing; if t is inside this period that means no energy data covered it, so the share is flagged.
   */
  private point(t: number, endSide: boolean, work: number): void {
    this.segStatic = 0;
    this.segDynamic = 0;
    const k = endSide ? intervalAtEnd(this.grid, t) : intervalAtStart(this.grid, t);
    if (k < 0) {
      const inPeriod = endSide
        ? t > this.periodStartMs && t <= this.periodEndMs
        : t >= this.periodStartMs && t < this.periodEndMs;
      if (inPeriod) this.estimated = true;
      return;
    }
    const { rates } = this;
    if (work > 0) {
      this.segStatic = (rates.staticPerWork[k] as number) * work;
      this.segDynamic = (rates.dynamicPerWork[k] as number) * work;
    } else {
      this.segStatic = rates.staticPerZero[k] as number;
      this.segDynamic = rates.dynamicPerZero[k] as number;
    }
    if (this.grid.estimated[k] === 1) this.estimated = true;
  }

  /** Start over for another request. */
  reset(): void {
    this.staticPrefill = 0;
    this.staticDecode = 0;
    this.dynamicPrefill = 0;
    this.dynamicDecode = 0;
    this.coveredMs = 0;
    this.estimated = false;
  }

  private toPrefill(): void {
    this.staticPrefill += this.segStatic;
    this.dynamicPrefill += this.segDynamic;
  }

  private toDecode(): void {
    this.staticDecode += this.segStatic;
    this.dynamicDecode += this.segDynamic;
  }

  private toBoth(prefillFraction: number): void {
    const staticPrefill = this.segStatic * prefillFraction;
    const dynamicPrefill = this.segDynamic * prefillFraction;
    this.staticPrefill += staticPrefill;
    this.staticDecode += this.segStatic - staticPrefill;
    this.dynamicPrefill += dynamicPrefill;
    this.dynamicDecode += this.segDynamic - dynamicPrefill;
  }

  add(g: RequestGeometry): void {
    const { startMs: s, endMs: e, firstTokenMs: f } = g;
    if (e > s) {
      if (f === null) {
        this.segment(s, e, (g.prefillWork + g.decodeWork) / (e - s));
        this.toBoth(g.prefillFraction);
        return;
      }
      if (f > s) {
        this.segment(s, f, g.prefillWork / (f - s));
        this.toPrefill();
      } else if (g.prefillWork > 0) {
        this.point(s, false, g.prefillWork);
        this.toPrefill();
      }
      if (e > f) {
        this.segment(f, e, g.decodeWork / (e - f));
        this.toDecode();
      } else if (g.decodeWork > 0) {
        this.point(e, true, g.decodeWork);
        this.toDecode();
      }
      return;
    }
    this.point(s, false, g.prefillWork + g.decodeWork);
    this.toBoth(g.prefillFraction);
  }
}

/**
 * Integral over time of the number of requests active on one GPU, from the request boundaries
 * (clipped to the period), so that any request's concurrency integral is two lookups.
 */
class ConcurrencyIndex {
  private readonly startPrefix: Float64Array;
  private readonly endPrefix: Float64Array;

  /** `starts` and `ends` (relative to the period start) are sorted in place. */
  constructor(
    private readonly starts: Float64Array,
    private readonly ends: Float64Array,
  ) {
    starts.sort();
    ends.sort();
    this.startPrefix = prefixSums(starts);
    this.endPrefix = prefixSums(ends);
  }

  /** Integral of the count of active requests from the period start to t (t relative to the period start). */
  private integralTo(t: number): number {
    const ns = upperBound(this.starts, t);
    const ne = upperBound(this.ends, t);
    return ns * t - (this.startPrefix[ns] as number) - (ne * t - (this.endPrefix[ne] as number));
  }

  /** Integral of the count of active requests over [x, y) (relative to the period start). */
  integral(x: number, y: number): number {
    return y > x ? Math.max(0, this.integralTo(y) - this.integralTo(x)) : 0;
  }
}

function prefixSums(values: Float64Array): Float64Array {
  const out = new Float64Array(values.length + 1);
  for (let i = 0; i < values.length; i += 1) out[i + 1] = (out[i] as number) + (values[i] as number);
  return out;
}

/** Number of values <= t in a sorted array. */
function upperBound(values: Float64Array, t: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((values[mid] as number) <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function usableBaseline(baseline: Watts | null): number | null {
  return baseline !== null && Number.isFinite(baseline) && baseline >= 0 ? baseline : null;
}

/** Settle one GPU over [p0, p1) given the requests that run on it (in canonical order). */
function settleGpu(
  gpu: GpuPeriodInput,
  requests: readonly RequestGeometry[],
  p0: number,
  p1: number,
  config: AttributionConfig,
): { totals: GpuPeriodTotals; shares: RequestPeriodShare[] } {
  const timeline = buildEnergyTimeline(gpu.samples, config);
  let counterResets = 0;
  let gaps = 0;
  const sliced: EnergyInterval[] = [];
  for (const interval of timeline.intervals) {
    // Flags are counted once, in the period where the interval starts.
    if (interval.startMs >= p0 && interval.startMs < p1) {
      if (interval.counterReset) counterResets += 1;
      if (interval.gap) gaps += 1;
    }
    // Cut at the period bounds and on the attribution grid.
    const hi = Math.min(interval.endMs, p1);
    for (let from = Math.max(interval.startMs, p0); from < hi; ) {
      const to = Math.min(hi, (Math.floor(from / ATTRIBUTION_GRID_MS) + 1) * ATTRIBUTION_GRID_MS);
      const part = sliceInterval(interval, from, to);
      if (part) sliced.push(part);
      from = to;
    }
  }
  for (const stretch of timeline.uncovered) {
    if (stretch.startMs >= p0 && stretch.startMs < p1) {
      gaps += 1;
      if (stretch.counterReset) counterResets += 1;
    }
  }
  let samples = 0;
  for (const sample of gpu.samples) if (sample.timestampMs >= p0 && sample.timestampMs < p1) samples += 1;

  const grid = gridOf(sliced);
  const { n } = grid;
  const load: IntervalLoad = { time: new Float64Array(n), work: new Float64Array(n), zeroCount: new Float64Array(n) };
  for (const g of requests) loadRequest(grid, g, load);

  const rates: IntervalRates = {
    staticPerMs: new Float64Array(n),
    dynamicPerMs: new Float64Array(n),
    dynamicPerWork: new Float64Array(n),
    staticPerWork: new Float64Array(n),
    staticPerZero: new Float64Array(n),
    dynamicPerZero: new Float64Array(n),
  };
  const baseline = usableBaseline(gpu.idleBaselineW);
  let measured = 0;
  let idle = 0;
  let unattributed = 0;
  let estimatedJ = 0;
  let coveredMs = 0;
  let idleMs = 0;
  let cleanIdleJ = 0;
  let cleanIdleMs = 0;
  for (let k = 0; k < n; k += 1) {
    const energy = grid.energy[k] as number;
    const dt = (grid.end[k] as number) - (grid.start[k] as number);
    const estimated = grid.estimated[k] === 1;
    measured += energy;
    if (estimated) estimatedJ += energy;
    // Coverage: time with samples no further apart than the gap threshold.
    if (!(sliced[k] as EnergyInterval).gap) coveredMs += dt;
    if (grid.unattributable[k] === 1) {
      unattributed += energy;
      continue;
    }
    const time = load.time[k] as number;
    const work = load.work[k] as number;
    const zero = load.zeroCount[k] as number;
    if (time === 0 && work === 0 && zero === 0) {
      idle += energy;
      idleMs += dt;
      if (!estimated) {
        cleanIdleJ += energy;
        cleanIdleMs += dt;
      }
      continue;
    }
    const staticJ = baseline === null ? 0 : Math.min((baseline * dt) / 1000, energy);
    const dynamicJ = energy - staticJ;
    if (time > 0) {
      rates.staticPerMs[k] = staticJ / time;
      if (work > 0) rates.dynamicPerWork[k] = dynamicJ / work;
      else rates.dynamicPerMs[k] = dynamicJ / time;
    } else if (work > 0) {
      rates.staticPerWork[k] = staticJ / work;
      rates.dynamicPerWork[k] = dynamicJ / work;
    } else {
      rates.staticPerZero[k] = staticJ / zero;
      rates.dynamicPerZero[k] = dynamicJ / zero;
    }
  }

  // Concurrency over the whole period (uncovered time included), relative to p0.
  let spans = 0;
  const starts = new Float64Array(requests.length);
  const ends = new Float64Array(requests.length);
  for (const g of requests) {
    const x = Math.max(g.startMs, p0);
    const y = Math.min(g.endMs, p1);
    if (y > x) {
      starts[spans] = x - p0;
      ends[spans] = y - p0;
      spans += 1;
    }
  }
  const concurrency = new ConcurrencyIndex(starts.subarray(0, spans), ends.subarray(0, spans));

  const shares: RequestPeriodShare[] = [];
  let attributedStatic = 0;
  let attributedDynamic = 0;
  const builder = new RequestShareBuilder(grid, rates, p0, p1);
  for (const g of requests) {
    const x = Math.max(g.startMs, p0);
    const y = Math.min(g.endMs, p1);
    const activeMs = y > x ? y - x : 0;
    const pointInPeriod = g.endMs === g.startMs && g.startMs >= p0 && g.startMs < p1;
    if (activeMs === 0 && !pointInPeriod) continue;
    builder.reset();
    builder.add(g);
    const staticJ = builder.staticPrefill + builder.staticDecode;
    const dynamicJ = builder.dynamicPrefill + builder.dynamicDecode;
    attributedStatic += staticJ;
    attributedDynamic += dynamicJ;
    shares.push({
      requestId: g.record.requestId,
      gpuUuid: gpu.gpuUuid,
      staticJ: joules(staticJ),
      dynamicJ: joules(dynamicJ),
      prefillJ: joules(builder.staticPrefill + builder.dynamicPrefill),
      decodeJ: joules(builder.staticDecode + builder.dynamicDecode),
      activeMs,
      concurrencyMs: concurrency.integral(x - p0, y - p0),
      // Part of its time had no energy data at all: its total is incomplete.
      estimated: builder.estimated || builder.coveredMs < activeMs * (1 - 1e-12),
    });
  }

  const totals: GpuPeriodTotals = {
    gpuUuid: gpu.gpuUuid,
    gpuIndex: gpu.gpuIndex,
    measuredJ: joules(measured),
    idleJ: joules(idle),
    staticJ: joules(attributedStatic),
    dynamicJ: joules(attributedDynamic),
    unattributedJ: joules(unattributed),
    residualJ: joules(measured - (idle + attributedStatic + attributedDynamic + unattributed)),
    estimatedJ: joules(estimatedJ),
    coveredMs,
    counterResets,
    gaps,
    samples,
    idleBaselineW: baseline === null ? null : watts(baseline),
    observedIdlePowerW: cleanIdleMs > 0 ? watts((cleanIdleJ * 1000) / cleanIdleMs) : null,
    idleMs,
  };
  return { totals, shares };
}

/**
 * Settle one period on every GPU of `input` (see the module comment for the method).
 * Requests are matched to GPUs by UUID; a GPU a request names that is not in `input.gpus` gets no
 * share of it. Pure and deterministic: same input (in any request order), same output.
 */
export function settlePeriod(input: SettlePeriodInput): PeriodSettlement {
  const p0 = input.periodStartMs;
  const p1 = input.periodEndMs;
  // A canonical order (start, end, id) makes floating point sums independent of the input order.
  const ordered = input.requests
    .filter((r) => Number.isFinite(r.startMs) && Number.isFinite(r.endMs))
    .sort((x, y) => x.startMs - y.startMs || x.endMs - y.endMs || (x.requestId < y.requestId ? -1 : x.requestId > y.requestId ? 1 : 0));
  const byGpu = new Map<string, RequestGeometry[]>();
  for (const gpu of input.gpus) byGpu.set(gpu.gpuUuid, []);
  const seenIds = new Set<string>();
  for (const record of ordered) {
    if (seenIds.has(record.requestId)) continue; // one request_id is one request (idempotency key)
    seenIds.add(record.requestId);
    const geometry = geometryOf(record, input.config);
    const { gpus } = record;
    for (let i = 0; i < gpus.length; i += 1) {
      const uuid = gpus[i] as string;
      if (gpus.indexOf(uuid) === i) byGpu.get(uuid)?.push(geometry);
    }
  }
  const gpus: GpuPeriodTotals[] = [];
  const shares: RequestPeriodShare[] = [];
  const seen = new Set<string>();
  for (const gpu of input.gpus) {
    if (seen.has(gpu.gpuUuid)) continue; // a GPU listed twice is measured once
    seen.add(gpu.gpuUuid);
    const settled = settleGpu(gpu, byGpu.get(gpu.gpuUuid) ?? [], p0, p1, input.config);
    gpus.push(settled.totals);
    for (const share of settled.shares) shares.push(share);
  }
  return { periodStartMs: input.periodStartMs, periodEndMs: input.periodEndMs, gpus, shares };
}
