import type { Database } from 'better-sqlite3';
import { utcDaySlices } from './report-period.js';
import type { ReportPeriod } from './report-period.js';
import { dayOf, monthOf } from './report-numbers.js';
import type { TaskAggregateRow } from './task-summary.js';
import { emptySums } from './usage-breakdowns.js';
import type { ComboSums, HourFactors, UsageAggregate, UsageNodeHourTotal, UsageSums } from './usage-breakdowns.js';

/**
 * The usage and task sums of a period computed inside SQLite, on a read-only connection to the
 * ledger file. A busy quarter holds millions of hourly_usage rows: grouping them in SQLite, one
 * day at a time, with each node-hour's factors joined from a TEMP table, avoids turning every
 * row into a JavaScript object (the streaming path costs ~10x the time and GC).
 *
 * It reads the ledger's hourly_usage and tasks tables (agent/migrations/001-initial.ts); the
 * streaming path over Ledger.readHourlyUsage stays the reference and the fallback.
 */

const USAGE_BY_COMBINATION = `
  SELECT u.model, u.tier, u.cache_bucket, u.batch_bucket, u.status, u.team, u.feature,
    sum(u.requests), sum(u.prompt_tokens), sum(u.cached_tokens), sum(u.completion_tokens), sum(u.reasoning_tokens),
    sum(u.static_j + u.dynamic_j),
    sum((u.static_j + u.dynamic_j) * f.k),
    sum((u.static_j + u.dynamic_j) * f.k * f.loc),
    sum((u.static_j + u.dynamic_j) * f.k * f.mkt),
    sum(CASE WHEN u.simulated <> 0 THEN u.static_j + u.dynamic_j ELSE 0 END),
    sum(f.k IS NULL)
  FROM hourly_usage u LEFT JOIN temp.esg_hour_factors f ON f.hour = u.hour_start_ms AND f.node = u.node
  WHERE u.hour_start_ms >= ? AND u.hour_start_ms < ?
  GROUP BY u.model, u.tier, u.cache_bucket, u.batch_bucket, u.status, u.team, u.feature`;
// status is grouped although the report drops it: the groups then follow the primary key's order
// within each hour, which SQLite's sorter handles faster (~15% on a busy quarter).

type UsageSqlRow = [string, string, string, string, string, string, string, number, number, number, number, number, number, number | null, number | null, number | null, number, number];

/**
 * Usage sums per label combination, day and month. Returns null when some usage row has no
 * measured node-hour to take its factors from: the caller then streams rows instead, which
 * handles that case (and says so in the report).
 */
export function aggregateUsageInSqlite(db: Database, period: ReportPeriod, factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>): UsageAggregate | null {
  db.exec('DROP TABLE IF EXISTS temp.esg_hour_factors');
  db.exec('CREATE TEMP TABLE esg_hour_factors (hour INTEGER NOT NULL, node TEXT NOT NULL, k REAL NOT NULL, loc REAL NOT NULL, mkt REAL NOT NULL, PRIMARY KEY (hour, node)) WITHOUT ROWID');
  try {
    const insert = db.prepare('INSERT INTO temp.esg_hour_factors VALUES (?, ?, ?, ?, ?)');
    db.transaction(() => {
      for (const [node, hours] of factors) for (const [hour, f] of hours) insert.run(hour, node, f.fullyLoadedPerJ, f.locationGPerJ, f.marketGPerJ);
    })();
    const query = db.prepare(USAGE_BY_COMBINATION).raw(true);
    const combos = new Map<string, ComboSums>();
    const dailyByTier = new Map<string, Map<string, number>>();
    const months = new Map<string, UsageSums>();
    // One UTC day at a time: each slice's rows all belong to its day and month.
    for (const [from, to] of utcDaySlices(period)) {
      const day = dayOf(from);
      const month = monthOf(from);
      const perTier = new Map<string, number>();
      let monthSums = months.get(month);
      for (const row of query.all(from, to) as UsageSqlRow[]) {
        const [model, tier, cacheBucket, batchBucket, , team, feature, requests, prompt, cached, completion, reasoning, attributed, fullyLoaded, locationG, marketG, simulated, unmatched] = row;
        if (unmatched > 0) return null;
        const sums: UsageSums = {
          requests,
          promptTokens: prompt,
          cachedTokens: cached,
          completionTokens: completion,
          reasoningTokens: reasoning,
          attributedJ: attributed,
          fullyLoadedJ: fullyLoaded ?? 0,
          locationG: locationG ?? 0,
          marketG: marketG ?? 0,
          simulatedJ: simulated,
        };
        const key = `${model}\u0001${tier}\u0001${cacheBucket}\u0001${batchBucket}\u0001${team}\u0001${feature}`;
        let combo = combos.get(key);
        if (!combo) {
          combo = { ...emptySums(), model, tier, cacheBucket, batchBucket, team, feature };
          combos.set(key, combo);
        }
        add(combo, sums);
        if (!monthSums) months.set(month, (monthSums = emptySums()));
        add(monthSums, sums);
        perTier.set(tier, (perTier.get(tier) ?? 0) + attributed);
      }
      if (perTier.size > 0) dailyByTier.set(day, perTier);
    }
    return { combos, dailyByTier, months };
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.esg_hour_factors');
  }
}

function add(into: UsageSums, s: UsageSums): void {
  into.requests += s.requests;
  into.promptTokens += s.promptTokens;
  into.cachedTokens += s.cachedTokens;
  into.completionTokens += s.completionTokens;
  into.reasoningTokens += s.reasoningTokens;
  into.attributedJ += s.attributedJ;
  into.fullyLoadedJ += s.fullyLoadedJ;
  into.locationG += s.locationG;
  into.marketG += s.marketG;
  into.simulatedJ += s.simulatedJ;
}

/**
 * The attributed energy of the period's usage rows per node-hour: the denominators of the fully
 * loaded factors (build-esg-report.ts). Grouped along the primary key (hour, node, ...): no sort.
 */
export function usageTotalsInSqlite(db: Database, period: ReportPeriod): UsageNodeHourTotal[] {
  const rows = db
    .prepare(
      `SELECT hour_start_ms, node, sum(static_j + dynamic_j) FROM hourly_usage
       WHERE hour_start_ms >= ? AND hour_start_ms < ? GROUP BY hour_start_ms, node`,
    )
    .raw(true)
    .all(period.fromMs, period.toMs) as [number, string, number][];
  return rows.map(([hourStartMs, node, attributedJ]) => ({ hourStartMs, node, attributedJ }));
}

/**
 * Tasks whose last request ended in the period, counted per tier (a task succeeded when its
 * last status is "ok", as Ledger.readTasks reads it).
 */
export function aggregateTasksInSqlite(db: Database, period: ReportPeriod): TaskAggregateRow[] {
  const rows = db
    .prepare(
      `SELECT node, tier, count(*), sum(last_status = 'ok'), sum(joules), sum(waste_j) FROM tasks
       WHERE last_end_ms >= ? AND last_end_ms < ? GROUP BY node, tier ORDER BY node, tier`,
    )
    .raw(true)
    .all(period.fromMs, period.toMs) as [string, string, number, number, number, number][];
  return rows.map(([node, tier, count, succeeded, joules, wasteJ]) => ({ hourStartMs: period.fromMs, node, tier, count, succeeded, joules, wasteJ }));
}
