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
  // Readings that need nothing after them to be judged: an advance, a glitch within 1%, none at all.
  for (const last of [1e6 + 600, 1e6 + 290, null]) assert.equal(countableBeforeNextReading(window(1e6, 1e6 + 300, last), mark, end), 3, String(last));
});

test('a counter the driver updates less often than it is sampled is not a spike: its steps are judged from when it changed', () => {
  // 100 Hz samples of a 1000 W GPU whose counter moves every 100 ms, 100 J at a time.
  const ivs = toEnergyIntervals(Array.from({ length: 301 }, (_, k) => sample('g', T0 + 10 * k, 1000, 1e6 + Math.floor(k / 10) * 100)), { samplePeriodMs: 10, maxAttributableGapMs: 30_000 });
  assert.equal(ivs.filter((i) => i.estimated).length, 0);
  assert.equal(ivs.reduce((sum, i) => sum + i.energyJ, 0), 3000);
});

test('a reset after a glitch is still a reset, flagged on the interval it ends', () => {
  const ivs = toEnergyIntervals([sample('g', T0, 300, 9000), sample('g', T0 + 100, 300, 8990), sample('g', T0 + 200, 300, 4), sample('g', T0 + 300, 300, 34)], cfg);
  assert.deepEqual(ivs.map((i) => [i.counterReset, i.method]), [[false, 'counter'], [true, 'integrated'], [false, 'counter']]);
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
