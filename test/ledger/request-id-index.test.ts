import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import { LEDGER_MIGRATIONS, migrate } from '../../agent/migrations/index.js';
import { requestIdIndex } from '../../agent/migrations/005-request-id-index.js';
import { RecentRequestIds, type IdIndexChunk } from '../../agent/recent-request-ids.js';
import { requestIdHash } from '../../agent/request-id-hash.js';
import { epochMs } from '../../model/units.js';
import { RETENTION, T0, never, pruneAt, request, tempDir, tempLedger } from './temp-ledger.js';

const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

/** Every (hash, seq) of request_ids, and what it should hold: each row of requests under its id's hash. */
function indexOf(path: string): { held: string[]; expected: string[]; mergedThrough: string | undefined } {
  const db = new Database(path, { readonly: true });
  try {
    const held = (db.prepare('SELECT h, rid FROM request_ids ORDER BY rid').all() as { h: number; rid: number }[]).map((r) => `${r.h}:${r.rid}`);
    const expected = (db.prepare('SELECT request_id, seq FROM requests ORDER BY seq').all() as { request_id: string; seq: number }[]).map(
      (r) => `${requestIdHash(r.request_id)}:${r.seq}`,
    );
    const mark = db.prepare("SELECT value FROM agent_state WHERE key = 'request_ids_merged_through'").get() as { value: string } | undefined;
    return { held, expected, mergedThrough: mark?.value };
  } finally {
    db.close();
  }
}

test('requestIdHash is cyrb53: the values its author publishes, and a pinned request id (stored in ledgers: it must never change)', () => {
  assert.equal(requestIdHash('a'), 7929297801672961);
  assert.equal(requestIdHash('b'), 8684336938537663);
  assert.equal(requestIdHash('revenge'), 4051478007546757);
  assert.equal(requestIdHash('revenue'), 8309097637345594);
  assert.equal(requestIdHash('chatcmpl-0f5c7c8e-2b0e-4f3a-9d7e-6a1b2c3d4e5f'), 1579216308914249);
  for (const id of ['', 'x', '日本語', 'chatcmpl-' + 'f'.repeat(200)]) {
    const h = requestIdHash(id);
    assert.ok(Number.isSafeInteger(h) && h >= 0, `${JSON.stringify(id)} -> ${h}`);
  }
});

test('RecentRequestIds: a merge offers every remembered row once, in hash ranges sorted by hash, and re-offers an unacknowledged chunk', () => {
  const recent = new RecentRequestIds(10, 3);
  const pairs = Array.from({ length: 12 }, (_, i) => [requestIdHash(`chatcmpl-${i}`), i + 1] as const);
  for (const [h, seq] of pairs.slice(0, 9)) recent.add(h, seq);
  assert.equal(recent.nextChunk(), null, 'no merge before mergeRows rows');
  recent.add(...(pairs[9] as readonly [number, number]));
  const first = recent.nextChunk();
  assert.ok(first !== null);
  assert.deepEqual(recent.nextChunk(), first, 'not acknowledged: offered again');
  // Rows added during a merge wait for the next one, and are found meanwhile.
  recent.add(...(pairs[10] as readonly [number, number]));
  const offered: [number, number][] = [];
  let chunk: IdIndexChunk | null = first;
  let chunks = 0;
  while (chunk !== null) {
    chunks++;
    assert.deepEqual([...chunk.hashes], [...chunk.hashes].sort((a, b) => a - b), 'sorted by hash');
    const { hashes, seqs } = chunk;
    hashes.forEach((h, i) => offered.push([h, seqs[i] as number]));
    assert.equal(chunk.mergedThroughSeq, chunks === 3 ? 10 : null);
    recent.chunkWritten();
    chunk = recent.nextChunk();
  }
  assert.equal(chunks, 3);
  assert.deepEqual(offered.sort((a, b) => a[1] - b[1]), pairs.slice(0, 10).map(([h, s]) => [h, s]));
  assert.equal(recent.size, 1);
  assert.deepEqual(recent.candidates(pairs[10]?.[0] as number), [11]);
  assert.deepEqual(recent.candidates(pairs[0]?.[0] as number), [], 'merged rows are left to the index');
  assert.throws(() => recent.add(1, 11), /increasing seq/);
  assert.throws(() => recent.chunkWritten(), /without a merge/);
});

test('RecentRequestIds: candidates are the rows with exactly the hash asked, through growth and slot collisions', () => {
  const recent = new RecentRequestIds(1_000_000, 4);
  const TWO_32 = 4294967296;
  // 3000 rows (the table starts at 1024): hashes 5 + k * 2^32 share their low 32 bits, so one slot run.
  const hashOf = (i: number): number => (i % 3 === 0 ? 5 + (i % 300) * TWO_32 : 2 ** 52 + i * 7919);
  for (let seq = 1; seq <= 3000; seq++) recent.add(hashOf(seq), seq);
  assert.equal(recent.size, 3000);
  for (const seq of [3, 300, 303, 2997, 1, 2, 1024, 1025, 3000]) {
    const expected = Array.from({ length: 3000 }, (_, k) => k + 1).filter((s) => hashOf(s) === hashOf(seq));
    assert.deepEqual([...recent.candidates(hashOf(seq))].sort((a, b) => a - b), expected, `rows under the hash of seq ${seq}`);
  }
  assert.deepEqual(recent.candidates(5 + 301 * TWO_32), [], 'a hash sharing the low bits of stored ones, itself never stored');
  assert.deepEqual(recent.candidates(17), []);
  recent.forget([3, 303]);
  assert.deepEqual([...recent.candidates(hashOf(3))].sort((a, b) => a - b), [603, 903, 1203, 1503, 1803, 2103, 2403, 2703]);
});

test('RecentRequestIds: the chunks of a merge hold every row once, sorted by hash and then seq, whatever hashes repeat or share low bits (property)', () => {
  const TWO_32 = 4294967296;
  // Hashes from a small pool, so rows repeat a hash and share the low 32 bits the table places them by.
  const hash = fc.oneof(
    fc.integer({ min: 0, max: 40 }).map((k) => 7 + k * TWO_32),
    fc.integer({ min: 0, max: 2 ** 53 - 1 }),
    fc.constantFrom(0, 2 ** 53 - 1, 2 ** 52),
  );
  fc.assert(
    fc.property(fc.array(hash, { minLength: 1, maxLength: 3000 }), fc.integer({ min: 1, max: 9 }), (hashes, chunks) => {
      const recent = new RecentRequestIds(hashes.length, chunks);
      hashes.forEach((h, i) => recent.add(h, i + 1));
      const offered: [number, number][] = [];
      for (let chunk = recent.nextChunk(); chunk !== null; chunk = recent.nextChunk()) {
        chunk.hashes.forEach((h, i) => offered.push([h, chunk.seqs[i] as number]));
        recent.chunkWritten();
      }
      const expected = hashes.map((h, i): [number, number] => [h, i + 1]).sort((a, b) => (a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] - b[1]));
      assert.deepEqual(offered, expected);
    }),
    { numRuns: 60 },
  );
});

test('two ids whose hashes share the map key are two requests, and each repeat is found as itself', (t) => {
  // The in-memory table places a row by the low bits of its hash: search the first pair of ids sharing 30 of them.
  const seen = new Map<number, string>();
  let pair: [string, string] | null = null;
  for (let i = 0; pair === null; i++) {
    const id = `chatcmpl-${i}`;
    const key = requestIdHash(id) & 0x3fffffff;
    const before = seen.get(key);
    if (before !== undefined) pair = [before, id];
    else seen.set(key, id);
  }
  const [a, b] = pair;
  assert.notEqual(requestIdHash(a), requestIdHash(b));
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const first = ledger.insertRequests([request(1, { requestId: a })], never);
  const second = ledger.insertRequests([request(2, { requestId: b })], never);
  assert.deepEqual([first.inserted.length, second.inserted.length], [1, 1]);
  const again = ledger.insertRequests([request(2, { requestId: b }), request(1, { requestId: a }), request(3, { requestId: a })], never);
  assert.deepEqual(again.inserted, []);
  assert.deepEqual(again.duplicates, [b, a]);
  assert.deepEqual(again.conflicts.map((c) => [c.record.requestId, c.differing]), [[a, ['task_id', 'start', 'first_token', 'end', 'prompt_tokens']]]);
});

test('a batch after a restart finds its ids through the index, read once for the whole batch: repeats, conflicts and new ids together', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'ledger.db');
  const open = (): Ledger => Ledger.open(path, { node: 'node-a', retention: RETENTION });
  const first = open();
  first.insertRequests([request(1), request(2), request(3)], never);
  first.close();
  // A stale entry beside a real one under the same hash (as a hand-deleted row would leave): the
  // batch read returns both candidates, and only the one whose row holds the id counts.
  const db = new Database(path);
  db.prepare('INSERT INTO request_ids (h, rid) VALUES (?, ?)').run(requestIdHash('req-2'), 999);
  db.close();
  const ledger = open();
  t.after(() => ledger.close());
  assert.equal(indexOf(path).held.length, 4, 'the three rows were merged at open, beside the stale entry');
  const result = ledger.insertRequests([request(4), request(2), request(1, { promptTokens: 7 }), request(4), request(3), request(5)], never);
  assert.deepEqual(result.inserted.map((r) => r.requestId), ['req-4', 'req-5']);
  assert.deepEqual(result.duplicates, ['req-2', 'req-4', 'req-3']);
  assert.deepEqual(result.conflicts.map((c) => [c.record.requestId, c.differing]), [['req-1', ['prompt_tokens']]]);
});

test('a batch larger than one insert statement: new rows numbered in order across statements, repeats within it compared with rows written earlier in it', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const seqsOf = (): Map<string, number> => {
    const db = new Database(path, { readonly: true });
    try {
      return new Map((db.prepare('SELECT request_id, seq FROM requests ORDER BY seq').all() as { request_id: string; seq: number }[]).map((r) => [r.request_id, r.seq]));
    } finally {
      db.close();
    }
  };
  // 75 records: 73 new ids, a repeat of record 5 at position 40 and a conflicting repeat of record
  // 35 at position 70, each after a statement's worth of rows (32) and in the middle of one.
  const fresh = Array.from({ length: 73 }, (_, i) => request(i + 1));
  const batch = [...fresh];
  batch.splice(40, 0, request(5));
  batch.splice(70, 0, request(35, { completionTokens: 999 }));
  const result = ledger.insertRequests(batch, never);
  assert.equal(result.inserted.length, 73);
  assert.deepEqual(result.duplicates, ['req-5']);
  assert.deepEqual(result.conflicts.map((c) => [c.record.requestId, c.differing]), [['req-35', ['completion_tokens']]]);
  const seqs = seqsOf();
  assert.deepEqual([...seqs.values()], Array.from({ length: 73 }, (_, i) => i + 1), 'seqs 1..73, in the order the records came');
  assert.deepEqual([...seqs.keys()], Array.from({ length: 73 }, (_, i) => `req-${i + 1}`));
  // Once every row is pruned, the next row is still numbered above the largest ever used.
  finalizeAll(ledger, fresh, T0 + 80_000);
  assert.equal(pruneAt(ledger, T0 + 8 * 86_400_000).requests, 73);
  const later = request(9000, { startMs: epochMs(T0 + 9 * 86_400_000 - 1000), firstTokenMs: null, endMs: epochMs(T0 + 9 * 86_400_000) });
  assert.equal(ledger.insertRequests([later], never).inserted.length, 1);
  assert.deepEqual([...seqsOf()], [['req-9000', 74]]);
});

test('idempotency holds through merges, chunks, restarts and prunes (randomized against a model)', () => {
  // A record is a function of (id, variant): the same pair is the same record, another variant conflicts.
  const recordArb = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.boolean());
  const stepArb = fc.oneof(
    { weight: 6, arbitrary: fc.array(recordArb, { minLength: 0, maxLength: 6 }).map((batch) => ({ kind: 'batch' as const, batch })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  );
  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), (steps, rows, chunks) => {
      const { dir, cleanup } = tempDir();
      const path = join(dir, 'ledger.db');
      const open = (): Ledger => Ledger.open(path, { node: 'n', retention: RETENTION, idIndexMerge: { rows, chunks } });
      let ledger = open();
      try {
        const model = new Map<string, boolean>(); // id -> the variant of its first record
        for (const step of steps) {
          if (step.kind === 'reopen') {
            ledger.close();
            ledger = open();
            continue;
          }
          const records = step.batch.map(([n, variant]) => request(n, { requestId: `chatcmpl-${n}`, promptTokens: variant ? 7 : 100 }));
          const expected = { inserted: [] as string[], duplicates: [] as string[], conflicts: [] as string[] };
          step.batch.forEach(([n, variant]) => {
            const id = `chatcmpl-${n}`;
            const first = model.get(id);
            if (first === undefined) {
              model.set(id, variant);
              expected.inserted.push(id);
            } else if (first === variant) expected.duplicates.push(id);
            else expected.conflicts.push(id);
          });
          const result = ledger.insertRequests(records, never);
          assert.deepEqual(result.inserted.map((r) => r.requestId), expected.inserted);
          assert.deepEqual(result.duplicates, expected.duplicates);
          assert.deepEqual(result.conflicts.map((c) => c.record.requestId), expected.conflicts);
          assert.ok(result.conflicts.every((c) => c.differing.join() === 'prompt_tokens'));
        }
        assert.deepEqual(ledger.readRequests(...ALL).map((r) => r.record.requestId).sort(), [...model.keys()].sort());
        ledger.close();
        // At open, whatever was not merged is: then the index holds exactly one entry per row.
        ledger = open();
        const index = indexOf(path);
        assert.deepEqual(index.held.slice().sort(), index.expected.slice().sort());
      } finally {
        ledger.close();
        cleanup();
      }
    }),
    { numRuns: 60 },
  );
});

test('a merge goes on through many batches and the index ends with one entry per row; a prune takes out the entries of its rows', (t) => {
  const { ledger, path, cleanup } = tempLedger({ idIndexMerge: { rows: 50, chunks: 4 } });
  t.after(cleanup);
  for (let i = 0; i < 300; i += 10) {
    ledger.insertRequests(Array.from({ length: 10 }, (_, j) => request(i + j, { requestId: `chatcmpl-${crypto.randomUUID()}` })), never);
  }
  const during = indexOf(path);
  assert.ok(during.held.length >= 200, `merged ${during.held.length} of 300`);
  assert.ok(during.held.every((entry) => during.expected.includes(entry)), 'every entry is a row under its hash');
  assert.ok(Number(during.mergedThrough) >= 200);
  // Settle and finalize nothing: unfinalized rows are kept, and so are their entries.
  assert.equal(pruneAt(ledger, T0 + 8 * 86_400_000).requests, 0);
  assert.equal(indexOf(path).held.length, during.held.length);
});

const finalizeAll = (ledger: Ledger, records: readonly ReturnType<typeof request>[], untilMs: number): void => {
  ledger.commitSettlement({
    periodStartMs: epochMs(untilMs - 1), periodEndMs: epochMs(untilMs), settledUntilMs: epochMs(untilMs),
    gpuTotals: [], requestDeltas: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
    finalized: records.map((r) => ({
      requestId: r.requestId, joules: 1, jPerOutputToken: null, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0),
    })),
  });
};

test('a prune deletes the index entries of the rows it deletes', (t) => {
  const { ledger, path, cleanup } = tempLedger({ idIndexMerge: { rows: 4, chunks: 2 } });
  t.after(cleanup);
  const records = Array.from({ length: 6 }, (_, i) => request(i + 1));
  ledger.insertRequests(records, never);
  ledger.insertRequests([], never, [{ key: 'source:x', value: '1' }]); // carries chunk 1 of the merge
  ledger.insertRequests([], never, [{ key: 'source:x', value: '2' }]); // chunk 2
  assert.equal(indexOf(path).held.length, 6);
  const kept = request(9, { endMs: epochMs(T0 + 30 * 86_400_000), startMs: epochMs(T0 + 30 * 86_400_000 - 1000), firstTokenMs: null });
  ledger.insertRequests([kept], never);
  finalizeAll(ledger, records, T0 + 10_000);
  assert.equal(pruneAt(ledger, T0 + 8 * 86_400_000).requests, 6);
  assert.deepEqual(indexOf(path), { held: [], expected: [`${requestIdHash(kept.requestId)}:7`], mergedThrough: '6' });
  // The ids are free again (their records are past retention; the agent refuses such records before the ledger).
  assert.equal(ledger.insertRequests([request(1)], never).inserted.length, 1);
});

test('a row pruned before its merge is left out of the merge, so the index never names a row that is gone', (t) => {
  const { ledger, path, cleanup } = tempLedger({ idIndexMerge: { rows: 4, chunks: 2 } });
  t.after(cleanup);
  const old = [request(1), request(2)];
  ledger.insertRequests(old, never); // 2 rows: below the merge threshold, so only in memory
  finalizeAll(ledger, old, T0 + 10_000);
  assert.equal(pruneAt(ledger, T0 + 8 * 86_400_000).requests, 2);
  const later = (i: number) => request(i, { endMs: epochMs(T0 + 9 * 86_400_000 + i), startMs: epochMs(T0 + 9 * 86_400_000 - 1000), firstTokenMs: null });
  ledger.insertRequests([later(3), later(4), later(5), later(6)], never); // now 4 remembered: a merge is due
  ledger.insertRequests([], never, [{ key: 'source:x', value: '1' }]);
  ledger.insertRequests([], never, [{ key: 'source:x', value: '2' }]);
  const index = indexOf(path);
  assert.equal(index.mergedThrough, '6');
  assert.deepEqual(index.held.slice().sort(), index.expected.slice().sort());
  assert.equal(index.held.length, 4);
  // A resent old id is new again; a resent later one is a duplicate, found through the index.
  const again = ledger.insertRequests([later(4), request(1)], never);
  assert.deepEqual([again.duplicates, again.inserted.map((r) => r.requestId)], [['req-4'], ['req-1']]);
});

test('a ledger of schema 4 keeps its rows and rowids as seq, and every stored id stays taken', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'ledger.db');
  const v4 = new Database(path);
  migrate(v4, LEDGER_MIGRATIONS.slice(0, requestIdIndex.version - 1), path);
  const insert = v4.prepare(`INSERT INTO requests (request_id, model, tier, gpus, start_ms, end_ms, prompt_tokens, cached_tokens,
    completion_tokens, reasoning_tokens, status, labels, tokens_estimated, granularity, source, late, received_at_ms)
    VALUES (?, 'llama-8b', 'small', '["GPU-0"]', ?, ?, 100, 10, 20, 5, 'ok', '{"team":"search"}', 0, 'request', 'http', 0, ?)`);
  const old = request(5, { taskId: null, attempt: null, firstTokenMs: null, batchSize: null, promptTokens: 100 });
  for (const [id, n] of [['req-5', 0], ['chatcmpl-old-a', 1], ['chatcmpl-old-b', 2]] as const) insert.run(id, old.startMs + n, old.endMs + n, T0);
  v4.prepare("DELETE FROM requests WHERE request_id = 'chatcmpl-old-a'").run(); // a gap in the rowids
  const rowids = v4.prepare('SELECT rowid, request_id FROM requests ORDER BY rowid').all();
  v4.close();

  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  assert.deepEqual(reader.prepare('SELECT seq AS rowid, request_id FROM requests ORDER BY seq').all(), rowids);
  const index = indexOf(path);
  assert.deepEqual(index.held, index.expected);
  assert.equal(index.mergedThrough, '3');
  const again = ledger.insertRequests([old, request(6, { requestId: 'chatcmpl-new' })], never);
  assert.deepEqual(again.duplicates, ['req-5']);
  assert.deepEqual(again.inserted.map((r) => r.requestId), ['chatcmpl-new']);
  assert.equal((reader.prepare("SELECT seq FROM requests WHERE request_id = 'chatcmpl-new'").get() as { seq: number }).seq, 4, 'after the largest seq ever used');
});
