import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PowerSample } from '../../model/power-sample.js';
import { parseRequestRecord, toWire, type RequestRecord } from '../../model/request-record.js';
import type { PowerSourceError } from '../../collectors/power-source.js';
import { curvesFor, GPU_TYPES } from '../../collectors/simulated/calibration.js';
import { SimulatedGpuNode, type SimulatedGpuNodeConfig } from '../../collectors/simulated/simulated-gpu-node.js';

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

function config(overrides: Partial<SimulatedGpuNodeConfig> = {}): SimulatedGpuNodeConfig {
  return {
    gpuType: 'H100',
    gpuCount: 4,
    startMs: T0,
    seed: 11,
    replicas: [
      { name: 'small', model: 'meta-llama/Llama-3.1-8B-Instruct', tier: 'small', paramsB: 8, gpus: [0], maxBatch: 256 },
      { name: 'big', model: 'meta-llama/Llama-3.1-70B-Instruct', tier: 'medium', paramsB: 70, gpus: [1, 2] },
    ],
    ...overrides,
  };
}

/** A node in virtual mode with everything it emits collected. */
function harness(cfg: SimulatedGpuNodeConfig) {
  const node = new SimulatedGpuNode(cfg);
  const batches: PowerSample[][] = [];
  const errors: PowerSourceError[] = [];
  const records: RequestRecord[] = [];
  const truthAtBatch: Record<string, number>[] = [];
  node.attach((s) => {
    batches.push([...s]);
    truthAtBatch.push({ ...node.truth().perGpuJ });
  }, (e) => errors.push(e));
  node.onRequestDone((r) => records.push(r));
  return { node, batches, errors, records, truthAtBatch, samples: () => batches.flat() };
}

const spec = (requestId: string, over: Record<string, unknown> = {}) => ({
  requestId, replica: 'small', promptTokens: 1000, cachedTokens: 0, maxCompletionTokens: 4096, ...over,
});

test('an idle node draws the captured idle power on every GPU, all of it idle energy', () => {
  const h = harness(config());
  h.node.advanceTo(T0 + 10_000);
  const idleW = GPU_TYPES.H100.idlePowerW;
  assert.ok(h.samples().every((s) => s.powerW === idleW && s.simulated === true && s.powerAveraged === false));
  const truth = h.node.truth();
  for (const [uuid, j] of Object.entries(truth.perGpuJ)) {
    assert.ok(Math.abs(j - idleW * 10) < 1e-6, `${uuid}: ${j}`);
    assert.equal(truth.idleJByGpu[uuid], j);
  }
  // 10 Hz on the wall-clock grid: 100 samples per GPU in (T0, T0+10 s], the first at T0 itself.
  assert.equal(h.batches.length, 101);
  assert.deepEqual(h.batches.slice(0, 3).map((b) => b[0]?.timestampMs), [T0, T0 + 100, T0 + 200]);
});

test('one request: timeline, tokens and energy follow the calibrated curves', () => {
  const h = harness(config());
  const curves = curvesFor('H100', { paramsB: 8, numGpus: 1 });
  h.node.advanceTo(T0 + 1000);
  h.node.submit(spec('r1', { cachedTokens: 200, outputTokens: 150, labels: { team: 'a' }, taskId: 't1', attempt: 1 }));
  h.node.advanceTo(T0 + 20_000);
  assert.equal(h.records.length, 1);
  const r = h.records[0] as RequestRecord;
  // One step prefills the 800 uncached tokens (compute-bound), then one token per decode step.
  const ttftMs = 1000 * curves.engineStepS(1, 800);
  assert.equal(ttftMs, 1000 * 800 / curves.prefillTokensPerS);
  const decodeMs = 149 * 1000 * curves.stepTimeS(1);
  assert.equal(r.startMs, T0 + 1000);
  assert.ok(Math.abs((r.firstTokenMs as number) - (T0 + 1000 + ttftMs)) <= 1);
  assert.ok(Math.abs(r.endMs - (T0 + 1000 + ttftMs + decodeMs)) <= 1);
  assert.equal(r.completionTokens, 150);
  assert.equal(r.batchSize, 1);
  assert.equal(r.status, 'ok');
  assert.equal(r.source, 'simulated');
  assert.equal(r.tier, 'small');
  assert.equal(r.taskId, 't1');
  assert.deepEqual(r.labels, { team: 'a' });
  assert.deepEqual(r.gpus, [h.node.gpus()[0]?.uuid]);
  // GPU 0 drew the prefill step's power, then P(1) while decoding, and idle power otherwise; GPU 3 serves nothing.
  const busyS = (ttftMs + decodeMs) / 1000;
  const truth = h.node.truth();
  const uuid0 = h.node.gpus()[0]?.uuid as string;
  const prefillW = curves.enginePowerPerGpuW(1, 800);
  assert.ok(prefillW > curves.powerPerGpuW(1));
  assert.ok(Math.abs((truth.perGpuJ[uuid0] as number) - (prefillW * ttftMs / 1000 + curves.powerPerGpuW(1) * decodeMs / 1000 + GPU_TYPES.H100.idlePowerW * (20 - busyS))) < 1e-6);
  assert.ok(Math.abs((truth.idleJByGpu[uuid0] as number) - GPU_TYPES.H100.idlePowerW * (20 - busyS)) < 1e-6);
  assert.equal(truth.perReplicaJ.small, truth.perGpuJ[uuid0]);
});

test('a warm prefix cache shortens time to first token', () => {
  const cold = harness(config());
  cold.node.submit(spec('cold', { promptTokens: 8000, cachedTokens: 0 }));
  cold.node.advanceTo(T0 + 30_000);
  const warm = harness(config());
  warm.node.submit(spec('warm', { promptTokens: 8000, cachedTokens: 7680 }));
  warm.node.advanceTo(T0 + 30_000);
  const ttft = (r: RequestRecord | undefined): number => (r?.firstTokenMs as number) - (r?.startMs as number);
  assert.ok(ttft(warm.records[0]) * 5 < ttft(cold.records[0]), `${ttft(warm.records[0])} vs ${ttft(cold.records[0])}`);
});

test('continuous batching: the batch fills to maxBatch, the rest wait, power follows the batch', () => {
  const h = harness(config());
  for (let i = 0; i < 300; i++) h.node.submit(spec(`b${i}`, { promptTokens: 100, outputTokens: 400 }));
  h.node.advanceTo(T0 + 2000);
  const state = h.node.replicaState().find((s) => s.name === 'small');
  assert.equal(state?.running, 256);
  assert.equal(state?.decoding, 256);
  assert.equal(state?.queued, 44);
  const curves = curvesFor('H100', { paramsB: 8, numGpus: 1 });
  assert.equal(state?.powerPerGpuW, curves.powerPerGpuW(256));
  h.node.advanceTo(T0 + 120_000);
  assert.equal(h.records.length, 300);
  const batches = h.records.map((r) => r.batchSize as number);
  assert.equal(Math.max(...batches), 256);
  assert.deepEqual(batches.slice(0, 3), [1, 2, 3]);
  // The ones that waited were admitted as slots freed (the first 256 prefilled over four steps end in four groups).
  const late = h.records.filter((r) => r.requestId >= 'b256' && r.requestId.length === 4);
  assert.equal(late.length, 44);
  assert.ok(late.every((r) => (r.batchSize as number) > 150 && (r.startMs as number) === T0 && (r.firstTokenMs as number) > T0 + 10_000), late.map((r) => r.batchSize).join());
  assert.ok(h.records.every((r) => r.completionTokens === 400 && r.status === 'ok'));
  // Decode speed per request falls with the batch: a lone request finishes much sooner than one of 256.
  const lone = harness(config());
  lone.node.submit(spec('alone', { promptTokens: 100, outputTokens: 400 }));
  lone.node.advanceTo(T0 + 120_000);
  const dur = (r: RequestRecord | undefined): number => (r?.endMs as number) - (r?.firstTokenMs as number);
  assert.ok(dur(h.records.find((r) => r.requestId === 'b0')) > 2 * dur(lone.records[0]));
});

test('noise never takes power above the enforced limit: a full batch with noise stays at or under 700 W', () => {
  const h = harness(config({ noise: { powerStdW: 6 } }));
  for (let i = 0; i < 256; i++) h.node.submit(spec(`n${i}`, { promptTokens: 300, outputTokens: 2000 }));
  h.node.advanceTo(T0 + 30_000);
  const gpu0 = h.samples().filter((s) => s.gpuIndex === 0).map((s) => s.powerW as number);
  const limitW = GPU_TYPES.H100.powerLimitW;
  assert.ok(Math.max(...gpu0) <= limitW, `max ${Math.max(...gpu0)} W`);
  assert.ok(gpu0.filter((w) => w === limitW).length > 10, 'the batch runs at the limit');
});

test('chunked prefill: one step prefills many prompts within its token budget; waiting requests cost nothing', () => {
  const curves = curvesFor('H100', { paramsB: 8, numGpus: 1 });
  // 200 short prompts (6,000 tokens) fit in one 8,192-token step: all get their first token together.
  const short = harness(config());
  for (let i = 0; i < 200; i++) short.node.submit(spec(`s${i}`, { promptTokens: 30, outputTokens: 100 }));
  short.node.advanceTo(T0 + 60_000);
  const firstStepMs = 1000 * curves.engineStepS(200, 6000);
  assert.ok(short.records.every((r) => Math.abs((r.firstTokenMs as number) - (T0 + firstStepMs)) <= 1), `first tokens ${[...new Set(short.records.map((r) => (r.firstTokenMs as number) - T0))].join()}`);
  // ...then 99 decode steps of the 200 together.
  assert.ok(short.records.every((r) => Math.abs(r.endMs - (T0 + firstStepMs + 99_000 * curves.stepTimeS(200))) <= 1));
  // 20 prompts of 1,000 tokens need three steps of the budget (8,192 + 8,192 + 3,616 tokens).
  const long = harness(config());
  for (let i = 0; i < 20; i++) long.node.submit(spec(`l${i}`, { promptTokens: 1000, outputTokens: 50 }));
  long.node.advanceTo(T0 + 60_000);
  assert.equal(new Set(long.records.map((r) => r.firstTokenMs)).size, 3);
  assert.ok(Math.max(...long.records.map((r) => (r.firstTokenMs as number) - T0)) < 1000 * (3 * 8192 / curves.prefillTokensPerS + 0.1));
  // With maxBatch 4 and 100 requests queued, power and speed are those of the 4 that run.
  const capped = harness(config({ replicas: [{ name: 'small', model: 'm', tier: 'small', paramsB: 8, gpus: [0], maxBatch: 4 }] }));
  for (let i = 0; i < 100; i++) capped.node.submit(spec(`c${i}`, { promptTokens: 10, outputTokens: 1000 }));
  capped.node.advanceTo(T0 + 1000);
  const st = capped.node.replicaState()[0];
  assert.deepEqual([st?.running, st?.decoding, st?.queued], [4, 4, 96]);
  assert.equal(st?.powerPerGpuW, curves.powerPerGpuW(4));
});

test('cancellation mid-decode and while queued, and engine errors, end with partial tokens', () => {
  const h = harness(config({ replicas: [{ name: 'small', model: 'm', tier: 'small', paramsB: 8, gpus: [0], maxBatch: 1 }] }));
  h.node.submit(spec('long', { outputTokens: 2000, cancelAfterMs: 3000 }));
  h.node.submit(spec('queued', { outputTokens: 10, cancelAfterMs: 1000 }));
  h.node.submit(spec('broken', { outputTokens: 500, fail: true }));
  h.node.advanceTo(T0 + 60_000);
  const by = Object.fromEntries(h.records.map((r) => [r.requestId, r]));
  assert.equal(by.long?.status, 'cancelled');
  assert.equal(by.long?.endMs, T0 + 3000);
  assert.ok((by.long?.completionTokens as number) > 0 && (by.long?.completionTokens as number) < 2000);
  assert.equal(by.queued?.status, 'cancelled');
  assert.equal(by.queued?.firstTokenMs, null);
  assert.equal(by.queued?.batchSize, null);
  assert.equal(by.queued?.completionTokens, 0);
  assert.equal(by.broken?.status, 'error');
  assert.ok((by.broken?.completionTokens as number) < 500);
  assert.ok((by.broken?.startMs as number) < (by.broken?.endMs as number));
});

test('every record the node emits is valid on the wire', () => {
  const h = harness(config());
  for (let i = 0; i < 50; i++) h.node.submit(spec(`w${i}`, { reasoningTokens: 30, outputTokens: 20 + i, cancelAfterMs: i % 7 === 0 ? 500 : undefined, fail: i % 11 === 0, attempt: 1 + (i % 3), taskId: `t${i % 5}` }));
  h.node.advanceTo(T0 + 60_000);
  assert.equal(h.records.length, 50);
  for (const r of h.records) {
    const parsed = parseRequestRecord(toWire(r), 0);
    assert.ok(parsed.ok, JSON.stringify(parsed));
    // A parsed record carries gpusSent as null until it is resolved (model/request-record.ts).
    const { gpusSent, ...stated } = parsed.record;
    assert.equal(gpusSent, null);
    assert.deepEqual(stated, r);
    assert.ok(r.reasoningTokens <= r.completionTokens);
  }
});

test('conservation: counter deltas between samples equal the energy the simulator integrated', () => {
  const h = harness(config({ noise: { powerStdW: 15 } }));
  for (let i = 0; i < 200; i++) h.node.submit(spec(`c${i}`, { replica: i % 2 ? 'small' : 'big', atMs: T0 + i * 37, outputTokens: 50 + (i % 13) * 20 }));
  h.node.advanceTo(T0 + 40_000);
  const uuids = h.node.gpus().map((g) => g.uuid);
  for (const uuid of uuids) {
    let prev: { e: number; truth: number } | undefined;
    h.batches.forEach((batch, i) => {
      const s = batch.find((x) => x.gpuUuid === uuid) as PowerSample;
      const truth = h.truthAtBatch[i]?.[uuid] as number;
      if (prev) assert.ok(Math.abs((s.energyJ as number) - prev.e - (truth - prev.truth)) < 1.001e-3, `${uuid} batch ${i}`);
      prev = { e: s.energyJ as number, truth };
    });
  }
  const truth = h.node.truth();
  const total = Object.values(truth.perGpuJ).reduce((a, b) => a + b, 0);
  const unassigned = truth.perGpuJ[uuids[3] as string] as number;
  assert.ok(Math.abs(total - (truth.perReplicaJ.small as number) - (truth.perReplicaJ.big as number) - unassigned) < 1e-6);
  assert.equal(truth.idleJByGpu[uuids[3] as string], unassigned);
  // Noise moves power around the model, never below zero.
  const powers = h.samples().map((s) => s.powerW as number);
  assert.ok(powers.every((p) => p >= 0));
  assert.ok(new Set(powers).size > 100);
});

test('an injected counter reset makes the counter go backwards; truth keeps counting', () => {
  const h = harness(config({ inject: { counterResets: [{ gpu: 1, atMs: 5_050 }] } }));
  h.node.advanceTo(T0 + 10_000);
  const gpu1 = h.samples().filter((s) => s.gpuIndex === 1);
  const drops = gpu1.filter((s, i) => i > 0 && (s.energyJ as number) < ((gpu1[i - 1] as PowerSample).energyJ as number));
  assert.equal(drops.length, 1);
  assert.equal(drops[0]?.timestampMs, T0 + 5_100);
  // After the reset the counter counts from 0: at 5.1 s it holds 50 ms of idle energy.
  assert.ok(Math.abs((drops[0]?.energyJ as number) - GPU_TYPES.H100.idlePowerW * 0.05) < 2e-3);
  for (const g of [0, 2, 3]) {
    const counter = h.samples().filter((s) => s.gpuIndex === g).map((s) => s.energyJ as number);
    assert.ok(counter.every((e, i) => i === 0 || e >= (counter[i - 1] as number)), `GPU ${g} counts up`);
  }
  // Truth is not reset: GPU 1 integrated 10 s of idle power.
  assert.ok(Math.abs((h.node.truth().perGpuJ[h.node.gpus()[1]?.uuid as string] as number) - GPU_TYPES.H100.idlePowerW * 10) < 1e-6);
});

test('an injected dropout leaves a gap in one GPU\'s samples and reports it once', () => {
  const h = harness(config({ inject: { dropouts: [{ gpu: 2, fromMs: 2_000, toMs: 3_500 }] } }));
  h.node.advanceTo(T0 + 6_000);
  const times = h.samples().filter((s) => s.gpuIndex === 2).map((s) => s.timestampMs - T0);
  const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
  assert.equal(Math.max(...gaps), 1_600); // 1.9 s -> 3.5 s
  assert.ok(!times.some((t) => t >= 2_000 && t < 3_500));
  assert.equal(h.samples().filter((s) => s.gpuIndex === 0).length, 61);
  assert.deepEqual(h.errors.map((e) => e.reason), ['dropout']);
  assert.equal(h.errors[0]?.gpuUuid, h.node.gpus()[2]?.uuid);
});

test('same seed, same run: records, samples and energy are identical; another seed differs', () => {
  const run = (seed: number) => {
    const h = harness(config({ seed, noise: { powerStdW: 5 } }));
    for (let i = 0; i < 120; i++) h.node.submit(spec(`d${i}`, { replica: i % 3 ? 'small' : 'big', atMs: T0 + i * 61, fail: i % 17 === 0, outputTokens: 30 + i }));
    h.node.advanceTo(T0 + 30_000);
    return { records: h.records, samples: h.samples(), truth: h.node.truth() };
  };
  const a = run(5);
  const b = run(5);
  assert.deepEqual(a, b);
  const c = run(6);
  assert.notDeepEqual(a.samples, c.samples);
});

test('the node says it is simulated everywhere it shows', async () => {
  const node = new SimulatedGpuNode(config());
  const gpus = await node.init();
  assert.ok(gpus.every((g) => g.name.endsWith('(simulated)') && /^GPU-sim[0-9a-f]{5}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(g.uuid)), gpus.map((g) => g.uuid).join());
  assert.equal(new Set(gpus.map((g) => g.uuid)).size, 4);
  const q = node.quality();
  assert.equal(q.kind, 'simulated');
  assert.equal(q.simulated, true);
  assert.equal(q.energyCounter, true);
  assert.equal(q.samplePeriodMs, 100);
  assert.match(q.notes[0] ?? '', /^SIMULATED/);
  assert.ok(q.notes.some((n) => /GPUs 3 serve no replica/.test(n)));
});

test('bad configs and requests are refused with the reason', () => {
  const bad = (over: Partial<SimulatedGpuNodeConfig>, pattern: RegExp): void => {
    assert.throws(() => new SimulatedGpuNode(config(over)), pattern);
  };
  bad({ replicas: [{ name: 'a', model: 'm', tier: 't', paramsB: 8, gpus: [0] }, { name: 'b', model: 'm', tier: 't', paramsB: 8, gpus: [0] }] }, /GPU 0 is in replicas a and b/);
  bad({ replicas: [{ name: 'a', model: 'm', tier: 't', paramsB: 8, gpus: [4] }] }, /names GPU 4/);
  bad({ replicas: [{ name: 'a', model: 'm', tier: 't', paramsB: 8, gpus: [0] }, { name: 'a', model: 'm', tier: 't', paramsB: 8, gpus: [1] }] }, /used twice/);
  bad({ gpuType: 'A100' as 'H100' }, /unknown gpuType/);
  bad({ inject: { counterResets: [{ gpu: 9, atMs: 1 }] } }, /counter reset names GPU 9/);
  const node = new SimulatedGpuNode(config());
  assert.throws(() => node.submit(spec('x', { replica: 'nope' })), /no replica "nope"/);
  assert.throws(() => node.submit(spec('x', { cachedTokens: 2000 })), /cachedTokens exceeds promptTokens/);
  assert.throws(() => node.submit(spec('x', { maxCompletionTokens: 0 })), /maxCompletionTokens must be an integer >= 1/);
});

test('real-time mode: samples every period and records as requests finish, on an unref\'d timer', async () => {
  const node = new SimulatedGpuNode(config({ startMs: undefined, samplePeriodMs: 20 }));
  const batches: PowerSample[][] = [];
  const records: RequestRecord[] = [];
  node.onRequestDone((r) => records.push(r));
  node.start((s) => batches.push([...s]), (e) => assert.fail(e.message));
  node.submit(spec('rt', { promptTokens: 50, outputTokens: 5 }));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await node.shutdown();
  const count = batches.length;
  assert.ok(count >= 5, `${count} batches`);
  const times = batches.map((b) => b[0]?.timestampMs as number);
  assert.ok(times.every((t, i) => i === 0 || t - (times[i - 1] as number) === 20));
  assert.ok(Math.abs((times.at(-1) as number) - Date.now()) < 200);
  assert.equal(records.length, 1);
  assert.equal(records[0]?.status, 'ok');
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(batches.length, count, 'no samples after shutdown');
});
