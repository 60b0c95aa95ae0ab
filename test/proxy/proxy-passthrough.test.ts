import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
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
