import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SameHashChains } from '../../agent/same-hash-chains.js';

/** What previousOf must say, found the slow way. */
function naivePrevious(hashes: readonly number[]): number[] {
  return hashes.map((h, i) => (i === 0 ? -1 : hashes.lastIndexOf(h, i - 1)));
}

const TWO_32 = 4294967296;

test('SameHashChains: each record points at the latest earlier record with the same hash', () => {
  const chains = new SameHashChains();
  // 7 and 7 + 2^32 share their low 32 bits (one slot), and are different hashes.
  const hashes = [7, 7 + TWO_32, 7, 9, 7 + TWO_32, 7, 2 ** 53 - 1, 2 ** 53 - 1];
  chains.chain(hashes);
  assert.deepEqual(hashes.map((_, i) => chains.previousOf(i)), [-1, -1, 0, -1, 1, 2, -1, 6]);
  assert.throws(() => chains.previousOf(8), /record 8 is not in the chained batch of 8/);
  assert.throws(() => chains.previousOf(-1), RangeError);
});

test('SameHashChains: a batch replaces the one before, and batches larger than the tables grow them', () => {
  const chains = new SameHashChains();
  chains.chain([1, 2, 3]);
  chains.chain([3, 4]);
  assert.deepEqual([chains.previousOf(0), chains.previousOf(1)], [-1, -1], 'nothing of the first batch is left');
  const big = Array.from({ length: 5000 }, (_, i) => (i % 170) * TWO_32 + (i % 3)); // many hashes on three slots' worth of low bits
  chains.chain(big);
  assert.deepEqual(big.map((_, i) => chains.previousOf(i)), naivePrevious(big));
  chains.chain([5]);
  assert.equal(chains.previousOf(0), -1);
  assert.throws(() => chains.previousOf(1), RangeError, 'the smaller batch ends where it ends');
});

test('SameHashChains: matches the slow answer on random batches (property)', () => {
  const chains = new SameHashChains(); // one instance throughout, as the ledger keeps one
  // Hashes from a small pool, so that repeats and shared low bits are common.
  const hash = fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 2 ** 21 - 1 })).map(([low, high]) => high * TWO_32 + low);
  fc.assert(
    fc.property(fc.array(hash, { maxLength: 300 }), (hashes) => {
      chains.chain(hashes);
      assert.deepEqual(hashes.map((_, i) => chains.previousOf(i)), naivePrevious(hashes));
    }),
    { numRuns: 300 },
  );
});
