import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePowerTrace } from '../../collectors/trace-file.js';
import { PowerSampleColumns, SAMPLE_AVERAGED, SAMPLE_COUNTER_RUN_START, SAMPLE_SIMULATED } from '../../model/power-sample-columns.js';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';

const T0 = 1_793_534_400_000;

/** A sample as a source or a trace gives it: optional fields absent, not undefined. */
const sample = fc
  .record({
    t: fc.integer({ min: T0, max: T0 + 100_000 }),
    gpu: fc.integer({ min: 0, max: 3 }),
    power: fc.option(fc.double({ min: 0, max: 1000, noNaN: true }), { nil: null }),
    energy: fc.option(fc.double({ min: 0, max: 1e9, noNaN: true }), { nil: null }),
    averaged: fc.option(fc.boolean(), { nil: undefined }),
    simulated: fc.boolean(),
    runStart: fc.boolean(),
  })
  .map(({ t, gpu, power, energy, averaged, simulated, runStart }): PowerSample => ({
    timestampMs: epochMs(t),
    gpuUuid: `GPU-${gpu}`,
    gpuIndex: gpu,
    powerW: power === null ? null : watts(power),
    energyJ: energy === null ? null : joules(energy),
    ...(averaged !== undefined && { powerAveraged: averaged }),
    ...(simulated && { simulated: true }),
    ...(runStart && { counterRunStart: true }),
  }));

test('PowerSampleColumns: every sample reads back as the object it was, in order, whatever it leaves out (property)', () => {
  fc.assert(
    fc.property(fc.array(sample, { maxLength: 200 }), (samples) => {
      const columns = PowerSampleColumns.of(samples);
      assert.equal(columns.length, samples.length);
      assert.deepEqual(columns.toArray(), samples);
      samples.forEach((s, i) => {
        assert.equal(columns.timestampAt(i), s.timestampMs);
        assert.equal(columns.powerAt(i), s.powerW);
        assert.equal(columns.energyAt(i), s.energyJ);
        assert.equal(columns.gpus[columns.gpuAt(i)]?.uuid, s.gpuUuid);
        assert.equal(columns.flaggedAt(i, SAMPLE_SIMULATED), s.simulated === true);
        assert.equal(columns.flaggedAt(i, SAMPLE_COUNTER_RUN_START), s.counterRunStart === true);
      });
      assert.equal(columns.anyEnergy(), samples.some((s) => s.energyJ !== null));
      assert.equal(columns.anyFlagged(SAMPLE_AVERAGED), samples.some((s) => s.powerAveraged === true));
      assert.equal(columns.anyFlagged(SAMPLE_SIMULATED), samples.some((s) => s.simulated === true));
    }),
    { numRuns: 100 },
  );
});

test('PowerSampleColumns: each read is a new object, so a caller changing one changes nothing held', () => {
  const columns = PowerSampleColumns.of([{ timestampMs: epochMs(T0), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(100), energyJ: null }]);
  const first = columns.at(0);
  (first as { powerW: number }).powerW = 5;
  assert.equal(columns.at(0).powerW, 100);
  assert.notEqual(columns.at(0), columns.at(0));
});

test('PowerSampleColumns refuses columns of different lengths and GPU positions past its list, naming them', () => {
  const ok = { timestampMs: new Float64Array(2), powerW: new Float64Array(2), energyJ: new Float64Array(2), gpu: new Uint32Array(2), flags: new Uint8Array(2), gpus: [{ uuid: 'GPU-a', index: 0 }] };
  assert.equal(new PowerSampleColumns(ok).length, 2);
  assert.throws(() => new PowerSampleColumns({ ...ok, energyJ: new Float64Array(1) }), /column energyJ has 1 values, timestampMs 2/);
  assert.throws(() => new PowerSampleColumns({ ...ok, gpu: Uint32Array.of(0, 1) }), /sample 1 names GPU 1, of 1/);
});

test('a trace read in file order keeps its row arrays, and one with a bad line is copied: both give the same samples, a GPU named two ways as one', () => {
  // GPU 0 is named by its index, then by the UUID the trace gave it: two identities, one GPU, so
  // the row's identity (0, 1, 2) is not its GPU's position (0, 1, 0) and must be mapped.
  const lines = [`${T0 + 100},0,100,1000`, `${T0 + 100},1,200,`, `${T0 + 200},GPU-index-0,110,1010`, `${T0 + 200},1,210,`, `${T0 + 300},GPU-index-0,120,1022`];
  const clean = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', ...lines].join('\n'));
  assert.deepEqual(clean.errors, []);
  const read = (s: PowerSample): unknown[] => [s.timestampMs - T0, s.gpuIndex, s.gpuUuid, s.powerW, s.energyJ];
  assert.deepEqual(clean.samples.toArray().map(read), [
    [100, 0, 'GPU-index-0', 100, 1000],
    [100, 1, 'GPU-index-1', 200, null],
    [200, 0, 'GPU-index-0', 110, 1010],
    [200, 1, 'GPU-index-1', 210, null],
    [300, 0, 'GPU-index-0', 120, 1022],
  ]);
  assert.deepEqual(clean.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-index-0'], [1, 'GPU-index-1']]);
  const withBadLine = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', lines[0], 'not,a,line,', ...lines.slice(1)].join('\n'));
  assert.equal(withBadLine.errors.length, 1);
  assert.deepEqual(withBadLine.samples.toArray(), clean.samples.toArray());
});

test('uuidSlots tells GPUs apart by UUID alone: one UUID under two indices is one slot', () => {
  const at = (t: number, gpuUuid: string, gpuIndex: number): PowerSample => ({ timestampMs: epochMs(T0 + t), gpuUuid, gpuIndex, powerW: watts(100), energyJ: null });
  const columns = PowerSampleColumns.of([at(0, 'GPU-a', 0), at(0, 'GPU-b', 1), at(100, 'GPU-a', 3), at(100, 'GPU-c', 2)]);
  assert.deepEqual(columns.gpus.map((g) => [g.uuid, g.index]), [['GPU-a', 0], ['GPU-b', 1], ['GPU-a', 3], ['GPU-c', 2]]);
  const { slotOfPosition, slotOf } = columns.uuidSlots();
  assert.deepEqual([...slotOfPosition], [0, 1, 0, 2]);
  assert.deepEqual([...slotOf], [['GPU-a', 0], ['GPU-b', 1], ['GPU-c', 2]]);
});
