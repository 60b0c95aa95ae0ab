import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { T0, tempLedger } from './temp-ledger.js';

function sample(gpu: number, atMs: number, extra: Partial<PowerSample> = {}): PowerSample {
  return { timestampMs: epochMs(atMs), gpuUuid: `GPU-${gpu}`, gpuIndex: gpu, powerW: watts(100 + gpu), energyJ: joules(atMs / 10), ...extra };
}

test('loadSamples returns the window plus the nearest sample on each side, sorted, for that GPU only', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const times = [0, 1000, 2000, 3000, 4000, 5000].map((d) => T0 + d);
  // Inserted out of order and interleaved with another GPU.
  ledger.insertSamples([...times].reverse().flatMap((at) => [sample(0, at), sample(1, at + 500)]));
  const got = ledger.loadSamples('GPU-0', epochMs(T0 + 1500), epochMs(T0 + 3000));
  assert.deepEqual(got.map((s) => s.timestampMs - T0), [1000, 2000, 3000, 4000]);
  assert.ok(got.every((s) => s.gpuUuid === 'GPU-0'));
  assert.deepEqual(ledger.loadSamples('GPU-0', epochMs(T0 - 10_000), epochMs(T0 - 5000)).map((s) => s.timestampMs - T0), [0], 'only the next one after');
  assert.deepEqual(ledger.loadSamples('GPU-0', epochMs(T0 + 9000), epochMs(T0 + 9999)).map((s) => s.timestampMs - T0), [5000], 'only the last one before');
  assert.deepEqual(ledger.loadSamples('GPU-7', epochMs(0), epochMs(T0 * 2)), []);
  assert.deepEqual(ledger.sampleGpus(), ['GPU-0', 'GPU-1']);
});

test('samples keep nulls and flags; a repeated (GPU, time) keeps the first reading', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const stored = ledger.insertSamples([
    sample(0, T0, { powerW: null, powerAveraged: true }),
    sample(0, T0 + 100, { energyJ: null, simulated: true }),
    sample(0, T0, { powerW: watts(999) }),
  ]);
  assert.equal(stored, 2);
  const got = ledger.loadSamples('GPU-0', epochMs(T0), epochMs(T0 + 100));
  assert.deepEqual(got, [
    { timestampMs: T0, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: null, energyJ: T0 / 10, powerAveraged: true },
    { timestampMs: T0 + 100, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: 100, energyJ: null, simulated: true },
  ]);
});
