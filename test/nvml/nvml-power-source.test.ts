import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { NvmlPowerSource } from '../../collectors/nvml/nvml-power-source.js';
import { installFakeNvml, type FakeNvmlInstall, type FakeNvmlScenario } from '../fakes/fake-nvml.js';
import { SampleCollector } from '../fakes/sample-collector.js';

const installs: FakeNvmlInstall[] = [];
after(() => installs.forEach((i) => i.cleanup()));

function fake(scenario: FakeNvmlScenario): string {
  const install = installFakeNvml(scenario);
  installs.push(install);
  return install.libraryPath;
}

const H100_MIG = ['MIG-00000000-0000-0000-0000-000000000000', 'MIG-00000001-0000-0000-0000-000000000001', 'MIG-00000002-0000-0000-0000-000000000002'];

test('inventory: GPUs keyed by UUID with name, enforced limit, architecture and MIG instances', async () => {
  const source = new NvmlPowerSource({
    libraryPath: fake({
      driverVersion: '590.48.01',
      gpus: [
        { uuid: 'GPU-aaaaaaaa-0000-0000-0000-000000000000', name: 'NVIDIA H100 80GB HBM3', arch: 9, cc: [9, 0], limitMw: 700000, migUuids: H100_MIG },
        { uuid: 'GPU-bbbbbbbb-0000-0000-0000-000000000000', name: 'NVIDIA L40S', arch: 8, cc: [8, 9], limitMw: 350000 },
      ],
    }),
    samplePeriodMs: 100,
    callTimeoutMs: 2000,
  });
  const gpus = await source.init();
  await source.shutdown();
  assert.deepEqual(gpus.map((g) => [g.index, g.uuid, g.name, g.powerLimitW, g.migEnabled]), [
    [0, 'GPU-aaaaaaaa-0000-0000-0000-000000000000', 'NVIDIA H100 80GB HBM3', 700, true],
    [1, 'GPU-bbbbbbbb-0000-0000-0000-000000000000', 'NVIDIA L40S', 350, false],
  ]);
  assert.deepEqual(gpus[0]?.migInstances, H100_MIG);
  assert.deepEqual(gpus[1]?.migInstances, []);
  assert.equal(source.driverVersion(), '590.48.01');
  assert.deepEqual(source.devices().map((d) => d.architecture), [9, 8]);
  const notes = source.quality().notes.join('\n');
  assert.match(notes, /MIG enabled on GPU 0 \(3 instances\): power and energy exist per physical GPU only/);
});

test('instantaneous power follows the trace and the energy counter matches it', async () => {
  // 100 W and 300 W alternating every 100 ms; energy starts at 5 kJ.
  const source = new NvmlPowerSource({
    libraryPath: fake({ traceStepMs: 100, gpus: [{ powerMw: [100000, 300000], energyOffsetMj: 5_000_000 }] }),
    samplePeriodMs: 50,
    callTimeoutMs: 2000,
  });
  const [gpu] = await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  await got.waitFor(() => got.samples.length >= 12, 10_000, '12 samples');
  await source.shutdown();

  assert.ok(gpu);
  for (const s of got.samples) {
    assert.equal(s.gpuUuid, gpu.uuid);
    assert.ok(s.powerW === 100 || s.powerW === 300, `power ${s.powerW} is a trace value`);
    assert.equal(s.powerAveraged, false);
    assert.ok(s.energyJ !== null && s.energyJ >= 5000);
  }
  assert.ok(new Set(got.samples.map((s) => s.powerW)).size === 2, 'both trace levels seen');
  // The counter's mean rate between the first and last sample lies between the two levels.
  const first = got.samples[0];
  const last = got.samples.at(-1);
  assert.ok(first && last && first.energyJ !== null && last.energyJ !== null);
  const meanW = ((last.energyJ - first.energyJ) * 1000) / (last.timestampMs - first.timestampMs);
  assert.ok(meanW > 100 && meanW < 300, `mean power from the counter ${meanW} W`);
  for (let i = 1; i < got.samples.length; i++) {
    const a = got.samples[i - 1];
    const b = got.samples[i];
    assert.ok(a && b && b.timestampMs >= a.timestampMs && (b.energyJ ?? 0) >= (a.energyJ ?? 0), 'time and energy never go back');
  }
  const q = source.quality();
  assert.equal(q.kind, 'nvml');
  assert.equal(q.energyCounter, true);
  assert.equal(q.powerAveraged, false);
  assert.equal(q.simulated, false);
  assert.equal(q.samplePeriodMs, 50);
});

test('without NVML_FI_DEV_POWER_INSTANT, power falls back to nvmlDeviceGetPowerUsage, labelled averaged on Ampere+ but not GA100 or Turing', async () => {
  // An alternating 100/300 W trace: a 1 s average reads ~200 W, an instantaneous read 100 or 300.
  const trace = { traceStepMs: 100, powerMw: [100000, 300000] };
  const source = new NvmlPowerSource({
    libraryPath: fake({
      traceStepMs: trace.traceStepMs,
      gpus: [
        { name: 'NVIDIA H100 80GB HBM3', arch: 9, cc: [9, 0], instantSupported: false, powerMw: trace.powerMw },
        { name: 'NVIDIA A100-SXM4-80GB', arch: 7, cc: [8, 0], instantSupported: false, powerMw: trace.powerMw },
        { name: 'NVIDIA GeForce RTX 2080 SUPER', arch: 6, cc: [7, 5], instantSupported: false, energySupported: true, powerMw: trace.powerMw },
        { name: 'NVIDIA A10', arch: 7, cc: [8, 6], instantSupported: false, powerMw: trace.powerMw },
      ],
    }),
    samplePeriodMs: 100,
    callTimeoutMs: 2000,
  });
  const gpus = await source.init();
  assert.deepEqual(source.devices().map((d) => [d.powerMethod, d.powerAveraged]), [
    ['power_usage', true], ['power_usage', false], ['power_usage', false], ['power_usage', true],
  ]);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  // Wait past the first second so the fake's 1 s window is full.
  await got.waitFor(() => got.samples.some((s) => s.timestampMs - (got.samples[0]?.timestampMs ?? 0) > 1300), 10_000, '1.3 s of samples');
  await source.shutdown();
  const late = (uuid: string) => got.of(uuid).filter((s) => s.timestampMs - (got.samples[0]?.timestampMs ?? 0) > 1100);
  const [h100, a100, turing, a10] = gpus;
  assert.ok(h100 && a100 && turing && a10);
  for (const averaged of [h100, a10]) {
    for (const s of late(averaged.uuid)) {
      assert.equal(s.powerAveraged, true);
      assert.ok(s.powerW !== null && Math.abs(s.powerW - 200) < 25, `1 s average ${s.powerW} W near 200 W`);
    }
  }
  for (const instant of [a100, turing]) {
    for (const s of late(instant.uuid)) {
      assert.equal(s.powerAveraged, false);
      assert.ok(s.powerW === 100 || s.powerW === 300, `instantaneous ${s.powerW} W`);
    }
  }
  assert.equal(source.quality().powerAveraged, true);
  assert.match(source.quality().notes.join('\n'), /nvmlDeviceGetPowerUsage \(1 s averages\)/);
});

test('a GPU without an energy counter gives power only, and quality says so', async () => {
  const source = new NvmlPowerSource({
    libraryPath: fake({ gpus: [{ arch: 4, cc: [6, 0], energySupported: false, powerMw: [250000] }] }),
    samplePeriodMs: 50,
    callTimeoutMs: 2000,
  });
  await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  await got.waitFor(() => got.samples.length >= 3, 10_000, '3 samples');
  await source.shutdown();
  assert.ok(got.samples.every((s) => s.energyJ === null && s.powerW === 250));
  assert.equal(source.quality().energyCounter, false);
  assert.match(source.quality().notes.join('\n'), /no energy counter/);
  assert.deepEqual(got.errors, []);
});

test('shutdown is idempotent and stops the samples', async () => {
  const source = new NvmlPowerSource({ libraryPath: fake({ gpus: [{}] }), samplePeriodMs: 20, callTimeoutMs: 2000 });
  await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  await got.waitFor(() => got.samples.length >= 2, 10_000, '2 samples');
  await source.shutdown();
  await source.shutdown();
  const count = got.samples.length;
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(got.samples.length, count);
  assert.throws(() => source.start(got.onSamples, got.onError), /needs a successful init/);
});

test('bad options are refused at construction', () => {
  assert.throws(() => new NvmlPowerSource({ samplePeriodMs: 0, callTimeoutMs: 100 }), /samplePeriodMs/);
  assert.throws(() => new NvmlPowerSource({ samplePeriodMs: 100, callTimeoutMs: -1 }), /callTimeoutMs/);
});

test('samples are handed over in per-tick batches, and what was read before shutdown is still delivered', async () => {
  const source = new NvmlPowerSource({ libraryPath: fake({ gpus: [{}, {}] }), samplePeriodMs: 50, callTimeoutMs: 2000, deliveryIntervalMs: 60_000 });
  await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.equal(got.samples.length, 0, 'held back by the 60 s delivery interval');
  await source.shutdown();
  assert.ok(got.batches.length >= 5, `${got.batches.length} ticks delivered at shutdown`);
  for (const batch of got.batches) {
    assert.equal(batch.length, 2, 'one sample per GPU per tick');
    assert.equal(new Set(batch.map((s) => s.gpuUuid)).size, 2);
  }
});

test('a clean shutdown leaves no call counted as stuck: the worker that said goodbye is not hung (repeated start/stop)', async () => {
  // run-agent reads stuckCalls() as soon as shutdown() resolves and ends with SIGKILL when it is
  // above 0: a worker closing normally must not count, however its exit and our read interleave.
  const libraryPath = fake({ gpus: [{}, {}] });
  for (let i = 0; i < 8; i++) {
    const source = new NvmlPowerSource({ libraryPath, samplePeriodMs: 20, callTimeoutMs: 2000 });
    await source.init();
    const got = new SampleCollector();
    source.start(got.onSamples, got.onError);
    await got.waitFor(() => got.samples.length >= 2, 10_000, '2 samples');
    await source.shutdown();
    assert.equal(source.stuckCalls(), 0, `round ${i}: a cleanly closed worker counted as a hung driver call`);
    assert.doesNotMatch(source.quality().notes.join('\n'), /still blocked in the driver/);
    assert.deepEqual(got.errors, []);
  }
});
