import type { GpuPeriodTotals } from './attribution-types.js';
import type { RequestResult } from './request-result.js';
import type { HourlyEnergyRow, HourlyUsageRow } from './rollup-types.js';
import type { LabelValueFn } from './tasks.js';
import { epochMs, type EpochMs } from './units.js';
import { compareStrings } from './compare.js';

/**
 * Hourly rollups: additive deltas the ledger adds to existing rows of the same key.
 *
 * - Usage rows (attributed side): each finalized request counts in the hour of its END, whole,
 *   under its model, tier, cache and batch buckets, status and capped team/feature labels.
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
    const hourStartMs = hourStart(r.endMs);
    const team = labelValue('team', r.labels.team);
    const feature = labelValue('feature', r.labels.feature);
    const rowSimulated = simulated || r.source === 'simulated';
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
    row.requests += 1;
    row.promptTokens += r.promptTokens;
    row.cachedTokens += r.cachedTokens;
    row.completionTokens += r.completionTokens;
    row.reasoningTokens += r.reasoningTokens;
    row.staticJ += r.staticJ;
    row.dynamicJ += r.dynamicJ;
    row.prefillJ += r.prefillJ;
    row.decodeJ += r.decodeJ;
  }
  return rows.sort(compareUsageKeys);
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
  const cuts: number[] = [periodStartMs];
  for (let h = hourStart(periodStartMs) + HOUR_MS; h < periodEndMs; h += HOUR_MS) cuts.push(h);
  cuts.push(Math.max(periodEndMs, periodStartMs));
  const span = periodEndMs - periodStartMs;
  // Cumulative share of the period before t: shared by both sides of a cut, 1 exactly at the end.
  const before = (t: number): number => (span > 0 ? (t >= periodEndMs ? 1 : (t - periodStartMs) / span) : 1);
  const rows: HourlyEnergyRow[] = [];
  for (const t of totals) {
    for (let i = 0; i + 1 < cuts.length; i += 1) {
      const from = cuts[i] as number;
      const to = cuts[i + 1] as number;
      const lo = i === 0 ? 0 : before(from);
      const hi = before(to);
      const part = (value: number): number => value * hi - value * lo;
      rows.push({
        hourStartMs: hourStart(from),
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
