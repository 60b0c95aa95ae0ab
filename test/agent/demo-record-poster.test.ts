import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DemoRecordPoster, retryAfterSeconds } from '../../agent/demo-record-poster.js';
import { BackpressureError, type RequestSink } from '../../collectors/request-sink.js';
import type { RequestRecord } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import { request } from '../ledger/temp-ledger.js';
import { captureLog } from '../proxy/capture-log.js';
import { startIngestServer } from '../ingest/ingest-server.js';

const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

/** The agent's own ingest stack; `failFirst` submits fail with what it makes, the rest are stored. Submits are logged. */
async function agentIngest(opts: { bodyLimitBytes: number; failFirst?: number; failure?: () => Error }) {
  const submits: { atMs: number; records: number }[] = [];
  const server = await startIngestServer({
    bodyLimitBytes: opts.bodyLimitBytes,
    sink: (service): RequestSink => ({
      submit: (records, firstIndex, options) => {
        submits.push({ atMs: Date.now(), records: records.length });
        if (submits.length <= (opts.failFirst ?? 0)) return Promise.reject((opts.failure ?? (() => new Error('ledger down')))());
        return service.submit(records, firstIndex, options);
      },
    }),
  });
  const stored = (): string[] => server.ledger.readRequests(...ALL).map((r) => r.record.requestId).sort();
  return { server, submits, stored };
}

const ids = (records: readonly RequestRecord[]): string[] => records.map((r) => r.requestId).sort();

async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('a 429 holds the records until its Retry-After has passed; then every one is stored once', async (t) => {
  const { server, submits, stored } = await agentIngest({ bodyLimitBytes: 1 << 20, failFirst: 1, failure: () => new BackpressureError(1) });
  t.after(server.stop);
  const { log, messages } = captureLog();
  const poster = new DemoRecordPoster({ host: '127.0.0.1', port: server.port, bodyLimitBytes: 1 << 20, log, flushDelayMs: 10 });
  const records = Array.from({ length: 20 }, (_, i) => request(i));
  for (const r of records) poster.add(r);
  await until('all are stored', () => stored().length >= records.length);
  await poster.stop();
  assert.deepEqual(stored(), ids(records));
  assert.equal(submits.length, 2, 'one 429, then one post of the same records');
  assert.ok((submits[1]?.atMs ?? 0) - (submits[0]?.atMs ?? 0) >= 950, `re-sent ${(submits[1]?.atMs ?? 0) - (submits[0]?.atMs ?? 0)} ms after the 429 (Retry-After: 1)`);
  assert.deepEqual(messages('error'), []);
});

test('after an outage, the waiting records are posted in bodies within the agent\'s body limit; none is lost', async (t) => {
  const limit = 4096;
  const { server, submits, stored } = await agentIngest({ bodyLimitBytes: limit, failFirst: 1 }); // the first post gets 503
  t.after(server.stop);
  const { log, messages } = captureLog();
  const poster = new DemoRecordPoster({ host: '127.0.0.1', port: server.port, bodyLimitBytes: limit, log, flushDelayMs: 10 });
  poster.add(request(0));
  await until('the first post', () => submits.length > 0);
  // While the poster backs off, the node finishes many more: together far more than one body holds.
  const records = [request(0), ...Array.from({ length: 299 }, (_, i) => request(i + 1))];
  for (const r of records.slice(1)) poster.add(r);
  const bytes = records.reduce((sum, r) => sum + JSON.stringify(r).length, 0);
  assert.ok(bytes > 10 * limit, `${bytes} bytes of records`);
  await until('all are stored (the retry after the backoff)', () => stored().length >= records.length);
  await poster.stop();
  assert.deepEqual(stored(), ids(records));
  // Every post after the outage reached the sink: none was refused as too large.
  assert.equal(submits.slice(1).reduce((sum, s) => sum + s.records, 0), records.length);
  assert.ok(submits.length > 10, `${submits.length} posts`);
  assert.deepEqual(messages('warn'), []);
  assert.equal(messages('error').length, 1, messages('error').join('\n')); // the 503, logged once
});

test('told a larger body limit than the agent takes, the poster halves what gets 413; a record too large alone is refused and logged', async (t) => {
  const { server, stored } = await agentIngest({ bodyLimitBytes: 4096 });
  t.after(server.stop);
  const { log, messages } = captureLog();
  const poster = new DemoRecordPoster({ host: '127.0.0.1', port: server.port, bodyLimitBytes: 1 << 20, log, flushDelayMs: 10 });
  const labels = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`l${i}`, 'v'.repeat(250)]));
  const tooLarge = request(1000, { labels });
  const records = Array.from({ length: 200 }, (_, i) => request(i));
  for (const r of [...records.slice(0, 100), tooLarge, ...records.slice(100)]) poster.add(r);
  await poster.stop(10_000);
  assert.deepEqual(stored(), ids(records));
  assert.equal(messages('warn').length, 1, messages('warn').join('\n'));
  assert.match(messages('warn')[0] ?? '', /record req-1000 refused: \(record\): larger on its own than the agent's body limit/);
});

test('stop() posts what is waiting before it resolves', async (t) => {
  const { server, stored } = await agentIngest({ bodyLimitBytes: 1 << 20 });
  t.after(server.stop);
  const { log } = captureLog();
  const poster = new DemoRecordPoster({ host: '127.0.0.1', port: server.port, bodyLimitBytes: 1 << 20, log, flushDelayMs: 60_000 });
  const records = Array.from({ length: 50 }, (_, i) => request(i));
  for (const r of records) poster.add(r);
  await poster.stop();
  assert.deepEqual(stored(), ids(records));
});

test('Retry-After: delta-seconds or an HTTP date; 1 s when absent or unreadable', () => {
  const now = Date.UTC(2026, 10, 1, 10);
  assert.equal(retryAfterSeconds('120', now), 120);
  assert.equal(retryAfterSeconds(new Date(now + 30_000).toUTCString(), now), 30);
  assert.equal(retryAfterSeconds(new Date(now - 30_000).toUTCString(), now), 0);
  assert.equal(retryAfterSeconds(undefined, now), 1);
  assert.equal(retryAfterSeconds('soon', now), 1);
});
