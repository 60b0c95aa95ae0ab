/**
 * Clients as they are: proxy-style request URLs, `stream` written as the upstream still reads it,
 * headers sent twice or in UTF-8, model names longer than the ledger takes, oversized bodies on
 * keep-alive connections, and readers slower than the upstream.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { CACHED_TOKENS, PROMPT_TOKENS } from './fake-upstream.js';
import { startHarness, startProxyFor } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';
import { tryRequest } from './raw-http.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

const chatBody = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'llama-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ...extra });

test('a request in absolute form (the proxy set as HTTP_PROXY) is forwarded by its path and recorded', async () => {
  const res = await tryRequest(h.proxyUrl, {
    method: 'POST',
    path: 'http://vllm.internal:8000/v1/chat/completions',
    headers: { 'content-type': 'application/json', 'x-task-id': 't-absolute' },
    body: chatBody(),
  });
  assert.equal(res.status, 200);
  assert.equal(h.upstream.calls.find((c) => c.headers['x-task-id'] === 't-absolute')?.path, '/v1/chat/completions');
  const r = await h.sink.recordOfTask('t-absolute');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', PROMPT_TOKENS, 3, false]);
  assert.ok(h.log.messages('warn').some((m) => /clients send full URLs \(http:\/\/vllm\.internal:8000\)/.test(m)));
});

test('"stream": "true" or 1, which vLLM reads as true: usage is asked for and stripped, the record is exact with its first token', async () => {
  for (const [task, stream] of [
    ['t-stream-string', 'true'],
    ['t-stream-one', 1],
  ] as const) {
    const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': task }, body: chatBody({ stream }) });
    assert.match(res.body.toString(), /data: \[DONE\]/, 'the upstream streamed');
    assert.doesNotMatch(res.body.toString(), /"usage"/);
    const r = await h.sink.recordOfTask(task);
    assert.deepEqual([r.status, r.promptTokens, r.cachedTokens, r.completionTokens, r.tokensEstimated], ['ok', PROMPT_TOKENS, CACHED_TOKENS, 3, false], task);
    assert.ok(r.firstTokenMs !== null, `${task}: a streamed answer has its first token`);
  }
});

test('stream_options.include_usage "true" or 1, which vLLM reads as true: the client asked, so it gets the usage chunk; the record is exact', async () => {
  for (const [task, includeUsage] of [
    ['t-usage-string', 'true'],
    ['t-usage-one', 1],
  ] as const) {
    const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-task-id': task },
      body: chatBody({ stream: true, stream_options: { include_usage: includeUsage } }),
    });
    const upstreamCall = h.upstream.calls.find((c) => c.headers['x-task-id'] === task);
    assert.deepEqual(upstreamCall?.body.stream_options, { include_usage: includeUsage }, `${task}: forwarded as sent, nothing injected`);
    const usage = res.body
      .toString()
      .split('\n\n')
      .filter((e) => e.includes('"usage"'))
      .map((e) => (JSON.parse(e.slice('data: '.length)) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage);
    assert.deepEqual(usage.map((u) => [u.prompt_tokens, u.completion_tokens]), [[PROMPT_TOKENS, 3]], `${task}: one usage chunk reached the client`);
    const r = await h.sink.recordOfTask(task);
    assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', PROMPT_TOKENS, 3, false], task);
  }
});

test('a JSON body after a UTF-8 byte-order mark (.NET, PowerShell) is read as vLLM reads it; the upstream gets the bytes as sent', async () => {
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const plain = Buffer.concat([bom, Buffer.from(chatBody())]);
  const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': 't-bom' }, body: plain });
  assert.equal(res.status, 200);
  assert.equal(h.upstream.calls.find((c) => c.headers['x-task-id'] === 't-bom')?.raw, plain.toString('utf8'));
  const r = await h.sink.recordOfTask('t-bom');
  assert.deepEqual([r.status, r.model, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', 'llama-8b', PROMPT_TOKENS, 3, false]);
  // A stream: stream_options goes in after the brace, the mark stays in front of it.
  const streamed = Buffer.concat([bom, Buffer.from(' ' + chatBody({ stream: true }))]);
  const s = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': 't-bom-stream' }, body: streamed });
  assert.equal(s.status, 200);
  assert.doesNotMatch(s.body.toString(), /"usage"/);
  const raw = h.upstream.calls.find((c) => c.headers['x-task-id'] === 't-bom-stream')?.raw;
  assert.equal(raw, `\ufeff {"stream_options":{"include_usage":true},${chatBody({ stream: true }).slice(1)}`);
  const rs = await h.sink.recordOfTask('t-bom-stream');
  assert.deepEqual([rs.status, rs.promptTokens, rs.completionTokens, rs.tokensEstimated], ['ok', PROMPT_TOKENS, 3, false]);
});

test('label headers sent twice count with their first value; UTF-8 values are recorded as UTF-8', async () => {
  const utf8 = (text: string) => Buffer.from(text, 'utf8').toString('latin1'); // node sends each char as one byte
  await tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: ['Host', 'proxy', 'Content-Type', 'application/json', 'X-Task-Id', 'task-A', 'X-Task-Id', 'task-B', 'X-Team', utf8('équipe-日本'), 'X-Team', 'blue'],
    body: chatBody(),
  });
  const r = await h.sink.recordOfTask('task-A');
  assert.deepEqual(r.labels, { team: 'équipe-日本' });
});

test('a model name longer than the ledger takes is cut, with a warning: the call keeps its record', async () => {
  const model = `org/${'m'.repeat(300)}`;
  const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': 't-long-model' }, body: chatBody({ model }) });
  assert.equal(res.status, 200);
  const r = await h.sink.recordOfTask('t-long-model');
  assert.equal(r.model, model.slice(0, 256));
  assert.equal(r.status, 'ok');
  assert.ok(h.log.messages('warn').some((m) => /a model name of 304 characters was cut to 256/.test(m)));
});

test('a record that cannot be built is counted as dropped in the delivery stats, not only logged', async () => {
  const p = await startProxyFor(h.upstream.url, {}, { now: () => 1000 }); // a clock the ledger refuses (1970)
  try {
    const res = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody() });
    assert.equal(res.status, 200);
    // Up to 10 s (100 tries of 10 ms, about 1 s, could run out on a slow machine).
    for (const deadline = Date.now() + 10_000; p.proxy.stats().delivery?.dropped === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    assert.equal(p.proxy.stats().delivery?.dropped, 1);
    assert.ok(p.errors.some((e) => /could not build the record/.test(e)));
  } finally {
    await p.close();
  }
});

test('an oversized body on a keep-alive connection gets its 413 with Connection: close (its unread rest ends the connection)', async () => {
  const p = await startProxyFor(h.upstream.url, { maxRequestBodyBytes: 1024 });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const big = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody({ pad: 'x'.repeat(4096) }), agent });
    assert.equal(big.status, 413);
    assert.equal(big.headers.connection, 'close');
    const next = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(), agent });
    assert.equal(next.status, 200, 'the next call goes on a new connection');
  } finally {
    agent.destroy();
    await p.close();
  }
});

/** Reads the answer only after `pauseMs`; resolves with the bytes read and whether the answer ended cleanly. */
function slowRead(url: string, method: string, pauseMs: number): Promise<{ bytes: number; complete: boolean }> {
  return new Promise((resolve) => {
    const req = request(url, { method, headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let bytes = 0;
      res.pause();
      setTimeout(() => {
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.resume();
      }, pauseMs);
      res.on('end', () => resolve({ bytes, complete: true }));
      res.on('close', () => resolve({ bytes, complete: res.complete }));
    });
    req.on('error', () => resolve({ bytes: 0, complete: false }));
    req.end(method === 'POST' ? chatBody() : undefined);
  });
}

test('a client slower than the upstream (back-pressure) is not taken for a silent upstream: recorded and passed-through answers complete', async () => {
  // Larger than what the sockets between proxy and client buffer, so the proxy has to wait for the client.
  const answer = JSON.stringify({ id: 'c', model: 'm', choices: [{ message: { content: 'x'.repeat(12 * 1024 * 1024) } }], usage: { prompt_tokens: 5, completion_tokens: 7 } });
  const upstream = await startScriptedUpstream((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
  const p = await startProxyFor(upstream.url, { idleTimeoutMs: 100 });
  try {
    const recorded = await slowRead(`${p.proxyUrl}/v1/chat/completions`, 'POST', 300);
    assert.deepEqual(recorded, { bytes: answer.length, complete: true });
    const passed = await slowRead(`${p.proxyUrl}/big`, 'GET', 300);
    assert.deepEqual(passed, { bytes: answer.length, complete: true });
    await p.sink.waitFor(1);
    assert.deepEqual([p.sink.records[0]?.status, p.sink.records[0]?.completionTokens], ['ok', 7]);
    assert.ok(!p.log.messages('warn').some((m) => /went silent/.test(m)));
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('Expect: 100-continue is answered by the proxy and not passed on, on recorded and passed-through calls', async () => {
  const send = (path: string, task: string, body: string): Promise<{ status: number; sawContinue: boolean }> =>
    new Promise((resolve, reject) => {
      const url = new URL(path, h.proxyUrl);
      const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), expect: '100-continue', 'x-task-id': task } });
      let sawContinue = false;
      req.on('continue', () => {
        sawContinue = true;
        req.end(body); // as curl does: the body only after the 100
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, sawContinue }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
  const recorded = await send('/v1/chat/completions', 't-expect', chatBody());
  assert.deepEqual(recorded, { status: 200, sawContinue: true });
  const passed = await send('/v1/embeddings', 't-expect-pass', JSON.stringify({ model: 'e5', input: 'hi' }));
  assert.equal(passed.sawContinue, true);
  for (const task of ['t-expect', 't-expect-pass']) {
    const call = h.upstream.calls.find((c) => c.headers['x-task-id'] === task);
    assert.ok(call, `the upstream got the ${task} call`);
    assert.equal(call.headers.expect, undefined, 'the upstream never sees the expectation the proxy already met');
  }
  const r = await h.sink.recordOfTask('t-expect');
  assert.deepEqual([r.status, r.promptTokens], ['ok', PROMPT_TOKENS]);
});

test('a compressed request body (gzip, deflate, br) is decoded, read and sent on as identity; another coding gets 415, a bomb 413', async () => {
  const { gzipSync, deflateSync, brotliCompressSync } = await import('node:zlib');
  for (const [coding, encode] of [
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ] as const) {
    const task = `t-body-${coding}`;
    const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': coding, 'x-task-id': task },
      body: encode(Buffer.from(chatBody({ stream: true }))),
    });
    assert.equal(res.status, 200, `${coding}: ${res.body.toString().slice(0, 200)}`);
    const seen = h.upstream.calls.find((c) => c.headers['x-task-id'] === task);
    assert.equal(seen?.headers['content-encoding'], undefined, `${coding}: sent on decoded`);
    assert.deepEqual(JSON.parse(seen?.raw ?? '{}').stream_options, { include_usage: true }, `${coding}: read, usage asked for`);
    const r = await h.sink.recordOfTask(task);
    assert.deepEqual([r.status, r.promptTokens, r.tokensEstimated], ['ok', PROMPT_TOKENS, false], coding);
  }
  const zstd = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'zstd' },
    body: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
  });
  assert.equal(zstd.status, 415);
  const message = (reply: { body: Buffer }): string => (JSON.parse(reply.body.toString()) as { error: { message: string } }).error.message;
  assert.match(message(zstd), /Content-Encoding "zstd" is not supported on recorded calls/);
  const broken = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: Buffer.from('not gzip') });
  assert.equal(broken.status, 400);
  assert.match(message(broken), /request body is not valid gzip/);
  const small = await startProxyFor(h.upstream.url, { maxRequestBodyBytes: 4096 });
  try {
    const bomb = await tryRequest(`${small.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(Buffer.from(chatBody({ padding: ' '.repeat(1_000_000) }))),
    });
    assert.equal(bomb.status, 413);
    assert.match(message(bomb), /exceeds maxRequestBodyBytes \(4096 bytes\) once decoded/);
  } finally {
    await small.close();
  }
});
