/**
 * How the upstream ended a generation decides the record's status: vLLM v1's finish_reason `abort`
 * (a request it aborted) is a cancelled call and `error` a failed one, streamed or not; the
 * Responses API's status `cancelled` is a cancelled call, `incomplete` (a token limit) is not.
 * Through the official openai client.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startProxyFor } from './proxy-harness.js';
import type { ProxyUnderTest } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';
import type { ScriptedUpstream } from './scripted-upstream.js';

const USAGE = { prompt_tokens: 40, completion_tokens: 3, total_tokens: 43 };
const PAD = 'x'.repeat(4096); // makes an answer larger than the capture limit below: read by the scan

let upstream: ScriptedUpstream;
let proxy: ProxyUnderTest;
let client: OpenAI;

before(async () => {
  // The model names the finish reasons: "abort", "stop+abort" (two choices), "big:abort" (a padded answer)...
  upstream = await startScriptedUpstream((_req, res, raw) => {
    const body = JSON.parse(raw.toString()) as { model: string; stream?: boolean; input?: unknown };
    const big = body.model.startsWith('big:');
    const reasons = body.model.replace('big:', '').split('+');
    if (body.input !== undefined) {
      const response = { id: 'resp-1', object: 'response', created_at: 1, model: 'm', status: reasons[0], output: [], usage: { input_tokens: 40, output_tokens: 3, total_tokens: 43 } };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(response));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const type = reasons[0] === 'incomplete' ? 'response.incomplete' : 'response.completed';
      res.end(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: 1, response })}\n\n`);
      return;
    }
    const chat = !('prompt' in body);
    if (!body.stream) {
      const choices = reasons.map((finish_reason, index) => (chat ? { index, message: { role: 'assistant', content: `par${big ? PAD : ''}` }, finish_reason } : { index, text: 'par', finish_reason }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'c-1', object: chat ? 'chat.completion' : 'text_completion', created: 1, model: 'm', choices, usage: USAGE }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const event = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const delta = (index: number, text: string, finish_reason: string | null) => (chat ? { index, delta: { content: text }, finish_reason } : { index, text, finish_reason });
    reasons.forEach((_, i) => event({ id: 'c-2', object, created: 1, model: 'm', choices: [delta(i, 'par', null)] }));
    reasons.forEach((reason, i) => event({ id: 'c-2', object, created: 1, model: 'm', choices: [delta(i, '', reason)] }));
    event({ id: 'c-2', object, created: 1, model: 'm', choices: [], usage: USAGE });
    res.end('data: [DONE]\n\n');
  });
  proxy = await startProxyFor(upstream.url, { maxResponseCaptureBytes: 1024 });
  client = new OpenAI({ baseURL: `${proxy.proxyUrl}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 10_000 });
});
after(async () => {
  await proxy.close();
  await upstream.close();
});

const statusOf = async (task: string) => (await proxy.sink.recordOfTask(task)).status;

test('chat completions: finish_reason abort is cancelled and error is error, streamed and not, with the usage the upstream reported', async () => {
  for (const [model, want] of [['abort', 'cancelled'], ['error', 'error'], ['stop', 'ok'], ['length', 'ok'], ['tool_calls', 'ok'], ['stop+abort', 'cancelled'], ['abort+error', 'error'], ['big:abort', 'cancelled']] as const) {
    const task = `chat-${model}`;
    const answer = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-task-id': task } });
    assert.equal(answer.choices.at(-1)?.finish_reason, model.split('+').at(-1)?.replace('big:', ''), 'the client gets the answer as it was');
    const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-task-id': `${task}-sse` } });
    for await (const chunk of stream) assert.ok(chunk.choices.length > 0, 'the usage chunk the client did not ask for is stripped');
    assert.equal(await statusOf(task), want, `${model}, not streamed`);
    assert.equal(await statusOf(`${task}-sse`), want, `${model}, streamed`);
    const record = await proxy.sink.recordOfTask(`${task}-sse`);
    assert.deepEqual([record.promptTokens, record.completionTokens, record.tokensEstimated], [40, 3, false]);
  }
});

test('completions: finish_reason abort is cancelled, streamed and not', async () => {
  await client.completions.create({ model: 'abort', prompt: 'hi' }, { headers: { 'x-task-id': 'completion-abort' } });
  const stream = await client.completions.create({ model: 'abort', prompt: 'hi', stream: true }, { headers: { 'x-task-id': 'completion-abort-sse' } });
  for await (const _ of stream);
  assert.equal(await statusOf('completion-abort'), 'cancelled');
  assert.equal(await statusOf('completion-abort-sse'), 'cancelled');
});

test('responses: status cancelled is cancelled, incomplete (a token limit) stays ok, streamed and not', async () => {
  for (const [status, want] of [['cancelled', 'cancelled'], ['incomplete', 'ok'], ['completed', 'ok']] as const) {
    await client.responses.create({ model: status, input: 'hi' }, { headers: { 'x-task-id': `resp-${status}` } });
    const stream = await client.responses.create({ model: status, input: 'hi', stream: true }, { headers: { 'x-task-id': `resp-${status}-sse` } });
    for await (const _ of stream);
    assert.equal(await statusOf(`resp-${status}`), want, `${status}, not streamed`);
    assert.equal(await statusOf(`resp-${status}-sse`), want, `${status}, streamed`);
  }
});

test('an upstream that refuses the stream_options the proxy adds (400 naming it): the client gets its 400, and the log says once how to turn the injection off', async (t) => {
  // A strict server (pydantic extra="forbid"), as vLLM answers an unknown field.
  const strict = await startScriptedUpstream((_req, res, raw) => {
    const body = JSON.parse(raw.toString()) as { stream_options?: unknown; model: string };
    if (body.stream_options !== undefined || body.model === 'bad') {
      const msg = body.model === 'bad' ? 'The model `bad` does not exist.' : "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs are not permitted'}]";
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: msg, type: 'BadRequestError', code: 400 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end('data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  });
  t.after(() => strict.close());
  const p = await startProxyFor(strict.url);
  t.after(() => p.close());
  const off = await startProxyFor(strict.url, { injectStreamUsage: false });
  t.after(() => off.close());
  const strictClient = new OpenAI({ baseURL: `${p.proxyUrl}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  const hint = () => p.log.messages('warn').filter((m) => /proxy\.injectStreamUsage: false/.test(m));
  await assert.rejects(strictClient.chat.completions.create({ model: 'bad', stream: true, messages: [{ role: 'user', content: 'hi' }] }), /does not exist/);
  assert.deepEqual(hint(), [], 'a 400 about something else is no reason to hint');
  for (let i = 0; i < 3; i++) {
    await assert.rejects(strictClient.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }), /Extra inputs are not permitted/);
  }
  assert.equal(hint().length, 1, 'said once, not per call');

  const offClient = new OpenAI({ baseURL: `${off.proxyUrl}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  const stream = await offClient.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-task-id': 'off' } });
  for await (const _ of stream);
  const r = await off.sink.recordOfTask('off');
  assert.deepEqual([r.status, r.tokensEstimated], ['ok', true], 'with the option off the call goes through, its tokens estimated');
});
