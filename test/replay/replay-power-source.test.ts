import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PowerSample } from '../../model/power-sample.js';
import type { PowerSourceError } from '../../collectors/power-source.js';
import { ReplayPowerSource } from '../../collectors/replay/replay-power-source.js';
import { buildEnergyTimeline } from '../../model/energy-timeline.js';
import { loadConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { createPowerSource } from '../../agent/power-source-factory.js';

const T = 1_793_534_400_000; // 2026-11-01T12:00:00Z
/** Two GPUs, 5 samples each, 100 ms apart, with energy counters; one bad line (line 4). */
const PLAIN = [
  'timestamp_ms,gpu,power_w,energy_j',
  ...[0, 1, 2, 3, 4].flatMap((k) => [`${T + k * 100},0,${300 + k},${1000 + k * 30}`, `${T + k * 100},1,${100 + k},${500 + k * 10}`]).slice(0, 2),
  'not,a,valid,line',
  ...[1, 2, 3, 4].flatMap((k) => [`${T + k * 100},0,${300 + k},${1000 + k * 30}`, `${T + k * 100},1,${100 + k},${500 + k * 10}`]),
].join('\n');

function fakeClock(start: number) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

function collect(source: ReplayPowerSource) {
  const batches: PowerSample[][] = [];
  const errors: PowerSourceError[] = [];
  source.start((s) => batches.push([...s]), (e) => errors.push(e));
  return { batches, errors };
}

test('replays in trace time, first sample at now, bad lines reported by number, then stops', async () => {
  const clock = fakeClock(5_000_000_000_000);
  let ended = 0;
  const source = new ReplayPowerSource({ path: 'trace.csv', readFile: async () => PLAIN, clock, tickMs: 60_000, onEnd: () => void ended++ });
  const gpus = await source.init();
  assert.deepEqual(gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-index-0'], [1, 'GPU-index-1']]);
  const { batches, errors } = collect(source);
  assert.deepEqual(errors.map((e) => [e.reason, e.message]), [['parse', 'trace.csv:4: timestamp_ms: not a number ("not")']]);
  // At start only the first instant is due.
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0]?.map((s) => [s.timestampMs, s.gpuIndex, s.powerW, s.energyJ]), [[5_000_000_000_000, 0, 300, 1000], [5_000_000_000_000, 1, 100, 500]]);
  clock.advance(99);
  assert.equal(source.pump(), 0);
  clock.advance(1);
  assert.equal(source.pump(), 2);
  clock.advance(250);
  assert.equal(source.pump(), 4); // 200 and 300 ms
  assert.equal(ended, 0);
  clock.advance(10_000);
  assert.equal(source.pump(), 2);
  assert.equal(ended, 1);
  assert.equal(source.pump(), 0);
  const all = batches.flat();
  assert.deepEqual(all.filter((s) => s.gpuIndex === 0).map((s) => s.timestampMs - 5_000_000_000_000), [0, 100, 200, 300, 400]);
  assert.ok(source.quality().notes.some((n) => /replay ended/.test(n)));
  await source.shutdown();
});

test('keepTimestamps emits the trace\'s own times; loop keeps time and energy counters going up', async () => {
  const clock = fakeClock(6_000_000_000_000);
  const kept = new ReplayPowerSource({ path: 't', readFile: async () => PLAIN, clock, keepTimestamps: true, tickMs: 60_000 });
  await kept.init();
  const k = collect(kept);
  clock.advance(1000);
  kept.pump();
  assert.deepEqual(k.batches.flat().filter((s) => s.gpuIndex === 0).map((s) => s.timestampMs - T), [0, 100, 200, 300, 400]);
  await kept.shutdown();

  const loopClock = fakeClock(7_000_000_000_000);
  const looped = new ReplayPowerSource({ path: 't', readFile: async () => PLAIN, clock: loopClock, loop: true, tickMs: 60_000 });
  await looped.init();
  const l = collect(looped);
  loopClock.advance(1_450); // 500 ms per loop (400 ms of trace + one period): three loops due
  looped.pump();
  const gpu0 = l.batches.flat().filter((s) => s.gpuIndex === 0);
  assert.equal(gpu0.length, 15);
  assert.deepEqual(gpu0.map((s) => s.timestampMs - 7_000_000_000_000), Array.from({ length: 15 }, (_, i) => i * 100));
  const energy = gpu0.map((s) => s.energyJ as number);
  assert.ok(energy.every((e, i) => i === 0 || e > (energy[i - 1] as number)), energy.join(' '));
  // Across the loop seam the counter gains the gap's energy at the last power: 304 W x 0.1 s.
  assert.ok(Math.abs((energy[5] as number) - (energy[4] as number) - 30.4) < 1e-9);
  await looped.shutdown();
});

test('loop over a trace whose counter resets: no energy invented at the seam, the reset stays a reset in every loop', async () => {
  // 100 W for 4 s; the counter restarts (driver reload) between the 2nd and 3rd sample.
  const trace = ['timestamp_ms,gpu,power_w,energy_j', `${T},0,100,1000`, `${T + 1000},0,100,1100`, `${T + 2000},0,100,0`, `${T + 3000},0,100,100`].join('\n');
  const clock = fakeClock(8_000_000_000_000);
  const looped = new ReplayPowerSource({ path: 't', readFile: async () => trace, clock, loop: true, tickMs: 60_000 });
  await looped.init();
  const l = collect(looped);
  clock.advance(11_000); // samples at 0..11 s: three loops of 4 s
  looped.pump();
  await looped.shutdown();
  const energy = l.batches.flat().map((s) => s.energyJ as number);
  assert.equal(energy.length, 12);
  const steps = energy.slice(1).map((e, i) => e - (energy[i] as number));
  // Every step is the 100 J the GPU used in that second, except the trace's reset, once per loop.
  assert.deepEqual(steps.map((d, i) => (i % 4 === 1 ? 'reset' : d)), [100, 'reset', 100, 100, 100, 'reset', 100, 100, 100, 'reset', 100]);
  assert.ok([1, 5, 9].every((i) => (steps[i] as number) < 0), 'the reset goes backwards, so it is flagged as one');
  assert.deepEqual(energy.slice(4, 8), [200, 300, 0, 100], 'the second loop starts where the first ended, plus the gap');
});

test('loop over a trace of two joined counter runs (counter_run_start): each loop replays the run start as a reset, and the seam is no new run', async () => {
  // 100 W for 5 s: one process's counter from 1 MJ, then, marked, another's just under where it ended.
  const trace = [
    'timestamp_ms,gpu,power_w,energy_j,counter_run_start',
    `${T},0,100,1000000,1`, `${T + 1000},0,100,1000100,0`, `${T + 2000},0,100,1000050,1`, `${T + 3000},0,100,1000150,0`, `${T + 4000},0,100,1000250,0`,
  ].join('\n');
  const clock = fakeClock(8_200_000_000_000);
  const looped = new ReplayPowerSource({ path: 't', readFile: async () => trace, clock, loop: true, tickMs: 60_000 });
  await looped.init();
  const l = collect(looped);
  clock.advance(14_000); // samples at 0..14 s: three loops of 5 s
  looped.pump();
  await looped.shutdown();
  const samples = l.batches.flat();
  assert.equal(samples.length, 15);
  assert.deepEqual(samples.flatMap((s, i) => (s.counterRunStart === true ? [i] : [])), [0, 2, 7, 12], 'the trace\'s run starts, not the loop seams');
  // Every second is 100 J: counted by the counter within a run, from power across each run start.
  const timeline = buildEnergyTimeline(samples, { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(timeline.intervals.map((i) => i.energyJ), Array.from({ length: 14 }, () => 100));
  assert.deepEqual(timeline.intervals.flatMap((iv, i) => (iv.counterReset ? [i] : [])), [1, 6, 11]);
});

test('loop over a trace with a low counter reading (a glitch): loops continue the counter, the glitch stays a glitch', async () => {
  // 100 W for 4 s; the 3rd reading is 10 J low, well under 1% of the counter: not a reset.
  const trace = ['timestamp_ms,gpu,power_w,energy_j', `${T},0,100,5000`, `${T + 1000},0,100,5100`, `${T + 2000},0,100,5090`, `${T + 3000},0,100,5300`].join('\n');
  const clock = fakeClock(8_500_000_000_000);
  const looped = new ReplayPowerSource({ path: 't', readFile: async () => trace, clock, loop: true, tickMs: 60_000 });
  await looped.init();
  const l = collect(looped);
  clock.advance(11_000);
  looped.pump();
  await looped.shutdown();
  const energy = l.batches.flat().map((s) => s.energyJ as number);
  assert.deepEqual(energy, [5000, 5100, 5090, 5300, 5400, 5500, 5490, 5700, 5800, 5900, 5890, 6100], 'each loop adds the 300 J of the trace and the 100 J of the gap');
});

test('loop over a trace with one bogus 0 that the next reading climbs straight back from: a glitch in every loop, never a reset', async () => {
  // 100 W for 4 s on a 1 MJ counter; the 3rd reading is 0. Judged without the reading after it, the
  // 0 was a reset: from the second loop on the counter was replayed raw from there, so every loop
  // went backwards by ~1 MJ and the energy model counted a reset (and spikes) in each.
  const trace = ['timestamp_ms,gpu,power_w,energy_j', `${T},0,100,1000000`, `${T + 1000},0,100,1000100`, `${T + 2000},0,100,0`, `${T + 3000},0,100,1000300`].join('\n');
  const clock = fakeClock(8_700_000_000_000);
  const looped = new ReplayPowerSource({ path: 't', readFile: async () => trace, clock, loop: true, tickMs: 60_000 });
  await looped.init();
  const l = collect(looped);
  clock.advance(11_000);
  looped.pump();
  await looped.shutdown();
  const samples = l.batches.flat();
  const energy = samples.map((s) => s.energyJ as number);
  // Each loop goes on from the last (300 J of trace and 100 J of gap), its bogus reading moved with it.
  assert.deepEqual(energy, [1_000_000, 1_000_100, 0, 1_000_300, 1_000_400, 1_000_500, 400, 1_000_700, 1_000_800, 1_000_900, 800, 1_001_100]);
  const timeline = buildEnergyTimeline(samples, { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(timeline.intervals.filter((i) => i.counterReset), [], 'no loop replays the glitch as a reset');
  assert.equal(timeline.intervals.reduce((sum, i) => sum + i.energyJ, 0), 1100, 'the 11 s at 100 W, counted once');
});

test('real time: a short trace comes out paced by its own timestamps', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-replay-'));
  try {
    const path = join(dir, 'trace.csv');
    writeFileSync(path, ['timestamp_ms,gpu,power_w,energy_j', ...[0, 1, 2, 3].map((k) => `${T + k * 60},0,${200 + k},`)].join('\n'));
    let ended = false;
    const source = new ReplayPowerSource({ path, tickMs: 5, onEnd: () => void (ended = true) });
    await source.init();
    const arrivals: { wall: number; sample: PowerSample }[] = [];
    const started = Date.now();
    source.start((s) => s.forEach((sample) => arrivals.push({ wall: Date.now() - started, sample })), (e) => assert.fail(e.message));
    assert.equal(arrivals.length, 1, 'only the first sample at once');
    for (let waited = 0; !ended && waited < 3000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    await source.shutdown();
    assert.ok(ended);
    assert.deepEqual(arrivals.map((a) => a.sample.powerW), [200, 201, 202, 203]);
    const stamps = arrivals.map((a) => a.sample.timestampMs);
    assert.deepEqual(stamps.map((t) => t - (stamps[0] as number)), [0, 60, 120, 180]);
    assert.ok(Math.abs((stamps[0] as number) - started) < 50, 'first sample stamped at the start');
    // Nothing comes out early: the last sample waited for its 180 ms.
    assert.ok((arrivals[3]?.wall as number) >= 175, `last at ${arrivals[3]?.wall} ms`);
    assert.equal(source.quality().samplePeriodMs, 60);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a real nvidia-smi capture replays with its GPU inventory; quality says replay, no counter', async () => {
  const path = new URL('../fixtures/traces/nvidia-smi-h100-80gb-hbm3-590.48.01.csv', import.meta.url).pathname;
  const source = new ReplayPowerSource({ path, tickMs: 60_000 });
  const gpus = await source.init();
  assert.deepEqual(gpus.map((g) => [g.name, g.powerLimitW]), [['NVIDIA H100 80GB HBM3', 700]]);
  const q = source.quality();
  assert.equal(q.kind, 'replay');
  assert.equal(q.energyCounter, false);
  assert.equal(q.simulated, false);
  assert.ok(q.notes.some((n) => /read as UTC/.test(n)));
  assert.ok(q.notes.some((n) => /first sample is the replay start/.test(n)));
  await source.shutdown();
  assert.ok(readFileSync(path, 'utf8').length > 0);
});

test('init fails with a clear message when the file is missing or has no usable sample', async () => {
  await assert.rejects(new ReplayPowerSource({ path: '/nonexistent/trace.csv' }).init(), /replay: cannot read \/nonexistent\/trace\.csv/);
  await assert.rejects(
    new ReplayPowerSource({ path: 'bad.csv', readFile: async () => 'timestamp_ms,gpu,power_w,energy_j\n1,0,1,1\n' }).init(),
    /bad\.csv has no usable samples \(1 bad lines; first: bad\.csv:2: timestamp_ms: 1 is not epoch milliseconds/,
  );
  const early = new ReplayPowerSource({ path: 'x', readFile: async () => PLAIN });
  const errors: PowerSourceError[] = [];
  early.start(() => assert.fail('no samples before init'), (e) => errors.push(e));
  assert.deepEqual(errors.map((e) => e.reason), ['not_initialised']);
});

test('keepTimestamps with a window: a trace that starts before the lateness window or too far ahead is refused at init, naming analyze', async () => {
  const window = { beforeMs: 120_000, afterMs: 300_000 };
  const at = (nowMs: number) => new ReplayPowerSource({ path: 'old.csv', readFile: async () => PLAIN, clock: fakeClock(nowMs), keepTimestamps: true, keptTimestampsWindow: window, tickMs: 60_000 });
  // 146 days old, as a capture replayed long after it was recorded.
  await assert.rejects(at(T + 146 * 86_400_000).init(), (error: Error) => {
    assert.match(error.message, /^replay: old\.csv starts at 2026-11-01T12:00:00\.000Z, 146\.0 d before now: .* every sample would arrive after its period settled \(--settle-lateness 120 s\)/);
    assert.match(error.message, /tokenwatt analyze --power FILE --requests FILE/);
    return true;
  });
  await assert.rejects(at(T + 120_001).init(), /starts at 2026-11-01T12:00:00\.000Z, 120 s before now: /);
  await assert.rejects(at(T - 300_001).init(), /starts at 2026-11-01T12:00:00\.000Z, 300 s after now, more than the 300 s a record may be ahead of the clock/);
  // Within the window, at either edge: replayed at its own times.
  for (const nowMs of [T + 120_000, T - 300_000]) {
    const source = at(nowMs);
    assert.equal((await source.init()).length, 2);
    const { batches } = collect(source);
    assert.equal(batches[0]?.[0]?.timestampMs, T);
    await source.shutdown();
  }
  // Moved to now, the trace's own times do not matter; nor without a window.
  await new ReplayPowerSource({ path: 'old.csv', readFile: async () => PLAIN, clock: fakeClock(T + 146 * 86_400_000), keptTimestampsWindow: window }).init();
  await new ReplayPowerSource({ path: 'old.csv', readFile: async () => PLAIN, clock: fakeClock(T + 146 * 86_400_000), keepTimestamps: true }).init();
});

test('run --power replay: with --replay-keep-timestamps true, createPowerSource refuses a past trace (lateness from the config) and replays one that starts now', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-replay-keep-'));
  try {
    const write = (name: string, t0: number): string => {
      const path = join(dir, name);
      writeFileSync(path, ['timestamp_ms,gpu,power_w,energy_j', ...[0, 1, 2].map((k) => `${t0 + k * 100},0,300,${1000 + 30 * k}`)].join('\n') + '\n');
      return path;
    };
    const log = createLogger({ level: 'silent' });
    const configOf = (path: string, lateness: string) => {
      const loaded = loadConfig({ flags: { power: `replay:${path}`, replayKeepTimestamps: 'true', settleLateness: lateness }, env: {} });
      assert.ok(loaded.ok);
      return loaded.config;
    };
    const recorded = write('recorded.csv', Date.now() - 600_000);
    await assert.rejects(createPowerSource(configOf(recorded, '120'), log), /recorded\.csv starts at .*, 600 s before now: .*\(--settle-lateness 120 s\)/);
    // A longer lateness covers it.
    const covered = await createPowerSource(configOf(recorded, '900'), log);
    await covered.shutdown();
    const current = write('current.csv', Date.now());
    const source = await createPowerSource(configOf(current, '120'), log);
    const emitted: PowerSample[] = [];
    source.start((s) => emitted.push(...s), () => undefined);
    await source.shutdown();
    assert.equal(emitted[0]?.timestampMs, Number(readFileSync(current, 'utf8').split('\n')[1]?.split(',')[0]), 'the first sample keeps its own time');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a recording of the simulator replays still flagged simulated', async () => {
  const text = 'timestamp_ms,gpu,power_w,energy_j,simulated\n1793534400000,GPU-sim00000-0000-0000-0000-000000000000,300,10,1\n1793534400100,GPU-sim00000-0000-0000-0000-000000000000,310,40,1\n';
  const clock = fakeClock(8_000_000_000_000);
  const source = new ReplayPowerSource({ path: 'sim.csv', readFile: async () => text, clock, tickMs: 60_000 });
  await source.init();
  assert.equal(source.quality().simulated, true);
  const { batches } = collect(source);
  clock.advance(100);
  source.pump();
  assert.ok(batches.flat().every((s) => s.simulated === true));
  assert.equal(batches.flat().length, 2);
  await source.shutdown();
});

test('run --power replay: an nvidia-smi capture\'s UTC offset comes from flag, environment or config file and reaches the replay', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-replay-tz-'));
  try {
    // Captured just now on a UTC+2 host, its clock two hours ahead of UTC (a kept-timestamps replay
    // must start about now).
    const t0 = Math.floor(Date.now() / 1000) * 1000;
    const local = (ms: number): string => new Date(ms + 120 * 60_000).toISOString().replace(/-/g, '/').replace('T', ' ').replace('Z', '');
    const trace = join(dir, 'smi.csv');
    writeFileSync(trace, `timestamp, index, uuid, power.draw.instant [W]\n${local(t0)}, 0, GPU-aaaa, 300.00 W\n${local(t0 + 1000)}, 0, GPU-aaaa, 300.00 W\n`);
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'replayNvidiaSmiUtcOffset: 120\n');
    const inputs = [
      { flags: { power: `replay:${trace}`, replayKeepTimestamps: 'true', replayNvidiaSmiUtcOffset: '120' }, env: {} },
      { flags: { power: `replay:${trace}`, replayKeepTimestamps: 'true' }, env: { TOKENWATT_REPLAY_NVIDIA_SMI_UTC_OFFSET: '120' } },
      { flags: { power: `replay:${trace}`, replayKeepTimestamps: 'true' }, env: {}, configFile: file },
    ];
    for (const input of inputs) {
      const loaded = loadConfig(input);
      assert.ok(loaded.ok, JSON.stringify(input));
      const source = await createPowerSource(loaded.config, createLogger({ level: 'silent' }));
      await source.init();
      const emitted: PowerSample[] = [];
      source.start((s) => emitted.push(...s), () => undefined);
      await source.shutdown();
      assert.equal(emitted[0]?.timestampMs, t0, JSON.stringify(input));
    }
    const bad = loadConfig({ flags: { replayNvidiaSmiUtcOffset: '2h' }, env: {} });
    assert.ok(!bad.ok);
    assert.match(bad.errors.join('\n'), /replay-nvidia-smi-utc-offset/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
