import type { Migration } from './migration.js';

/**
 * The first schema. Times are epoch milliseconds (INTEGER), energies joules (REAL), flags 0/1.
 * Rollup and task values are additive so that a settlement adds to what is there.
 */
export const initialSchema: Migration = {
  version: 1,
  name: 'initial schema',
  sql: `
    -- One row per GPU reading. The key doubles as the (gpu, time) index that loadSamples needs.
    CREATE TABLE power_samples (
      ts_ms     INTEGER NOT NULL,
      gpu_uuid  TEXT    NOT NULL,
      gpu_index INTEGER NOT NULL,
      power_w   REAL,
      energy_j  REAL,
      averaged  INTEGER NOT NULL DEFAULT 0,
      simulated INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (gpu_uuid, ts_ms)
    ) WITHOUT ROWID;

    -- One row per request_id (the idempotency key): the record as received, its running
    -- attribution while its periods settle, and its final figures once the last one has.
    CREATE TABLE requests (
      request_id          TEXT    NOT NULL PRIMARY KEY,
      task_id             TEXT,
      attempt             INTEGER,
      model               TEXT    NOT NULL,
      tier                TEXT    NOT NULL,
      gpus                TEXT    NOT NULL,          -- JSON array of physical GPU UUIDs
      start_ms            INTEGER NOT NULL,
      first_token_ms      INTEGER,
      end_ms              INTEGER NOT NULL,
      prompt_tokens       INTEGER NOT NULL,
      cached_tokens       INTEGER NOT NULL,
      completion_tokens   INTEGER NOT NULL,
      reasoning_tokens    INTEGER NOT NULL,
      batch_size          INTEGER,
      status              TEXT    NOT NULL,
      labels              TEXT    NOT NULL,          -- JSON object
      tokens_estimated    INTEGER NOT NULL,
      granularity         TEXT    NOT NULL,
      source              TEXT    NOT NULL,
      late                INTEGER NOT NULL,
      received_at_ms      INTEGER NOT NULL,
      static_j            REAL    NOT NULL DEFAULT 0,
      dynamic_j           REAL    NOT NULL DEFAULT 0,
      prefill_j           REAL    NOT NULL DEFAULT 0,
      decode_j            REAL    NOT NULL DEFAULT 0,
      active_ms           REAL    NOT NULL DEFAULT 0,
      concurrency_ms      REAL    NOT NULL DEFAULT 0,
      estimated           INTEGER NOT NULL DEFAULT 0,
      per_gpu_j           TEXT    NOT NULL DEFAULT '{}', -- JSON object: GPU UUID -> joules
      joules              REAL,
      j_per_output_token  REAL,
      observed_batch_size REAL,
      batch_bucket        TEXT,
      cache_bucket        TEXT,
      finalized           INTEGER NOT NULL DEFAULT 0,
      settled_at_ms       INTEGER
    );
    CREATE INDEX requests_end ON requests (end_ms);
    CREATE INDEX requests_unsettled ON requests (start_ms) WHERE finalized = 0;

    -- Per GPU totals of each settled period (the conservation self-check lives here).
    CREATE TABLE periods (
      period_start_ms       INTEGER NOT NULL,
      period_end_ms         INTEGER NOT NULL,
      gpu_uuid              TEXT    NOT NULL,
      gpu_index             INTEGER NOT NULL,
      measured_j            REAL    NOT NULL,
      idle_j                REAL    NOT NULL,
      static_j              REAL    NOT NULL,
      dynamic_j             REAL    NOT NULL,
      unattributed_j        REAL    NOT NULL,
      residual_j            REAL    NOT NULL,
      estimated_j           REAL    NOT NULL,
      covered_ms            REAL    NOT NULL,
      counter_resets        INTEGER NOT NULL,
      gaps                  INTEGER NOT NULL,
      samples               INTEGER NOT NULL,
      idle_baseline_w       REAL,
      observed_idle_power_w REAL,
      idle_ms               REAL    NOT NULL,
      PRIMARY KEY (period_start_ms, gpu_uuid)
    ) WITHOUT ROWID;

    CREATE TABLE hourly_energy (
      hour_start_ms  INTEGER NOT NULL,
      node           TEXT    NOT NULL,
      gpu_uuid       TEXT    NOT NULL,
      measured_j     REAL    NOT NULL,
      idle_j         REAL    NOT NULL,
      static_j       REAL    NOT NULL,
      dynamic_j      REAL    NOT NULL,
      unattributed_j REAL    NOT NULL,
      estimated_j    REAL    NOT NULL,
      covered_ms     REAL    NOT NULL,
      counter_resets INTEGER NOT NULL,
      gaps           INTEGER NOT NULL,
      simulated      INTEGER NOT NULL,
      PRIMARY KEY (hour_start_ms, node, gpu_uuid)
    ) WITHOUT ROWID;

    CREATE TABLE hourly_usage (
      hour_start_ms     INTEGER NOT NULL,
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
      PRIMARY KEY (hour_start_ms, node, model, tier, cache_bucket, batch_bucket, status, team, feature)
    ) WITHOUT ROWID;

    CREATE TABLE hourly_host (
      hour_start_ms INTEGER NOT NULL,
      node          TEXT    NOT NULL,
      host_j        REAL    NOT NULL,
      estimated     INTEGER NOT NULL,
      PRIMARY KEY (hour_start_ms, node)
    ) WITHOUT ROWID;

    CREATE TABLE hourly_quality (
      hour_start_ms    INTEGER NOT NULL,
      node             TEXT    NOT NULL,
      late_records     INTEGER NOT NULL,
      rejected_records INTEGER NOT NULL,
      sample_errors    INTEGER NOT NULL,
      PRIMARY KEY (hour_start_ms, node)
    ) WITHOUT ROWID;

    CREATE TABLE tasks (
      task_id           TEXT    NOT NULL PRIMARY KEY,
      node              TEXT    NOT NULL,
      first_start_ms    INTEGER NOT NULL,
      last_end_ms       INTEGER NOT NULL,
      requests          INTEGER NOT NULL,
      joules            REAL    NOT NULL,
      waste_j           REAL    NOT NULL,
      completion_tokens INTEGER NOT NULL,
      last_status       TEXT    NOT NULL,
      tier              TEXT    NOT NULL,
      team              TEXT    NOT NULL,
      feature           TEXT    NOT NULL
    );
    CREATE INDEX tasks_last_end ON tasks (last_end_ms);

    CREATE TABLE agent_state (
      key   TEXT NOT NULL PRIMARY KEY,
      value TEXT NOT NULL
    ) WITHOUT ROWID;
  `,
};
