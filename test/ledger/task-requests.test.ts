import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from '../../agent/sqlite-driver.js';
import { TASK_REQUESTS } from '../../agent/ledger-sql.js';
import { epochMs } from '../../model/units.js';
import { Ledger } from '../../agent/ledger.js';
import { join } from 'node:path';
import { LEDGER_MIGRATIONS, latestVersion, migrate } from '../../agent/migrations/index.js';
import { taskRequestsIndex } from '../../agent/migrations/003-task-requests.js';
import { RETENTION, T0, never, request, tempDir, tempLedger } from './temp-ledger.js';

const final = (requestId: string, joules: number) => ({
  requestId, joules, jPerOutputToken: null, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0),
});

test('finalizedTaskRequests: the finalized requests of the given tasks only, with what task figures need', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([
    request(1, { taskId: 'a', attempt: 2, status: 'error', tier: 'large', labels: { team: 'x' } }),
    request(2, { taskId: 'a' }), // not finalized
    request(3, { taskId: 'b' }),
    request(4, { taskId: null }),
  ], never);
  ledger.commitSettlement({
    periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000), gpuTotals: [], requestDeltas: [],
    finalized: [final('req-1', 7), final('req-3', 2), final('req-4', 1)],
    usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
  });
  assert.deepEqual(ledger.finalizedTaskRequests([]), []);
  assert.deepEqual(ledger.finalizedTaskRequests(['a', 'nope']), [{
    requestId: 'req-1', taskId: 'a', attempt: 2, tier: 'large', status: 'error', startMs: T0 - 1000, endMs: T0 + 1000, joules: 7,
    completionTokens: 20, labels: { team: 'x' },
  }]);
  assert.deepEqual(ledger.finalizedTaskRequests(['a', 'b']).map((r) => r.requestId).sort(), ['req-1', 'req-3']);
});

test('the task lookup goes through the requests_task index, not a scan of all requests', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.close();
  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  const plan = db.prepare(`EXPLAIN QUERY PLAN ${TASK_REQUESTS}`).all('["a"]') as { detail: string }[];
  assert.ok(plan.some((p) => /USING INDEX requests_task/.test(p.detail)), JSON.stringify(plan));
});

test('a ledger from before the index gains it when opened, keeping its rows', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'ledger.db');
  // A file of the schema just before the index, as that release's migrations left it.
  const db = new Database(path);
  migrate(db, LEDGER_MIGRATIONS.slice(0, taskRequestsIndex.version - 1), path);
  db.prepare("INSERT INTO agent_state (key, value) VALUES ('kept', '1')").run();
  db.close();
  const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  const check = new Database(path, { readonly: true });
  t.after(() => check.close());
  assert.ok(check.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'requests_task'").get());
  assert.ok(check.prepare("SELECT 1 FROM agent_state WHERE key = 'kept'").get());
});
