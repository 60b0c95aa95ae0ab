import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import { T0, never, request, tempLedger } from './temp-ledger.js';

const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

test('the same record twice in one batch is stored once and reported as a duplicate', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const a = request(1, { labels: { team: 'search', feature: 'chat' } });
  // The same facts: labels in another order and another capture path do not make it another record.
  const again = request(1, { labels: { feature: 'chat', team: 'search' }, source: 'proxy' });
  const result = ledger.insertRequests([a, request(2), again], never);
  assert.deepEqual(result.inserted.map((r) => r.requestId), ['req-1', 'req-2']);
  assert.deepEqual(result.duplicates, ['req-1']);
  assert.deepEqual(result.conflicts, []);
  assert.equal(ledger.readRequests(...ALL).length, 2);
});

test('a different record under a stored request_id is a conflict naming the facts that differ; the first is kept', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const a = request(1);
  ledger.insertRequests([a], never);
  const other = request(1, { promptTokens: 999, endMs: epochMs(a.endMs + 5) });
  const result = ledger.insertRequests([other, request(2)], never);
  assert.deepEqual(result.inserted.map((r) => r.requestId), ['req-2']);
  assert.deepEqual(result.duplicates, []);
  assert.deepEqual(result.conflicts, [{ record: other, differing: ['end', 'prompt_tokens'], kept: a }], 'with the record kept, for a source that judges repeats');
  const stored = ledger.readRequests(...ALL).find((r) => r.record.requestId === 'req-1');
  assert.deepEqual(stored?.record, a, 'the first record stays as it was');
});

test('a repeat across batches is acknowledged as a duplicate, not stored again', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1), request(2)], never);
  const second = ledger.insertRequests([request(2), request(3)], never);
  assert.deepEqual(second.inserted.map((r) => r.requestId), ['req-3']);
  assert.deepEqual(second.duplicates, ['req-2']);
  assert.deepEqual(ledger.readRequests(...ALL).map((r) => r.record.requestId), ['req-1', 'req-2', 'req-3']);
});

const recordArb: fc.Arbitrary<ResolvedRequest> = fc
  .record({
    requestId: fc.string({ minLength: 1, maxLength: 40 }),
    taskId: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: null }),
    attempt: fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: null }),
    model: fc.string({ minLength: 1, maxLength: 30 }),
    tier: fc.string({ minLength: 1, maxLength: 10 }),
    gpus: fc.uniqueArray(fc.constantFrom('GPU-0', 'GPU-1', 'GPU-2', 'GPU-3'), { minLength: 1, maxLength: 4 }),
    startMs: fc.integer({ min: T0, max: T0 + 86_400_000 }),
    durationMs: fc.integer({ min: 0, max: 600_000 }),
    firstTokenFrac: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
    promptTokens: fc.integer({ min: 0, max: 100_000_000 }),
    completionTokens: fc.integer({ min: 0, max: 1_000_000 }),
    batchSize: fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: null }),
    status: fc.constantFrom('ok' as const, 'error' as const, 'cancelled' as const),
    labels: fc.dictionary(fc.stringMatching(/^[a-z_][a-z0-9_]{0,10}$/), fc.string({ maxLength: 20 }), { maxKeys: 4 }),
    tokensEstimated: fc.boolean(),
    granularity: fc.constantFrom('request' as const, 'interval' as const),
    source: fc.constantFrom('http', 'proxy', 'otlp'),
  })
  .map((r): ResolvedRequest => ({
    requestId: r.requestId,
    taskId: r.taskId,
    attempt: r.attempt,
    model: r.model,
    tier: r.tier,
    gpus: r.gpus,
    startMs: epochMs(r.startMs),
    firstTokenMs: r.firstTokenFrac === null ? null : epochMs(r.startMs + Math.floor(r.firstTokenFrac * r.durationMs)),
    endMs: epochMs(r.startMs + r.durationMs),
    promptTokens: r.promptTokens,
    cachedTokens: Math.floor(r.promptTokens / 3),
    completionTokens: r.completionTokens,
    reasoningTokens: Math.floor(r.completionTokens / 2),
    batchSize: r.batchSize,
    status: r.status,
    labels: { ...r.labels }, // fast-check dictionaries have no prototype; records do
    tokensEstimated: r.tokensEstimated,
    granularity: r.granularity,
    source: r.source,
  }));

test('property: every field of a record survives the ledger unchanged, and late is stored as marked', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  let round = 0;
  fc.assert(
    fc.property(fc.uniqueArray(recordArb, { selector: (r) => r.requestId, minLength: 1, maxLength: 20 }), (records) => {
      round += 1;
      // Ids are made unique per round so rounds do not collide with each other.
      const batch = records.map((r) => ({ ...r, requestId: `${round}/${r.requestId}` }));
      const isLate = (r: ResolvedRequest): boolean => r.promptTokens % 2 === 1;
      const { inserted, duplicates } = ledger.insertRequests(batch, isLate);
      assert.equal(inserted.length, batch.length);
      assert.deepEqual(duplicates, []);
      const byId = new Map(ledger.loadUnsettledRequests().map((s) => [s.record.requestId, s]));
      for (const r of batch) {
        const stored = byId.get(r.requestId);
        assert.ok(stored, r.requestId);
        assert.deepEqual(stored.record, r);
        assert.equal(stored.late, isLate(r));
        assert.equal(stored.final, null);
        assert.deepEqual(stored.soFar.perGpuJ, {});
      }
    }),
    { numRuns: 40 },
  );
});

test('readRequests selects by end time, oldest first, with a limit', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(5), request(1), request(3), request(9)], never);
  const window = ledger.readRequests(epochMs(T0 + 1000), epochMs(T0 + 9000));
  assert.deepEqual(window.map((r) => r.record.requestId), ['req-1', 'req-3', 'req-5']);
  assert.deepEqual(ledger.readRequests(...ALL, 2).map((r) => r.record.requestId), ['req-1', 'req-3']);
});

test('received_at comes from the ledger clock', (t) => {
  const { ledger, cleanup } = tempLedger({ now: () => T0 + 42 });
  t.after(cleanup);
  ledger.insertRequests([request(1)], never);
  assert.equal(ledger.readRequests(...ALL)[0]?.receivedAtMs, T0 + 42);
});
