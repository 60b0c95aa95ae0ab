import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { IngestResult, RequestSink } from '../../collectors/request-sink.js';
import { RecordDelivery } from '../../collectors/proxy/record-delivery.js';
import { RecordingSink } from './recording-sink.js';
import { captureLog } from './capture-log.js';

const T = Date.UTC(2026, 10, 1);
function record(id: string): RequestRecord {
  const parsed = parseRequestRecord({ request_id: id, model: 'm', start: T, end: T + 10, prompt_tokens: 1, completion_tokens: 1, gpus: [0] }, 0);
  assert.ok(parsed.ok);
  return parsed.record;
}

test('records are batched into few submits and all arrive in order', async () => {
  const sink = new RecordingSink();
  const { log } = captureLog();
  const delivery = new RecordDelivery(sink, { log, source: 'test', maxBatch: 4, flushDelayMs: 5 });
  for (let i = 0; i < 10; i++) delivery.push([record(`r${i}`)]);
  await delivery.flush();
  assert.deepEqual(sink.records.map((r) => r.requestId), Array.from({ length: 10 }, (_, i) => `r${i}`));
  assert.deepEqual(sink.submissions, [4, 4, 2]);
  assert.deepEqual(delivery.stats(), { accepted: 10, duplicates: 0, late: 0, refused: 0, dropped: 0, pending: 0 });
});

test('maxBatchBytes cuts submits by the bytes of their records; a record larger than it alone goes alone', async () => {
  const sink = new RecordingSink();
  const { log } = captureLog();
  const sizes: Record<string, number> = { r0: 40, r1: 40, r2: 30, r3: 150, r4: 10, r5: 10 };
  const delivery = new RecordDelivery(sink, { log, source: 'test', maxBatch: 100, maxBatchBytes: 100, recordBytes: (r) => sizes[r.requestId] ?? 0, flushDelayMs: 1 });
  delivery.push(Object.keys(sizes).map(record));
  await delivery.flush();
  assert.deepEqual(sink.records.map((r) => r.requestId), Object.keys(sizes));
  assert.deepEqual(sink.submissions, [2, 1, 1, 2]);
});

test('push-back (BackpressureError) holds the records and retries after Retry-After; nothing is lost', async () => {
  const sink = new RecordingSink();
  sink.pushBack = 2;
  const { log, messages } = captureLog();
  const delivery = new RecordDelivery(sink, { log, source: 'test', flushDelayMs: 1 });
  delivery.push([record('a'), record('b')]);
  await sink.waitFor(2, 3000);
  await delivery.flush();
  assert.equal(messages('warn').filter((m) => /ingest queue full/.test(m)).length, 1, 'one warning per push-back episode');
  assert.ok(messages('info').some((m) => /accepts records again/.test(m)));
  assert.equal(delivery.stats().pending, 0);
});

test('refused records are logged with their field and reason; failures are retried; overflow is an error, not silence', async () => {
  const { log, messages } = captureLog();
  const errors: string[] = [];
  let calls = 0;
  const sink: RequestSink = {
    async submit(records): Promise<IngestResult> {
      calls++;
      if (calls === 1) throw new Error('disk full');
      return { accepted: records.length - 1, duplicates: 0, late: 0, errors: [{ index: 0, field: 'gpus', reason: 'no such GPU on this node: 7' }] };
    },
  };
  const delivery = new RecordDelivery(sink, { log, source: 'test', flushDelayMs: 1, maxPending: 3, onError: (e) => errors.push(e.message) });
  delivery.push([record('x'), record('y'), record('z'), record('overflow')]);
  assert.equal(delivery.stats().dropped, 1);
  assert.ok(messages('error').some((m) => /1 request record\(s\) dropped/.test(m)));
  await delivery.flush(5000);
  assert.ok(errors.some((e) => /disk full/.test(e)));
  assert.equal(delivery.stats().refused, 1);
  assert.equal(delivery.stats().accepted, 2);
  assert.ok(messages('warn').some((m) => m === 'test: record x refused: gpus: no such GPU on this node: 7'));
});

test('a push of more records than a call takes arguments is held whole, up to maxPending', async () => {
  const { log } = captureLog();
  let submitted = 0;
  const sink: RequestSink = {
    submit: async (rs): Promise<IngestResult> => {
      submitted += rs.length;
      return { accepted: rs.length, duplicates: 0, late: 0, errors: [] };
    },
  };
  const delivery = new RecordDelivery(sink, { log, source: 'test', maxPending: 300_000, maxBatch: 50_000, flushDelayMs: 1 });
  const one = record('r');
  delivery.push(Array.from({ length: 200_000 }, () => one));
  assert.equal(delivery.stats().pending, 200_000);
  await delivery.flush();
  assert.equal(submitted, 200_000);
  assert.equal(delivery.stats().dropped, 0);
});
