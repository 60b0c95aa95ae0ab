import type { Migration } from './migration.js';

/**
 * The requests of a task, found by task_id: each settlement recomputes the task rows it touches
 * from all their finalized requests (a retry can turn an attempt settled earlier into waste), and
 * that lookup must not scan the requests table. Partial: requests without a task are not indexed.
 */
export const taskRequestsIndex: Migration = {
  version: 3,
  name: 'requests by task',
  sql: `
    CREATE INDEX requests_task ON requests (task_id) WHERE task_id IS NOT NULL;
  `,
};
