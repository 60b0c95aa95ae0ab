import type { Migration } from './migration.js';

/**
 * Lifetime sums of the rollup rows and tasks that retention has deleted, so that the counter
 * totals the agent seeds Prometheus from never shrink when old rollups are pruned.
 *
 * Each table is keyed like the group its counter-total query produces, without the hour: per GPU
 * (energy), per label set (usage), and, for the totals that are not grouped (host, quality,
 * tasks), per node (the query sums over all rows). Every key column is NOT NULL, as in the
 * hourly tables the sums come from: SQLite treats NULLs as distinct in a key, so a NULL key
 * would add a new row at each prune instead of adding to the one there.
 *
 * Only the counter totals read these tables; the hourly readers (ESG export, analyze) never do.
 */
export const prunedTotals: Migration = {
  version: 2,
  name: 'pruned totals',
  sql: `
    CREATE TABLE pruned_energy (
      gpu_uuid       TEXT    NOT NULL PRIMARY KEY,
      measured_j     REAL    NOT NULL,
      idle_j         REAL    NOT NULL,
      static_j       REAL    NOT NULL,
      dynamic_j      REAL    NOT NULL,
      unattributed_j REAL    NOT NULL,
      estimated_j    REAL    NOT NULL,
      simulated      INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE pruned_usage (
      node              TEXT    NOT NULL,
      model             TEXT    NOT NULL,
      tier              TEXT    NOT NULL,
      cache_bucket      TEXT    NOT NULL,
      batch_bucket      TEXT    NOT NULL,
      status            TEXT    NOT NULL,
      team              TEXT    NOT NULL,
      feature           TEXT    NOT NULL,
      requests          INTEGER NOT NULL,
      prompt_tokens     INTEGER NOT NULL,
      cached_tokens     INTEGER NOT NULL,
      completion_tokens INTEGER NOT NULL,
      reasoning_tokens  INTEGER NOT NULL,
      static_j          REAL    NOT NULL,
      dynamic_j         REAL    NOT NULL,
      prefill_j         REAL    NOT NULL,
      decode_j          REAL    NOT NULL,
      simulated         INTEGER NOT NULL,
      PRIMARY KEY (node, model, tier, cache_bucket, batch_bucket, status, team, feature)
    ) WITHOUT ROWID;

    CREATE TABLE pruned_host (
      node   TEXT NOT NULL PRIMARY KEY,
      host_j REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE pruned_quality (
      node             TEXT    NOT NULL PRIMARY KEY,
      late_records     INTEGER NOT NULL,
      rejected_records INTEGER NOT NULL,
      sample_errors    INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- task_count and succeeded count task rows deleted (succeeded: those whose last status was ok).
    CREATE TABLE pruned_tasks (
      node       TEXT    NOT NULL PRIMARY KEY,
      task_count INTEGER NOT NULL,
      succeeded  INTEGER NOT NULL,
      joules     REAL    NOT NULL,
      waste_j    REAL    NOT NULL
    ) WITHOUT ROWID;
  `,
};
