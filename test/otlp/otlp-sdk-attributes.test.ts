import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind } from '@opentelemetry/api';
import type { Attributes, Tracer } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { partialSuccessOf, startOtlpServer } from './otlp-server.js';

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0, 250);
const EXPORTERS = [
  ['JSON exporter', (url: string) => new JsonExporter({ url })],
  ['protobuf exporter', (url: string) => new ProtoExporter({ url })],
] as const;

/** Spans built with the OpenTelemetry JS SDK, sent as one export (a batch) by a real OTLP exporter. */
async function exportSpans(exporter: SpanExporter, build: (tracer: Tracer) => void, resource: Attributes = {}) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'chat-app', ...resource }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  build(provider.getTracer('tokenwatt-test'));
  await provider.forceFlush();
  await provider.shutdown();
}

/** The call id a record's request id starts with (its gen_ai.response.id; the trace id follows it). */
const callIdOf = (r: { requestId: string }): string => r.requestId.split('/')[0] as string;

/** A chat completion span, told apart by its gen_ai.response.id. */
function chat(tracer: Tracer, id: string, attributes: Attributes = {}, durationMs = 1500) {
  tracer
    .startSpan('chat llama-8b', {
      kind: SpanKind.CLIENT,
      startTime: new Date(T0),
      attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'llama-8b', 'gen_ai.response.id': id, 'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 20, ...attributes },
    })
    .end(new Date(T0 + durationMs));
}

for (const [label, make] of EXPORTERS) {
  test(`${label}: a token count sent as an array is rejected by name; the good span of the same export is stored (not a 500)`, async (t) => {
    const s = await startOtlpServer();
    t.after(() => s.close());
    await exportSpans(make(s.url), (tracer) => {
      chat(tracer, 'good');
      chat(tracer, 'array', { 'gen_ai.usage.input_tokens': [100] });
    });
    assert.deepEqual(s.sink.records.map(callIdOf), ['good']);
    assert.deepEqual(s.answers.map((a) => a.status), [200], 'one export, answered 200');
    const partial = partialSuccessOf(s.answers[0]!);
    assert.equal(partial?.rejectedSpans, 1);
    assert.match(partial?.errorMessage ?? '', /^span [0-9a-f]{16} "chat llama-8b" \(resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[1\]\): gen_ai\.usage\.input_tokens: must be an integer token count \(got array\)$/);
  });

  test(`${label}: a tokenwatt.attempt the record cannot take is always left out and named by its attribute, never rejecting the span`, async (t) => {
    const attributes = { taskId: ['tokenwatt.task_id'], attempt: ['app.retry', 'tokenwatt.attempt'], team: ['tokenwatt.team'], feature: ['tokenwatt.feature'] };
    const s = await startOtlpServer({ config: { attributes } });
    t.after(() => s.close());
    const cases: [Attributes, number | null, string | null][] = [
      [{ 'tokenwatt.attempt': '0' }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got "0")'],
      [{ 'tokenwatt.attempt': 'abc' }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got "abc")'],
      [{ 'tokenwatt.attempt': '1.5' }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got "1.5")'],
      [{ 'tokenwatt.attempt': -1 }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got -1)'],
      [{ 'tokenwatt.attempt': 2.5 }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got 2.5)'],
      [{ 'tokenwatt.attempt': 10_001 }, null, 'tokenwatt.attempt: must be an integer 1..10000 (got 10001)'],
      [{ 'app.retry': 0, 'tokenwatt.attempt': 2 }, null, 'app.retry: must be an integer 1..10000 (got 0)'],
      [{ 'tokenwatt.attempt': 3 }, 3, null],
      [{ 'tokenwatt.attempt': ' 4 ' }, 4, null],
      [{ 'app.retry': 5, 'tokenwatt.attempt': 9 }, 5, null],
    ];
    for (const [i, [attrs, attempt, warning]] of cases.entries()) {
      await exportSpans(make(s.url), (tracer) => chat(tracer, `attempt-${i}`, attrs));
      const record = s.sink.records.find((r) => callIdOf(r) === `attempt-${i}`);
      assert.ok(record, `case ${i} (${JSON.stringify(attrs)}) is stored`);
      assert.equal(record.attempt, attempt, `case ${i}`);
      const partial = partialSuccessOf(s.answers.at(-1)!);
      if (warning === null) assert.equal(partial, null, `case ${i}: full success`);
      else {
        assert.equal(partial?.rejectedSpans, 0, `case ${i}: a warning, no span rejected`);
        assert.ok(partial?.errorMessage.endsWith(`: ${warning}, left out of the record`), `case ${i}: ${partial?.errorMessage}`);
      }
    }
  });

  test(`${label}: task id and labels follow the same rule, named by the span or resource attribute`, async (t) => {
    const s = await startOtlpServer();
    t.after(() => s.close());
    await exportSpans(make(s.url), (tracer) => chat(tracer, 'labels', { 'tokenwatt.task_id': 'x'.repeat(300), 'tokenwatt.feature': 'triage' }), { 'tokenwatt.team': true });
    const record = s.sink.records[0];
    assert.equal(record?.taskId, null);
    assert.deepEqual(record?.labels, { feature: 'triage' });
    const partial = partialSuccessOf(s.answers[0]!);
    assert.equal(partial?.rejectedSpans, 0);
    assert.match(partial?.errorMessage ?? '', /: tokenwatt\.task_id: longer than 256 characters, left out of the record; .*: tokenwatt\.team: must be a string \(got true\), left out of the record$/);
  });

  test(`${label}: vLLM's gen_ai.latency.time_to_first_token (seconds from the span's start) sets first_token when it lies within the span`, async (t) => {
    const s = await startOtlpServer();
    t.after(() => s.close());
    // Shaped like vLLM's llm_request span: a SERVER span from arrival, deprecated usage names, latencies in seconds.
    const llmRequest = (tracer: Tracer, id: string, ttft: number) =>
      tracer
        .startSpan('llm_request', {
          kind: SpanKind.SERVER,
          startTime: new Date(T0),
          attributes: { 'gen_ai.response.model': 'Qwen/Qwen3-8B', 'gen_ai.response.id': id, 'gen_ai.usage.prompt_tokens': 2048, 'gen_ai.usage.completion_tokens': 64, 'gen_ai.latency.time_in_queue': 0.01, 'gen_ai.latency.time_to_first_token': ttft, 'gen_ai.latency.e2e': 1.9 },
        })
        .end(new Date(T0 + 2000));
    await exportSpans(make(s.url), (tracer) => {
      llmRequest(tracer, 'prefill-250ms', 0.2504);
      llmRequest(tracer, 'whole-span', 2); // an integer: sent as intValue
      llmRequest(tracer, 'after-end', 2.5);
      llmRequest(tracer, 'negative', -0.1);
    });
    const firstToken = Object.fromEntries(s.sink.records.map((r) => [callIdOf(r), r.firstTokenMs === null ? null : r.firstTokenMs - T0]));
    assert.deepEqual(firstToken, { 'prefill-250ms': 250, 'whole-span': 2000, 'after-end': null, negative: null });
    const partial = partialSuccessOf(s.answers[0]!);
    assert.equal(partial?.rejectedSpans, 0, 'an unusable time to first token costs only the split, not the record');
    assert.match(partial?.errorMessage ?? '', /spans\[2\]\): gen_ai\.latency\.time_to_first_token: must be seconds from the span's start to no later than its end \(got 2\.5\), not used; .*spans\[3\]\): gen_ai\.latency\.time_to_first_token: .*\(got -0\.1\), not used$/);
  });

  test(`${label}: an embeddings span with input tokens only has exactly 0 output tokens, not an estimate`, async (t) => {
    const s = await startOtlpServer();
    t.after(() => s.close());
    await exportSpans(make(s.url), (tracer) => {
      tracer.startSpan('embeddings bge-m3', { startTime: new Date(T0), attributes: { 'gen_ai.operation.name': 'embeddings', 'gen_ai.request.model': 'bge-m3', 'gen_ai.response.id': 'emb', 'gen_ai.usage.input_tokens': 42 } }).end(new Date(T0 + 30));
      tracer.startSpan('chat llama-8b', { startTime: new Date(T0), attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'llama-8b', 'gen_ai.response.id': 'chat', 'gen_ai.usage.input_tokens': 42 } }).end(new Date(T0 + 30));
    });
    const byId = new Map(s.sink.records.map((r) => [callIdOf(r), r]));
    assert.deepEqual([byId.get('emb')?.promptTokens, byId.get('emb')?.completionTokens, byId.get('emb')?.tokensEstimated], [42, 0, false]);
    assert.equal(byId.get('chat')?.tokensEstimated, true, 'a chat without an output count is still an estimate');
  });
}

test('vLLM-shaped llm_request spans name no model: refused with the fix named, and stored under otlp.defaultModel when it is set', async (t) => {
  // As vllm/v1/engine/output_processor.py builds them: the old usage names, gen_ai.request.id, no model.
  const vllmSpan = (tracer: Tracer, id: string) =>
    tracer
      .startSpan('llm_request', {
        kind: SpanKind.SERVER,
        startTime: new Date(T0),
        attributes: { 'gen_ai.request.id': id, 'gen_ai.usage.prompt_tokens': 512, 'gen_ai.usage.completion_tokens': 32, 'gen_ai.latency.time_to_first_token': 0.1, 'gen_ai.request.max_tokens': 64 },
      })
      .end(new Date(T0 + 900));
  const refusing = await startOtlpServer();
  t.after(() => refusing.close());
  await exportSpans(new ProtoExporter({ url: refusing.url }), (tracer) => vllmSpan(tracer, 'cmpl-1'));
  assert.equal(refusing.sink.records.length, 0);
  assert.match(partialSuccessOf(refusing.answers[0]!)?.errorMessage ?? '', /gen_ai\.request\.model: required: .*set otlp\.defaultModel for spans that name none/);

  const s = await startOtlpServer({ config: { defaultModel: 'Qwen/Qwen3-8B' } });
  t.after(() => s.close());
  await exportSpans(new ProtoExporter({ url: s.url }), (tracer) => vllmSpan(tracer, 'cmpl-2'));
  assert.deepEqual(s.sink.records.map((r) => [r.model, r.promptTokens, r.completionTokens, r.firstTokenMs === null ? null : r.firstTokenMs - T0]), [['Qwen/Qwen3-8B', 512, 32, 100]]);
});
