import type { Migration } from './migration.js';

/**
 * pruned_usage keyed by simulated too: the usage sums that retention carries out of hourly_usage
 * stay apart for a label set counted both under a simulated power source (a demo) and a measured
 * one, so each series of the usage counters (simulated="true" and "false") is seeded with its own
 * sums after a restart. Rows pruned before this version were merged under the highest flag; they
 * stay so.
 */
export const prunedUsageBySimulated: Migration = {
  version: 13,
  name: 'pruned usage sums by simulated',
  sql: `
    CREATE TABLE pruned_usage_by_simulated (
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
      PRIMARY KEY (node, model, tier, cache_bucket, batch_bucket, status, team, feature, simulated)
    ) WITHOUT ROWID;
    INSERT INTO pruned_usage_by_simulated (node, model, tier, cache_bucket, batch_bucket, status, team, feature, requests,
        prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j, decode_j, simulated)
      SELECT node, model, tier, cache_bucket, batch_bucket, status, team, feature, requests,
        prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j, decode_j, simulated
      FROM pruned_usage;
    DROP TABLE pruned_usage;
    ALTER TABLE pruned_usage_by_simulated RENAME TO pruned_usage;
  `,
};
