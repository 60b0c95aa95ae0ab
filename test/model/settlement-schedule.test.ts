import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alignDown, countedUntilAfter, duePeriods, isLateRecord, recordLateness } from '../../model/settlement-schedule.js';
import { epochMs } from '../../model/units.js';
import { T0 } from './helpers.js';

const P = 10_000;

test('before the first settlement, periods start at the grid period holding the first data', () => {
  const due = duePeriods(null, T0 + 65_000, P, 30_000, epochMs(T0 + 4_321));
  assert.deepEqual(due.map((p) => [p.startMs - T0, p.endMs - T0]), [[0, 10_000], [10_000, 20_000], [20_000, 30_000]]);
});

test('after a settlement, periods continue from it and stop at now - lateness', () => {
  const due = duePeriods(epochMs(T0 + 20_000), T0 + 50_000, P, 20_000, epochMs(T0));
  assert.deepEqual(due.map((p) => p.startMs - T0), [20_000]);
  assert.deepEqual(duePeriods(epochMs(T0 + 20_000), T0 + 49_999, P, 20_000, null), []);
  assert.deepEqual(duePeriods(null, T0 + 50_000, P, 0, null), []);
});

test('an off-grid settledUntil is brought back onto the grid; the limit bounds catch-up', () => {
  const due = duePeriods(epochMs(T0 + 2_500), T0 + 30_000, P, 0, null);
  assert.deepEqual(due.map((p) => [p.startMs - T0, p.endMs - T0]), [[2_500, 10_000], [10_000, 20_000], [20_000, 30_000]]);
  assert.equal(duePeriods(epochMs(T0), T0 + 1e9, P, 0, null, 5).length, 5);
  assert.throws(() => duePeriods(null, T0, 0, 0, epochMs(T0)), /periodMs/);
  assert.equal(alignDown(T0 + 12_345, P), T0 + 10_000);
});

test('late records: start before settledUntil; full when all their energy was settled', () => {
  const s = epochMs(T0 + 10_000);
  const r = (start: number, end: number) => ({ startMs: epochMs(T0 + start), endMs: epochMs(T0 + end) });
  assert.equal(recordLateness(r(10_000, 12_000), s), 'on-time');
  assert.equal(recordLateness(r(9_000, 12_000), s), 'partial');
  assert.equal(recordLateness(r(8_000, 10_000), s), 'full');
  assert.equal(recordLateness(r(9_999, 9_999), s), 'full');
  assert.equal(isLateRecord(r(9_000, 12_000), s), true);
  assert.equal(isLateRecord(r(0, 1), null), false);
});

test('countedUntilAfter: a period with a sample at or after its end is counted to its end, else up to its last sample', () => {
  const at = (...ts: number[]) => ts.map((t) => ({ timestampMs: epochMs(T0 + t) }));
  const end = epochMs(T0 + 10_000);
  assert.equal(countedUntilAfter(at(-50, 4_000, 10_000), end, epochMs(T0)), end);
  assert.equal(countedUntilAfter(at(-50, 4_000, 12_000), end, epochMs(T0)), end);
  assert.equal(countedUntilAfter(at(-50, 4_000, 9_950), end, epochMs(T0)), T0 + 9_950, 'the tail after the last sample is owed');
  assert.equal(countedUntilAfter(at(-50), end, epochMs(T0)), T0, 'no new sample: still counted to the period start');
  assert.equal(countedUntilAfter(at(-7_000), end, epochMs(T0 - 7_000)), T0 - 7_000, 'a stall goes on: still owed from its last sample');
  assert.equal(countedUntilAfter([], end, epochMs(T0)), T0, 'a GPU without samples owes nothing');
});
