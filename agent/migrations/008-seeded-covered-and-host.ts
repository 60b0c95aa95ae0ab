import type { Migration } from './migration.js';

/**
 * What the counters tokenwatt_gpu_covered_seconds_total and tokenwatt_host_energy_joules_total
 * are seeded from at a restart, kept through pruning as the other counters' sums are (002):
 *
 * - pruned_energy.covered_ms: the sample-covered time of the pruned energy rows;
 * - pruned_host.measured_j / estimated_j: the pruned host energy by kind (RAPL, or a configured
 *   overhead: hourly_host.estimated), the two series the host counter has.
 *
 * Rows pruned before this version carried neither: their part stays out of the seeds (host_j keeps
 * the whole). Leaving out the same amount at every restart keeps the seeded counters monotonic.
 */
export const seededCoveredAndHost: Migration = {
  version: 8,
  name: 'covered time and host energy by kind in the pruned totals',
  sql: `
    ALTER TABLE pruned_energy ADD COLUMN covered_ms REAL NOT NULL DEFAULT 0;
    ALTER TABLE pruned_host ADD COLUMN measured_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE pruned_host ADD COLUMN estimated_j REAL NOT NULL DEFAULT 0;
  `,
};
