import type { Migration } from './migration.js';

/**
 * The lifetime sums of tokenwatt_tasks_total{tier,succeeded,simulated} and
 * tokenwatt_waste_energy_joules_total{tier,reason,simulated}, series for series, as the agent
 * counted them (tier and reason as exported: capped, "(other)" past the cap). Each settlement adds
 * what the tasks it closes counted, in its own transaction, so a kill neither loses nor doubles
 * them; a restart seeds the counters from them. The task rows cannot stand in: they hold each
 * task's final tier and outcome, the counters those it had when it first closed. Never pruned.
 * Ledgers written before this version counted none: their counters start from 0 here.
 */
export const taskCounters: Migration = {
  version: 12,
  name: 'task and waste counter totals',
  sql: `
    CREATE TABLE task_counts (
      tier      TEXT    NOT NULL,
      succeeded INTEGER NOT NULL,
      simulated INTEGER NOT NULL,
      count     INTEGER NOT NULL,
      PRIMARY KEY (tier, succeeded, simulated)
    ) WITHOUT ROWID;
    CREATE TABLE waste_totals (
      tier      TEXT    NOT NULL,
      reason    TEXT    NOT NULL,
      simulated INTEGER NOT NULL,
      joules    REAL    NOT NULL,
      PRIMARY KEY (tier, reason, simulated)
    ) WITHOUT ROWID;
  `,
};
