import type { Migration } from './migration.js';

/**
 * Power samples that start a new counter run: the first sample of each GPU in an agent process
 * whose power source's counter starts again with the process (a simulator, a replay). A restart
 * before the samples of the run before it are settled reads them back from the ledger, and must
 * still know where one run ends and the next begins, or the new run's readings, a little under the
 * old ones, are read as glitches and count nothing until they pass them. Samples stored before
 * this version start no run (0).
 */
export const counterRunStart: Migration = {
  version: 6,
  name: 'counter run starts of power samples',
  sql: `
    ALTER TABLE power_samples ADD COLUMN counter_run_start INTEGER NOT NULL DEFAULT 0;
  `,
};
