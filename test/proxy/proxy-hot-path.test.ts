/**
 * Behaviour that the proxy's lean hot path must keep: the stream opens for the client before the
 * first token, timeouts without per-request timers, the client's body forwarded byte for byte,
 * and records built after the response (in batches) yet never lost, shutdown included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { rawRequest } from './raw-http.js';

let h: Harness;
before(async () => {
  h = await startHarness({ idleTimeoutMs: 1000 });
});
after(() => h.close());

const recordsOf = (taskId: string, n = 1) => h.sink.recordsWhere((r) => r.taskId === taskId, n);

test('a stream opens for the client as soon as the upstream opens it, not with the first token', async () => {
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 3 });
  const started = Date.now();
  const { headersAt, text } = await new Promise<{ headersAt: number; text: string }>((resolve, reject) => {
    const req = request(
      `${h.proxyUrl}/v1/chat/completions`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'x-fake': 'slow-first-token', 'x-fake-delay': '600', 'x-task-id': 't-first-token' } },
      (res) => {
        const headersAt = Date.now() - started;
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ headersAt, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  assert.ok(headersAt < 400, `headers after ${headersAt} ms: they must not wait for the first token (600 ms)`);
  assert.match(text, /data: \[DONE\]/);
  assert.doesNotMatch(text, /"usage"/, 'the injected usage was stripped');
  const [r] = await recordsOf('t-first-token');
  assert.equal(r?.status, 'ok');
  assert.ok(r?.firstTokenMs !== null && r.firstTokenMs - r.startMs >= 550, 'the first token is when it came, not when the stream opened');
});

test('a stream that goes silent is cut after idleTimeoutMs: the client sees a broken stream, the upstream call is aborted, the record is an error', async () => {
  const started = Date.now();
  const aborted = h.upstream.calls.filter((c) => c.aborted).length;
  const res = await new Promise<{ complete: boolean; text: string }>((resolve) => {
    const req = request(
      `${h.proxyUrl}/v1/chat/completions`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'x-fake': 'stall-mid-stream', 'x-task-id': 't-stall' } },
      (response) => {
        let text = '';
        response.on('data', (c: Buffer) => (text += c.toString()));
        response.on('end', () => resolve({ complete: true, text }));
        response.on('error', () => resolve({ complete: false, text }));
        response.on('aborted', () => resolve({ complete: false, text }));
      },
    );
    req.on('error', () => resolve({ complete: false, text: '' }));
    req.end(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 8 }));
  });
  const took = Date.now() - started;
  assert.equal(res.complete, false, 'a cut stream, not a clean end');
  assert.match(res.text, /w0 /, 'the tokens before the silence were relayed');
  assert.ok(took >= 1000 && took < 3000, `cut after ${took} ms (idleTimeoutMs 1000, swept every 100 ms)`);
  await h.upstream.waitForAborts(aborted + 1);
  const [r] = await recordsOf('t-stall');
  assert.equal(r?.status, 'error');
  assert.equal(r?.tokensEstimated, true);
  assert.ok((r?.completionTokens ?? 0) > 0);
});

test("the upstream gets the client's own bytes, with only stream_options spliced in (no re-serialization)", async () => {
  const text = '{"model":"m","seed":12345678901234567890,"messages":[{"role":"user","content":"caf\\u00e9"}],"stream":true,"max_tokens":2}';
  const res = await rawRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': 't-bytes' }, body: text });
  assert.equal(res.status, 200);
  const call = h.upstream.calls.find((c) => c.headers['x-task-id'] === 't-bytes');
  assert.equal(call?.raw, `{"stream_options":{"include_usage":true},${text.slice(1)}`);
  assert.equal(call?.headers['content-length'], String(Buffer.byteLength(call?.raw ?? '')));
});

test('records are built after the responses, in batches, and none is lost: shutdown delivers calls that had just finished', async () => {
  const other = await startHarness();
  const calls = Array.from({ length: 24 }, (_, i) =>
    i % 2 === 0
      ? other.client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 })
      : other.client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, stream: true }).then(async (s) => {
          for await (const _chunk of s);
        }),
  );
  await Promise.all(calls);
  assert.equal(other.proxy.stats().inFlight, 0);
  await other.close(); // at once: the records of these calls may not even be built yet
  assert.equal(other.sink.records.length, 24);
  assert.ok(other.sink.submissions.length < 24, `batched: ${other.sink.submissions.length} submits`);
  assert.ok(other.sink.records.every((r) => r.status === 'ok' && !r.tokensEstimated));
});

test('calls refused by the proxy itself (400, 413) leave nothing in flight', async () => {
  const small = await startHarness({ maxRequestBodyBytes: 1024 });
  try {
    const bad = await rawRequest(`${small.proxyUrl}/v1/chat/completions`, { method: 'POST', body: '{nope' });
    assert.equal(bad.status, 400);
    const big = await rawRequest(`${small.proxyUrl}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x'.repeat(4096) }) });
    assert.equal(big.status, 413);
    // Waited for, up to 5 s: a fixed 50 ms could end before a slow machine had the proxy finish with them.
    for (const deadline = Date.now() + 5000; small.proxy.stats().inFlight > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    assert.equal(small.proxy.stats().inFlight, 0);
  } finally {
    await small.close();
  }
});
