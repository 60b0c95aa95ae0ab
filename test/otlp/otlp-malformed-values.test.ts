import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest } from '../proxy/raw-http.js';
import { otlpTypes } from '../../collectors/otlp/otlp-trace-proto.js';
import { collectSpans, MAX_NESTING } from '../../collectors/otlp/otlp-spans.js';
import type { OtlpSpan } from '../../collectors/otlp/otlp-spans.js';
import { rejectingOnError } from '../../collectors/otlp/genai-span.js';
import type { SpanVerdict } from '../../collectors/otlp/genai-span.js';
import { BackpressureError } from '../../collectors/request-sink.js';
import type { RequestSink } from '../../collectors/request-sink.js';
import { RecordingSink } from '../proxy/recording-sink.js';
import { partialSuccessOf, startOtlpServer } from './otlp-server.js';

// Hand-written OTLP/JSON and protobuf: values that no SDK exporter produces, from hand-rolled senders.
const T0 = 1_793_534_400_000_000_000n; // 2026-11-01T12:00:00Z in ns
const json = { 'content-type': 'application/json' };

const kv = (key: string, value: unknown) => ({ key, value });
/** A GenAI span with usage 100/20; `attributes` replace or add by key. */
function genAi(n: number, attributes: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const base: Record<string, unknown> = {
    'gen_ai.operation.name': { stringValue: 'chat' },
    'gen_ai.request.model': { stringValue: 'llama-8b' },
    'gen_ai.usage.input_tokens': { intValue: '100' },
    'gen_ai.usage.output_tokens': { intValue: '20' },
  };
  return {
    traceId: '5b8efff798038103d269b633813fc60c',
    spanId: `00f067aa0ba9020${n}`,
    name: `span ${n}`,
    startTimeUnixNano: String(T0),
    endTimeUnixNano: String(T0 + 1_000_000_000n),
    attributes: Object.entries({ ...base, ...attributes }).map(([k, v]) => kv(k, v)),
    ...extra,
  };
}
const request = (spans: unknown[], resourceAttributes: unknown[] = []) => ({ resourceSpans: [{ resource: { attributes: resourceAttributes }, scopeSpans: [{ scope: { name: 'x' }, spans }] }] });
const stored = (s: Awaited<ReturnType<typeof startOtlpServer>>) => s.sink.records.map((r) => r.requestId.slice(-1));

/** A value nested `levels` kvlists deep around a string. */
function nestedKvlist(levels: number): string {
  return '{"kvlistValue":{"values":[{"key":"k","value":'.repeat(levels) + '{"stringValue":"x"}' + '}]}}'.repeat(levels);
}

test('a token count holding ints in a kvlist (protobuf) is rejected by name; the good span beside it is stored', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const bytesIds = (span: ReturnType<typeof genAi>) => ({ ...span, traceId: Buffer.from(span.traceId, 'hex'), spanId: Buffer.from(span.spanId, 'hex') });
  const bad = genAi(2, { 'gen_ai.usage.output_tokens': { kvlistValue: { values: [kv('n', { intValue: 7 })] } } });
  const { request: type } = otlpTypes();
  const body = Buffer.from(type.encode(type.fromObject(request([bytesIds(genAi(1)), bytesIds(bad)]))).finish());
  const res = await rawRequest(s.url, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
  assert.equal(res.status, 200);
  assert.deepEqual(partialSuccessOf(s.answers[0]!), { rejectedSpans: 1, errorMessage: 'span 00f067aa0ba90202 "span 2" (resourceSpans[0].scopeSpans[0].spans[1]): gen_ai.usage.output_tokens: must be an integer token count (got kvlist)' });
  assert.deepEqual(stored(s), ['1']);
});

test('kvlist nesting counts towards the depth limit: 10,000 levels are refused by name, not a stack overflow, and the span is kept', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const body = request(
    [
      genAi(1, { 'some.app.attr': '@A@' }), // not an attribute tokenwatt reads: the span is kept
      genAi(2, { 'just.deep.enough': '@B@' }),
      genAi(3, { 'gen_ai.usage.output_tokens': '@C@' }), // one it reads: the span is rejected
    ],
    [kv('deep.resource', '@R@')],
  );
  const text = JSON.stringify(body)
    .replace('"@A@"', nestedKvlist(10_000))
    .replace('"@B@"', nestedKvlist(MAX_NESTING))
    .replace('"@C@"', nestedKvlist(MAX_NESTING + 1))
    .replace('"@R@"', nestedKvlist(10_000));
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: text });
  assert.equal(res.status, 200);
  assert.deepEqual(stored(s), ['1', '2']);
  const partial = partialSuccessOf(s.answers[0]!);
  assert.equal(partial?.rejectedSpans, 1);
  assert.equal(
    partial?.errorMessage,
    [
      `resourceSpans[0].resource.attributes["deep.resource"]: nested deeper than ${MAX_NESTING} levels, not read`,
      `span 00f067aa0ba90203 "span 3" (resourceSpans[0].scopeSpans[0].spans[2]): gen_ai.usage.output_tokens: must be an integer token count (nested deeper than ${MAX_NESTING} levels)`,
      `span 00f067aa0ba90201 "span 1" (resourceSpans[0].scopeSpans[0].spans[0]): some.app.attr: nested deeper than ${MAX_NESTING} levels, not read`,
    ].join('; '),
  );
});

test('an intValue that is not an integer is rejected by name, as the same doubleValue is, not taken as absent', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const spans = [
    genAi(1, { 'gen_ai.usage.input_tokens': { intValue: 12.5 } }),
    genAi(2, { 'gen_ai.usage.input_tokens': { intValue: '1e3' }, 'gen_ai.usage.output_tokens': { intValue: '20.0' } }),
    genAi(3, { 'gen_ai.usage.input_tokens': { doubleValue: 12.5 } }),
    genAi(4, { 'gen_ai.usage.output_tokens': { intValue: '+5' } }),
    genAi(5, { 'app.retries': { intValue: 'two' } }), // not read: the span is kept, the value named
    genAi(6, { 'gen_ai.usage.cache_read.input_tokens': { intValue: null } }), // null: unset, as proto3 JSON has it
  ];
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request(spans)) });
  assert.equal(res.status, 200);
  assert.deepEqual(stored(s), ['5', '6']);
  const partial = partialSuccessOf(s.answers[0]!);
  assert.equal(partial?.rejectedSpans, 4);
  assert.deepEqual(
    partial?.errorMessage.split('; ').map((m) => m.replace(/^span \w+ "span (\d)" \(resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[\d\]\)/, '$1')),
    [
      '1: gen_ai.usage.input_tokens: must be an integer token count (intValue 12.5 is not an integer)',
      '2: gen_ai.usage.input_tokens: must be an integer token count (intValue "1e3" is not an integer)',
      '3: gen_ai.usage.input_tokens: must be an integer 0..100000000 (got 12.5)',
      '4: gen_ai.usage.output_tokens: must be an integer token count (intValue "+5" is not an integer)',
      '5: app.retries: intValue "two" is not an integer, not read',
    ],
  );
  assert.equal(s.sink.records[1]?.cachedTokens, 0);
});

test('status.code is type-checked before use: enum names are read, other values reject the GenAI span by name; the rest of the export is stored', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const withCode = (n: number, code: unknown) => genAi(n, {}, { status: { code, message: 'upstream 500' } });
  const spans = [
    withCode(1, 'STATUS_CODE_ERROR'),
    withCode(2, 'STATUS_CODE_OK'),
    withCode(3, 'STATUS_CODE_UNSET'),
    withCode(4, 2),
    withCode(5, { valueOf: 1, toString: 1 }), // Number() of it throws
    withCode(6, 'STATUS_CODE_BROKEN'),
    withCode(7, 9),
  ];
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request(spans)) });
  assert.equal(res.status, 200);
  assert.deepEqual(Object.fromEntries(s.sink.records.map((r) => [r.requestId.slice(-1), r.status])), { 1: 'error', 2: 'ok', 3: 'ok', 4: 'error' });
  const partial = partialSuccessOf(s.answers[0]!);
  assert.equal(partial?.rejectedSpans, 3);
  const reason = 'status.code: must be 0, 1, 2 or STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR';
  assert.deepEqual(partial?.errorMessage.split('; ').map((m) => m.replace(/^span \w+ "span (\d)" \(.*?\): /, '$1: ')), [
    `5: ${reason} (got an object)`,
    `6: ${reason} (got "STATUS_CODE_BROKEN")`,
    `7: ${reason} (got 9)`,
  ]);
});

test('an unexpected error while reading one span refuses that span alone, by path and reason', () => {
  const exploding = { ...genAi(2) };
  Object.defineProperty(exploding, 'name', { enumerable: true, get: () => { throw new TypeError('no name today'); } });
  const { spans, problems, unreadableSpans } = collectSpans(request([genAi(1), exploding, genAi(3)]));
  assert.deepEqual(spans.map((s) => s.name), ['span 1', 'span 3']);
  assert.equal(unreadableSpans, 1);
  assert.deepEqual(problems, [{ path: 'resourceSpans[0].scopeSpans[0].spans[1]', reason: 'could not be read: TypeError: no name today' }]);
});

test('an unexpected error while converting one span rejects that span alone, naming the error, and reports it', () => {
  const [good, bad] = collectSpans(request([genAi(1), genAi(2)])).spans as [OtlpSpan, OtlpSpan];
  const reported: string[] = [];
  const ok: SpanVerdict = { kind: 'ignored', warnings: [] };
  const convert = rejectingOnError(
    (span) => {
      if (span === bad) throw new RangeError('Maximum call stack size exceeded');
      return ok;
    },
    (error, span) => reported.push(`${span.name}: ${error.message}`),
  );
  assert.equal(convert(good), ok);
  assert.deepEqual(convert(bad), { kind: 'rejected', field: '(span)', reason: 'could not be converted: RangeError: Maximum call stack size exceeded', counted: 'record', warnings: [] });
  assert.deepEqual(reported, ['span 2: Maximum call stack size exceeded']);
});

test('a task id or label holding a lone surrogate (escaped in OTLP/JSON) is left out and named, the record kept', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const span = genAi(1, { 'tokenwatt.task_id': { stringValue: 'ticket-\ud800' }, 'tokenwatt.team': { stringValue: 'search' } });
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request([span])) });
  assert.equal(res.status, 200);
  assert.equal(s.sink.records[0]?.taskId, null);
  assert.deepEqual(s.sink.records[0]?.labels, { team: 'search' });
  assert.deepEqual(partialSuccessOf(s.answers[0]!), {
    rejectedSpans: 0,
    errorMessage: 'span 00f067aa0ba90201 "span 1" (resourceSpans[0].scopeSpans[0].spans[0]): tokenwatt.task_id: must be well-formed Unicode (it holds a lone UTF-16 surrogate), left out of the record',
  });
});

test('a team or feature an ESG report row is keyed by is left out and named, as the proxy does with its headers; the span is stored', async (t) => {
  const leftOut: string[] = [];
  const s = await startOtlpServer({ onLabelLeftOut: (field) => leftOut.push(field) });
  t.after(() => s.close());
  const span = genAi(1, { 'tokenwatt.team': { stringValue: '(none)' }, 'tokenwatt.feature': { stringValue: 'chat' } });
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request([span])) });
  assert.equal(res.status, 200);
  assert.deepEqual(s.sink.records.map((r) => r.labels), [{ feature: 'chat' }]);
  assert.deepEqual(partialSuccessOf(s.answers[0]!), {
    rejectedSpans: 0,
    errorMessage: 'span 00f067aa0ba90201 "span 1" (resourceSpans[0].scopeSpans[0].spans[0]): tokenwatt.team: "(none)" is reserved: the ESG report keys its rows of requests without a team or feature so, left out of the record',
  });
  // Counted by record field, not by the attribute the sender chose.
  assert.deepEqual(leftOut, ['team']);
});

test('a left-out label is counted once its span is stored: not for a batch answered 429 (the exporter sends it again), nor for a record the sink refused', async (t) => {
  const leftOut: string[] = [];
  const recording = new RecordingSink();
  let mode: 'full' | 'refuse-first' | 'store' = 'full';
  const sink: RequestSink = {
    submit: async (records) => {
      if (mode === 'full') throw new BackpressureError(1);
      if (mode === 'refuse-first') {
        const rest = await recording.submit(records.slice(1));
        return { ...rest, errors: [{ index: 0, field: 'gpus', reason: 'no such GPU on this node: 7' }] };
      }
      return recording.submit(records);
    },
  };
  const s = await startOtlpServer({ sink, onLabelLeftOut: (field) => leftOut.push(field) });
  t.after(() => s.close());
  const spans = [
    genAi(1, { 'tokenwatt.task_id': { stringValue: 't'.repeat(300) }, 'tokenwatt.team': { stringValue: '(unallocated)' } }),
    genAi(2, { 'tokenwatt.attempt': { intValue: '0' } }),
  ];
  const post = () => rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request(spans)) });
  assert.equal((await post()).status, 429);
  assert.deepEqual(leftOut, []);
  mode = 'refuse-first';
  assert.equal((await post()).status, 200);
  assert.deepEqual(leftOut, ['attempt'], 'span 1 was refused: its values are counted with it, as a rejected record');
  mode = 'store';
  assert.equal((await post()).status, 200);
  assert.deepEqual(leftOut.sort(), ['attempt', 'attempt', 'task_id', 'team']);
});

test('a doubleValue written as a string is read only in proto3 JSON\'s forms: "" and "0x1A" are refused by name, "20" and "2e1" are read', async (t) => {
  const s = await startOtlpServer();
  t.after(() => s.close());
  const spans = [
    genAi(1, { 'gen_ai.usage.input_tokens': { doubleValue: '' } }),
    genAi(2, { 'gen_ai.usage.input_tokens': { doubleValue: '0x1A' } }),
    genAi(3, { 'gen_ai.usage.output_tokens': { doubleValue: ' ' } }),
    genAi(4, { 'gen_ai.usage.input_tokens': { doubleValue: '20' }, 'gen_ai.usage.output_tokens': { doubleValue: '2e1' } }),
  ];
  const res = await rawRequest(s.url, { method: 'POST', headers: json, body: JSON.stringify(request(spans)) });
  assert.equal(res.status, 200);
  assert.deepEqual(stored(s), ['4']);
  assert.deepEqual([s.sink.records[0]?.promptTokens, s.sink.records[0]?.completionTokens], [20, 20]);
  const partial = partialSuccessOf(s.answers[0]!);
  assert.equal(partial?.rejectedSpans, 3);
  assert.deepEqual(
    partial?.errorMessage.split('; ').map((m) => m.replace(/^span \w+ "span (\d)" \(.*?\): /, '$1: ')),
    [
      '1: gen_ai.usage.input_tokens: must be an integer token count (doubleValue "" is not a number)',
      '2: gen_ai.usage.input_tokens: must be an integer token count (doubleValue "0x1A" is not a number)',
      '3: gen_ai.usage.output_tokens: must be an integer token count (doubleValue " " is not a number)',
    ],
  );
});
