import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NvmlInitError } from '../../collectors/nvml/nvml-init-failure.js';
import { NvmlPowerSource } from '../../collectors/nvml/nvml-power-source.js';
import { buildEnergyTimeline } from '../../model/energy-timeline.js';
import type { GpuInfo } from '../../model/power-sample.js';
import { installFakeNvml, type FakeNvmlInstall, type FakeNvmlScenario } from '../fakes/fake-nvml.js';
import { SampleCollector, sleep } from '../fakes/sample-collector.js';
import { captureLog } from '../proxy/capture-log.js';

const installs: FakeNvmlInstall[] = [];
after(() => installs.forEach((i) => i.cleanup()));

function fake(scenario: FakeNvmlScenario): FakeNvmlInstall {
  const install = installFakeNvml(scenario);
  installs.push(install);
  return install;
}

async function initError(options: ConstructorParameters<typeof NvmlPowerSource>[0]): Promise<NvmlInitError> {
  const source = new NvmlPowerSource(options);
  try {
    await source.init();
  } catch (error) {
    assert.ok(error instanceof NvmlInitError, `expected NvmlInitError, got ${String(error)}`);
    return error;
  } finally {
    await source.shutdown();
  }
  assert.fail('init() should have failed');
}

test('library missing: a clear error naming the path and how to provide the library', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-nolib-'));
  try {
    const error = await initError({ libraryPath: join(dir, 'libnvidia-ml.so.1'), samplePeriodMs: 100, callTimeoutMs: 1000 });
    assert.equal(error.reason, 'library_missing');
    assert.ok(error.message.includes(join(dir, 'libnvidia-ml.so.1')));
    assert.match(error.fix, /--nvml-library/);
    assert.match(error.fix, /NVIDIA runtime/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a library without the NVML symbols is refused as such', async () => {
  const error = await initError({ libraryPath: 'libc.so.6', samplePeriodMs: 100, callTimeoutMs: 1000 });
  assert.equal(error.reason, 'symbol_missing');
  assert.match(error.message, /nvmlInit_v2|lacks a function/);
});

for (const [code, reason, fix] of [
  [9, 'driver_not_loaded', /modprobe nvidia/],
  [4, 'no_permission', /\/dev\/nvidiactl/],
  [18, 'version_mismatch', /reboot the node/],
  [999, 'init_failed', /nvidia-smi/],
] as const) {
  test(`nvmlInit returning ${code} fails init with reason ${reason} and a fix`, async () => {
    const install = fake({ initRc: code, gpus: [{}] });
    const error = await initError({ libraryPath: install.libraryPath, samplePeriodMs: 100, callTimeoutMs: 1000 });
    assert.equal(error.reason, reason);
    assert.equal(error.code, code);
    assert.match(error.fix, fix);
    assert.match(error.message, /nvmlInit failed: NVML_/);
  });
}

test('a call that hangs during start-up on every GPU fails init with a timeout naming each, without blocking the main thread', async () => {
  // Each GPU's first power field call hangs for 10 s: NVML is started again without GPU 0, then
  // without both, and no GPU is left.
  const install = fake({ gpus: [{}, {}], hangs: [{ fn: 'nvmlDeviceGetFieldValues', gpu: -1, afterMs: 0, durationMs: 10_000, count: 2 }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 100, callTimeoutMs: 200 });
  const error: unknown = await source.init().then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof NvmlInitError, `expected NvmlInitError, got ${String(error)}`);
  assert.equal(source.stuckCalls(), 2, 'init gave up while both hung calls were still blocked, without waiting for them');
  assert.equal(error.reason, 'timeout');
  assert.match(error.message, /^nvmlDeviceGetFieldValues on GPU 0 \(GPU-\S+\), nvmlDeviceGetFieldValues on GPU 1 \(GPU-\S+\) did not return within 200 ms while starting NVML/);
});

test('a GPU whose call hangs at start-up: NVML starts on the others, the hung GPU is reported, set aside, and sampled once it answers', async () => {
  // GPU 1's energy counter call, the first while it is opened, hangs for 2.5 s (well past the
  // 200 ms deadline, even on a loaded machine); GPU 0 answers.
  const uuids = ['GPU-0a0a0a0a-0000-0000-0000-000000000000', 'GPU-1b1b1b1b-0000-0000-0000-000000000000'] as const;
  const install = fake({
    gpus: [{ uuid: uuids[0], powerMw: [200000] }, { uuid: uuids[1], powerMw: [300000], energyOffsetMj: 40_000_000 }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 0, durationMs: 2500, count: 1 }],
  });
  const { log, messages } = captureLog();
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 200, log });
  const gpus = await source.init();
  const got = new SampleCollector();
  try {
    // Both GPUs are the agent's: the hung one is a gap (readiness names it) until it samples.
    assert.deepEqual(gpus.map((g) => [g.index, g.uuid]), [[0, uuids[0]], [1, uuids[1]]]);
    assert.deepEqual(source.devices().map((d) => d.uuid), [uuids[0]]);
    const hungAt = /nvmlDeviceGetTotalEnergyConsumption on GPU 1 \(GPU-1b1b1b1b-0000-0000-0000-000000000000\) did not return within 200 ms at start-up/;
    assert.deepEqual(source.unusableGpus().map((u) => [u.index, u.uuid, u.lost]), [[1, uuids[1], false]]);
    assert.match(source.unusableGpus()[0]?.message ?? '', hungAt);
    assert.deepEqual(source.unsampledGpus(), [], 'among the GPUs (a gap): readiness counts it there, not twice');
    assert.ok(messages('warn').some((m) => /^GPU 1 is not usable through NVML: /.test(m) && hungAt.test(m)), messages('warn').join('\n'));
    assert.match(source.quality().notes.join('\n'), /GPU 1 not usable: nvmlDeviceGetTotalEnergyConsumption on GPU 1/);
    assert.equal(source.quality().energyCounter, true, 'judged on the GPUs opened');

    source.start(got.onSamples, got.onError);
    // Reported as the start-up's timeout on that GPU (the sample-error metric and readiness show it).
    assert.equal(got.errors.length, 1);
    assert.equal(got.errors[0]?.reason, 'timeout');
    assert.equal(got.errors[0]?.gpuUuid, uuids[1]);
    assert.match(got.errors[0]?.message ?? '', hungAt);
    await got.waitFor(() => got.of(uuids[0]).length >= 3, 10_000, 'GPU 0 sampling');
    await got.waitFor(() => got.of(uuids[1]).length >= 10, 15_000, 'GPU 1 sampled once its call returned');
    assert.equal(source.stuckCalls(), 0, 'the hung call returned');
  } finally {
    await source.shutdown();
  }
  assert.equal(got.errors.length, 1, `nothing else went wrong: ${JSON.stringify(got.errors)}`);
  assert.deepEqual(source.unusableGpus(), []);
  assert.ok(source.devices().some((d) => d.uuid === uuids[1] && d.energyCounter && d.powerMethod === 'field_instant'), 'described once opened');
  assert.doesNotMatch(source.quality().notes.join('\n'), /not usable|left out/);
  // Picked up on the driver's counter, which ran on meanwhile: 40 kJ at driver load plus 300 W
  // since, counted from its first reading on (nothing before it, so nothing twice).
  const late = got.of(uuids[1]);
  const first = late[0];
  const last = late.at(-1);
  assert.ok(first && last && first.energyJ !== null && last.energyJ !== null);
  assert.ok(first.energyJ > 40_000 && first.energyJ < 40_000 + 300 * 20, `first reading ${first.energyJ} J`);
  assert.ok(late.every((s, k) => k === 0 || (s.timestampMs > (late[k - 1] as typeof s).timestampMs && (s.energyJ as number) >= ((late[k - 1] as typeof s).energyJ as number))));
  const { intervals } = buildEnergyTimeline(late, { samplePeriodMs: 50, maxAttributableGapMs: 60_000 });
  assert.ok(intervals.length >= 9 && intervals.every((iv) => iv.method === 'counter' && !iv.counterReset));
  const countedJ = intervals.reduce((sum, iv) => sum + iv.energyJ, 0);
  const spanJ = (300 * (last.timestampMs - first.timestampMs)) / 1000;
  assert.ok(Math.abs(countedJ - spanJ) <= 0.05 * spanJ, `${countedJ.toFixed(1)} J counted over ${spanJ.toFixed(1)} J of its span`);
});

test('a GPU whose call hangs at start-up before NVML gave its UUID: NVML starts on the others, and once the call returned the GPU is opened, identified and told of', async () => {
  // Without its UUID it is not among the GPUs init() gives; it is opened once its call returned.
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000], name: 'NVIDIA H100 NVL', limitMw: 400000, migUuids: ['MIG-1d1d1d1d-0000-0000-0000-000000000001'] }],
    hangs: [{ fn: 'nvmlDeviceGetUUID', gpu: 1, afterMs: 0, durationMs: 2500, count: 1 }],
  });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 200, lostRetryMs: 100 });
  const gpus = await source.init();
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  const leftOut = /^nvmlDeviceGetUUID on GPU 1 did not return within 200 ms at start-up, before NVML gave the GPU's UUID; GPU 1 is left out \(not sampled\) and opened, to learn which GPU it is, once that call has returned/;
  try {
    assert.deepEqual(gpus.map((g) => g.index), [0]);
    assert.deepEqual(source.unusableGpus().map((u) => [u.index, u.uuid, u.lost]), [[1, undefined, false]]);
    assert.match(source.unusableGpus()[0]?.message ?? '', leftOut);
    // For readiness: a GPU of the node's, not identified yet.
    assert.deepEqual(source.unidentifiedGpus(), [{ index: 1, reason: 'nvmlDeviceGetUUID on GPU 1 hung at start-up' }]);
    assert.deepEqual(source.unsampledGpus(), [], 'counted as not identified, not twice');
    source.start(got.onSamples, got.onError, (gpu) => {
      // Told before its first sample.
      assert.equal(got.samples.filter((s) => s.gpuIndex === 1).length, 0);
      told.push(gpu);
    });
    assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['timeout', undefined]]);
    assert.match(got.errors[0]?.message ?? '', leftOut);
    assert.equal(source.stuckCalls(), 1, 'the hung call is still blocked');
    await got.waitFor(() => got.samples.filter((s) => s.gpuIndex === 1).length >= 5, 15_000, 'GPU 1 sampled once its call returned');
  } finally {
    await source.shutdown();
  }
  assert.equal(got.errors.length, 1);
  assert.deepEqual(told, [{ uuid: 'GPU-fa4e0000-0000-0000-0000-000000000001', index: 1, name: 'NVIDIA H100 NVL', powerLimitW: 400, migEnabled: true, migInstances: ['MIG-1d1d1d1d-0000-0000-0000-000000000001'] }]);
  assert.ok(got.samples.filter((s) => s.gpuIndex === 1).every((s) => s.gpuUuid === told[0]?.uuid && s.powerW === 300));
  assert.deepEqual(source.unusableGpus(), []);
  assert.deepEqual(source.unidentifiedGpus(), []);
  assert.doesNotMatch(source.quality().notes.join('\n'), /not usable|left out/);
});

test('a GPU not identified at start-up whose opening hangs again once its time set aside is up: set aside again (longer), not opened by each new worker; still one GPU not identified', async () => {
  // The call returns after 600 ms; every later UUID call on it hangs 4 s (a wedged GPU).
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000] }],
    hangs: [{ fn: 'nvmlDeviceGetUUID', gpu: 1, afterMs: 0, durationMs: 600, count: 1 }, { fn: 'nvmlDeviceGetUUID', gpu: 1, afterMs: 0, durationMs: 4000, count: 5 }],
  });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 200, lostRetryMs: 100 });
  const gpus = await source.init();
  assert.deepEqual(gpus.map((g) => g.index), [0]);
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  source.start(got.onSamples, got.onError, (gpu) => told.push(gpu));
  const timeouts = () => got.errors.filter((e) => e.reason === 'timeout');
  try {
    await got.waitFor(() => timeouts().length >= 2, 10_000, 'the second hang, opening it once set aside no more');
    const sampled = got.of(gpus[0]?.uuid ?? '').length;
    // Its second hang set it aside for 2 s, and its call blocks 4 s: no new worker calls into it meanwhile.
    await sleep(2500);
    assert.deepEqual(timeouts().map((e) => e.gpuUuid), [undefined, undefined], JSON.stringify(got.errors));
    assert.match(timeouts()[1]?.message ?? '', /nvmlDeviceGetUUID on GPU 1 did not return within 200 ms; .*GPU 1 is left out for a while/);
    assert.equal(got.errorsOf('stalled').length, 0);
    assert.ok(got.of(gpus[0]?.uuid ?? '').length >= sampled + 20, 'GPU 0 samples on');
    // Readiness counts it once: not among the GPUs, one not identified yet.
    assert.deepEqual(source.unidentifiedGpus(), [{ index: 1, reason: 'nvmlDeviceGetUUID on GPU 1 hung at start-up' }]);
    assert.deepEqual(told, []);
  } finally {
    await source.shutdown();
  }
});

test('a GPU NVML counts only after start-up (hot-added): opened, told of before its first sample, and sampled', async () => {
  const install = fake({ gpus: [{ powerMw: [200000] }], gpusAt: { count: 2, atMs: 500 } });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000, lostRetryMs: 200 });
  const gpus = await source.init();
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  try {
    assert.deepEqual(gpus.map((g) => g.index), [0]);
    source.start(got.onSamples, got.onError, (gpu) => {
      assert.equal(got.samples.filter((s) => s.gpuIndex === 1).length, 0, 'told before its first sample');
      told.push(gpu);
    });
    await got.waitFor(() => got.samples.filter((s) => s.gpuIndex === 1).length >= 3, 10_000, 'the new GPU sampled');
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(told.map((g) => [g.index, g.uuid]), [[1, 'GPU-fa4e0000-0000-0000-0000-000000000001']]);
  assert.deepEqual(got.errors, []);
  assert.ok(got.samples.filter((s) => s.gpuIndex === 1).every((s) => s.gpuUuid === told[0]?.uuid));
});

test('a call that hangs mid-run: reported as timeout, worker restarted, other GPUs keep sampling, ingest never stalls', async () => {
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000] }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 400, durationMs: 1500, count: 1 }],
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 150, restartBackoffMs: { initial: 100, max: 1000 },
  });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  // The main thread's own loop: the longest gap between 10 ms ticks shows whether it ever stalled.
  let lastTick = Date.now();
  let longestGap = 0;
  const loop = setInterval(() => { const now = Date.now(); longestGap = Math.max(longestGap, now - lastTick); lastTick = now; }, 10);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('timeout').length > 0, 10_000, 'the timeout');
    const reportedAt = Date.now();
    await got.waitFor(() => got.of(gpu0.uuid).some((s) => s.timestampMs > reportedAt + 100), 10_000, 'GPU 0 samples after the restart');
    await got.waitFor(() => got.of(gpu1.uuid).some((s) => s.timestampMs > reportedAt), 15_000, 'GPU 1 back after its quarantine');
  } finally {
    clearInterval(loop);
    await source.shutdown();
  }
  const [timeout] = got.errorsOf('timeout');
  assert.equal(timeout?.gpuUuid, gpu1.uuid);
  assert.match(timeout?.message ?? '', /nvmlDeviceGetTotalEnergyConsumption on GPU 1 .* did not return within 150 ms/);
  assert.ok(longestGap < 500, `the main event loop stalled for ${longestGap} ms`);
});

test('a wedged GPU (its call hangs every time): restarted workers never call into it, the healthy GPU samples on, each hang is reported on it', async () => {
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000] }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 400, durationMs: 1500, count: 1000 }],
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 150, restartBackoffMs: { initial: 100, max: 1000 },
  });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  let firstHang = 0;
  try {
    await got.waitFor(() => got.errorsOf('timeout').length > 0, 10_000, 'the first timeout');
    firstHang = Date.now();
    assert.match(source.quality().notes.join('\n'), new RegExp(`GPU ${gpu1.uuid} left out`));
    // GPU 1 is set aside (1 s, and while its call is blocked); the restarted worker must not open it (that call would hang too).
    await got.waitFor(() => got.of(gpu0.uuid).filter((s) => s.timestampMs > firstHang + 150).length >= 5, 5000, 'GPU 0 sampled by the restarted worker');
    // Once released, GPU 1 is tried again, hangs again, and is set aside again: GPU 0 still goes on.
    await got.waitFor(() => got.errorsOf('timeout').length >= 2, 10_000, 'the second timeout (GPU 1 tried again)');
    const secondHang = Date.now();
    await got.waitFor(() => got.of(gpu0.uuid).some((s) => s.timestampMs > secondHang + 150), 5000, 'GPU 0 after the second hang');
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(got.errorsOf('stalled'), []);
  for (const e of got.errors) {
    assert.equal(e.reason, 'timeout', e.message);
    assert.equal(e.gpuUuid, gpu1.uuid);
    assert.match(e.message, /nvmlDeviceGetTotalEnergyConsumption on GPU 1 .* did not return within 150 ms; the NVML worker was terminated/);
  }
  assert.ok(got.of(gpu1.uuid).every((s) => s.timestampMs < firstHang), 'GPU 1 never produced a sample again');
});

test('a call that never returns: its GPU stays set aside while the call is blocked (one stuck thread, not one per retry)', async () => {
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000] }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 300, durationMs: 4000, count: 1000 }],
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 150, restartBackoffMs: { initial: 100, max: 1000 },
  });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('timeout').length > 0, 10_000, 'the timeout');
    const hungAt = Date.now();
    // Past the first set-aside time (1 s): GPU 1 is not tried again while its call is still blocked.
    await got.waitFor(() => got.of(gpu0.uuid).some((s) => s.timestampMs > hungAt + 1800), 10_000, 'GPU 0 sampling past the set-aside time');
    assert.equal(source.stuckCalls(), 1);
    assert.match(source.quality().notes.join('\n'), new RegExp(`GPU ${gpu1.uuid} left out: an NVML call on it is still blocked in the driver`));
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['timeout', gpu1.uuid]]);
});

test('a worker terminated for a hung call loses none of the readings it had taken (GPU without an energy counter)', async () => {
  const install = fake({
    gpus: [{ powerMw: [200000], energySupported: false }, { powerMw: [300000] }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 700, durationMs: 1500, count: 1 }],
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 150, restartBackoffMs: { initial: 100, max: 1000 }, deliveryIntervalMs: 1000,
  });
  const [gpu0] = await source.init();
  assert.ok(gpu0);
  const got = new SampleCollector();
  const startedAt = Date.now();
  source.start(got.onSamples, got.onError);
  let reportedAt = 0;
  let taken: number[] = [];
  try {
    await got.waitFor(() => got.errorsOf('timeout').length > 0, 10_000, 'the timeout');
    reportedAt = Date.now();
    // The hang came before the worker's first batch (1 s): all of this was recovered from the journal.
    taken = got.of(gpu0.uuid).map((s) => s.timestampMs);
  } finally {
    await source.shutdown();
  }
  assert.ok(taken.length >= 8, `only ${taken.length} readings of GPU 0 before the timeout was reported`);
  assert.ok((taken[0] as number) - startedAt < 200, 'from the first tick on');
  taken.forEach((t, i) => assert.ok(i === 0 || t - (taken[i - 1] as number) <= 120, `gap ${t - (taken[i - 1] as number)} ms before reading ${i}`));
  assert.ok(reportedAt - (taken.at(-1) as number) < 450, `the last recovered reading is ${reportedAt - (taken.at(-1) as number)} ms older than the report: readings before the hang were lost`);
  assert.ok(got.of(gpu0.uuid).every((s) => s.energyJ === null && s.powerW === 200));
  assert.deepEqual(got.errorsOf('readings_lost'), []);
});

test('a GPU lost while the worker restarts: reported as gpu_lost, opened again once it answers', async () => {
  // GPU 0 hangs once at 400 ms; GPU 1 is lost from the moment that hang begins until NVML has
  // refused two look-ups of it: the restarted worker's open at its start, and its first retry. Tied
  // to those events, not to times: a worker slow to restart (tsx compiling it under load) saw GPU 1
  // answer again before it looked, and gpu_lost never came. The hang outlasts any plausible stall
  // of the main thread, so the first worker never returns from it to read GPU 1.
  const install = fake({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000], lostOnHang: { refusedLookups: 2 } }],
    hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 0, afterMs: 400, durationMs: 3000, count: 1 }],
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 150, restartBackoffMs: { initial: 400, max: 1000 }, lostRetryMs: 300,
  });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  let lostAt = 0;
  try {
    await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'gpu_lost of GPU 1');
    lostAt = Date.now();
    assert.match(source.quality().notes.join('\n'), new RegExp(`GPU ${gpu1.uuid} is lost`));
    await got.waitFor(() => got.of(gpu1.uuid).some((s) => s.timestampMs > lostAt), 10_000, 'GPU 1 sampled again');
  } finally {
    await source.shutdown();
  }
  const [lost, ...more] = got.errorsOf('gpu_lost');
  assert.equal(more.length, 0, 'reported once');
  assert.equal(lost?.gpuUuid, gpu1.uuid);
  assert.match(lost?.message ?? '', /GPU 1 .* could not be opened when the NVML worker restarted \(nvmlDeviceGetHandleByIndex_v2: NVML_ERROR_GPU_IS_LOST/);
  assert.equal(got.errorsOf('timeout')[0]?.gpuUuid, gpu0.uuid);
  const notes = source.quality().notes.join('\n');
  assert.doesNotMatch(notes, /is lost|not usable/);
  assert.ok(source.devices().some((d) => d.uuid === gpu1.uuid && d.energyCounter));
});

test('GPU lost mid-run: reported once, the others keep sampling, the lost one stops (its gap is left for the model to flag)', async () => {
  const install = fake({ gpus: [{}, { lostAtMs: 400 }, {}] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000, lostRetryMs: 60_000 });
  const [a, lost, c] = await source.init();
  assert.ok(a && lost && c);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'gpu_lost');
    const lostAt = Date.now();
    await got.waitFor(() => [a, c].every((g) => got.of(g.uuid).filter((s) => s.timestampMs > lostAt).length >= 5), 10_000, 'the others sampling on');
  } finally {
    await source.shutdown();
  }
  const lostErrors = got.errorsOf('gpu_lost');
  assert.equal(lostErrors.length, 1);
  assert.equal(lostErrors[0]?.gpuUuid, lost.uuid);
  assert.match(lostErrors[0]?.message ?? '', /NVML_ERROR_GPU_IS_LOST/);
  const lastOfLost = Math.max(...got.of(lost.uuid).map((s) => s.timestampMs));
  const lastOfOthers = Math.max(...got.of(a.uuid).map((s) => s.timestampMs));
  assert.ok(lastOfOthers - lastOfLost >= 250, 'the lost GPU produced nothing while the others went on');
  assert.match(source.quality().notes.join('\n'), /is lost: no samples/);
});

test('a GPU reset mid-run leaves its old handle lost: the probe looks up a fresh handle by UUID and the GPU samples again', async () => {
  // From 400 ms on, GPU 1's handle from start-up answers GPU_IS_LOST for good; a handle looked up now works.
  const install = fake({ gpus: [{ powerMw: [200000] }, { powerMw: [300000], handleInvalidAfter: { ms: 400 } }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000, lostRetryMs: 200 });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  let lostAt = 0;
  try {
    await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'gpu_lost of GPU 1');
    lostAt = Date.now();
    await got.waitFor(() => got.of(gpu1.uuid).filter((s) => s.timestampMs > lostAt).length >= 3, 10_000, 'GPU 1 sampled again');
    assert.doesNotMatch(source.quality().notes.join('\n'), /is lost/);
  } finally {
    await source.shutdown();
  }
  // The fresh handle was enough: no re-initialisation of NVML, nothing else went wrong.
  assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['gpu_lost', gpu1.uuid]]);
  assert.ok(got.of(gpu0.uuid).some((s) => s.timestampMs > lostAt), 'GPU 0 sampled on');
  const after = got.of(gpu1.uuid).filter((s) => s.timestampMs > lostAt);
  assert.ok(after.every((s) => s.powerW === 300 && s.energyJ !== null), 'GPU 1 reads power and energy again');
});

test('a GPU that NVML finds again only after a new nvmlInit: the worker is restarted with NVML shut down and initialised again, once', async () => {
  // From 400 ms on, GPU 1's old handle is lost and NVML's look-ups (by UUID or index) say GPU_IS_LOST
  // until an NVML session begun after that (every nvmlInit_v2 matched by nvmlShutdown, then nvmlInit_v2).
  const install = fake({ gpus: [{ powerMw: [200000] }, { powerMw: [300000], handleInvalidAfter: { ms: 400, needsInit: true } }] });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000, lostRetryMs: 100, restartBackoffMs: { initial: 100, max: 1000 },
  });
  const [gpu0, gpu1] = await source.init();
  assert.ok(gpu0 && gpu1);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  let reinitAt = 0;
  try {
    await got.waitFor(() => got.errorsOf('nvml_reinit').length > 0, 10_000, 'NVML initialised again');
    reinitAt = Date.now();
    await got.waitFor(() => got.of(gpu1.uuid).filter((s) => s.timestampMs > reinitAt).length >= 3, 10_000, 'GPU 1 sampled again');
    await got.waitFor(() => got.of(gpu0.uuid).some((s) => s.timestampMs > reinitAt + 200), 10_000, 'GPU 0 sampled by the new worker');
    assert.doesNotMatch(source.quality().notes.join('\n'), /is lost/);
    assert.equal(source.stuckCalls(), 0, 'the worker that shut NVML down is not counted as stuck');
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['gpu_lost', gpu1.uuid], ['nvml_reinit', gpu1.uuid]]);
  assert.match(got.errorsOf('nvml_reinit')[0]?.message ?? '', /GPU 1 .* is still lost after 3 probes \(looking up a fresh handle by its UUID: NVML_ERROR_GPU_IS_LOST.*initialised again/);
});

test('NVML answering NVML_ERROR_UNINITIALIZED after a driver reload: initialised again, sampling resumes, the counter from 0 is a reset', async () => {
  // The driver reloads right after the 12th energy reading: 2 while opening the GPUs, then 5 ticks
  // of both. From then on the worker's NVML session answers UNINITIALIZED, until a new session.
  const watts = [200, 300];
  const offsetsJ = [50_000, 80_000];
  const install = fake({
    reloadAfterReads: 12,
    gpus: watts.map((w, i) => ({ powerMw: [w * 1000], energyOffsetMj: (offsetsJ[i] as number) * 1000 })),
  });
  const source = new NvmlPowerSource({
    libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000, restartBackoffMs: { initial: 100, max: 1000 },
  });
  const gpus = await source.init();
  assert.equal(gpus.length, 2);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('nvml_reinit').length > 0, 10_000, 'NVML initialised again');
    const reinitAt = Date.now();
    await got.waitFor(
      () => got.errorsOf('counter_reset').length >= 2 && gpus.every((g) => got.of(g.uuid).filter((s) => s.timestampMs > reinitAt).length >= 5),
      10_000,
      'both GPUs sampled again, their counters judged reset',
    );
    assert.equal(source.stuckCalls(), 0, 'the worker that shut NVML down is not counted as stuck');
  } finally {
    await source.shutdown();
  }
  const [reinit, ...moreReinits] = got.errorsOf('nvml_reinit');
  assert.equal(moreReinits.length, 0, 'NVML initialised again once');
  assert.match(reinit?.message ?? '', /NVML_ERROR_UNINITIALIZED or NVML_ERROR_DRIVER_NOT_LOADED on 3 reads in a row .*initialised again/);
  assert.deepEqual(got.errors.filter((e) => !['read_error', 'nvml_reinit', 'counter_reset'].includes(e.reason)), [], 'nothing else went wrong');
  assert.ok(got.errorsOf('read_error').every((e) => /NVML_ERROR_UNINITIALIZED/.test(e.message)));
  gpus.forEach((gpu, i) => {
    const resets = got.errorsOf('counter_reset').filter((e) => e.gpuUuid === gpu.uuid);
    assert.equal(resets.length, 1, `GPU ${i}: one counter reset`);
    const samples = got.of(gpu.uuid);
    const first = samples[0];
    const last = samples.at(-1);
    assert.ok(first && last);
    // Read as the driver gave them: the old count before the reload, a count from 0 after it.
    const before = samples.filter((s) => (s.energyJ as number) >= (offsetsJ[i] as number));
    const after = samples.filter((s) => (s.energyJ as number) < (offsetsJ[i] as number));
    assert.ok(before.length >= 5 && after.length >= 5, `GPU ${i}: ${before.length} samples before, ${after.length} after`);
    assert.ok((before.at(-1) as typeof first).timestampMs < (after[0] as typeof first).timestampMs, 'nothing from the old count after the new one');
    // The reading that the reload cut short (its counter read, its power not) keeps its energy.
    for (const s of samples.filter((x) => x.powerW !== watts[i])) assert.deepEqual([s.powerW, s.timestampMs], [null, (before.at(-1) as typeof first).timestampMs]);
    // The timeline counts the counter's run across re-initialisation: one interval into the
    // first reading of the new count, integrated from power and flagged a reset; all the others
    // from the counter. Energy adds up to the constant power over the whole span.
    const { intervals, uncovered } = buildEnergyTimeline(samples, { samplePeriodMs: 50, maxAttributableGapMs: 60_000 });
    assert.deepEqual(uncovered, []);
    const reset = intervals.filter((iv) => iv.counterReset);
    assert.equal(reset.length, 1, `GPU ${i}: one interval across the reset`);
    assert.equal(reset[0]?.method, 'integrated');
    assert.equal(reset[0]?.endMs, (after[0] as typeof first).timestampMs);
    assert.ok(intervals.filter((iv) => !iv.counterReset).every((iv) => iv.method === 'counter'));
    const totalJ = intervals.reduce((sum, iv) => sum + iv.energyJ, 0);
    const expectedJ = ((watts[i] as number) * (last.timestampMs - first.timestampMs)) / 1000;
    assert.ok(Math.abs(totalJ - expectedJ) <= 0.03 * expectedJ, `GPU ${i}: ${totalJ.toFixed(1)} J over the span, expected ${expectedJ.toFixed(1)} J`);
  });
});

test('the energy counter going backwards (reset) is reported and the samples still flow unchanged', async () => {
  const install = fake({ gpus: [{ energyOffsetMj: 10_000_000, resetAtMs: 400, powerMw: [150000] }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000 });
  const [gpu] = await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('counter_reset').length > 0, 10_000, 'counter_reset');
    const at = got.samples.length;
    await got.waitFor(() => got.samples.length > at + 2, 10_000, 'samples after the reset');
  } finally {
    await source.shutdown();
  }
  const reset = got.errorsOf('counter_reset');
  assert.equal(reset.length, 1);
  assert.equal(reset[0]?.gpuUuid, gpu?.uuid);
  const energies = got.samples.map((s) => s.energyJ ?? NaN);
  assert.ok(energies.some((e) => e >= 10_000) && energies.some((e) => e < 1000), 'both sides of the reset were emitted as read');
});

test('an energy counter reading a little low is reported once as a glitch, not as a reset', async () => {
  // 150 W adds 7.5 J per 50 ms read; reads in [300, 600) ms are 30 J low: below the reading before
  // them, by far less than 1% of the 100 kJ counter.
  const install = fake({ gpus: [{ energyOffsetMj: 100_000_000, glitch: { fromMs: 300, untilMs: 600, mj: 30_000 }, powerMw: [150000] }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000 });
  const [gpu] = await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.samples.some((s) => s.timestampMs - got.samples[0]!.timestampMs > 1000), 10_000, 'samples past the glitch');
  } finally {
    await source.shutdown();
  }
  const energies = got.samples.map((s) => s.energyJ ?? NaN);
  assert.ok(energies.some((e, k) => k > 0 && e < (energies[k - 1] as number)), 'the low readings were emitted as read');
  assert.deepEqual(got.errorsOf('counter_reset'), []);
  const glitches = got.errorsOf('counter_glitch');
  assert.equal(glitches.length, 1, 'reported once: repeats within the window are held and counted');
  assert.equal(glitches[0]?.gpuUuid, gpu?.uuid);
  assert.match(glitches[0]?.message ?? '', /below its highest reading .* by at most 1%: taken as a glitch, it is read as the highest reading/);
});

const child = fileURLToPath(new URL('../fakes/nvml-child.ts', import.meta.url));
const run = promisify(execFile);

async function runChild(env: NodeJS.ProcessEnv): Promise<{ gpus?: { uuid: string }[]; samples?: unknown[]; error?: string }> {
  const clean = { ...process.env };
  delete clean.TOKENWATT_NVML_LIBRARY;
  delete clean.LD_LIBRARY_PATH;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', child], { env: { ...clean, ...env }, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
}

test('the default library name is found through LD_LIBRARY_PATH (child process), with the scenario from FAKE_NVML_SCENARIO', async () => {
  const install = fake({ gpus: [{ uuid: 'GPU-1d1d1d1d-0000-0000-0000-000000000000' }] });
  const out = await runChild({ LD_LIBRARY_PATH: install.dir, FAKE_NVML_SCENARIO: install.scenarioPath });
  assert.equal(out.error, undefined);
  assert.deepEqual(out.gpus?.map((g) => g.uuid), ['GPU-1d1d1d1d-0000-0000-0000-000000000000']);
  assert.ok((out.samples?.length ?? 0) >= 2);
});

test('TOKENWATT_NVML_LIBRARY names the library when no path is passed (child process)', async () => {
  const install = fake({ gpus: [{ uuid: 'GPU-e0e0e0e0-0000-0000-0000-000000000000' }] });
  const out = await runChild({ TOKENWATT_NVML_LIBRARY: install.libraryPath });
  assert.deepEqual(out.gpus?.map((g) => g.uuid), ['GPU-e0e0e0e0-0000-0000-0000-000000000000']);
  const missing = await runChild({});
  assert.match(missing.error ?? '', /libnvidia-ml\.so\.1 could not be loaded/);
});

test('a sample handler that throws does not stop sampling', async () => {
  const install = fake({ gpus: [{}] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 30, callTimeoutMs: 1000 });
  await source.init();
  let calls = 0;
  source.start(() => { calls++; throw new Error('handler bug'); }, () => undefined);
  const deadline = Date.now() + 5000;
  while (calls < 3 && Date.now() < deadline) await sleep(10);
  await source.shutdown();
  assert.ok(calls >= 3, `handler called ${calls} times`);
});

test('instantaneous power disappearing mid-run: reported, power continues from nvmlDeviceGetPowerUsage labelled averaged', async () => {
  const install = fake({ gpus: [{ arch: 9, cc: [9, 0], instantOffAtMs: 500, powerMw: [300000] }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 1000 });
  await source.init();
  assert.equal(source.quality().powerAveraged, false);
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('power_method_changed').length > 0 && got.samples.some((s) => s.powerAveraged), 10_000, 'the switch');
  } finally {
    await source.shutdown();
  }
  assert.match(got.errorsOf('power_method_changed')[0]?.message ?? '', /nvmlDeviceGetPowerUsage \(1 s averages\)/);
  const firstAveraged = got.samples.findIndex((s) => s.powerAveraged);
  assert.ok(firstAveraged > 0 && got.samples.slice(firstAveraged).every((s) => s.powerAveraged && s.powerW === 300), 'after the switch every sample is labelled averaged');
  assert.equal(source.quality().powerAveraged, true);
});

test('a GPU that gives neither power nor energy is not sampled and is listed as unusable; the others sample on', async () => {
  const install = fake({ gpus: [{}, { instantSupported: false, powerUsageSupported: false, energySupported: false }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 2000 });
  const gpus = await source.init();
  try {
    assert.deepEqual(gpus.map((g) => g.index), [0]);
    assert.deepEqual(source.unusableGpus().map((u) => [u.index, u.lost]), [[1, false]]);
    assert.match(source.unusableGpus()[0]?.message ?? '', /reports neither power .* nor energy/);
    const got = new SampleCollector();
    source.start(got.onSamples, got.onError);
    await got.waitFor(() => got.samples.length >= 3, 10_000, '3 samples');
    assert.deepEqual([...new Set(got.samples.map((s) => s.gpuIndex))], [0]);
    // For readiness: one of the node's GPUs, named, never sampled (a capability, not retried).
    assert.deepEqual(source.unsampledGpus().map((u) => [u.index, u.uuid, u.retried]), [[1, 'GPU-fa4e0000-0000-0000-0000-000000000001', false]]);
    assert.match(source.unsampledGpus()[0]?.reason ?? '', /^reports neither power .* nor energy .*, so NVML cannot measure it$/);
    assert.deepEqual(source.unidentifiedGpus(), []);
  } finally {
    await source.shutdown();
  }
});

test('a GPU that cannot be opened at start-up: not sampled, named for readiness as tried again; once opened it is one of the GPUs', async () => {
  const install = fake({ gpus: [{}, { lostAtMs: 0, recoveredAtMs: 600 }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 2000, lostRetryMs: 100 });
  const gpus = await source.init();
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  try {
    assert.deepEqual(gpus.map((g) => g.index), [0]);
    assert.deepEqual(source.unsampledGpus().map((u) => [u.index, u.uuid, u.retried]), [[1, undefined, true]]);
    assert.match(source.unsampledGpus()[0]?.reason ?? '', /GPU_IS_LOST|lost/i);
    source.start(got.onSamples, got.onError, (gpu) => told.push(gpu));
    await got.waitFor(() => got.samples.some((s) => s.gpuIndex === 1), 10_000, 'GPU 1 sampled once it answers');
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(told.map((g) => g.index), [1]);
  assert.deepEqual(source.unsampledGpus(), []);
});

test('a GPU that cannot be opened at start-up and, once opened, reads neither power nor energy: never one of the GPUs, named as unmeasurable, not tried again', async () => {
  const install = fake({ gpus: [{}, { lostAtMs: 0, recoveredAtMs: 300, instantSupported: false, powerUsageSupported: false, energySupported: false }] });
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: 2000, lostRetryMs: 100 });
  await source.init();
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  try {
    assert.deepEqual(source.unsampledGpus().map((u) => [u.index, u.retried]), [[1, true]]);
    source.start(got.onSamples, got.onError, (gpu) => told.push(gpu));
    await got.waitFor(() => got.errorsOf('gpu_unusable').length > 0, 10_000, 'GPU 1 opened and found unmeasurable');
    // Before the fix it was told as one of the GPUs and then gave no sample, with no reason given.
    assert.deepEqual(source.unsampledGpus().map((u) => [u.index, u.uuid, u.retried]), [[1, 'GPU-fa4e0000-0000-0000-0000-000000000001', false]]);
    assert.match(source.unsampledGpus()[0]?.reason ?? '', /^reports neither power .* nor energy .*, so NVML cannot measure it$/);
    assert.match(got.errorsOf('gpu_unusable')[0]?.message ?? '', /^GPU 1 \(GPU-fa4e0000-0000-0000-0000-000000000001\) reports neither power .*: not sampled$/);
    const reports = got.errorsOf('gpu_unusable').length;
    await sleep(500); // five retry intervals: not opened again, not reported again
    assert.equal(got.errorsOf('gpu_unusable').length, reports);
  } finally {
    await source.shutdown();
  }
  assert.deepEqual(told, []);
  assert.deepEqual([...new Set(got.samples.map((s) => s.gpuIndex))], [0]);
});

test('NVML whose GPUs all give neither power nor energy (a vGPU guest) fails init with no_gpus and says why, so auto falls back', async () => {
  const unmeasurable = { instantSupported: false, powerUsageSupported: false, energySupported: false };
  const install = fake({ gpus: [unmeasurable, unmeasurable] });
  const error = await initError({ libraryPath: install.libraryPath, samplePeriodMs: 100, callTimeoutMs: 2000 });
  assert.equal(error.reason, 'no_gpus');
  assert.match(error.message, /GPU 0: reports neither power .* nor energy .*; GPU 1: reports neither power/);
  assert.match(error.fix, /no power or energy for any GPU .*vGPU guests/);
});
