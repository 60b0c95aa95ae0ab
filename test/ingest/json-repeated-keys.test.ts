import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mayRepeatKeys, repeatedKeys } from '../../collectors/json-repeated-keys.js';

/** A JSON value as written, keys possibly repeated: what JSON.parse collapses. */
type Node =
  | { readonly kind: 'object'; readonly entries: readonly (readonly [string, Node])[] }
  | { readonly kind: 'array'; readonly items: readonly Node[] }
  | { readonly kind: 'leaf'; readonly value: string | number | boolean | null };

// Few keys, so that repeats are common; ':', quotes, backslashes and non-ASCII where they can mislead a count.
const key = fc.constantFrom('a', 'b', 'team', 'a:b', '"q"', 'back\\slash', 'é', '');
const leaf = fc.oneof(
  fc.constantFrom<string | number | boolean | null>(null, true, false, 0, -1.5, 1e21, '2026-11-01T10:00:00Z', 'x:y', '', '\\', '"'),
  fc.string({ maxLength: 6 }),
  fc.integer(),
);
const { node } = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf.map((value): Node => ({ kind: 'leaf', value })),
    fc.array(fc.tuple(key, tie('node')), { maxLength: 5 }).map((entries): Node => ({ kind: 'object', entries })),
    fc.array(tie('node'), { maxLength: 4 }).map((items): Node => ({ kind: 'array', items })),
  ),
}));
const record = fc.array(fc.tuple(key, node), { maxLength: 6 }).map((entries): Node => ({ kind: 'object', entries }));

/** The text of a node: with spaces around ':' and ',' or not, and keys escaped (\uXXXX) or not. */
function write(n: Node, spaced: boolean, escaped: boolean): string {
  const sep = spaced ? ' , ' : ',';
  const colon = spaced ? ' : ' : ':';
  if (n.kind === 'leaf') return JSON.stringify(n.value);
  if (n.kind === 'array') return `[${n.items.map((i) => write(i, spaced, escaped)).join(sep)}]`;
  const name = (k: string) => (escaped ? `"${[...k].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(k));
  return `{${n.entries.map(([k, v]) => `${name(k)}${colon}${write(v, spaced, escaped)}`).join(sep)}}`;
}

/** The first repeated key in text order, as a path, or null. */
function firstRepeat(n: Node, path: readonly string[]): string | null {
  if (n.kind === 'leaf') return null;
  if (n.kind === 'array') {
    for (const [i, item] of n.items.entries()) {
      const found = firstRepeat(item, [...path, String(i)]);
      if (found !== null) return found;
    }
    return null;
  }
  const seen = new Set<string>();
  for (const [k, v] of n.entries) {
    if (seen.has(k)) return [...path, k].join('.');
    seen.add(k);
    const found = firstRepeat(v, [...path, k]);
    if (found !== null) return found;
  }
  return null;
}

test('property: a record said to repeat no key repeats none, and the scan names the first repeat by its path', () => {
  let repeats = 0;
  let cleared = 0;
  fc.assert(
    fc.property(record, fc.boolean(), fc.boolean(), (r, spaced, escaped) => {
      const text = write(r, spaced, escaped);
      const value: unknown = JSON.parse(text);
      const expected = firstRepeat(r, []);
      if (expected !== null) repeats += 1;
      // As an NDJSON line among others, whose ':' must not count; nested objects under 'team' counted, others not.
      const body = `{"x:":1}\n${text}\n{"y":":"}`;
      const may = mayRepeatKeys(body, 9, 9 + text.length, value, ['team']);
      if (!may) cleared += 1;
      if (expected !== null) assert.ok(may, `a repeat was cleared: ${text}`);
      assert.deepEqual([...repeatedKeys(text, false)], expected === null ? [] : [[0, expected]], text);
    }),
    { numRuns: 5000, seed: 20261124 },
  );
  // Both sides reached, or the property says nothing.
  assert.ok(repeats > 1000, `only ${repeats} records repeat a key`);
  assert.ok(cleared > 1000, `only ${cleared} records were cleared by the count`);
});

test('property: in an array of records, each record\'s first repeat is named under its index', () => {
  fc.assert(
    fc.property(fc.array(record, { maxLength: 5 }), fc.boolean(), (records, spaced) => {
      const text = `[${records.map((r) => write(r, spaced, false)).join(spaced ? ' ,\n ' : ',')}]`;
      const expected = records.flatMap((r, i) => {
        const found = firstRepeat(r, []);
        return found === null ? [] : [[i, found] as const];
      });
      assert.deepEqual([...repeatedKeys(text, true)], expected, text);
      if (expected.length > 0) assert.ok(mayRepeatKeys(text, 0, text.length, JSON.parse(text), ['team']));
    }),
    { numRuns: 2000, seed: 20261125 },
  );
});

test('records in the usual forms (epoch ms, RFC 3339 times, compact or spaced) are cleared without a scan', () => {
  const epoch = '{"request_id":"r-1","model":"m:7b","gpus":[0],"start":1700000000000,"end":1700000001000,"prompt_tokens":1,"completion_tokens":2,"labels":{"team":"a:b"}}';
  const rfc = JSON.stringify({ request_id: 'r-1', model: 'm', start: '2026-11-01T10:00:00Z', end: '2026-11-01T10:00:01.5+01:00', prompt_tokens: 1, completion_tokens: 2 }, null, 2);
  for (const text of [epoch, rfc]) assert.equal(mayRepeatKeys(text, 0, text.length, JSON.parse(text), ['labels']), false, text);
});
