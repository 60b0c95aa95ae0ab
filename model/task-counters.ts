import type { LabelValueFn } from './tasks.js';

/**
 * What a closed task adds to tokenwatt_tasks_total and tokenwatt_waste_energy_joules_total, series
 * by series. One function for both places that count it: the settler writes these increments to
 * the ledger in the settlement that closes the task, and the Prometheus metrics add them after
 * the commit, so the ledger's lifetime sums (what a restart seeds the counters from) are exactly
 * what the process counted, with the same label folding.
 */

/** A closed task, as the settler hands it to the task metrics. */
export interface TaskClose {
  readonly tier: string;
  readonly succeeded: boolean;
  readonly joules: number;
  /** Energy of its failed, cancelled and superseded attempts. */
  readonly wasteJ: number;
  /** Optional split of wasteJ by reason (e.g. error, cancelled, retried); the remainder stays "attempt". */
  readonly wasteByReason?: Readonly<Record<string, number>>;
  /**
   * A task counted at an earlier close that closed again after more requests: it is not counted
   * again; joules, wasteJ and failedJ are what it added since.
   */
  readonly continued?: boolean;
  /** With `continued`: the task_failed waste it added (without it, that is joules - wasteJ of a failed task). */
  readonly failedJ?: number;
}

/**
 * What the task counters have of a task that closed: the tier and outcome it had at its last close,
 * and what they counted of it over all its closes. A close after more requests counts only what
 * the task added since (see {@link TaskClose} `continued`), under this tier and outcome.
 */
export interface CountedTask {
  readonly tier: string;
  readonly succeeded: boolean;
  /** Its energy as far as counted (the highest it had at a close). */
  readonly joules: number;
  /** Waste counted of it as attempt (and other reasons), over all its closes. */
  readonly wasteJ: number;
  /**
   * Waste counted of it as task_failed, over all its closes: kept apart because its outcome can
   * flip back and forth (failed, ok, failed), and a close that fails again counts only the excess.
   */
  readonly failedJ: number;
}

/** The figures of a task at a close that its counters need. */
export interface TaskNow {
  readonly tier: string;
  readonly succeeded: boolean;
  readonly joules: number;
  readonly wasteJ: number;
}

/** Energy of a failed task that is not attempt waste (reason task_failed in the counters). */
export function failedRestJ(t: TaskNow): number {
  return t.succeeded ? 0 : Math.max(0, t.joules - t.wasteJ);
}

/**
 * What a close of a task counts (null: nothing) and what the counters then have of it. `counted`:
 * what they had before (null: never closed, so it is counted whole). Counted before, only what
 * it added since is counted, never less (counters cannot be taken back): the waste counted of it
 * grows to the largest whole-task waste it had at a close, never more, so a joule is never counted
 * as waste twice, however the task's outcome and attempts turn after a close.
 */
export function closeOfTask(now: TaskNow, counted: CountedTask | null): { close: TaskClose | null; after: CountedTask } {
  if (counted === null) {
    const close = { tier: now.tier, succeeded: now.succeeded, joules: now.joules, wasteJ: now.wasteJ };
    return { close, after: { ...close, failedJ: failedRestJ(now) } };
  }
  // The task's whole waste now, less all counted of it before, whatever the reason then: energy
  // counted as task_failed that a retry has since made attempt waste is not counted again.
  const addedJ = Math.max(0, now.wasteJ + failedRestJ(now) - counted.wasteJ - counted.failedJ);
  const wasteJ = Math.min(Math.max(0, now.wasteJ - counted.wasteJ), addedJ);
  const failedJ = Math.min(Math.max(0, failedRestJ(now) - counted.failedJ), addedJ - wasteJ);
  const joules = Math.max(0, now.joules - counted.joules);
  const after = {
    tier: now.tier,
    succeeded: now.succeeded,
    joules: Math.max(counted.joules, now.joules),
    wasteJ: counted.wasteJ + wasteJ,
    failedJ: counted.failedJ + failedJ,
  };
  const close = joules > 0 || wasteJ > 0 || failedJ > 0 ? { tier: counted.tier, succeeded: counted.succeeded, joules, wasteJ, failedJ, continued: true } : null;
  return { close, after };
}

/** One increment of tokenwatt_tasks_total{tier,succeeded,simulated}. */
export interface TaskCountIncrement {
  readonly tier: string;
  readonly succeeded: boolean;
  readonly simulated: boolean;
  readonly count: number;
}

/** One increment of tokenwatt_waste_energy_joules_total{tier,reason,simulated}. */
export interface WasteIncrement {
  readonly tier: string;
  readonly reason: string;
  readonly simulated: boolean;
  readonly joules: number;
}

/** The counter increments of one close: `tier` is the exported (capped) tier, also for the histogram. */
export interface TaskCloseIncrements {
  readonly tier: string;
  /** null for a continued task (counted at its first close). */
  readonly task: TaskCountIncrement | null;
  readonly waste: readonly WasteIncrement[];
}

/** Float noise from the waste split must not turn into an increment of its own. */
const NOISE_J = 1e-9;

/**
 * The increments of one closed task, in the order the metrics add them. `label` caps tier and
 * waste reason values (the metrics' capper: "tier" and "waste_reason"); "attempt" and
 * "task_failed" are the counter's own reasons and are not capped. An increment may be negative or
 * not finite when its input is: a counter refuses it (see {@link isCounterIncrement}).
 */
export function taskCloseIncrements(t: TaskClose, label: LabelValueFn, simulated: boolean): TaskCloseIncrements {
  const tier = label('tier', t.tier);
  const task = t.continued ? null : { tier, succeeded: t.succeeded, simulated, count: 1 };
  const waste: WasteIncrement[] = [];
  let attemptJ = t.wasteJ;
  for (const [reason, joules] of Object.entries(t.wasteByReason ?? {})) {
    waste.push({ tier, reason: label('waste_reason', reason), simulated, joules });
    attemptJ -= joules;
  }
  if (attemptJ > NOISE_J) waste.push({ tier, reason: 'attempt', simulated, joules: attemptJ });
  if (t.continued || !t.succeeded) {
    const restJ = t.continued ? (t.failedJ ?? 0) : t.joules - t.wasteJ;
    if (restJ > NOISE_J) waste.push({ tier, reason: 'task_failed', simulated, joules: restJ });
  }
  return { tier, task, waste };
}

/** A counter takes only finite increments >= 0 (the metrics count a refused one as invalid). */
export function isCounterIncrement(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}
