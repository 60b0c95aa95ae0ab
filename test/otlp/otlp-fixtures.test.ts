import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rawRequest } from '../proxy/raw-http.js';
import { collectSpans, decodeJsonRequest, decodeProtobufRequest } from '../../collectors/otlp/otlp-spans.js';
import { genAiSpanToRecord } from '../../collectors/otlp/genai-span.js';
import { otlpConfigSchema } from '../../collectors/otlp/otlp-config.js';
import { startOtlpServer } from './otlp-server.js';

const dir = fileURLToPath(new URL('../fixtures/otlp/', import.meta.url));
const jsonBody = readFileSync(`${dir}sdk-json-exporter-genai.json`);
const protoBody = readFileSync(`${dir}sdk-proto-exporter-genai.binpb`);
const config = otlpConfigSchema.parse({});

test('payloads captured from the SDK exporters decode to the same spans, JSON and protobuf', () => {
  const fromJson = collectSpans(decodeJsonRequest(jsonBody));
  const fromProto = collectSpans(decodeProtobufRequest(protoBody));
  assert.deepEqual(fromJson.problems, []);
  assert.deepEqual(fromProto.problems, []);
  const shape = (spans: typeof fromJson.spans) =>
    spans.map((s) => ({ name: s.name, startNs: s.startNs, endNs: s.endNs, attrs: Object.fromEntries(s.attributes), resource: Object.fromEntries(s.resourceAttributes), ids: [s.traceId.length, s.spanId.length] }));
  const json = shape(fromJson.spans);
  assert.deepEqual(shape(fromProto.spans).map((s) => ({ ...s })), json);
  assert.equal(json[0]?.startNs, BigInt(Date.UTC(2026, 9, 14, 9, 30, 0, 125)) * 1_000_000n);
  assert.equal(json[0]?.attrs['gen_ai.usage.input_tokens'], 2048n);
  assert.deepEqual(json[0]?.ids, [32, 16]);
});

test('the captured GenAI span becomes exactly one record; the HTTP span is ignored', () => {
  const { spans } = collectSpans(decodeProtobufRequest(protoBody));
  const verdicts = spans.map((s) => genAiSpanToRecord(s, config));
  assert.deepEqual(verdicts.map((v) => v.kind), ['record', 'ignored']);
  const v = verdicts[0];
  assert.ok(v?.kind === 'record');
  assert.deepEqual(
    { ...v.record },
    {
      requestId: 'chatcmpl-8f1c2d/a4913fb35b87f74b7bfadd09e5a7838b', // the response id, in its trace
      taskId: 'ticket-1234',
      attempt: null,
      model: 'Qwen/Qwen3-8B',
      tier: null,
      gpus: null,
      startMs: Date.UTC(2026, 9, 14, 9, 30, 0, 125),
      firstTokenMs: null,
      endMs: Date.UTC(2026, 9, 14, 9, 30, 4, 875),
      promptTokens: 2048,
      cachedTokens: 1536,
      completionTokens: 512,
      reasoningTokens: 128,
      batchSize: null,
      status: 'ok',
      labels: { team: 'support', feature: 'triage' },
      tokensEstimated: false,
      granularity: 'request',
      source: 'otlp',
      gpusSent: null, // set when the record is resolved
      otlpSpans: { client: '27abbb145abca758' }, // the app's span: it has the response id
    },
  );
});

test('both captured bodies through the HTTP handler: 200, empty ExportTraceServiceResponse, one record each; each sent again is a duplicate', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  for (let i = 0; i < 2; i++) {
    const proto = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: protoBody });
    assert.equal(proto.status, 200);
    assert.equal(proto.body.length, 0, 'an empty protobuf message: full success');
    const json = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonBody });
    assert.equal(json.status, 200);
    assert.deepEqual(JSON.parse(json.body.toString()), {});
  }
  // The same gen_ai.response.id, but each exporter ran its own trace: two calls, as with a server that reuses ids.
  assert.deepEqual(s.sink.records.map((r) => r.requestId), ['chatcmpl-8f1c2d/a4913fb35b87f74b7bfadd09e5a7838b', 'chatcmpl-8f1c2d/63d3a3754cd1cc53414db4dc6531b6d1']);
});

test('GenAI attribute variants: deprecated usage names, cancellation from error.type, wrapper operations ignored', () => {
  const base = collectSpans(decodeJsonRequest(jsonBody)).spans[0];
  assert.ok(base);
  const variant = (attrs: Record<string, unknown>, extra: Partial<typeof base> = {}) => {
    const attributes = new Map(base.attributes);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined) attributes.delete(k);
      else attributes.set(k, v as never);
    }
    return genAiSpanToRecord({ ...base, ...extra, attributes }, config);
  };
  const old = variant({ 'gen_ai.usage.input_tokens': undefined, 'gen_ai.usage.output_tokens': undefined, 'gen_ai.usage.prompt_tokens': 30n, 'gen_ai.usage.completion_tokens': 7n, 'gen_ai.usage.cache_read.input_tokens': undefined, 'gen_ai.usage.reasoning.output_tokens': undefined });
  assert.ok(old.kind === 'record');
  assert.deepEqual([old.record.promptTokens, old.record.completionTokens], [30, 7]);
  const cancelled = variant({ 'error.type': 'ClientDisconnected/cancelled' });
  assert.ok(cancelled.kind === 'record' && cancelled.record.status === 'cancelled');
  const failed = variant({}, { statusCode: 2, statusMessage: 'upstream 500' });
  assert.ok(failed.kind === 'record' && failed.record.status === 'error');
  assert.equal(variant({ 'gen_ai.operation.name': 'invoke_agent' }).kind, 'ignored');
  const noIds = variant({ 'gen_ai.response.id': undefined }, { traceId: '', spanId: '' });
  assert.ok(noIds.kind === 'rejected' && noIds.field === 'spanId');
});
