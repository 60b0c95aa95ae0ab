import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rawRequest } from '../proxy/raw-http.js';
import { protoFields, startOtlpServer } from './otlp-server.js';

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../fixtures/otlp/${name}`, import.meta.url)));
/** The OpenTelemetry JS SDK's exports (JSON and protobuf), each holding one GenAI chat span. */
const SDK_JSON = fixture('sdk-json-exporter-genai.json');
const SDK_PROTO = fixture('sdk-proto-exporter-genai.binpb');
const JSON_TYPE = { 'content-type': 'application/json' };
const PROTO_TYPE = { 'content-type': 'application/x-protobuf' };
const TOKEN = 's3cret-long-token-123';
/** google.rpc.Status code UNAUTHENTICATED. */
const UNAUTHENTICATED = 16;

test('with a bearer token set, an export without it or with another gets 401 (a google.rpc.Status in its encoding) and stores nothing', async (t) => {
  const s = await startOtlpServer({ bearerToken: TOKEN });
  t.after(() => s.close());

  const none = await rawRequest(s.url, { method: 'POST', headers: JSON_TYPE, body: SDK_JSON });
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="tokenwatt"');
  assert.equal(none.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(none.body.toString()), { code: UNAUTHENTICATED, message: 'bearer token required' });

  const wrong = await rawRequest(s.url, { method: 'POST', headers: { ...PROTO_TYPE, authorization: `Bearer ${TOKEN}x` }, body: SDK_PROTO });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="tokenwatt", error="invalid_token"');
  assert.equal(wrong.headers['content-type'], 'application/x-protobuf');
  const fields = protoFields(wrong.body); // Status: 1 code, 2 message
  assert.equal(fields.get(1)?.[0], BigInt(UNAUTHENTICATED));
  assert.equal(Buffer.from(fields.get(2)?.[0] as Uint8Array).toString(), 'invalid bearer token');

  const basic = await rawRequest(s.url, { method: 'POST', headers: { ...JSON_TYPE, authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` }, body: SDK_JSON });
  assert.equal(basic.status, 401, 'only a bearer token counts');
  assert.equal(s.sink.records.length, 0, 'nothing refused was stored');

  const right = await rawRequest(s.url, { method: 'POST', headers: { ...JSON_TYPE, authorization: `bearer ${TOKEN}` }, body: SDK_JSON });
  assert.equal(right.status, 200, right.body.toString());
  assert.deepEqual(s.sink.records.map((r) => r.promptTokens), [2048], 'the chat span is stored once the token matches');
  const proto = await rawRequest(s.url, { method: 'POST', headers: { ...PROTO_TYPE, authorization: `Bearer ${TOKEN}` }, body: SDK_PROTO });
  assert.equal(proto.status, 200);
});

test('without a bearer token set, exports need no Authorization header', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const res = await rawRequest(s.url, { method: 'POST', headers: JSON_TYPE, body: SDK_JSON });
  assert.equal(res.status, 200);
  assert.equal(s.sink.records.length, 1);
});
