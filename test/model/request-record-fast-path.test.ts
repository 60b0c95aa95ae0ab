import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OTHER_LABEL_VALUE } from '../../exporters/prometheus/index.js';
import { acceptCommonRecord, checkRequestRecord, parseRequestRecord, requestRecordWireSchema } from '../../model/request-record.js';

/**
 * The fast path must never accept what the wire schema refuses, and must build the same record
 * the schema does. Each field is drawn from values that are valid, at a boundary, or invalid in
 * a way a client really gets wrong (null for absent, strings for numbers, seconds for ms).
 */
const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const MAX_TOKENS = 100_000_000;

const junk = fc.constantFrom<unknown>(null, '', 'x', -1, 1.5, Number.NaN, true, [], {}, '12');
const count = fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.constantFrom(0, MAX_TOKENS, MAX_TOKENS + 1, -1, 2.5), junk);
const time = fc.oneof(
  fc.integer({ min: T0, max: T0 + 10_000 }),
  fc.integer({ min: 0, max: 10_000 }).map((d) => new Date(T0 + d).toISOString()),
  fc.constantFrom<unknown>(T0 / 1000, T0 + 0.5, '2026-11-01 10:00:01Z', '2026-13-01T10:00:00Z', '2026-11-01T10:00:00', '2026-11-31T10:00:00Z', '2026-11-01T24:00:00Z', 946_684_800_000, 7_258_118_400_001),
  junk,
);
const text = (max: number) => fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('', 'a'.repeat(max), 'a'.repeat(max + 1), 'x\ud800', '\udc00y', 'ok\ud83d\ude00', '(none)', '(unallocated)'), junk);
const gpuRef = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constantFrom<unknown>(1023, 1024, -1, 0.5, '', 'GPU-abc', 'x'.repeat(129)));
const labels = fc.oneof(
  fc.dictionary(fc.constantFrom('team', 'feature', '_x', 'A9', '9bad', 'bad-name', 'constructor', 'toString'), fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom<unknown>('v'.repeat(257), 3, null, '(none)', '(unallocated)'))),
  fc.constantFrom<unknown>([], null, 'team=a'),
);

const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 });
const record = fc.record(
  {
    request_id: text(256),
    task_id: maybe(text(256)),
    attempt: maybe(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom<unknown>(10_000, 10_001), junk)),
    model: text(256),
    tier: maybe(text(64)),
    gpus: maybe(fc.oneof(fc.array(gpuRef, { minLength: 0, maxLength: 3 }), junk)),
    start: time,
    first_token: maybe(time),
    end: time,
    prompt_tokens: count,
    cached_tokens: maybe(count),
    completion_tokens: count,
    reasoning_tokens: maybe(count),
    batch_size: maybe(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constantFrom<unknown>(100_000, 100_001), junk)),
    status: maybe(fc.oneof(fc.constantFrom<unknown>('ok', 'error', 'cancelled', 'OK', 'timeout'), junk)),
    labels: maybe(labels),
    tokens_estimated: maybe(fc.oneof(fc.boolean(), junk)),
    granularity: maybe(fc.oneof(fc.constantFrom<unknown>('request', 'interval', 'hour'), junk)),
    source: maybe(text(32)),
    typo_field: maybe(fc.constant(1)),
  },
  { requiredKeys: [] },
).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));

/** Valid values only (edges included), so a good share of records is well formed. */
const validTime = fc.oneof(fc.integer({ min: T0, max: T0 + 10_000 }), fc.integer({ min: 0, max: 10_000 }).map((d) => new Date(T0 + d).toISOString()));
const validRecord = fc.record(
  {
    request_id: fc.string({ minLength: 1, maxLength: 12 }),
    task_id: maybe(fc.string({ minLength: 1, maxLength: 8 })),
    attempt: maybe(fc.integer({ min: 1, max: 10_000 })),
    model: fc.string({ minLength: 1, maxLength: 12 }),
    tier: maybe(fc.string({ minLength: 1, maxLength: 8 })),
    gpus: maybe(fc.array(fc.oneof(fc.integer({ min: 0, max: 1023 }), fc.string({ minLength: 1, maxLength: 8 })), { minLength: 1, maxLength: 3 })),
    times: fc.tuple(validTime, validTime, validTime).map((t) => t.map((v) => (typeof v === 'number' ? v : Date.parse(v))).sort((a, b) => a - b)),
    tokens: fc.tuple(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 5000 })),
    batch_size: maybe(fc.integer({ min: 1, max: 100_000 })),
    status: maybe(fc.constantFrom('ok', 'error', 'cancelled')),
    labels: maybe(fc.dictionary(fc.constantFrom('team', 'feature', '_x', 'A9'), fc.string({ maxLength: 8 }))),
    tokens_estimated: maybe(fc.boolean()),
    granularity: maybe(fc.constantFrom('request', 'interval')),
    source: maybe(fc.string({ minLength: 1, maxLength: 8 })),
  },
  { requiredKeys: ['request_id', 'model', 'times', 'tokens'] },
).map(({ times, tokens, ...rest }) => {
  const [start, firstToken, end] = times as [number, number, number];
  const [prompt, completion] = tokens;
  return Object.fromEntries(Object.entries({
    ...rest, start, first_token: firstToken % 2 === 0 ? firstToken : undefined, end,
    prompt_tokens: prompt, cached_tokens: prompt % 3 === 0 ? undefined : Math.floor(prompt / 2),
    completion_tokens: completion, reasoning_tokens: completion % 2 === 0 ? undefined : Math.floor(completion / 3),
  }).filter(([, v]) => v !== undefined));
});
/** A valid record with one field replaced by a wild value (or added, when the key was absent). */
const mutated = fc.tuple(validRecord, record).chain(([good, wild]) =>
  fc.constantFrom(...Object.keys(wild).concat('typo_field')).map((key) => ({ ...good, [key]: (wild as Record<string, unknown>)[key] ?? null })));
const anyRecord = fc.oneof(validRecord, mutated, record);

/** Through the schema only, as parseRequestRecord did before the fast path. */
function bySchema(input: object) {
  const result = requestRecordWireSchema.safeParse(input);
  return result.success ? result.data : null;
}

test('whatever the fast path accepts, the wire schema accepts with the same record', () => {
  let accepted = 0;
  let refusedBySchema = 0;
  fc.assert(
    fc.property(anyRecord, (input) => {
      const fast = acceptCommonRecord(input);
      const schema = bySchema(input);
      if (schema === null) refusedBySchema += 1;
      if (fast === null) return;
      accepted += 1;
      assert.notEqual(schema, null, `fast path accepted what the schema refuses: ${JSON.stringify(input)}`);
      // The full parse (the schema and fromWire) gives the same RequestRecord.
      const viaSchema = parseRequestRecord(JSON.parse(JSON.stringify(input)) as object, 0);
      assert.ok(viaSchema.ok);
      assert.deepEqual(fast, viaSchema.record);
    }),
    { numRuns: 20_000, seed: 20261122 },
  );
  // The generator must reach both sides, or the property says nothing.
  assert.ok(accepted > 4000, `only ${accepted} records took the fast path`);
  assert.ok(refusedBySchema > 5000, `only ${refusedBySchema} records were invalid`);
});

test('well-formed records of every shape the wire allows take the fast path', () => {
  const full = {
    request_id: 'r1', task_id: 't1', attempt: 2, model: 'llama-8b', tier: 'small', gpus: [0, 'GPU-1'],
    start: '2026-11-01T10:00:00Z', first_token: T0 + 200, end: T0 + 2500, prompt_tokens: 100, cached_tokens: 40,
    completion_tokens: 20, reasoning_tokens: 5, batch_size: 8, status: 'cancelled', labels: { team: 'a', feature: 'b' },
    tokens_estimated: true, granularity: 'interval', source: 'proxy',
  };
  const fast = acceptCommonRecord(JSON.parse(JSON.stringify(full)) as object);
  assert.ok(fast, 'a full valid record must take the fast path');
  assert.deepEqual(fast.gpus, ['0', 'GPU-1']);
  assert.equal(fast.startMs, T0);
  assert.equal(fast.firstTokenMs, T0 + 200);
  assert.ok(acceptCommonRecord({ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 0, completion_tokens: 0 }));
});

test('records the fast path leaves to the schema still get named errors', () => {
  for (const [input, field] of [
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, cached_tokens: null }, 'cached_tokens'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0 - 1, prompt_tokens: 1, completion_tokens: 1 }, 'end'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { 'bad-name': 'x' } }, 'labels.bad-name'],
    // The ESG report's own row keys, as a value it breaks down by.
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { team: '(unallocated)' } }, 'labels.team'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { feature: '(none)' } }, 'labels.feature'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, tier: '(unallocated)' }, 'tier'],
    [{ request_id: 'r', model: '(none)', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1 }, 'model'],
    // The value metric labels fold into past their cap, as a model, tier or any label.
    [{ request_id: 'r', model: OTHER_LABEL_VALUE, start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1 }, 'model'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, tier: OTHER_LABEL_VALUE }, 'tier'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { team: OTHER_LABEL_VALUE } }, 'labels.team'],
    [{ request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { project: OTHER_LABEL_VALUE } }, 'labels.project'],
  ] as const) {
    assert.equal(acceptCommonRecord(input), null);
    const parsed = parseRequestRecord(input, 0);
    assert.equal(parsed.ok, false);
    if (!parsed.ok) assert.ok(parsed.errors.some((e) => e.field === field), `${field}: ${JSON.stringify(parsed.errors)}`);
  }
});

test('checkRequestRecord decides as parseRequestRecord does: the same record, or the field of its first error', () => {
  let refused = 0;
  const notObjects = fc.constantFrom<unknown>(null, 1, 'x', [], [{}], true);
  const oddKeys = fc.constantFrom<unknown>(
    {}, { model: 'm' }, { 'model.x': 1 }, { zz: 1, request_id: 'r' }, JSON.parse('{"__proto__": 1, "request_id": "r"}'),
    JSON.parse('{"request_id": "r", "labels": {"__proto__": "x"}}'), { request_id: 'r', model: 'm', start: T0, end: T0 - 1, prompt_tokens: 1, completion_tokens: 1, zz: 1 },
    // Errors name at most five unknown keys, and clip long key names.
    { request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`u${i}`, 1])) },
    { request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, ['k'.repeat(200)]: 1 },
    { request_id: 'r', model: 'm', start: T0, end: T0, prompt_tokens: 1, completion_tokens: 1, labels: { ['-'.repeat(200)]: 'x' } },
  );
  fc.assert(
    fc.property(fc.oneof(anyRecord, notObjects, oddKeys), (value) => {
      // As ingest sees them: fresh from JSON.parse.
      const input: unknown = value === undefined ? value : JSON.parse(JSON.stringify(value));
      const full = parseRequestRecord(input, 0);
      const checked = checkRequestRecord(input);
      if (full.ok) {
        assert.ok(checked.ok, `refused what parseRequestRecord accepts: ${JSON.stringify(input)}`);
        assert.deepEqual(checked.record, full.record);
        return;
      }
      refused += 1;
      assert.deepEqual(checked, { ok: false, field: full.errors[0]?.field }, JSON.stringify(input));
    }),
    { numRuns: 20_000, seed: 20261124 },
  );
  assert.ok(refused > 5000, `only ${refused} records were refused`);
});
