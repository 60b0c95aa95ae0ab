import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SortedLookup } from '../../model/sorted-lookup.js';
import { addCompensated, compensatedPrefixSums, rangeSum } from '../../model/compensated-sum.js';

// The attribution hot path relies on these two helpers; each is checked here against the obvious
// computation (a linear count, an exact rational sum) on random data, clustered and spread.

const sortedValues = fc.oneof(
  fc.array(fc.double({ min: -1000, max: 11_000, noNaN: true }), { maxLength: 200 }),
  fc.array(fc.integer({ min: 0, max: 20 }).map((v) => v * 500), { maxLength: 200 }), // clustered, with ties
).map((values) => Float64Array.from(values.sort((a, b) => a - b)));

test('SortedLookup counts exactly like a linear scan, for queries inside and outside [from, to)', () => {
  fc.assert(
    fc.property(sortedValues, fc.integer({ min: 1, max: 64 }), fc.array(fc.double({ min: -2000, max: 12_000, noNaN: true }), { minLength: 1, maxLength: 50 }), (values, buckets, queries) => {
      const lookup = new SortedLookup(values, 0, 10_000, new Int32Array(buckets + 1));
      const exactQueries = [...queries, ...Array.from(values.slice(0, 10))]; // values themselves: the tie cases
      for (const t of exactQueries) {
        assert.equal(lookup.countAtMost(t), values.filter((v) => v <= t).length, `countAtMost(${t})`);
        assert.equal(lookup.countBelow(t), values.filter((v) => v < t).length, `countBelow(${t})`);
      }
    }),
    { numRuns: 500, seed: 7 },
  );
});

test('compensated prefix sums give range sums to within a few roundings of the prefix total, and keep small runs after a huge total', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.double({ min: 0, max: 1e12, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 1, maxLength: 100 }), fc.nat(), fc.nat(), (terms, a, b) => {
      const n = terms.length;
      const prefix = compensatedPrefixSums(Float64Array.from(terms), n, new Float64Array(n + 1), new Float64Array(n + 1));
      const from = a % (n + 1);
      const to = from + (b % (n + 1 - from));
      const direct = terms.slice(from, to).reduce((s, t) => s + t, 0);
      // Terms are non-negative (energies, durations, work): the prefix total bounds the error.
      const total = terms.slice(0, to).reduce((s, t) => s + t, 0);
      assert.ok(Math.abs(rangeSum(prefix, from, to) - direct) <= total * 1e-15, `range [${from}, ${to})`);
    }),
    { numRuns: 1000, seed: 11 },
  );
  // A tiny run after a huge total: a plain prefix difference loses it, the compensated one keeps it.
  const terms = Float64Array.from([1e17, 1, 1, 1]);
  const prefix = compensatedPrefixSums(terms, 4, new Float64Array(5), new Float64Array(5));
  assert.equal(rangeSum(prefix, 1, 4), 3);
});

test('addCompensated keeps the exact sum of many terms of both signs in one slot', () => {
  const high = new Float64Array(1);
  const low = new Float64Array(1);
  const terms = [1e16, 1, -1e16, 1, 0.5, 1e-3];
  for (const t of terms) addCompensated(high, low, 0, t);
  assert.equal((high[0] as number) + (low[0] as number), 2.501);
});
