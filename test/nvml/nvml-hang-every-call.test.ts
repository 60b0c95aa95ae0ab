/**
 * A hang in any NVML function the sampling worker calls is caught by the call deadline, reported as
 * a timeout naming the function, and contained: the worker is replaced and the GPUs sample on.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { WATCHED_CALLS } from '../../collectors/nvml/nvml-call-watch.js';
import { NvmlPowerSource } from '../../collectors/nvml/nvml-power-source.js';
import { installFakeNvml, type FakeGpu, type FakeHang, type FakeNvmlInstall, type FakeNvmlScenario } from '../fakes/fake-nvml.js';
import { NVML_SYMBOLS_USED } from '../../collectors/nvml/nvml-symbols.js';
import { SampleCollector } from '../fakes/sample-collector.js';

type WatchedCall = (typeof NVML_SYMBOLS_USED)[number];

const installs: FakeNvmlInstall[] = [];
after(() => installs.forEach((i) => i.cleanup()));

const CALL_TIMEOUT_MS = 200;
const HANG_MS = 1200;
const UUIDS = ['GPU-0a0a0a0a-0000-0000-0000-00000000000a', 'GPU-1b1b1b1b-0000-0000-0000-00000000000b'] as const;
const GPU0: FakeGpu = { uuid: UUIDS[0], powerMw: [200000] };
const GPU1: FakeGpu = { uuid: UUIDS[1], powerMw: [300000], migUuids: ['MIG-1b1b1b1b-0000-0000-0000-000000000001'] };

interface HangCase {
  /** How the call is reached mid-run. */
  readonly how: string;
  readonly gpus: readonly FakeGpu[];
  readonly hangs: readonly FakeHang[];
  /** The hung GPU samples again afterwards (false where the scenario leaves it lost). */
  readonly gpu1Resumes: boolean;
}

const hang = (fn: WatchedCall, gpu: number, skip: number): FakeHang => ({ fn, gpu, afterMs: 0, durationMs: HANG_MS, count: 1, skip });
/** GPU 0's 6th energy read (its 5th tick) hangs: the worker is restarted, and the restart opens GPU 1 again. */
const restartTrigger: FakeHang = { ...hang('nvmlDeviceGetTotalEnergyConsumption', 0, 5) };
/** The call is made while a restarted worker starts: the first worker's calls (`skip`) go through. */
const atRestart = (fn: WatchedCall, gpu: number, skip: number): HangCase => ({
  how: 'while a restarted worker opens the GPUs', gpus: [GPU0, GPU1], hangs: [restartTrigger, hang(fn, gpu, skip)], gpu1Resumes: true,
});
/** Read on GPU 1 every tick: its 6th call hangs. */
const everyTick = (fn: WatchedCall, gpu1: FakeGpu = GPU1): HangCase => ({
  how: 'on a tick of the running worker', gpus: [GPU0, gpu1], hangs: [hang(fn, 1, 5)], gpu1Resumes: true,
});

// Every function the worker calls, and how a test reaches it mid-run. GPU 1 has one MIG device:
// opening it reads 2 UUIDs (its own, its MIG device's) and tries 7 MIG slots.
const CASES: Record<WatchedCall, HangCase> = {
  nvmlInit_v2: atRestart('nvmlInit_v2', -1, 1),
  nvmlSystemGetDriverVersion: atRestart('nvmlSystemGetDriverVersion', -1, 1),
  nvmlDeviceGetCount_v2: atRestart('nvmlDeviceGetCount_v2', -1, 1),
  nvmlDeviceGetHandleByIndex_v2: atRestart('nvmlDeviceGetHandleByIndex_v2', 1, 1),
  nvmlDeviceGetUUID: atRestart('nvmlDeviceGetUUID', 1, 2),
  nvmlDeviceGetName: atRestart('nvmlDeviceGetName', 1, 1),
  nvmlDeviceGetEnforcedPowerLimit: atRestart('nvmlDeviceGetEnforcedPowerLimit', 1, 1),
  nvmlDeviceGetArchitecture: atRestart('nvmlDeviceGetArchitecture', 1, 1),
  nvmlDeviceGetCudaComputeCapability: atRestart('nvmlDeviceGetCudaComputeCapability', 1, 1),
  nvmlDeviceGetMigMode: atRestart('nvmlDeviceGetMigMode', 1, 1),
  nvmlDeviceGetMaxMigDeviceCount: atRestart('nvmlDeviceGetMaxMigDeviceCount', 1, 1),
  nvmlDeviceGetMigDeviceHandleByIndex: atRestart('nvmlDeviceGetMigDeviceHandleByIndex', 1, 7),
  nvmlDeviceGetTotalEnergyConsumption: everyTick('nvmlDeviceGetTotalEnergyConsumption'),
  nvmlDeviceGetFieldValues: everyTick('nvmlDeviceGetFieldValues'),
  nvmlDeviceGetPowerUsage: everyTick('nvmlDeviceGetPowerUsage', { ...GPU1, instantSupported: false }),
  // A lost GPU is probed through a handle looked up by its UUID: the first probe hangs.
  nvmlDeviceGetHandleByUUID: {
    how: 'while the running worker probes a lost GPU', gpus: [GPU0, { ...GPU1, lostAtMs: 300, recoveredAtMs: 900 }],
    hangs: [hang('nvmlDeviceGetHandleByUUID', 1, 0)], gpu1Resumes: true,
  },
  // The first error text ever asked for: GPU 1 still lost after 3 probes.
  nvmlErrorString: {
    how: 'while the running worker describes an error', gpus: [GPU0, { ...GPU1, lostAtMs: 300 }], hangs: [hang('nvmlErrorString', -1, 0)], gpu1Resumes: false,
  },
  // GPU 1 is found again only by a new NVML session: the worker shuts NVML down, and that hangs.
  nvmlShutdown: {
    how: 'while the worker shuts NVML down to initialise it again', gpus: [GPU0, { ...GPU1, handleInvalidAfter: { ms: 300, needsInit: true } }],
    hangs: [hang('nvmlShutdown', -1, 0)], gpu1Resumes: false,
  },
};

test('every function the worker calls has a hang case here, and every one is called under a deadline', () => {
  assert.deepEqual(Object.keys(CASES).sort(), [...NVML_SYMBOLS_USED].sort());
  assert.deepEqual([...WATCHED_CALLS].sort(), [...NVML_SYMBOLS_USED].sort());
});

for (const fn of NVML_SYMBOLS_USED) {
  const c = CASES[fn];
  test(`a hang in ${fn} ${c.how}: reported as a timeout naming it, the worker replaced, the GPUs sample on`, async () => {
    const scenario: FakeNvmlScenario = { gpus: c.gpus, hangs: c.hangs };
    const install = installFakeNvml(scenario);
    installs.push(install);
    const source = new NvmlPowerSource({
      libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: CALL_TIMEOUT_MS, initTimeoutMs: CALL_TIMEOUT_MS,
      lostRetryMs: 100, restartBackoffMs: { initial: 100, max: 400 },
    });
    const gpus = await source.init();
    assert.deepEqual(gpus.map((g) => g.uuid), [...UUIDS], 'nothing hung at start-up');
    const got = new SampleCollector();
    source.start(got.onSamples, got.onError);
    const named = new RegExp(`\\b${fn}\\b[^;]* did not return within ${CALL_TIMEOUT_MS} ms`);
    const reported = (): boolean => got.errorsOf('timeout').some((e) => named.test(e.message));
    try {
      await got.waitFor(reported, 15_000, `a timeout naming ${fn}`);
      const reportedAt = Date.now();
      await got.waitFor(() => got.of(UUIDS[0]).some((s) => s.timestampMs > reportedAt + 200), 15_000, 'GPU 0 sampled by a new worker');
      if (c.gpu1Resumes) await got.waitFor(() => got.of(UUIDS[1]).some((s) => s.timestampMs > reportedAt + 200), 15_000, 'GPU 1 sampled again');
      await got.waitFor(() => source.stuckCalls() === 0, 15_000, 'the hung call to return');
    } finally {
      await source.shutdown();
    }
    // Each configured hang was one timeout, no more: the worker did not hang again on the same call.
    const timeouts = got.errorsOf('timeout');
    assert.equal(timeouts.length, c.hangs.length, JSON.stringify(timeouts));
    assert.deepEqual(got.errorsOf('worker_error'), []);
  });
}

test('a hang in nvmlShutdown when the source stops does not hold the stop: the blocked call is counted for the process exit', async () => {
  const install = installFakeNvml({ gpus: [GPU0], hangs: [{ fn: 'nvmlShutdown', gpu: -1, afterMs: 0, durationMs: 3000, count: 1 }] });
  installs.push(install);
  const source = new NvmlPowerSource({ libraryPath: install.libraryPath, samplePeriodMs: 50, callTimeoutMs: CALL_TIMEOUT_MS });
  await source.init();
  const got = new SampleCollector();
  source.start(got.onSamples, got.onError);
  await got.waitFor(() => got.samples.length >= 2, 10_000, 'samples');
  const stopAt = Date.now();
  await source.shutdown();
  const stopMs = Date.now() - stopAt;
  assert.ok(stopMs < 2500, `stopped in ${stopMs} ms, before the 3 s hang ended`);
  assert.equal(source.stuckCalls(), 1, 'the call still blocked is counted, so the agent exits through _exit');
});
