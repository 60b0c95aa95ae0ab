/**
 * Upstreams that misbehave at the HTTP or TCP level, served byte by byte from a raw socket: status
 * lines node reads but will not write, a 101 nobody asked for, a reset in mid-stream, and pooled
 * keep-alive connections the upstream closes under a call.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { startProxyFor } from './proxy-harness.js';
import type { ProxyUnderTest } from './proxy-harness.js';
import { chunk, httpAnswer, startRawUpstream } from './raw-upstream.js';
import { tryRequest } from './raw-http.js';

const USAGE_BODY = '{"id":"c1","model":"m","choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}';
const CHAT = { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(40) }] };

const post = (p: ProxyUnderTest, taskId: string, body: object = CHAT, path = '/v1/chat/completions', timeoutMs = 3000) =>
  tryRequest(`${p.proxyUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-task-id': taskId }, body: JSON.stringify(body), timeoutMs });

test('a status line node reads but will not write (a control character in the reason phrase, a code below 100): relayed or a 502, never an agent crash', async () => {
  const upstream = await startRawUpstream(({ head }, socket) => {
    const statusLine = /x-odd: reason/i.test(head) ? 'HTTP/1.1 200 O\x01K' : 'HTTP/1.1 099 Weird';
    socket.write(httpAnswer(statusLine, { 'Content-Type': 'application/json' }, USAGE_BODY));
  });
  const p = await startProxyFor(upstream.url);
  try {
    const models = await tryRequest(`${p.proxyUrl}/v1/models`);
    assert.equal(models.status, 502);
    assert.match(models.body.toString(), /invalid status code \(99\)/);
    const modelsOdd = await tryRequest(`${p.proxyUrl}/v1/models`, { headers: { 'x-odd': 'reason' } });
    assert.equal(modelsOdd.status, 200, 'relayed, with the standard reason phrase instead of the bad one');
    assert.equal(modelsOdd.statusMessage, 'OK');
    assert.equal(modelsOdd.body.toString(), USAGE_BODY);

    const call = await post(p, 't-099');
    assert.equal(call.status, 502);
    assert.equal(call.statusMessage, 'Bad Gateway');
    const odd = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-task-id': 't-odd', 'x-odd': 'reason' },
      body: JSON.stringify(CHAT),
    });
    assert.equal(odd.status, 200);
    assert.equal((await p.sink.recordOfTask('t-099')).status, 'error');
    const r = await p.sink.recordOfTask('t-odd');
    assert.deepEqual([r.status, r.promptTokens, r.completionTokens], ['ok', 3, 2]);
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('an upstream 101 nobody asked for: a 502 at once (recorded call and pass-through) and an error record, not a client left hanging', async () => {
  const upstream = await startRawUpstream((_request, socket) => socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n'));
  const p = await startProxyFor(upstream.url); // default timeouts: minutes
  try {
    const started = Date.now();
    const call = await post(p, 't-101', CHAT, '/v1/chat/completions', 2000);
    assert.equal(call.status, 502);
    assert.match(call.body.toString(), /closed the connection without an answer/);
    const models = await tryRequest(`${p.proxyUrl}/v1/models`, { timeoutMs: 2000 });
    assert.equal(models.status, 502);
    assert.ok(Date.now() - started < 1000, 'answered at once');
    const r = await p.sink.recordOfTask('t-101');
    assert.equal(r.status, 'error');
    assert.equal(p.proxy.stats().inFlight, 0);
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('a connection reset (RST) in mid-stream keeps the estimates of what was generated; only a connection never made records zero tokens', async () => {
  let upstreamSocket: Socket | null = null;
  const event = 'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"w "}}]}\n\n';
  const upstream = await startRawUpstream((_request, socket) => {
    upstreamSocket = socket;
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write(chunk(event.repeat(3)));
  });
  const p = await startProxyFor(upstream.url);
  try {
    let seen = '';
    const res = await tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-task-id': 't-rst' },
      body: JSON.stringify({ ...CHAT, stream: true }),
      onData: (c) => {
        seen += c.toString();
        // the engine is killed once the client has its three tokens
        if (seen.split('"w "').length - 1 === 3) (upstreamSocket as Socket | null)?.resetAndDestroy();
      },
    });
    assert.equal(res.complete, false, 'the client sees a cut stream');
    const r = await p.sink.recordOfTask('t-rst');
    assert.equal(r.status, 'error');
    assert.equal(r.tokensEstimated, true);
    assert.equal(r.completionTokens, 3, 'one token per content event relayed');
    assert.equal(r.promptTokens, Math.ceil(40 / 4));
    assert.ok(p.log.messages('warn').some((m) => /failed in the middle of its answer/.test(m)));
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('a pooled connection the upstream closed under a call (no Keep-Alive hint): sent again once on a new connection if the proxy still holds the body', async () => {
  // Answers the first request of every connection; a second one on the same connection finds it
  // closed, as when the upstream's idle timeout strikes just as a call goes out on it.
  const upstream = await startRawUpstream(({ index, head }, socket) => {
    if (index > 0) socket.destroy();
    else socket.write(httpAnswer('HTTP/1.1 200 OK', { 'Content-Type': 'application/json' }, head.startsWith('GET') ? '{"data":[]}' : USAGE_BODY));
  });
  const p = await startProxyFor(upstream.url);
  try {
    assert.equal((await post(p, 't-1')).status, 200);
    const models = await tryRequest(`${p.proxyUrl}/v1/models`); // on the pooled connection
    assert.equal(models.status, 200, 'a request without a body is sent again');
    assert.equal(models.body.toString(), '{"data":[]}');
    assert.equal((await post(p, 't-2')).status, 200);
    const retried = await post(p, 't-3'); // on the pooled connection of t-2
    assert.equal(retried.status, 200, 'a recorded call is sent again: the proxy holds its body');
    assert.equal((await post(p, 't-4')).status, 200);
    const echo = await tryRequest(`${p.proxyUrl}/echo`, { method: 'POST', body: 'streamed body' });
    assert.equal(echo.status, 502, 'a passed-through body was streamed on, not kept: no retry');
    for (const task of ['t-1', 't-2', 't-3', 't-4']) {
      const r = await p.sink.recordOfTask(task);
      assert.deepEqual([r.status, r.promptTokens, r.completionTokens], ['ok', 3, 2], task);
    }
    assert.equal(upstream.connections, 5, 'three pooled connections (t-1, t-2, t-4) and a fresh one for each retry');
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('a pooled connection reset long after the call was written (an engine worker that died generating) is a 502 and an error record, never a silent second generation', async () => {
  let generations = 0;
  const upstream = await startRawUpstream(({ index }, socket) => {
    generations++;
    // The second call on the kept-alive connection "generates" for 600 ms, then the connection is reset.
    if (index === 1) setTimeout(() => socket.resetAndDestroy(), 600);
    else socket.write(httpAnswer('HTTP/1.1 200 OK', { 'Content-Type': 'application/json', Connection: 'keep-alive' }, USAGE_BODY));
  });
  const p = await startProxyFor(upstream.url);
  try {
    assert.equal((await post(p, 't-1')).status, 200);
    const lost = await post(p, 't-2');
    assert.equal(lost.status, 502, 'the client hears of it, and may send it again itself');
    assert.match(lost.body.toString(), /ECONNRESET|socket hang up/);
    assert.equal(generations, 2, 'not sent again behind the client\'s back');
    const r = await p.sink.recordOfTask('t-2');
    assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['error', Math.ceil(40 / 4), 0, true], 'the work lost is recorded, estimated');
    assert.equal(p.errors.length, 1, 'and counted as a capture error');
  } finally {
    await p.close();
    await upstream.close();
  }
});

test('an idle pooled connection is closed by the proxy after freeSocketTimeoutMs; a call in flight is not cut by it', async () => {
  const later = (ms: number, then: () => void) => setTimeout(then, ms);
  // Pauses longer than the free-socket timeout before the headers (prefill) and in the middle of the stream.
  const upstream = await startRawUpstream((_request, socket) =>
    later(250, () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
      socket.write(chunk('data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'));
      later(250, () => {
        socket.write(chunk('data: {"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n'));
        socket.write(chunk(''));
      });
    }),
  );
  const p = await startProxyFor(upstream.url, {}, { freeSocketTimeoutMs: 100 });
  try {
    const res = await post(p, 't-slow', { ...CHAT, stream: true });
    assert.equal(res.complete, true);
    assert.match(res.body.toString(), /data: \[DONE\]/);
    assert.equal((await p.sink.recordOfTask('t-slow')).status, 'ok');
    assert.equal(upstream.open, 1, 'kept for the next call');
    // Up to 5 s (50 tries of 20 ms, about 1 s, could run out on a slow machine).
    for (const deadline = Date.now() + 5000; upstream.open > 0 && Date.now() < deadline; ) await new Promise((res) => setTimeout(res, 20));
    assert.equal(upstream.open, 0, 'closed once idle for freeSocketTimeoutMs');
  } finally {
    await p.close();
    await upstream.close();
  }
});
