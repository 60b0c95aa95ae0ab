import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestBatch, parseRequestRecord, parseTimestamp, resolveRecord, toWire } from '../../model/request-record.js';
import type { RecordContext } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';

const base = {
  request_id: 'r1', model: 'llama-8b', start: '2026-11-01T10:00:00Z', end: '2026-11-01T10:00:02.5Z',
  prompt_tokens: 100, completion_tokens: 20,
};

test('a minimal record gets its defaults and epoch-ms times', () => {
  const parsed = parseRequestRecord(base, 0);
  assert.ok(parsed.ok);
  assert.equal(parsed.record.startMs, Date.UTC(2026, 10, 1, 10, 0, 0));
  assert.equal(parsed.record.endMs - parsed.record.startMs, 2500);
  assert.equal(parsed.record.cachedTokens, 0);
  assert.equal(parsed.record.status, 'ok');
  assert.equal(parsed.record.tier, null);
  assert.deepEqual(parsed.record.labels, {});
});

test('each bad field is named with its reason, all at once', () => {
  const parsed = parseRequestRecord({ ...base, end: '2026-11-01T09:00:00Z', cached_tokens: 101, attempt: 0 }, 3);
  assert.equal(parsed.ok, false);
  if (parsed.ok) return;
  const byField = Object.fromEntries(parsed.errors.map((e) => [e.field, e.reason]));
  assert.equal(byField.end, 'end precedes start');
  assert.equal(byField.cached_tokens, 'cached_tokens exceeds prompt_tokens');
  assert.match(byField.attempt ?? '', />= 1/);
  assert.ok(parsed.errors.every((e) => e.index === 3 && e.requestId === 'r1'));
});

test('missing required fields, unknown fields and non-objects are refused by name', () => {
  const missing = parseRequestRecord({ request_id: 'x' }, 0);
  assert.equal(missing.ok, false);
  if (!missing.ok) {
    const fields = missing.errors.map((e) => e.field).sort();
    assert.deepEqual(fields, ['completion_tokens', 'end', 'model', 'prompt_tokens', 'start']);
  }
  const typo = parseRequestRecord({ ...base, prompt_token: 3 }, 0);
  assert.equal(typo.ok, false);
  if (!typo.ok) assert.deepEqual(typo.errors.map((e) => [e.field, e.reason]), [['prompt_token', 'unknown field']]);
  const notObject = parseRequestRecord([1, 2], 7);
  assert.equal(notObject.ok, false);
  if (!notObject.ok) assert.deepEqual(notObject.errors, [{ index: 7, field: '(record)', reason: 'must be a JSON object' }]);
});

test('timestamps: seconds by mistake and malformed strings are refused', () => {
  assert.equal(parseTimestamp(1_700_000_000).ok, false);
  assert.equal(parseTimestamp('yesterday').ok, false);
  assert.equal(parseTimestamp('2026-11-01T10:00:00+02:00').ok, true);
  assert.equal(parseTimestamp(Number.NaN).ok, false);
});

test('RFC 3339 times are held to the same 2000-2200 range as epoch milliseconds; a missing time is "required"', () => {
  const reasons = (patch: Record<string, unknown>): string[] => {
    const parsed = parseRequestRecord({ ...base, ...patch }, 0);
    return parsed.ok ? [] : parsed.errors.map((e) => `${e.field}: ${e.reason}`);
  };
  // Go's zero time.Time, and the Unix epoch: unset times, which would be stored as a 2,000-year request.
  assert.deepEqual(reasons({ start: '0001-01-01T00:00:00Z' }), ['start: out of range (got "0001-01-01T00:00:00Z"; from 2000 to 2200)']);
  assert.deepEqual(reasons({ start: '1970-01-01T00:00:00Z' }), ['start: out of range (got "1970-01-01T00:00:00Z"; from 2000 to 2200)']);
  assert.deepEqual(reasons({ end: '2201-01-01T00:00:00Z' }), ['end: out of range (got "2201-01-01T00:00:00Z"; from 2000 to 2200)']);
  assert.deepEqual(reasons({ start: '2000-01-01T00:00:00Z' }), []);
  assert.deepEqual(reasons({ start: '2026-06-30T23:59:60Z' }), ['start: leap seconds (:60) are not accepted: "2026-06-30T23:59:60Z"; send :59.999']);
  assert.deepEqual(reasons({ start: undefined }), ['start: required']);
  // One reason per count: 2^60 is out of range, not "not an integer".
  assert.deepEqual(reasons({ prompt_tokens: 2 ** 60 }), ['prompt_tokens: must be <= 100000000']);
  assert.deepEqual(reasons({ prompt_tokens: 1.5 }), ['prompt_tokens: must be an integer']);
  assert.deepEqual(reasons({ prompt_tokens: -1 }), ['prompt_tokens: must be >= 0']);
});

test('dates that do not exist are refused, not rolled over into another day', () => {
  for (const bad of ['2026-02-30T00:00:00Z', '2026-04-31T12:00:00Z', '2026-07-01T24:00:00Z', '2026-07-01T12:00:00+24:00']) {
    const r = parseRequestRecord({ request_id: 'd', model: 'm', start: bad, end: '2026-08-01T00:00:00Z', prompt_tokens: 1, completion_tokens: 1 }, 0);
    assert.equal(r.ok, false, bad);
    if (!r.ok) assert.deepEqual(r.errors.map((e) => [e.field, e.reason]), [['start', `not a valid date: "${bad}"`]]);
  }
  const leap = parseRequestRecord({ request_id: 'd', model: 'm', start: '2028-02-29T23:59:59.5+05:30', end: '2028-03-01T00:00:00Z', prompt_tokens: 1, completion_tokens: 1 }, 0);
  assert.ok(leap.ok && leap.record.startMs === Date.UTC(2028, 1, 29, 18, 29, 59, 500));
});

test('text holding a lone UTF-16 surrogate is refused by field (it would not read back as sent)', () => {
  const r = parseRequestRecord({ request_id: 'r\ud800', model: 'm', task_id: '\udc00', labels: { team: 'a\ud800' }, start: 1_800_000_000_000, end: 1_800_000_000_001, prompt_tokens: 1, completion_tokens: 1 }, 0);
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.errors.map((e) => e.field).sort(), ['labels.team', 'request_id', 'task_id']);
  if (!r.ok) assert.ok(r.errors.every((e) => /lone UTF-16 surrogate/.test(e.reason)));
  const pair = parseRequestRecord({ request_id: 'r', model: 'emoji-\ud83d\ude00', start: 1_800_000_000_000, end: 1_800_000_000_001, prompt_tokens: 1, completion_tokens: 1 }, 0);
  assert.ok(pair.ok, 'a surrogate pair is a real character');
});

test('a batch keeps the good records and reports the bad ones by index', () => {
  const { records, errors } = parseRequestBatch([base, { ...base, request_id: 'r2', prompt_tokens: -1 }, { ...base, request_id: 'r3' }]);
  assert.deepEqual(records.map((r) => r.requestId), ['r1', 'r3']);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.index, 1);
  assert.equal(errors[0]?.field, 'prompt_tokens');
});

test('wire round trip preserves every field', () => {
  const full = {
    ...base, task_id: 't', attempt: 2, tier: 'small', gpus: [0, 'GPU-abc'], first_token: '2026-11-01T10:00:00.5Z',
    cached_tokens: 40, reasoning_tokens: 5, batch_size: 12, status: 'cancelled', labels: { team: 'search' },
  };
  const once = parseRequestRecord(full, 0);
  assert.ok(once.ok);
  const twice = parseRequestRecord(toWire(once.record), 0);
  assert.ok(twice.ok);
  assert.deepEqual(twice.record, once.record);
});

test('resolveRecord refuses unknown GPUs and records outside the window, and maps tiers', () => {
  const ctx: RecordContext = {
    resolveGpu: (ref) => ({ '0': 'GPU-a', 'GPU-a': 'GPU-a', 'MIG-x': 'GPU-a' } as Record<string, string>)[ref],
    defaultGpus: (model) => (model === 'llama-8b' ? ['GPU-a'] : undefined),
    tierOf: (model) => (model === 'llama-8b' ? 'small' : undefined),
    retainedFromMs: epochMs(Date.UTC(2026, 10, 1, 9)),
    acceptUntilMs: epochMs(Date.UTC(2026, 10, 1, 11)),
  };
  const ok = parseRequestRecord(base, 0);
  assert.ok(ok.ok);
  const resolved = resolveRecord(ok.record, 0, ctx);
  assert.ok(resolved.ok);
  assert.deepEqual(resolved.record.gpus, ['GPU-a']);
  assert.equal(resolved.record.tier, 'small');

  const mig = parseRequestRecord({ ...base, gpus: ['MIG-x', 0] }, 0);
  assert.ok(mig.ok);
  const migResolved = resolveRecord(mig.record, 0, ctx);
  assert.ok(migResolved.ok);
  assert.deepEqual(migResolved.record.gpus, ['GPU-a'], 'MIG instance and its parent count once');

  const bad = parseRequestRecord({ ...base, model: 'other', gpus: [5], start: '2026-11-01T08:00:00Z', end: '2026-11-01T08:00:01Z' }, 4);
  assert.ok(bad.ok);
  const refused = resolveRecord(bad.record, 4, ctx);
  assert.equal(refused.ok, false);
  if (!refused.ok) {
    assert.deepEqual(refused.errors.map((e) => e.field).sort(), ['end', 'gpus']);
    assert.match(refused.errors.find((e) => e.field === 'gpus')?.reason ?? '', /no such GPU on this node: 5/);
  }
  const noReplica = parseRequestRecord({ ...base, model: 'other' }, 0);
  assert.ok(noReplica.ok);
  const r = resolveRecord(noReplica.record, 0, ctx);
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.errors[0]?.reason ?? '', /no replica is configured/);
});

test('an end in the future, fractional epoch milliseconds and a __proto__ label are refused by name', () => {
  const ctx: RecordContext = {
    resolveGpu: (ref) => (ref === '0' ? 'GPU-a' : undefined),
    defaultGpus: () => undefined,
    tierOf: () => undefined,
    retainedFromMs: epochMs(Date.UTC(2026, 10, 1, 9)),
    acceptUntilMs: epochMs(Date.UTC(2026, 10, 1, 11)),
  };
  const farEnd = parseRequestRecord({ ...base, gpus: [0], end: 7_000_000_000_000 }, 0);
  assert.ok(farEnd.ok);
  const refused = resolveRecord(farEnd.record, 0, ctx);
  assert.equal(refused.ok, false);
  if (!refused.ok) assert.deepEqual(refused.errors.map((e) => [e.field, /in the future/.test(e.reason)]), [['end', true]]);

  const fractional = parseRequestRecord({ ...base, start: 1_795_366_065_546.5, end: 1_795_366_066_000 }, 0);
  assert.equal(fractional.ok, false);
  if (!fractional.ok) assert.match(fractional.errors[0]?.reason ?? '', /whole number of epoch milliseconds/);

  const proto = parseRequestRecord(JSON.parse(`{"request_id":"p","model":"m","start":1795366065546,"end":1795366066000,"prompt_tokens":1,"completion_tokens":1,"labels":{"__proto__":"x","team":"a"}}`), 2);
  assert.equal(proto.ok, false);
  if (!proto.ok) assert.deepEqual(proto.errors, [{ index: 2, requestId: 'p', field: 'labels.__proto__', reason: 'reserved label name' }]);
});

test('more than 32 labels is one error, however many there are and whatever they hold', () => {
  const labels = (n: number, name: (i: number) => string) => Object.fromEntries(Array.from({ length: n }, (_, i) => [name(i), 'x']));
  assert.ok(parseRequestRecord({ ...base, labels: labels(32, (i) => `l${i}`) }, 0).ok);
  for (const input of [{ ...base, labels: labels(33, (i) => `l${i}`) }, { ...base, labels: labels(200_000, (i) => `bad-${i}`) }]) {
    const parsed = parseRequestRecord(JSON.parse(JSON.stringify(input)), 4);
    assert.deepEqual(parsed, { ok: false, errors: [{ index: 4, requestId: 'r1', field: 'labels', reason: 'at most 32 labels' }] });
  }
});

test('a bad label name and a bad GPU entry say what they must be', () => {
  const reasons = (extra: Record<string, unknown>) => {
    const parsed = parseRequestRecord({ ...base, ...extra }, 0);
    return parsed.ok ? [] : parsed.errors.map((e) => `${e.field}: ${e.reason}`);
  };
  assert.deepEqual(reasons({ labels: { 'a-b': 'x' } }), ['labels.a-b: a label name must match [a-zA-Z_][a-zA-Z0-9_]* and be at most 64 characters']);
  const entry = 'must be a GPU index (a whole number from 0 to 1023) or a GPU UUID string';
  assert.deepEqual(reasons({ gpus: [1.5, null, 0, { uuid: 'GPU-1' }] }), [`gpus.0: ${entry}, got 1.5`, `gpus.1: ${entry}, got null`, `gpus.3: ${entry}, got {"uuid":"GPU-1"}`]);
  assert.deepEqual(reasons({ gpus: [1024, -1, ''] }), ['gpus.0: a GPU index is a whole number from 0 to 1023', 'gpus.1: a GPU index is a whole number from 0 to 1023', 'gpus.2: a GPU UUID must not be empty']);
});
