import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BATCH_BUCKETS, BATCH_BUCKET_UPPER_BOUNDS, CACHE_BUCKETS, CACHE_HIT_AT_LEAST, CACHE_MISS_BELOW, batchBucket, cacheBucket } from '../../model/buckets.js';

test('batch buckets: each documented boundary', () => {
  const cases: [number, string][] = [
    [1, '1'], [2, '2-4'], [4, '2-4'], [5, '5-16'], [16, '5-16'], [17, '17-64'], [64, '17-64'],
    [65, '65-256'], [256, '65-256'], [257, '257+'], [100_000, '257+'],
  ];
  for (const [size, bucket] of cases) assert.equal(batchBucket(size), bucket, `size ${size}`);
  assert.deepEqual(BATCH_BUCKETS, ['1', '2-4', '5-16', '17-64', '65-256', '257+']);
  assert.equal(BATCH_BUCKET_UPPER_BOUNDS.length, BATCH_BUCKETS.length - 1);
});

test('batch buckets: a mean size is rounded; nonsense counts as 1', () => {
  assert.equal(batchBucket(1.49), '1');
  assert.equal(batchBucket(1.5), '2-4');
  assert.equal(batchBucket(4.4), '2-4');
  assert.equal(batchBucket(4.5), '5-16');
  assert.equal(batchBucket(0), '1');
  assert.equal(batchBucket(Number.NaN), '1');
  assert.equal(batchBucket(Number.POSITIVE_INFINITY), '1');
});

test('property: batch buckets are monotone in size and always a listed name', () => {
  fc.assert(
    fc.property(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true }), (a, b) => {
      const [lo, hi] = a <= b ? [a, b] : [b, a];
      const i = BATCH_BUCKETS.indexOf(batchBucket(lo));
      const j = BATCH_BUCKETS.indexOf(batchBucket(hi));
      assert.ok(i >= 0 && j >= i);
    }),
  );
});

test('cache buckets: documented ratios', () => {
  assert.equal(CACHE_MISS_BELOW, 0.1);
  assert.equal(CACHE_HIT_AT_LEAST, 0.9);
  assert.equal(cacheBucket(0, 0), 'miss');
  assert.equal(cacheBucket(0, 100), 'miss');
  assert.equal(cacheBucket(9, 100), 'miss');
  assert.equal(cacheBucket(10, 100), 'partial');
  assert.equal(cacheBucket(89, 100), 'partial');
  assert.equal(cacheBucket(90, 100), 'hit');
  assert.equal(cacheBucket(100, 100), 'hit');
  assert.deepEqual(CACHE_BUCKETS, ['miss', 'partial', 'hit']);
});
