import type { HourlyUsageRow } from '../../model/rollup-types.js';
import type { ReportPeriod } from './report-period.js';
import { dayOf, monthOf } from './report-numbers.js';

/** Additive figures of one group of usage (a label combination, a day, a month). */
export interface UsageSums {
  requests: number;
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  attributedJ: number;
  /** Attributed + share of idle, unattributed and host energy, times PUE. */
  fullyLoadedJ: number;
  locationG: number;
  marketG: number;
  simulatedJ: number;
}

export const emptySums = (): UsageSums => ({
  requests: 0,
  promptTokens: 0,
  cachedTokens: 0,
  completionTokens: 0,
  reasoningTokens: 0,
  attributedJ: 0,
  fullyLoadedJ: 0,
  locationG: 0,
  marketG: 0,
  simulatedJ: 0,
});

export function addSums(into: UsageSums, from: UsageSums): void {
  into.requests += from.requests;
  into.promptTokens += from.promptTokens;
  into.cachedTokens += from.cachedTokens;
  into.completionTokens += from.completionTokens;
  into.reasoningTokens += from.reasoningTokens;
  into.attributedJ += from.attributedJ;
  into.fullyLoadedJ += from.fullyLoadedJ;
  into.locationG += from.locationG;
  into.marketG += from.marketG;
  into.simulatedJ += from.simulatedJ;
}

/** One label combination (the grain of hourly_usage, minus the hour and node); team and feature as stored ("" when absent). */
export interface ComboSums extends UsageSums {
  readonly model: string;
  readonly tier: string;
  readonly cacheBucket: string;
  readonly batchBucket: string;
  readonly team: string;
  readonly feature: string;
}

/**
 * Multipliers of one node-hour: how attributed joules become fully loaded facility joules,
 * and the grid intensities of that hour (gCO2e per joule).
 */
export interface HourFactors {
  /**
   * Facility energy of the node-hour ((GPU measured + host) x PUE) / attributed energy of its usage
   * rows; 0 when the hour has no measured energy.
   */
  readonly fullyLoadedPerJ: number;
  readonly locationGPerJ: number;
  readonly marketGPerJ: number;
}

/** The attributed energy (static + dynamic) of one node-hour's usage rows. */
export interface UsageNodeHourTotal {
  readonly hourStartMs: number;
  readonly node: string;
  readonly attributedJ: number;
}

export interface UsageAggregate {
  readonly combos: Map<string, ComboSums>;
  /** day -> tier -> attributed J. */
  readonly dailyByTier: Map<string, Map<string, number>>;
  /** month -> usage sums (attributed side only; fully loaded months come from node-hours). */
  readonly months: Map<string, UsageSums>;
}

/**
 * One streaming pass over hourly usage rows (a busy quarter holds millions): sums per label
 * combination, per day and tier, and per month. Memory grows with combinations, not rows.
 */
export function aggregateUsage(
  period: ReportPeriod,
  usage: Iterable<HourlyUsageRow>,
  factorsOf: (node: string, hourStartMs: number) => HourFactors,
): UsageAggregate {
  const combos = new Map<string, ComboSums>();
  const dailyByTier = new Map<string, Map<string, number>>();
  const months = new Map<string, UsageSums>();
  let lastNode = '';
  let lastHour = Number.NaN;
  let factors: HourFactors = { fullyLoadedPerJ: 0, locationGPerJ: 0, marketGPerJ: 0 };
  let day = new Map<string, number>();
  let month = emptySums();
  for (const r of usage) {
    if (r.hourStartMs < period.fromMs || r.hourStartMs >= period.toMs) continue;
    if (r.hourStartMs !== lastHour || r.node !== lastNode) {
      factors = factorsOf(r.node, r.hourStartMs);
      if (r.hourStartMs !== lastHour) {
        const d = dayOf(r.hourStartMs);
        let perTier = dailyByTier.get(d);
        if (!perTier) dailyByTier.set(d, (perTier = new Map()));
        day = perTier;
        const m = monthOf(r.hourStartMs);
        let sums = months.get(m);
        if (!sums) months.set(m, (sums = emptySums()));
        month = sums;
      }
      lastNode = r.node;
      lastHour = r.hourStartMs;
    }
    const key = `${r.model}\u0001${r.tier}\u0001${r.cacheBucket}\u0001${r.batchBucket}\u0001${r.team}\u0001${r.feature}`;
    let c = combos.get(key);
    if (!c) {
      c = {
        ...emptySums(),
        model: r.model,
        tier: r.tier,
        cacheBucket: r.cacheBucket,
        batchBucket: r.batchBucket,
        team: r.team,
        feature: r.feature,
      };
      combos.set(key, c);
    }
    const attributed = r.staticJ + r.dynamicJ;
    const fullyLoaded = attributed * factors.fullyLoadedPerJ;
    addRow(c, r, attributed, fullyLoaded, factors);
    addRow(month, r, attributed, fullyLoaded, factors);
    day.set(r.tier, (day.get(r.tier) ?? 0) + attributed);
  }
  return { combos, dailyByTier, months };
}

function addRow(s: UsageSums, r: HourlyUsageRow, attributed: number, fullyLoaded: number, f: HourFactors): void {
  s.requests += r.requests;
  s.promptTokens += r.promptTokens;
  s.cachedTokens += r.cachedTokens;
  s.completionTokens += r.completionTokens;
  s.reasoningTokens += r.reasoningTokens;
  s.attributedJ += attributed;
  s.fullyLoadedJ += fullyLoaded;
  s.locationG += fullyLoaded * f.locationGPerJ;
  s.marketG += fullyLoaded * f.marketGPerJ;
  if (r.simulated) s.simulatedJ += attributed;
}
