import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jsonTextPieces } from '../../exporters/json-text.js';

const joined = (value: unknown, indent?: number): string => [...jsonTextPieces(value, indent)].join('');

test('json text: the pieces join to JSON.stringify(value, null, indent), for any JSON data and indent', () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.integer({ min: -2, max: 14 }), (value, indent) => {
      assert.equal(joined(value, indent), JSON.stringify(value, null, indent));
    }),
    { numRuns: 500 },
  );
});

test('json text: nested objects and arrays at every depth, with what JSON.stringify leaves out or turns to null', () => {
  const values: unknown[] = [
    { a: [], b: {}, c: [[], {}], d: { e: [{ f: [1, { g: 'h\ni' }] }] } },
    { skipped: undefined, fn: () => 1, kept: 1, [Symbol('s')]: 2 },
    { first: undefined, second: 2 },
    { only: undefined },
    [undefined, () => 1, Symbol('s'), NaN, Infinity, -0, null],
    { date: new Date(0), map: new Map([[1, 2]]), boxed: new Number(3), nested: { date: new Date(1) } },
    { 2: 'b', 1: 'a', z: 'z', '': 'empty', '\u2028': 'separator' },
    Object.assign(Object.create(null) as object, { x: [1, 2, { y: null }] }),
    { rows: Array.from({ length: 5000 }, (_, i) => ({ id: `task-${i}`, joules: i / 7, ok: i % 2 === 0, gpus: [String(i % 8)] })) },
    'top-level string',
    42,
    null,
    [],
    {},
  ];
  for (const value of values) {
    for (const indent of [0, 2, 4]) assert.equal(joined(value, indent), JSON.stringify(value, null, indent));
  }
  assert.equal([...jsonTextPieces(undefined)].join(''), '', 'undefined has no text (JSON.stringify returns undefined)');
});

test('json text: a large array comes in several pieces, none of them the whole text', () => {
  const value = { tasks: Array.from({ length: 20_000 }, (_, i) => ({ task_id: `task-${i}`, joules: i * 1.5 })) };
  const all = [...jsonTextPieces(value, 2)];
  const text = JSON.stringify(value, null, 2);
  assert.equal(all.join(''), text);
  assert.ok(all.length > 10, `${all.length} pieces`);
  assert.ok(Math.max(...all.map((p) => p.length)) < text.length / 10, 'no piece holds most of the text');
});
