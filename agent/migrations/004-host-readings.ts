import type { Migration } from './migration.js';

/**
 * Host (CPU + DRAM) energy readings, kept like the GPU power samples: flushed on each settle tick,
 * read back by a restarted agent and pruned with the samples. Without them the host energy of the
 * periods still inside the lateness window when the agent stopped was lost at each restart.
 *
 * The host counter is cumulative since its source started, so it restarts with each agent run:
 * `segment` names the run (readings of one segment form one counter), and no energy is taken
 * across two segments.
 *
 * Only the agent reads this table; the hourly readers (ESG export, analyze) never do.
 */
export const hostReadings: Migration = {
  version: 4,
  name: 'host readings',
  sql: `
    CREATE TABLE host_readings (
      ts_ms     INTEGER NOT NULL PRIMARY KEY,
      segment   INTEGER NOT NULL,
      energy_j  REAL    NOT NULL,
      estimated INTEGER NOT NULL
    ) WITHOUT ROWID;
  `,
};
