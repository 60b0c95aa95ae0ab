import type { Migration } from './migration.js';

/**
 * What the task counters have of a task that closed: the tier and outcome it had at its last close,
 * its energy as far as counted, and the waste counted of it over all its closes, as attempt
 * (counted_waste_j) and as task_failed (counted_failed_j, apart: an outcome that flips failed, ok,
 * failed must not count the same joules as task_failed twice). Written in the settlement that
 * closes the task, and in the one that reopens a task closed before this version. A restart that finds the task open goes on
 * from them: its next close counts only what it added since, not the whole task again. NULL: the
 * task has not closed since this version (a task closed before it and open at the upgrade is
 * counted whole again, as before: README).
 */
export const taskCounted: Migration = {
  version: 14,
  name: 'what the task counters have of a closed task',
  sql: `
    ALTER TABLE tasks ADD COLUMN counted_tier TEXT;
    ALTER TABLE tasks ADD COLUMN counted_succeeded INTEGER;
    ALTER TABLE tasks ADD COLUMN counted_joules REAL;
    ALTER TABLE tasks ADD COLUMN counted_waste_j REAL;
    ALTER TABLE tasks ADD COLUMN counted_failed_j REAL;
  `,
};
