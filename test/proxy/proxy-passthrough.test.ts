import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { recordsBeforeSentinel, startProxyFor } from './proxy-harness.js';
import { rawRequest, tryRequest } from './raw-http.js';
import { PROMPT_TOKENS } from './fake-upstream.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

test('GET /v1/models passes through byte for byte, headers included, and is not recorded', async () => {
  const from = h.sink.records.length;
  const direct = await rawRequest(`${h.upstream.url}/v1/models`);
  const proxied = await rawRequest(`${h.proxyUrl}/v1/models`);
  assert.equal(proxied.status, 200);
  assert.ok(proxied.body.equals(h.upstream.modelsBody));
  assert.ok(proxied.body.equals(direct.body));
  assert.equal(proxied.headers['x-fake-upstream'], 'yes');
  assert.equal(proxied.headers['content-length'], String(h.upstream.modelsBody.length));
  const models = await h.client.models.list();
  assert.equal(models.data[0]?.id, 'fake/llama-3.1-8b');
  assert.deepEqual(await recordsBeforeSentinel(h, from), []);
});

test('other paths and methods: binary bodies, query strings and status codes pass unchanged', async () => {
  const from = h.sink.records.length;
  const body = randomBytes(256 * 1024);
  const echoed = await rawRequest(`${h.proxyUrl}/echo?x=1&y=%20z`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
  assert.equal(echoed.status, 201);
  assert.ok(echoed.body.equals(body));
  assert.equal(echoed.headers['x-echo-method'], 'POST');
  const missing = await rawRequest(`${h.proxyUrl}/no/such/path`);
  assert.equal(missing.status, 400, "the upstream's own answer (it wanted JSON)");
  const getChat = await rawRequest(`${h.proxyUrl}/v1/chat/completions`);
  assert.equal(getChat.status, 400, 'GET on a recorded path is not a call: passed through');
  assert.deepEqual(await recordsBeforeSentinel(h, from), []);
});

test('an upstream base URL ending in /v1 is understood: calls are not sent to /v1/v1', async () => {
  const other = await startHarness({ upstream: `${h.upstream.url}/v1/` });
  try {
    const out = await other.client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    assert.ok(out.id.startsWith('chatcmpl-'));
  } finally {
    await other.close();
  }
});

/**
 * On one raw keep-alive connection: a 200 kB upload of which only the first 1000 bytes are sent
 * until an answer comes (at most 1 s), then the rest and a GET on the same connection.
 */
async function uploadThenReuse(proxyPort: number): Promise<{ text: string; closedByProxy: boolean }> {
  const socket = net.connect(proxyPort, '127.0.0.1');
  let text = '';
  let closedByProxy = false;
  let answered!: () => void;
  const firstAnswer = new Promise<void>((resolve) => (answered = resolve));
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    if (text.includes('\r\n\r\n')) answered();
  });
  // 'close', not 'end': a close with the upload's rest unread may come as a reset
  const closed = new Promise<void>((resolve) => socket.on('close', () => ((closedByProxy = true), resolve())));
  socket.on('error', () => {});
  const body = 'x'.repeat(200_000);
  socket.write(`POST /v1/files HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 1000)}`);
  await Promise.race([firstAnswer, new Promise((r) => setTimeout(r, 1000))]);
  socket.write(body.slice(1000));
  socket.write('GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n');
  await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]); // node's keep-alive timeout is 5 s
  const result = { text, closedByProxy };
  socket.destroy();
  return result;
}

test('a pass-through upload the upstream stops reading (down, or an early answer): the answer says Connection: close and the connection ends, nothing hangs', async () => {
  const down = await startProxyFor('http://127.0.0.1:1');
  try {
    const { text, closedByProxy } = await uploadThenReuse(down.proxy.port);
    assert.equal(text.match(/^HTTP\/1\.1 \d+ .*$/gm)?.join('|'), 'HTTP/1.1 502 Bad Gateway');
    assert.match(text, /\r\nConnection: close\r\n/);
    assert.ok(closedByProxy, 'the proxy closed the connection');
  } finally {
    await down.close();
  }
  // An upstream that refuses before reading the body (an auth check).
  const early = createServer((_req, res) => {
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"bad key"}}');
  });
  await new Promise<void>((resolve) => early.listen(0, '127.0.0.1', resolve));
  const p = await startProxyFor(`http://127.0.0.1:${(early.address() as AddressInfo).port}`);
  try {
    const { text, closedByProxy } = await uploadThenReuse(p.proxy.port);
    assert.equal(text.match(/^HTTP\/1\.1 \d+ .*$/gm)?.join('|'), 'HTTP/1.1 401 Unauthorized');
    assert.match(text, /\r\nConnection: close\r\n/);
    assert.match(text, /\{"error":\{"message":"bad key"\}\}/, "the upstream's answer, whole");
    assert.ok(closedByProxy, 'the proxy closed the connection');
  } finally {
    await p.close();
    early.closeAllConnections();
    await new Promise((resolve) => early.close(resolve));
  }
});

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B65';
const wsAccept = (key: string) => createHash('sha1').update(key + WS_GUID).digest('base64');
/** A client text frame (RFC 6455: FIN, opcode 1, masked, payload under 126 bytes). */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ (mask[i % 4] as number))]);
}
/** A server text frame (unmasked). */
const textFrame = (text: string) => Buffer.concat([Buffer.from([0x81, Buffer.byteLength(text)]), Buffer.from(text)]);

/** Sends a WebSocket upgrade through `url`; resolves with the 101 (and its socket) or the answer given instead. */
function upgradeRequest(url: string, key: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer; socket: import('node:net').Socket | null }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'realtime' }, agent: false });
    req.on('upgrade', (res, socket) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.alloc(0), socket }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), socket: null }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a WebSocket upgrade (vLLM /v1/realtime) is passed through: the handshake and frames go both ways untouched; refusals and a down upstream are answered; nothing is recorded', async () => {
  const seen: string[] = [];
  const upstream = createServer((req, res) => res.writeHead(404).end());
  upstream.on('upgrade', (req: IncomingMessage, socket: import('node:net').Socket) => {
    seen.push(`${req.url} ${req.headers.upgrade} ${req.headers.connection} ${req.headers['sec-websocket-protocol']} host=${req.headers.host}`);
    if (req.url === '/v1/realtime/refused') {
      const body = '{"error":"no realtime model"}';
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      return;
    }
    socket.on('error', () => {});
    socket.on('end', () => socket.end()); // the client's close (the proxy passes the half-close on)
    const key = req.headers['sec-websocket-key'] as string;
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\nSec-WebSocket-Protocol: realtime\r\n\r\n`);
    socket.on('data', (frame: Buffer) => {
      // one small masked text frame in: unmask it and echo it back
      const mask = frame.subarray(2, 6);
      const text = Buffer.from(frame.subarray(6, 6 + ((frame[1] as number) & 0x7f)).map((b, i) => b ^ (mask[i % 4] as number))).toString();
      socket.write(textFrame(`echo: ${text}`));
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamHost = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const p = await startProxyFor(`http://${upstreamHost}`);
  try {
    const key = randomBytes(16).toString('base64');
    const ws = await upgradeRequest(`${p.proxyUrl}/v1/realtime?model=m`, key);
    assert.equal(ws.status, 101);
    assert.equal(ws.headers['sec-websocket-accept'], wsAccept(key));
    assert.equal(ws.headers['sec-websocket-protocol'], 'realtime');
    assert.deepEqual(seen, [`/v1/realtime?model=m websocket Upgrade realtime host=${upstreamHost}`]);
    const socket = ws.socket as import('node:net').Socket;
    const echoed = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(maskedTextFrame('hello'));
    assert.ok((await echoed).equals(textFrame('echo: hello')));
    socket.destroy();

    const refused = await upgradeRequest(`${p.proxyUrl}/v1/realtime/refused`, key);
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.connection, 'close');
    assert.equal(refused.body.toString(), '{"error":"no realtime model"}');
    assert.deepEqual(await recordsBeforeSentinel(p), [], 'the sentinel (answered 404 here) is the only record');
    assert.deepEqual(p.errors, []);
  } finally {
    await p.close();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  }
  const down = await startProxyFor('http://127.0.0.1:1');
  try {
    const failed = await upgradeRequest(`${down.proxyUrl}/v1/realtime`, 'a2V5a2V5a2V5a2V5a2V5aw==');
    assert.equal(failed.status, 502);
    assert.equal((JSON.parse(failed.body.toString()) as { error: { code: string } }).error.code, 'upstream_unavailable');
    assert.equal(down.errors.length, 1);
  } finally {
    await down.close();
  }
});

test('a call that also asks for Upgrade: h2c (curl --http2 on http://) is read as the HTTP/1.1 call it is, and recorded', async () => {
  const res = await tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA', 'x-task-id': 't-h2c' },
    body: JSON.stringify({ model: 'llama-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
  });
  assert.equal(res.status, 200);
  const call = h.upstream.calls.find((c) => c.headers['x-task-id'] === 't-h2c');
  assert.deepEqual([call?.headers.upgrade, call?.headers['http2-settings']], [undefined, undefined]);
  const r = await h.sink.recordOfTask('t-h2c');
  assert.deepEqual([r.status, r.promptTokens, r.completionTokens, r.tokensEstimated], ['ok', PROMPT_TOKENS, 3, false]);
});
