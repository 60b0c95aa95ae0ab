import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conservationResidual, conservationTolerance, isConserved, worstResidualJ } from '../../model/conservation.js';
import type { GpuPeriodTotals } from '../../model/attribution-types.js';

const totals = (measuredJ: number, idleJ: number, staticJ: number, dynamicJ: number, unattributedJ: number) =>
  ({ measuredJ, idleJ, staticJ, dynamicJ, unattributedJ }) as unknown as GpuPeriodTotals;

test('the residual is recomputed from the parts', () => {
  assert.deepEqual(conservationResidual(totals(100, 40, 20, 30, 5)), { absoluteJ: 5, relative: 0.05 });
  assert.deepEqual(conservationResidual(totals(0, 0, 0, 0, 0)), { absoluteJ: 0, relative: 0 });
  assert.equal(conservationResidual(totals(0, 1, 0, 0, 0)).relative, Infinity);
});

test('tolerance is relative plus absolute', () => {
  assert.equal(conservationTolerance(1e6), 1e-3 + 1e-9);
  assert.equal(isConserved(totals(1e6, 1e6 - 5e-4, 0, 0, 0)), true);
  assert.equal(isConserved(totals(1e6, 1e6 - 2e-3, 0, 0, 0)), false);
  assert.equal(isConserved(totals(1, Number.NaN, 0, 0, 0)), false);
  assert.equal(worstResidualJ([totals(10, 9, 0, 0, 0), totals(10, 12, 0, 0, 0)]), 2);
});
