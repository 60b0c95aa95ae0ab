import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { IngestResult, RequestSink, SourceStateWrite, SubmitOptions } from '../../collectors/request-sink.js';
import { RecordDelivery } from '../../collectors/proxy/record-delivery.js';
import { captureLog } from './capture-log.js';

const T = Date.UTC(2026, 10, 1);
function record(id: string): RequestRecord {
  const parsed = parseRequestRecord({ request_id: id, model: 'm', start: T, end: T + 10, prompt_tokens: 1, completion_tokens: 1, gpus: [0] }, 0);
  assert.ok(parsed.ok, 'a valid record');
  return parsed.record;
}
const records = (...ids: string[]): RequestRecord[] => ids.map(record);
const st = (key: string, value: string): SourceStateWrite[] => [{ key: `source:${key}`, value }];

/** A sink that logs each submit as "ids | key=value ..." and can fail or wait on demand. */
class SpySink implements RequestSink {
  readonly submits: string[] = [];
  /** Each attempt, failed ones included. */
  readonly attempts: string[] = [];
  failNext = 0;
  gate: Promise<void> | null = null;
  async submit(batch: readonly RequestRecord[], _firstIndex?: number, options?: SubmitOptions): Promise<IngestResult> {
    const line = `${batch.map((r) => r.requestId).join(',')} | ${(options?.state ?? []).map((w) => `${w.key.slice('source:'.length)}=${w.value}`).join(' ')}`.trim();
    this.attempts.push(line);
    if (this.gate) await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('disk I/O error');
    }
    this.submits.push(line);
    return { accepted: batch.length, duplicates: 0, late: 0, errors: [] };
  }
}

/** Waits (polling; a long deadline costs nothing when it comes) until the sink has seen `n` attempts. */
async function attempted(sink: SpySink, n: number): Promise<void> {
  for (const deadline = Date.now() + 10_000; sink.attempts.length < n; await new Promise((r) => setTimeout(r, 2))) {
    if (Date.now() > deadline) throw new Error(`only ${sink.attempts.length} of ${n} attempts in 10 s`);
  }
}

test('state goes in the submit holding the last record pushed with it; such records are never split across submits', async () => {
  const sink = new SpySink();
  const { log } = captureLog();
  const delivery = new RecordDelivery(sink, { log, source: 'test', maxBatch: 4, flushDelayMs: 5 });
  delivery.push(records('a', 'b', 'c')); // no state (a proxy's records)
  delivery.push(records('d', 'e', 'f'), st('k', '1'));
  delivery.push([], st('j', 'x')); // state alone: after d, e, f
  delivery.push(records('g'), st('k', '2'));
  delivery.push(records('h', 'i', 'm', 'n', 'o'), st('k', '3')); // more than maxBatch: one submit all the same
  await delivery.flush();
  assert.deepEqual(sink.submits, [
    'a,b,c |', // cut before d, e, f, which would not fit whole
    'd,e,f,g | j=x k=2', // k=1 overwritten by k=2 in the same commit
    'h,i,m,n,o | k=3',
  ]);
  assert.deepEqual(delivery.stats(), { accepted: 12, duplicates: 0, late: 0, refused: 0, dropped: 0, pending: 0 });
});

test('a failed submit is retried with the same records and the state that matches them; state pushed meanwhile joins the retry with its records', async () => {
  const sink = new SpySink();
  sink.failNext = 1;
  const { log } = captureLog();
  const errors: string[] = [];
  const delivery = new RecordDelivery(sink, { log, source: 'test', flushDelayMs: 1, onError: (e) => errors.push(e.message) });
  delivery.push(records('a', 'b'), st('k', '1'));
  await attempted(sink, 1); // the first attempt fails; the retry waits for its backoff
  assert.deepEqual(sink.attempts, ['a,b | k=1']);
  delivery.push(records('c'), st('k', '2'));
  delivery.push([], st('k', '3'));
  await delivery.flush();
  assert.deepEqual(sink.submits, ['a,b,c | k=3']);
  assert.deepEqual(errors, ['disk I/O error']);
});

test('state pushed while a submit is in flight is not folded into it: it goes with the next submit', async () => {
  const sink = new SpySink();
  let open!: () => void;
  sink.gate = new Promise((resolve) => (open = resolve));
  const { log } = captureLog();
  const delivery = new RecordDelivery(sink, { log, source: 'test', flushDelayMs: 1 });
  delivery.push(records('a'), st('k', '1'));
  await attempted(sink, 1);
  assert.deepEqual(sink.attempts, ['a | k=1'], 'in flight');
  delivery.push([], st('k', '2')); // no record since the in-flight mark: must not be folded into it
  sink.gate = null;
  open();
  await delivery.flush();
  assert.deepEqual(sink.submits, ['a | k=1', '| k=2']);
  delivery.push(records('b'), st('k', '3'));
  delivery.push([], st('k', '4'));
  await delivery.flush();
  assert.deepEqual(sink.submits, ['a | k=1', '| k=2', 'b | k=4']);
});

test('state alone is delivered, and an undelivered state at close is reported', async () => {
  const sink = new SpySink();
  const { log, messages } = captureLog();
  const delivery = new RecordDelivery(sink, { log, source: 'test', flushDelayMs: 1 });
  delivery.push([], st('k', 'alone'));
  await delivery.flush();
  assert.deepEqual(sink.submits, ['| k=alone']);
  sink.failNext = 100;
  delivery.push([], st('k', 'lost'));
  await delivery.flush(300);
  delivery.close();
  assert.ok(messages('warn').some((m) => /latest state was not stored at shutdown/.test(m)), messages().join('\n'));
});
