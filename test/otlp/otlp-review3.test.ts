import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { deflateSync, gzipSync } from 'node:zlib';
import { rawRequest } from '../proxy/raw-http.js';
import { startOtlpServer } from './otlp-server.js';

const json = { 'content-type': 'application/json' };
/** The OpenTelemetry JS SDK's OTLP/JSON export from test/fixtures/otlp (a GenAI chat span among others). */
const SDK_JSON = readFileSync(fileURLToPath(new URL('../fixtures/otlp/sdk-json-exporter-genai.json', import.meta.url)), 'utf8');
const CHAT_ID = 'chatcmpl-8f1c2d/63d3a3754cd1cc53414db4dc6531b6d1'; // its gen_ai.response.id and trace id

/** The SDK export with the chat span's attributes changed by `edit`. */
function withChatAttributes(edit: (attributes: { key: string; value: unknown }[]) => void): string {
  const body = JSON.parse(SDK_JSON);
  edit(body.resourceSpans[0].scopeSpans[0].spans[0].attributes);
  return JSON.stringify(body);
}

test('a token attribute given twice with different values is refused by name; an identical repeat is fine', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const twice = withChatAttributes((a) => a.push({ key: 'gen_ai.usage.input_tokens', value: { intValue: 5000 } }));
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: twice });
  assert.equal(res.status, 200);
  const body = JSON.parse(res.body.toString());
  assert.equal(body.partialSuccess.rejectedSpans, '1');
  assert.match(body.partialSuccess.errorMessage, /span dfa48aab06cb3b99 .*: gen_ai\.usage\.input_tokens: must be an integer token count \(given more than once with different values \(2048 and 5000\)\)/);
  assert.ok(!s.sink.records.some((r) => r.requestId === CHAT_ID), 'not stored with either count');

  const same = withChatAttributes((a) => a.push({ key: 'gen_ai.usage.input_tokens', value: { intValue: '2048' } }));
  const ok = await rawRequest(s.url, { method: 'POST', headers: json, body: same });
  assert.equal(ok.status, 200);
  assert.equal(s.sink.records.find((r) => r.requestId === CHAT_ID)?.promptTokens, 2048);
});

test('another attribute given twice with different values is not read, and the answer says so by name', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const twice = withChatAttributes((a) => a.push({ key: 'tokenwatt.feature', value: { stringValue: 'billing' } }));
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: twice });
  assert.equal(res.status, 200);
  assert.match(JSON.parse(res.body.toString()).partialSuccess.errorMessage, /tokenwatt\.feature: must be a string \(got given more than once with different values \("triage" and "billing"\)\), left out of the record/);
  const r = s.sink.records.find((x) => x.requestId === CHAT_ID);
  assert.equal(r?.promptTokens, 2048);
  assert.equal(r?.labels.feature, undefined);
});

test('an OTLP/JSON body starting with a UTF-8 byte order mark is read', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(SDK_JSON)]) });
  assert.equal(res.status, 200);
  assert.equal(s.sink.records.find((r) => r.requestId === CHAT_ID)?.promptTokens, 2048);
});

test('content-encoding deflate (and x-gzip) is read; zstd and others get 415 with Accept-Encoding and a reason', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const deflated = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'deflate' }, body: deflateSync(SDK_JSON) });
  assert.equal(deflated.status, 200);
  assert.equal(s.sink.records.find((r) => r.requestId === CHAT_ID)?.completionTokens, 512);
  const xgzip = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'x-gzip' }, body: gzipSync(SDK_JSON) });
  assert.equal(xgzip.status, 200);
  const bad = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'deflate' }, body: SDK_JSON });
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body.toString()).message, /content-encoding deflate, but the body is not valid deflate/);
  const zstd = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'zstd' }, body: SDK_JSON });
  assert.equal(zstd.status, 415);
  assert.equal(zstd.headers['accept-encoding'], 'gzip, deflate');
  assert.match(JSON.parse(zstd.body.toString()).message, /unsupported content-encoding "zstd" \(.*without zstd.*\); use gzip, deflate or none/);
});
