import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { rawRequest } from '../proxy/raw-http.js';
import { RecordingSink } from '../proxy/recording-sink.js';
import { BackpressureError } from '../../collectors/request-sink.js';
import type { IngestResult, RequestSink } from '../../collectors/request-sink.js';
import { protoFields, startOtlpServer } from './otlp-server.js';

const T0 = 1_793_534_400_000_000_000n; // 2026-11-01T12:00:00Z in ns
const json = { 'content-type': 'application/json' };

/** An OTLP/JSON request with the given spans under one resource. */
function payload(spans: unknown[], resource: unknown = { attributes: [] }) {
  return JSON.stringify({ resourceSpans: [{ resource, scopeSpans: [{ scope: { name: 'x' }, spans }] }] });
}
function span(id: string, attrs: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const attributes = Object.entries(attrs).map(([key, v]) =>
    ({ key, value: typeof v === 'string' ? { stringValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v } }),
  );
  return { traceId: '5b8efff798038103d269b633813fc60c', spanId: id, name: `span ${id}`, kind: 3, startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 1_500_000_000n), attributes, ...extra };
}
const usage = { 'gen_ai.request.model': 'llama-8b', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 };

test('wrong method, content type or encoding: 405 / 415 with a reason', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const get = await rawRequest(s.url);
  assert.equal(get.status, 405);
  assert.equal(get.headers.allow, 'POST');
  const text = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
  assert.equal(text.status, 415);
  assert.match(JSON.parse(text.body.toString()).message, /unsupported content-type "text\/plain"/);
  const br = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'br' }, body: '{}' });
  assert.equal(br.status, 415);
  assert.match(JSON.parse(br.body.toString()).message, /unsupported content-encoding "br"/);
});

test('bodies that are not OTLP: 400 with a google.rpc.Status in the request encoding', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const notJson = await rawRequest(s.url, { method: 'POST', headers: json, body: '{"resourceSpans": [' });
  assert.equal(notJson.status, 400);
  const status = JSON.parse(notJson.body.toString());
  assert.equal(status.code, 3);
  assert.match(status.message, /not an OTLP ExportTraceServiceRequest \(JSON\)/);
  const wrongShape = await rawRequest(s.url, { method: 'POST', headers: json, body: '{"resourceSpans": "all of them"}' });
  assert.equal(wrongShape.status, 400);
  assert.match(wrongShape.body.toString(), /resourceSpans must be a list/);

  const garbage = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]) });
  assert.equal(garbage.status, 400);
  assert.equal(garbage.headers['content-type'], 'application/x-protobuf');
  const fields = protoFields(garbage.body);
  assert.equal(fields.get(1)?.[0], 3n, 'google.rpc.Status.code = INVALID_ARGUMENT');
  assert.match(Buffer.from(fields.get(2)?.[0] as Uint8Array).toString(), /not an OTLP ExportTraceServiceRequest \(protobuf\)/);

  const fakeGzip = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'gzip' }, body: '{"not":"gzip"}' });
  assert.equal(fakeGzip.status, 400);
  assert.match(fakeGzip.body.toString(), /not valid gzip/);
  assert.equal(s.sink.records.length, 0);
});

test('too large, before and after decompression (a gzip bomb): 413', async (t) => {
  const s = await startOtlpServer({ bodyLimitBytes: 64 * 1024 });
  t.after(() => s.close());
  const big = await rawRequest(s.url, { method: 'POST', headers: json, body: payload([span('00f067aa0ba902b7', { ...usage, pad: 'x'.repeat(100_000) })]) });
  assert.equal(big.status, 413);
  const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20));
  assert.ok(bomb.length < 64 * 1024);
  const bombed = await rawRequest(s.url, { method: 'POST', headers: { ...json, 'content-encoding': 'gzip' }, body: bomb });
  assert.equal(bombed.status, 413);
  assert.match(bombed.body.toString(), /after decompression/);
});

test('partial success: each refused GenAI span is named with its attribute; good spans are kept, other spans ignored', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const res = await rawRequest(s.url, {
    method: 'POST',
    headers: json,
    body: payload([
      span('00f067aa0ba90201', usage),
      span('00f067aa0ba90202', { 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 }),
      span('00f067aa0ba90203', usage, { endTimeUnixNano: String(T0 - 1n) }),
      span('00f067aa0ba90204', { ...usage, 'gen_ai.usage.cache_read.input_tokens': 11 }),
      span('00f067aa0ba90205', { ...usage, 'gen_ai.usage.output_tokens': 2.5 }),
      span('00f067aa0ba90206', { 'http.route': '/health' }),
      'not a span',
    ]),
  });
  assert.equal(res.status, 200);
  const body = JSON.parse(res.body.toString());
  assert.equal(body.partialSuccess.rejectedSpans, '5');
  const message: string = body.partialSuccess.errorMessage;
  assert.match(message, /span 00f067aa0ba90202 "span 00f067aa0ba90202" \(resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[1\]\): gen_ai\.request\.model: required/);
  assert.match(message, /span 00f067aa0ba90203 .*: endTimeUnixNano: end precedes start/);
  assert.match(message, /span 00f067aa0ba90204 .*: gen_ai\.usage\.cache_read\.input_tokens: cached_tokens exceeds prompt_tokens/);
  assert.match(message, /span 00f067aa0ba90205 .*: gen_ai\.usage\.output_tokens: must be an integer 0\.\.100000000 \(got 2\.5\)/);
  assert.match(message, /spans\[6\]: must be an object/);
  assert.deepEqual(s.sink.records.map((r) => r.requestId), ['otlp-5b8efff798038103d269b633813fc60c-00f067aa0ba90201']);
  const r = s.sink.records[0];
  assert.equal(r?.startMs, Number(T0 / 1_000_000n));
  assert.equal(r?.endMs - (r?.startMs ?? 0), 1500);
});

test('a repeated export (exporter retry) is acknowledged, not doubled and not rejected', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const body = payload([span('00f067aa0ba90207', { ...usage, 'gen_ai.response.id': 'chatcmpl-77' })]);
  for (let i = 0; i < 2; i++) {
    const res = await rawRequest(s.url, { method: 'POST', headers: json, body });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body.toString()), {});
  }
  assert.equal(s.sink.records.length, 1);
  assert.equal(s.sink.records[0]?.requestId, 'chatcmpl-77/5b8efff798038103d269b633813fc60c', 'the response id, in its trace');
});

test('only input or only output tokens: the record says its counts are incomplete (estimated)', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  await rawRequest(s.url, { method: 'POST', headers: json, body: payload([span('00f067aa0ba90208', { 'gen_ai.request.model': 'm', 'gen_ai.usage.output_tokens': 9 })]) });
  assert.equal(s.sink.records[0]?.completionTokens, 9);
  assert.equal(s.sink.records[0]?.tokensEstimated, true);
});

test('a full ingest queue answers 429 with Retry-After; a failing sink 503; refusals by the sink are partial success', async (t) => {
  let mode: 'pushback' | 'fail' | 'refuse' = 'pushback';
  const sink: RequestSink = {
    async submit(records): Promise<IngestResult> {
      if (mode === 'pushback') throw new BackpressureError(2);
      if (mode === 'fail') throw new Error('ledger is read-only');
      return { accepted: 0, duplicates: 0, late: 0, errors: records.map((r, index) => ({ index, requestId: r.requestId, field: 'gpus', reason: 'not given and no replica is configured for model "llama-8b"' })) };
    },
  };
  const errors: string[] = [];
  const s = await startOtlpServer({ sink, onError: (e) => errors.push(e.message) });
  t.after(() => s.close());
  const body = payload([span('00f067aa0ba90209', usage)]);
  const busy = await rawRequest(s.url, { method: 'POST', headers: json, body });
  assert.equal(busy.status, 429);
  assert.equal(busy.headers['retry-after'], '2');
  mode = 'fail';
  const failing = await rawRequest(s.url, { method: 'POST', headers: json, body });
  assert.equal(failing.status, 503);
  assert.match(failing.body.toString(), /ledger is read-only/);
  assert.deepEqual(errors, ['ledger is read-only']);
  mode = 'refuse';
  const refused = await rawRequest(s.url, { method: 'POST', headers: json, body });
  assert.equal(refused.status, 200);
  const partial = JSON.parse(refused.body.toString()).partialSuccess;
  assert.equal(partial.rejectedSpans, '1');
  assert.match(partial.errorMessage, /span 00f067aa0ba90209 .*: gpus: not given and no replica is configured/);
});

test('property-like fuzz: random bytes as protobuf and as JSON never crash the handler', async (t) => {
  const s = await startOtlpServer({ sink: new RecordingSink() });
  t.after(() => s.close());
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 40; i++) {
    const bytes = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
    const type = i % 2 === 0 ? 'application/x-protobuf' : 'application/json';
    const res = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': type }, body: bytes });
    assert.ok(res.status === 200 || res.status === 400, `status ${res.status}`);
  }
});

test('an empty or non-string gen_ai.response.model does not hide gen_ai.request.model: the record is stored for the request model, and the value left out is named', async (t) => {
  const s = await startOtlpServer({ config: { defaultModel: 'fallback-model' } });
  t.after(() => s.close());
  const spans = [
    span('00f067aa0ba90211', { ...usage, 'gen_ai.response.model': '' }),
    span('00f067aa0ba90212', { ...usage, 'gen_ai.response.model': 7 }),
    span('00f067aa0ba90213', { 'gen_ai.response.model': '', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 }),
  ];
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: payload(spans) });
  assert.equal(res.status, 200);
  assert.deepEqual(s.sink.records.map((r) => [r.requestId.slice(-2), r.model]), [['11', 'llama-8b'], ['12', 'llama-8b'], ['13', 'fallback-model']]);
  const body = JSON.parse(res.body.toString());
  assert.equal(body.partialSuccess.rejectedSpans, '0');
  assert.match(body.partialSuccess.errorMessage, /span 00f067aa0ba90211 .*: gen_ai\.response\.model: must be a non-empty string \(got ""\), gen_ai\.request\.model used/);
  assert.match(body.partialSuccess.errorMessage, /span 00f067aa0ba90212 .*: gen_ai\.response\.model: must be a non-empty string \(got 7\), gen_ai\.request\.model used/);
  assert.match(body.partialSuccess.errorMessage, /span 00f067aa0ba90213 .*: gen_ai\.response\.model: must be a non-empty string \(got ""\), otlp\.defaultModel used/);
  // Without otlp.defaultModel: stored all the same (it was refused, saying neither model was set).
  const plain = await startOtlpServer();
  t.after(() => plain.close());
  assert.equal((await rawRequest(plain.url, { method: 'POST', headers: json, body: payload(spans.slice(0, 1)) })).status, 200);
  assert.deepEqual(plain.sink.records.map((r) => r.model), ['llama-8b']);
});

test('spans refused before the sink count in the rejected-records metric by field, as HTTP ingest counts refused records; only once the export is answered for good', async (t) => {
  const recording = new RecordingSink();
  const counted: [string, number][] = [];
  const sink: RequestSink = { submit: (records) => recording.submit(records), noteRejected: (reason, n) => counted.push([reason, n]) };
  const s = await startOtlpServer({ sink });
  t.after(() => s.close());
  const body = payload([
    span('00f067aa0ba90201', usage),
    span('00f067aa0ba90202', { 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 }), // no model
    span('00f067aa0ba90203', usage, { endTimeUnixNano: String(T0 - 1n) }),
    span('00f067aa0ba90204', { ...usage, 'gen_ai.usage.cache_read.input_tokens': 11 }),
    span('00f067aa0ba90205', { ...usage, 'gen_ai.usage.output_tokens': 2.5 }),
    span('00f067aa0ba90206', { 'http.route': '/health' }), // not a GenAI span: ignored, not refused
    'not a span',
  ]);
  recording.pushBack = 1;
  assert.equal((await rawRequest(s.url, { method: 'POST', headers: json, body })).status, 429);
  assert.deepEqual(counted, [], 'the exporter sends it again: counted then');
  assert.equal((await rawRequest(s.url, { method: 'POST', headers: json, body })).status, 200);
  assert.deepEqual(counted.sort(), [['cached_tokens', 1], ['completion_tokens', 1], ['end', 1], ['model', 1], ['parse', 1]]);
  assert.equal(recording.records.length, 1);
  counted.length = 0;
  assert.equal((await rawRequest(s.url, { method: 'POST', headers: json, body: '{"resourceSpans": [' })).status, 400);
  assert.deepEqual(counted, [['parse', 1]], 'a body refused whole counts once');
});
