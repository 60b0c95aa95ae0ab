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

async function setup(t: { after: (fn: () => unknown) => void }) {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const counted: string[] = [];
  const ingest = new IngestService({
    ledger,
    context: () => fakeContext(),
    settledUntil: () => null,
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

test('a sighting that reports only one token count is the same call as its pair with both: one record, not two that count the completion twice', async (t) => {
  /** The app's span of a call whose client reported only the output count: prompt_tokens unknown, not 0. */
  const outputOnly = () => {
    const span = clientSpan('00000000000000c1', 'chatcmpl-7f3a', [0, 300]);
    return { ...span, attributes: span.attributes.filter((a) => a.key !== 'gen_ai.usage.input_tokens') };
  };
  for (const order of ['partial first', 'full first']) {
    const { post, counted, stored, ledger } = await setup(t);
    const partial = () => post([outputOnly()], 'app');
    const full = () => post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
    const answers = order === 'partial first' ? [await partial(), await full()] : [await full(), await partial()];
    assert.deepEqual(answers, [{ status: 200, body: '{}' }, { status: 200, body: '{}' }], order);
    assert.deepEqual(stored(), [`chatcmpl-7f3a/${TRACE}`], `${order}: one record`);
    assert.deepEqual(counted, ['accepted 1', 'duplicate 1'], order);
    const [kept] = ledger.readRequests(0 as never, Number.MAX_SAFE_INTEGER as never);
    assert.equal(kept?.record.completionTokens, 300, `${order}: the completion counted once`);
    // The record that arrived first is kept (README): the partial one stays flagged estimated.
    assert.equal(kept?.record.promptTokens, order === 'full first' ? 1200 : 0);
    assert.equal(kept?.record.tokensEstimated, order === 'partial first');
  }
  // Two calls are still two: a partial sighting whose known count differs is another call.
  const { post, stored } = await setup(t);
  await post([serverSpan('00000000000000c2', '00000000000000c1', 'chatcmpl-7f3a', [1200, 300])], 'vllm');
  const other = clientSpan('00000000000000c3', 'chatcmpl-7f3a', [0, 299]);
  await post([{ ...other, attributes: other.attributes.filter((a) => a.key !== 'gen_ai.usage.input_tokens') }], 'app');
  assert.equal(stored().length, 2);
});
