import type { TaskRow } from '../../model/rollup-types.js';
import type { EsgTaskTotals, EsgTasks } from './esg-report.js';
import type { ReportPeriod } from './report-period.js';
import { kwh, ratio, round } from './report-numbers.js';

export interface TaskSums {
  count: number;
  succeeded: number;
  joules: number;
  wasteJ: number;
}

export const TASK_DEFINITION =
  'A task is the set of requests sharing a task_id, counted in the period where its last request ended. ' +
  'It succeeded when the latest attempt of its last step ended ok. Its energy includes every attempt: ' +
  'waste is the energy of failed, cancelled and superseded (retried) attempts. J per successful task = all task energy / successful tasks.';

/** Counted tasks of one tier (and hour): what a metrics source has instead of one row per task. */
export interface TaskAggregateRow {
  readonly hourStartMs: number;
  readonly node: string;
  readonly tier: string;
  readonly count: number;
  readonly succeeded: number;
  readonly joules: number;
  readonly wasteJ: number;
}

/** Stream tasks whose last request ended in the period (the ledger's readTasks window); sums overall and per tier. */
export function sumTasks(
  period: ReportPeriod,
  tasks: Iterable<TaskRow>,
  aggregated: Iterable<TaskAggregateRow> = [],
): { all: TaskSums; byTier: Map<string, TaskSums> } {
  const all: TaskSums = { count: 0, succeeded: 0, joules: 0, wasteJ: 0 };
  const byTier = new Map<string, TaskSums>();
  const add = (tierName: string, count: number, succeeded: number, joules: number, wasteJ: number): void => {
    let tier = byTier.get(tierName);
    if (!tier) byTier.set(tierName, (tier = { count: 0, succeeded: 0, joules: 0, wasteJ: 0 }));
    for (const s of [all, tier]) {
      s.count += count;
      s.succeeded += succeeded;
      s.joules += joules;
      s.wasteJ += wasteJ;
    }
  };
  for (const t of tasks) {
    if (t.lastEndMs < period.fromMs || t.lastEndMs >= period.toMs) continue;
    add(t.tier, 1, t.succeeded ? 1 : 0, t.joules, t.wasteJ);
  }
  for (const a of aggregated) {
    if (a.hourStartMs < period.fromMs || a.hourStartMs >= period.toMs) continue;
    add(a.tier, a.count, a.succeeded, a.joules, a.wasteJ);
  }
  return { all, byTier };
}

/** Report form of task sums; energy null when the source counts tasks but not their joules. */
export function taskTotals(s: TaskSums, energyKnown: boolean): EsgTaskTotals {
  // Counts from a metrics source are increase() estimates: whole tasks only in the report.
  const count = Math.round(s.count);
  const succeeded = Math.round(s.succeeded);
  return {
    count,
    succeeded,
    success_rate: ratio(succeeded, count),
    energy_kwh: energyKnown ? kwh(s.joules) : null,
    waste_energy_kwh: energyKnown ? kwh(s.wasteJ) : null,
    waste_share: energyKnown ? ratio(s.wasteJ, s.joules) : null,
    j_per_successful_task: energyKnown ? ratio(s.joules, succeeded) : null,
  };
}

export function tasksSection(all: TaskSums, byTier: ReadonlyMap<string, TaskSums>, energyKnown: boolean): EsgTasks {
  return {
    ...taskTotals(all, energyKnown),
    definition: TASK_DEFINITION,
    by_tier: [...byTier.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([tier, s]) => ({ tier, ...taskTotals(s, energyKnown) })),
  };
}

/** Task sums back from a report section (what --merge adds up). */
export function taskSumsOf(t: EsgTaskTotals): TaskSums {
  return {
    count: t.count,
    succeeded: t.succeeded,
    joules: round((t.energy_kwh ?? 0) * 3_600_000),
    wasteJ: round((t.waste_energy_kwh ?? 0) * 3_600_000),
  };
}
