import type { PowerSample } from './power-sample.js';
import type { ResolvedRequest } from './request-record.js';
import { epochMs, type EpochMs } from './units.js';

/**
 * When periods are settled (DESIGN.md "Settlement"). Periods lie on a fixed grid: their bounds are
 * multiples of the period length in epoch milliseconds, so every node and every restart agrees on
 * them, and hourly rollups split cleanly when the period divides an hour. A period is due once its
 * end is at least `latenessMs` in the past, leaving that long for late records to arrive.
 *
 * A record whose start falls before `settledUntil` is late: the part of it inside settled periods is
 * NOT re-attributed. That energy was already given out, mostly to idle, and settled periods are final
 * (rewriting them would change exported counters after the fact). The record is still kept, its
 * unsettled part is attributed normally, and it is counted as late in data quality, never dropped.
 */

/** Start of the grid period containing `ms`. */
export function alignDown(ms: number, periodMs: number): EpochMs {
  return epochMs(Math.floor(ms / periodMs) * periodMs);
}

/** One period [startMs, endMs). */
export interface SettlementPeriod {
  readonly startMs: EpochMs;
  readonly endMs: EpochMs;
}

/**
 * Periods due for settlement, oldest first: from `settledUntilMs` (or, before the first settlement,
 * the grid period containing `firstDataMs`) up to the last grid period ending at or before
 * `nowMs - latenessMs`. Empty when there is no data yet. A `settledUntilMs` off the grid (it should not
 * be) is brought back onto it by a shorter first period. At most `limit` periods are returned, so a
 * node coming back after a long outage catches up in bounded steps.
 */
export function duePeriods(
  settledUntilMs: EpochMs | null,
  nowMs: number,
  periodMs: number,
  latenessMs: number,
  firstDataMs: EpochMs | null,
  limit = Number.POSITIVE_INFINITY,
): SettlementPeriod[] {
  if (!(Number.isFinite(periodMs) && periodMs > 0)) throw new RangeError(`periodMs must be a positive number (got ${periodMs})`);
  const from = settledUntilMs ?? (firstDataMs === null ? null : alignDown(firstDataMs, periodMs));
  if (from === null || !Number.isFinite(from)) return [];
  const horizon = nowMs - Math.max(0, latenessMs);
  const out: SettlementPeriod[] = [];
  let start: number = from;
  while (out.length < limit) {
    const end = alignDown(start, periodMs) + periodMs;
    if (end > horizon) break;
    out.push({ startMs: epochMs(start), endMs: epochMs(end) });
    start = end;
  }
  return out;
}

/**
 * How far a GPU's energy is counted once the period ending at `periodEndMs` is settled, given the
 * samples its settlement had (its window) and how far it was counted before (`countedUntilMs`, at
 * most the period start). With a sample at or after the period end, up to the end. Otherwise the
 * tail after the last sample is not counted yet: it waits for the sample that closes it, and is
 * then counted in the first period settled after that sample arrives, so a power source that
 * stalls for longer than the lateness (or a lateness of 0) loses no joule. Energy before the
 * GPU's first sample is not known at all, so it is never owed. A window that ends in a counter drop
 * or glitch whose judging readings are not in yet is given without it (countableBeforeNextReading
 * in energy-timeline.ts), so the interval into it is owed the same way.
 */
export function countedUntilAfter(samples: readonly Pick<PowerSample, 'timestampMs'>[], periodEndMs: EpochMs, countedUntilMs: EpochMs): EpochMs {
  let last = Number.NEGATIVE_INFINITY;
  for (const s of samples) if (Number.isFinite(s.timestampMs) && s.timestampMs > last) last = s.timestampMs;
  if (last >= periodEndMs) return periodEndMs;
  return last > countedUntilMs ? epochMs(last) : countedUntilMs;
}

/** How much of a record fell into already settled periods. */
export type Lateness = 'on-time' | 'partial' | 'full';

/**
 * 'full' when all of the record's energy lay in settled periods (see isFinalAfter in request-result.ts),
 * 'partial' when it started before `settledUntilMs` but continues after it, 'on-time' otherwise.
 */
export function recordLateness(record: Pick<ResolvedRequest, 'startMs' | 'endMs'>, settledUntilMs: EpochMs | null): Lateness {
  if (settledUntilMs === null || record.startMs >= settledUntilMs) return 'on-time';
  return record.endMs > record.startMs && record.endMs > settledUntilMs ? 'partial' : 'full';
}

/** True when the record's start (and maybe its end) is before `settledUntilMs`: it is late. */
export function isLateRecord(record: Pick<ResolvedRequest, 'startMs' | 'endMs'>, settledUntilMs: EpochMs | null): boolean {
  return recordLateness(record, settledUntilMs) !== 'on-time';
}
