import type { Migration } from './migration.js';

/**
 * What more the agent seeds its Prometheus counters from at a restart:
 *
 * - hourly_host.simulated_j: the part of host_j counted while the GPU power source was simulated,
 *   and pruned_host.simulated_measured_j / simulated_estimated_j, that part of the pruned host
 *   energy by kind. tokenwatt_host_energy_joules_total{simulated} then goes on, in each series,
 *   from the energy counted under its label, whatever ran on the ledger before. Rows written
 *   before this version are taken as simulated when their hour (for pruned rows: any pruned GPU
 *   energy) was, as the seeding guessed until then.
 * - record_counts: per node, the records stored in time and those acknowledged as duplicates,
 *   counted in the transaction that decides them: tokenwatt_records_total{result="accepted"|
 *   "duplicate"} goes on from them, as result="late" does. Lifetime sums, never pruned, read by the
 *   counter totals only. Ledgers written before this version counted none.
 */
export const seedConsistency: Migration = {
  version: 9,
  name: 'simulated host energy and record counts in the rollups',
  sql: `
    ALTER TABLE hourly_host ADD COLUMN simulated_j REAL NOT NULL DEFAULT 0;
    UPDATE hourly_host SET simulated_j = host_j WHERE EXISTS (
      SELECT 1 FROM hourly_energy e WHERE e.hour_start_ms = hourly_host.hour_start_ms AND e.node = hourly_host.node AND e.simulated = 1);
    ALTER TABLE pruned_host ADD COLUMN simulated_measured_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE pruned_host ADD COLUMN simulated_estimated_j REAL NOT NULL DEFAULT 0;
    UPDATE pruned_host SET simulated_measured_j = measured_j, simulated_estimated_j = estimated_j
      WHERE EXISTS (SELECT 1 FROM pruned_energy WHERE simulated = 1);
    CREATE TABLE record_counts (
      node       TEXT    NOT NULL PRIMARY KEY,
      accepted   INTEGER NOT NULL,
      duplicates INTEGER NOT NULL
    ) WITHOUT ROWID;
  `,
};
