import { test } from 'node:test';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import type { GpuPeriodTotals } from '../../model/attribution-types.js';
import { addEnergyBeforeEndHour, addShares, emptyAccumulator, finalizeRequest, type RequestResult } from '../../model/request-result.js';
import { HOUR_MS, energyBeforeEndHour, energyRowsFromTotals, hourStart, usageRowsFromResults } from '../../model/rollup.js';
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

test('usage rows: energy drawn before the end hour is booked in its own hours, the tokens with it, the request in the end hour', () => {
  const cap = (_name: string, value: string | undefined): string => value ?? '';
  const endMs = T0 + HOUR_MS + 5_000;
  const record = request({ requestId: 'x', startMs: T0 + HOUR_MS - 60_000, endMs, promptTokens: 10, completionTokens: 5 });
  // Two periods: [T0 + 59 min, T0 + 1 h) in the first hour, [T0 + 1 h, T0 + 1 h + 10 s) in the end hour.
  const first = { staticJ: 40, dynamicJ: 80, prefillJ: 30, decodeJ: 90 };
  const second = { staticJ: 4, dynamicJ: 8, prefillJ: 0, decodeJ: 12 };
  const before = energyBeforeEndHour(first, T0 + HOUR_MS - 60_000, T0 + HOUR_MS, endMs);
  assert.deepEqual(before, { [String(T0)]: [40, 80, 30, 90] });
  assert.equal(energyBeforeEndHour(second, T0 + HOUR_MS, T0 + HOUR_MS + 10_000, endMs), null, 'a period in the end hour adds nothing');
  const share = (e: typeof first) => ({ requestId: 'x', gpuUuid: 'g', staticJ: joules(e.staticJ), dynamicJ: joules(e.dynamicJ), prefillJ: joules(e.prefillJ), decodeJ: joules(e.decodeJ), activeMs: 1, concurrencyMs: 1, estimated: false });
  const acc = addShares(addShares(emptyAccumulator(), [share(first)]), [share(second)]);
  const result = finalizeRequest(record, { ...acc, beforeEndHourJ: before ?? {} }, { late: false });
  const rows = usageRowsFromResults([result], 'n', false, cap);
  // 120 J of 132 J in the first hour: 10/11 of the tokens, in whole tokens (4.5 -> 5 of 5, 9.1 -> 9 of 10).
  assert.deepEqual(
    rows.map((r) => [r.hourStartMs, r.requests, r.promptTokens, r.completionTokens, r.staticJ, r.dynamicJ, r.prefillJ, r.decodeJ]),
    [
      [T0, 0, 9, 5, 40, 80, 30, 90],
      [T0 + HOUR_MS, 1, 1, 0, 4, 8, 0, 12],
    ],
  );
});

test('usage rows: tokens split over hours by energy are whole, add up exactly, and keep cached <= prompt and reasoning <= completion (property)', () => {
  const cap = (_name: string, value: string | undefined): string => value ?? '';
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: 0, max: 1000, noNaN: true }), { minLength: 1, maxLength: 5 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 10_000 }),
      (perHour, prompt, cachedRaw, completion, reasoningRaw) => {
        const cached = Math.min(prompt, cachedRaw);
        const reasoning = Math.min(completion, reasoningRaw);
        const hours = perHour.length;
        const endMs = T0 + hours * HOUR_MS - 1;
        const record = request({ requestId: 'p', startMs: T0, endMs, promptTokens: prompt, cachedTokens: cached, completionTokens: completion, reasoningTokens: reasoning });
        let acc = emptyAccumulator();
        for (const [i, j] of perHour.entries()) {
          acc = addShares(acc, [{ requestId: 'p', gpuUuid: 'g', staticJ: joules(j / 3), dynamicJ: joules((2 * j) / 3), prefillJ: joules(j / 2), decodeJ: joules(j / 2), activeMs: 1, concurrencyMs: 1, estimated: false }]);
          const before = energyBeforeEndHour({ staticJ: j / 3, dynamicJ: (2 * j) / 3, prefillJ: j / 2, decodeJ: j / 2 }, T0 + i * HOUR_MS, T0 + i * HOUR_MS + 1000, endMs);
          if (before !== null) acc = { ...acc, beforeEndHourJ: addEnergyBeforeEndHour(acc.beforeEndHourJ, before) };
        }
        const rows = usageRowsFromResults([finalizeRequest(record, acc, { late: false })], 'n', false, cap);
        const sum = (pick: (r: (typeof rows)[number]) => number): number => rows.reduce((s, r) => s + pick(r), 0);
        assert.deepEqual(
          [sum((r) => r.requests), sum((r) => r.promptTokens), sum((r) => r.cachedTokens), sum((r) => r.completionTokens), sum((r) => r.reasoningTokens)],
          [1, prompt, cached, completion, reasoning],
        );
        const total = perHour.reduce((s, j) => s + j, 0);
        for (const r of rows) {
          for (const n of [r.promptTokens, r.cachedTokens, r.completionTokens, r.reasoningTokens]) assert.ok(Number.isInteger(n) && n >= 0, `${n} tokens`);
          assert.ok(r.cachedTokens <= r.promptTokens && r.reasoningTokens <= r.completionTokens);
          // Each hour's tokens are its share of the energy, to within rounding (two parts, half a token each).
          const share = total > 0 ? (r.staticJ + r.dynamicJ) / total : r.hourStartMs === hourStart(endMs) ? 1 : 0;
          assert.ok(Math.abs(r.completionTokens - share * completion) <= 1 + 1e-9, `${r.completionTokens} of ${completion} at share ${share}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('usage rows: a request ending on the hour has no energy in the hour it counts in, not even a rounding rest', () => {
  const cap = (_name: string, value: string | undefined): string => value ?? '';
  const endMs = T0 + 3 * HOUR_MS;
  const record = request({ requestId: 'y', startMs: T0 + 10_000, endMs, completionTokens: 3 });
  // One period in each of its three hours; 0.1 + 0.2 + 0.3, less each again, is not 0 in floating point.
  const parts = [0.1, 0.2, 0.3].map((j) => ({ staticJ: j, dynamicJ: j * 7, prefillJ: j, decodeJ: j * 7 }));
  let acc = emptyAccumulator();
  for (const [i, p] of parts.entries()) {
    acc = addShares(acc, [{ requestId: 'y', gpuUuid: 'g', staticJ: joules(p.staticJ), dynamicJ: joules(p.dynamicJ), prefillJ: joules(p.prefillJ), decodeJ: joules(p.decodeJ), activeMs: 1, concurrencyMs: 1, estimated: false }]);
    const before = energyBeforeEndHour(p, T0 + i * HOUR_MS + 10_000, T0 + i * HOUR_MS + 20_000, endMs);
    assert.ok(before !== null);
    acc = { ...acc, beforeEndHourJ: addEnergyBeforeEndHour(acc.beforeEndHourJ, before) };
  }
  assert.notEqual(acc.staticJ - 0.1 - 0.2 - 0.3, 0, 'the rest is a rounding error, not 0');
  const rows = usageRowsFromResults([finalizeRequest(record, acc, { late: false })], 'n', false, cap);
  const end = rows.find((r) => r.hourStartMs === endMs);
  assert.deepEqual([end?.requests, end?.staticJ, end?.dynamicJ, end?.prefillJ, end?.decodeJ], [1, 0, 0, 0, 0]);
  assert.deepEqual(rows.map((r) => [r.hourStartMs, r.staticJ]), [[T0, 0.1], [T0 + HOUR_MS, 0.2], [T0 + 2 * HOUR_MS, 0.3], [endMs, 0]]);
});

test('energy before the end hour: a period crossing an hour is split in proportion to time, as the energy rows are', () => {
  const start = T0 + HOUR_MS - 15_000;
  const e = { staticJ: 60, dynamicJ: 120, prefillJ: 20, decodeJ: 160 };
  const before = energyBeforeEndHour(e, start, start + 60_000, T0 + 2 * HOUR_MS + 1);
  // A quarter of the period is in the first hour; the rest is in T0 + 1 h, still before the end hour.
  const eps = (a: readonly number[] | undefined, b: readonly number[]) => assert.ok(a !== undefined && a.every((x, i) => Math.abs(x - (b[i] as number)) < 1e-9), `${a} != ${b}`);
  eps(before?.[String(T0)], [15, 30, 5, 40]);
  eps(before?.[String(T0 + HOUR_MS)], [45, 90, 15, 120]);
  const rows = energyRowsFromTotals([totals(600)], start, start + 60_000, 'n', false);
  assert.ok(Math.abs((rows[0]?.staticJ ?? 0) / 150 - 15 / 60) < 1e-12, 'the same quarter as the energy rows');
});
