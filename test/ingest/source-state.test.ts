import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from '../../agent/sqlite-driver.js';
import { IngestService } from '../../agent/ingest-service.js';
import type { IngestServiceOptions } from '../../agent/ingest-service.js';
import type { Ledger } from '../../agent/ledger.js';
import type { RequestRecord } from '../../model/request-record.js';
import { never, request, storedIds, tempLedger } from '../ledger/temp-ledger.js';
import { fakeContext } from './fake-context.js';

/** A record as a source delivers it: GPU by index, tier left to the context. */
function rec(i: number, overrides: Partial<RequestRecord> = {}): RequestRecord {
  return { ...request(i), tier: null, gpus: ['0'], ...overrides };
}

function service(ledger: Pick<Ledger, 'insertRequests'>, extra: Partial<IngestServiceOptions> = {}): IngestService {
  return new IngestService({ ledger, context: () => fakeContext(), settledUntil: () => null, onAccepted: () => {}, queueLimit: 1000, ...extra });
}

/** Make every insert of this request id fail inside SQLite, through a second connection (as a full disk would). */
function failInsertsOf(path: string, requestId: string): void {
  const db = new Database(path);
  try {
    db.exec(`CREATE TRIGGER fail_insert BEFORE INSERT ON requests WHEN NEW.request_id = '${requestId}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
  } finally {
    db.close();
  }
}

const KEY = 'source:test:baseline';

test('source state is written in the transaction of the records it comes with, and read back', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const calls: { records: number; state: string[] }[] = [];
  const spy = {
    insertRequests: (...args: Parameters<Ledger['insertRequests']>) => {
      calls.push({ records: args[0].length, state: (args[2] ?? []).map((w) => `${w.key}=${w.value}`) });
      return ledger.insertRequests(...args);
    },
  };
  const ingest = service(spy);
  assert.equal(ledger.readSourceState(KEY), undefined);
  // Two submissions in one tick: one transaction, the later write of a key wins.
  const [a, b] = await Promise.all([
    ingest.submit([rec(1), rec(2)], 0, { state: [{ key: KEY, value: 'v1' }] }),
    ingest.submit([rec(3)], 0, { state: [{ key: KEY, value: 'v2' }, { key: 'source:test:other', value: 'x' }] }),
  ]);
  assert.deepEqual([a.accepted, b.accepted], [2, 1]);
  assert.deepEqual(calls, [{ records: 3, state: [`${KEY}=v1`, `${KEY}=v2`, 'source:test:other=x'] }]);
  assert.equal(ledger.readSourceState(KEY), 'v2');
  assert.equal(ledger.readSourceState('source:test:other'), 'x');
  assert.deepEqual(storedIds(path), ['req-1', 'req-2', 'req-3']);
});

test('a submission with state and no record, or with every record refused, still commits its state', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const ingest = service(ledger);
  const none = await ingest.submit([], 0, { state: [{ key: KEY, value: 'only-state' }] });
  assert.deepEqual(none, { accepted: 0, duplicates: 0, late: 0, errors: [] });
  assert.equal(ledger.readSourceState(KEY), 'only-state');
  const refused = await ingest.submit([rec(1, { gpus: ['9'] })], 0, { state: [{ key: KEY, value: 'after-refusal' }] });
  assert.deepEqual([refused.accepted, refused.errors.map((e) => e.field)], [0, ['gpus']]);
  assert.equal(ledger.readSourceState(KEY), 'after-refusal');
  assert.deepEqual(storedIds(path), []);
});

test('a failing insert rolls the whole group commit back: no record stored, the state keeps its previous value, every submission rejected', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const ingest = service(ledger);
  await ingest.submit([rec(1)], 0, { state: [{ key: KEY, value: 'before' }] });
  failInsertsOf(path, 'req-3');
  const results = await Promise.allSettled([
    ingest.submit([rec(2)], 0, { state: [{ key: KEY, value: 'with-req-2' }] }),
    ingest.submit([rec(3)], 0, { state: [{ key: KEY, value: 'with-req-3' }] }),
  ]);
  assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
  assert.match(String((results[0] as PromiseRejectedResult).reason), /injected failure/);
  assert.equal(ledger.readSourceState(KEY), 'before');
  assert.deepEqual(storedIds(path), ['req-1'], 'req-2 was in the failed transaction too');
  // The same submission retried once the cause is gone commits records and state together.
  const db = new Database(path);
  db.exec('DROP TRIGGER fail_insert');
  db.close();
  const retried = await ingest.submit([rec(2), rec(3)], 0, { state: [{ key: KEY, value: 'with-req-3' }] });
  assert.equal(retried.accepted, 2);
  assert.equal(ledger.readSourceState(KEY), 'with-req-3');
  assert.deepEqual(storedIds(path), ['req-1', 'req-2', 'req-3']);
});

test('a failing state write rolls back the records it came with (one transaction, not two)', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const ingest = service(ledger);
  await ingest.submit([rec(1)], 0, { state: [{ key: KEY, value: 'before' }] });
  const db = new Database(path);
  db.exec(`CREATE TRIGGER fail_state BEFORE UPDATE ON agent_state WHEN NEW.value = 'poison' BEGIN SELECT RAISE(ABORT, 'injected state failure'); END`);
  db.close();
  await assert.rejects(ingest.submit([rec(2), rec(3)], 0, { state: [{ key: KEY, value: 'poison' }] }), /injected state failure/);
  assert.equal(ledger.readSourceState(KEY), 'before');
  assert.deepEqual(storedIds(path), ['req-1']);
});

test('a source may write only keys under source:, never the agent\'s own state; nothing of such a submission is stored', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const ingest = service(ledger);
  await assert.rejects(ingest.submit([rec(1)], 0, { state: [{ key: 'settled_until_ms', value: '0' }] }), /must start with "source:"/);
  assert.throws(() => ledger.insertRequests([request(2)], never, [{ key: 'source:', value: 'x' }]), /name something after it/);
  assert.throws(() => ledger.readSourceState('writer'), /must start with "source:"/);
  assert.equal(ledger.getSettledUntil(), null);
  assert.deepEqual(storedIds(path), []);
});
