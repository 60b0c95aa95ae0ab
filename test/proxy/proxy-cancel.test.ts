import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';

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

async function recordFor(taskId: string) {
  await h.sink.waitFor(1);
  for (let i = 0; i < 150; i++) {
    const r = h.sink.records.find((x) => x.taskId === taskId);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`no record for ${taskId}`);
}

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
