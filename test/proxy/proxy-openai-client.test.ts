import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CACHED_TOKENS, PROMPT_TOKENS, REASONING_TOKENS } from './fake-upstream.js';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

/** The record of the call whose upstream response id is `id`. */
async function recordOf(id: string) {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    const r = h.sink.records.find((x) => x.requestId.startsWith(`${id}/`));
    if (r) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`no record ${id} in 30 s; have ${h.sink.records.map((r) => r.requestId).join(', ')}`);
}

test('chat completion (not streamed): the record has exactly the usage the client saw, labels from headers', async () => {
  const before = Date.now();
  const completion = await h.client.chat.completions.create(
    { model: 'llama-8b', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 6 },
    { headers: { 'x-task-id': 'task-42', 'x-attempt': '2', 'x-team': 'search', 'x-feature': 'autocomplete' } },
  );
  const r = await recordOf(completion.id);
  assert.equal(r.promptTokens, completion.usage?.prompt_tokens);
  assert.equal(r.completionTokens, completion.usage?.completion_tokens);
  assert.equal(r.cachedTokens, completion.usage?.prompt_tokens_details?.cached_tokens);
  assert.equal(r.reasoningTokens, completion.usage?.completion_tokens_details?.reasoning_tokens);
  assert.deepEqual([r.promptTokens, r.completionTokens, r.cachedTokens, r.reasoningTokens], [PROMPT_TOKENS, 6, CACHED_TOKENS, REASONING_TOKENS]);
  assert.equal(r.status, 'ok');
  assert.equal(r.model, 'llama-8b');
  assert.equal(r.taskId, 'task-42');
  assert.equal(r.attempt, 2);
  assert.deepEqual(r.labels, { team: 'search', feature: 'autocomplete' });
  assert.equal(r.tier, 'small');
  assert.deepEqual(r.gpus, ['0']);
  assert.equal(r.source, 'proxy');
  assert.equal(r.granularity, 'request');
  assert.equal(r.tokensEstimated, false);
  assert.equal(r.firstTokenMs, null, 'a non-streamed answer says nothing about the end of prefill');
  assert.ok(r.startMs >= before && r.endMs >= r.startMs && r.endMs <= Date.now());
  assert.equal(completion.choices[0]?.message.content, 'w0 w1 w2 w3 w4 w5 ');
});

test('chat stream without include_usage: the client never sees a usage chunk, the record still has exact usage', async () => {
  const stream = await h.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'count' }], max_tokens: 4, stream: true });
  let text = '';
  let id = '';
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    id = chunk.id;
    assert.equal(chunk.usage ?? undefined, undefined, 'no usage on any chunk');
    assert.ok(chunk.choices.length > 0, 'no choices-less (usage-only) chunk');
    text += chunk.choices[0]?.delta.content ?? '';
  }
  assert.equal(text, 'w0 w1 w2 w3 ');
  assert.equal(chunks, 5, 'role chunk + 4 content chunks');
  const upstreamCall = h.upstream.calls.find((c) => c.body.stream === true && c.body.max_tokens === 4 && c.path === '/v1/chat/completions');
  assert.deepEqual(upstreamCall?.body.stream_options, { include_usage: true }, 'the proxy asked the upstream for usage');
  const r = await recordOf(id);
  assert.deepEqual([r.promptTokens, r.completionTokens, r.cachedTokens, r.reasoningTokens], [PROMPT_TOKENS, 4, CACHED_TOKENS, REASONING_TOKENS]);
  assert.equal(r.tokensEstimated, false);
  assert.equal(r.status, 'ok');
  assert.ok(r.firstTokenMs !== null && r.firstTokenMs >= r.startMs && r.firstTokenMs <= r.endMs, 'first token inside the call');
});

test('chat stream with include_usage: the client gets the usage chunk, and it equals the record', async () => {
  const stream = await h.client.chat.completions.create({
    model: 'llama-8b',
    messages: [{ role: 'user', content: 'count' }],
    max_tokens: 3,
    stream: true,
    stream_options: { include_usage: true },
  });
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  let id = '';
  for await (const chunk of stream) {
    id = chunk.id;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(usage, 'the usage chunk reached the client that asked for it');
  const r = await recordOf(id);
  assert.equal(r.promptTokens, usage.prompt_tokens);
  assert.equal(r.completionTokens, usage.completion_tokens);
});

test('completions, streamed and not: usage equals the record', async () => {
  const plain = await h.client.completions.create({ model: 'llama-8b', prompt: 'Once upon', max_tokens: 7 });
  const r1 = await recordOf(plain.id);
  assert.equal(r1.promptTokens, plain.usage?.prompt_tokens);
  assert.equal(r1.completionTokens, plain.usage?.completion_tokens);
  assert.equal(r1.completionTokens, 7);

  const stream = await h.client.completions.create({ model: 'llama-8b', prompt: 'Once upon', max_tokens: 5, stream: true });
  let id = '';
  let text = '';
  for await (const chunk of stream) {
    id = chunk.id;
    assert.equal(chunk.usage ?? undefined, undefined);
    text += chunk.choices[0]?.text ?? '';
  }
  assert.equal(text, 'w0 w1 w2 w3 w4 ');
  const r2 = await recordOf(id);
  assert.equal(r2.completionTokens, 5);
  assert.equal(r2.tokensEstimated, false);
});

test('responses API, streamed and not: input/output usage with cached and reasoning details equals the record', async () => {
  const response = await h.client.responses.create({ model: 'llama-8b', input: 'hello there', max_output_tokens: 8 });
  const r1 = await recordOf(response.id);
  assert.equal(r1.promptTokens, response.usage?.input_tokens);
  assert.equal(r1.completionTokens, response.usage?.output_tokens);
  assert.equal(r1.cachedTokens, response.usage?.input_tokens_details.cached_tokens);
  assert.equal(r1.reasoningTokens, response.usage?.output_tokens_details.reasoning_tokens);
  assert.equal(response.output_text, 'w0 w1 w2 w3 w4 w5 w6 w7 ');

  const stream = await h.client.responses.create({ model: 'llama-8b', input: 'hello there', max_output_tokens: 3, stream: true });
  let completed: { id: string; usage?: { input_tokens: number; output_tokens: number } | null } | undefined;
  let deltas = '';
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') deltas += event.delta;
    if (event.type === 'response.completed') completed = event.response;
  }
  assert.equal(deltas, 'w0 w1 w2 ');
  assert.ok(completed?.usage);
  const r2 = await recordOf(completed.id);
  assert.equal(r2.promptTokens, completed.usage.input_tokens);
  assert.equal(r2.completionTokens, completed.usage.output_tokens);
  assert.ok(r2.firstTokenMs !== null);
  const upstreamCall = h.upstream.calls.find((c) => c.path === '/v1/responses' && c.body.stream === true);
  assert.equal(upstreamCall?.body.stream_options, undefined, 'nothing injected into Responses API calls');
});
