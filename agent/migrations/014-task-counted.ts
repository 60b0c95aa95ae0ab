import type { Migration } from './migration.js';

/**
 * What the task counters have of a task that closed: the task as it was at its last close (the
 * tier and outcome it was counted under, its energy and waste). Written in the settlement that
 * closes the task (its row as it stands), and again in the one that reopens it (more requests after
 * the close), with the figures the settler keeps for it. A restart that finds the task open goes on
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
  `,
};
