/**
 * One call seen twice (the app's client span and vLLM's llm_request span), and calls that reuse a
 * response id, through the OTLP handler into a real IngestService and ledger.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IngestService } from '../../agent/ingest-service.js';
import { storedIds, tempLedger } from '../ledger/temp-ledger.js';
import { fakeContext } from '../ingest/fake-context.js';
import { startOtlpServer } from './otlp-server.js';
import type { Ledger } from '../../agent/ledger.js';
import type { EpochMs } from '../../model/units.js';
import { resolveRecord } from '../../model/request-record.js';
import { genAiSpanToRecord } from '../../collectors/otlp/genai-span.js';
import { collectSpans, decodeJsonRequest } from '../../collectors/otlp/otlp-spans.js';

const T0 = 1_793_534_400_000_000_000n; // 2026-11-01T12:00:00Z in ns
const MS = 1_000_000n;
const TRACE = 'c'.repeat(32);

type Attr = string | number;
const attributes = (attrs: Record<string, Attr>) =>
  Object.entries(attrs).map(([key, v]) => ({ key, value: typeof v === 'string' ? { stringValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v } }));

/** The app's openai-instrumentation span of a chat call: CLIENT, with the response id it got back. */
function clientSpan(id: string, responseId: string, usage: [number, number], opts: { trace?: string; startMs?: bigint; endMs?: bigint } = {}) {
  return {
    traceId: opts.trace ?? TRACE, spanId: id, name: 'chat llama-8b', kind: 3,
    startTimeUnixNano: String(T0 + (opts.startMs ?? 0n) * MS), endTimeUnixNano: String(T0 + (opts.endMs ?? 2000n) * MS),
    attributes: attributes({ 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'llama-8b', 'gen_ai.response.model': 'llama-8b', 'gen_ai.response.id': responseId, 'gen_ai.usage.input_tokens': usage[0], 'gen_ai.usage.output_tokens': usage[1], 'tokenwatt.team': 'search' }),
  };
}

/** vLLM's own span of the same call (vllm/tracing.py names): SERVER, a child of the client's, gen_ai.request.id = the response id. */
function serverSpan(id: string, parent: string, requestId: string, usage: [number, number]) {
  return {
    traceId: TRACE, spanId: id, parentSpanId: parent, name: 'llm_request', kind: 2,
    startTimeUnixNano: String(T0 + 100n * MS), endTimeUnixNano: String(T0 + 1900n * MS),
    attributes: attributes({ 'gen_ai.response.model': 'llama-8b', 'gen_ai.request.id': requestId, 'gen_ai.usage.prompt_tokens': usage[0], 'gen_ai.usage.completion_tokens': usage[1], 'gen_ai.latency.time_to_first_token': 0.2 }),
  };
}

async function setup(t: { after: (fn: () => unknown) => void }, opts: { settledUntil?: () => number | null; before?: (ledger: Ledger) => void } = {}) {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  opts.before?.(ledger);
  const counted: string[] = [];
  const ingest = new IngestService({
    ledger,
    context: () => fakeContext(),
    settledUntil: () => (opts.settledUntil?.() ?? null) as EpochMs | null,
    onAccepted: (records) => counted.push(`accepted ${records.length}`),
    onDuplicate: (n) => counted.push(`duplicate ${n}`),
    onRejected: (reason, n) => counted.push(`rejected ${reason} ${n}`),
    queueLimit: 1000,
  });
  const s = await startOtlpServer({ sink: ingest });
  t.after(() => s.close());
  const post = async (spans: unknown[], service: string) => {
    const body = JSON.stringify({ resourceSpans: [{ resource: { attributes: attributes({ 'service.name': service }) }, scopeSpans: [{ scope: { name: service }, spans }] }] });
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return { status: res.status, body: await res.text() };
  };
  return { post, counted, stored: () => storedIds(path), ledger };
}

test('one call seen by the app (client span) and by vLLM (llm_request span): one record, the second sighting a duplicate, whichever comes first', async (t) => {
  for (const order of ['client first', 'server first']) {
    const { post, counted, stored } = await setup(t);
    const client = () => post([clientSpan('00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'app');
    const server = () => post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
    const answers = order === 'client first' ? [await client(), await server()] : [await server(), await client()];
    assert.deepEqual(answers, [{ status: 200, body: '{}' }, { status: 200, body: '{}' }], `${order}: both acknowledged, no error`);
    assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`], `${order}: one record, not two`);
    assert.deepEqual(counted, ['accepted 1', 'duplicate 1'], `${order}: the second counted as a duplicate`);
  }
});

test('both sightings in one export (through a collector): still one record', async (t) => {
  const { post, counted, stored } = await setup(t);
  const answer = await post([clientSpan('00000000000000c1', 'chatcmpl-7f3a', [1200, 300]), serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'collector');
  assert.deepEqual(answer, { status: 200, body: '{}' });
  assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`]);
  assert.deepEqual(counted, ['accepted 1', 'duplicate 1']);
});

test('two calls that reuse a response id are both stored: in different traces, and in one trace (other tokens, or other times)', async (t) => {
  const { post, counted, stored } = await setup(t);
  // Ollama's ids are chatcmpl-<0..998>: reused across traces...
  const a = await post([clientSpan('0000000000000002', 'chatcmpl-42', [100, 50], { trace: 'a'.repeat(32) }), clientSpan('0000000000000003', 'chatcmpl-42', [300, 70], { trace: 'b'.repeat(32) })], 'app');
  assert.deepEqual(a, { status: 200, body: '{}' });
  // ...and within one agent's trace: another call, later, with the same counts.
  const b = await post([clientSpan('0000000000000004', 'chatcmpl-42', [100, 50], { trace: 'a'.repeat(32), startMs: 60_000n, endMs: 62_000n })], 'app');
  assert.deepEqual(b, { status: 200, body: '{}' });
  assert.deepEqual(stored(), [`chatcmpl-42/${'a'.repeat(32)}`, `chatcmpl-42/${'a'.repeat(32)}/0000000000000004`, `chatcmpl-42/${'b'.repeat(32)}`]);
  // The exporter sends the last span again: a duplicate under the id it was stored under.
  assert.deepEqual(await post([clientSpan('0000000000000004', 'chatcmpl-42', [100, 50], { trace: 'a'.repeat(32), startMs: 60_000n, endMs: 62_000n })], 'app'), { status: 200, body: '{}' });
  assert.equal(stored().length, 3);
  assert.deepEqual(counted, ['accepted 2', 'accepted 1', 'duplicate 1']);
});

/** The app's span of a call whose client reported only the output count: prompt_tokens unknown, not 0. */
const outputOnly = (spanId = '00000000000000c1', completion = 300) => {
  const span = clientSpan(spanId, 'chatcmpl-7f3a', [0, completion]);
  return { ...span, attributes: span.attributes.filter((a) => a.key !== 'gen_ai.usage.input_tokens') };
};

test('a sighting that reports only one token count and its pair with both are one record with both counts, whichever comes first', async (t) => {
  for (const order of ['partial first', 'full first']) {
    const { post, counted, stored, ledger } = await setup(t);
    const partial = () => post([outputOnly()], 'app');
    const full = () => post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
    const answers = order === 'partial first' ? [await partial(), await full()] : [await full(), await partial()];
    assert.deepEqual(answers, [{ status: 200, body: '{}' }, { status: 200, body: '{}' }], order);
    assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`], `${order}: one record`);
    assert.deepEqual(counted, ['accepted 1', 'duplicate 1'], order);
    const [kept] = ledger.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never);
    // Merged: each count from the side that reported it, the engine's times and first token, the app's labels.
    assert.deepEqual(
      [kept?.record.promptTokens, kept?.record.completionTokens, kept?.record.tokensEstimated],
      [1200, 300, false],
      `${order}: the prompt count the pair brought is kept, the completion counted once`,
    );
    assert.deepEqual([kept?.record.startMs, kept?.record.firstTokenMs, kept?.record.endMs], [Number(T0 / MS) + 100, Number(T0 / MS) + 300, Number(T0 / MS) + 1900], `${order}: the engine's times`);
    assert.deepEqual(kept?.record.labels, { team: 'search' }, `${order}: the app's labels`);
    // Stored once: both sent again are duplicates, and the merged record stays as it is.
    assert.deepEqual([await partial(), await full()], [{ status: 200, body: '{}' }, { status: 200, body: '{}' }]);
    assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`]);
    assert.deepEqual(counted, ['accepted 1', 'duplicate 1', 'duplicate 1', 'duplicate 1'], order);
    assert.deepEqual(ledger.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never)[0]?.record, kept?.record);
  }
  // Two calls are still two: a partial sighting whose known count differs is another call.
  const { post, stored } = await setup(t);
  await post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
  await post([outputOnly('00000000000000c3', 299)], 'app');
  assert.equal(stored().length, 2);
});

test('the pair of a request whose time is already settled is acknowledged and named, and the settled record is not changed', async (t) => {
  let settledUntil: number | null = null;
  const { post, counted, stored, ledger } = await setup(t, { settledUntil: () => settledUntil });
  assert.deepEqual(await post([outputOnly()], 'app'), { status: 200, body: '{}' });
  settledUntil = Number(T0 / MS) + 60_000; // its period settled: its energy is attributed with prompt_tokens unknown
  const answer = await post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
  assert.equal(answer.status, 200);
  const partial = (JSON.parse(answer.body) as { partialSuccess?: { rejectedSpans: string; errorMessage: string } }).partialSuccess;
  assert.equal(partial?.rejectedSpans, '0');
  assert.match(partial?.errorMessage ?? '', /00000000000000c2.*chatcmpl-7f3a\/c+: the other side of a request already settled: acknowledged, its .*prompt_tokens.* not applied/);
  assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`]);
  assert.deepEqual(counted, ['accepted 1', 'duplicate 1']);
  const [kept] = ledger.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never);
  assert.deepEqual([kept?.record.promptTokens, kept?.record.tokensEstimated, kept?.record.startMs], [0, true, Number(T0 / MS)]);
});

test("two identical calls in one trace under one reused response id are two records, and the engine's span of one still matches", async (t) => {
  const { post, counted, stored, ledger } = await setup(t);
  // Ollama-style ids: two parallel calls of one agent step got the same id, the same counts and the same times.
  const first = clientSpan('00000000000000c1', 'chatcmpl-42', [100, 50]);
  const second = clientSpan('00000000000000c3', 'chatcmpl-42', [100, 50]);
  assert.deepEqual(await post([first, second], 'app'), { status: 200, body: '{}' });
  assert.deepEqual(stored(), [`chatcmpl-42/${TRACE}`, `chatcmpl-42/${TRACE}/00000000000000c3`], 'two calls, two records');
  // Each sent again: a duplicate of itself, not a third record.
  assert.deepEqual(await post([second, first], 'app'), { status: 200, body: '{}' });
  // The engine's span of the first call: the other side, one record still.
  assert.deepEqual(await post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-42', [100, 50])], 'vllm'), { status: 200, body: '{}' });
  assert.equal(stored().length, 2);
  assert.deepEqual(counted, ['accepted 2', 'duplicate 2', 'duplicate 1']);
  const tokens = ledger.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never).map((r) => r.record.completionTokens);
  assert.deepEqual(tokens, [50, 50], "each call's tokens counted once");
});

test('a span stored by an agent before e6f87c7 (under its bare response id) and sent again is a duplicate, not a second record', async (t) => {
  const span = clientSpan('00000000000000c1', 'chatcmpl-7f3a', [1200, 300]);
  // What that agent stored: the same record under gen_ai.response.id alone, with no span ids.
  const before = (ledger: Ledger) => {
    const body = Buffer.from(JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans: [span] }] }] }));
    const [otlpSpan] = collectSpans(decodeJsonRequest(body)).spans;
    const verdict = genAiSpanToRecord(otlpSpan!, { attributes: { taskId: [], attempt: [], team: ['tokenwatt.team'], feature: [], labels: {} } } as never);
    assert.ok(verdict.kind === 'record');
    const { otlpSpans: _, ...old } = { ...verdict.record, requestId: 'chatcmpl-7f3a' };
    const resolved = resolveRecord(old, 0, fakeContext());
    assert.ok(resolved.ok);
    ledger.insertRequests([resolved.record], () => false);
  };
  const { post, counted, stored } = await setup(t, { before });
  assert.deepEqual(stored(), ['chatcmpl-7f3a']);
  assert.deepEqual(await post([span], 'app'), { status: 200, body: '{}' });
  assert.deepEqual(stored(), ['chatcmpl-7f3a'], 'the resend found under the old key');
  assert.deepEqual(counted, ['duplicate 1']);
  // Another call that reuses the id, an hour later in another trace, is still stored.
  await post([clientSpan('00000000000000d1', 'chatcmpl-7f3a', [1200, 300], { trace: 'd'.repeat(32), startMs: 3_600_000n, endMs: 3_602_000n })], 'app');
  assert.deepEqual(stored(), ['chatcmpl-7f3a', `chatcmpl-7f3a/${'d'.repeat(32)}`]);
});
