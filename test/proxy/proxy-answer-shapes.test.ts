/**
 * Answers whose shape decides what is recorded: usage without the counts a record needs, a stream
 * with a byte order mark, usage riding on a content event with `id:` lines and CRLF, tool calls
 * without usage, and a client that leaves after the usage chunk but before [DONE].
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startProxyFor } from './proxy-harness.js';
import type { ProxyUnderTest } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';
import type { ScriptedUpstream } from './scripted-upstream.js';
import { tryRequest } from './raw-http.js';

const content = (text: string) => `data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":${JSON.stringify(text)}}}]}\n\n`;
const usage = (fields: string) => `data: {"id":"c1","model":"m","choices":[],"usage":${fields}}\n\n`;
const DONE = 'data: [DONE]\n\n';
const TOOL_ARGUMENTS = JSON.stringify({ city: 'Paris', days: 5, details: 'x'.repeat(200) });

/** Each answer: its content type and body (streams are written at once, but for the one that stalls). */
const ANSWERS: Record<string, { sse: boolean; body: string; stall?: boolean }> = {
  'total-only-stream': { sse: true, body: content('Hi') + usage('{"total_tokens":10}') + DONE },
  'total-only-json': { sse: false, body: '{"id":"c2","model":"m","choices":[{"index":0,"message":{"content":"Hello there"}}],"usage":{"total_tokens":10}}' },
  bom: { sse: true, body: `\ufeff${content('Hi')}${usage('{"prompt_tokens":9,"completion_tokens":1}')}${DONE}` },
  'crlf-riding':
    {
      sse: true,
      body:
        'id: 1\r\ndata: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\r\n\r\n' +
        'id: 2\r\nevent: message\r\ndata: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2}}\r\n\r\n' +
        'data: [DONE]\r\n\r\n',
    },
  'tools-json': {
    sse: false,
    body: JSON.stringify({ id: 'c3', model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 't', type: 'function', function: { name: 'weather', arguments: TOOL_ARGUMENTS } }] }, finish_reason: 'tool_calls' }] }),
  },
  'usage-then-stall': { sse: true, body: content('a') + content('b') + usage('{"prompt_tokens":30,"completion_tokens":5}'), stall: true },
  // OpenAI's stream, once include_usage is set: "usage": null on every chunk before the last.
  'usage-null': {
    sse: true,
    body:
      'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"H\\u00e9"}}],"usage":null}\n\n' +
      'data: {"id":"c1","model":"m","usage": null, "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
      usage('{"prompt_tokens":9,"completion_tokens":2}') + DONE,
  },
  // vLLM's continuous_usage_stats: usage on every chunk. Cut after two, with no finish_reason and no [DONE].
  'continuous-usage-cut': {
    sse: true,
    body:
      'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}\n\n' +
      'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"b"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n',
  },
  // A server that sends no [DONE]: the finish_reason says the generation ended.
  'finish-no-done': { sse: true, body: content('Hi') + 'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' },
  // text-generation-inference's error shape: a string, with error_type.
  'string-error-stream': { sse: true, body: content('a') + 'data: {"error":"Request failed during generation: CUDA out of memory","error_type":"generation"}\n\n' + DONE },
  'string-error-json': { sse: false, body: '{"error":"Input validation error: inputs too long","error_type":"validation"}' },
};

let upstream: ScriptedUpstream;
let p: ProxyUnderTest;
before(async () => {
  upstream = await startScriptedUpstream((req, res) => {
    const answer = ANSWERS[String(req.headers['x-task-id'])] as (typeof ANSWERS)[string];
    res.writeHead(200, { 'content-type': answer.sse ? 'text/event-stream' : 'application/json' });
    if (answer.stall) res.write(answer.body);
    else res.end(answer.body);
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
    headers: { 'content-type': 'application/json', 'x-task-id': answer },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello world' }], stream }),
  });

test('usage without prompt and completion counts (total only) is treated as absent: ok, tokens estimated, a warning', async () => {
  const streamed = await call('total-only-stream');
  assert.equal(streamed.body.toString(), content('Hi') + DONE, 'the usage chunk is still the proxy\'s to drop');
  const r1 = await p.sink.recordOfTask('total-only-stream');
  assert.deepEqual([r1.status, r1.tokensEstimated, r1.completionTokens], ['ok', true, 1]);
  await call('total-only-json', false);
  const r2 = await p.sink.recordOfTask('total-only-json');
  assert.deepEqual([r2.status, r2.tokensEstimated, r2.completionTokens], ['ok', true, Math.ceil('Hello there'.length / 4)]);
  assert.ok(p.log.messages('warn').some((m) => /usage without the counts a record needs \(usage\.prompt_tokens is missing\)/.test(m)));
});

test('a stream that starts with a byte order mark: its first event is read (first token, content), and relayed as sent', async () => {
  const res = await call('bom');
  assert.equal(res.body.toString(), `\ufeff${content('Hi')}${DONE}`);
  const r = await p.sink.recordOfTask('bom');
  assert.ok(r.firstTokenMs !== null, 'the first event carried the first token');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens], ['ok', 9, 1]);
});

test('usage riding on a content event is taken out of it, the rest of the event as sent: id: and event: lines, CRLF line ends', async () => {
  const res = await call('crlf-riding');
  assert.equal(
    res.body.toString(),
    'id: 1\r\ndata: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\r\n\r\n' +
      'id: 2\r\nevent: message\r\ndata: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}\r\n\r\n' +
      'data: [DONE]\r\n\r\n',
  );
  const r = await p.sink.recordOfTask('crlf-riding');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 9, 2, false]);
});

test('a non-streamed tool call without usage: its arguments are counted in the estimate', async () => {
  await call('tools-json', false);
  const r = await p.sink.recordOfTask('tools-json');
  assert.deepEqual([r.status, r.tokensEstimated, r.completionTokens], ['ok', true, Math.ceil(TOOL_ARGUMENTS.length / 4)]);
});

test('a client that leaves after the usage chunk, before [DONE]: cancelled, with the exact usage it had', async () => {
  await new Promise<void>((resolve) => {
    const req = request(
      `${p.proxyUrl}/v1/chat/completions`,
      { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': 'usage-then-stall' }, agent: false },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('"usage"')) req.destroy();
        });
        res.on('close', () => resolve());
      },
    );
    req.on('error', () => resolve());
    req.end(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } }));
  });
  const r = await p.sink.recordOfTask('usage-then-stall');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['cancelled', 30, 5, false]);
});

test('"usage": null on the chunks of a client that did not ask for usage is taken out, the rest of each chunk byte for byte', async () => {
  const res = await call('usage-null');
  assert.equal(
    res.body.toString(),
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"H\\u00e9"}}]}\n\n' +
      'data: {"id":"c1","model":"m", "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
      DONE,
  );
  const r = await p.sink.recordOfTask('usage-null');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 9, 2, false]);
});

test('an error given as a string ({"error": "...", "error_type"}), in a stream or a 2xx JSON body, is recorded as an error', async () => {
  const streamed = await call('string-error-stream');
  assert.match(streamed.body.toString(), /CUDA out of memory/, 'relayed as sent');
  const r1 = await p.sink.recordOfTask('string-error-stream');
  assert.equal(r1.status, 'error');
  await call('string-error-json', false);
  const r2 = await p.sink.recordOfTask('string-error-json');
  assert.equal(r2.status, 'error');
});

test('a stream cut after usage rode on its content chunks is not ok: only [DONE], a finish_reason or the closing usage chunk end a generation', async () => {
  await call('continuous-usage-cut');
  const cut = await p.sink.recordOfTask('continuous-usage-cut');
  assert.deepEqual([cut.status, cut.promptTokens, cut.completionTokens, cut.tokensEstimated], ['error', 9, 2, false], 'the tokens so far are exact');
  await call('finish-no-done');
  const finished = await p.sink.recordOfTask('finish-no-done');
  assert.equal(finished.status, 'ok');
});
