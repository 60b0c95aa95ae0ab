import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GpuPeriodTotals } from '../../model/attribution-types.js';
import { addShares, emptyAccumulator, finalizeRequest, type RequestResult } from '../../model/request-result.js';
import { HOUR_MS, energyRowsFromTotals, hourStart, usageRowsFromResults } from '../../model/rollup.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { request, T0 } from './helpers.js';

function result(id: string, endMs: number, j: number, labels: Record<string, string> = {}, source = 'test'): RequestResult {
  const record = request({ requestId: id, startMs: endMs - 1000, endMs, promptTokens: 10, cachedTokens: 2, completionTokens: 5, reasoningTokens: 1, labels, source });
  const acc = addShares(emptyAccumulator(), [{ requestId: id, gpuUuid: 'g', staticJ: joules(j / 4), dynamicJ: joules((3 * j) / 4), prefillJ: joules(j / 2), decodeJ: joules(j / 2), activeMs: 1000, concurrencyMs: 1000, estimated: false }]);
  return finalizeRequest(record, acc, { late: false });
}

test('usage rows: requests fold into the hour of their end, keyed by labels after capping', () => {
  const cap = (name: string, value: string | undefined): string => (value === undefined ? '' : value === 'rare' ? 'other' : value);
  const rows = usageRowsFromResults(
    [result('a', T0 + 10_000, 8, { team: 'search' }), result('b', T0 + 20_000, 4, { team: 'search' }), result('c', T0 + HOUR_MS, 4, { team: 'rare' }), result('d', T0 + 5, 4, {}, 'simulated')],
    'node-1',
    false,
    cap,
  );
  assert.equal(rows.length, 3);
  const search = rows.find((r) => r.team === 'search');
  assert.ok(search);
  assert.equal(search.hourStartMs, T0);
  assert.equal(search.requests, 2);
  assert.equal(search.staticJ + search.dynamicJ, 12);
  assert.equal(search.prefillJ, 6);
  assert.deepEqual([search.promptTokens, search.cachedTokens, search.completionTokens, search.reasoningTokens], [20, 4, 10, 2]);
  assert.equal(search.simulated, false);
  const other = rows.find((r) => r.team === 'other');
  assert.equal(other?.hourStartMs, T0 + HOUR_MS);
  assert.equal(rows.find((r) => r.team === '')?.simulated, true);
  assert.deepEqual(usageRowsFromResults([result('a', T0, 1)], 'n', true, cap)[0]?.simulated, true);
});

function totals(measuredJ: number): GpuPeriodTotals {
  return {
    gpuUuid: 'g', gpuIndex: 0, measuredJ: joules(measuredJ), idleJ: joules(measuredJ / 2), staticJ: joules(measuredJ / 4), dynamicJ: joules(measuredJ / 4),
    unattributedJ: joules(0), residualJ: joules(0), estimatedJ: joules(0), coveredMs: 60_000, counterResets: 1, gaps: 2, samples: 600,
    idleBaselineW: watts(50), observedIdlePowerW: null, idleMs: 0,
  };
}

test('energy rows: a period inside an hour is one row', () => {
  const rows = energyRowsFromTotals([totals(600)], T0, T0 + 60_000, 'n', false);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.measuredJ, 600);
  assert.equal(rows[0]?.hourStartMs, T0);
  assert.equal(rows[0]?.gaps, 2);
});

test('energy rows: a period crossing the hour is split in proportion to time; counts stay in the first hour', () => {
  const start = T0 + HOUR_MS - 15_000;
  const rows = energyRowsFromTotals([totals(600)], start, start + 60_000, 'n', true);
  assert.deepEqual(rows.map((r) => r.hourStartMs), [hourStart(start), epochMs(T0 + HOUR_MS)]);
  assert.ok(Math.abs((rows[0]?.measuredJ ?? 0) - 150) < 1e-9);
  assert.ok(Math.abs((rows[0]?.measuredJ ?? 0) + (rows[1]?.measuredJ ?? 0) - 600) < 1e-12);
  assert.ok(Math.abs((rows[1]?.idleJ ?? 0) - 225) < 1e-9);
  assert.deepEqual(rows.map((r) => [r.counterResets, r.gaps, r.simulated]), [[1, 2, true], [0, 0, true]]);
});
