import type { AttributionConfig, EnergyInterval } from './attribution-types.js';
import type { PowerSample } from './power-sample.js';
import { epochMs, joules, watts, type EpochMs } from './units.js';

/**
 * Energy timeline of one GPU: consecutive samples become energy intervals (DESIGN.md "Data model").
 *
 * - Both ends carry the cumulative energy counter and it did not go backwards: the energy is the
 *   counter delta (`method: 'counter'`), exact whatever the sampling.
 * - The counter went backwards (driver reload): a reset. The interval falls back to trapezoidal
 *   integration of power and is flagged `counterReset` and `estimated`. So does the interval into a
 *   sample marked `counterRunStart` (a new counter run, whatever its value: see
 *   {@link foldCounterReadings}).
 * - A reading a little below the highest one so far, or far above it (see
 *   {@link classifyCounterReading}), is a glitch, not a reset: it is read as the highest reading.
 *   Taking it as a reset would count the energy of the interval before it twice, once from power
 *   and again in the next counter delta, measured from the low value. Beside a missing reading or
 *   before a reset it is read as missing instead (see {@link foldCounterReadings}).
 * - No counter at either end: trapezoid of power. Exactly one end has a counter, or neither while
 *   the counter was read before (its readings are missing): also the trapezoid, flagged `estimated`.
 * - One end lacks power: that end is taken to equal the other (flagged `estimated`).
 * - Neither energy nor power usable: no interval. That time is uncovered and reported as an
 *   {@link UncoveredStretch}, which counts as a gap.
 * - Samples further apart than 3x the sampling period: `gap` and `estimated` (even with a counter the
 *   total is exact but when, inside the gap, it was spent is not known, so its attribution is an
 *   estimate). Further apart than `maxAttributableGapMs`: also `unattributable`.
 */

/** Time of one GPU not covered by any interval because the samples bounding it had no usable reading. */
export interface UncoveredStretch {
  readonly startMs: EpochMs;
  readonly endMs: EpochMs;
  /** The counter went backwards across this stretch (and there was no power to fall back on). */
  readonly counterReset: boolean;
}

/** Intervals and uncovered stretches of one GPU, both sorted by time and disjoint. */
export interface EnergyTimeline {
  readonly intervals: EnergyInterval[];
  readonly uncovered: UncoveredStretch[];
}

/** Gaps are flagged when samples are more than this many sampling periods apart (DESIGN.md). */
export const GAP_FACTOR = 3;

/**
 * A counter reading below the highest one so far by at most this share of it is a glitch; further
 * below, the counter was reset. A reset (driver reload, GPU reset) restarts the counter at zero, so
 * within one sampling period it lands far below; only a counter that had counted little more than
 * one sampling period's energy before a reset could be mistaken.
 */
export const COUNTER_GLITCH_SHARE = 0.01;

/**
 * A counter reading above the high-water mark by more than this mean power since the mark was read
 * is a glitch too (a spike): no GPU draws it, and the trace reader refuses such steps. Taken as an
 * advance, it would hold the mark above the true count, and every true reading after it would be
 * a glitch until the counter caught up (hours, on a counter of a long-running driver).
 */
export const MAX_PLAUSIBLE_POWER_W = 5_000;

/**
 * The rise above the mark is judged over at least this long, as the trace reader judges a step: a
 * counter that the driver updates less often than it is sampled rises in steps, and a step read
 * 10 ms after the last unchanged reading is not a 10x power.
 */
export const MIN_RATE_INTERVAL_MS = 100;

/**
 * How many timestamps after a reading the timeline looks at to judge it: a drop or a spike is
 * judged by the first usable reading among them that differs from it, and a glitch is read as the
 * mark only when the counter climbs on from the mark after it (see {@link foldCounterReadings}).
 * Bounded, so that a window needs only so many timestamps after its end.
 */
export const COUNTER_LOOKAHEAD = 8;

/**
 * Timestamps after the first one at or after a window's end that the window must hold for its
 * readings to be judged as the whole run judges them: a glitch is judged by the readings after it,
 * which are judged by the ones after them.
 */
export const WINDOW_TIMESTAMPS_AFTER_END = 2 * COUNTER_LOOKAHEAD;

/** The energy counter's highest reading since its last reset, and when it first read that value. */
export interface CounterHighWater {
  readonly energyJ: number;
  readonly atMs: number;
  /**
   * A reading since the mark was missing (or a glitch read as missing) and none has been usable
   * since: the time after the mark was counted from power, so the counter's delta from the mark
   * would count it again, and a glitch now is read as missing too, not as the mark.
   */
  readonly missed?: true;
  /**
   * A new counter run started (PowerSample.counterRunStart) with no usable reading since (`missed`
   * too): the reset was flagged on the interval into its start, and the next usable reading is the
   * run's first. energyJ and atMs are the old run's and judge nothing.
   */
  readonly newRun?: true;
}

/** How a counter reading compares with the high-water mark before it (null when none). */
export type CounterReading = 'first' | 'advance' | 'glitch' | 'reset';

/** See {@link COUNTER_GLITCH_SHARE} and {@link MAX_PLAUSIBLE_POWER_W}. Shared by the timeline and the sources that report resets. */
export function classifyCounterReading(highWater: CounterHighWater | null, readingJ: number, atMs: number): CounterReading {
  if (highWater === null) return 'first';
  if (readingJ >= highWater.energyJ) {
    const dtMs = Math.max(MIN_RATE_INTERVAL_MS, atMs - highWater.atMs);
    return ((readingJ - highWater.energyJ) * 1000) / dtMs > MAX_PLAUSIBLE_POWER_W ? 'glitch' : 'advance';
  }
  return highWater.energyJ - readingJ <= COUNTER_GLITCH_SHARE * highWater.energyJ ? 'glitch' : 'reset';
}

/** A reading of the counter at a time (energyJ null: none usable at that timestamp). */
export interface CounterReadingAt {
  readonly energyJ: number | null;
  readonly atMs: number;
}

/**
 * {@link classifyCounterReading}, with the next usable reading that differs from this one (null
 * when there is none; a repeat of a reading tells nothing about where the counter went from it):
 * - a drop that the next reading climbs from faster than any GPU draws was a glitch (one bogus low
 *   reading, even 0), not a reset, wherever that reading lies: above the mark, or under it (a dip,
 *   say, when the mark was itself a little high), where it is judged in turn. As a reset, the
 *   readings after it would be spikes until the counter's whole count was under 5000 W from the
 *   drop, and then the whole count would be counted again;
 * - a spike that the next reading climbs on from is where the counter is: the mark was too low (a
 *   drop taken for a reset, say), and counted from it, the whole count would be counted again. It
 *   is judged a reset: the interval into it is estimated from power, and the mark starts again there.
 */
export function judgeCounterReading(highWater: CounterHighWater | null, readingJ: number, atMs: number, next: CounterReadingAt | null): CounterReading {
  const kind = classifyCounterReading(highWater, readingJ, atMs);
  if (highWater === null || kind === 'advance' || next === null || !usable(next.energyJ)) return kind;
  const fromHere = classifyCounterReading({ energyJ: readingJ, atMs }, next.energyJ, next.atMs);
  if (kind === 'reset') return fromHere === 'glitch' && next.energyJ > readingJ ? 'glitch' : 'reset';
  return readingJ > highWater.energyJ && fromHere === 'advance' ? 'reset' : 'glitch';
}

/**
 * The high-water mark after one usable reading and the reading after it (see
 * {@link judgeCounterReading}): a glitch leaves it as it was, any other reading becomes it. For
 * sources that report what the counter does; the timeline and callers that cut a GPU's samples
 * into windows fold with {@link foldCounterReadings}.
 */
export function nextCounterHighWater(highWater: CounterHighWater | null, energyJ: number | null | undefined, atMs: number, next: CounterReadingAt | null = null): CounterHighWater | null {
  if (!usable(energyJ)) return highWater;
  return markAfter(highWater, energyJ, atMs, judgeCounterReading(highWater, energyJ, atMs, next));
}

/** The mark after a usable reading judged `kind` (not a glitch read as missing: see {@link missedSince}). */
function markAfter(highWater: CounterHighWater | null, energyJ: number, atMs: number, kind: CounterReading): CounterHighWater | null {
  if (kind === 'glitch') return highWater;
  // An unchanged reading keeps the time the counter reached its value: the next rise is judged over all of it.
  return { energyJ, atMs: kind === 'advance' && highWater !== null && energyJ === highWater.energyJ ? highWater.atMs : atMs };
}

/** The mark once a reading after it is missing. */
function missedSince(highWater: CounterHighWater | null): CounterHighWater | null {
  return highWater === null || highWater.missed ? highWater : { energyJ: highWater.energyJ, atMs: highWater.atMs, missed: true };
}

/** One GPU's readings in time order, by position: an array of samples, or the columns of a trace. */
export interface CounterReadings {
  readonly count: number;
  timeAt(k: number): number;
  energyAt(k: number): number | null | undefined;
  /** Whether reading k starts a new counter run (PowerSample.counterRunStart); absent: none does. */
  runStartAt?(k: number): boolean;
}

/**
 * How one timestamp's reading is judged ('missing': none usable, of a counter read before;
 * 'absent': none usable and no counter read yet; 'pending': not until more readings come).
 */
type ReadingUse = CounterReading | 'missing' | 'absent' | 'pending';

/**
 * Judges readings with the readings after them. `open`: more readings may come after the last
 * one, so a judgement that needs them is 'pending'. `reach` is the end of the furthest timestamp
 * the last judgement looked at.
 */
class CounterJudge {
  reach = 0;

  constructor(
    private readonly readings: CounterReadings,
    private readonly open: boolean,
  ) {}

  /** The timestamp group starting at `from`. */
  group(from: number): ReadingGroup {
    const group = readingAt(this.readings, from);
    if (group.end > this.reach) this.reach = group.end;
    return group;
  }

  /** The reading at `atMs` judged against `mark` (not null), with the readings from `after` on. */
  kind(mark: CounterHighWater, energyJ: number, atMs: number, after: number): CounterReading | 'pending' {
    const kind = classifyCounterReading(mark, energyJ, atMs);
    // A dip within the glitch share is a glitch whatever follows; a drop or a spike is judged by what does.
    if (kind === 'advance' || (kind === 'glitch' && energyJ < mark.energyJ)) return kind;
    let at = after;
    for (let k = 0; k < COUNTER_LOOKAHEAD; k += 1) {
      if (at >= this.readings.count) {
        if (this.open) return 'pending';
        break;
      }
      const next = this.group(at);
      // A new counter run tells nothing about where this one went: judged as the last of its run.
      if (next.runStart) break;
      if (usable(next.energyJ) && next.energyJ !== energyJ) return judgeCounterReading(mark, energyJ, atMs, next);
      at = next.end;
    }
    return judgeCounterReading(mark, energyJ, atMs, null);
  }

  /**
   * Whether the counter climbs on from `mark` after a glitch reading `glitchJ`: the first reading
   * from `after` on that is not a glitch is an advance. A missing reading, a reset or a new counter
   * run first, or the end of the readings, and the mark is not where the counter goes on from.
   * Glitches all through COUNTER_LOOKAHEAD timestamps: taken to climb on only when they rise (never
   * down, and up at least once, from `glitchJ` on): a live counter under a mark that was a little
   * high, which goes on until the counter catches up with it. A run that does not rise (a stuck or
   * bogus reading) is not: read as the mark, its intervals would count 0 J, and were the run to end
   * in a missing reading or a reset, no counter delta from the mark would ever count them.
   */
  climbsOn(mark: CounterHighWater, glitchJ: number, after: number): boolean | 'pending' {
    let at = after;
    let lastJ = glitchJ;
    let rises = true;
    let rose = false;
    for (let k = 0; k < COUNTER_LOOKAHEAD; k += 1) {
      if (at >= this.readings.count) return this.open ? 'pending' : false;
      const next = this.group(at);
      if (next.runStart || !usable(next.energyJ)) return false;
      const kind = this.kind(mark, next.energyJ, next.atMs, next.end);
      if (kind !== 'glitch') return kind === 'pending' ? kind : kind === 'advance';
      if (next.energyJ < lastJ) rises = false;
      else if (next.energyJ > lastJ) rose = true;
      lastJ = next.energyJ;
      at = next.end;
    }
    return rises && rose;
  }
}

/**
 * Walk readings [from, to) one timestamp at a time (the last usable energy of the samples sharing
 * it), telling `visit` how each is judged, the energy the timeline reads there (`readJ`: the
 * reading, the mark for a glitch read as the mark, null for one read as missing) and how far its
 * judgement looked (`reach`: the end of the furthest timestamp); stops after the first 'pending'
 * one. Returns the mark after the readings walked.
 *
 * A timestamp that starts a new counter run is a reset whatever its reading (the first reading,
 * with no mark before it), and the mark starts again there. Without a usable reading it is a reset
 * all the same (visited as one with a null energy; with no mark before it, absent), and the next
 * usable reading is the run's first (see {@link CounterHighWater.newRun}): the readings missing
 * until then are missing readings of a counter, not of a GPU without one. The readings before it
 * are judged without looking past it.
 */
function walkCounterReadings(
  highWater: CounterHighWater | null,
  readings: CounterReadings,
  from: number,
  to: number,
  open: boolean,
  visit?: (use: ReadingUse, energyJ: number | null, readJ: number | null, start: number, end: number, reach: number) => void,
): CounterHighWater | null {
  const judge = new CounterJudge(readings, open);
  let mark = highWater;
  for (let i = from; i < to; ) {
    judge.reach = 0;
    const { energyJ, atMs, end, runStart } = judge.group(i);
    if (!usable(energyJ)) {
      if (runStart && mark !== null) {
        visit?.('reset', null, null, i, end, end);
        mark = { energyJ: mark.energyJ, atMs: mark.atMs, missed: true, newRun: true };
      } else {
        visit?.(mark === null ? 'absent' : 'missing', null, null, i, end, end);
        mark = missedSince(mark);
      }
      i = end;
      continue;
    }
    if (runStart || mark?.newRun === true) {
      const use = mark === null || !runStart ? 'first' : 'reset';
      visit?.(use, energyJ, energyJ, i, end, end);
      mark = markAfter(mark, energyJ, atMs, use);
      i = end;
      continue;
    }
    let use: ReadingUse = mark === null ? 'first' : judge.kind(mark, energyJ, atMs, end);
    let readJ: number | null = energyJ;
    if (use === 'glitch') {
      // Read as the mark only when the counter is read on both sides: the counter's delta from the
      // mark then counts the stretch once. Otherwise part of it is (or would be) counted from power.
      const on = (mark as CounterHighWater).missed ? false : judge.climbsOn(mark as CounterHighWater, energyJ, end);
      if (on === 'pending') use = on;
      else readJ = on ? (mark as CounterHighWater).energyJ : null;
    }
    visit?.(use, energyJ, use === 'pending' ? null : readJ, i, end, judge.reach);
    if (use === 'pending') return mark;
    mark = use === 'glitch' && readJ === null ? missedSince(mark) : markAfter(mark, energyJ, atMs, use);
    i = end;
  }
  return mark;
}

/**
 * Fold readings [from, to) into the mark, one reading per timestamp: the last usable energy of the
 * samples sharing it, as {@link buildEnergyTimeline} merges them. Each is judged as the timeline
 * judges it, with the readings after it (up to {@link COUNTER_LOOKAHEAD} timestamps, at or after
 * `to` too), so callers that cut a GPU's samples into windows fold the readings before a window
 * with this, pass the result to {@link buildEnergyTimeline}, and give each window
 * {@link WINDOW_TIMESTAMPS_AFTER_END} timestamps after its end: a reading is then judged the same
 * however time is cut. `from` and `to` must not split a group of equal timestamps. A reading that
 * starts a new counter run (`runStartAt`) is a reset whatever its value, and no reading before it
 * is judged by the readings of that run. `onReading` is told each usable (merged) reading, how it
 * was judged, and its group [start, end).
 */
export function foldCounterReadings(
  highWater: CounterHighWater | null,
  readings: CounterReadings,
  from: number,
  to: number,
  onReading?: (kind: CounterReading, energyJ: number, start: number, end: number) => void,
): CounterHighWater | null {
  return walkCounterReadings(highWater, readings, from, to, false, onReading && ((use, energyJ, _readJ, start, end) => {
    if (energyJ !== null && use !== 'pending') onReading(use as CounterReading, energyJ, start, end);
  }));
}

/** What the counter folds read of a sample. */
type CounterSample = Pick<PowerSample, 'timestampMs' | 'energyJ' | 'counterRunStart'>;

/** The readings of an array of samples sorted by time. */
function sampleReadings(samples: readonly CounterSample[]): CounterReadings {
  const at = (k: number) => samples[k] as CounterSample;
  return { count: samples.length, timeAt: (k) => at(k).timestampMs, energyAt: (k) => at(k).energyJ, runStartAt: (k) => at(k).counterRunStart === true };
}

/** {@link foldCounterReadings} over samples[0..to) of an array sorted by time. */
export function foldCounterHighWater(highWater: CounterHighWater | null, samples: readonly CounterSample[], to: number): CounterHighWater | null {
  return foldCounterReadings(highWater, sampleReadings(samples), 0, to);
}

/**
 * How many of a settlement window's samples (one GPU's, sorted by time; `highWater` the mark before
 * them) can be counted while no reading after them exists: those before the first reading that
 * cannot be judged until more come (a drop, a spike or a glitch near the end: see
 * {@link judgeCounterReading} and {@link foldCounterReadings}), and before any whose judgement
 * looked at it, when the interval into it starts before `endMs`. Counted now one way and later
 * the other (a reset from power now, a glitch in the counter delta after it), that interval would
 * count twice or not at all. Cut there, the window stops short of `endMs`, so the interval is owed
 * to the period settled once the readings are in (countedUntilAfter in settlement-schedule.ts).
 */
export function countableBeforeNextReading(samples: readonly CounterSample[], highWater: CounterHighWater | null, endMs: number): number {
  const readings = sampleReadings(samples);
  // The last group start that no judgement before it looked past, up to the pending one.
  let cut = 0;
  let reached = 0;
  let pending = false;
  walkCounterReadings(highWater, readings, 0, samples.length, true, (use, _energyJ, _readJ, start, _end, reach) => {
    if (reached <= start) cut = start;
    if (use === 'pending') pending = true;
    else if (reach > reached) reached = reach;
  });
  if (!pending || (cut > 0 && readings.timeAt(cut - 1) >= endMs)) return samples.length;
  // A lone reading closes no interval.
  return Math.max(cut, Math.min(1, samples.length));
}

/** One timestamp's merged reading, where its group ends, and whether any of its samples starts a counter run. */
type ReadingGroup = CounterReadingAt & { end: number; runStart: boolean };

/** The merged reading of the timestamp group starting at `from` (its last usable energy), and where the group ends. */
function readingAt(readings: CounterReadings, from: number): ReadingGroup {
  const atMs = readings.timeAt(from);
  let energyJ: number | null = null;
  let runStart = false;
  let end = from;
  for (; end < readings.count && readings.timeAt(end) === atMs; end += 1) {
    const e = readings.energyAt(end);
    if (usable(e)) energyJ = e;
    if (readings.runStartAt?.(end) === true) runStart = true;
  }
  return { energyJ, atMs, end, runStart };
}

type TimelineConfig = Pick<AttributionConfig, 'samplePeriodMs' | 'maxAttributableGapMs'>;

interface CleanSample {
  readonly t: number;
  readonly powerW: number | null;
  readonly energyJ: number | null;
  /** The counter was reset since the usable reading before this one (set by settleCounterReadings). */
  readonly resetBefore?: boolean;
  /** The counter reading was a glitch, read as the high-water mark (set by settleCounterReadings). */
  readonly glitch?: boolean;
  /** A new counter run starts here (PowerSample.counterRunStart). */
  readonly runStart?: boolean;
  /** No usable reading of a counter read before (set by settleCounterReadings): energy here comes from power. */
  readonly readingMissing?: boolean;
}

const usable = (value: number | null | undefined): value is number =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0;

/**
 * Sort (when needed), drop unusable readings (non-finite or negative become missing), and merge
 * samples with the same timestamp: energy over zero time is not a physical quantity, so they are one
 * reading, keeping the last usable value of each field.
 */
function cleanSamples(samples: readonly PowerSample[], highWater: CounterHighWater | null): CleanSample[] {
  let sorted = true;
  for (let i = 1; i < samples.length; i += 1) {
    if ((samples[i] as PowerSample).timestampMs < (samples[i - 1] as PowerSample).timestampMs) {
      sorted = false;
      break;
    }
  }
  const ordered = sorted ? samples : [...samples].sort((x, y) => x.timestampMs - y.timestampMs);
  const out: CleanSample[] = [];
  for (const sample of ordered) {
    const t = sample.timestampMs;
    if (!Number.isFinite(t)) continue;
    const powerW = usable(sample.powerW) ? sample.powerW : null;
    const energyJ = usable(sample.energyJ) ? sample.energyJ : null;
    const runStart = sample.counterRunStart === true;
    const last = out[out.length - 1];
    if (last && last.t === t) {
      out[out.length - 1] = { t, powerW: powerW ?? last.powerW, energyJ: energyJ ?? last.energyJ, ...((runStart || last.runStart) && { runStart: true }) };
    } else out.push(runStart ? { t, powerW, energyJ, runStart } : { t, powerW, energyJ });
  }
  return settleCounterReadings(out, highWater);
}

/**
 * A glitched counter reading is read as the high-water mark (see {@link classifyCounterReading})
 * where the counter is read on both sides of it: the interval into it counts nothing more, and
 * the next one counts from the mark, so the counter's total stays exact and nothing is counted
 * twice; when in those intervals the energy was spent is not known, so both are flagged estimated.
 * Beside a missing reading, or before a reset, it is read as missing: the stretch is counted from
 * power (see {@link foldCounterReadings}). The mark starts again at a reset, so the reading after
 * a reset is judged against the new count; a new counter run is a reset whatever its reading.
 */
function settleCounterReadings(samples: CleanSample[], highWaterBefore: CounterHighWater | null): CleanSample[] {
  const readings: CounterReadings = {
    count: samples.length,
    timeAt: (k) => (samples[k] as CleanSample).t,
    energyAt: (k) => (samples[k] as CleanSample).energyJ,
    runStartAt: (k) => (samples[k] as CleanSample).runStart === true,
  };
  // Each sample is its own timestamp here; the walk reads none before the one it visits, so it may be replaced.
  walkCounterReadings(highWaterBefore, readings, 0, samples.length, false, (use, _energyJ, readJ, start) => {
    const sample = samples[start] as CleanSample;
    if (use === 'glitch') samples[start] = { ...sample, energyJ: readJ, glitch: true };
    else if (use === 'reset') samples[start] = { ...sample, resetBefore: true };
    else if (use === 'missing') samples[start] = { ...sample, readingMissing: true };
  });
  return samples;
}

/**
 * Build the timeline of ONE GPU from its samples (sorted by time; unsorted input is sorted first).
 * Every pair of consecutive samples yields exactly one interval or one uncovered stretch.
 * `counterHighWater`: the counter's high-water mark before the first sample (see
 * {@link foldCounterHighWater}); null when these are the GPU's first readings.
 */
export function buildEnergyTimeline(samples: readonly PowerSample[], config: TimelineConfig, counterHighWater: CounterHighWater | null = null): EnergyTimeline {
  const clean = cleanSamples(samples, counterHighWater);
  const intervals: EnergyInterval[] = [];
  const uncovered: UncoveredStretch[] = [];
  const gpuUuid = samples[0]?.gpuUuid ?? '';
  const gapAboveMs = GAP_FACTOR * config.samplePeriodMs;
  for (let i = 1; i < clean.length; i += 1) {
    const a = clean[i - 1] as CleanSample;
    const b = clean[i] as CleanSample;
    const dt = b.t - a.t;
    const gap = dt > gapAboveMs;
    const unattributable = dt > config.maxAttributableGapMs;
    // A reset is flagged on the interval ending at the first reading after it, even when the
    // reading before that one is missing or was a glitch.
    const counterReset = b.resetBefore === true;
    let energy: number | null = null;
    let method: EnergyInterval['method'] = 'integrated';
    let estimated = gap || unattributable || counterReset || a.glitch === true || b.glitch === true;
    if (a.energyJ !== null && b.energyJ !== null) {
      if (!counterReset) {
        energy = b.energyJ - a.energyJ; // not negative: b is not below the high-water mark, which a is at or under
        method = 'counter';
      }
    } else if (a.energyJ !== null || b.energyJ !== null || a.readingMissing === true || b.readingMissing === true) {
      estimated = true; // the counter exists but a reading of it is missing
    }
    if (energy === null) {
      if (a.powerW !== null && b.powerW !== null) energy = ((a.powerW + b.powerW) / 2) * (dt / 1000);
      else if (a.powerW !== null || b.powerW !== null) {
        energy = ((a.powerW ?? b.powerW) as number) * (dt / 1000);
        estimated = true;
      }
    }
    if (energy === null) {
      uncovered.push({ startMs: epochMs(a.t), endMs: epochMs(b.t), counterReset });
      continue;
    }
    intervals.push({
      gpuUuid,
      startMs: epochMs(a.t),
      endMs: epochMs(b.t),
      energyJ: joules(energy),
      method,
      counterReset,
      gap,
      estimated,
      unattributable,
      meanPowerW: watts((energy * 1000) / dt),
    });
  }
  return { intervals, uncovered };
}

/** Energy intervals of ONE GPU's time-sorted samples (see {@link buildEnergyTimeline}). */
export function toEnergyIntervals(samples: readonly PowerSample[], config: TimelineConfig): EnergyInterval[] {
  return buildEnergyTimeline(samples, config).intervals;
}

/**
 * Energy of `interval` spent before time `t`, assuming constant power inside the interval.
 * Both sides of a cut use this same value, which is what makes slices of one interval add up to
 * the whole however the interval is cut (and cut(end) is exactly the interval's energy).
 */
function energyBefore(interval: EnergyInterval, t: number): number {
  if (t <= interval.startMs) return 0;
  if (t >= interval.endMs) return interval.energyJ;
  return (interval.energyJ * (t - interval.startMs)) / (interval.endMs - interval.startMs);
}

/**
 * The part of `interval` inside [fromMs, toMs), with energy in proportion to time, or null when
 * they do not overlap. Slices of one interval at shared cut points sum to the interval's energy
 * (to floating point), so an interval crossing period boundaries conserves energy across periods.
 */
export function sliceInterval(interval: EnergyInterval, fromMs: number, toMs: number): EnergyInterval | null {
  const lo = Math.max(interval.startMs, fromMs);
  const hi = Math.min(interval.endMs, toMs);
  if (!(hi > lo)) return null;
  if (lo === interval.startMs && hi === interval.endMs) return interval;
  return { ...interval, startMs: epochMs(lo), endMs: epochMs(hi), energyJ: joules(slicedEnergyJ(interval, lo, hi)) };
}

/**
 * Energy of the part [loMs, hiMs) of `interval` (inside it, loMs < hiMs): the energyJ of
 * {@link sliceInterval}'s piece, without building the piece.
 */
export function slicedEnergyJ(interval: EnergyInterval, loMs: number, hiMs: number): number {
  if (loMs === interval.startMs && hiMs === interval.endMs) return interval.energyJ;
  return energyBefore(interval, hiMs) - energyBefore(interval, loMs);
}
