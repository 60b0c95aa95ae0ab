import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { request } from '../model/helpers.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

/**
 * Periods settled before the sample closing them exists (a power source that stalls for longer than
 * the lateness, or a lateness of 0): no joule may be lost. The periods' measured energy adds up to
 * the energy counter's increase, each period conserves energy, and a stall's gap is counted once.
 */

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const PERIOD_MS = 10_000;
const GPU = { uuid: 'gpu-0', index: 0, name: 'H100' };

class Metrics extends NullSettlementMetrics {
  measured = 0;
  unattributed = 0;
  estimated = 0;
  residuals: number[] = [];
  sampleErrors: string[] = [];
  override addMeasuredEnergy(_i: number, _u: string, j: number): void { this.measured += j; }
  override addUnattributedEnergy(_i: number, j: number): void { this.unattributed += j; }
  override addEstimatedEnergy(_i: number, j: number): void { this.estimated += j; }
  coveredMs = 0;
  override addCoveredTime(_i: number, _uuid: string, ms: number): void { this.coveredMs += ms; }
  override settled(_u: number, residuals: readonly number[]): void { this.residuals.push(...residuals); }
  sampleError(reason: string): void { this.sampleErrors.push(reason); }
}

function openLedger() {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-edges-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  return { ledger, dir, cleanup: () => { ledger.close(); rmSync(dir, { recursive: true, force: true }); } };
}

function newSettler(ledger: Ledger, latenessMs: number, metrics = new Metrics(), periodMs = PERIOD_MS, counterRestartsWithProcess = false) {
  const settler = new Settler({
    ledger, metrics, gpus: [GPU], node: 'n', periodMs, latenessMs, attribution: DEFAULT_ATTRIBUTION_CONFIG, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, counterRestartsWithProcess, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  return { settler, metrics };
}

/** A sample of a GPU drawing `powerW` constantly since T0, with its energy counter. */
function steady(t: number, powerW = 300): PowerSample {
  return { timestampMs: epochMs(t), gpuUuid: GPU.uuid, gpuIndex: 0, powerW: watts(powerW), energyJ: joules(((t - T0) * powerW) / 1000) };
}

function range(from: number, to: number, step: number, make: (t: number) => PowerSample = steady): PowerSample[] {
  const out: PowerSample[] = [];
  for (let t = from; t <= to; t += step) out.push(make(t));
  return out;
}

/** Sums of the ledger's hourly energy rows. */
function ledgerSums(ledger: Ledger) {
  const rows = ledger.readHourlyEnergy(epochMs(T0 - 86_400_000), epochMs(T0 + 86_400_000));
  const sum = (pick: (r: (typeof rows)[number]) => number) => rows.reduce((a, r) => a + pick(r), 0);
  return {
    measured: sum((r) => r.measuredJ),
    parts: sum((r) => r.idleJ + r.staticJ + r.dynamicJ + r.unattributedJ),
    unattributed: sum((r) => r.unattributedJ),
    estimated: sum((r) => r.estimatedJ),
    gaps: sum((r) => r.gaps),
    counterResets: sum((r) => r.counterResets),
  };
}

function assertConserved(ledger: Ledger, metrics: Metrics, expectedJ: number, what: string): void {
  const s = ledgerSums(ledger);
  assert.ok(Math.abs(s.measured - expectedJ) <= 1e-9 * expectedJ, `${what}: ledger measured ${s.measured} J = counter increase ${expectedJ} J (missing ${expectedJ - s.measured} J)`);
  assert.ok(Math.abs(metrics.measured - expectedJ) <= 1e-9 * expectedJ, `${what}: exported measured ${metrics.measured} J = counter increase ${expectedJ} J`);
  assert.ok(Math.abs(s.parts - s.measured) <= 1e-9 * s.measured, `${what}: idle + static + dynamic + unattributed = measured`);
  assert.ok(Math.max(0, ...metrics.residuals) < 1e-6, `${what}: conservation holds in every settled period`);
}

test('a power-source stall longer than the lateness loses no joule: the owed stretch is counted, unattributed and estimated, with its gap', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const { settler, metrics } = newSettler(ledger, 120_000);
  // A request runs across the stall: its periods settle without it getting the stall's energy.
  ledger.insertRequests([request({ requestId: 'r', startMs: T0 + 20_000, endMs: T0 + 40_000, promptTokens: 100, completionTokens: 100 })], () => false);
  settler.addSamples(range(T0, T0 + 25_000, 100));
  // The source stalls from T0+25 s to T0+205 s; the settle loop keeps running.
  for (let now = T0 + 30_000; now <= T0 + 200_000; now += 1000) settler.settleDue(now);
  assert.equal(settler.settledUntil, T0 + 80_000, 'periods of the stall were settled before its closing sample existed');
  settler.addSamples(range(T0 + 205_000, T0 + 600_000, 100));
  for (let now = T0 + 200_000; now <= T0 + 700_000; now += 1000) settler.settleDue(now);
  assert.equal(settler.settledUntil, T0 + 580_000);

  assertConserved(ledger, metrics, (580_000 * 300) / 1000, 'stall');
  const s = ledgerSums(ledger);
  assert.equal(s.gaps, 1, 'the stall is one gap, counted once');
  // The covered time exported is the ledger's: the stall is not covered.
  const covered = ledger.readHourlyEnergy(epochMs(T0 - 86_400_000), epochMs(T0 + 86_400_000)).reduce((a, r) => a + r.coveredMs, 0);
  assert.ok(covered > 0 && Math.abs(metrics.coveredMs - covered) < 1e-6, `exported covered ${metrics.coveredMs} ms = ledger ${covered} ms`);
  assert.ok(covered <= 580_000 - 180_000 + 1e-6, `the stall's 180 s are not covered (${covered} ms)`);
  // [25 s, 205 s) is a gap longer than maxAttributableGapMs: all unattributed and estimated.
  assert.ok(Math.abs(s.unattributed - 180 * 300) < 1e-6, `the stall's 54 000 J are unattributed (${s.unattributed})`);
  assert.ok(Math.abs(s.estimated - 180 * 300) < 1e-6, `and estimated (${s.estimated})`);
  assert.deepEqual(metrics.sampleErrors, []);
});

test('with a lateness of 0, every period settled before its closing sample leaves its tail to the next one: none is lost', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const { settler, metrics } = newSettler(ledger, 0);
  // 10 Hz with a 37 ms phase, delivered as taken; the settle loop runs every second.
  const first = T0 + 37;
  let next = first;
  for (let now = T0; now <= T0 + 300_000; now += 1000) {
    const batch: PowerSample[] = [];
    for (; next <= now; next += 100) batch.push(steady(next));
    settler.addSamples(batch);
    settler.settleDue(now);
  }
  assert.equal(settler.settledUntil, T0 + 300_000);
  // Counted up to the last sample before the settled edge; the rest waits for its closing sample.
  const lastBefore = T0 + 299_937;
  assertConserved(ledger, metrics, ((lastBefore - first) * 300) / 1000, 'lateness 0');
  const s = ledgerSums(ledger);
  assert.equal(s.gaps, 0, 'sampling never stopped: no gap');
  assert.ok(s.unattributed > 0 && Math.abs(s.unattributed - s.estimated) < 1e-9, 'the carried tails are unattributed and estimated');
  assert.deepEqual(metrics.sampleErrors, []);
});

test('a restart after a stall still counts the stretch owed before it (the owed edge is kept in the ledger)', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const run1 = newSettler(ledger, 0);
  run1.settler.addSamples(range(T0, T0 + 25_000, 100));
  // The source stalls; run 1 settles the stall's periods, then is killed.
  for (let now = T0 + 30_000; now <= T0 + 150_000; now += 1000) run1.settler.settleDue(now);
  run1.settler.flushSamples();
  assert.equal(run1.settler.settledUntil, T0 + 150_000);

  const run2 = newSettler(ledger, 0);
  assert.equal(run2.settler.settledUntil, T0 + 150_000);
  run2.settler.restore(T0 + 200_000);
  run2.settler.addSamples(range(T0 + 205_000, T0 + 400_000, 100));
  run2.settler.settleDue(T0 + 400_000);
  assert.equal(run2.settler.settledUntil, T0 + 400_000);

  const measuredJ = run1.metrics.measured + run2.metrics.measured;
  const expectedJ = (400_000 * 300) / 1000;
  assert.ok(Math.abs(measuredJ - expectedJ) <= 1e-9 * expectedJ, `measured over both runs ${measuredJ} J = counter increase ${expectedJ} J`);
  const s = ledgerSums(ledger);
  assert.ok(Math.abs(s.measured - expectedJ) <= 1e-9 * expectedJ, `ledger measured ${s.measured} J = counter increase ${expectedJ} J`);
  assert.equal(s.gaps, 1, 'the stall is one gap');
  assert.ok(Math.max(0, ...run2.metrics.residuals) < 1e-6);
});

test('samples delivered late after a stall, with their own timestamps, close the owed stretch and count', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const { settler, metrics } = newSettler(ledger, 20_000);
  settler.addSamples(range(T0, T0 + 25_000, 100));
  for (let now = T0 + 30_000; now <= T0 + 90_000; now += 1000) settler.settleDue(now);
  assert.equal(settler.settledUntil, T0 + 70_000);
  // The source catches up: its buffered readings of the stall arrive, stamped when they were taken.
  settler.addSamples(range(T0 + 25_100, T0 + 200_000, 100));
  settler.settleDue(T0 + 220_000);
  assertConserved(ledger, metrics, (200_000 * 300) / 1000, 'catch-up');
  assert.deepEqual(metrics.sampleErrors, [], 'readings of time not yet counted are no errors');
  assert.equal(ledgerSums(ledger).gaps, 0, 'no reading was missing');
});

test('a stale sample inside counted time (a clock step back) does not change the next period\'s energy', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const { settler, metrics } = newSettler(ledger, 0);
  settler.addSamples(range(T0 + 37, T0 + 60_037, 100));
  settler.settleDue(T0 + 60_000);
  assert.equal(settler.settledUntil, T0 + 60_000);
  // The clock stepped back 100 ms: a reading taken at T0+60.06 s (a momentary 700 W) is stamped
  // T0+59.96 s, between the last sample before the settled edge and the edge.
  settler.addSamples([{ ...steady(T0 + 60_060), timestampMs: epochMs(T0 + 59_960), powerW: watts(700) }]);
  assert.deepEqual(metrics.sampleErrors, ['stale_timestamp']);
  settler.addSamples(range(T0 + 60_137, T0 + 80_037, 100));
  settler.settleDue(T0 + 80_000);
  assertConserved(ledger, metrics, ((80_000 - 37) * 300) / 1000, 'stale sample');
  assert.equal(ledgerSums(ledger).counterResets, 0, 'its counter reading, later than the next sample\'s, is no reset');
});

test('property: random stalls, delivery delays, lateness and settle ticks never lose or double a joule, and each gap is counted once', () => {
  fc.assert(
    fc.property(
      fc.record({
        latenessMs: fc.constantFrom(0, 1_000, 15_000, 120_000),
        tickMs: fc.constantFrom(1_000, 3_000, 7_000),
        counter: fc.boolean(),
        phaseMs: fc.integer({ min: 0, max: 99 }),
        // Each stall: when it starts (s after T0), how long it lasts (ms), and whether its readings
        // are lost (a gap) or delivered late with their own timestamps (a catch-up).
        stalls: fc.array(fc.record({ atS: fc.integer({ min: 1, max: 280 }), ms: fc.integer({ min: 150, max: 200_000 }), lost: fc.boolean() }), { maxLength: 3 }),
        powers: fc.array(fc.integer({ min: 50, max: 700 }), { minLength: 4, maxLength: 4 }),
      }),
      (c) => {
        const { ledger, cleanup } = openLedger();
        try {
          const { settler, metrics } = newSettler(ledger, c.latenessMs);
          // Power changes every 77 s; the counter is the trapezoid of the power samples, so counter
          // deltas and integration agree and the truth is the counter.
          const powerAt = (t: number) => c.powers[Math.floor((t - T0) / 77_000) % c.powers.length] as number;
          const endMs = T0 + 400_000;
          const samples: PowerSample[] = [];
          let counter = 0;
          for (let t = T0 + c.phaseMs; t <= endMs; t += 100) {
            const previous = samples[samples.length - 1];
            if (previous) counter += ((previous.powerW as number) + powerAt(t)) / 2 * ((t - previous.timestampMs) / 1000);
            samples.push({ timestampMs: epochMs(t), gpuUuid: GPU.uuid, gpuIndex: 0, powerW: watts(powerAt(t)), energyJ: c.counter ? joules(counter) : null });
          }
          // When each sample is delivered: at its time, or at the end of a stall covering it; lost
          // samples never are.
          const deliverAt = new Map<PowerSample, number>();
          for (const s of samples) {
            let at = s.timestampMs as number;
            let lost = false;
            for (const stall of c.stalls) {
              const from = T0 + stall.atS * 1000;
              if (s.timestampMs >= from && s.timestampMs < from + stall.ms) {
                if (stall.lost) lost = true;
                else at = Math.max(at, from + stall.ms);
              }
            }
            if (!lost) deliverAt.set(s, at);
          }
          const delivered = samples.filter((s) => deliverAt.has(s));
          const order = [...delivered].sort((a, b) => (deliverAt.get(a) as number) - (deliverAt.get(b) as number) || a.timestampMs - b.timestampMs);
          let next = 0;
          for (let now = T0; now <= endMs + 700_000; now += c.tickMs) {
            const batch: PowerSample[] = [];
            while (next < order.length && (deliverAt.get(order[next] as PowerSample) as number) <= now) batch.push(order[next++] as PowerSample);
            settler.addSamples(batch);
            settler.settleDue(now);
          }
          const until = settler.settledUntil as number;
          assert.ok(until > endMs, 'everything delivered is settled');
          // Truth: from the first delivered sample to the last one before the settled edge, the
          // counter's increase, or without a counter the trapezoid of the delivered readings.
          const counted = delivered.filter((s) => s.timestampMs <= until);
          let trapezoid = 0;
          for (let i = 1; i < counted.length; i += 1) {
            const a = counted[i - 1] as PowerSample;
            const b = counted[i] as PowerSample;
            trapezoid += c.counter
              ? (b.energyJ as number) - (a.energyJ as number)
              : ((a.powerW as number) + (b.powerW as number)) / 2 * ((b.timestampMs - a.timestampMs) / 1000);
          }
          const s = ledgerSums(ledger);
          assert.ok(Math.abs(s.measured - trapezoid) <= 1e-9 * trapezoid, `measured ${s.measured} J = ${trapezoid} J (missing ${trapezoid - s.measured} J)`);
          assert.ok(Math.abs(metrics.measured - trapezoid) <= 1e-9 * trapezoid, 'exported measured agrees');
          assert.ok(Math.abs(s.parts - s.measured) <= 1e-9 * s.measured, 'idle + static + dynamic + unattributed = measured');
          assert.ok(Math.max(0, ...metrics.residuals) < 1e-6, 'conservation in every period');
          // Gaps: each pair of consecutive delivered samples more than 3 sampling periods apart, once.
          let gaps = 0;
          for (let i = 1; i < counted.length; i += 1) if ((counted[i] as PowerSample).timestampMs - (counted[i - 1] as PowerSample).timestampMs > 300) gaps += 1;
          assert.equal(s.gaps, gaps, 'each gap counted exactly once');
          assert.deepEqual(metrics.sampleErrors, [], 'late readings of uncounted time are no errors');
        } finally {
          cleanup();
        }
      },
    ),
    { numRuns: 25, seed: 20261123 },
  );
});

test('counter glitches at a period edge, and a restart just after one, count each joule once', (t) => {
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  // Readings a few joules below the one before (not resets to ~0). The first is the sample at a
  // period start, which is the first sample of that period's window; then a run of three that
  // straddles the next period start; then one just before the settled edge of a restart.
  const glitched = new Map<number, number>([[10_000, -5], [19_900, -1], [20_000, -31], [20_100, -61], [29_900, -2]]);
  const make = (t: number): PowerSample => {
    const s = steady(t);
    // And one reading of 0, on a period start after the restart, that the next one climbs straight back from.
    if (t - T0 === 50_000) return { ...s, energyJ: joules(0) };
    const dip = glitched.get(t - T0);
    return dip === undefined ? s : { ...s, energyJ: joules(((t - T0 - 100) * 300) / 1000 + dip) };
  };
  const run1 = newSettler(ledger, 0);
  for (let now = T0; now <= T0 + 30_000; now += 1000) {
    run1.settler.addSamples(range(now - 900, now, 100, make).filter((s) => s.timestampMs >= T0));
    run1.settler.settleDue(now);
  }
  run1.settler.flushSamples();
  assert.equal(run1.settler.settledUntil, T0 + 30_000);
  const run2 = newSettler(ledger, 0);
  run2.settler.restore(T0 + 30_000);
  run2.settler.addSamples(range(T0 + 30_100, T0 + 60_000, 100, make));
  run2.settler.settleDue(T0 + 60_000);
  assert.equal(run2.settler.settledUntil, T0 + 60_000);

  const expectedJ = (60_000 * 300) / 1000;
  const measuredJ = run1.metrics.measured + run2.metrics.measured;
  assert.ok(Math.abs(measuredJ - expectedJ) <= 1e-9 * expectedJ, `measured over both runs ${measuredJ} J = counter increase ${expectedJ} J`);
  const s = ledgerSums(ledger);
  assert.ok(Math.abs(s.measured - expectedJ) <= 1e-9 * expectedJ, `ledger measured ${s.measured} J = counter increase ${expectedJ} J`);
  assert.equal(s.counterResets, 0, 'a glitch is not a reset');
  assert.ok(Math.abs(s.estimated - 10 * 30) < 1e-6, `the intervals beside each glitched reading are flagged estimated (${s.estimated} J)`);
});

test('a restart during a stall that follows counter glitches goes on from the stored high-water mark: nothing counted twice', (t) => {
  // Two readings 5,000 J low (0.05% of a 10 MJ counter) are the last before a 30 s stall, so they
  // are the GPU's counted edge; a restart during the stall loads samples from there on.
  const low = (t: number) => t >= T0 + 14_900 && t <= T0 + 15_000;
  assertOnceAcrossStallRestart(t, (t) => ({ ...steady(t), energyJ: joules(10_000_000 + ((t - T0) * 300) / 1000 - (low(t) ? 5_000 : 0)) }));
});

test('a counter drop is judged by the reading after it however the run is cut: every lateness and period gives the same energy, a drop on a period end included', () => {
  // 300 W at 10 Hz on a 1 MJ counter for 90 s. Bogus readings of 0 that the next one climbs
  // straight back from (glitches): on a period end of every period length tried (60 s), on a 10 s
  // one (20 s), just before one (39.9 s) and inside one (33.3 s). And a real reset at 45 s: the
  // counter restarts from 0 and goes on from there.
  const zeros = new Set([20_000, 33_300, 39_900, 60_000]);
  const resetAtMs = 45_000;
  const make = (t: number): PowerSample => {
    const s = steady(t);
    const dt = t - T0;
    if (zeros.has(dt)) return { ...s, energyJ: joules(0) };
    return { ...s, energyJ: joules(dt < resetAtMs ? 1_000_000 + dt * 0.3 : (dt - resetAtMs + 50) * 0.3) };
  };
  const samples = range(T0, T0 + 90_000, 100, make);
  const expectedJ = 90 * 300;
  const settle = (c: { periodMs: number; latenessMs: number; tickMs: number; stall: boolean }) => {
    const { ledger, cleanup } = openLedger();
    try {
      const metrics = new Metrics();
      const { settler } = newSettler(ledger, c.latenessMs, metrics, c.periodMs);
      // With a stall, the readings after the drop at 60 s arrive 4 s late: the drop is the GPU's last sample meanwhile.
      const deliverAt = (s: PowerSample) => (c.stall && s.timestampMs > T0 + 60_000 && s.timestampMs <= T0 + 64_000 ? T0 + 64_000 : s.timestampMs);
      let next = 0;
      for (let now = T0; now <= T0 + Math.max(130_000, c.periodMs); now += c.tickMs) {
        const batch: PowerSample[] = [];
        while (next < samples.length && deliverAt(samples[next] as PowerSample) <= now) batch.push(samples[next++] as PowerSample);
        settler.addSamples(batch);
        settler.settleDue(now);
      }
      assert.ok((settler.settledUntil as number) >= T0 + 90_000, 'the whole run is settled');
      assertConserved(ledger, metrics, expectedJ, JSON.stringify(c));
      assert.equal(ledgerSums(ledger).counterResets, 1, `${JSON.stringify(c)}: the one real reset, and no glitch taken for one`);
      return metrics.measured;
    } finally {
      cleanup();
    }
  };
  // In one piece: one hour-long period settled once everything is in.
  const whole = settle({ periodMs: 3_600_000, latenessMs: 0, tickMs: 3_600_000, stall: false });
  for (const periodMs of [1_000, 3_000, 10_000]) {
    for (const latenessMs of [0, 500, 2_000, 15_000]) {
      for (const tickMs of [100, 1_000]) {
        for (const stall of [false, true]) {
          const measured = settle({ periodMs, latenessMs, tickMs, stall });
          assert.ok(Math.abs(measured - whole) <= 1e-9 * whole, `period ${periodMs} ms, lateness ${latenessMs} ms, tick ${tickMs} ms${stall ? ', stall after the drop' : ''}: ${measured} J, in one piece ${whole} J`);
        }
      }
    }
  }
});

test('counter glitches beside missing readings, a drop the next readings climb back under the highest from, and glitches before a reset: every joule once however the run is cut', () => {
  // 300 W at 10 Hz on a 1 MJ counter for 90 s; whatever the counter reads, the truth is 300 J a
  // second (power is steady, so every interval counted from power is exact too).
  const counter = (dt: number) => (dt < 80_000 ? 1_000_000 + dt * 0.3 : (dt - 80_000 + 50) * 0.3);
  const readings = new Map<number, number | null>([
    // A failed energy call, then a 0, on a period end: from the mark the counter would count [19.9, 20.1] s again.
    [19_900, null], [20_000, 0],
    // A failed call, then a dip, just after a period end.
    [30_000, null], [30_100, counter(29_900) - 5],
    // A dip, then a failed call, just before one: the dip's interval would count nothing.
    [39_800, counter(39_700) - 5], [39_900, null],
    // A 0, then a failed call: judged by the reading after that.
    [50_000, 0], [50_100, null],
    // A reading 400 J high (4.3 kW for 100 ms: taken as an advance), a 0, then true readings under
    // the high for 1.3 s, longer than glitches are looked past: one run of glitches.
    [59_900, counter(59_900) + 400], [60_000, 0],
    // A dip, then the real reset at 80 s.
    [79_900, counter(79_800) - 5],
  ]);
  const make = (t: number): PowerSample => {
    const s = steady(t);
    const dt = t - T0;
    return { ...s, energyJ: readings.has(dt) ? (readings.get(dt) as number | null) : joules(counter(dt)) } as PowerSample;
  };
  const samples = range(T0, T0 + 90_000, 100, make);
  const expectedJ = 90 * 300;
  const settle = (c: { periodMs: number; latenessMs: number; tickMs: number }) => {
    const { ledger, cleanup } = openLedger();
    try {
      const metrics = new Metrics();
      const { settler } = newSettler(ledger, c.latenessMs, metrics, c.periodMs);
      let next = 0;
      for (let now = T0; now <= T0 + Math.max(130_000, c.periodMs); now += c.tickMs) {
        const batch: PowerSample[] = [];
        while (next < samples.length && (samples[next] as PowerSample).timestampMs <= now) batch.push(samples[next++] as PowerSample);
        settler.addSamples(batch);
        settler.settleDue(now);
      }
      assert.ok((settler.settledUntil as number) >= T0 + 90_000, 'the whole run is settled');
      assertConserved(ledger, metrics, expectedJ, JSON.stringify(c));
      assert.equal(ledgerSums(ledger).counterResets, 1, `${JSON.stringify(c)}: the one real reset, and no glitch taken for one`);
    } finally {
      cleanup();
    }
  };
  settle({ periodMs: 3_600_000, latenessMs: 0, tickMs: 3_600_000 });
  for (const periodMs of [1_000, 10_000]) {
    for (const latenessMs of [0, 500, 15_000]) {
      for (const tickMs of [100, 1_000]) settle({ periodMs, latenessMs, tickMs });
    }
  }
});

test('a restart inside a run of glitches after a missing reading goes on as the stopped settler would: nothing counted twice', (t) => {
  // A failed energy call at 14.8 s, then readings 5 J low: the last before a 30 s stall. Read as the
  // mark, the counter's delta from the mark (at 14.7 s) would count the stretch from power again.
  assertOnceAcrossStallRestart(t, (t) => {
    const dt = t - T0;
    const energyJ = dt === 14_800 ? null : 1_000_000 + (dt * 300) / 1000 - (dt >= 14_900 && dt <= 15_000 ? 5 + 30 * ((dt - 14_700) / 100) : 0);
    return { ...steady(t), energyJ: energyJ === null ? null : joules(energyJ) };
  });
});

test('restarts of a source whose counter starts again with each process (simulator, replay): every joule once, however the runs are cut, the samples of the runs before read back from the ledger', () => {
  // 300 W at 10 Hz for 60 s. Each process's counter starts at 1 MJ + 50 J and climbs 300 J a
  // second: after a restart every reading is a little under the highest of the run before (within
  // the 1% taken for a glitch). The agent is down for [20 s, 22 s) and [26 s, 27 s). Power is
  // steady, so the truth is 300 J a second over all 60 s, the time it was down (counted from
  // power) included. With `missingMs`, a restarted process's first readings of the counter fail
  // for that long (power is still read): the reset is flagged all the same, and the new run's
  // counter is read from its first usable reading.
  const runs = [
    { fromMs: 0, toMs: 20_000 },
    { fromMs: 22_000, toMs: 26_000 },
    { fromMs: 27_000, toMs: 60_000 },
  ];
  const make = (startMs: number, missingMs: number) => (t: number): PowerSample =>
    ({ ...steady(t), energyJ: t - T0 < startMs + missingMs ? null : joules(1_000_050 + ((t - T0 - startMs) * 300) / 1000) });
  const expectedJ = 60 * 300;
  const settle = (c: { periodMs: number; latenessMs: number; tickMs: number; kill: boolean; missingMs: number }) => {
    const { ledger, cleanup } = openLedger();
    try {
      let measured = 0;
      let resets = 0;
      for (const run of runs) {
        const metrics = new Metrics();
        const { settler } = newSettler(ledger, c.latenessMs, metrics, c.periodMs, true);
        settler.restore(T0 + run.fromMs);
        const samples = range(T0 + run.fromMs, T0 + run.toMs, 100, make(run.fromMs, run.fromMs === 0 ? 0 : c.missingMs));
        let next = 0;
        const last = run === runs.at(-1) ? T0 + 130_000 : T0 + run.toMs;
        for (let now = T0 + run.fromMs; now <= last; now += c.tickMs) {
          const batch: PowerSample[] = [];
          while (next < samples.length && (samples[next] as PowerSample).timestampMs <= now) batch.push(samples[next++] as PowerSample);
          settler.addSamples(batch);
          // A killed agent dies before its last tick, losing the samples taken since the tick before.
          if (c.kill && now + c.tickMs > last && run !== runs.at(-1)) break;
          // Each tick stores the samples, then settles (as the agent's settle task does).
          settler.flushSamples();
          settler.settleDue(now);
        }
        measured += metrics.measured;
        assert.ok(Math.max(0, ...metrics.residuals) < 1e-6, `${JSON.stringify(c)}: conservation holds in every settled period`);
        resets = ledgerSums(ledger).counterResets;
      }
      const s = ledgerSums(ledger);
      assert.ok(Math.abs(s.measured - expectedJ) <= 1e-9 * expectedJ, `${JSON.stringify(c)}: ledger measured ${s.measured} J of ${expectedJ} J`);
      assert.ok(Math.abs(measured - expectedJ) <= 1e-9 * expectedJ, `${JSON.stringify(c)}: exported measured ${measured} J of ${expectedJ} J`);
      assert.equal(resets, 2, `${JSON.stringify(c)}: each restart is one counter reset`);
      const aroundRestartsS = 3 + (2 * c.missingMs) / 1000 + (c.kill ? (2 * c.tickMs) / 1000 : 0);
      assert.ok(s.estimated >= 300 * (3 + (2 * c.missingMs) / 1000) - 1e-6 && s.estimated <= 300 * aroundRestartsS + 1e-6, `${JSON.stringify(c)}: only the time around the restarts is estimated (${s.estimated} J)`);
    } finally {
      cleanup();
    }
  };
  for (const periodMs of [1_000, 3_000, 10_000]) {
    // A lateness of 15 s: the second run is stopped before any of its samples settle, so the third reads them back from the ledger.
    for (const latenessMs of [0, 500, 2_000, 15_000]) {
      for (const tickMs of [100, 1_000]) {
        for (const kill of [false, true]) for (const missingMs of [0, 2_500]) settle({ periodMs, latenessMs, tickMs, kill, missingMs });
      }
    }
  }
});

/**
 * 300 W for 60 s from `make`'s readings, 15 s of them, a 30 s stall (settled through), then 15 s
 * more: the measured energy must be the counter's 18,000 J with and without a restart in the stall.
 */
function assertOnceAcrossStallRestart(t: TestContext, make: (t: number) => PowerSample): void {
  const run = (restart: boolean): number => {
    const { ledger, cleanup } = openLedger();
    t.after(cleanup);
    let { settler, metrics } = newSettler(ledger, 0);
    settler.addSamples(range(T0, T0 + 15_000, 100, make));
    for (let now = T0 + 10_000; now <= T0 + 40_000; now += 10_000) settler.settleDue(now);
    settler.flushSamples();
    const measured = metrics.measured;
    if (restart) {
      ({ settler, metrics } = newSettler(ledger, 0));
      settler.restore(T0 + 40_000);
    }
    settler.addSamples(range(T0 + 45_000, T0 + 60_000, 100, make));
    settler.settleDue(T0 + 60_000);
    return restart ? measured + metrics.measured : metrics.measured;
  };
  const expectedJ = (60_000 * 300) / 1000;
  for (const restart of [false, true]) {
    const measured = run(restart);
    assert.ok(Math.abs(measured - expectedJ) <= 1e-9 * expectedJ, `${restart ? 'with' : 'without'} a restart: measured ${measured} J, counter increase ${expectedJ} J`);
  }
}

/**
 * 300 W at 10 Hz on a 1 MJ counter; the GPU's last reading before it goes silent (at 15 s) is
 * `drop`: 0, or a dip within 1% under the highest. It answers again at `resumeAtMs`, if ever, with
 * the true counter: a climb back over the highest, which would judge the drop a glitch.
 */
function dropThenSilence(drop: number) {
  return (t: number): PowerSample => {
    const s = steady(t);
    return { ...s, energyJ: joules(t - T0 === 15_000 ? drop : 1_000_000 + ((t - T0) * 300) / 1000) };
  };
}

test('a drop as the last reading before a GPU goes silent is not owed for ever: once no reading has come for longer than an attributable gap, it is judged without one, its interval counted from power', (t) => {
  for (const drop of [0, 1_000_000 + 4_000]) {
    const { ledger, cleanup } = openLedger();
    t.after(cleanup);
    const make = dropThenSilence(drop);
    const { settler, metrics } = newSettler(ledger, 0);
    settler.addSamples(range(T0, T0 + 15_000, 100, make));
    // Readings within the lookahead's reach of the drop would judge it: nothing is counted past the reading before it.
    settler.settleDue(T0 + 20_000);
    assert.ok(Math.abs(metrics.measured - (14_900 * 300) / 1000) < 1e-6, `${drop}: counted up to 14.9 s (${metrics.measured} J)`);
    // Silent for longer than maxAttributableGapMs (30 s): the interval into the drop is counted.
    for (let now = T0 + 20_000; now <= T0 + 300_000; now += 10_000) settler.settleDue(now);
    assert.ok(Math.abs(metrics.measured - (15_000 * 300) / 1000) < 1e-6, `${drop}: counted up to the drop at 15 s (${metrics.measured} J)`);
    // The GPU answers again with the true counter: the stretch since the drop is counted once, from power, as after a reset.
    settler.addSamples(range(T0 + 300_000, T0 + 400_000, 100, make));
    settler.settleDue(T0 + 400_000);
    assertConserved(ledger, metrics, (400_000 * 300) / 1000, `${drop}: after the GPU answers again`);
    // The readings after the silence start a new counter run; a drop to 0 judged alone is a reset too (a dip is a missing reading).
    assert.equal(ledgerSums(ledger).counterResets, drop === 0 ? 2 : 1, `${drop}: counter resets`);
  }
});

test('a drop judged without the readings after it stays so judged across a restart: the first reading of the next run does not count its interval again', (t) => {
  for (const drop of [0, 1_000_000 + 4_000]) {
    const { ledger, cleanup } = openLedger();
    t.after(cleanup);
    const make = dropThenSilence(drop);
    const run1 = newSettler(ledger, 0);
    run1.settler.addSamples(range(T0, T0 + 15_000, 100, make));
    for (let now = T0 + 20_000; now <= T0 + 100_000; now += 10_000) run1.settler.settleDue(now);
    run1.settler.flushSamples();
    // The next run's source continues the counter (NVML): its first reading climbs back over the highest.
    const run2 = newSettler(ledger, 0);
    run2.settler.restore(T0 + 200_000);
    run2.settler.addSamples(range(T0 + 200_000, T0 + 300_000, 100, make));
    run2.settler.settleDue(T0 + 300_000);
    const expectedJ = (300_000 * 300) / 1000;
    const measuredJ = run1.metrics.measured + run2.metrics.measured;
    assert.ok(Math.abs(measuredJ - expectedJ) <= 1e-9 * expectedJ, `${drop}: measured over both runs ${measuredJ} J = ${expectedJ} J`);
    assert.ok(Math.abs(ledgerSums(ledger).measured - expectedJ) <= 1e-9 * expectedJ, `${drop}: ledger measured ${ledgerSums(ledger).measured} J`);
  }
});

test('a sample marked as a new counter run start that is not kept (stale, or a repeat) passes its mark to the GPU\'s next sample kept', (t) => {
  // 300 W at 10 Hz. The first run's counter reaches 1 MJ + 9 kJ at 30 s; the source's counter then
  // starts again at 1 MJ + 50 J (within 1% under the highest: unmarked, its readings would be
  // glitches, counted 0 J until they passed the old highest). Its first reading, marked, comes
  // stale (stamped inside counted time), as a repeat of the last timestamp kept, or of a stored reading.
  for (const how of ['stale', 'repeat', 'stored repeat'] as const) {
    const { ledger, cleanup } = openLedger();
    t.after(cleanup);
    const first = (t: number): PowerSample => ({ ...steady(t), energyJ: joules(1_000_000 + ((t - T0) * 300) / 1000) });
    const second = (t: number): PowerSample => ({ ...steady(t), energyJ: joules(1_000_050 + ((t - T0 - 30_000) * 300) / 1000) });
    const { settler, metrics } = newSettler(ledger, 0);
    settler.addSamples(range(T0, T0 + 30_000, 100, first));
    settler.settleDue(T0 + 30_000);
    if (how === 'stored repeat') settler.flushSamples();
    const marked: PowerSample =
      how === 'stale' ? { ...second(T0 + 30_000), timestampMs: epochMs(T0 + 29_950), counterRunStart: true }
      : how === 'repeat' ? { ...second(T0 + 30_000), counterRunStart: true }
      : { ...first(T0 + 29_900), counterRunStart: true };
    settler.addSamples([marked]);
    settler.addSamples(range(T0 + 30_100, T0 + 60_000, 100, second));
    settler.settleDue(T0 + 60_000);
    settler.flushSamples();
    assertConserved(ledger, metrics, (60_000 * 300) / 1000, how);
    assert.equal(ledgerSums(ledger).counterResets, 1, `${how}: the new run starts at the next sample kept`);
    const stored = ledger.loadSamples(GPU.uuid, epochMs(T0 + 30_100), epochMs(T0 + 30_100)).find((x) => x.timestampMs === T0 + 30_100);
    assert.equal(stored?.counterRunStart, true, `${how}: stored marked, so a restart reads it so`);
  }
});

test('an out-of-order sample inside an interval counted in part is refused as a sample error: split, the interval would count more than once', (t) => {
  // 300 W except [9.9 s, 10.9 s), where the counter rises 900 J; samples every 100 ms but for that
  // second. Settled to 10 s, [9.9 s, 10 s) of that interval is counted (90 J). A reading at 10.05 s
  // (15 J since 9.9 s) then arrives: split there, the rest would be counted as 5 J + 885 J.
  const counter = (t: number) => (t <= T0 + 9_900 ? ((t - T0) * 300) / 1000 : t < T0 + 10_900 ? 2_970 + ((t - T0 - 9_900) * 100) / 1000 : 3_870 + ((t - T0 - 10_900) * 300) / 1000);
  const make = (t: number): PowerSample => ({ ...steady(t), energyJ: joules(counter(t)) });
  const { ledger, cleanup } = openLedger();
  t.after(cleanup);
  const { settler, metrics } = newSettler(ledger, 0);
  settler.addSamples([...range(T0, T0 + 9_900, 100, make), make(T0 + 10_900)]);
  settler.settleDue(T0 + 10_000);
  settler.addSamples([{ ...make(T0 + 10_050), energyJ: joules(2_985) }]);
  assert.deepEqual(metrics.sampleErrors, ['out_of_order']);
  // Inside an interval not counted at all, an out-of-order sample is taken.
  settler.addSamples([...range(T0 + 11_000, T0 + 11_500, 100, make), ...range(T0 + 11_700, T0 + 20_000, 100, make)]);
  settler.addSamples([make(T0 + 11_600)]);
  assert.deepEqual(metrics.sampleErrors, ['out_of_order']);
  settler.settleDue(T0 + 20_000);
  assertConserved(ledger, metrics, counter(T0 + 20_000), 'out of order');
});
