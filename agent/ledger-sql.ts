import { PENDING_FLAGS, REQUEST_INSERT_COLUMNS } from './ledger-rows.js';

/** SQL text of the ledger's statements (prepared once per connection by the Ledger). */

/** `col = col + excluded.col, ...` for these columns: the additive part of an upsert into a rollup or totals row. */
const addExcluded = (columns: string): string =>
  columns
    .split(',')
    .map((c) => c.trim())
    .map((c) => `${c} = ${c} + excluded.${c}`)
    .join(',\n    ');

/**
 * Up to this many rows go in one INSERT statement (requests, and request_ids in a merge): SQLite
 * and better-sqlite3 charge much of a single-row insert per statement, not per row. A throwaway
 * micro-benchmark put a 21-column row at about 1 µs less from 10 rows a statement on; with the
 * batch's one id lookup, a stored record costs 16-18% fewer instructions (BENCHMARKS.md, eighth
 * round of 2026-11-23). The Ledger passes the parameters spread, not as one array: better-sqlite3
 * reads an array's elements through V8's generic property lookup, which cost more than the
 * statements saved.
 */
export const ROWS_PER_INSERT = { requests: 32, requestIds: 256 } as const;

/**
 * `rows` requests with their seqs given (the Ledger numbers them above the largest ever used, as
 * AUTOINCREMENT would). The agent has checked that each request_id is not taken (Ledger.seqOf):
 * the file has no constraint on it. Parameters: seq, then REQUEST_INSERT_COLUMNS, per row.
 */
export const insertRequests = byRowCount((rows) => `INSERT INTO requests (seq, ${REQUEST_INSERT_COLUMNS.join(', ')}) VALUES ${valuesList(rows, REQUEST_INSERT_COLUMNS.length + 1)}`);
/** The largest seq ever given to a request row (AUTOINCREMENT's counter, or the table's largest if higher), 0 when none. */
export const LAST_REQUEST_SEQ = `SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'requests'), 0),
  coalesce((SELECT max(seq) FROM requests), 0)) AS seq`;

/**
 * The statement text for a row count, built once per count: the Ledger finds its prepared
 * statements by their text, and the same string is found faster than an equal new one.
 */
function byRowCount(build: (rows: number) => string): (rows: number) => string {
  const texts = new Map<number, string>();
  return (rows) => {
    let text = texts.get(rows);
    if (text === undefined) {
      text = build(rows);
      texts.set(rows, text);
    }
    return text;
  };
}

/** `(?, ?, ...), (?, ?, ...)`: `rows` tuples of `columns` placeholders. */
function valuesList(rows: number, columns: number): string {
  if (!(Number.isInteger(rows) && rows >= 1)) throw new Error(`valuesList: rows must be a whole number >= 1, got ${rows}`);
  const tuple = `(${Array.from({ length: columns }, () => '?').join(', ')})`;
  return Array.from({ length: rows }, () => tuple).join(', ');
}

/*
 * The request_id index (schema version 5, migrations/005-request-id-index.ts): a candidate seq,
 * from request_ids or from the rows not merged yet, is a row only if its request_id matches.
 */
export const ID_CANDIDATES = 'SELECT rid FROM request_ids WHERE h = ?';
/** ID_CANDIDATES for many hashes at once (a JSON array): rows of (h, rid). */
export const ID_CANDIDATES_OF = 'SELECT r.h, r.rid FROM json_each(?) AS j JOIN request_ids AS r ON r.h = j.value';
export const IS_REQUEST_AT = 'SELECT 1 AS found FROM requests WHERE seq = ? AND request_id = ?';
export const REQUEST_AT = 'SELECT * FROM requests WHERE seq = ? AND request_id = ?';
/**
 * A stored request's facts replaced by a merged sighting of it (OTLP), only while no energy has
 * been attributed to it: it is then attributed once, with the merged facts.
 */
export const MERGE_REQUEST_AT = `UPDATE requests SET task_id = ?, attempt = ?, start_ms = ?, first_token_ms = ?, end_ms = ?,
    prompt_tokens = ?, cached_tokens = ?, completion_tokens = ?, reasoning_tokens = ?, status = ?, labels = ?,
    tokens_estimated = ?, otlp_spans = ?
  WHERE seq = ? AND request_id = ? AND finalized = 0 AND late = 0 AND static_j = 0 AND dynamic_j = 0 AND active_ms = 0`;
/** `rows` (hash, seq) pairs of a merge chunk (a row pruned before its merge is taken out of the chunk first). */
export const mergeRequestIds = byRowCount((rows) => `INSERT OR IGNORE INTO request_ids (h, rid) VALUES ${valuesList(rows, 2)}`);
/** At open, every row above the merged-through mark (the rows a stopped agent had not merged). */
export const MERGE_REQUEST_IDS_ABOVE = `INSERT OR IGNORE INTO request_ids (h, rid)
  SELECT tokenwatt_request_id_hash(request_id), seq FROM requests WHERE seq > ? ORDER BY 1, 2`;
export const MAX_REQUEST_SEQ = 'SELECT max(seq) AS seq FROM requests';
/** The index entries of the rows PRUNE_REQUESTS deletes (parameter: its cut-off), found by (hash, seq). */
export const PRUNE_REQUEST_IDS = `DELETE FROM request_ids WHERE (h, rid) IN
  (SELECT tokenwatt_request_id_hash(request_id), seq FROM requests WHERE end_ms < ? AND finalized = 1)`;
/** The rows PRUNE_REQUESTS deletes (same cut-off) that are above the merged-through mark (second parameter). */
export const PRUNED_UNMERGED_SEQS = 'SELECT seq FROM requests WHERE end_ms < ? AND finalized = 1 AND seq > ?';

export const INSERT_SAMPLE = `INSERT OR IGNORE INTO power_samples
  (ts_ms, gpu_uuid, gpu_index, power_w, energy_j, averaged, simulated, counter_run_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`;

const SAMPLE_COLUMNS = 'ts_ms, gpu_uuid, gpu_index, power_w, energy_j, averaged, simulated, counter_run_start';
/** Samples in [from, to] plus the neighbours just outside, so boundary intervals can be split. */
/** Through the primary key (gpu_uuid, ts_ms): one index seek. */
export const EARLIEST_SAMPLE = 'SELECT min(ts_ms) AS t FROM power_samples WHERE gpu_uuid = ?';
export const LOAD_SAMPLES = `SELECT * FROM (
    SELECT * FROM (SELECT ${SAMPLE_COLUMNS} FROM power_samples WHERE gpu_uuid = @gpu AND ts_ms < @from ORDER BY ts_ms DESC LIMIT 1)
    UNION ALL
    SELECT ${SAMPLE_COLUMNS} FROM power_samples WHERE gpu_uuid = @gpu AND ts_ms >= @from AND ts_ms <= @to
    UNION ALL
    SELECT * FROM (SELECT ${SAMPLE_COLUMNS} FROM power_samples WHERE gpu_uuid = @gpu AND ts_ms > @to ORDER BY ts_ms LIMIT 1)
  ) ORDER BY ts_ms`;

/** Distinct GPUs of power_samples by skip-scan over the primary key (no full scan). */
export const SAMPLE_GPUS = `WITH RECURSIVE g(uuid) AS (
    SELECT min(gpu_uuid) FROM power_samples
    UNION ALL
    SELECT (SELECT min(gpu_uuid) FROM power_samples WHERE gpu_uuid > g.uuid) FROM g WHERE g.uuid IS NOT NULL
  ) SELECT uuid FROM g WHERE uuid IS NOT NULL`;

export const LOAD_UNSETTLED = 'SELECT * FROM requests WHERE finalized = 0 ORDER BY start_ms';
/**
 * The per-period read of unsettled requests, through the partial index requests_unsettled (only the
 * rows not yet finalized are visited), in two statements, so that it builds 20 values a row instead
 * of 30: better-sqlite3 12 builds a raw row with one call per column, and the columns were most of
 * the read's cost (BENCHMARKS.md). Three flag columns come as bits of one (PENDING_FLAGS). And most
 * pending rows have no energy yet (they get their first from the settlement reading them): the nine
 * energy columns are read only for the rows that hold any (PENDING_ENERGY). HAS_ENERGY is the same
 * expression in both statements, so a row is in the second exactly when the first flags it.
 */
export const PENDING_RECORD_COLUMNS = [
  'request_id', 'task_id', 'attempt', 'model', 'tier', 'gpus', 'start_ms', 'first_token_ms', 'end_ms', 'prompt_tokens',
  'cached_tokens', 'completion_tokens', 'reasoning_tokens', 'batch_size', 'status', 'labels', 'source', 'rowid',
] as const;
export const PENDING_ENERGY_COLUMNS = [
  'static_j', 'dynamic_j', 'prefill_j', 'decode_j', 'active_ms', 'concurrency_ms', 'estimated', 'per_gpu_j', 'before_end_hour_j',
] as const;
/** 0 for a row with no energy so far (every energy column at its default), else 1 (also for anything else stored there). */
const HAS_ENERGY = `CASE WHEN static_j = 0 AND dynamic_j = 0 AND prefill_j = 0 AND decode_j = 0 AND active_ms = 0 AND concurrency_ms = 0
    AND estimated = 0 AND per_gpu_j = '{}' AND before_end_hour_j = '{}' THEN 0 ELSE 1 END`;
/** PENDING_RECORD_COLUMNS, then the flags (PENDING_FLAGS). */
export const LOAD_UNSETTLED_STARTING_BEFORE = `SELECT ${PENDING_RECORD_COLUMNS.join(', ')},
    (tokens_estimated != 0) * ${PENDING_FLAGS.tokensEstimated} + (granularity = 'interval') * ${PENDING_FLAGS.interval}
      + (late != 0) * ${PENDING_FLAGS.late} + ${HAS_ENERGY} * ${PENDING_FLAGS.hasEnergy} AS flags
  FROM requests WHERE finalized = 0 AND start_ms < ? ORDER BY start_ms`;
/** The rows of LOAD_UNSETTLED_STARTING_BEFORE (same parameter) that it flags hasEnergy: rowid, then PENDING_ENERGY_COLUMNS. */
export const PENDING_ENERGY = `SELECT rowid, ${PENDING_ENERGY_COLUMNS.join(', ')} FROM requests
  WHERE finalized = 0 AND start_ms < ? AND ${HAS_ENERGY} = 1`;
export const COUNT_UNSETTLED = 'SELECT count(*) AS n FROM requests WHERE finalized = 0';
export const PENDING_ATTRIBUTED = 'SELECT coalesce(sum(static_j + dynamic_j), 0) AS j FROM requests WHERE finalized = 0';

/** By seq (a JSON array): the caller found each id's row and checks request_id on what comes back. */
export const ENERGY_SO_FAR = `SELECT request_id, static_j, dynamic_j, prefill_j, decode_j, active_ms, concurrency_ms, estimated, per_gpu_j
  FROM requests WHERE seq IN (SELECT value FROM json_each(?))`;

export const READ_REQUESTS = 'SELECT * FROM requests WHERE end_ms >= ? AND end_ms < ? ORDER BY end_ms, request_id LIMIT ?';

export const INSERT_PERIOD = `INSERT INTO periods (period_start_ms, period_end_ms, gpu_uuid, gpu_index, measured_j, idle_j,
    static_j, dynamic_j, unattributed_j, residual_j, estimated_j, covered_ms, counter_resets, gaps, samples,
    idle_baseline_w, observed_idle_power_w, idle_ms)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Every stored idle observation, in the primary key's order (no sort): a restart on a ledger without carried GPU state. */
export const IDLE_OBSERVATIONS = `SELECT gpu_uuid AS uuid, observed_idle_power_w AS w, idle_ms AS ms FROM periods
  WHERE idle_ms > 0 AND observed_idle_power_w IS NOT NULL ORDER BY period_start_ms, gpu_uuid`;

export const PER_GPU_AT = 'SELECT per_gpu_j, before_end_hour_j FROM requests WHERE seq = ? AND request_id = ?';

const ADD_REQUEST_ENERGY = `UPDATE requests SET
    static_j = static_j + ?, dynamic_j = dynamic_j + ?, prefill_j = prefill_j + ?, decode_j = decode_j + ?,
    active_ms = active_ms + ?, concurrency_ms = concurrency_ms + ?, estimated = max(estimated, ?), per_gpu_j = ?,
    before_end_hour_j = coalesce(?, before_end_hour_j)
  WHERE request_id = ?`;

/** ADD_REQUEST_ENERGY and FINALIZE_REQUEST in one statement, for a request whose last period this is. */
const ADD_ENERGY_AND_FINALIZE = `UPDATE requests SET
    static_j = static_j + ?, dynamic_j = dynamic_j + ?, prefill_j = prefill_j + ?, decode_j = decode_j + ?,
    active_ms = active_ms + ?, concurrency_ms = concurrency_ms + ?, estimated = max(estimated, ?), per_gpu_j = ?,
    before_end_hour_j = coalesce(?, before_end_hour_j),
    joules = ?, j_per_output_token = ?, observed_batch_size = ?, batch_bucket = ?, cache_bucket = ?, settled_at_ms = ?, finalized = 1
  WHERE request_id = ? AND finalized = 0`;

const FINALIZE_REQUEST = `UPDATE requests SET joules = ?, j_per_output_token = ?, observed_batch_size = ?,
    batch_bucket = ?, cache_bucket = ?, settled_at_ms = ?, finalized = 1
  WHERE request_id = ? AND finalized = 0`;

/**
 * The three request updates above, reaching the row by its seq (read with it by
 * LOAD_UNSETTLED_STARTING_BEFORE, or found by Ledger.seqOf): requests has no index on request_id, and
 * settlement then writes table pages in insertion order. The request_id stays in the WHERE clause as
 * a check: a mismatch changes nothing, which fails the settlement, as an unknown id does.
 * Parameters: the same, the seq before the id.
 */
const bySeq = (statement: string): string => {
  const changed = statement.replace('WHERE request_id = ?', 'WHERE seq = ? AND request_id = ?');
  if (changed === statement) throw new Error('bySeq: no request_id condition in the statement');
  return changed;
};
export const ADD_REQUEST_ENERGY_AT = bySeq(ADD_REQUEST_ENERGY);
export const ADD_ENERGY_AND_FINALIZE_AT = bySeq(ADD_ENERGY_AND_FINALIZE);
export const FINALIZE_REQUEST_AT = bySeq(FINALIZE_REQUEST);

export const UPSERT_USAGE = `INSERT INTO hourly_usage (hour_start_ms, node, model, tier, cache_bucket, batch_bucket, status,
    team, feature, requests, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j,
    prefill_j, decode_j, simulated)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (hour_start_ms, node, model, tier, cache_bucket, batch_bucket, status, team, feature) DO UPDATE SET
    ${addExcluded('requests, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j, decode_j')},
    simulated = max(simulated, excluded.simulated)`;

export const UPSERT_ENERGY = `INSERT INTO hourly_energy (hour_start_ms, node, gpu_uuid, measured_j, idle_j, static_j, dynamic_j,
    unattributed_j, estimated_j, covered_ms, counter_resets, gaps, simulated)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (hour_start_ms, node, gpu_uuid) DO UPDATE SET
    ${addExcluded('measured_j, idle_j, static_j, dynamic_j, unattributed_j, estimated_j, covered_ms, counter_resets, gaps')},
    simulated = max(simulated, excluded.simulated)`;

export const UPSERT_HOST = `INSERT INTO hourly_host (hour_start_ms, node, host_j, estimated, simulated_j) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (hour_start_ms, node) DO UPDATE SET
    host_j = host_j + excluded.host_j,
    simulated_j = simulated_j + excluded.simulated_j,
    estimated = max(estimated, excluded.estimated)`;

export const UPSERT_QUALITY = `INSERT INTO hourly_quality (hour_start_ms, node, late_records, rejected_records, sample_errors)
  VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (hour_start_ms, node) DO UPDATE SET
    ${addExcluded('late_records, rejected_records, sample_errors')}`;

/** Records stored in time and duplicates acknowledged (schema 9). */
export const ADD_RECORD_COUNTS = `INSERT INTO record_counts (node, accepted, duplicates) VALUES (?, ?, ?)
  ON CONFLICT (node) DO UPDATE SET ${addExcluded('accepted, duplicates')}`;

/**
 * Sums add up; the delta that reaches furthest decides status, tier and labels (old values on the
 * right-hand side). The settler's deltas carry the whole task's figures, so that is the task's own.
 */
export const UPSERT_TASK = `INSERT INTO tasks (task_id, node, first_start_ms, last_end_ms, requests, joules, waste_j,
    completion_tokens, last_status, tier, team, feature)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (task_id) DO UPDATE SET
    ${addExcluded('requests, joules, waste_j, completion_tokens')},
    first_start_ms = min(first_start_ms, excluded.first_start_ms),
    last_status = CASE WHEN excluded.last_end_ms >= last_end_ms THEN excluded.last_status ELSE last_status END,
    tier = CASE WHEN excluded.last_end_ms >= last_end_ms THEN excluded.tier ELSE tier END,
    team = CASE WHEN excluded.last_end_ms >= last_end_ms THEN excluded.team ELSE team END,
    feature = CASE WHEN excluded.last_end_ms >= last_end_ms THEN excluded.feature ELSE feature END,
    last_end_ms = max(last_end_ms, excluded.last_end_ms)`;

/**
 * Task and waste counter sums (schema 12), one statement per increment, in the order the metrics
 * add them: the stored sum is then the same float the process's counter reached.
 */
export const ADD_TASK_COUNT = `INSERT INTO task_counts (tier, succeeded, simulated, count) VALUES (?, ?, ?, ?)
  ON CONFLICT (tier, succeeded, simulated) DO UPDATE SET count = count + excluded.count`;
export const ADD_WASTE = `INSERT INTO waste_totals (tier, reason, simulated, joules) VALUES (?, ?, ?, ?)
  ON CONFLICT (tier, reason, simulated) DO UPDATE SET joules = joules + excluded.joules`;
/** What the counters have of a task (schema 14), written at its close (and at a reopen of a task closed before schema 14). */
export const SET_TASK_COUNTED = `UPDATE tasks SET counted_tier = ?, counted_succeeded = ?, counted_joules = ?, counted_waste_j = ?,
  counted_failed_j = ? WHERE task_id = ?`;
export const TASK_COUNT_SERIES = 'SELECT tier, succeeded, simulated, count FROM task_counts ORDER BY tier, succeeded, simulated';
export const WASTE_SERIES = 'SELECT tier, reason, simulated, joules FROM waste_totals ORDER BY tier, reason, simulated';

/** The finalized requests of the given tasks (a JSON array of task ids), through the index requests_task. */
export const TASK_REQUESTS = `SELECT request_id, task_id, attempt, tier, status, start_ms, end_ms, joules, completion_tokens, labels
  FROM requests WHERE task_id IS NOT NULL AND task_id IN (SELECT value FROM json_each(?)) AND finalized = 1`;

export const GET_STATE = 'SELECT value FROM agent_state WHERE key = ?';
export const SET_STATE = `INSERT INTO agent_state (key, value) VALUES (?, ?)
  ON CONFLICT (key) DO UPDATE SET value = excluded.value`;

export const READ_HOURLY_ENERGY = `SELECT * FROM hourly_energy WHERE hour_start_ms >= ? AND hour_start_ms < ?
  ORDER BY hour_start_ms, node, gpu_uuid`;
export const READ_HOURLY_USAGE = `SELECT * FROM hourly_usage WHERE hour_start_ms >= ? AND hour_start_ms < ?
  ORDER BY hour_start_ms, node, model, tier, cache_bucket, batch_bucket, status, team, feature`;
export const READ_HOURLY_HOST = 'SELECT * FROM hourly_host WHERE hour_start_ms >= ? AND hour_start_ms < ? ORDER BY hour_start_ms, node';
export const READ_HOURLY_QUALITY = 'SELECT * FROM hourly_quality WHERE hour_start_ms >= ? AND hour_start_ms < ? ORDER BY hour_start_ms, node';
export const READ_TASKS = 'SELECT * FROM tasks WHERE last_end_ms >= ? AND last_end_ms < ? ORDER BY last_end_ms, task_id';
/** The rows of the given tasks (a JSON array of task ids), by their primary key. */
export const TASKS_BY_ID = 'SELECT * FROM tasks WHERE task_id IN (SELECT value FROM json_each(?))';

/*
 * The counter totals are lifetime sums: the retained rollups plus what retention has carried into
 * the pruned_* tables (CARRY_PRUNED_ROLLUPS), so they never shrink when old rows are deleted.
 */

const ENERGY_SUMS = 'measured_j, idle_j, static_j, dynamic_j, unattributed_j, estimated_j, simulated';
const USAGE_KEY = 'node, model, tier, cache_bucket, batch_bucket, status, team, feature';
const USAGE_SUMS = `requests, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j,
    decode_j, simulated`;

/**
 * The counter-total queries for a file of schema `version`: before 2 (a version-1 file, read-only)
 * they read the hourly tables alone; before 8 the pruned sums hold no covered time and no host
 * energy by kind (read as 0).
 */
export function counterTotalsSql(version: number): { gpuEnergy: string; usage: string; host: string; quality: string; tasks: string } {
  const also = (text: string): string => (version >= 2 ? ` UNION ALL ${text}` : '');
  const seeds = version >= 8;
  const hostSimJ = version >= 9
    ? 'simulated_j'
    : 'CASE WHEN EXISTS (SELECT 1 FROM hourly_energy e WHERE e.hour_start_ms = hourly_host.hour_start_ms AND e.node = hourly_host.node AND e.simulated = 1) THEN host_j ELSE 0 END';
  const recordCounts = version >= 9
    ? '(SELECT coalesce(sum(accepted), 0) FROM record_counts) AS accepted, (SELECT coalesce(sum(duplicates), 0) FROM record_counts) AS duplicates'
    : '0 AS accepted, 0 AS duplicates';
  const prunedHostSim = version >= 9
    ? 'simulated_measured_j, simulated_estimated_j'
    : seeds ? 'CASE WHEN EXISTS (SELECT 1 FROM pruned_energy WHERE simulated = 1) THEN measured_j ELSE 0 END, CASE WHEN EXISTS (SELECT 1 FROM pruned_energy WHERE simulated = 1) THEN estimated_j ELSE 0 END' : '0, 0';
  return {
    gpuEnergy: `SELECT e.gpu_uuid, sum(e.measured_j) AS measured_j, sum(e.idle_j) AS idle_j,
    sum(e.static_j) AS static_j, sum(e.dynamic_j) AS dynamic_j, sum(e.unattributed_j) AS unattributed_j,
    sum(e.estimated_j) AS estimated_j, sum(e.covered_ms) AS covered_ms, max(e.simulated) AS simulated,
    (SELECT p.gpu_index FROM periods p WHERE p.gpu_uuid = e.gpu_uuid ORDER BY p.period_start_ms DESC LIMIT 1) AS gpu_index
  FROM (SELECT gpu_uuid, ${ENERGY_SUMS}, covered_ms FROM hourly_energy${also(`SELECT gpu_uuid, ${ENERGY_SUMS}, ${seeds ? 'covered_ms' : '0'} FROM pruned_energy`)}) e
  GROUP BY e.gpu_uuid ORDER BY e.gpu_uuid`,
    usage: `SELECT ${USAGE_KEY},
    sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, sum(cached_tokens) AS cached_tokens,
    sum(completion_tokens) AS completion_tokens, sum(reasoning_tokens) AS reasoning_tokens,
    sum(static_j) AS static_j, sum(dynamic_j) AS dynamic_j, sum(prefill_j) AS prefill_j, sum(decode_j) AS decode_j,
    simulated
  FROM (SELECT ${USAGE_KEY}, ${USAGE_SUMS} FROM hourly_usage${also(`SELECT ${USAGE_KEY}, ${USAGE_SUMS} FROM pruned_usage`)})
  GROUP BY ${USAGE_KEY}, simulated ORDER BY ${USAGE_KEY}, simulated`,
    // measured_j and estimated_j: host energy by kind (RAPL, or a configured overhead); host_j also
    // holds what was pruned before schema 8, of unknown kind. sim_*: the part of each counted while
    // the GPU power source was simulated (before schema 9: the hours with simulated GPU energy).
    host: `SELECT coalesce(sum(host_j), 0) AS host_j, coalesce(sum(measured_j), 0) AS measured_j, coalesce(sum(estimated_j), 0) AS estimated_j,
    coalesce(sum(sim_measured_j), 0) AS sim_measured_j, coalesce(sum(sim_estimated_j), 0) AS sim_estimated_j
  FROM (SELECT host_j, CASE WHEN estimated = 0 THEN host_j ELSE 0 END AS measured_j, CASE WHEN estimated = 0 THEN 0 ELSE host_j END AS estimated_j,
      CASE WHEN estimated = 0 THEN ${hostSimJ} ELSE 0 END AS sim_measured_j, CASE WHEN estimated = 0 THEN 0 ELSE ${hostSimJ} END AS sim_estimated_j
    FROM hourly_host${also(`SELECT host_j, ${seeds ? 'measured_j, estimated_j' : '0, 0'}, ${prunedHostSim} FROM pruned_host`)})`,
    // late: settled late records (hourly_quality) plus late ones not settled yet, as the metric counts them at ingest.
    // accepted and duplicates: counted at ingest since schema 9.
    quality: `SELECT coalesce(sum(late_records), 0) + (SELECT count(*) FROM requests WHERE finalized = 0 AND late = 1) AS late,
    coalesce(sum(rejected_records), 0) AS rejected, coalesce(sum(sample_errors), 0) AS sample_errors, ${recordCounts}
  FROM (SELECT late_records, rejected_records, sample_errors FROM hourly_quality
    ${also('SELECT late_records, rejected_records, sample_errors FROM pruned_quality')})`,
    tasks: `SELECT coalesce(sum(task_count), 0) AS count, coalesce(sum(succeeded), 0) AS succeeded,
    coalesce(sum(joules), 0) AS joules, coalesce(sum(waste_j), 0) AS waste_j
  FROM (SELECT 1 AS task_count, last_status = 'ok' AS succeeded, joules, waste_j FROM tasks
    ${also('SELECT task_count, succeeded, joules, waste_j FROM pruned_tasks')})`,
  };
}

export const INSERT_HOST_READING = 'INSERT OR IGNORE INTO host_readings (ts_ms, segment, energy_j, estimated) VALUES (?, ?, ?, ?)';
/** Readings from @from on, plus the last one before it (the counter value at the settled edge is interpolated from it). */
export const LOAD_HOST_READINGS = `SELECT * FROM (
    SELECT * FROM (SELECT ts_ms, segment, energy_j, estimated FROM host_readings WHERE ts_ms < @from ORDER BY ts_ms DESC LIMIT 1)
    UNION ALL
    SELECT ts_ms, segment, energy_j, estimated FROM host_readings WHERE ts_ms >= @from
  ) ORDER BY ts_ms`;
export const LAST_HOST_READING_AT = 'SELECT max(ts_ms) AS t FROM host_readings WHERE ts_ms <= ?';
export const PRUNE_HOST_READINGS = 'DELETE FROM host_readings WHERE ts_ms < ?';

export const PRUNE_SAMPLES = 'DELETE FROM power_samples WHERE gpu_uuid = ? AND ts_ms < ?';
/** PRUNE_REQUEST_IDS must run first, with the same cut-off. */
export const PRUNE_REQUESTS = 'DELETE FROM requests WHERE end_ms < ? AND finalized = 1';
export const COUNT_OLD_UNSETTLED = 'SELECT count(*) AS n FROM requests WHERE finalized = 0 AND end_ms < ?';
export const PRUNE_PERIODS = 'DELETE FROM periods WHERE period_start_ms < ?';
/**
 * Run in the prune's transaction just before PRUNE_ROLLUPS, with the same cut-off: add the sums of
 * the rows about to be deleted to the pruned_* tables, so the counter totals keep them.
 * (The WHERE before GROUP BY also keeps SQLite from reading ON CONFLICT as a join constraint.)
 */
export const CARRY_PRUNED_ROLLUPS = [
  `INSERT INTO pruned_energy (gpu_uuid, ${ENERGY_SUMS}, covered_ms)
    SELECT gpu_uuid, sum(measured_j), sum(idle_j), sum(static_j), sum(dynamic_j), sum(unattributed_j), sum(estimated_j), max(simulated), sum(covered_ms)
    FROM hourly_energy WHERE hour_start_ms < ? GROUP BY gpu_uuid
    ON CONFLICT (gpu_uuid) DO UPDATE SET
      ${addExcluded('measured_j, idle_j, static_j, dynamic_j, unattributed_j, estimated_j, covered_ms')},
      simulated = max(simulated, excluded.simulated)`,
  `INSERT INTO pruned_usage (${USAGE_KEY}, ${USAGE_SUMS})
    SELECT ${USAGE_KEY}, sum(requests), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(reasoning_tokens),
      sum(static_j), sum(dynamic_j), sum(prefill_j), sum(decode_j), simulated
    FROM hourly_usage WHERE hour_start_ms < ? GROUP BY ${USAGE_KEY}, simulated
    ON CONFLICT (${USAGE_KEY}, simulated) DO UPDATE SET
      ${addExcluded('requests, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j, decode_j')}`,
  `INSERT INTO pruned_host (node, host_j, measured_j, estimated_j, simulated_measured_j, simulated_estimated_j)
    SELECT node, sum(host_j), sum(CASE WHEN estimated = 0 THEN host_j ELSE 0 END), sum(CASE WHEN estimated = 0 THEN 0 ELSE host_j END),
      sum(CASE WHEN estimated = 0 THEN simulated_j ELSE 0 END), sum(CASE WHEN estimated = 0 THEN 0 ELSE simulated_j END)
    FROM hourly_host WHERE hour_start_ms < ? GROUP BY node
    ON CONFLICT (node) DO UPDATE SET
      ${addExcluded('host_j, measured_j, estimated_j, simulated_measured_j, simulated_estimated_j')}`,
  `INSERT INTO pruned_quality (node, late_records, rejected_records, sample_errors)
    SELECT node, sum(late_records), sum(rejected_records), sum(sample_errors) FROM hourly_quality WHERE hour_start_ms < ? GROUP BY node
    ON CONFLICT (node) DO UPDATE SET
      ${addExcluded('late_records, rejected_records, sample_errors')}`,
  `INSERT INTO pruned_tasks (node, task_count, succeeded, joules, waste_j)
    SELECT node, count(*), sum(last_status = 'ok'), sum(joules), sum(waste_j) FROM tasks WHERE last_end_ms < ? GROUP BY node
    ON CONFLICT (node) DO UPDATE SET
      ${addExcluded('task_count, succeeded, joules, waste_j')}`,
] as const;
/** Deletes the rollups and tasks past retention; CARRY_PRUNED_ROLLUPS must run first. */
export const PRUNE_ROLLUPS = [
  'DELETE FROM hourly_energy WHERE hour_start_ms < ?',
  'DELETE FROM hourly_usage WHERE hour_start_ms < ?',
  'DELETE FROM hourly_host WHERE hour_start_ms < ?',
  'DELETE FROM hourly_quality WHERE hour_start_ms < ?',
  'DELETE FROM tasks WHERE last_end_ms < ?',
] as const;
