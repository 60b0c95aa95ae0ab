import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request as httpRequest, Agent } from 'node:http';
import { HttpServer, sendJson } from '../../agent/http-server.js';
import type { Log } from '../../agent/http-server.js';
import { send } from './http-client.js';

function recordingLog(): Log & { errors: unknown[][] } {
  const errors: unknown[][] = [];
  const noop = (): void => {};
  return { errors, info: noop, warn: noop, debug: noop, error: ((...args: unknown[]) => { errors.push(args); }) as Log['error'] };
}

async function started(log: Log = recordingLog(), extra: { closeGraceMs?: number } = {}): Promise<{ server: HttpServer; port: number }> {
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log, ...extra });
  server.route('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  server.route('POST', '/boom', () => { throw new Error('sync failure'); });
  server.route('POST', '/later', async () => { await new Promise((r) => setTimeout(r, 1)); throw new Error('async failure'); });
  const { port } = await server.listen();
  return { server, port };
}

test('routes by exact path (query ignored); unknown path 404 and wrong method 405 with Allow, as JSON', async (t) => {
  const { server, port } = await started();
  t.after(() => server.close());
  const ok = await send(port, { method: 'GET', path: '/healthz?verbose=1' });
  assert.deepEqual([ok.status, ok.json], [200, { status: 'ok' }]);
  assert.match(String(ok.headers['content-type']), /application\/json/);
  const missing = await send(port, { method: 'GET', path: '/nope' });
  assert.deepEqual([missing.status, missing.json?.error], [404, 'not found']);
  const wrong = await send(port, { method: 'DELETE', path: '/healthz' });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.allow, 'GET, HEAD');
  assert.match(String(wrong.json?.error), /DELETE not allowed/);
  const head = await send(port, { method: 'HEAD', path: '/healthz' });
  assert.deepEqual([head.status, head.text], [200, ''], 'HEAD is answered as GET, without the body');
  const options = await send(port, { method: 'OPTIONS', path: '/healthz' });
  assert.deepEqual([options.status, options.headers.allow], [204, 'GET, HEAD']);
  assert.equal((await send(port, { method: 'HEAD', path: '/boom' })).status, 405, 'no GET route, no HEAD');
});

test('a handler that throws (sync or async) gets a 500 JSON and a log line; the server keeps serving', async (t) => {
  const log = recordingLog();
  const { server, port } = await started(log);
  t.after(() => server.close());
  const sync = await send(port, { path: '/boom', body: '{}' });
  const late = await send(port, { path: '/later', body: '{}' });
  assert.deepEqual([sync.status, sync.json], [500, { error: 'internal error' }]);
  assert.equal(late.status, 500);
  assert.equal(log.errors.length, 2);
  assert.match(String((log.errors[0]?.[0] as { err: Error }).err.message), /sync failure/);
  assert.equal((await send(port, { method: 'GET', path: '/healthz' })).status, 200);
});

test('huge headers get 431 and a malformed request 400, without harming the server', async (t) => {
  const { server, port } = await started();
  t.after(() => server.close());
  const huge = await send(port, { method: 'GET', path: '/healthz', headers: { 'x-filler': 'a'.repeat(64 * 1024) } }).catch((e: Error) => e);
  // Node may reset the connection while the client is still writing; either way nothing is served.
  if (!(huge instanceof Error)) assert.equal(huge.status, 431);
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('THIS IS NOT HTTP\r\n\r\n'));
    let text = '';
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 Bad Request/);
  assert.equal((await send(port, { method: 'GET', path: '/healthz' })).status, 200);
});

test('a 431 is returned when headers are just over the limit', async (t) => {
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: recordingLog(), maxHeaderBytes: 1024 });
  server.route('GET', '/x', (_req, res) => sendJson(res, 200, {}));
  const { port } = await server.listen();
  t.after(() => server.close());
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET /x HTTP/1.1\r\nhost: a\r\nx-filler: ${'b'.repeat(2000)}\r\n\r\n`));
    let text = '';
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 431 /);
});

test('keep-alive connections are reused, and close() does not wait for idle ones', async (t) => {
  const { server, port } = await started(recordingLog(), { closeGraceMs: 30_000 });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const sockets = new Set<unknown>();
  for (let i = 0; i < 3; i += 1) {
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
        sockets.add(res.socket);
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
  }
  assert.equal(sockets.size, 1, 'one connection for three requests');
  const began = Date.now();
  await server.close();
  assert.ok(Date.now() - began < 2000, `close took ${Date.now() - began} ms with an idle keep-alive socket`);
});

test('a client that dribbles its headers is cut off at headersTimeout, not at node\'s 30 s check interval', async (t) => {
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: recordingLog(), headersTimeoutMs: 1_000 });
  server.route('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  const { port } = await server.listen();
  t.after(() => server.close());
  const started = Date.now();
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
    const dribble = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 300);
    let text = '';
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('close', () => { clearInterval(dribble); resolve(text); });
    socket.on('error', (e) => { clearInterval(dribble); reject(e); });
  });
  const took = Date.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408/);
  assert.ok(took < 4_000, `closed after ${took} ms`);
});
