import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { Harness } from './proxy-harness.js';
import { rawRequest, tryRequest } from './raw-http.js';
import { OpenAiProxy } from '../../collectors/proxy/openai-proxy.js';
import { proxyConfigSchema } from '../../collectors/proxy/proxy-config.js';
import { RecordingSink } from './recording-sink.js';
import { captureLog } from './capture-log.js';
import { startHarness, startProxyFor } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';

let h: Harness;
before(async () => {
  h = await startHarness({ requestTimeoutMs: 300 });
});
after(() => h.close());

const PROMPT = 'hi there, how are you?';
const callHeaders = (mode: string) => ({ headers: { 'x-fake': mode, 'x-task-id': `t-${mode}` } });
const chat = (mode: string, maxTokens = 6) =>
  h.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: PROMPT }], max_tokens: maxTokens }, callHeaders(mode));
const chatStream = (mode: string, maxTokens: number) =>
  h.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: PROMPT }], max_tokens: maxTokens, stream: true }, callHeaders(mode));

/** Records for the task id the helper above sets, once `n` of them have arrived. */
const recordsOf = (mode: string, n = 1) => h.sink.recordsWhere((r) => r.taskId === `t-${mode}`, n);

test('upstream down: the client gets a clean 502 naming the upstream, the call is recorded as error', async () => {
  const log = captureLog();
  const errors: string[] = [];
  const config = proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream: 'http://127.0.0.1:9', replica: { gpus: [0] } });
  const proxy = new OpenAiProxy({ config, log: log.log, onError: (e) => errors.push(e.message) });
  const sink = new RecordingSink();
  await proxy.start(sink);
  try {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${proxy.port}/v1`, apiKey: 'x', maxRetries: 0 });
    await assert.rejects(
      client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
      (err: InstanceType<typeof OpenAI.APIError>) => err.status === 502 && /unreachable/.test(err.message) && /127\.0\.0\.1:9/.test(err.message),
    );
    await sink.waitFor(1);
    assert.equal(sink.records[0]?.status, 'error');
    assert.equal(sink.records[0]?.model, 'm');
    assert.equal(sink.records[0]?.completionTokens, 0);
    assert.equal(sink.records[0]?.promptTokens, 0, 'the connection was never made: nothing reached the upstream');
    assert.equal(sink.records[0]?.tokensEstimated, false);
    await assert.rejects(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }));
    assert.equal(errors.filter((e) => /unreachable/.test(e)).length, 2, 'each failed call counts in the health metrics (the log says it once)');
    assert.equal(log.messages('warn').filter((m) => /unreachable/.test(m)).length, 1);
  } finally {
    await proxy.shutdown();
  }
});

test('slow upstream: 504 after requestTimeoutMs, the upstream call is aborted, recorded as error', async () => {
  const started = Date.now();
  await assert.rejects(chat('slow-headers'), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 504 && /no response within 300 ms/.test(err.message));
  assert.ok(Date.now() - started < 1900, 'answered at the timeout, not when the upstream woke up');
  const [r] = await recordsOf('slow-headers');
  assert.equal(r?.status, 'error');
});

test("the upstream's own error reaches the client unchanged; the call is an error that keeps its prompt estimate (the engine may have prefilled)", async () => {
  await assert.rejects(chat('fail-500'), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 500 && /CUDA out of memory/.test(err.message));
  const [r] = await recordsOf('fail-500');
  assert.equal(r?.status, 'error');
  assert.equal(r?.promptTokens, Math.ceil(PROMPT.length / 4));
  assert.equal(r?.completionTokens, 0);
  assert.equal(r?.tokensEstimated, true);
});

test('a gateway 5xx after the upstream had the call (nginx 504 after its read timeout) keeps the prompt estimate, flagged; a 4xx refused the call: zero tokens, not estimated', async () => {
  const upstream = await startScriptedUpstream((req, res) => {
    const status = Number(req.headers['x-status']);
    setTimeout(() => res.writeHead(status, { 'content-type': 'text/html' }).end(`<html><body><h1>${status}</h1></body></html>`), status >= 500 ? 300 : 0);
  });
  const p = await startProxyFor(upstream.url);
  try {
    const body = JSON.stringify({ model: 'm', max_tokens: 4000, messages: [{ role: 'user', content: 'x'.repeat(4000) }] });
    const got: Record<number, [string, number, number, boolean]> = {};
    for (const status of [504, 502, 503, 500, 400, 404, 429]) {
      const res = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-status': String(status), 'x-task-id': `gw-${status}` }, body });
      assert.equal(res.status, status, 'relayed as it came');
      const r = await p.sink.recordOfTask(`gw-${status}`);
      got[status] = [r.status, r.promptTokens, r.completionTokens, r.tokensEstimated];
    }
    const estimate = Math.ceil(4000 / 4);
    assert.deepEqual(got, {
      504: ['error', estimate, 0, true],
      502: ['error', estimate, 0, true],
      503: ['error', estimate, 0, true],
      500: ['error', estimate, 0, true],
      400: ['error', 0, 0, false],
      404: ['error', 0, 0, false],
      429: ['error', 0, 0, false],
    });
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('connection dropped mid-stream: the client sees a broken stream, the record is an error with the tokens it got', async () => {
  const stream = await chatStream('drop-mid-stream', 10);
  let seen = 0;
  await assert.rejects(async () => {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) seen++;
    }
  });
  const [r] = await recordsOf('drop-mid-stream');
  assert.equal(r?.status, 'error');
  assert.equal(r?.tokensEstimated, true);
  assert.equal(r?.completionTokens, seen, 'one token per content event the client received');
  assert.ok(seen > 0 && seen < 10);
});

test('no usage from the upstream: token counts are estimated (chars/4, events) and marked so', async () => {
  const stream = await chatStream('no-usage', 9);
  let events = 0;
  for await (const chunk of stream) if (chunk.choices[0]?.delta.content) events++;
  const plain = await chat('no-usage', 40);
  assert.equal(plain.usage, undefined);
  const records = await recordsOf('no-usage', 2);
  const streamed = records.find((r) => r.firstTokenMs !== null);
  const unstreamed = records.find((r) => r.firstTokenMs === null);
  assert.equal(streamed?.status, 'ok');
  assert.equal(streamed?.tokensEstimated, true);
  assert.equal(streamed?.completionTokens, events, '"wN " is 3 chars: the event count is the larger estimate');
  assert.equal(streamed?.promptTokens, Math.ceil(PROMPT.length / 4));
  assert.equal(unstreamed?.tokensEstimated, true);
  assert.equal(unstreamed?.completionTokens, Math.ceil((plain.choices[0]?.message.content ?? '').length / 4));
});

test('absurd usage numbers are refused with a clear reason: nothing recorded as ok', async () => {
  const out = await chat('absurd-usage');
  assert.equal(out.usage?.prompt_tokens, 1e12, 'the client still gets what the upstream sent');
  const [r] = await recordsOf('absurd-usage');
  assert.equal(r?.status, 'error');
  assert.equal(r?.tokensEstimated, true);
  assert.ok(h.log.messages('warn').some((m) => /usage\.prompt_tokens must be an integer 0\.\.100000000 \(got 1000000000000\)/.test(m)));

  const resp = await h.client.responses.create({ model: 'llama-8b', input: 'x' }, { headers: { 'x-fake': 'absurd-usage', 'x-task-id': 't-absurd-responses' } });
  assert.equal(resp.usage?.input_tokens, -5);
  const [r2] = await recordsOf('absurd-responses');
  assert.equal(r2?.status, 'error');
  assert.ok(h.log.messages('warn').some((m) => /usage\.input_tokens must be an integer/.test(m)));
});

test('broken SSE from the upstream: passed on as sent, recorded as error, the proxy keeps serving', async () => {
  const res = await rawRequest(`${h.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-fake': 'broken-sse', 'x-task-id': 't-broken-sse' },
    body: JSON.stringify({ model: 'llama-8b', messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 4 }),
  });
  assert.equal(res.status, 200);
  assert.match(res.body.toString(), /data: \{"id": "oops", "choices": \[\n\n/);
  const [r] = await recordsOf('broken-sse');
  assert.equal(r?.status, 'error');
  assert.ok(h.log.messages('warn').some((m) => /malformed event\(s\) in the stream; first: data is not JSON/.test(m)));
  const next = await h.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'x' }] });
  assert.ok(next.id);
});

test('a stream that ends without [DONE] or usage, and a 200 whose body is not JSON, are errors', async () => {
  const res = await rawRequest(`${h.proxyUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-fake': 'no-done', 'x-task-id': 't-no-done' },
    body: JSON.stringify({ model: 'llama-8b', prompt: 'x', stream: true, stream_options: { include_usage: false }, max_tokens: 2 }),
  });
  assert.equal(res.status, 200);
  assert.doesNotMatch(res.body.toString(), /"usage"/, 'include_usage:false was honoured: the proxy injected usage and stripped it');
  const [r] = await recordsOf('no-done');
  assert.equal(r?.status, 'ok', 'usage arrived (the proxy asked for it), so the stream is accounted for');

  await assert.rejects(chat('non-json-200'));
  const [r2] = await recordsOf('non-json-200');
  assert.equal(r2?.status, 'error');
});

test('an answer the proxy could not get or read whole counts as a capture error, once; an error the upstream answered in good form does not', async () => {
  const counted: Record<string, number> = {};
  for (const [mode, stream, path] of [
    ['drop-mid-stream', true, '/v1/chat/completions'],
    ['broken-sse', true, '/v1/chat/completions'],
    ['non-json-200', false, '/v1/chat/completions'],
    ['absurd-usage', false, '/v1/chat/completions'],
    ['fail-500', false, '/v1/chat/completions'],
    ['fail-500', true, '/v1/completions'],
    ['no-usage', true, '/v1/chat/completions'],
  ] as const) {
    const task = `t7-${mode}-${stream}`;
    const before = h.errors.length;
    const body = path === '/v1/completions' ? { model: 'llama-8b', prompt: 'x', stream, max_tokens: 8 } : { model: 'llama-8b', messages: [{ role: 'user', content: 'x' }], stream, max_tokens: 8 };
    await tryRequest(`${h.proxyUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-fake': mode, 'x-task-id': task }, body: JSON.stringify(body) });
    await h.sink.recordOfTask(task);
    counted[`${mode}${stream ? ' (stream)' : ''}`] = h.errors.length - before;
  }
  assert.deepEqual(counted, {
    'drop-mid-stream (stream)': 1,
    'broken-sse (stream)': 1,
    'non-json-200': 1,
    'absurd-usage': 1,
    'fail-500': 0, // relayed as the upstream sent it and recorded as error: its failure, not capture's
    'fail-500 (stream)': 0,
    'no-usage (stream)': 0,
  });
});

test('bad requests get a clear 4xx from the proxy and never reach the upstream', async () => {
  const callsBefore = h.upstream.calls.length;
  const notJson = await rawRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "x", messages: ' });
  assert.equal(notJson.status, 400);
  assert.match(JSON.parse(notJson.body.toString()).error.message, /request body is not valid JSON/);
  const array = await rawRequest(`${h.proxyUrl}/v1/completions`, { method: 'POST', body: '[1,2]' });
  assert.equal(array.status, 400);
  assert.match(array.body.toString(), /must be a JSON object/);
  assert.equal(h.upstream.calls.length, callsBefore);
});

test('huge headers get 431 with a reason, an oversized body 413; the proxy survives both', async () => {
  const huge = await rawRequest(`${h.proxyUrl}/v1/models`, { headers: { 'x-padding': 'a'.repeat(64 * 1024) } });
  assert.equal(huge.status, 431);
  assert.match(huge.body.toString(), /request headers exceed 16384 bytes/);

  const small = await startHarness({ maxRequestBodyBytes: 2048 });
  try {
    const big = await rawRequest(`${small.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(10_000) }] }),
    });
    assert.equal(big.status, 413);
    assert.match(big.body.toString(), /maxRequestBodyBytes \(2048 bytes\)/);
  } finally {
    await small.close();
  }
  const models = await h.client.models.list();
  assert.equal(models.data[0]?.id, 'fake/llama-3.1-8b');
});

test('a bad x-attempt header is left out with a warning; the call is still recorded', async () => {
  await h.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-attempt': 'third', 'x-task-id': 't-attempt' } });
  const [r] = await recordsOf('attempt');
  assert.equal(r?.attempt, null);
  assert.equal(r?.status, 'ok');
  assert.ok(h.log.messages('warn').some((m) => /header x-attempt ignored: must be an integer 1\.\.10000 \(got "third"\)/.test(m)));
});
