import type { GpuPeriodTotals } from './attribution-types.js';
import type { EnergyBeforeEndHour, HourEnergy, RequestResult } from './request-result.js';
import type { HourlyEnergyRow, HourlyUsageRow } from './rollup-types.js';
import type { LabelValueFn } from './tasks.js';
import { epochMs, type EpochMs } from './units.js';
import { compareStrings } from './compare.js';

/**
 * Hourly rollups: additive deltas the ledger adds to existing rows of the same key.
 *
 * - Usage rows (attributed side): each finalized request's energy goes to the hours it was drawn in,
 *   under its model, tier, cache and batch buckets, status and capped team/feature labels (so an
 *   hour's usage energy is its energy rows' attributed energy, once the requests drawing it are
 *   final); its energy drawn before its end hour is tracked while it settles
 *   ({@link energyBeforeEndHour}). Its tokens go with its energy, each hour taking the share of
 *   them that it took of the energy, in whole tokens ({@link apportion}), so J/token of any span of
 *   hours (a month, a quarter) is that of the requests whose energy it holds. The request itself
 *   counts once, in the hour it ended.
 * - Energy rows (measured side): a settled period's GPU totals, in the hour(s) it covers. A period
 *   crossing an hour boundary (only when the period does not divide an hour) is split in
 *   proportion to time; the energies of the pieces add up to the period's. Counts (counter resets,
 *   gaps) cannot be split and go to the hour holding the period's start; covered time is split in
 *   proportion too (an approximation: coverage is not uniform inside a period).
 */

export const HOUR_MS = 3_600_000;

/** Start of the UTC hour containing `ms`. */
export function hourStart(ms: number): EpochMs {
  return epochMs(Math.floor(ms / HOUR_MS) * HOUR_MS);
}

type UsageKey = Pick<
  HourlyUsageRow,
  'hourStartMs' | 'node' | 'model' | 'tier' | 'cacheBucket' | 'batchBucket' | 'status' | 'team' | 'feature' | 'simulated'
>;

type MutableUsage = { -readonly [K in keyof HourlyUsageRow]: HourlyUsageRow[K] };

/**
 * Fold finalized requests into hourly usage rows. `labelValue` caps team/feature values (the agent
 * owns the cap); it gets `undefined` for an absent label. `simulated` marks every row (the power
 * source is the simulator); a request whose record came from the simulator is marked regardless.
 * Rows come out sorted by key, so the output does not depend on the order of `results`.
 */
export function usageRowsFromResults(
  results: readonly RequestResult[],
  node: string,
  simulated: boolean,
  labelValue: LabelValueFn,
): HourlyUsageRow[] {
  // Rows are found through one map per key part: no key string is built per request (a settlement
  // folds thousands of requests into a few rows).
  const root: KeyLevel = new Map();
  const rows: MutableUsage[] = [];
  for (const r of results) {
    const team = labelValue('team', r.labels.team);
    const feature = labelValue('feature', r.labels.feature);
    const rowSimulated = simulated || r.source === 'simulated';
    const rowAt = (hourStartMs: EpochMs): MutableUsage => {
      const leaf = level(level(level(level(level(level(level(level(root, hourStartMs), r.model), r.tier), r.cacheBucket), r.batchBucket), r.status), team), feature);
      let row = leaf.get(rowSimulated) as MutableUsage | undefined;
      if (!row) {
        row = {
          hourStartMs, node, model: r.model, tier: r.tier, cacheBucket: r.cacheBucket, batchBucket: r.batchBucket, status: r.status, team, feature,
          simulated: rowSimulated, requests: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0, reasoningTokens: 0, staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0,
        };
        leaf.set(rowSimulated, row);
        rows.push(row);
      }
      return row;
    };
    const endRow = rowAt(hourStart(r.endMs));
    endRow.requests += 1;
    const before = Object.entries(r.beforeEndHourJ);
    if (before.length === 0) {
      // The usual request, drawn within the hour it ended in.
      addUsage(endRow, [r.staticJ, r.dynamicJ, r.prefillJ, r.decodeJ], r.promptTokens, r.cachedTokens, r.completionTokens, r.reasoningTokens);
      continue;
    }
    // Energy drawn in earlier hours goes there; the end hour gets the rest.
    const hours: { row: MutableUsage; e: HourEnergy }[] = [];
    let [staticJ, dynamicJ, prefillJ, decodeJ] = [r.staticJ as number, r.dynamicJ as number, r.prefillJ as number, r.decodeJ as number];
    for (const [hour, e] of before.sort((a, b) => Number(a[0]) - Number(b[0]))) {
      hours.push({ row: rowAt(epochMs(Number(hour))), e });
      staticJ -= e[0];
      dynamicJ -= e[1];
      prefillJ -= e[2];
      decodeJ -= e[3];
    }
    hours.push({ row: endRow, e: [rest(staticJ, r.staticJ), rest(dynamicJ, r.dynamicJ), rest(prefillJ, r.prefillJ), rest(decodeJ, r.decodeJ)] });
    // Tokens by each hour's share of the energy. The disjoint parts are apportioned, so that
    // cached <= prompt and reasoning <= completion hold in every row.
    const uncached = apportion(r.promptTokens - r.cachedTokens, hours);
    const cached = apportion(r.cachedTokens, hours);
    const reasoning = apportion(r.reasoningTokens, hours);
    const answer = apportion(r.completionTokens - r.reasoningTokens, hours);
    for (let i = 0; i < hours.length; i += 1) {
      const { row, e } = hours[i] as (typeof hours)[number];
      const [u, c, re, a] = [uncached[i] as number, cached[i] as number, reasoning[i] as number, answer[i] as number];
      addUsage(row, e, u + c, c, a + re, re);
    }
  }
  return rows.sort(compareUsageKeys);
}

function addUsage(row: MutableUsage, e: HourEnergy, promptTokens: number, cachedTokens: number, completionTokens: number, reasoningTokens: number): void {
  row.staticJ += e[0];
  row.dynamicJ += e[1];
  row.prefillJ += e[2];
  row.decodeJ += e[3];
  row.promptTokens += promptTokens;
  row.cachedTokens += cachedTokens;
  row.completionTokens += completionTokens;
  row.reasoningTokens += reasoningTokens;
}

/**
 * What is left of a total after its earlier hours were taken: exactly 0 when that is only the
 * rounding of the subtraction (a request that ended on the hour drew nothing in its end hour, and
 * a 1e-13 J remainder would take that hour's whole facility energy in the ESG breakdowns).
 */
function rest(remainder: number, total: number): number {
  return Math.abs(remainder) <= Math.abs(total) * 1e-12 ? 0 : remainder;
}

/**
 * `count` whole units split over the hours in proportion to each one's attributed (static +
 * dynamic) energy: the first k hours get round(count x their cumulative share), so the parts are
 * whole, never negative, and add up to `count` exactly. With no energy at all, the last hour (the
 * end hour) gets everything.
 */
function apportion(count: number, hours: readonly { readonly e: HourEnergy }[]): number[] {
  const weight = (e: HourEnergy): number => Math.max(0, e[0] + e[1]);
  let total = 0;
  for (const h of hours) total += weight(h.e);
  const parts: number[] = [];
  let cumulative = 0;
  let given = 0;
  for (let i = 0; i < hours.length; i += 1) {
    cumulative += weight((hours[i] as (typeof hours)[number]).e);
    const last = i === hours.length - 1;
    const upTo = last ? count : total > 0 ? Math.min(count, Math.round((count * cumulative) / total)) : 0;
    parts.push(upTo - given);
    given = upTo;
  }
  return parts;
}

/** The hours a span [fromMs, toMs) touches, each with the span's cumulative share by time at its start and end (0 to 1 exactly). */
function hourPieces(fromMs: number, toMs: number): { hourStartMs: EpochMs; lo: number; hi: number }[] {
  const cuts: number[] = [fromMs];
  for (let h = hourStart(fromMs) + HOUR_MS; h < toMs; h += HOUR_MS) cuts.push(h);
  cuts.push(Math.max(toMs, fromMs));
  const span = toMs - fromMs;
  // Cumulative share of the span before t: shared by both sides of a cut, 1 exactly at the end.
  const before = (t: number): number => (span > 0 ? (t >= toMs ? 1 : (t - fromMs) / span) : 1);
  const pieces: { hourStartMs: EpochMs; lo: number; hi: number }[] = [];
  for (let i = 0; i + 1 < cuts.length; i += 1) {
    pieces.push({ hourStartMs: hourStart(cuts[i] as number), lo: i === 0 ? 0 : before(cuts[i] as number), hi: before(cuts[i + 1] as number) });
  }
  return pieces;
}

/**
 * The part of a request's energy from one settled period [periodStartMs, periodEndMs) that lies in
 * hours before the hour the request ends in, or null when there is none (the usual case). A period
 * crossing an hour is split in proportion to time, as {@link energyRowsFromTotals} splits it.
 */
export function energyBeforeEndHour(
  e: { readonly staticJ: number; readonly dynamicJ: number; readonly prefillJ: number; readonly decodeJ: number },
  periodStartMs: number,
  periodEndMs: number,
  requestEndMs: number,
): EnergyBeforeEndHour | null {
  const endHour = hourStart(requestEndMs);
  if (hourStart(periodStartMs) >= endHour) return null;
  let out: Record<string, HourEnergy> | null = null;
  for (const { hourStartMs, lo, hi } of hourPieces(periodStartMs, periodEndMs)) {
    if (hourStartMs >= endHour) continue;
    const part = (value: number): number => value * hi - value * lo;
    out ??= {};
    out[String(hourStartMs)] = [part(e.staticJ), part(e.dynamicJ), part(e.prefillJ), part(e.decodeJ)];
  }
  return out;
}

type KeyLevel = Map<string | number | boolean, KeyLevel | MutableUsage>;

function level(parent: KeyLevel, key: string | number): KeyLevel {
  let child = parent.get(key) as KeyLevel | undefined;
  if (child === undefined) {
    child = new Map();
    parent.set(key, child);
  }
  return child;
}

/** The rows' order: by hour, then each key part in turn (so the output does not depend on the order of the results). */
function compareUsageKeys(a: UsageKey, b: UsageKey): number {
  return (
    a.hourStartMs - b.hourStartMs ||
    compareStrings(a.model, b.model) ||
    compareStrings(a.tier, b.tier) ||
    compareStrings(a.cacheBucket, b.cacheBucket) ||
    compareStrings(a.batchBucket, b.batchBucket) ||
    compareStrings(a.status, b.status) ||
    compareStrings(a.team, b.team) ||
    compareStrings(a.feature, b.feature) ||
    Number(a.simulated) - Number(b.simulated)
  );
}

/**
 * Hourly energy rows of one settled period [periodStartMs, periodEndMs): one row per GPU per hour
 * the period touches (see the module comment for the split).
 */
export function energyRowsFromTotals(
  totals: readonly GpuPeriodTotals[],
  periodStartMs: number,
  periodEndMs: number,
  node: string,
  simulated: boolean,
): HourlyEnergyRow[] {
  const pieces = hourPieces(periodStartMs, periodEndMs);
  const rows: HourlyEnergyRow[] = [];
  for (const t of totals) {
    for (let i = 0; i < pieces.length; i += 1) {
      const { hourStartMs, lo, hi } = pieces[i] as (typeof pieces)[number];
      const part = (value: number): number => value * hi - value * lo;
      rows.push({
        hourStartMs,
        node,
        gpuUuid: t.gpuUuid,
        measuredJ: part(t.measuredJ),
        idleJ: part(t.idleJ),
        staticJ: part(t.staticJ),
        dynamicJ: part(t.dynamicJ),
        unattributedJ: part(t.unattributedJ),
        estimatedJ: part(t.estimatedJ),
        coveredMs: part(t.coveredMs),
        counterResets: i === 0 ? t.counterResets : 0,
        gaps: i === 0 ? t.gaps : 0,
        simulated,
      });
    }
  }
  return rows;
}
