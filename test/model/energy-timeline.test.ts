import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildEnergyTimeline, countableBeforeNextReading, foldCounterHighWater, sliceInterval, toEnergyIntervals } from '../../model/energy-timeline.js';
import { CONFIG, sample, T0 } from './helpers.js';

const cfg = { samplePeriodMs: 100, maxAttributableGapMs: 2_000 };

test('counter delta is used when both ends have the counter', () => {
  // power says 100 W (10 J per 100 ms) but the counter says 12 J: the counter wins
  const [iv] = toEnergyIntervals([sample('g', T0, 100, 500), sample('g', T0 + 100, 100, 512)], cfg);
  assert.ok(iv);
  assert.equal(iv.energyJ, 12);
  assert.equal(iv.method, 'counter');
  assert.equal(iv.estimated, false);
  assert.equal(iv.meanPowerW, 120);
});

test('without a counter the trapezoid of power is used, unflagged', () => {
  const [iv] = toEnergyIntervals([sample('g', T0, 100), sample('g', T0 + 200, 300)], cfg);
  assert.ok(iv);
  assert.equal(iv.energyJ, 40); // (100 + 300) / 2 W x 0.2 s
  assert.equal(iv.method, 'integrated');
  assert.equal(iv.estimated, false);
});

test('a counter going backwards is a reset: trapezoid, flagged', () => {
  const [iv] = toEnergyIntervals([sample('g', T0, 100, 9000), sample('g', T0 + 100, 200, 3)], cfg);
  assert.ok(iv);
  assert.equal(iv.energyJ, 15);
  assert.equal(iv.method, 'integrated');
  assert.equal(iv.counterReset, true);
  assert.equal(iv.estimated, true);
});

test('a reading a little below the one before is a glitch, not a reset: read as the highest, so no joule counts twice', () => {
  // 300 W steady; the middle reading is 0.1 J low (the true counter was 1030 J).
  const timeline = buildEnergyTimeline([sample('g', T0, 300, 1000), sample('g', T0 + 100, 300, 999.9), sample('g', T0 + 200, 300, 1060)], cfg);
  assert.deepEqual(timeline.intervals.map((i) => [i.energyJ, i.method, i.counterReset, i.estimated]), [
    [0, 'counter', false, true],
    [60, 'counter', false, true],
  ]);
  // A run of low readings, judged against the highest reading so far, not the one before.
  const run = toEnergyIntervals([1000, 995, 996, 997, 1040].map((e, k) => sample('g', T0 + 100 * k, 300, e)), cfg);
  assert.deepEqual(run.map((i) => [i.energyJ, i.estimated]), [[0, true], [0, true], [0, true], [40, true]]);
});

test('with no power at all (a counter-only trace), a glitch loses nothing: the counter\'s increase is counted', () => {
  const timeline = buildEnergyTimeline([100_000, 100_030, 100_025, 100_090, 100_120].map((e, k) => sample('g', T0 + 100 * k, null, e)), cfg);
  assert.deepEqual(timeline.uncovered, []);
  assert.equal(timeline.intervals.reduce((sum, i) => sum + i.energyJ, 0), 120);
});

test('a reading far above the highest one (more than 5,000 W since it) is a glitch: the counter is used again at once', () => {
  // 1 Hz at 300 W on a long-running counter; one reading 0.5% high.
  const readings = [1e8, 1e8 + 300, 1e8 * 1.005, 1e8 + 900, 1e8 + 1200, 1e8 + 1500];
  const ivs = toEnergyIntervals(readings.map((e, k) => sample('g', T0 + 1000 * k, 300, e)), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(ivs.map((i) => [i.energyJ, i.method, i.estimated]), [
    [300, 'counter', false],
    [0, 'counter', true],
    [600, 'counter', true],
    [300, 'counter', false],
    [300, 'counter', false],
  ]);
});

test('one bogus reading of 0 that the next reading climbs straight back from is a glitch, not a reset', () => {
  // 300 W at 1 Hz on a 1 MJ counter; the reading at 10 s is 0. As a reset, the whole 1 MJ was counted again.
  const readings = [0, 1, 2, 3, 4].map((k) => 1e6 + 300 * k);
  readings[2] = 0;
  const ivs = toEnergyIntervals(readings.map((e, k) => sample('g', T0 + 1000 * k, 300, e)), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(ivs.map((i) => [i.energyJ, i.counterReset]), [[300, false], [0, false], [600, false], [300, false]]);
  // A real reset: the counter goes on from its new low value.
  const reset = toEnergyIntervals([1e6, 1e6 + 300, 10, 310, 610].map((e, k) => sample('g', T0 + 1000 * k, 300, e)), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(reset.map((i) => [i.energyJ, i.counterReset]), [[300, false], [300, true], [300, false], [300, false]]);
});

test('a window ending in a counter drop that no reading follows yet is counted only up to the reading before it', () => {
  // 300 W at 1 Hz on a 1 MJ counter; the period ends at 3 s.
  const end = T0 + 3000;
  const window = (...energies: (number | null)[]) => energies.map((e, k) => sample('g', T0 + 1000 * k, 300, e));
  const mark = { energyJ: 1e6 - 300, atMs: T0 - 1000 };
  // A drop to 0 at the period end, or before it: reset or glitch only the next reading tells.
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 1e6 + 600, 0), mark, end), 3);
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 0), mark, end), 2);
  // The reading after it is in: the window is judged whole.
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 0, 1e6 + 900), mark, end), 4);
  // After the end, its interval is not this period's; judged against the mark the window starts from,
  // repeated timestamps merged (the last usable reading of the drop's instant is the drop).
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 1e6 + 600, 1e6 + 900, 0), mark, end), 5);
  assert.equal(countableBeforeNextReading([...window(1e6, 1e6 + 300, 1e6 + 600), sample('g', T0 + 2000, 300, 0), sample('g', T0 + 2000, 300, null)], mark, end), 2);
  assert.equal(countableBeforeNextReading(window(1e6 - 900), mark, end), 1, 'a lone reading closes no interval');
  // Judged against the mark as the window's readings leave it: after a reset to 500, 200 is a drop too.
  assert.equal(countableBeforeNextReading(window(500, 200), mark, end), 1);
  assert.equal(countableBeforeNextReading(window(500, 800), mark, end), 2);
  // Readings that need nothing after them to be judged: an advance, none at all.
  for (const last of [1e6 + 600, null]) assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, last), mark, end), 3, String(last));
  // A glitch within 1% does: it is read as the mark only if the counter climbs on from the mark after it.
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 1e6 + 290), mark, end), 2);
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 1e6 + 290, 1e6 + 900), mark, end), 4);
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 1e6 + 290, null), mark, end), 4);
  // Nor is the drop counted before the readings that judge it are in: the one after it is missing.
  assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, 0, null), mark, end), 2);
  // A judgement that looked at the reading that cannot be judged yet waits with it: the drop at 1 s
  // is a reset by the next reading, which is a drop in turn.
  assert.equal(countableBeforeNextReading(window(1e6, 500, 200), mark, end), 1);
});

test('a counter the driver updates less often than it is sampled is not a spike: its steps are judged from when it changed', () => {
  // 100 Hz samples of a 1000 W GPU whose counter moves every 100 ms, 100 J at a time.
  const ivs = toEnergyIntervals(Array.from({ length: 301 }, (_, k) => sample('g', T0 + 10 * k, 1000, 1e6 + Math.floor(k / 10) * 100)), { samplePeriodMs: 10, maxAttributableGapMs: 30_000 });
  assert.equal(ivs.filter((i) => i.estimated).length, 0);
  assert.equal(ivs.reduce((sum, i) => sum + i.energyJ, 0), 3000);
});

test('a reset after a glitch is still a reset, flagged on the interval it ends', () => {
  const ivs = toEnergyIntervals([sample('g', T0, 300, 9000), sample('g', T0 + 100, 300, 8990), sample('g', T0 + 200, 300, 4), sample('g', T0 + 300, 300, 34)], cfg);
  // The glitch is read as missing: no counter delta from the mark follows to count its interval.
  assert.deepEqual(ivs.map((i) => [i.counterReset, i.method, i.energyJ]), [[false, 'integrated', 30], [true, 'integrated', 30], [false, 'counter', 30]]);
  // More than 1% below the highest reading is a reset, not a glitch.
  const [reset] = toEnergyIntervals([sample('g', T0, 300, 9000), sample('g', T0 + 100, 300, 8909)], cfg);
  assert.equal(reset?.counterReset, true);
  const [glitch] = toEnergyIntervals([sample('g', T0, 300, 9000), sample('g', T0 + 100, 300, 8910)], cfg);
  assert.equal(glitch?.counterReset, false);
});

test('the high-water mark folded before a window merges repeated timestamps as the timeline does', () => {
  // Two readings at one instant: the timeline keeps the last usable one (1000), not the first (1040).
  const before = [sample('g', T0, 300, 970), sample('g', T0 + 100, 300, 1040), sample('g', T0 + 100, 300, 1000)];
  assert.deepEqual(foldCounterHighWater(null, before, 3), { energyJ: 1000, atMs: T0 + 100 });
  const whole = buildEnergyTimeline([...before, sample('g', T0 + 200, 300, 1030)], cfg).intervals.map((i) => i.energyJ);
  const cut = buildEnergyTimeline([sample('g', T0 + 100, 300, 1000), sample('g', T0 + 200, 300, 1030)], cfg, foldCounterHighWater(null, before, 1)).intervals.map((i) => i.energyJ);
  assert.deepEqual(cut, whole.slice(1));
});

test('one end without power uses the other end, flagged estimated', () => {
  const [iv] = toEnergyIntervals([sample('g', T0, null), sample('g', T0 + 100, 250)], cfg);
  assert.ok(iv);
  assert.equal(iv.energyJ, 25);
  assert.equal(iv.estimated, true);
});

test('a counter reading missing at one end falls back to power, flagged estimated', () => {
  const [iv] = toEnergyIntervals([sample('g', T0, 100, 50), sample('g', T0 + 100, 100, null)], cfg);
  assert.ok(iv);
  assert.equal(iv.energyJ, 10);
  assert.equal(iv.method, 'integrated');
  assert.equal(iv.estimated, true);
});

test('no usable reading on either side leaves the time uncovered (a gap), not an interval', () => {
  const timeline = buildEnergyTimeline(
    [sample('g', T0, 100), sample('g', T0 + 100, null), sample('g', T0 + 200, null), sample('g', T0 + 300, 100)],
    cfg,
  );
  assert.deepEqual(timeline.intervals.map((i) => [i.startMs - T0, i.endMs - T0]), [[0, 100], [200, 300]]);
  assert.deepEqual(timeline.uncovered.map((u) => [u.startMs - T0, u.endMs - T0]), [[100, 200]]);
});

test('a reset without power is uncovered time flagged as a reset', () => {
  const timeline = buildEnergyTimeline([sample('g', T0, null, 100), sample('g', T0 + 100, null, 5)], cfg);
  assert.equal(timeline.intervals.length, 0);
  assert.equal(timeline.uncovered[0]?.counterReset, true);
});

test('gaps longer than 3 sampling periods are estimated; longer than the limit, unattributable', () => {
  const ivs = toEnergyIntervals(
    [sample('g', T0, 100, 0), sample('g', T0 + 300, 100, 30), sample('g', T0 + 301 + 300, 100, 60), sample('g', T0 + 3000, 100, 300)],
    cfg,
  );
  assert.deepEqual(ivs.map((i) => [i.gap, i.estimated, i.unattributable]), [
    [false, false, false], // exactly 3 periods: not a gap
    [true, true, false],
    [true, true, true], // 2399 ms > 2000 ms
  ]);
  assert.equal(ivs[2]?.energyJ, 240); // counter delta is still exact
});

test('unsorted input is sorted; repeated timestamps merge; bad readings count as missing', () => {
  const ivs = toEnergyIntervals(
    [sample('g', T0 + 200, 100), sample('g', T0, Number.NaN), sample('g', T0, 100), sample('g', T0 + 100, -5), sample('g', T0 + 100, 300)],
    cfg,
  );
  assert.deepEqual(ivs.map((i) => [i.startMs - T0, i.endMs - T0, i.energyJ]), [[0, 100, 20], [100, 200, 20]]);
});

test('slicing splits energy in proportion to time', () => {
  const [iv] = toEnergyIntervals([sample('g', T0, 100), sample('g', T0 + 100, 100)], cfg);
  assert.ok(iv);
  assert.equal(sliceInterval(iv, T0 + 25, T0 + 75)?.energyJ, 5);
  assert.equal(sliceInterval(iv, T0 - 50, T0 + 25)?.energyJ, 2.5);
  assert.equal(sliceInterval(iv, T0 + 100, T0 + 200), null);
  assert.equal(sliceInterval(iv, T0 - 100, T0 + 200), iv);
});

test('property: slices at shared cut points add up to the interval', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.array(fc.integer({ min: 1, max: 99_999 }), { maxLength: 12 }),
      (share, length, rawCuts) => {
        // Up to a mean 4,999 W: more would be a counter spike (MAX_PLAUSIBLE_POWER_W), not energy.
        const energy = share * 4.999 * length;
        const cuts = [...new Set(rawCuts.filter((c) => c < length))].sort((a, b) => a - b);
        const iv = toEnergyIntervals([sample('g', T0, 0, 0), sample('g', T0 + length, 0, energy)], { ...CONFIG, samplePeriodMs: 1e9, maxAttributableGapMs: 1e9 })[0];
        assert.ok(iv);
        const points = [0, ...cuts, length];
        let sum = 0;
        for (let i = 0; i + 1 < points.length; i += 1) {
          const part = sliceInterval(iv, T0 + (points[i] as number), T0 + (points[i + 1] as number));
          assert.ok(part && part.energyJ >= 0);
          sum += part.energyJ;
        }
        assert.ok(Math.abs(sum - energy) <= 1e-12 * energy + 1e-12, `${sum} vs ${energy}`);
      },
    ),
  );
});

/**
 * A GPU drawing 300 W at 1 Hz on a 1 MJ counter for `n` seconds: the truth by construction is
 * 300 J a second, whatever the counter reads. `energy` overrides the reading at a second (null:
 * the energy call failed, power still read).
 */
function steadyRun(n: number, energy: ReadonlyMap<number, number | null> = new Map()) {
  return Array.from({ length: n + 1 }, (_, k) => sample('g', T0 + 1000 * k, 300, energy.has(k) ? (energy.get(k) as number | null) : 1e6 + 300 * k));
}
const hz1 = { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 };
const totalJ = (intervals: readonly { energyJ: number }[]) => intervals.reduce((sum, i) => sum + i.energyJ, 0);

test('a glitch beside a missing counter reading is read as missing too: no stretch counted from power is counted again by the counter, none is lost', () => {
  // After a reset at 2 or 3 s, the counter goes on from 10 J.
  const afterReset = (at: number) => Array.from({ length: 11 - at }, (_, k) => [at + k, 10 + 300 * k] as [number, number]);
  // Each case: the readings that differ from the truth, and the seconds of the bad readings.
  const cases: [string, [number, number | null][], number[]][] = [
    // Before the glitch: [0,1] and [1,2] come from power; from the mark (at 0 s) to 3 s the counter counts them again.
    ['missing, then a 0', [[1, null], [2, 0]], [1, 2]],
    ['missing, then a dip', [[1, null], [2, 1e6 - 5]], [1, 2]],
    ['missing, then a spike', [[1, null], [2, 2e6]], [1, 2]],
    ['two missing, then a dip', [[1, null], [2, null], [3, 1e6 - 5]], [1, 2, 3]],
    // After it: [0,1] counts 0 (read as the mark), and no counter delta from the mark follows.
    ['a dip, then missing', [[1, 1e6 - 5], [2, null]], [1, 2]],
    ['a run of dips, then missing', [[1, 1e6 - 5], [2, 1e6 - 4], [3, null]], [1, 2, 3]],
    ['a dip, then a reset', [[1, 1e6 - 5], ...afterReset(2)], [1]],
    ['a dip, missing, then a reset', [[1, 1e6 - 5], [2, null], ...afterReset(3)], [1, 2]],
    // A reset beside a missing reading was already right: the counter starts again at the reset.
    ['missing, then a reset', [[1, null], ...afterReset(2)], [1]],
    ['a reset, then missing', [[2, null], ...afterReset(1).filter(([k]) => k !== 2)], [1, 2]],
  ];
  for (const [what, overrides, bad] of cases) {
    const timeline = buildEnergyTimeline(steadyRun(10, new Map(overrides)), hz1);
    assert.deepEqual(timeline.uncovered, [], what);
    assert.ok(Math.abs(totalJ(timeline.intervals) - 3000) < 1e-6, `${what}: counted ${totalJ(timeline.intervals)} J of 3000 J`);
    // The intervals beside a bad reading are guesses.
    for (const k of bad) {
      for (const iv of timeline.intervals.filter((i) => i.startMs === T0 + 1000 * k || i.endMs === T0 + 1000 * k)) assert.equal(iv.estimated, true, `${what}: interval at ${k} s`);
    }
  }
  // The last reading a glitch: no reading after it shows the counter went on, so its interval is counted from power.
  const last = buildEnergyTimeline(steadyRun(2, new Map([[2, 1e6 + 295]])), hz1);
  assert.deepEqual(last.intervals.map((i) => [i.energyJ, i.method, i.estimated]), [[300, 'counter', false], [300, 'integrated', true]]);
});

test('an interval between two missing readings of a counter is estimated (counted from power); a GPU without a counter is not', () => {
  const key = (ivs: readonly { energyJ: number; method: string; estimated: boolean }[]) => ivs.map((i) => [i.energyJ, i.method, i.estimated]);
  const samples = steadyRun(4, new Map([[1, null], [2, null]]));
  const whole = buildEnergyTimeline(samples, hz1);
  assert.deepEqual(key(whole.intervals), [[300, 'integrated', true], [300, 'integrated', true], [300, 'integrated', true], [300, 'counter', false]]);
  // Cut between the two missing readings, the mark folded before the cut says the counter exists.
  const window = buildEnergyTimeline(samples.slice(1), hz1, foldCounterHighWater(null, samples, 1));
  assert.deepEqual(key(window.intervals), key(whole.intervals.slice(1)));
  // No counter at all (power only): plain integration, not a missing reading.
  const powerOnly = buildEnergyTimeline(samples.map((s) => ({ ...s, energyJ: null })), hz1);
  assert.deepEqual(key(powerOnly.intervals), [0, 1, 2, 3].map(() => [300, 'integrated', false]));
});

test('a window that starts inside a stretch counted from power is told so by the mark folded before it: cut anywhere, the same energy', () => {
  for (const overrides of [[[1, null], [2, 1e6 - 5]], [[1, null], [2, null], [3, 0]], [[1, 1e6 - 5], [2, null]], [[1, 1e6 - 5], [2, 1e6 - 4], [3, 10]]] as [number, number | null][][]) {
    const samples = steadyRun(10, new Map(overrides));
    const whole = buildEnergyTimeline(samples, hz1).intervals;
    for (let from = 1; from < samples.length - 1; from += 1) {
      // The window's timeline counts from its first sample on; the intervals before it are the whole run's.
      const window = buildEnergyTimeline(samples.slice(from), hz1, foldCounterHighWater(null, samples, from)).intervals;
      const counted = totalJ(whole.filter((i) => i.endMs <= samples[from]!.timestampMs)) + totalJ(window);
      assert.ok(Math.abs(counted - 3000) < 1e-6, `${JSON.stringify(overrides)} cut at ${from} s: ${counted} J of 3000 J`);
      assert.deepEqual(window.map((i) => [i.energyJ, i.method, i.estimated, i.counterReset]), whole.filter((i) => i.startMs >= samples[from]!.timestampMs).map((i) => [i.energyJ, i.method, i.estimated, i.counterReset]), `${JSON.stringify(overrides)} cut at ${from} s`);
    }
  }
});

test('property: a run of glitches of any length that does not rise (a stuck or falling reading) loses no joule, ended by a missing reading, a reset or a climb, cut anywhere', () => {
  // 300 W at 1 Hz on a 1 MJ counter for 40 s (12 kJ). From 2 s, `n` readings at most 1% under the
  // highest (1 MJ + 300 J), never rising; then a missing reading, a reset to 10 J, or the true counter.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 30 }),
      fc.constantFrom('missing', 'reset', 'climb'),
      fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 30, maxLength: 30 }),
      fc.integer({ min: 1, max: 39 }),
      (n, end, drops, cut) => {
        const energy = new Map<number, number | null>();
        let below = 1;
        for (let k = 0; k < n; k += 1) {
          below += drops[k] as number;
          energy.set(2 + k, 1e6 + 300 - Math.min(below, 10_000));
        }
        if (end === 'missing') energy.set(2 + n, null);
        if (end === 'reset') for (let k = 2 + n; k <= 40; k += 1) energy.set(k, 10 + 300 * (k - 2 - n));
        const samples = steadyRun(40, energy);
        const whole = buildEnergyTimeline(samples, hz1);
        assert.deepEqual(whole.uncovered, []);
        assert.ok(Math.abs(totalJ(whole.intervals) - 12_000) < 1e-6, `counted ${totalJ(whole.intervals)} J of 12000 J`);
        for (let k = 2; k < 2 + n; k += 1) {
          for (const iv of whole.intervals.filter((i) => i.startMs === T0 + 1000 * k || i.endMs === T0 + 1000 * k)) assert.equal(iv.estimated, true, `interval at ${k} s`);
        }
        // Cut into two windows (the second told the mark before it), the same intervals.
        const window = buildEnergyTimeline(samples.slice(cut), hz1, foldCounterHighWater(null, samples, cut)).intervals;
        const counted = totalJ(whole.intervals.filter((i) => i.endMs <= T0 + 1000 * cut)) + totalJ(window);
        assert.ok(Math.abs(counted - 12_000) < 1e-6, `cut at ${cut} s: ${counted} J of 12000 J`);
      },
    ),
    { numRuns: 300 },
  );
});

test('a drop whose next reading is no climb a GPU could draw from it is a glitch, wherever that reading lies: the counter is not counted again from the drop', () => {
  const cases: [string, [number, number | null][]][] = [
    // The next reading is a little below the highest: a dip, itself a glitch.
    ['a 0, then a dip', [[2, 0], [3, 1e6 + 295]]],
    // The highest reading was a little high (4 kW for one second: an advance); the true readings after it stay under it for 14 s.
    ['a high reading, a 0, then true readings under the high', [[1, 1e6 + 4300], [2, 0]]],
    // No usable reading right after the drop: it is judged by the next one.
    ['a 0, then missing', [[2, 0], [3, null]]],
    ['a 0, then two missing', [[2, 0], [3, null], [4, null]]],
    // Two bogus readings: the next one differing from the drop judges it.
    ['two 0s', [[2, 0], [3, 0]]],
    ['a 0, then a reading far below the highest', [[2, 0], [3, 5e5]]],
  ];
  for (const [what, overrides] of cases) {
    const timeline = buildEnergyTimeline(steadyRun(400, new Map(overrides)), hz1);
    assert.ok(Math.abs(totalJ(timeline.intervals) - 120_000) < 1e-6, `${what}: counted ${totalJ(timeline.intervals)} J of 120000 J`);
    assert.deepEqual(timeline.intervals.filter((i) => i.counterReset).map((i) => i.startMs - T0), [], `${what}: no reset`);
  }
});

test('a reading far above the highest that the next reading climbs on from is where the counter is: counted from power like a reset, not as a climb from the highest', () => {
  // A drop taken for a reset (no reading after it differs from it until the counter is far above
  // it) leaves the highest reading too low: counted from it, the 1 MJ would count twice.
  const timeline = buildEnergyTimeline(steadyRun(400, new Map([[2, 0], [3, 0], [4, 0], [5, 0], [6, 0], [7, 0], [8, 0], [9, 0], [10, 0], [11, 0]])), hz1);
  assert.ok(totalJ(timeline.intervals) <= 120_000 + 1e-6, `counted ${totalJ(timeline.intervals)} J of 120000 J`);
  assert.ok(totalJ(timeline.intervals) >= 120_000 - 9 * 300 - 1e-6, 'at most the nine seconds the counter read 0 are lost');
  assert.ok(timeline.intervals.filter((i) => i.counterReset).length >= 1);
});

/**
 * Two counter runs of one GPU drawing 300 W at 1 Hz: the first process's counter from 1 MJ for 10 s,
 * then, after 4 s down, a second process whose counter starts again (`start`: its first reading,
 * marked counterRunStart) and climbs 300 J a second for 20 s. The truth is 300 J a second over
 * all 34 s, whatever the counters read (power is steady, so the interval across the restart,
 * counted from power, is exact too). `energy` overrides readings as in steadyRun, by second.
 */
function twoRuns(start: number | null, energy: ReadonlyMap<number, number | null> = new Map()) {
  const first = steadyRun(10, energy);
  const second = Array.from({ length: 21 }, (_, k) => {
    const at = 14 + k;
    const e = energy.has(at) ? (energy.get(at) as number | null) : start === null ? (k === 0 ? null : 1e6 + 300 * k) : start + 300 * k;
    return { ...sample('g', T0 + 1000 * at, 300, e), ...(k === 0 && { counterRunStart: true }) };
  });
  return [...first, ...second];
}

test('a reading that starts a new counter run is a reset whatever its value: just under the highest (a restarted simulator or replay), far above, or missing', () => {
  const cases: [string, number | null, [number, number | null][]][] = [
    // Within 1% under the highest (1 MJ + 3 kJ): as a glitch, each of the 20 s after it counted 0 J.
    ['just under the highest', 1e6 + 500, []],
    ['equal to the first run\'s first reading', 1e6, []],
    // Above the highest by more than 5 kW could draw in the 4 s: as a spike, read as the highest.
    ['far above the highest', 2e6, []],
    // Above by a plausible climb: as an advance, the 4 s would count 1,000 J, not 1,200.
    ['a little above the highest', 1e6 + 4000, []],
    ['missing', null, []],
    // Missing at the run's start and the second after: the run's counter is first read at 16 s.
    ['missing, and the reading after it too', null, [[15, null]]],
    // The first run's last reading a dip: judged without the second run's readings (read as missing).
    ['after a dip that ends the first run', 1e6 + 500, [[10, 1e6 + 2690]]],
    ['before a dip in the second run', 1e6 + 500, [[15, 1e6 + 290]]],
  ];
  for (const [what, start, overrides] of cases) {
    const samples = twoRuns(start, new Map(overrides));
    const whole = buildEnergyTimeline(samples, hz1);
    assert.deepEqual(whole.uncovered, [], what);
    assert.ok(Math.abs(totalJ(whole.intervals) - 34 * 300) < 1e-6, `${what}: counted ${totalJ(whole.intervals)} J of ${34 * 300} J`);
    const across = whole.intervals.find((i) => i.startMs === T0 + 10_000);
    assert.ok(across && across.endMs === T0 + 14_000 && across.method === 'integrated' && across.estimated && across.gap, `${what}: the interval across the restart is counted from power, flagged (${JSON.stringify(across)})`);
    assert.equal(across.counterReset, true, `${what}: flagged as a counter reset`);
    assert.equal(whole.intervals.filter((i) => i.counterReset).length, 1, `${what}: one restart, one reset`);
    // Until the new run's counter is read, its intervals are counted from power: estimated.
    const firstRead = start === null ? (overrides.length > 0 ? 16 : 15) : 14;
    for (const iv of whole.intervals.filter((i) => i.startMs >= T0 + 10_000 && i.endMs <= T0 + 1000 * firstRead)) assert.ok(iv.method === 'integrated' && iv.estimated, `${what}: ${JSON.stringify(iv)}`);
    // The second run counts from its own counter.
    assert.ok(whole.intervals.filter((i) => i.startMs >= T0 + 16_000).every((i) => i.method === 'counter' && i.energyJ === 300), what);
    // Cut anywhere, with the mark folded before the cut: the same intervals.
    for (let from = 1; from < samples.length - 1; from += 1) {
      const window = buildEnergyTimeline(samples.slice(from), hz1, foldCounterHighWater(null, samples, from)).intervals;
      const key = (ivs: typeof window) => ivs.map((i) => [i.startMs, i.energyJ, i.method, i.estimated, i.counterReset]);
      assert.deepEqual(key(window), key(whole.intervals.filter((i) => i.startMs >= samples[from]!.timestampMs)), `${what}: cut at ${samples[from]!.timestampMs - T0} ms`);
    }
  }
});

test('readings after a new counter run starts are all countable at once: no reading of the first run waits for the second run\'s', () => {
  // The first run ends in a dip (a glitch whose judgement needs the readings after it); the second
  // run's first reading is in, and nothing after it.
  const samples = twoRuns(1e6 + 500, new Map([[10, 1e6 + 2690]])).slice(0, 12);
  assert.equal(samples.at(-1)!.counterRunStart, true);
  assert.equal(countableBeforeNextReading(samples, null, T0 + 20_000), samples.length);
  // Without the mark the dip waits: the interval into it is owed until more readings come.
  const unmarked = samples.map((s) => ({ ...s, counterRunStart: false }));
  assert.ok(countableBeforeNextReading(unmarked, null, T0 + 20_000) < samples.length);
});
