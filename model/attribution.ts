import type {
  AttributionConfig,
  EnergyInterval,
  GpuPeriodInput,
  GpuPeriodTotals,
  PeriodSettlement,
  RequestPeriodShare,
  SettlePeriodInput,
} from './attribution-types.js';
import { addCompensated, compensatedPrefixSums, rangeSum, type CompensatedPrefix } from './compensated-sum.js';
import { buildEnergyTimeline, slicedEnergyJ } from './energy-timeline.js';
import { ScratchArrays } from './scratch-arrays.js';
import { SortedLookup } from './sorted-lookup.js';
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
 * Energy of time before the period that earlier periods could not count (their closing sample came
 * after they were settled: `countedUntilMs` of the GPU input) is counted in this period as
 * unattributed and estimated, so that no joule is lost and the periods' measured energy adds up to
 * the energy counter's increase.
 *
 * Per GPU the totals also report data quality: estimatedJ (energy of estimated intervals), coveredMs
 * (time in intervals that are not gaps), gaps and counterResets (each interval or uncovered stretch
 * counted once, in the period holding its start or else the one its energy is carried into), and
 * observedIdlePowerW: the mean power of the idle time whose energy is not estimated, which is what
 * the idle baseline is learned from (idleMs counts all idle time).
 *
 * Per request and GPU it also reports active time and the integral of the number of requests active
 * on that GPU over the request's active time (exact, from the request boundaries, uncovered time
 * included); their ratio is the observed batch size.
 *
 * Cost per GPU, for R requests and n intervals: O(R log R) to sort, then O(n + R) expected: each
 * request's spans are placed on the intervals by rank lookups (bucketed: O(1) expected, O(log n) at
 * worst), their two partly covered end intervals are handled one by one and the fully covered ones
 * in between in O(1) (range counts in pass 1, compensated prefix sums in pass 2), so the cost does
 * not grow with how many intervals a request lasts. Results do not depend on the order of the
 * requests in the input: they are processed in (start, end, request_id) order, and a repeated
 * request_id is one request (the first in that order).
 */

const nonNegative = (value: number): number => (Number.isFinite(value) && value > 0 ? value : 0);

/**
 * Placement of the period's requests' work in time, one entry per request in canonical order, the
 * same for all its GPUs. Parallel typed arrays rather than an object per request: each fractional
 * number held in an object field is a heap allocation of its own, and those dominated settling many
 * short requests.
 */
class RequestTable {
  readonly records: ResolvedRequest[] = [];
  readonly startMs: Float64Array;
  readonly endMs: Float64Array;
  /** NaN when the request has no first token. */
  readonly firstTokenMs: Float64Array;
  readonly prefillWork: Float64Array;
  readonly decodeWork: Float64Array;
  /** Prefill's part of energy that cannot be placed in a phase (no firstToken, or zero length). */
  readonly prefillFraction: Float64Array;
  /** Work per ms over [start, end) when there is no firstToken (0 otherwise or when zero-length). */
  readonly wholeDensity: Float64Array;
  /** Work per ms over [start, firstToken) (0 when that is empty). */
  readonly prefillDensity: Float64Array;
  /** Work per ms over [firstToken, end) (0 when that is empty). */
  readonly decodeDensity: Float64Array;

  constructor(capacity: number) {
    this.startMs = new Float64Array(capacity);
    this.endMs = new Float64Array(capacity);
    this.firstTokenMs = new Float64Array(capacity);
    this.prefillWork = new Float64Array(capacity);
    this.decodeWork = new Float64Array(capacity);
    this.prefillFraction = new Float64Array(capacity);
    this.wholeDensity = new Float64Array(capacity);
    this.prefillDensity = new Float64Array(capacity);
    this.decodeDensity = new Float64Array(capacity);
  }

  /**
   * Append the work and timing of a request; returns its index. Records are validated at ingest;
   * here out-of-range values are clamped (end before start => zero length, firstToken outside
   * [start, end] => clamped) so a bad record can never break conservation.
   */
  add(record: ResolvedRequest, config: AttributionConfig): number {
    const r = this.records.length;
    this.records.push(record);
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
    const lasts = endMs > startMs;
    this.startMs[r] = startMs;
    this.endMs[r] = endMs;
    this.firstTokenMs[r] = firstTokenMs === null ? NaN : firstTokenMs;
    this.prefillWork[r] = prefillWork;
    this.decodeWork[r] = decodeWork;
    this.prefillFraction[r] = total > 0 ? prefillWork / total : completion > 0 ? 0 : 1;
    this.wholeDensity[r] = lasts && firstTokenMs === null ? (prefillWork + decodeWork) / (endMs - startMs) : 0;
    this.prefillDensity[r] = lasts && firstTokenMs !== null && firstTokenMs > startMs ? prefillWork / (firstTokenMs - startMs) : 0;
    this.decodeDensity[r] = lasts && firstTokenMs !== null && endMs > firstTokenMs ? decodeWork / (endMs - firstTokenMs) : 0;
    return r;
  }
}

/**
 * The requests on one GPU: indices into the period's {@link RequestTable}, in canonical order.
 * Per-GPU arrays (spans, shares) are indexed by position i in this list, not by table index.
 */
type GpuRequests = readonly number[];

/** Energy intervals as parallel typed arrays. */
interface IntervalPieces {
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly energy: Float64Array;
  readonly estimated: Uint8Array;
  readonly unattributable: Uint8Array;
  /** The piece belongs to a sampling gap (not counted as covered time). */
  readonly gap: Uint8Array;
}

/** The period's energy intervals of one GPU, sorted and disjoint. */
interface IntervalGrid extends IntervalPieces {
  readonly n: number;
  /** Rank lookups on `end` (sorted, as the pieces are disjoint). */
  readonly ends: SortedLookup;
}

/**
 * Cut the timeline's intervals at the period bounds and on the attribution grid, straight into
 * typed arrays (`into` null: only count the pieces). Returns the number of pieces.
 */
function cutIntervals(intervals: readonly EnergyInterval[], p0: number, p1: number, into: IntervalPieces | null, onGrid: boolean): number {
  let pieces = 0;
  for (const interval of intervals) {
    const hi = Math.min(interval.endMs, p1);
    for (let from = Math.max(interval.startMs, p0); from < hi; ) {
      const to = onGrid ? Math.min(hi, (Math.floor(from / ATTRIBUTION_GRID_MS) + 1) * ATTRIBUTION_GRID_MS) : hi;
      if (to > from) {
        if (into !== null) {
          into.start[pieces] = from;
          into.end[pieces] = to;
          into.energy[pieces] = slicedEnergyJ(interval, from, to);
          into.estimated[pieces] = interval.estimated ? 1 : 0;
          into.unattributable[pieces] = interval.unattributable ? 1 : 0;
          into.gap[pieces] = interval.gap ? 1 : 0;
        }
        pieces += 1;
      }
      from = to;
    }
  }
  return pieces;
}

/**
 * The pieces of [p0, p1): intervals cut at the period bounds and, when requests run on the GPU,
 * on the attribution grid. With no request every piece is idle or unattributed, which is linear in
 * an interval's energy, so whole intervals give the same sums: a long quiet stretch (a gap between
 * captures in `analyze`) then costs one piece per interval, not one per second.
 */
function gridOf(intervals: readonly EnergyInterval[], p0: number, p1: number, scratch: ScratchArrays, onGrid: boolean): IntervalGrid {
  const n = cutIntervals(intervals, p0, p1, null, onGrid);
  const pieces: IntervalPieces = {
    start: scratch.floats(n),
    end: scratch.floats(n),
    energy: scratch.floats(n),
    estimated: scratch.bytes(n),
    unattributable: scratch.bytes(n),
    gap: scratch.bytes(n),
  };
  cutIntervals(intervals, p0, p1, pieces, onGrid);
  // Spelled out, not spread: objects built by spreading do not share one shape, and every property
  // read on them in the hot loops would be a slow (megamorphic) lookup.
  return {
    n,
    start: pieces.start,
    end: pieces.end,
    energy: pieces.energy,
    estimated: pieces.estimated,
    unattributable: pieces.unattributable,
    gap: pieces.gap,
    ends: new SortedLookup(pieces.end, p0, p1, scratch.ints(Math.max(n, 1) + 1)),
  };
}

/** First k with end[k] > t (or >= t when `inclusive`); n when none. */
function firstEndingAfter(grid: IntervalGrid, t: number, inclusive: boolean): number {
  return inclusive ? grid.ends.countBelow(t) : grid.ends.countAtMost(t);
}

/**
 * First k with start[k] >= t, given k0 = {@link firstEndingAfter}(t): every interval before k0 ends
 * by t (so starts before it), and the one after k0 starts at or after end[k0] > t.
 */
function firstStartingFrom(grid: IntervalGrid, t: number, k0: number): number {
  return k0 < grid.n && (grid.start[k0] as number) < t ? k0 + 1 : k0;
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

/**
 * The intervals each request's spans overlap on one GPU: request i's first span ([start, end)
 * without firstToken, else [start, firstToken)) overlaps intervals [from[2i], to[2i]), its decode
 * span [firstToken, end) intervals [from[2i+1], to[2i+1]); an empty span has from = to. Only the
 * first and last of a range can be partly covered.
 */
interface SpanPlacement {
  readonly from: Int32Array;
  readonly to: Int32Array;
}

/**
 * Place every request's spans on the grid. `requests` are in canonical order, so their starts
 * only grow and the interval holding each start is found by walking forward.
 */
function placeSpans(grid: IntervalGrid, table: RequestTable, onGpu: GpuRequests, scratch: ScratchArrays): SpanPlacement {
  const from = scratch.ints(2 * onGpu.length);
  const to = scratch.ints(2 * onGpu.length);
  let atStart = 0; // first k with end[k] > the request's start
  for (let i = 0; i < onGpu.length; i += 1) {
    const r = onGpu[i] as number;
    const s = table.startMs[r] as number;
    const e = table.endMs[r] as number;
    const f = table.firstTokenMs[r] as number;
    while (atStart < grid.n && (grid.end[atStart] as number) <= s) atStart += 1;
    if (!(e > s)) continue;
    const endStart = firstStartingFrom(grid, e, firstEndingAfter(grid, e, false));
    if (Number.isNaN(f)) {
      from[2 * i] = atStart;
      to[2 * i] = Math.max(atStart, endStart);
      continue;
    }
    const atFirstToken = firstEndingAfter(grid, f, false); // s <= f <= e and s < e: one of the spans is not empty
    if (f > s) {
      from[2 * i] = atStart;
      to[2 * i] = Math.max(atStart, firstStartingFrom(grid, f, atFirstToken));
    }
    if (e > f) {
      from[2 * i + 1] = atFirstToken;
      to[2 * i + 1] = Math.max(atFirstToken, endStart);
    }
  }
  return { from, to };
}

/** Pass 1 totals per interval: requests' time (T), work (W), zero-length zero-work requests (Z). */
interface IntervalLoad {
  readonly time: Float64Array;
  readonly work: Float64Array;
  readonly zeroCount: Float64Array;
}

/**
 * Pass 1 bookkeeping of the fully covered intervals, as differences at the first covered interval
 * and just after the last: spans covering (count), spans with work covering (positive), and the sum
 * of their work densities (compensated, as densities are added and taken away again).
 */
interface FullCover {
  readonly count: Int32Array;
  readonly positive: Int32Array;
  readonly densityHigh: Float64Array;
  readonly densityLow: Float64Array;
}

/** Add the time of [x, y), and work at density rho (per ms) over it, to the intervals [a, b) it overlaps. */
function spread(grid: IntervalGrid, a: number, b: number, x: number, y: number, rho: number, load: IntervalLoad, full: FullCover): void {
  if (b <= a) return;
  const { time, work } = load;
  const last = b - 1;
  const firstOverlap = Math.min(grid.end[a] as number, y) - Math.max(grid.start[a] as number, x);
  time[a] = (time[a] as number) + firstOverlap;
  if (rho > 0) work[a] = (work[a] as number) + rho * firstOverlap;
  if (last === a) return;
  const lastOverlap = Math.min(grid.end[last] as number, y) - Math.max(grid.start[last] as number, x);
  time[last] = (time[last] as number) + lastOverlap;
  if (rho > 0) work[last] = (work[last] as number) + rho * lastOverlap;
  if (last === a + 1) return;
  // (a, last) are covered in full: counted once here, multiplied out per interval after all requests.
  full.count[a + 1] = (full.count[a + 1] as number) + 1;
  full.count[last] = (full.count[last] as number) - 1;
  if (rho > 0) {
    full.positive[a + 1] = (full.positive[a + 1] as number) + 1;
    full.positive[last] = (full.positive[last] as number) - 1;
    addCompensated(full.densityHigh, full.densityLow, a + 1, rho);
    addCompensated(full.densityHigh, full.densityLow, last, -rho);
  }
}

function addPoint(into: Float64Array, k: number, amount: number): void {
  if (k >= 0) into[k] = (into[k] as number) + amount;
}

/** Pass 1: the load one request puts on each interval. Mirrors {@link RequestShareBuilder}. */
function loadRequest(grid: IntervalGrid, table: RequestTable, r: number, spans: SpanPlacement, i: number, load: IntervalLoad, full: FullCover): void {
  const s = table.startMs[r] as number;
  const e = table.endMs[r] as number;
  const f = table.firstTokenMs[r] as number;
  const prefillWork = table.prefillWork[r] as number;
  const decodeWork = table.decodeWork[r] as number;
  const { from, to } = spans;
  if (e > s) {
    if (Number.isNaN(f)) {
      spread(grid, from[2 * i] as number, to[2 * i] as number, s, e, table.wholeDensity[r] as number, load, full);
      return;
    }
    if (f > s) spread(grid, from[2 * i] as number, to[2 * i] as number, s, f, table.prefillDensity[r] as number, load, full);
    else if (prefillWork > 0) addPoint(load.work, intervalAtStart(grid, s), prefillWork);
    if (e > f) spread(grid, from[2 * i + 1] as number, to[2 * i + 1] as number, f, e, table.decodeDensity[r] as number, load, full);
    else if (decodeWork > 0) addPoint(load.work, intervalAtEnd(grid, e), decodeWork);
    return;
  }
  const work = prefillWork + decodeWork;
  if (work > 0) addPoint(load.work, intervalAtStart(grid, s), work);
  else addPoint(load.zeroCount, intervalAtStart(grid, s), 1);
}

/**
 * Sum of the work densities of the spans that cover interval k in full, added one by one: the
 * fallback for when the compensated running sum cannot be trusted to be positive (densities many
 * orders of magnitude apart).
 */
function fullCoverDensity(k: number, table: RequestTable, onGpu: GpuRequests, spans: SpanPlacement): number {
  let sum = 0;
  for (let i = 0; i < onGpu.length; i += 1) {
    const r = onGpu[i] as number;
    for (let side = 0; side < 2; side += 1) {
      const a = spans.from[2 * i + side] as number;
      const b = spans.to[2 * i + side] as number;
      if (a < k && k < b - 1) {
        const density = Number.isNaN(table.firstTokenMs[r] as number) ? table.wholeDensity : side === 0 ? table.prefillDensity : table.decodeDensity;
        sum += density[r] as number;
      }
    }
  }
  return sum;
}

/** Pass 1, for all requests: the time and work each interval carries. */
function loadAll(grid: IntervalGrid, table: RequestTable, onGpu: GpuRequests, spans: SpanPlacement, scratch: ScratchArrays): IntervalLoad {
  const { n } = grid;
  const load: IntervalLoad = { time: scratch.floats(n), work: scratch.floats(n), zeroCount: scratch.floats(n) };
  const full: FullCover = {
    count: scratch.ints(n + 1),
    positive: scratch.ints(n + 1),
    densityHigh: scratch.floats(n + 1),
    densityLow: scratch.floats(n + 1),
  };
  for (let i = 0; i < onGpu.length; i += 1) loadRequest(grid, table, onGpu[i] as number, spans, i, load, full);
  let count = 0;
  let positive = 0;
  let densityHigh = 0;
  let densityLow = 0;
  for (let k = 0; k < n; k += 1) {
    count += full.count[k] as number;
    positive += full.positive[k] as number;
    if (positive === 0) {
      // No span with work covers k: exactly zero, and no rounding carried past here.
      densityHigh = 0;
      densityLow = 0;
    } else {
      const add = full.densityHigh[k] as number;
      const next = densityHigh + add;
      const addPart = next - densityHigh;
      densityLow += densityHigh - (next - addPart) + (add - addPart) + (full.densityLow[k] as number);
      densityHigh = next;
    }
    if (count === 0) continue;
    const dt = (grid.end[k] as number) - (grid.start[k] as number);
    load.time[k] = (load.time[k] as number) + count * dt;
    if (positive > 0) {
      let density = densityHigh + densityLow;
      if (!(density > 0)) density = fullCoverDensity(k, table, onGpu, spans);
      load.work[k] = (load.work[k] as number) + density * dt;
    }
  }
  return load;
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

/**
 * Pass 2 sums over runs of fully covered intervals: what a span covering them receives (static per
 * ms x duration, dynamic per ms x duration, dynamic per work x duration, to be scaled by the span's
 * density), their duration, and how many are estimated.
 */
interface FullCoverSums {
  readonly staticByTime: CompensatedPrefix;
  readonly dynamicByTime: CompensatedPrefix;
  readonly dynamicByWork: CompensatedPrefix;
  readonly duration: CompensatedPrefix;
  readonly estimatedCount: Int32Array;
}

function fullCoverSums(grid: IntervalGrid, rates: IntervalRates, scratch: ScratchArrays): FullCoverSums {
  const { n } = grid;
  const staticByTime = scratch.floats(n);
  const dynamicByTime = scratch.floats(n);
  const dynamicByWork = scratch.floats(n);
  const duration = scratch.floats(n);
  const estimatedCount = scratch.ints(n + 1);
  for (let k = 0; k < n; k += 1) {
    const dt = (grid.end[k] as number) - (grid.start[k] as number);
    staticByTime[k] = (rates.staticPerMs[k] as number) * dt;
    dynamicByTime[k] = (rates.dynamicPerMs[k] as number) * dt;
    dynamicByWork[k] = (rates.dynamicPerWork[k] as number) * dt;
    duration[k] = dt;
    estimatedCount[k + 1] = (estimatedCount[k] as number) + (grid.estimated[k] as number);
  }
  return {
    staticByTime: compensatedPrefixSums(staticByTime, n, scratch.floats(n + 1), scratch.floats(n + 1)),
    dynamicByTime: compensatedPrefixSums(dynamicByTime, n, scratch.floats(n + 1), scratch.floats(n + 1)),
    dynamicByWork: compensatedPrefixSums(dynamicByWork, n, scratch.floats(n + 1), scratch.floats(n + 1)),
    duration: compensatedPrefixSums(duration, n, scratch.floats(n + 1), scratch.floats(n + 1)),
    estimatedCount,
  };
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
    private readonly sums: FullCoverSums,
    private readonly spans: SpanPlacement,
    private readonly periodStartMs: number,
    private readonly periodEndMs: number,
  ) {}

  /** Share of interval k of a span [x, y) with work density rho, added to the segment scratch. */
  private overlapOf(k: number, x: number, y: number, rho: number): void {
    const { grid, rates } = this;
    const overlap = Math.min(grid.end[k] as number, y) - Math.max(grid.start[k] as number, x);
    this.segStatic += (rates.staticPerMs[k] as number) * overlap;
    this.segDynamic += (rates.dynamicPerMs[k] as number) * overlap + (rates.dynamicPerWork[k] as number) * (rho * overlap);
    this.coveredMs += overlap;
    if (grid.estimated[k] === 1) this.estimated = true;
  }

  /** Time-and-work segment [x, y) with work density rho (per ms), over the intervals of span slot `slot`. */
  private segment(slot: number, x: number, y: number, rho: number): void {
    this.segStatic = 0;
    this.segDynamic = 0;
    const a = this.spans.from[slot] as number;
    const b = this.spans.to[slot] as number;
    if (b <= a) return;
    const last = b - 1;
    this.overlapOf(a, x, y, rho);
    if (last === a) return;
    this.overlapOf(last, x, y, rho);
    if (last === a + 1) return;
    // The intervals strictly between are covered in full: their sums are prefix differences.
    const { sums } = this;
    const inner = a + 1;
    this.segStatic += Math.max(0, rangeSum(sums.staticByTime, inner, last));
    this.segDynamic += Math.max(0, rangeSum(sums.dynamicByTime, inner, last)) + rho * Math.max(0, rangeSum(sums.dynamicByWork, inner, last));
    this.coveredMs += rangeSum(sums.duration, inner, last);
    if ((sums.estimatedCount[last] as number) > (sums.estimatedCount[inner] as number)) this.estimated = true;
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

  /** Add request r of the table, the i-th on this GPU (its spans are slots 2i and 2i + 1). */
  add(table: RequestTable, r: number, i: number): void {
    const s = table.startMs[r] as number;
    const e = table.endMs[r] as number;
    const f = table.firstTokenMs[r] as number;
    const prefillWork = table.prefillWork[r] as number;
    const decodeWork = table.decodeWork[r] as number;
    if (e > s) {
      if (Number.isNaN(f)) {
        this.segment(2 * i, s, e, table.wholeDensity[r] as number);
        this.toBoth(table.prefillFraction[r] as number);
        return;
      }
      if (f > s) {
        this.segment(2 * i, s, f, table.prefillDensity[r] as number);
        this.toPrefill();
      } else if (prefillWork > 0) {
        this.point(s, false, prefillWork);
        this.toPrefill();
      }
      if (e > f) {
        this.segment(2 * i + 1, f, e, table.decodeDensity[r] as number);
        this.toDecode();
      } else if (decodeWork > 0) {
        this.point(e, true, decodeWork);
        this.toDecode();
      }
      return;
    }
    this.point(s, false, prefillWork + decodeWork);
    this.toBoth(table.prefillFraction[r] as number);
  }
}

/**
 * Integral over time of the number of requests active on one GPU, from the request boundaries
 * (clipped to the period), so that any request's concurrency integral is a few lookups.
 */
class ConcurrencyIndex {
  private readonly startPrefix: Float64Array;
  private readonly endPrefix: Float64Array;
  private readonly startLookup: SortedLookup;
  private readonly endLookup: SortedLookup;
  // Counts of starts and ends <= the last x asked (x only grows from call to call).
  private startsUpToFrom = 0;
  private endsUpToFrom = 0;

  /**
   * `starts` must be sorted; `ends` is sorted in place (both relative to the period start, within
   * [0, periodMs]).
   */
  constructor(
    private readonly starts: Float64Array,
    private readonly ends: Float64Array,
    periodMs: number,
    scratch: ScratchArrays,
  ) {
    ends.sort();
    this.startPrefix = prefixSums(starts, scratch);
    this.endPrefix = prefixSums(ends, scratch);
    this.startLookup = new SortedLookup(starts, 0, periodMs, scratch.ints(Math.max(starts.length, 1) + 1));
    this.endLookup = new SortedLookup(ends, 0, periodMs, scratch.ints(Math.max(ends.length, 1) + 1));
  }

  /** Integral of the count of active requests from the period start to t, given how many starts and ends are <= t. */
  private integralTo(t: number, startsUpTo: number, endsUpTo: number): number {
    return startsUpTo * t - (this.startPrefix[startsUpTo] as number) - (endsUpTo * t - (this.endPrefix[endsUpTo] as number));
  }

  /**
   * Integral of the count of active requests over [x, y) (relative to the period start). Calls must
   * come with x not decreasing (requests in canonical order), so the counts at x are found by
   * walking forward instead of searching.
   */
  integralFrom(x: number, y: number): number {
    if (!(y > x)) return 0;
    const { starts, ends } = this;
    while (this.startsUpToFrom < starts.length && (starts[this.startsUpToFrom] as number) <= x) this.startsUpToFrom += 1;
    while (this.endsUpToFrom < ends.length && (ends[this.endsUpToFrom] as number) <= x) this.endsUpToFrom += 1;
    const atY = this.integralTo(y, this.startLookup.countAtMost(y), this.endLookup.countAtMost(y));
    return Math.max(0, atY - this.integralTo(x, this.startsUpToFrom, this.endsUpToFrom));
  }
}

/**
 * Each request's concurrency integral over its active time in [p0, p1), by position in `onGpu` (0
 * for one not active in the period). It depends only on the requests, not on the GPU's samples, so
 * GPUs running the same requests (a tensor-parallel replica) share one result.
 */
function concurrencyOf(table: RequestTable, onGpu: GpuRequests, p0: number, p1: number, scratch: ScratchArrays): Float64Array {
  // Relative to p0, uncovered time included. The requests are in canonical order, so the clipped
  // starts are already sorted.
  let activeInPeriod = 0;
  const starts = scratch.floats(onGpu.length);
  const ends = scratch.floats(onGpu.length);
  for (const r of onGpu) {
    const x = Math.max(table.startMs[r] as number, p0);
    const y = Math.min(table.endMs[r] as number, p1);
    if (y > x) {
      starts[activeInPeriod] = x - p0;
      ends[activeInPeriod] = y - p0;
      activeInPeriod += 1;
    }
  }
  const index = new ConcurrencyIndex(starts.subarray(0, activeInPeriod), ends.subarray(0, activeInPeriod), p1 - p0, scratch);
  // Kept across GPUs, so not from the scratch arrays.
  const concurrencyMs = new Float64Array(onGpu.length);
  for (let i = 0; i < onGpu.length; i += 1) {
    const r = onGpu[i] as number;
    const x = Math.max(table.startMs[r] as number, p0);
    const y = Math.min(table.endMs[r] as number, p1);
    concurrencyMs[i] = index.integralFrom(x - p0, y - p0);
  }
  return concurrencyMs;
}

function prefixSums(values: Float64Array, scratch: ScratchArrays): Float64Array {
  const out = scratch.floats(values.length + 1);
  for (let i = 0; i < values.length; i += 1) out[i + 1] = (out[i] as number) + (values[i] as number);
  return out;
}

function usableBaseline(baseline: Watts | null): number | null {
  return baseline !== null && Number.isFinite(baseline) && baseline >= 0 ? baseline : null;
}

/**
 * Settle one GPU over [p0, p1) given the requests that run on it (in canonical order) and their
 * {@link concurrencyOf}.
 */
function settleGpu(
  gpu: GpuPeriodInput,
  table: RequestTable,
  onGpu: GpuRequests,
  concurrencyMs: Float64Array,
  p0: number,
  p1: number,
  config: AttributionConfig,
  scratch: ScratchArrays,
): { totals: GpuPeriodTotals; shares: RequestPeriodShare[] } {
  const timeline = buildEnergyTimeline(gpu.samples, config, gpu.counterHighWater ?? null);
  // Energy of [carryFrom, p0) was not counted by the periods it lies in: they were settled before
  // the sample closing it existed. It is counted here (see GpuPeriodInput.countedUntilMs).
  const carryFrom = gpu.countedUntilMs !== undefined && Number.isFinite(gpu.countedUntilMs) && gpu.countedUntilMs < p0 ? gpu.countedUntilMs : p0;
  let counterResets = 0;
  let gaps = 0;
  let carriedJ = 0;
  for (const interval of timeline.intervals) {
    // Flags are counted once, in the period where the interval starts (or, when it closed only after
    // that period was settled, in the period its energy is carried into).
    if (interval.startMs >= carryFrom && interval.startMs < p1) {
      if (interval.counterReset) counterResets += 1;
      if (interval.gap) gaps += 1;
    }
    const hi = Math.min(interval.endMs, p0);
    const lo = Math.max(interval.startMs, carryFrom);
    if (hi > lo) carriedJ += slicedEnergyJ(interval, lo, hi);
  }
  for (const stretch of timeline.uncovered) {
    if (stretch.startMs >= carryFrom && stretch.startMs < p1) {
      gaps += 1;
      if (stretch.counterReset) counterResets += 1;
    }
  }
  // Samples of the carried stretch after its start (a sample at carryFrom was counted with its own period).
  let samples = 0;
  for (const sample of gpu.samples) {
    const t = sample.timestampMs;
    if ((t >= p0 && t < p1) || (t > carryFrom && t < p0)) samples += 1;
  }

  // Cut at the period bounds and, where requests run, on the attribution grid.
  const grid = gridOf(timeline.intervals, p0, p1, scratch, onGpu.length > 0);
  const { n } = grid;
  const spans = placeSpans(grid, table, onGpu, scratch);
  const load = loadAll(grid, table, onGpu, spans, scratch);

  const rates: IntervalRates = {
    staticPerMs: scratch.floats(n),
    dynamicPerMs: scratch.floats(n),
    dynamicPerWork: scratch.floats(n),
    staticPerWork: scratch.floats(n),
    staticPerZero: scratch.floats(n),
    dynamicPerZero: scratch.floats(n),
  };
  const baseline = usableBaseline(gpu.idleBaselineW);
  // Carried energy is not attributed: the requests of its time were settled with their periods.
  let measured = carriedJ;
  let idle = 0;
  let unattributed = carriedJ;
  let estimatedJ = carriedJ;
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
    if (grid.gap[k] === 0) coveredMs += dt;
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

  const shares: RequestPeriodShare[] = [];
  let attributedStatic = 0;
  let attributedDynamic = 0;
  const builder = new RequestShareBuilder(grid, rates, fullCoverSums(grid, rates, scratch), spans, p0, p1);
  for (let i = 0; i < onGpu.length; i += 1) {
    const r = onGpu[i] as number;
    const startMs = table.startMs[r] as number;
    const endMs = table.endMs[r] as number;
    const x = Math.max(startMs, p0);
    const y = Math.min(endMs, p1);
    const activeMs = y > x ? y - x : 0;
    const pointInPeriod = endMs === startMs && startMs >= p0 && startMs < p1;
    if (activeMs === 0 && !pointInPeriod) continue;
    builder.reset();
    builder.add(table, r, i);
    const staticJ = builder.staticPrefill + builder.staticDecode;
    const dynamicJ = builder.dynamicPrefill + builder.dynamicDecode;
    attributedStatic += staticJ;
    attributedDynamic += dynamicJ;
    shares.push({
      requestId: (table.records[r] as ResolvedRequest).requestId,
      gpuUuid: gpu.gpuUuid,
      staticJ: joules(staticJ),
      dynamicJ: joules(dynamicJ),
      prefillJ: joules(builder.staticPrefill + builder.dynamicPrefill),
      decodeJ: joules(builder.staticDecode + builder.dynamicDecode),
      activeMs,
      concurrencyMs: concurrencyMs[i] as number,
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

/** The same requests in the same order (as on the GPUs of one tensor-parallel replica, listed together). */
function sameRequests(a: GpuRequests, b: GpuRequests): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
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
  const byGpu = new Map<string, number[]>();
  for (const gpu of input.gpus) byGpu.set(gpu.gpuUuid, []);
  const table = new RequestTable(ordered.length);
  const seenIds = new Set<string>();
  for (const record of ordered) {
    // One request_id is one request (idempotency key). One lookup: add, and see whether it grew.
    const seenBefore = seenIds.size;
    seenIds.add(record.requestId);
    if (seenIds.size === seenBefore) continue;
    const r = table.add(record, input.config);
    const { gpus } = record;
    for (let i = 0; i < gpus.length; i += 1) {
      const onGpu = byGpu.get(gpus[i] as string);
      if (onGpu === undefined) continue;
      // A GPU named twice by one request gets it once: it would be the last one pushed there.
      // (Length checked first: reading index -1 of an empty array is a slow property lookup.)
      if (onGpu.length === 0 || onGpu[onGpu.length - 1] !== r) onGpu.push(r);
    }
  }
  const gpus: GpuPeriodTotals[] = [];
  const shares: RequestPeriodShare[] = [];
  const seen = new Set<string>();
  const scratch = new ScratchArrays();
  let previousOnGpu: GpuRequests | null = null;
  let previousConcurrency: Float64Array = new Float64Array(0);
  for (const gpu of input.gpus) {
    if (seen.has(gpu.gpuUuid)) continue; // a GPU listed twice is measured once
    seen.add(gpu.gpuUuid);
    scratch.reset(); // the previous GPU's arrays are no longer needed
    const onGpu = byGpu.get(gpu.gpuUuid) ?? [];
    const concurrencyMs =
      previousOnGpu !== null && sameRequests(onGpu, previousOnGpu) ? previousConcurrency : concurrencyOf(table, onGpu, p0, p1, scratch);
    previousOnGpu = onGpu;
    previousConcurrency = concurrencyMs;
    const settled = settleGpu(gpu, table, onGpu, concurrencyMs, p0, p1, input.config, scratch);
    gpus.push(settled.totals);
    for (const share of settled.shares) shares.push(share);
  }
  return { periodStartMs: input.periodStartMs, periodEndMs: input.periodEndMs, gpus, shares };
}
