import type { Migration } from './migration.js';

/**
 * What the task counters have of a task that closed and then got more requests (reopened): the
 * task as it was at that close (tier and outcome it was counted under, energy and waste). Written
 * in the settlement that reopens the task, so that a restart while the task is open goes on from
 * it: the task's next close counts only what it added since, not the whole task again. NULL: the
 * task has not reopened since this version (a task that never closed, or one reopened before it,
 * which a restart while it is open still counts whole again: README).
 */
export const taskCounted: Migration = {
  version: 14,
  name: 'what the task counters have of a reopened task',
  sql: `
    ALTER TABLE tasks ADD COLUMN counted_tier TEXT;
    ALTER TABLE tasks ADD COLUMN counted_succeeded INTEGER;
    ALTER TABLE tasks ADD COLUMN counted_joules REAL;
    ALTER TABLE tasks ADD COLUMN counted_waste_j REAL;
  `,
};
