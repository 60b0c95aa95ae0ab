import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GpuPeriodTotals } from '../../model/attribution-types.js';
import { breakdownOf, fullyLoadedFactor, fullyLoadedJoules, marginalJoules } from '../../model/fully-loaded.js';

test('fully loaded spreads idle, unattributed and host energy over the attributed work', () => {
  const factor = fullyLoadedFactor({ attributedJ: 100, idleJ: 50, unattributedJ: 10, hostJ: 40 });
  assert.equal(factor, 2);
  assert.equal(fullyLoadedJoules(7, factor), 14);
  assert.equal(marginalJoules(7), 7);
});

test('nothing attributed: no factor, no fully loaded figure', () => {
  assert.equal(fullyLoadedFactor({ attributedJ: 0, idleJ: 50, unattributedJ: 0, hostJ: 0 }), null);
  assert.equal(fullyLoadedJoules(3, null), null);
});

test('breakdown of GPU period totals: fully loaded requests add up to all energy', () => {
  const t = (staticJ: number, dynamicJ: number, idleJ: number, unattributedJ: number) => ({ staticJ, dynamicJ, idleJ, unattributedJ }) as unknown as GpuPeriodTotals;
  const b = breakdownOf([t(10, 30, 20, 0), t(5, 15, 10, 10)], 20);
  assert.deepEqual(b, { attributedJ: 60, idleJ: 30, unattributedJ: 10, hostJ: 20 });
  const factor = fullyLoadedFactor(b) as number;
  assert.equal(60 * factor, 60 + 30 + 10 + 20);
});
