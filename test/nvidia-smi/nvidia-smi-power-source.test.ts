import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NvidiaSmiInitError, NvidiaSmiPowerSource, type NvidiaSmiPowerSourceOptions } from '../../collectors/nvidia-smi/nvidia-smi-power-source.js';
import { capturedCell, capturedWatts, fakeNvidiaSmiBinary, findSection, linuxCaptures, writeGpuCount } from '../fakes/fake-nvidia-smi.js';
import { SampleCollector, sleep } from '../fakes/sample-collector.js';
import type { GpuInfo } from '../../model/power-sample.js';

const binary = fakeNvidiaSmiBinary();
const captures = linuxCaptures();
const capture = (name: string) => {
  const found = captures.find((c) => c.file.includes(name));
  assert.ok(found, name);
  return found;
};

function source(capturePath: string, fakeEnv: Record<string, string> = {}, options: Partial<NvidiaSmiPowerSourceOptions> = {}): NvidiaSmiPowerSource {
  return new NvidiaSmiPowerSource({
    binary,
    samplePeriodMs: 50,
    stallTimeoutMs: 400,
    startupTimeoutMs: 3000,
    commandTimeoutMs: 5000,
    restartBackoffMs: { initial: 50, max: 400 },
    env: { ...process.env, FAKE_NVIDIA_SMI_CAPTURE: capturePath, ...fakeEnv },
    ...options,
  });
}

for (const c of captures) {
  test(`${c.file}: replayed live, every sample carries the power the capture shows`, async () => {
    const smi = source(c.path);
    const [gpu] = await smi.init();
    const got = new SampleCollector();
    smi.start(got.onSamples, got.onError);
    try {
      await got.waitFor(() => got.samples.length >= 4, 10_000, '4 samples');
    } finally {
      await smi.shutdown();
    }
    const idle = capturedWatts(c.sections, 'idle', 'power.draw.instant');
    const load = capturedWatts(c.sections, 'load', 'power.draw.instant');
    assert.deepEqual(new Set(got.samples.map((s) => s.powerW)), new Set([idle, load]));
    assert.ok(got.samples.every((s) => s.energyJ === null && s.powerAveraged === false && s.gpuUuid === gpu?.uuid));
    assert.ok(got.samples.every((s) => Math.abs(s.timestampMs - Date.now()) < 10_000), 'live timestamps');
    assert.deepEqual(got.errors, []);

    assert.equal(gpu?.name, capturedCell(c.sections, 'idle', 'name'));
    assert.equal(gpu?.powerLimitW, capturedWatts(c.sections, 'idle', 'enforced.power.limit'));
    const migMode = capturedCell(c.sections, 'idle', 'mig.mode.current');
    assert.equal(gpu?.migEnabled, migMode === 'Enabled');
    const listed = (findSection(c.sections, 'capabilities', 'list')?.body.match(/UUID: MIG-/g) ?? []).length;
    assert.equal(gpu?.migInstances?.length, listed);

    const q = smi.quality();
    assert.equal(q.kind, 'nvidia-smi');
    assert.equal(q.energyCounter, false);
    assert.equal(q.powerAveraged, false);
    assert.equal(q.simulated, false);
    assert.match(q.notes.join('\n'), /no energy counter/);
    if (migMode === 'Enabled') assert.match(q.notes.join('\n'), /MIG enabled on GPU 0 \(\d instances\): power exists per physical GPU only/);
    assert.deepEqual(smi.streamFields(), ['timestamp', 'index', 'uuid', 'power.draw.instant', 'power.draw.average', 'power.draw']);
  });
}

test('a driver whose --help-query-gpu lacks power.draw.instant: power.draw is streamed, averaged on Hopper, instantaneous on Turing', async () => {
  for (const [name, averaged] of [['h100-80gb', true], ['2080-super__595', false]] as const) {
    const c = capture(name);
    const smi = source(c.path, { FAKE_NVIDIA_SMI_DROP: 'power.draw.instant,power.draw.average' });
    await smi.init();
    assert.deepEqual(smi.streamFields(), ['timestamp', 'index', 'uuid', 'power.draw']);
    const got = new SampleCollector();
    smi.start(got.onSamples, got.onError);
    try {
      await got.waitFor(() => got.samples.length >= 3, 10_000, '3 samples');
    } finally {
      await smi.shutdown();
    }
    const expected = new Set([capturedWatts(c.sections, 'idle', 'power.draw'), capturedWatts(c.sections, 'load', 'power.draw')]);
    assert.ok(got.samples.every((s) => expected.has(s.powerW ?? NaN) && s.powerAveraged === averaged), name);
    assert.equal(smi.quality().powerAveraged, true, 'without power.draw.instant the source may average');
  }
});

test('ERR! in one field: the line still counts, power comes from the next field, the marker is reported once per window', async () => {
  const c = capture('h100-mig');
  const smi = source(c.path, { FAKE_NVIDIA_SMI_SET: 'power.draw.instant=ERR!' });
  await smi.init();
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.samples.length >= 5, 10_000, '5 samples');
  } finally {
    await smi.shutdown();
  }
  const draws = new Set([capturedWatts(c.sections, 'idle', 'power.draw'), capturedWatts(c.sections, 'load', 'power.draw')]);
  assert.ok(got.samples.every((s) => draws.has(s.powerW ?? NaN) && s.powerAveraged === true));
  const field = got.errorsOf('field');
  assert.equal(field.length, 1, 'throttled to one report per minute');
  assert.match(field[0]?.message ?? '', /power.draw.instant: ERR!/);
  assert.equal(field[0]?.gpuUuid, capturedCell(c.sections, 'idle', 'uuid'));
});

for (const [mode, reason, detail] of [
  ['garbage', 'hang', /gave no usable line/],
  ['hang', 'hang', /gave no usable line/],
  ['exit', 'exited', /exited with code 1: Unable to determine the device handle/],
] as const) {
  test(`nvidia-smi ${mode === 'garbage' ? 'printing garbage' : mode === 'hang' ? 'hanging' : 'exiting'}: reported as ${reason}, restarted with back-off, samples resume`, async () => {
    const c = capture('l40s');
    const smi = source(c.path, { FAKE_NVIDIA_SMI_MODE: mode, FAKE_NVIDIA_SMI_AFTER: '3' });
    await smi.init();
    const got = new SampleCollector();
    smi.start(got.onSamples, got.onError);
    try {
      await got.waitFor(() => got.errorsOf(reason).length > 0, 10_000, reason);
      const at = Date.now();
      await got.waitFor(() => got.samples.some((s) => s.timestampMs > at), 10_000, 'samples after the restart');
    } finally {
      await smi.shutdown();
    }
    assert.match(got.errorsOf(reason)[0]?.message ?? '', detail);
    if (mode === 'garbage') {
      const parse = got.errorsOf('parse');
      assert.ok(parse.length >= 1, 'garbage lines are reported');
      assert.match(parse[0]?.message ?? '', /unusable nvidia-smi line \(expected 6 comma-separated fields/);
    }
    const power = new Set([capturedWatts(c.sections, 'idle', 'power.draw.instant'), capturedWatts(c.sections, 'load', 'power.draw.instant')]);
    assert.ok(got.samples.every((s) => power.has(s.powerW ?? NaN)), 'nothing but real readings became samples');
  });
}

test('nvidia-smi failing to reach the driver fails init with its own words', async () => {
  const smi = source(capture('h200__').path, { FAKE_NVIDIA_SMI_MODE: 'fail' });
  await assert.rejects(smi.init(), (error: unknown) => {
    assert.ok(error instanceof NvidiaSmiInitError);
    assert.equal(error.reason, 'failed');
    assert.match(error.message, /couldn't communicate with the NVIDIA driver/);
    return true;
  });
});

test('a missing binary and a hung --help-query-gpu fail init clearly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-nosmi-'));
  try {
    const missing = new NvidiaSmiPowerSource({ binary: join(dir, 'nvidia-smi'), samplePeriodMs: 100 });
    await assert.rejects(missing.init(), (error: unknown) => error instanceof NvidiaSmiInitError && error.reason === 'binary_missing' && /--nvidia-smi/.test(error.fix));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const hung = source(capture('h200__').path, { FAKE_NVIDIA_SMI_MODE: 'hang-help' }, { commandTimeoutMs: 500 });
  const started = Date.now();
  await assert.rejects(hung.init(), (error: unknown) => error instanceof NvidiaSmiInitError && error.reason === 'timeout');
  assert.ok(Date.now() - started < 3000);
});

/** Alive and not a zombie (an orphan in a container may stay a zombie where nothing reaps it). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('a one-shot command through a wrapper script that runs the binary without exec: a timeout or an overflowing output ends the binary too', async () => {
  // The wrapper stays the direct child (as `chroot /run/nvidia/driver nvidia-smi "$@"` does) and
  // `sleep 300` stands in for the hung binary under it; 9 MB of output overflows maxBuffer (8 MiB).
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-wrap-'));
  const pids: number[] = [];
  try {
    for (const [what, output, reason, timeoutMs] of [
      ['timeout', '', 'timeout', 300],
      ['maxBuffer', 'head -c 9000000 /dev/zero | tr "\\0" x', 'failed', 10_000],
    ] as const) {
      const wrapper = join(dir, `nvidia-smi-${what}`);
      const pidFile = join(dir, `${what}.pid`);
      writeFileSync(wrapper, `#!/bin/sh\nsleep 300 &\necho $! > ${JSON.stringify(pidFile)}\n${output}\nwait\n`);
      chmodSync(wrapper, 0o755);
      const smi = new NvidiaSmiPowerSource({ binary: wrapper, samplePeriodMs: 100, commandTimeoutMs: timeoutMs });
      const started = Date.now();
      await assert.rejects(smi.init(), (error: unknown) => error instanceof NvidiaSmiInitError && error.reason === reason);
      assert.ok(Date.now() - started < 5000, `${what}: init() took ${Date.now() - started} ms`);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      pids.push(pid);
      const deadline = Date.now() + 2000;
      while (running(pid) && Date.now() < deadline) await sleep(20);
      assert.equal(running(pid), false, `${what}: the wrapper's child (pid ${pid}) is still running after init() failed`);
    }
  } finally {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C or SIGTERM while a one-shot command hangs ends the process by that signal and takes the command\'s whole group with it', async () => {
  // The command leads its own process group, which a terminal's Ctrl-C does not reach: the process
  // (here without a signal handler of its own, as `doctor`) must still end by the signal and kill it.
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-sig-'));
  const pids: number[] = [];
  try {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const wrapper = join(dir, `nvidia-smi-${signal}`);
      const pidFile = join(dir, `${signal}.pid`);
      writeFileSync(wrapper, `#!/bin/sh\nsleep 300 &\necho $! > ${JSON.stringify(pidFile)}\nwait\n`);
      chmodSync(wrapper, 0o755);
      const script = `import { NvidiaSmiPowerSource } from ${JSON.stringify(new URL('../../collectors/nvidia-smi/nvidia-smi-power-source.ts', import.meta.url).href)};
        await new NvidiaSmiPowerSource({ binary: ${JSON.stringify(wrapper)}, samplePeriodMs: 100, commandTimeoutMs: 60000 }).init();`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, s) => resolve(s)));
      const deadline = Date.now() + 15_000;
      while (!existsSync(pidFile) && Date.now() < deadline) await sleep(50);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      pids.push(pid);
      child.kill(signal);
      assert.equal(await exited, signal, `${signal}: the process should end by the signal`);
      const gone = Date.now() + 2000;
      while (running(pid) && Date.now() < gone) await sleep(20);
      assert.equal(running(pid), false, `${signal}: the command's child (pid ${pid}) outlived the process`);
    }
  } finally {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a one-shot command whose output is one endless line fails with a message of a few hundred characters, not the output', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-long-'));
  try {
    const wrapper = join(dir, 'nvidia-smi');
    writeFileSync(wrapper, '#!/bin/sh\nhead -c 200000 /dev/zero | tr "\\0" x\nexit 3\n');
    chmodSync(wrapper, 0o755);
    const smi = new NvidiaSmiPowerSource({ binary: wrapper, samplePeriodMs: 100, commandTimeoutMs: 10_000 });
    await assert.rejects(smi.init(), (error: unknown) => {
      assert.ok(error instanceof NvidiaSmiInitError && error.reason === 'failed', String(error));
      assert.match(error.message, /exit 3/);
      assert.ok(error.message.length < 1000, `message of ${error.message.length} characters`);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lines read late keep nvidia-smi\'s own stamps (no jump to the arrival time, no repeats, no step back); another time zone is corrected', async () => {
  // The agent reads every line from the 4th on 3 s late (as after a blocked event loop).
  let lateMs = 0;
  const smi = source(capture('h100-80gb').path, {}, { clock: { now: () => Date.now() + lateMs } });
  await smi.init();
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.samples.length >= 3, 10_000, '3 samples');
    lateMs = 3000;
    const at = got.samples.length;
    await got.waitFor(() => got.samples.length >= at + 10, 10_000, '10 late samples');
  } finally {
    await smi.shutdown();
  }
  const times = got.samples.map((s) => s.timestampMs);
  times.forEach((t, i) => {
    assert.ok(Math.abs(t - Date.now()) < 2000, `sample ${i} stamped ${t - Date.now()} ms from now`);
    if (i > 0) assert.ok(t > (times[i - 1] as number), `sample ${i} does not move forward`);
  });
  assert.ok(!smi.quality().notes.some((n) => /off the agent's clock/.test(n)));

  // nvidia-smi under another time zone: its stamps are hours off, corrected by one constant offset.
  const zoned = source(capture('h100-80gb').path, { TZ: process.env.TZ === 'Asia/Kathmandu' ? 'UTC' : 'Asia/Kathmandu' });
  await zoned.init();
  const other = new SampleCollector();
  zoned.start(other.onSamples, other.onError);
  try {
    await other.waitFor(() => other.samples.length >= 4, 10_000, '4 samples');
  } finally {
    await zoned.shutdown();
  }
  assert.ok(other.samples.every((s) => Math.abs(s.timestampMs - Date.now()) < 2000), 'corrected to the agent clock');
  assert.ok(zoned.quality().notes.some((n) => /min off the agent's clock \(another time zone\): corrected/.test(n)));
});

test('after shutdown no more samples arrive', async () => {
  const smi = source(capture('4080').path);
  await smi.init();
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  await got.waitFor(() => got.samples.length >= 2, 10_000, '2 samples');
  await smi.shutdown();
  const count = got.samples.length;
  await sleep(200);
  assert.equal(got.samples.length, count);
  assert.throws(() => new NvidiaSmiPowerSource({ samplePeriodMs: 0.5 }), /samplePeriodMs/);
});

test('a GPU nvidia-smi starts listing mid-run: told to onGpu before its first sample, described in full, and sampled', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-added-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  const warnings: string[] = [];
  const log = { info() {}, debug() {}, error() {}, warn: (_o: unknown, m?: string) => { if (m) warnings.push(m); } };
  const logged = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile }, { inventoryRefreshMs: 200, log: log as unknown as NonNullable<NvidiaSmiPowerSourceOptions['log']> });
  const gpus = await logged.init();
  assert.deepEqual(gpus.map((g) => g.index), [0]);
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  logged.start(got.onSamples, got.onError, (gpu) => {
    if (told.length === 0) assert.equal(got.of(gpu.uuid).length, 0, 'told before its first sample');
    told.push(gpu);
  });
  try {
    await got.waitFor(() => got.samples.length >= 2, 10_000, 'GPU 0 sampled');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => got.of(added).length >= 3 && told.some((g) => g.name === capturedCell(c.sections, 'idle', 'name')), 10_000, 'the new GPU sampled and described');
  } finally {
    await logged.shutdown();
  }
  assert.ok(told.every((g) => g.uuid === added && g.index === 1), JSON.stringify(told));
  const last = told.at(-1);
  assert.equal(last?.powerLimitW, capturedWatts(c.sections, 'idle', 'enforced.power.limit'));
  assert.ok(got.of(added).every((s) => s.gpuIndex === 1 && s.powerW !== null));
  assert.deepEqual(got.errors, []);
  assert.ok(warnings.some((w) => w.startsWith(`GPU 1 (${added}) `) && w.includes('found')), warnings.join('\n'));
});

test('a GPU nvidia-smi stops listing: reported as lost once and noted, its samples stop; listed again, sampled again', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-gone-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 2);
  const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile }, { inventoryRefreshMs: 100 });
  const [, gpu1] = await smi.init();
  assert.ok(gpu1);
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.of(gpu1.uuid).length >= 2, 10_000, 'GPU 1 sampled');
    writeGpuCount(countFile, 1);
    await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'GPU 1 reported lost');
    assert.match(smi.quality().notes.join('\n'), new RegExp(`GPU 1 \\(${gpu1.uuid}\\) is no longer listed by nvidia-smi: no samples \\(energy gap\\)`));
    const lostAt = got.of(gpu1.uuid).length;
    await sleep(500);
    assert.ok(got.of(gpu1.uuid).length <= lostAt + 1, 'no samples while it is gone');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => got.of(gpu1.uuid).length >= lostAt + 3, 10_000, 'GPU 1 sampled again');
    await sleep(300);
  } finally {
    await smi.shutdown();
  }
  assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['gpu_lost', gpu1.uuid]]);
  assert.doesNotMatch(smi.quality().notes.join('\n'), /no longer listed/);
});

test('a GPU listed after start-up that the running stream does not print: learnt from the list, the stream started again once, then sampled', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-fixed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile, FAKE_NVIDIA_SMI_STREAM_FIXED: '1' }, { inventoryRefreshMs: 150 });
  await smi.init();
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  smi.start(got.onSamples, got.onError, (gpu) => told.push(gpu));
  try {
    await got.waitFor(() => got.samples.length >= 2, 10_000, 'GPU 0 sampled');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => told.length > 0, 10_000, 'GPU 1 learnt from the list');
    assert.equal(got.of(added).length, 0, 'told before its first sample');
    await got.waitFor(() => got.of(added).length >= 3, 10_000, 'GPU 1 sampled after the stream restarted');
  } finally {
    await smi.shutdown();
  }
  assert.deepEqual(told.map((g) => [g.index, g.uuid, g.name]), [[1, added, capturedCell(c.sections, 'idle', 'name')]]);
  assert.deepEqual(got.errors, []);
});

test('a GPU that was lost and is listed again but not printed by the running stream: the stream is started again for it once more, then it is sampled', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-back-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  const warnings: string[] = [];
  const log = { info() {}, debug() {}, error() {}, warn: (_o: unknown, m?: string) => { if (m) warnings.push(m); } };
  // The fixed stream never prints again a GPU it saw go (its handle is stale), as a running nvidia-smi would not.
  // Restarts are counted: a stall timeout well past a loaded machine's pauses, so that the watchdog
  // never restarts the stream on its own here (400 ms did, 1 run in 10 under load).
  const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile, FAKE_NVIDIA_SMI_STREAM_FIXED: '1' },
    { inventoryRefreshMs: 100, stallTimeoutMs: 2000, log: log as unknown as NonNullable<NvidiaSmiPowerSourceOptions['log']> });
  await smi.init();
  const got = new SampleCollector();
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  smi.start(got.onSamples, got.onError);
  const restarts = () => warnings.filter((w) => /its stream prints no line for them: restarting the stream/.test(w)).length;
  try {
    await got.waitFor(() => got.samples.length >= 2, 10_000, 'GPU 0 sampled');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => got.of(added).length >= 3, 10_000, 'GPU 1 sampled after the first restart');
    assert.equal(restarts(), 1);
    writeGpuCount(countFile, 1);
    await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'GPU 1 reported lost');
    // Some ticks of the stream without it (else the fake stream never saw it go and prints it on).
    await sleep(300);
    const lostAt = got.of(added).length;
    writeGpuCount(countFile, 2);
    await got.waitFor(() => got.of(added).length >= lostAt + 3, 10_000, 'GPU 1 sampled again after it came back');
    // Printed again: no further restart (no loop).
    await sleep(600);
  } finally {
    await smi.shutdown();
  }
  assert.equal(restarts(), 2, warnings.join('\n'));
  assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['gpu_lost', added]]);
});

/**
 * nvidia-smi whose stream reaches the agent through a pipe that holds its lines while the file
 * `hold` exists, then passes them on in order (the agent reading them late): one-shot commands are
 * not held. Each line held is appended to `held`.
 */
function heldStreamWrapper(dir: string): { wrapper: string; hold: () => void; release: () => void; heldLines: (uuid: string) => number } {
  const wrapper = join(dir, 'nvidia-smi');
  const holdFile = join(dir, 'hold');
  const heldFile = join(dir, 'held');
  const pipe = join(dir, 'hold-pipe.mjs');
  writeFileSync(pipe, `import { appendFileSync, existsSync } from 'node:fs';
const queue = [];
let rest = '';
const pass = () => { while (queue.length > 0 && !existsSync(${JSON.stringify(holdFile)})) process.stdout.write(queue.shift()); };
process.stdin.on('data', (chunk) => {
  rest += chunk;
  for (let i; (i = rest.indexOf('\\n')) >= 0; ) {
    const line = rest.slice(0, i + 1);
    rest = rest.slice(i + 1);
    if (queue.length > 0 || existsSync(${JSON.stringify(holdFile)})) { queue.push(line); appendFileSync(${JSON.stringify(heldFile)}, line); }
    else process.stdout.write(line);
  }
});
setInterval(pass, 10).unref();
`);
  writeFileSync(wrapper, `#!/bin/sh
case " $* " in
  *" -lms "*)
    ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@" | ${JSON.stringify(process.execPath)} ${JSON.stringify(pipe)}
    exit 0 ;;
esac
exec ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@"
`);
  chmodSync(wrapper, 0o755);
  return {
    wrapper,
    // Created by a rename, as writeGpuCount does: the pipe checks for it at every line.
    hold: () => {
      writeFileSync(`${holdFile}.partial`, '');
      renameSync(`${holdFile}.partial`, holdFile);
    },
    release: () => rmSync(holdFile),
    heldLines: (uuid) => (existsSync(heldFile) ? readFileSync(heldFile, 'utf8').split('\n').filter((l) => l.includes(uuid)).length : 0),
  };
}

for (const readLate of ['while it is lost', 'after it is listed again'] as const) {
  test(`a line of a lost GPU printed before the loss and read ${readLate} does not count as printed: the stream that no longer prints it is started again for it; the late samples are kept`, async (t) => {
    const c = capture('h100-80gb');
    const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-late-line-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const countFile = join(dir, 'gpus');
    writeGpuCount(countFile, 2);
    const { wrapper, hold, release, heldLines } = heldStreamWrapper(dir);
    const warnings: string[] = [];
    const infos: string[] = [];
    const log = { debug() {}, error() {}, info: (_o: unknown, m?: string) => { if (m) infos.push(m); }, warn: (_o: unknown, m?: string) => { if (m) warnings.push(m); } };
    // The fixed stream never prints GPU 1 again once it saw it go, as a running nvidia-smi holding
    // its old handle would not. A stall timeout far above the hold: the watchdog restarts nothing.
    const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile, FAKE_NVIDIA_SMI_STREAM_FIXED: '1' },
      { binary: wrapper, inventoryRefreshMs: 250, stallTimeoutMs: 10_000, log: log as unknown as NonNullable<NvidiaSmiPowerSourceOptions['log']> });
    const [, gpu1] = await smi.init();
    assert.ok(gpu1);
    const got = new SampleCollector();
    smi.start(got.onSamples, got.onError);
    const restarts = () => warnings.filter((w) => /its stream prints no line for them: restarting the stream/.test(w)).length;
    const listedAgain = () => infos.some((m) => m.includes(`(${gpu1.uuid}) is listed by nvidia-smi again`));
    let backAt = Infinity;
    try {
      await got.waitFor(() => got.of(gpu1.uuid).length >= 2, 10_000, 'GPU 1 sampled');
      hold();
      await got.waitFor(() => heldLines(gpu1.uuid) >= 2, 10_000, 'lines of GPU 1 held');
      writeGpuCount(countFile, 1);
      await got.waitFor(() => got.errorsOf('gpu_lost').length > 0, 10_000, 'GPU 1 reported lost');
      if (readLate === 'after it is listed again') {
        backAt = Date.now();
        writeGpuCount(countFile, 2);
        await got.waitFor(listedAgain, 10_000, 'GPU 1 listed again');
      }
      // Every line of GPU 1 the stream printed is read by now or held: the held ones come late.
      const late = got.of(gpu1.uuid).length + heldLines(gpu1.uuid);
      release();
      await got.waitFor(() => got.of(gpu1.uuid).length >= late, 10_000, 'the held lines of GPU 1 read, late');
      assert.equal(got.of(gpu1.uuid).length, late, 'the fixed stream printed no line of GPU 1 since its loss');
      if (readLate === 'while it is lost') {
        backAt = Date.now();
        writeGpuCount(countFile, 2);
        await got.waitFor(listedAgain, 10_000, 'GPU 1 listed again');
      }
      // Before the fix a late line put GPU 1 back among the GPUs the stream prints: not started
      // again for it, the stream left it unsampled from then on, and nothing said so.
      await got.waitFor(() => got.of(gpu1.uuid).filter((s) => s.timestampMs > backAt).length >= 3, 15_000, 'GPU 1 sampled again after it came back');
    } finally {
      await smi.shutdown();
    }
    assert.equal(restarts(), 1, warnings.join('\n'));
    assert.deepEqual(got.errors.map((e) => [e.reason, e.gpuUuid]), [['gpu_lost', gpu1.uuid]]);
  });
}

/**
 * nvidia-smi through a wrapper script: the GPU list command (a --query-gpu without -lms) is logged
 * with its start and end (ms) and takes `delay` seconds when that file exists; `set` feeds
 * FAKE_NVIDIA_SMI_SET to every command (a value changed mid-run).
 */
function listWrapper(dir: string): { wrapper: string; runs: () => { start: number; end: number }[] } {
  const wrapper = join(dir, 'nvidia-smi');
  const runsFile = join(dir, 'runs');
  writeFileSync(wrapper, `#!/bin/sh
export FAKE_NVIDIA_SMI_SET="$(cat ${JSON.stringify(join(dir, 'set'))} 2>/dev/null)"
case " $* " in
  *" -lms "*|*" --help-query-gpu "*|*" --version "*|*" -L "*) exec ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@" ;;
esac
echo "start $(date +%s%3N)" >> ${JSON.stringify(runsFile)}
[ -f ${JSON.stringify(join(dir, 'delay'))} ] && sleep "$(cat ${JSON.stringify(join(dir, 'delay'))})"
${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@"
code=$?
echo "end $(date +%s%3N)" >> ${JSON.stringify(runsFile)}
exit $code
`);
  chmodSync(wrapper, 0o755);
  const runs = (): { start: number; end: number }[] => {
    const out: { start: number; end: number }[] = [];
    const lines = existsSync(runsFile) ? readFileSync(runsFile, 'utf8').trim().split('\n') : [];
    for (const line of lines) {
      const [what, at] = line.split(' ');
      if (what === 'start') out.push({ start: Number(at), end: NaN });
      else { const last = out.at(-1); if (last) last.end = Number(at); }
    }
    return out;
  };
  return { wrapper, runs };
}

test('a GPU list command as slow as the refresh interval: the next read waits its interval after each one ends, never back to back', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-slow-list-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wrapper, runs } = listWrapper(dir);
  const smi = source(c.path, {}, { binary: wrapper, inventoryRefreshMs: 200 });
  await smi.init();
  writeFileSync(join(dir, 'delay'), '0.3');
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => runs().filter((r) => Number.isFinite(r.end)).length >= 5, 15_000, 'five reads of the GPU list');
  } finally {
    await smi.shutdown();
  }
  const done = runs().filter((r) => Number.isFinite(r.end));
  const gaps = done.slice(1).map((r, i) => r.start - (done[i]?.end ?? 0));
  // 200 ms asked; a little less allowed for the shell's start-up before it stamps.
  assert.ok(gaps.every((gap) => gap >= 150), `pauses between reads (ms): ${gaps.join(', ')}`);
  assert.deepEqual(got.errors, []);
});

test('a changed power limit: the GPU is described anew once per change, not at every refresh', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-limit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wrapper, runs } = listWrapper(dir);
  const logged: string[] = [];
  const note = (_o: unknown, m?: string) => { if (m) logged.push(m); };
  const log = { info: note, warn: note, debug() {}, error: note };
  const smi = source(c.path, {}, { binary: wrapper, inventoryRefreshMs: 50, log: log as unknown as NonNullable<NvidiaSmiPowerSourceOptions['log']> });
  const [gpu] = await smi.init();
  assert.ok(gpu);
  const captured = capturedWatts(c.sections, 'idle', 'enforced.power.limit');
  assert.equal(gpu.powerLimitW, captured);
  const got = new SampleCollector();
  const told: GpuInfo[] = [];
  smi.start(got.onSamples, got.onError, (g) => told.push(g));
  const reads = () => runs().filter((r) => Number.isFinite(r.end)).length;
  try {
    let at = reads();
    await got.waitFor(() => reads() >= at + 4, 10_000, 'four reads of the GPU list');
    writeFileSync(join(dir, 'set'), `enforced.power.limit=${captured - 100}.00 W`);
    await got.waitFor(() => told.length > 0, 10_000, 'the new power limit told');
    at = reads();
    await got.waitFor(() => reads() >= at + 4, 10_000, 'four more reads');
    writeFileSync(join(dir, 'set'), '');
    await got.waitFor(() => told.length > 1, 10_000, 'the old power limit told');
    at = reads();
    await got.waitFor(() => reads() >= at + 4, 10_000, 'four more reads');
  } finally {
    await smi.shutdown();
  }
  assert.deepEqual(told.map((g) => g.powerLimitW), [captured - 100, captured]);
  const described = logged.filter((m) => m.startsWith(`GPU 0 (${gpu.uuid}) `));
  assert.equal(described.length, 2, described.join('\n'));
  assert.ok(described.every((m) => m.endsWith('described anew by nvidia-smi')), described.join('\n'));
});

/**
 * nvidia-smi through a wrapper whose GPU list always shows `listed` GPUs while each start of the
 * stream (-lms) takes the next line of `plan`, "GPUS MODE" (the last line once they run out):
 * how many GPUs that stream prints, and whether it hangs after FAKE_NVIDIA_SMI_AFTER ticks.
 */
/** How many times a wrapper started the stream: the lines it appended to its starts file. */
function streamStarts(file: string): number {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').length : 0;
}

function streamPlanWrapper(dir: string, listed: number, plan: readonly string[]): { wrapper: string; starts: () => number } {
  const wrapper = join(dir, 'nvidia-smi');
  const starts = join(dir, 'starts');
  const planFile = join(dir, 'plan');
  writeFileSync(planFile, `${plan.join('\n')}\n`);
  writeFileSync(wrapper, `#!/bin/sh
export FAKE_NVIDIA_SMI_GPUS=${listed}
case " $* " in
  *" -lms "*)
    n=$(( $(cat ${JSON.stringify(starts)} 2>/dev/null | wc -l) + 1 ))
    echo start >> ${JSON.stringify(starts)}
    step=$(sed -n "\${n}p" ${JSON.stringify(planFile)})
    [ -z "$step" ] && step=$(tail -n 1 ${JSON.stringify(planFile)})
    export FAKE_NVIDIA_SMI_GPUS="\${step%% *}" FAKE_NVIDIA_SMI_MODE="\${step#* }"
    ;;
esac
exec ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@"
`);
  chmodSync(wrapper, 0o755);
  return { wrapper, starts: () => streamStarts(starts) };
}

test('the stream restarted after a hang: a GPU the hung stream printed and the new one does not is judged by the new one (the stream started again for it)', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-hang-printed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Start 1 prints both GPUs, then hangs; start 2 (the watchdog's) prints GPU 0 only; start 3 both.
  const { wrapper, starts } = streamPlanWrapper(dir, 2, ['2 hang', '1 replay', '2 replay']);
  const warnings: string[] = [];
  const log = { info() {}, debug() {}, error() {}, warn: (_o: unknown, m?: string) => { if (m) warnings.push(m); } };
  // A stall timeout well above a loaded machine's pauses: the only hang is the planned one.
  const smi = source(c.path, { FAKE_NVIDIA_SMI_AFTER: '10' }, { binary: wrapper, inventoryRefreshMs: 150, stallTimeoutMs: 1500, log: log as unknown as NonNullable<NvidiaSmiPowerSourceOptions['log']> });
  const [, gpu1] = await smi.init();
  assert.ok(gpu1);
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('hang').length > 0 && starts() >= 2, 10_000, 'the hung stream restarted');
    const before = got.of(gpu1.uuid).length;
    // Before the fix the set of GPUs printed kept GPU 1 from the hung stream: the new stream was
    // taken to print it, never started again, and GPU 1 went unsampled with nothing said.
    await got.waitFor(() => got.of(gpu1.uuid).length >= before + 3, 5_000, 'GPU 1 sampled again');
  } finally {
    await smi.shutdown();
  }
  assert.equal(starts(), 3);
  assert.equal(warnings.filter((w) => w.includes(`nvidia-smi lists ${gpu1.uuid} but its stream prints no line for them: restarting the stream`)).length, 1, warnings.join('\n'));
  assert.deepEqual(got.errors.map((e) => e.reason), ['hang']);
});

test('a GPU the stream was started again for, printed since: a later stream (after a hang) that does not print it earns one more start', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-hang-again-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Start 1 leaves GPU 1 out (started again for it); start 2 prints it, then hangs; start 3 (the
  // watchdog's) leaves it out again; start 4 prints both.
  const { wrapper, starts } = streamPlanWrapper(dir, 2, ['1 replay', '2 hang', '1 replay', '2 replay']);
  const smi = source(c.path, { FAKE_NVIDIA_SMI_AFTER: '10' }, { binary: wrapper, inventoryRefreshMs: 150, stallTimeoutMs: 1500 });
  const [, gpu1] = await smi.init();
  assert.ok(gpu1);
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => got.errorsOf('hang').length > 0 && starts() >= 3, 10_000, 'the hung second stream restarted');
    const before = got.of(gpu1.uuid).length;
    assert.ok(before > 0, 'the second stream printed GPU 1');
    // Before the fix its one start was spent for good: the third stream was left as it was.
    await got.waitFor(() => got.of(gpu1.uuid).length >= before + 3, 5_000, 'GPU 1 sampled again');
  } finally {
    await smi.shutdown();
  }
  assert.equal(starts(), 4);
});

test('streams that each leave out another GPU are not started again and again: a restart the source makes gives no GPU its restart back', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-alternate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wrapper = join(dir, 'nvidia-smi');
  const startsFile = join(dir, 'starts');
  // The list always shows GPUs 0 and 1; the stream's odd starts print GPU 0 only, its even starts GPU 1 only.
  writeFileSync(wrapper, `#!/bin/sh
export FAKE_NVIDIA_SMI_GPUS=2
case " $* " in
  *" -lms "*)
    echo start >> ${JSON.stringify(startsFile)}
    n=$(wc -l < ${JSON.stringify(startsFile)})
    if [ $((n % 2)) -eq 1 ]; then drop=GPU-00000001; else drop=GPU-00000000; fi
    ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@" | grep --line-buffered -v "$drop"
    exit 0 ;;
esac
exec ${JSON.stringify(process.execPath)} ${JSON.stringify(binary)} "$@"
`);
  chmodSync(wrapper, 0o755);
  const starts = () => streamStarts(startsFile);
  const smi = source(c.path, { FAKE_NVIDIA_SMI_AFTER: '100000' }, { binary: wrapper, inventoryRefreshMs: 150, stallTimeoutMs: 3000 });
  await smi.init();
  const got = new SampleCollector();
  smi.start(got.onSamples, got.onError);
  try {
    await got.waitFor(() => starts() >= 3, 10_000, 'the stream started again for each GPU once');
    // About six refresh intervals: a loop would start the stream again every two or three of them.
    await sleep(1500);
  } finally {
    await smi.shutdown();
  }
  // One start for each GPU left out, then no more.
  assert.equal(starts(), 3);
});

test('a GPU first seen in the stream is told with its name, power limit and MIG devices from the start; its samples wait for the list, none lost', async (t) => {
  const c = capture('h100-mig');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-added-mig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  // No periodic read in the test's time: the stream is what finds the GPU.
  const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile }, { inventoryRefreshMs: 60_000 });
  const [gpu0] = await smi.init();
  assert.equal(gpu0?.migInstances?.length, 4);
  const got = new SampleCollector();
  const told: { gpu: GpuInfo; atMs: number; samplesBefore: number }[] = [];
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  smi.start(got.onSamples, got.onError, (gpu) => told.push({ gpu, atMs: Date.now(), samplesBefore: got.of(gpu.uuid).length }));
  try {
    await got.waitFor(() => got.samples.length >= 2, 10_000, 'GPU 0 sampled');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => got.of(added).length >= 5, 10_000, 'the new GPU sampled');
  } finally {
    await smi.shutdown();
  }
  // Before the fix it was told first as "NVIDIA GPU (not described yet)" without MIG devices:
  // records naming those were refused until the list was read again.
  assert.equal(told.length, 1, JSON.stringify(told));
  const [first] = told;
  assert.deepEqual(first?.gpu, {
    uuid: added, index: 1, name: capturedCell(c.sections, 'idle', 'name'), powerLimitW: capturedWatts(c.sections, 'idle', 'enforced.power.limit'),
    migEnabled: true, migInstances: (gpu0?.migInstances ?? []).map((m) => m.replace(/^(MIG-[0-9a-f]{8})-0000-/, '$1-0001-')),
  });
  assert.equal(first?.samplesBefore, 0, 'told before its first sample');
  // The lines printed while the list was read were held, not dropped: stamped before it was told.
  assert.ok(got.of(added).some((s) => s.timestampMs < (first?.atMs ?? 0)), 'samples taken before it was described');
  assert.deepEqual(got.errors, []);
});

test('a GPU first seen in the stream that the list describes late: told undescribed after describeWaitMs, its samples released, described when the list answers', async (t) => {
  const c = capture('h100-mig');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-added-slow-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wrapper } = listWrapper(dir);
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  const smi = source(c.path, { FAKE_NVIDIA_SMI_GPUS_FILE: countFile }, { binary: wrapper, inventoryRefreshMs: 60_000, describeWaitMs: 300 });
  await smi.init();
  const got = new SampleCollector();
  const told: { gpu: GpuInfo; samplesBefore: number }[] = [];
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  smi.start(got.onSamples, got.onError, (gpu) => told.push({ gpu, samplesBefore: got.of(gpu.uuid).length }));
  try {
    await got.waitFor(() => got.samples.length >= 2, 10_000, 'GPU 0 sampled');
    writeFileSync(join(dir, 'delay'), '1.5');
    writeGpuCount(countFile, 2);
    await got.waitFor(() => told.length >= 1, 10_000, 'the new GPU told');
    assert.equal(told[0]?.gpu.name, 'NVIDIA GPU (not described yet)');
    assert.deepEqual(told[0]?.gpu.migInstances, []);
    assert.equal(told[0]?.samplesBefore, 0, 'told before its first sample');
    await got.waitFor(() => got.of(added).length > 0, 1000, 'its held samples released');
    await got.waitFor(() => told.length >= 2, 10_000, 'the new GPU described by the slow list');
  } finally {
    await smi.shutdown();
  }
  assert.equal(told[1]?.gpu.migInstances?.length, 4);
  assert.deepEqual(got.errors, []);
});

test('a GPU the stream prints that the list does not show: told undescribed once the list is read, its samples kept', async (t) => {
  const c = capture('h100-80gb');
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-unlisted-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wrapper } = streamPlanWrapper(dir, 1, ['2 replay']);
  const smi = source(c.path, {}, { binary: wrapper, inventoryRefreshMs: 60_000 });
  await smi.init();
  const got = new SampleCollector();
  const told: { gpu: GpuInfo; samplesBefore: number }[] = [];
  const added = 'GPU-00000001-0000-0000-0000-000000000000';
  smi.start(got.onSamples, got.onError, (gpu) => told.push({ gpu, samplesBefore: got.of(gpu.uuid).length }));
  try {
    await got.waitFor(() => got.of(added).length >= 3, 10_000, 'the unlisted GPU sampled');
  } finally {
    await smi.shutdown();
  }
  assert.deepEqual(told.map((t) => [t.gpu.uuid, t.gpu.name, t.samplesBefore]), [[added, 'NVIDIA GPU (not described yet)', 0]]);
});
