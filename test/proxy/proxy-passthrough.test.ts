import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { startProxyFor } from './proxy-harness.js';
import { rawRequest } from './raw-http.js';

let h: Harness;
before(async () => {
  h = await startHarness();
});
after(() => h.close());

test('GET /v1/models passes through byte for byte, headers included, and is not recorded', async () => {
  const direct = await rawRequest(`${h.upstream.url}/v1/models`);
  const proxied = await rawRequest(`${h.proxyUrl}/v1/models`);
  assert.equal(proxied.status, 200);
  assert.ok(proxied.body.equals(h.upstream.modelsBody));
  assert.ok(proxied.body.equals(direct.body));
  assert.equal(proxied.headers['x-fake-upstream'], 'yes');
  assert.equal(proxied.headers['content-length'], String(h.upstream.modelsBody.length));
  const models = await h.client.models.list();
  assert.equal(models.data[0]?.id, 'fake/llama-3.1-8b');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.sink.records.length, 0);
});

test('other paths and methods: binary bodies, query strings and status codes pass unchanged', async () => {
  const body = randomBytes(256 * 1024);
  const echoed = await rawRequest(`${h.proxyUrl}/echo?x=1&y=%20z`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
  assert.equal(echoed.status, 201);
  assert.ok(echoed.body.equals(body));
  assert.equal(echoed.headers['x-echo-method'], 'POST');
  const missing = await rawRequest(`${h.proxyUrl}/no/such/path`);
  assert.equal(missing.status, 400, "the upstream's own answer (it wanted JSON)");
  const getChat = await rawRequest(`${h.proxyUrl}/v1/chat/completions`);
  assert.equal(getChat.status, 400, 'GET on a recorded path is not a call: passed through');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.sink.records.length, 0);
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
