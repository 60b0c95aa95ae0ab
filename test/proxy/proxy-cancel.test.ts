import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream } from './fake-upstream.js';
import { startHarness, startProxyFor } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { tryRequest } from './raw-http.js';

let h: Harness;
before(async () => {
  h = await startHarness({}, { tokenDelayMs: 40 });
});
after(() => h.close());

async function drain(consume: () => Promise<void>): Promise<void> {
  try {
    await consume();
  } catch (err) {
    assert.match(String((err as Error).name), /Abort/);
  }
}

// Polls until the record is there (generous deadline: no cost when it comes).
const recordFor = (taskId: string) => h.sink.recordOfTask(taskId);

test('client aborts a chat stream: the upstream call is aborted, the record is cancelled with the tokens generated so far', async () => {
  const controller = new AbortController();
  const stream = await h.client.chat.completions.create(
    { model: 'llama-70b', messages: [{ role: 'user', content: 'write a long story please' }], max_tokens: 200, stream: true },
    { signal: controller.signal, headers: { 'x-task-id': 'cancel-chat', 'x-team': 'writers' } },
  );
  let received = 0;
  // The SDK ends the iteration quietly on abort (older versions threw); either way it stops here.
  await drain(async () => {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) received++;
      if (received === 5) controller.abort();
    }
  });
  assert.equal(received, 5);
  await h.upstream.waitForAborts(1);
  const upstreamCall = h.upstream.calls.find((c) => c.aborted);
  assert.ok(upstreamCall && upstreamCall.tokensSent < 200, 'generation stopped early upstream');
  const r = await recordFor('cancel-chat');
  assert.equal(r.status, 'cancelled');
  assert.equal(r.tokensEstimated, true);
  assert.ok(r.completionTokens >= received, `counted at least what the client saw (${r.completionTokens} >= ${received})`);
  assert.ok(r.completionTokens <= upstreamCall.tokensSent, 'and no more than the upstream sent');
  assert.equal(r.promptTokens, Math.ceil('write a long story please'.length / 4));
  assert.ok(r.firstTokenMs !== null && r.firstTokenMs <= r.endMs);
  assert.deepEqual(r.labels, { team: 'writers' });
  assert.equal(h.proxy.stats().inFlight, 0);
});

test('client aborts a Responses stream and a non-streamed call while waiting: both cancelled, upstream aborted', async () => {
  const controller = new AbortController();
  const stream = await h.client.responses.create(
    { model: 'llama-70b', input: 'go on', max_output_tokens: 100, stream: true },
    { signal: controller.signal, headers: { 'x-task-id': 'cancel-responses' } },
  );
  let deltas = 0;
  await drain(async () => {
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta' && ++deltas === 3) controller.abort();
    }
  });
  const r = await recordFor('cancel-responses');
  assert.equal(r.status, 'cancelled');
  assert.ok(r.completionTokens >= 3);

  const waiting = new AbortController();
  const pending = h.client.chat.completions.create(
    { model: 'llama-70b', messages: [{ role: 'user', content: 'x' }] },
    { signal: waiting.signal, headers: { 'x-task-id': 'cancel-waiting', 'x-fake': 'slow-headers', 'x-fake-delay': '3000' } },
  );
  setTimeout(() => waiting.abort(), 100);
  await assert.rejects(pending);
  const r2 = await recordFor('cancel-waiting');
  assert.equal(r2.status, 'cancelled');
  assert.equal(r2.completionTokens, 0);
  assert.equal(r2.firstTokenMs, null);
});

test('shutdown with calls in flight: once it resolves, each is recorded as cancelled with its tokens so far and delivered, none blamed on the upstream', async () => {
  const upstream = await startFakeUpstream();
  const p = await startProxyFor(upstream.url); // shutdownGraceMs 300
  try {
    const call = (task: string, fake: string, body: Record<string, unknown>, onData?: (chunk: Buffer) => void) =>
      tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-task-id': task, 'x-fake': fake, 'x-fake-delay': '5000' },
        body: JSON.stringify({ model: 'llama-8b', messages: [{ role: 'user', content: 'hi' }], ...body }),
        onData,
      });
    // A stream that sends 5 of its 10 tokens and then nothing, and a call still in prefill (no answer yet).
    let seen = '';
    let streamed!: () => void;
    const fiveTokens = new Promise<void>((resolve) => (streamed = resolve));
    const streaming = call('t-shutdown-stream', 'stall-mid-stream', { max_tokens: 10, stream: true }, (chunk) => {
      seen += chunk.toString();
      if (seen.includes('w4 ')) streamed();
    });
    const prefill = call('t-shutdown-prefill', 'slow-headers', { max_tokens: 10 });
    await fiveTokens;
    while (upstream.calls.length < 2) await new Promise((r) => setTimeout(r, 10));
    await p.close();
    // Nothing is waited for here: the records must be in the sink when shutdown resolves.
    const byTask = new Map(p.sink.records.map((r) => [r.taskId, r]));
    const s = byTask.get('t-shutdown-stream');
    const w = byTask.get('t-shutdown-prefill');
    assert.equal(p.sink.records.length, 2);
    assert.deepEqual([s?.status, s?.promptTokens, s?.completionTokens, s?.tokensEstimated], ['cancelled', 1, 5, true]);
    assert.ok(s?.firstTokenMs !== null, 'the stream had its first token');
    assert.deepEqual([w?.status, w?.promptTokens, w?.completionTokens, w?.tokensEstimated, w?.firstTokenMs], ['cancelled', 1, 0, true, null]);
    assert.deepEqual(p.proxy.stats().delivery, { accepted: 2, duplicates: 0, late: 0, refused: 0, dropped: 0, pending: 0 });
    const [a, b] = await Promise.all([streaming, prefill]);
    assert.deepEqual([a.status, a.complete, b.status, b.complete], [200, false, 0, false], 'the clients see their calls cut');
    await upstream.waitForAborts(2);
    // Nothing recorded late by the cut upstream side. The proxy is shut down, so no sentinel call can
    // pass; the barrier is the event loop, not a sleep: the proxy cut both connections before the
    // upstream could see it, so its side's 'close' events (which would finish a call again) run by the
    // close phase of the turn the upstream saw it in; a call finished there is built and queued (counted
    // pending at once) by the setImmediate of the next turn. A third setImmediate runs after that one.
    // (With no turn waited, a second finish of each call goes unseen; with one, it is seen here.)
    for (let turn = 0; turn < 3; turn++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(p.proxy.stats().delivery, { accepted: 2, duplicates: 0, late: 0, refused: 0, dropped: 0, pending: 0 }, 'no record built after shutdown');
    assert.equal(p.sink.records.length, 2);
    assert.deepEqual(p.errors, [], 'not counted as upstream failures');
    assert.deepEqual(p.log.messages('warn'), []);
  } finally {
    await upstream.close();
  }
});
