import type { Migration } from './migration.js';

/**
 * Request ids leave the requests table's primary key for an index of their hashes that is written
 * in batches (agent/recent-request-ids.ts). With random ids (`chatcmpl-<uuid>`, as OpenAI-compatible
 * servers give) the primary key took every new record on an index page of its own: at 1,000
 * records/s that was most of the agent's SQLite writes (BENCHMARKS.md, agent overhead).
 *
 * - requests is rebuilt with `seq INTEGER PRIMARY KEY AUTOINCREMENT`, each row keeping its rowid as
 *   its seq. An alias of the rowid is stable across VACUUM, and AUTOINCREMENT never hands out a seq
 *   again after its row is pruned: rows above the merged-through mark are exactly the unmerged ones.
 * - request_ids holds (hash of request_id, seq); a hash may name several rows, each candidate is
 *   checked against its row's request_id. A prune deletes the entries of the rows it deletes by
 *   their (hash, seq), so the table needs no second index, which would cost each entry a write.
 * - The index is filled when the agent opens the file (Ledger.open merges every row above the
 *   mark, here all of them): the hash is computed in JavaScript, not by a migration's SQL.
 *
 * The idempotency rule itself is unchanged: one row per request_id, checked by the agent, its
 * only writer (the writer lease); the file no longer enforces it by a constraint.
 */
export const requestIdIndex: Migration = {
  version: 5,
  name: 'request id index written in batches',
  sql: `
    CREATE TABLE requests_v5 (
      seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
      request_id          TEXT    NOT NULL,
      task_id             TEXT,
      attempt             INTEGER,
      model               TEXT    NOT NULL,
      tier                TEXT    NOT NULL,
      gpus                TEXT    NOT NULL,
      start_ms            INTEGER NOT NULL,
      first_token_ms      INTEGER,
      end_ms              INTEGER NOT NULL,
      prompt_tokens       INTEGER NOT NULL,
      cached_tokens       INTEGER NOT NULL,
      completion_tokens   INTEGER NOT NULL,
      reasoning_tokens    INTEGER NOT NULL,
      batch_size          INTEGER,
      status              TEXT    NOT NULL,
      labels              TEXT    NOT NULL,
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
      per_gpu_j           TEXT    NOT NULL DEFAULT '{}',
      joules              REAL,
      j_per_output_token  REAL,
      observed_batch_size REAL,
      batch_bucket        TEXT,
      cache_bucket        TEXT,
      finalized           INTEGER NOT NULL DEFAULT 0,
      settled_at_ms       INTEGER
    );
    INSERT INTO requests_v5 (seq, request_id, task_id, attempt, model, tier, gpus, start_ms, first_token_ms, end_ms,
      prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, batch_size, status, labels, tokens_estimated,
      granularity, source, late, received_at_ms, static_j, dynamic_j, prefill_j, decode_j, active_ms, concurrency_ms,
      estimated, per_gpu_j, joules, j_per_output_token, observed_batch_size, batch_bucket, cache_bucket, finalized,
      settled_at_ms)
    SELECT rowid, request_id, task_id, attempt, model, tier, gpus, start_ms, first_token_ms, end_ms,
      prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, batch_size, status, labels, tokens_estimated,
      granularity, source, late, received_at_ms, static_j, dynamic_j, prefill_j, decode_j, active_ms, concurrency_ms,
      estimated, per_gpu_j, joules, j_per_output_token, observed_batch_size, batch_bucket, cache_bucket, finalized,
      settled_at_ms
    FROM requests ORDER BY rowid;
    DROP TABLE requests;
    ALTER TABLE requests_v5 RENAME TO requests;
    CREATE INDEX requests_end ON requests (end_ms);
    CREATE INDEX requests_unsettled ON requests (start_ms) WHERE finalized = 0;
    CREATE INDEX requests_task ON requests (task_id) WHERE task_id IS NOT NULL;

    CREATE TABLE request_ids (
      h   INTEGER NOT NULL,
      rid INTEGER NOT NULL,
      PRIMARY KEY (h, rid)
    ) WITHOUT ROWID;
  `,
};
