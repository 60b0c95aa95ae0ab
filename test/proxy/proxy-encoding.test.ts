/**
 * How the proxy reads answers it must understand (usage, stream events): it asks for identity,
 * reads media types as case-insensitive, takes a stream call's answer for a stream unless it says
 * JSON, and decodes an answer that came encoded all the same. Whatever the answer, a client that
 * did not ask for usage never gets the usage chunk the proxy asked for.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { startProxyFor } from './proxy-harness.js';
import type { ProxyUnderTest } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';
import type { ScriptedUpstream } from './scripted-upstream.js';
import { tryRequest } from './raw-http.js';

const EVENTS =
  'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n' +
  'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":" world"}}]}\n\n';
const USAGE_EVENT = 'data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2}}\n\n';
const DONE = 'data: [DONE]\n\n';
const JSON_ANSWER = '{"id":"c2","model":"m","choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":7,"completion_tokens":1}}';

/** How the upstream answers, chosen per call by the `x-answer` header. */
const ANSWERS: Record<string, { headers: Record<string, string>; body: (asked: boolean) => Buffer }> = {
  'gzip-sse': { headers: { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' }, body: (asked) => zlib.gzipSync(stream(asked)) },
  'br-json': { headers: { 'content-type': 'application/json', 'content-encoding': 'br' }, body: () => zlib.brotliCompressSync(JSON_ANSWER) },
  'mixed-case-type': { headers: { 'content-type': 'Text/Event-Stream; Charset=UTF-8' }, body: (asked) => Buffer.from(stream(asked)) },
  'no-type': { headers: {}, body: (asked) => Buffer.from(stream(asked)) },
  'plain-type': { headers: { 'content-type': 'text/plain' }, body: (asked) => Buffer.from(stream(asked)) },
  'json-mixed-case': { headers: { 'content-type': 'Application/JSON; Charset=UTF-8' }, body: () => Buffer.from(JSON_ANSWER) },
  'unknown-coding': { headers: { 'content-type': 'text/event-stream', 'content-encoding': 'zstd' }, body: (asked) => Buffer.from(stream(asked)) },
};
const stream = (asked: boolean): string => EVENTS + (asked ? USAGE_EVENT : '') + DONE;

let upstream: ScriptedUpstream;
let p: ProxyUnderTest;
before(async () => {
  upstream = await startScriptedUpstream((req, res, body) => {
    const answer = ANSWERS[String(req.headers['x-answer'])] as (typeof ANSWERS)[string];
    const asked = (JSON.parse(body.toString()) as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage === true;
    res.removeHeader('date');
    res.writeHead(200, answer.headers);
    res.end(answer.body(asked)); // an upstream that ignores Accept-Encoding
  });
  p = await startProxyFor(upstream.url);
});
after(async () => {
  await p.close();
  await upstream.close();
});

const call = (answer: string, stream = true) =>
  tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip, br', 'x-answer': answer, 'x-task-id': answer },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream }),
  });

test('recorded calls ask the upstream for identity, whatever the client accepts', async () => {
  await call('mixed-case-type');
  const seen = upstream.calls.find((c) => c.headers['x-answer'] === 'mixed-case-type');
  assert.equal(seen?.headers['accept-encoding'], 'identity');
});

test('an SSE answer gzipped all the same is decoded for the client: no usage chunk it did not ask for, exact usage recorded', async () => {
  const res = await call('gzip-sse');
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-encoding'], undefined, 'relayed decoded');
  assert.equal(res.body.toString(), EVENTS + DONE);
  const r = await p.sink.recordOfTask('gzip-sse');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 10, 2, false]);
  assert.ok(r.firstTokenMs !== null);
  assert.ok(p.log.messages('warn').some((m) => /content-encoding gzip although asked for identity/.test(m)));
});

test('a JSON answer in brotli is decoded: the client gets plain JSON, the record its usage', async () => {
  const res = await call('br-json', false);
  assert.equal(res.headers['content-encoding'], undefined);
  assert.equal(res.headers['content-length'], undefined, 'the encoded length no longer applies');
  assert.equal(res.body.toString(), JSON_ANSWER);
  const r = await p.sink.recordOfTask('br-json');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens], ['ok', 7, 1]);
});

test('a stream under a mixed-case media type, no content type or another text type is read as the stream it is', async () => {
  for (const answer of ['mixed-case-type', 'no-type', 'plain-type']) {
    const res = await call(answer);
    assert.equal(res.body.toString(), EVENTS + DONE, `${answer}: the usage chunk was taken out`);
    const r = await p.sink.recordOfTask(answer);
    assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 10, 2, false], answer);
  }
});

test('a stream call answered with JSON under a mixed-case media type (an upstream that does not stream) is read as JSON', async () => {
  const res = await call('json-mixed-case');
  assert.equal(res.body.toString(), JSON_ANSWER);
  const r = await p.sink.recordOfTask('json-mixed-case');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 7, 1, false]);
});

test('an encoding the proxy cannot read on a stream it asked usage for: a 502, since the usage could not be taken out', async () => {
  const res = await call('unknown-coding');
  assert.equal(res.status, 502);
  assert.doesNotMatch(res.body.toString(), /"usage"/);
  assert.match(res.body.toString(), /content-encoding zstd/);
  const r = await p.sink.recordOfTask('unknown-coding');
  assert.equal(r.status, 'error');
});
