import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import { LEDGER_MIGRATIONS, latestVersion, migrate } from '../../agent/migrations/index.js';
import { counterRunStart } from '../../agent/migrations/006-counter-run-start.js';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { RETENTION, T0, tempDir, tempLedger } from './temp-ledger.js';

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
    sample(0, T0 + 200, { counterRunStart: true, simulated: true }),
  ]);
  assert.equal(stored, 3);
  const got = ledger.loadSamples('GPU-0', epochMs(T0), epochMs(T0 + 200));
  assert.deepEqual(got, [
    { timestampMs: T0, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: null, energyJ: T0 / 10, powerAveraged: true },
    { timestampMs: T0 + 100, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: 100, energyJ: null, simulated: true },
    { timestampMs: T0 + 200, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: 100, energyJ: (T0 + 200) / 10, simulated: true, counterRunStart: true },
  ]);
});

test('a ledger from before counter run starts were stored opens and migrates: its samples start no run, new ones keep the mark', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'ledger.db');
  // A file of the schema just before, with a sample as that release stored it.
  const db = new Database(path);
  migrate(db, LEDGER_MIGRATIONS.slice(0, counterRunStart.version - 1), path);
  db.prepare('INSERT INTO power_samples (ts_ms, gpu_uuid, gpu_index, power_w, energy_j, averaged, simulated) VALUES (?, ?, ?, ?, ?, ?, ?)').run(T0, 'GPU-0', 0, 70, 1e6, 0, 1);
  db.close();
  const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  ledger.insertSamples([sample(0, T0 + 100, { counterRunStart: true })]);
  assert.deepEqual(ledger.loadSamples('GPU-0', epochMs(T0), epochMs(T0 + 100)), [
    { timestampMs: T0, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: 70, energyJ: 1e6, simulated: true },
    { timestampMs: T0 + 100, gpuUuid: 'GPU-0', gpuIndex: 0, powerW: 100, energyJ: (T0 + 100) / 10, counterRunStart: true },
  ]);
});
