import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from '../../agent/sqlite-driver.js';
import { IngestClosedError, IngestService } from '../../agent/ingest-service.js';
import type { IngestServiceOptions } from '../../agent/ingest-service.js';
import type { Ledger } from '../../agent/ledger.js';
import { BackpressureError } from '../../collectors/request-sink.js';
import type { RequestRecord, ResolvedRequest } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import { T0, request, storedIds, tempLedger } from '../ledger/temp-ledger.js';
import { fakeContext } from './fake-context.js';

/** A record as a source delivers it: GPU by index, tier left to the context. */
function rec(i: number, overrides: Partial<RequestRecord> = {}): RequestRecord {
  return { ...request(i), tier: null, gpus: ['0'], ...overrides };
}

function service(ledger: Pick<Ledger, 'insertRequests'>, extra: Partial<IngestServiceOptions> = {}): IngestService {
  return new IngestService({ ledger, context: () => fakeContext(), settledUntil: () => null, onAccepted: () => {}, queueLimit: 1000, ...extra });
}

test('submissions in one tick are written in ONE transaction, and each resolves only once committed', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const batches: number[] = [];
  const spy = { insertRequests: (...args: Parameters<Ledger['insertRequests']>) => { batches.push(args[0].length); return ledger.insertRequests(...args); } };
  const ingest = service(spy);
  const seenAtResolve: string[][] = [];
  const submit = (records: RequestRecord[]): Promise<unknown> =>
    ingest.submit(records).then((r) => { seenAtResolve.push(storedIds(path)); return r; });
  const results = await Promise.all([submit([rec(1), rec(2)]), submit([rec(3)]), submit([rec(4), rec(5), rec(6)])]);
  assert.deepEqual(batches, [6]);
  assert.deepEqual(results.map((r) => (r as { accepted: number }).accepted), [2, 1, 3]);
  for (const ids of seenAtResolve) assert.deepEqual(ids, ['req-1', 'req-2', 'req-3', 'req-4', 'req-5', 'req-6']);
  await ingest.submit([rec(7)]);
  assert.deepEqual(batches, [6, 1], 'a later tick is its own transaction');
});

test('resolution: tier and GPUs from the context; unknown GPUs and out-of-window records refused by field, with the caller\'s index', async (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const rejected: [string, number][] = [];
  const accepted: ResolvedRequest[] = [];
  const ingest = service(ledger, {
    context: () => fakeContext({ retainedFromMs: T0 }),
    onAccepted: (records) => accepted.push(...records),
    onRejected: (reason, n) => rejected.push([reason, n]),
  });
  const result = await ingest.submit([
    rec(1),
    rec(2, { gpus: ['9'] }),
    rec(3, { gpus: null, model: 'unmapped' }),
    rec(4, { endMs: epochMs(T0 - 1), startMs: epochMs(T0 - 10), firstTokenMs: null }),
    rec(5, { gpus: ['GPU-1', '1'] }),
  ], 10);
  assert.equal(result.accepted, 2);
  assert.deepEqual(result.errors.map((e) => [e.index, e.requestId, e.field]), [[11, 'req-2', 'gpus'], [12, 'req-3', 'gpus'], [13, 'req-4', 'end']]);
  // The reasons say what is wrong: the unknown GPU by name, the window's edge by time.
  assert.equal(result.errors[0]?.reason, 'no such GPU on this node: 9');
  assert.equal(result.errors[2]?.reason, `outside the retained window (older than ${new Date(T0).toISOString()})`);
  assert.deepEqual(rejected.sort(), [['end', 1], ['gpus', 2]]);
  assert.deepEqual(accepted.map((r) => [r.requestId, r.tier, r.gpus]), [['req-1', 'small', ['GPU-0']], ['req-5', 'small', ['GPU-1']]]);
});

test('late records (starting before settled_until) are stored, flagged and counted, never dropped', async (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  let late = 0;
  const ingest = service(ledger, { settledUntil: () => epochMs(T0 + 2500), onLate: (n) => { late += n; } });
  // [start, end): req-1 [T0-1 s, T0+1 s) and req-2 [T0, T0+2 s) lie wholly before T0+2.5 s;
  // req-3 [T0+1 s, T0+3 s) straddles it (partly late); req-5 [T0+3 s, T0+5 s) is on time.
  const result = await ingest.submit([rec(1), rec(2), rec(3), rec(5)]);
  assert.deepEqual([result.accepted, result.late], [4, 3]);
  assert.equal(late, 3);
  const flags = Object.fromEntries(ledger.loadUnsettledRequests().map((s) => [s.record.requestId, s.late]));
  assert.deepEqual(flags, { 'req-1': true, 'req-2': true, 'req-3': true, 'req-5': false });
});

test('repeats are acknowledged as duplicates, within a tick and across ticks, and not passed on', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  let duplicates = 0;
  const accepted: string[] = [];
  const ingest = service(ledger, { onDuplicate: (n) => { duplicates += n; }, onAccepted: (rs) => accepted.push(...rs.map((r) => r.requestId)) });
  const [a, b] = await Promise.all([ingest.submit([rec(1), rec(2)]), ingest.submit([rec(2), rec(3), rec(3)])]);
  assert.deepEqual([a.accepted, a.duplicates, b.accepted, b.duplicates], [2, 0, 1, 2]);
  const c = await ingest.submit([rec(1)]);
  assert.deepEqual([c.accepted, c.duplicates], [0, 1]);
  assert.equal(duplicates, 3);
  assert.deepEqual(accepted, ['req-1', 'req-2', 'req-3']);
  assert.deepEqual(storedIds(path), ['req-1', 'req-2', 'req-3']);
});

test('a repeat that differs from the stored record is refused by index with the differing facts, counted as rejected, not as a duplicate', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  let duplicates = 0;
  const rejected: [string, number][] = [];
  const accepted: string[] = [];
  const ingest = service(ledger, {
    onDuplicate: (n) => { duplicates += n; },
    onRejected: (reason, n) => rejected.push([reason, n]),
    onAccepted: (rs) => accepted.push(...rs.map((r) => r.requestId)),
  });
  await ingest.submit([rec(1)]);
  // Index 0 is refused while resolving (no such GPU); 1 repeats req-1 exactly; 2 reuses its id for another call; 3 is new.
  const result = await ingest.submit([rec(7, { gpus: ['9'] }), rec(1), rec(1, { completionTokens: 7, status: 'cancelled' }), rec(2)], 10);
  assert.deepEqual([result.accepted, result.duplicates], [1, 1]);
  assert.deepEqual(result.errors.map((e) => [e.index, e.requestId, e.field]), [[10, 'req-7', 'gpus'], [12, 'req-1', 'request_id']]);
  assert.equal(
    result.errors[1]?.reason,
    'already used by the stored record with a different completion_tokens, status: that record is kept and this one is not stored (give each request its own id)',
  );
  assert.equal(duplicates, 1);
  assert.deepEqual(rejected, [['gpus', 1], ['request_id', 1]]);
  assert.deepEqual(accepted, ['req-1', 'req-2']);
  assert.deepEqual(storedIds(path), ['req-1', 'req-2']);
});

test('a resend of the same record after the config changed its tier or replica GPUs is a duplicate; what the sender states is still compared', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  let duplicates = 0;
  const rejected: [string, number][] = [];
  // Before: llama-8b is tier small on GPU-0. After a config change: tier medium on GPU-1.
  let context = fakeContext();
  const ingest = service(ledger, { context: () => context, onDuplicate: (n) => { duplicates += n; }, onRejected: (reason, n) => rejected.push([reason, n]) });
  const sent = [rec(1), rec(2, { gpus: null }), rec(3, { tier: 'large' }), rec(4, { tier: 'small' }), rec(5, { gpus: null })];
  assert.equal((await ingest.submit(sent)).accepted, 5);
  context = { ...fakeContext(), tierOf: (model) => (model === 'llama-8b' ? 'medium' : undefined), defaultGpus: (model) => (model === 'llama-8b' ? ['GPU-1'] : undefined) };

  // The same records, byte for byte: the node resolves req-1's tier and req-2's GPUs otherwise now.
  const again = await ingest.submit(sent, 0);
  assert.deepEqual([again.accepted, again.duplicates, again.errors], [0, 5, []]);
  assert.equal(duplicates, 5);
  // The ledger's count, which seeds tokenwatt_records_total{result="duplicate"} at a restart, has them too.
  assert.equal(ledger.counterTotals().quality.duplicateRecords, 5);

  // What the sender states is compared as before: another end, a tier it now names, GPUs it now names.
  const changed = await ingest.submit([
    rec(1, { endMs: epochMs(T0 + 1500) }),
    rec(2, { gpus: null, completionTokens: 99 }),
    rec(3, { tier: 'huge' }),
    rec(4, { tier: 'medium' }),
    rec(5, { gpus: ['1'] }),
  ], 20);
  assert.deepEqual(changed.errors.map((e) => [e.index, e.requestId, e.field]), [[20, 'req-1', 'request_id'], [21, 'req-2', 'request_id'], [22, 'req-3', 'request_id'], [23, 'req-4', 'request_id'], [24, 'req-5', 'request_id']]);
  assert.deepEqual(changed.errors.map((e) => /a different (.*): that record/.exec(e.reason)?.[1]), ['end', 'completion_tokens', 'tier', 'tier', 'gpus']);
  assert.deepEqual(rejected, [['request_id', 5]]);
  // The first records stay as they were resolved.
  assert.deepEqual(ledger.loadUnsettledRequests().map((s) => [s.record.requestId, s.record.tier, s.record.gpus]), [
    ['req-1', 'small', ['GPU-0']], ['req-2', 'small', ['GPU-0']], ['req-3', 'large', ['GPU-0']], ['req-4', 'small', ['GPU-0']], ['req-5', 'small', ['GPU-0']],
  ]);
  assert.deepEqual(storedIds(path), ['req-1', 'req-2', 'req-3', 'req-4', 'req-5']);
});

test('over the queue limit a submission is refused with BackpressureError; what was queued still commits', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const ingest = service(ledger, { queueLimit: 3, retryAfterSeconds: 2 });
  const first = ingest.submit([rec(1), rec(2)]);
  assert.equal(ingest.queued, 2);
  await assert.rejects(ingest.submit([rec(3), rec(4)]), (err: unknown) => err instanceof BackpressureError && err.retryAfterSeconds === 2);
  const fits = ingest.submit([rec(5)]);
  assert.deepEqual([(await first).accepted, (await fits).accepted], [2, 1]);
  assert.equal(ingest.queued, 0);
  // Alone, a submission larger than the limit still goes through (else it never could).
  assert.equal((await ingest.submit([rec(6), rec(7), rec(8), rec(9)])).accepted, 4);
  assert.deepEqual(storedIds(path), ['req-1', 'req-2', 'req-5', 'req-6', 'req-7', 'req-8', 'req-9']);
});

test('a SQLite error rejects every submission of the transaction and stores none of it', async (t) => {
  const { ledger, path, cleanup } = tempLedger({ busyTimeoutMs: 20 });
  t.after(cleanup);
  const accepted: string[] = [];
  const ingest = service(ledger, { onAccepted: (rs) => accepted.push(...rs.map((r) => r.requestId)) });
  const blocker = new Database(path);
  t.after(() => blocker.close());
  blocker.exec('BEGIN IMMEDIATE'); // another writer holds the lock past the busy timeout
  const outcomes = await Promise.allSettled([ingest.submit([rec(1)]), ingest.submit([rec(2)])]);
  blocker.exec('ROLLBACK');
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.match(String((o as PromiseRejectedResult).reason), /database is locked/);
  }
  assert.deepEqual(storedIds(path), []);
  assert.deepEqual(accepted, []);
  assert.equal((await ingest.submit([rec(1)])).accepted, 1, 'recovers once the lock is gone');
});

test('a callback that throws after the commit does not un-acknowledge it; close() flushes and refuses more', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const errors: unknown[] = [];
  const ingest = service(ledger, { onAccepted: () => { throw new Error('metrics broke'); }, onError: (e) => errors.push(e) });
  assert.equal((await ingest.submit([rec(1)])).accepted, 1);
  assert.match(String(errors[0]), /metrics broke/);
  const pending = ingest.submit([rec(2)]);
  ingest.close();
  assert.deepEqual(storedIds(path), ['req-1', 'req-2'], 'flushed synchronously by close()');
  assert.equal((await pending).accepted, 1);
  await assert.rejects(ingest.submit([rec(3)]), IngestClosedError);
});

test('sightings: a repeat the source judges the same request is a duplicate; another request under the taken id is stored under its alternate id', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const counted: string[] = [];
  const ingest = service(ledger, {
    onDuplicate: (n) => counted.push(`duplicate ${n}`),
    onRejected: (reason, n) => counted.push(`rejected ${reason} ${n}`),
    onAccepted: (records) => counted.push(`accepted ${records.map((r) => r.requestId).join(',')}`),
  });
  await ingest.submit([rec(1)]);
  counted.length = 0;
  // The same call seen from the other side: other times, same tokens.
  const sameCall = (kept: RequestRecord, repeat: RequestRecord) => kept.promptTokens === repeat.promptTokens;
  const rule = { judge: (kept: RequestRecord, repeat: RequestRecord) => ({ kind: sameCall(kept, repeat) ? ('same' as const) : ('other' as const) }), alternateId: (index: number) => `req-1/alt-${index}` };
  const seenAgain = await ingest.submit([rec(1, { endMs: epochMs(request(1).endMs + 40) })], 5, { sightings: rule });
  assert.deepEqual([seenAgain.accepted, seenAgain.duplicates, seenAgain.errors], [0, 1, []]);
  // Another call reusing the id (other tokens): stored under its alternate id; sent again, a duplicate there.
  const other = rec(1, { promptTokens: 999 });
  const another = await ingest.submit([other, rec(2)], 7, { sightings: rule });
  assert.deepEqual([another.accepted, another.duplicates, another.errors], [2, 0, []]);
  const resent = await ingest.submit([other], 7, { sightings: rule });
  assert.deepEqual([resent.accepted, resent.duplicates, resent.errors], [0, 1, []]);
  assert.deepEqual(storedIds(path), ['req-1', 'req-1/alt-7', 'req-2']);
  // Without the rule, the same repeat is a conflict, named and counted.
  const plain = await ingest.submit([other], 3);
  assert.deepEqual(plain.errors.map((e) => [e.index, e.field]), [[3, 'request_id']]);
  assert.deepEqual(counted, ['duplicate 1', 'accepted req-2,req-1/alt-7', 'duplicate 1', 'rejected request_id 1']);
});

test('records a source refused before submitting (an OTLP span that is no record) are counted as refused records, by reason', async (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const rejected: [string, number][] = [];
  const ingest = service(ledger, { onRejected: (reason, n) => rejected.push([reason, n]) });
  ingest.noteRejected('model', 2);
  ingest.noteRejected('parse', 0);
  assert.deepEqual(rejected, [['model', 2]]);
});

test('a resend naming its GPUs by index after the index-to-UUID mapping changed is the duplicate it is; one that names other GPUs is refused by field', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  // Index -> UUID as the node sees it now: a GPU learnt later, or another device order after a restart, changes it.
  let order = ['GPU-0', 'GPU-1', 'GPU-2'];
  const context = () => ({ ...fakeContext(), resolveGpu: (ref: string) => (/^\d+$/.test(ref) ? order[Number(ref)] : order.find((u) => u.toLowerCase() === ref.toLowerCase())) });
  let duplicates = 0;
  const accepted: ResolvedRequest[] = [];
  const ingest = service(ledger, { context, onDuplicate: (n) => { duplicates += n; }, onAccepted: (rs) => accepted.push(...rs) });
  const first = await ingest.submit([rec(1, { gpus: ['0', '1'] }), rec(2, { gpus: ['GPU-2'] })]);
  assert.deepEqual([first.accepted, first.errors], [2, []]);
  order = ['GPU-2', 'GPU-0', 'GPU-1'];
  // req-1 sent again as it was (by index, now other UUIDs); req-2 by its UUID in another case.
  const again = await ingest.submit([rec(1, { gpus: ['1', '0'] }), rec(2, { gpus: ['gpu-2'] })]);
  assert.deepEqual([again.accepted, again.duplicates, again.errors], [0, 2, []]);
  // Truly another set of GPUs under a taken id: refused, naming the field.
  const other = await ingest.submit([rec(1, { gpus: ['0', '2'] })], 5);
  assert.deepEqual([other.accepted, other.duplicates], [0, 0]);
  assert.deepEqual(other.errors.map((e) => [e.index, e.requestId, e.field]), [[5, 'req-1', 'request_id']]);
  assert.match(other.errors[0]?.reason ?? '', /with a different gpus:/);
  assert.equal(duplicates, 2);
  // Counted once, with the UUIDs of the first send.
  assert.deepEqual(storedIds(path), ['req-1', 'req-2']);
  assert.deepEqual(accepted.map((r) => [r.requestId, r.gpus]), [['req-1', ['GPU-0', 'GPU-1']], ['req-2', ['GPU-2']]]);
  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  assert.deepEqual(db.prepare('SELECT request_id, gpus, gpus_sent FROM requests ORDER BY seq').all(),
    [{ request_id: 'req-1', gpus: '["GPU-0","GPU-1"]', gpus_sent: '["0","1"]' }, { request_id: 'req-2', gpus: '["GPU-2"]', gpus_sent: null }]);
  assert.deepEqual(db.prepare('SELECT duplicates FROM record_counts').all(), [{ duplicates: 2 }]);
});

test('a submission whose alternate-id transaction fails: its duplicates are not in the ledger\'s count (which seeds tokenwatt_records_total) until the resend acknowledges them', async (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  let failNext = false;
  const failing = {
    insertRequests: (...args: Parameters<Ledger['insertRequests']>) => {
      if (failNext && args[2]?.length === 0 && args[0][0]?.requestId.includes('/alt-')) {
        failNext = false;
        throw new Error('disk I/O error');
      }
      return ledger.insertRequests(...args);
    },
    addDuplicateRecords: (n: number) => ledger.addDuplicateRecords(n),
    findRequest: (id: string) => ledger.findRequest(id),
    mergeRequests: (records: readonly ResolvedRequest[]) => ledger.mergeRequests(records),
  };
  const exported: number[] = [];
  const ingest = service(failing, { onDuplicate: (n) => exported.push(n) });
  await ingest.submit([rec(1), rec(2)]);
  const seeded = () => ledger.counterTotals().quality.duplicateRecords;
  assert.equal(seeded(), 0);
  const rule = { judge: (kept: RequestRecord, repeat: RequestRecord) => ({ kind: kept.promptTokens === repeat.promptTokens ? ('same' as const) : ('other' as const) }), alternateId: (index: number) => `req-1/alt-${index}` };
  // req-1 seen again (judged the same by the rule), req-2 sent again as it was (the ledger's own
  // duplicate), and another request under req-1's id (to its alternate id: the failing transaction).
  const submission = [rec(1, { endMs: epochMs(request(1).endMs + 40) }), rec(2), rec(1, { promptTokens: 999 })];
  failNext = true;
  await assert.rejects(ingest.submit(submission, 0, { sightings: rule }), /disk I\/O error/);
  assert.deepEqual(exported, []);
  assert.equal(seeded(), 0, 'nothing acknowledged, nothing counted');
  const resent = await ingest.submit(submission, 0, { sightings: rule });
  assert.deepEqual([resent.accepted, resent.duplicates, resent.errors], [1, 2, []]);
  assert.deepEqual(exported, [2]);
  assert.equal(seeded(), 2, 'the ledger counts what was acknowledged, as exported');
});
