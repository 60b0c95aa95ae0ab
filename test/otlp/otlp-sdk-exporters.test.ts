import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diag, DiagLogLevel, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { startOtlpServer } from './otlp-server.js';

type ExporterConfig = NonNullable<ConstructorParameters<typeof JsonExporter>[0]>;
const GZIP = 'gzip' as ExporterConfig['compression'];

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0, 250);

/** Real spans through the OpenTelemetry JS SDK and one of its OTLP exporters. */
async function exportSpans(exporter: SpanExporter) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'chat-app', 'tokenwatt.team': 'search' }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('tokenwatt-test', '1.0.0');
  const chat = tracer.startSpan('chat llama-8b', {
    kind: SpanKind.CLIENT,
    startTime: new Date(T0),
    attributes: {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'llama-8b',
      'gen_ai.response.model': 'llama-8b-instruct',
      'gen_ai.response.id': `chatcmpl-${Math.random().toString(36).slice(2)}`,
      'gen_ai.usage.input_tokens': 1200,
      'gen_ai.usage.output_tokens': 340,
      'gen_ai.usage.cache_read.input_tokens': 1024,
      'gen_ai.usage.reasoning.output_tokens': 100,
      'tokenwatt.task_id': 'ticket-7',
      'tokenwatt.attempt': 2,
    },
  });
  chat.end(new Date(T0 + 2750));
  const failed = tracer.startSpan('text_completion llama-8b', {
    startTime: new Date(T0 + 10),
    attributes: { 'gen_ai.operation.name': 'text_completion', 'gen_ai.request.model': 'llama-8b', 'gen_ai.usage.input_tokens': 50, 'gen_ai.usage.output_tokens': 0, 'error.type': 'timeout' },
  });
  failed.setStatus({ code: SpanStatusCode.ERROR, message: 'deadline exceeded' });
  failed.end(new Date(T0 + 900));
  const http = tracer.startSpan('GET /v1/models', { startTime: new Date(T0), attributes: { 'http.request.method': 'GET' } });
  http.end(new Date(T0 + 3));
  const agent = tracer.startSpan('invoke_agent planner', { startTime: new Date(T0), attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.request.model': 'llama-8b', 'gen_ai.usage.input_tokens': 1250, 'gen_ai.usage.output_tokens': 340 } });
  agent.end(new Date(T0 + 3000));
  await provider.forceFlush();
  await provider.shutdown();
}

for (const [label, make] of [
  ['OTLP/HTTP JSON exporter', (url: string) => new JsonExporter({ url })],
  ['OTLP/HTTP JSON exporter, gzip', (url: string) => new JsonExporter({ url, compression: GZIP })],
  ['OTLP/HTTP protobuf exporter', (url: string) => new ProtoExporter({ url })],
  ['OTLP/HTTP protobuf exporter, gzip', (url: string) => new ProtoExporter({ url, compression: GZIP })],
] as const) {
  test(`${label}: GenAI spans become records with their times, usage, model, task and labels; other spans are ignored`, async (t) => {
    const server = await startOtlpServer({ config: { replica: { gpus: [0, 1], tier: 'small' } } });
    t.after(() => server.close());
    await exportSpans(make(server.url));
    const records = [...server.sink.records].sort((a, b) => a.startMs - b.startMs);
    assert.equal(records.length, 2, 'the chat and the failed completion; not the HTTP span, not the agent wrapper');
    const [chat, failed] = records;
    assert.equal(chat?.model, 'llama-8b-instruct', 'the response model wins over the request model');
    assert.equal(chat?.startMs, T0);
    assert.equal(chat?.endMs, T0 + 2750);
    assert.deepEqual([chat?.promptTokens, chat?.completionTokens, chat?.cachedTokens, chat?.reasoningTokens], [1200, 340, 1024, 100]);
    assert.equal(chat?.status, 'ok');
    assert.equal(chat?.taskId, 'ticket-7');
    assert.equal(chat?.attempt, 2);
    assert.deepEqual(chat?.labels, { team: 'search' }, 'team from the resource attributes');
    assert.match(chat?.requestId ?? '', /^chatcmpl-/);
    assert.equal(chat?.source, 'otlp');
    assert.equal(chat?.tier, 'small');
    assert.deepEqual(chat?.gpus, ['0', '1']);
    assert.equal(failed?.status, 'error');
    assert.match(failed?.requestId ?? '', /^otlp-[0-9a-f]{32}-[0-9a-f]{16}$/, 'no response id: trace and span id');
    assert.equal(failed?.endMs, T0 + 900);
  });
}

test('exporters see a partial success naming the refused span and attribute', async (t) => {
  const server = await startOtlpServer();
  t.after(() => server.close());
  const warnings: string[] = [];
  const keep = (message: string, ...args: unknown[]) => warnings.push(`${message} ${JSON.stringify(args)}`);
  diag.setLogger({ error: keep, warn: keep, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  t.after(() => diag.disable());
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ProtoExporter({ url: server.url }))] });
  const span = provider.getTracer('t').startSpan('chat', { attributes: { 'gen_ai.request.model': 'm', 'gen_ai.usage.input_tokens': 1e12, 'gen_ai.usage.output_tokens': 1 } });
  span.end();
  await provider.forceFlush();
  await provider.shutdown();
  assert.equal(server.sink.records.length, 0);
  const warned = server.log.messages('warn').join('\n');
  assert.match(warned, /1 span\(s\) rejected; first: span [0-9a-f]{16} "chat" .*gen_ai\.usage\.input_tokens: must be an integer 0\.\.100000000 \(got 1000000000000\)/);
  const partial = warnings.find((w) => /Partial Success/i.test(w));
  assert.ok(partial, `the exporter reported the partial success: ${warnings.join(' | ')}`);
  assert.match(partial, /rejectedSpans\W+1\b/, 'the exporter decoded rejected_spans = 1 from our protobuf answer');
  assert.match(partial, /gen_ai\.usage\.input_tokens/);
});
