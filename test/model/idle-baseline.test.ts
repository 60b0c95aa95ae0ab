import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  IDLE_MIN_OBSERVED_MS,
  currentIdleBaseline,
  idleBaselineFromObservations,
  initialIdleBaseline,
  observeIdle,
  resolveIdleBaseline,
} from '../../model/idle-baseline.js';
import { watts } from '../../model/units.js';

test('no baseline until enough idle time was observed', () => {
  let s = initialIdleBaseline();
  assert.equal(currentIdleBaseline(s), null);
  s = observeIdle(s, 70, IDLE_MIN_OBSERVED_MS - 1);
  assert.equal(currentIdleBaseline(s), null);
  s = observeIdle(s, 70, 1);
  assert.equal(currentIdleBaseline(s), 70);
});

test('the estimate falls fast and rises slowly (it tracks the floor, not the tails)', () => {
  const start = observeIdle(initialIdleBaseline(), 100, 60_000);
  const down = observeIdle(start, 60, 10_000);
  const up = observeIdle(start, 140, 10_000);
  assert.ok((currentIdleBaseline(down) as number) < 100 && (currentIdleBaseline(up) as number) > 100);
  const fell = 100 - (currentIdleBaseline(down) as number);
  const rose = (currentIdleBaseline(up) as number) - 100;
  assert.ok(fell > 10 * rose, `fell ${fell}, rose ${rose}`);
  // a 60 W floor with 200 W tails 20% of the time settles near the floor
  let s = initialIdleBaseline();
  for (let i = 0; i < 2_000; i += 1) s = observeIdle(s, i % 5 === 0 ? 200 : 60, 1_000);
  assert.ok((currentIdleBaseline(s) as number) < 75, `got ${currentIdleBaseline(s)}`);
});

test('invalid observations are ignored', () => {
  const s = observeIdle(initialIdleBaseline(), 80, 20_000);
  for (const [p, d] of [[Number.NaN, 1000], [-5, 1000], [90, 0], [90, -1], [90, Number.NaN]] as const) {
    assert.equal(observeIdle(s, p, d), s);
  }
});

test('property: the estimate stays within the observed range', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ p: fc.double({ min: 0, max: 1000, noNaN: true }), d: fc.integer({ min: 1, max: 100_000 }) }), { minLength: 1 }), (obs) => {
      let s = initialIdleBaseline();
      for (const o of obs) s = observeIdle(s, o.p, o.d);
      const lo = Math.min(...obs.map((o) => o.p));
      const hi = Math.max(...obs.map((o) => o.p));
      assert.ok(s.estimateW !== null && s.estimateW >= lo - 1e-9 && s.estimateW <= hi + 1e-9);
    }),
  );
});

test('offline: duration-weighted low quantile, order independent', () => {
  // 10% of the time at 50 W, 10% at 60 W, 80% at 90 W: the 10% quantile is 50 W
  const obs = [{ powerW: 90, durationMs: 80_000 }, { powerW: 60, durationMs: 10_000 }, { powerW: 50, durationMs: 10_000 }];
  assert.equal(idleBaselineFromObservations(obs), 50);
  assert.equal(idleBaselineFromObservations([...obs].reverse()), 50);
  assert.equal(idleBaselineFromObservations(obs, 0.15), 60);
  assert.equal(idleBaselineFromObservations(obs, 0.5), 90);
  assert.equal(idleBaselineFromObservations([{ powerW: 50, durationMs: 5_000 }]), null);
});

test('a configured baseline wins over a learned one', () => {
  const config = { idleBaselineW: { a: 55 } };
  assert.deepEqual(resolveIdleBaseline(config, 'a', watts(70)), { baselineW: 55, source: 'configured' });
  assert.deepEqual(resolveIdleBaseline(config, 'b', watts(70)), { baselineW: 70, source: 'learned' });
  assert.deepEqual(resolveIdleBaseline(config, 'b', null), { baselineW: null, source: 'none' });
});
