import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { Ledger, LedgerVersionError } from '../../agent/ledger.js';
import { LEDGER_MIGRATIONS, latestVersion, migrate } from '../../agent/migrations/index.js';
import type { Migration } from '../../agent/migrations/index.js';
import { epochMs } from '../../model/units.js';
import { RETENTION, T0, never, pruneAt, request, tempDir } from './temp-ledger.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const TABLES = [
  'agent_state', 'host_readings', 'hourly_energy', 'hourly_host', 'hourly_quality', 'hourly_usage', 'periods', 'power_samples',
  'pruned_energy', 'pruned_host', 'pruned_quality', 'pruned_tasks', 'pruned_usage', 'record_counts', 'request_ids', 'requests', 'task_counts', 'tasks', 'waste_totals',
];

function tablesOf(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  } finally {
    db.close();
  }
}

test('an empty file is migrated to the latest version, in WAL mode, and re-opening keeps the data', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'l.db');
  const first = Ledger.open(path, { node: 'n1', retention: RETENTION });
  assert.equal(first.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  assert.ok(latestVersion(LEDGER_MIGRATIONS) >= 1);
  first.insertRequests([request(1)], never);
  first.close();
  assert.deepEqual(tablesOf(path), TABLES);

  const again = Ledger.open(path, { node: 'n1', retention: RETENTION });
  t.after(() => again.close());
  assert.equal(again.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  assert.deepEqual(again.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never).map((r) => r.record.requestId), ['req-1']);
  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
});

test('a ledger newer than the code is refused with a clear message, and left untouched', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'future.db');
  const db = new Database(path);
  db.exec('CREATE TABLE from_the_future (x)');
  db.pragma('user_version = 99');
  db.close();
  assert.throws(
    () => Ledger.open(path, { node: 'n', retention: RETENTION }),
    (err: unknown) => err instanceof LedgerVersionError && /schema version 99, newer than this tokenwatt understands/.test(err.message),
  );
  assert.throws(() => Ledger.openReadOnly(path), LedgerVersionError);
  assert.deepEqual(tablesOf(path), ['from_the_future']);
});

test('a failing migration step rolls back with its version bump; earlier steps stay applied', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const db = new Database(join(dir, 'm.db'));
  t.after(() => db.close());
  const steps: Migration[] = [
    { version: 1, name: 'one', sql: 'CREATE TABLE a (x)' },
    { version: 2, name: 'two', sql: 'CREATE TABLE b (x); INSERT INTO nowhere VALUES (1)' },
  ];
  assert.throws(() => migrate(db, steps, 'm.db'), /no such table: nowhere/);
  assert.equal(db.pragma('user_version', { simple: true }), 1);
  const names = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
  assert.deepEqual(names, ['a']);
  // Fixed step 2 applies on the next run, from version 1.
  const fixed: Migration[] = [steps[0]!, { version: 2, name: 'two', sql: 'CREATE TABLE b (x)' }];
  assert.equal(migrate(db, fixed, 'm.db'), 1);
  assert.equal(db.pragma('user_version', { simple: true }), 2);
});

test('a migration list with a hole is refused before touching the file', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const db = new Database(join(dir, 'h.db'));
  t.after(() => db.close());
  assert.throws(() => migrate(db, [{ version: 2, name: 'x', sql: 'CREATE TABLE x (a)' }], 'h.db'), /out of order/);
  assert.equal(db.pragma('user_version', { simple: true }), 0);
});

test('read-only open refuses a file that is not a ledger, and a missing file', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const plain = join(dir, 'plain.db');
  new Database(plain).close();
  assert.throws(() => Ledger.openReadOnly(plain), /not a tokenwatt ledger/);
  assert.throws(() => Ledger.openReadOnly(join(dir, 'missing.db')));
});

test('open creates the ledger directory when it does not exist yet (a fresh hostPath)', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ledger = Ledger.open(join(dir, 'var', 'lib', 'tokenwatt', 'ledger.db'), { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  assert.equal(ledger.node, 'n');
});

test('schema 7: a ledger of schema 5 keeps its pending requests\' energy, and records where usage by drawn hour starts', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v5.db');
  const v5 = new Database(path);
  v5.pragma('journal_mode = WAL');
  migrate(v5, LEDGER_MIGRATIONS.slice(0, 5), path);
  const r = request(1);
  v5.prepare(`INSERT INTO requests (request_id, model, tier, gpus, start_ms, end_ms, prompt_tokens, cached_tokens, completion_tokens,
    reasoning_tokens, status, labels, tokens_estimated, granularity, source, late, received_at_ms, static_j, dynamic_j, per_gpu_j)
    VALUES (?, 'm', 't', '["GPU-0"]', ?, ?, 1, 0, 1, 0, 'ok', '{}', 0, 'request', 'http', 0, ?, 2, 3, '{"GPU-0":5}')`).run(r.requestId, r.startMs, r.endMs, r.startMs);
  v5.prepare("INSERT INTO agent_state (key, value) VALUES ('settled_until_ms', ?)").run(String(r.startMs + 1000));
  v5.close();

  // A reader takes the file as it is: its usage rows are all of the old kind.
  const reader = Ledger.openReadOnly(path);
  assert.equal(reader.schemaVersion(), 5);
  assert.equal(reader.readRequests(epochMs(0), epochMs(r.endMs + 1))[0]?.soFar.staticJ, 2);
  assert.equal(reader.usageByDrawnHourFrom(), Number.POSITIVE_INFINITY);
  reader.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  assert.equal(ledger.usageByDrawnHourFrom(), r.startMs + 1000, 'from where settlement stood at the migration');
  const [pending] = ledger.loadUnsettledStartingBefore(epochMs(r.endMs));
  assert.deepEqual([pending?.soFar.staticJ, pending?.soFar.dynamicJ, pending?.soFar.perGpuJ, pending?.soFar.beforeEndHourJ], [2, 3, { 'GPU-0': 5 }, {}]);

  const fresh = Ledger.open(join(dir, 'fresh.db'), { node: 'n', retention: RETENTION });
  assert.equal(fresh.usageByDrawnHourFrom(), 0, 'a new ledger books every hour by where energy was drawn');
  fresh.close();
});

test('schema 8: covered time and host energy by kind are carried from then on; what was pruned before stays out of them, in the totals', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v7.db');
  const v7 = new Database(path);
  v7.pragma('journal_mode = WAL');
  migrate(v7, LEDGER_MIGRATIONS.slice(0, 7), path);
  // Pruned before schema 8: no covered time, host energy of no known kind.
  v7.prepare("INSERT INTO pruned_energy VALUES ('GPU-0', 100, 20, 30, 50, 0, 0, 0)").run();
  v7.prepare("INSERT INTO pruned_host VALUES ('n', 70)").run();
  v7.prepare("INSERT INTO hourly_energy VALUES (?, 'n', 'GPU-0', 10, 2, 3, 5, 0, 0, 4000, 0, 0, 0)").run(T0);
  v7.prepare("INSERT INTO hourly_host VALUES (?, 'n', 7, 1)").run(T0);
  v7.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const before = ledger.counterTotals();
  assert.deepEqual(before.gpus.map((g) => [g.measuredJ, g.coveredMs]), [[110, 4000]]);
  assert.deepEqual([before.hostJ, before.hostByKind], [77, { measuredJ: 0, estimatedJ: 7 }]);
  // Pruned now, the hour keeps its covered time and its kind in the totals.
  pruneAt(ledger, T0 + HOUR + RETENTION.rollupsDays * DAY);
  assert.deepEqual(ledger.readHourlyEnergy(epochMs(0), epochMs(T0 + HOUR)), []);
  const after = ledger.counterTotals();
  assert.deepEqual(after.gpus.map((g) => [g.measuredJ, g.coveredMs]), [[110, 4000]]);
  assert.deepEqual([after.hostJ, after.hostByKind], [77, { measuredJ: 0, estimatedJ: 7 }]);
});

test('schema 9: host energy of hours with simulated GPU energy, and pruned host energy beside simulated GPU energy, count as simulated', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v8.db');
  const v8 = new Database(path);
  v8.pragma('journal_mode = WAL');
  migrate(v8, LEDGER_MIGRATIONS.slice(0, 8), path);
  // Hour T0 simulated (a demo), hour T0 + 1 h measured; pruned: 50 J of RAPL and 20 J configured beside simulated GPU energy.
  v8.prepare("INSERT INTO hourly_energy VALUES (?, 'n', 'GPU-sim', 10, 10, 0, 0, 0, 0, 1000, 0, 0, 1)").run(T0);
  v8.prepare("INSERT INTO hourly_energy VALUES (?, 'n', 'GPU-0', 10, 10, 0, 0, 0, 0, 1000, 0, 0, 0)").run(T0 + HOUR);
  v8.prepare("INSERT INTO hourly_host VALUES (?, 'n', 30, 0)").run(T0);
  v8.prepare("INSERT INTO hourly_host VALUES (?, 'n', 7, 0)").run(T0 + HOUR);
  v8.prepare("INSERT INTO pruned_energy VALUES ('GPU-sim', 100, 100, 0, 0, 0, 0, 1, 0)").run();
  v8.prepare("INSERT INTO pruned_host VALUES ('n', 70, 50, 20)").run();
  v8.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const totals = ledger.counterTotals();
  assert.deepEqual(totals.hostByKind, { measuredJ: 87, estimatedJ: 20 });
  assert.deepEqual(totals.hostSimulated, { measuredJ: 80, estimatedJ: 20 });
  // Carried on prune as it was read before.
  pruneAt(ledger, T0 + 2 * HOUR + RETENTION.rollupsDays * DAY);
  assert.deepEqual(ledger.counterTotals().hostSimulated, { measuredJ: 80, estimatedJ: 20 });
});

test('schema 12: a ledger of schema 9 has no task or waste counter sums (they start from 0), and keeps those counted from then on', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v9.db');
  const v9 = new Database(path);
  v9.pragma('journal_mode = WAL');
  migrate(v9, LEDGER_MIGRATIONS.slice(0, 9), path);
  // A task row of before: its tier and outcome are its final ones, not what the counters counted.
  v9.prepare("INSERT INTO tasks VALUES ('t', 'n', ?, ?, 2, 100, 40, 10, 'ok', 'gold', '', '')").run(T0, T0 + 1000);
  v9.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  const totals = ledger.counterTotals();
  assert.deepEqual([totals.taskSeries, totals.wasteSeries], [[], []]);
  assert.equal(totals.tasks.count, 1, 'the task row is still there');
  ledger.commitSettlement({
    periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000),
    gpuTotals: [], requestDeltas: [], finalized: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
    taskCounters: { tasks: [{ tier: 'gold', succeeded: true, simulated: false, count: 1 }], waste: [{ tier: 'gold', reason: 'attempt', simulated: false, joules: 40 }] },
  });
  ledger.close();
  const reopened = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => reopened.close());
  const after = reopened.counterTotals();
  assert.deepEqual(after.taskSeries, [{ tier: 'gold', succeeded: true, simulated: false, count: 1 }]);
  assert.deepEqual(after.wasteSeries, [{ tier: 'gold', reason: 'attempt', simulated: false, joules: 40 }]);
});

test('schema 13: pruned usage sums of before keep their flag, and those pruned from then on stay apart by simulated', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v10.db');
  const v10 = new Database(path);
  v10.pragma('journal_mode = WAL');
  migrate(v10, LEDGER_MIGRATIONS.slice(0, 10), path);
  v10.prepare("INSERT INTO pruned_usage VALUES ('n', 'm', 't', '0', '1', 'ok', 'a', '', 4, 40, 0, 20, 0, 8, 16, 8, 16, 1)").run();
  v10.prepare("INSERT INTO hourly_usage (hour_start_ms, node, model, tier, cache_bucket, batch_bucket, status, team, feature, requests, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, static_j, dynamic_j, prefill_j, decode_j, simulated) VALUES (?, 'n', 'm', 't', '0', '1', 'ok', 'a', '', 1, 10, 0, 5, 0, 2, 4, 2, 4, 0)").run(T0);
  v10.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const bySimulated = (): [boolean, number][] => ledger.counterTotals().usage.map((u) => [u.simulated, u.requests]);
  assert.deepEqual(bySimulated(), [[false, 1], [true, 4]]);
  pruneAt(ledger, T0 + HOUR + RETENTION.rollupsDays * DAY);
  assert.deepEqual(bySimulated(), [[false, 1], [true, 4]], 'the measured hour pruned beside the simulated sums, not into them');
});

test('a reader of a ledger at any earlier schema reads its counter totals (each new table is read only from the schema that made it)', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  for (let version = 1; version <= latestVersion(LEDGER_MIGRATIONS); version += 1) {
    const path = join(dir, `v${version}.db`);
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    migrate(db, LEDGER_MIGRATIONS.slice(0, version), path);
    db.close();
    const reader = Ledger.openReadOnly(path);
    try {
      assert.equal(reader.schemaVersion(), version);
      const totals = reader.counterTotals();
      assert.deepEqual([totals.taskSeries, totals.wasteSeries, totals.usage, totals.gpus], [[], [], [], []], `schema ${version}`);
    } finally {
      reader.close();
    }
  }
});

test('schema 14: a task row of before knows nothing counted of it (null); the five counted columns are read together, or reported by name and taken as never counted', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v13.db');
  const v13 = new Database(path);
  v13.pragma('journal_mode = WAL');
  migrate(v13, LEDGER_MIGRATIONS.slice(0, 13), path);
  v13.prepare("INSERT INTO tasks VALUES ('old', 'n', ?, ?, 2, 100, 40, 10, 'ok', 'gold', '', '')").run(T0, T0 + 1000);
  v13.prepare("INSERT INTO tasks VALUES ('new', 'n', ?, ?, 3, 150, 40, 15, 'ok', 'gold', '', '')").run(T0, T0 + 2000);
  v13.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const counted = (): [string, unknown][] => ledger.readTasksWithCounted(epochMs(T0)).map((r) => [r.task.taskId, r.counted]);
  // Reopened before the upgrade or not, a row of before cannot tell: its next close counts it whole.
  assert.deepEqual(counted(), [['old', null], ['new', null]]);
  ledger.settle({ periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000) }, (w) => {
    w.taskReopened('new', { tier: 'silver', succeeded: false, joules: 100, wasteJ: 40, failedJ: 60 });
  });
  assert.deepEqual(counted(), [['old', null], ['new', { tier: 'silver', succeeded: false, joules: 100, wasteJ: 40, failedJ: 60 }]]);
  // A task without a row (deleted by hand): nothing written, said so, and the settlement commits.
  let wrote: [boolean, boolean] | null = null;
  ledger.settle({ periodStartMs: epochMs(T0 + 10_000), periodEndMs: epochMs(T0 + 20_000), settledUntilMs: epochMs(T0 + 20_000) }, (w) => {
    const gone = { tier: 'gold', succeeded: true, joules: 1, wasteJ: 0, failedJ: 0 };
    wrote = [w.taskReopened('gone', gone), w.taskClosed('gone', gone)];
  });
  assert.deepEqual(wrote, [false, false]);
  assert.equal(ledger.getSettledUntil(), T0 + 20_000, 'the settlement committed');

  const db = new Database(path);
  db.prepare("UPDATE tasks SET counted_tier = 'gold', counted_joules = 5 WHERE task_id = 'old'").run();
  db.prepare("UPDATE tasks SET counted_waste_j = -1 WHERE task_id = 'new'").run();
  db.close();
  // Unreadable counted columns: taken as never counted (counted whole at its close), with the reason.
  const problems = (): [string, unknown, string | null][] => ledger.readTasksWithCounted(epochMs(T0)).map((r) => [r.task.taskId, r.counted, r.problem]);
  assert.deepEqual(problems()[0], ['old', null, 'task "old": counted_succeeded, counted_waste_j, counted_failed_j missing beside the other counted_* columns (they are written together)']);
  const fix = new Database(path);
  fix.prepare("UPDATE tasks SET counted_tier = NULL, counted_joules = NULL WHERE task_id = 'old'").run();
  fix.close();
  assert.deepEqual(problems(), [['old', null, null], ['new', null, 'task "new": counted_waste_j is -1, not a finite number >= 0']]);
});
