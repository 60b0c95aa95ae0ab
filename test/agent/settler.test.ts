import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import { defaultDemoNodeConfig, demoReplicaMap, DemoWorkload } from '../../agent/demo-workload.js';
import { Ledger } from '../../agent/ledger.js';
import Database from '../../agent/sqlite-driver.js';
import type { StoredRequest } from '../../agent/ledger-rows.js';
import { NodeRecordContext } from '../../agent/record-context.js';
import { Settler } from '../../agent/settler.js';
import { analyzeRun } from '../../model/analysis.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { AttributionConfig } from '../../model/attribution-types.js';
import type { PowerSample } from '../../model/power-sample.js';
import { resolveRecord, type RequestRecord, type ResolvedRequest } from '../../model/request-record.js';
import type { RequestResult } from '../../model/request-result.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const TRAFFIC_MS = 90_000;
const DRAIN_MS = 400_000;
const PERIOD_MS = 10_000;

/** Records what the settler reports, so the test can check the exported side too. */
class RecordingMetrics extends NullSettlementMetrics {
  measured = new Map<string, number>();
  idle = new Map<number, number>();
  finalized: RequestResult[] = [];
  residuals: number[] = [];
  tasks: { succeeded: boolean; joules: number }[] = [];
  override addMeasuredEnergy(_i: number, uuid: string, j: number): void { this.measured.set(uuid, (this.measured.get(uuid) ?? 0) + j); }
  override addIdleEnergy(i: number, j: number): void { this.idle.set(i, (this.idle.get(i) ?? 0) + j); }
  override requestsFinalized(rs: readonly RequestResult[]): void { this.finalized.push(...rs); }
  override taskFinalized(t: { succeeded: boolean; joules: number }): void { this.tasks.push(t); }
  override settled(_u: number, residuals: readonly number[]): void { this.residuals.push(...residuals); }
  pendingJ = 0;
  override setPendingAttributedEnergy(j: number): void { this.pendingJ = j; }
  hostJ = 0;
  override addHostEnergy(_source: string, j: number): void { this.hostJ += j; }
  sampleErrors: string[] = [];
  sampleError(reason: string): void { this.sampleErrors.push(reason); }
}

/** A simulated node driven in virtual time: its samples, its finished requests and its truth. */
function simulatedRun(seed: number, idleLeadMs = 0) {
  const node = new SimulatedGpuNode(defaultDemoNodeConfig({ seed, startMs: T0 - idleLeadMs }));
  const samples: PowerSample[] = [];
  const records: RequestRecord[] = [];
  node.attach((batch) => samples.push(...batch), (error) => assert.fail(`simulator error: ${error.message}`));
  node.onRequestDone((r) => records.push(r));
  node.advanceTo(T0); // idle until T0: the GPUs' idle power is observed before any traffic
  new DemoWorkload({ node, seed }).runVirtual(T0 + TRAFFIC_MS);
  node.advanceTo(T0 + DRAIN_MS); // no new arrivals: every request finishes
  return { node, samples, records };
}

function setup(seed: number, learnedBaseline = false) {
  const run = simulatedRun(seed, learnedBaseline ? 30_000 : 0);
  const gpus = run.node.gpus();
  const context = new NodeRecordContext({
    gpus,
    replicas: demoReplicaMap().map((r) => ({ model: r.model, gpus: r.gpuUuids, tier: r.tier })),
    tiers: {},
    retainedWindowMs: 10 * 86_400_000,
    futureSkewMs: 86_400_000,
  }).at(T0);
  const requests: ResolvedRequest[] = run.records.map((r, i) => {
    const resolved = resolveRecord(r, i, context);
    assert.ok(resolved.ok, `simulated record ${r.requestId} resolves`);
    return resolved.record;
  });
  // A configured idle baseline makes the live and offline paths take the same input (the offline
  // path learns its baseline in a first pass, the live one online).
  const config: AttributionConfig = {
    ...DEFAULT_ATTRIBUTION_CONFIG,
    samplePeriodMs: 100,
    idleBaselineW: learnedBaseline ? {} : Object.fromEntries(gpus.map((g) => [g.uuid, 70])),
  };
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-settler-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'sim', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  const metrics = new RecordingMetrics();
  const settler = new Settler({
    ledger, metrics, gpus, node: 'sim', periodMs: PERIOD_MS, latenessMs: 0, attribution: config, simulated: true,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  return { ...run, gpus, requests, config, ledger, metrics, settler, cleanup: () => { ledger.close(); rmSync(dir, { recursive: true, force: true }); } };
}

test('live settlement equals the offline analysis of the same run, request by request', (t) => {
  const s = setup(7);
  t.after(s.cleanup);
  assert.ok(s.requests.length > 100, `a busy run (${s.requests.length} requests)`);

  s.settler.addSamples(s.samples);
  s.ledger.insertRequests(s.requests, () => false);
  const periods = s.settler.settleDue(T0 + DRAIN_MS);
  assert.equal(periods, DRAIN_MS / PERIOD_MS);
  assert.equal(s.settler.pendingRequests, 0, 'every request is final once its periods are settled');

  const offline = analyzeRun({ samples: s.samples, requests: s.requests, gpus: s.gpus, config: s.config, periodMs: PERIOD_MS, perRequest: true });
  const offlineById = new Map((offline.requests ?? []).map((r) => [r.request_id, r.joules]));
  const stored = s.ledger.readRequests(epochMs(T0), epochMs(T0 + DRAIN_MS + 1));
  assert.equal(stored.length, s.requests.length);
  let worst = 0;
  for (const r of stored) {
    assert.ok(r.final, `${r.record.requestId} finalized in the ledger`);
    const expected = offlineById.get(r.record.requestId);
    assert.ok(expected !== undefined, `${r.record.requestId} in the offline report`);
    worst = Math.max(worst, Math.abs(r.final.joules - expected) / Math.max(1, expected));
  }
  assert.ok(worst < 1e-9, `live and offline per-request joules agree (worst relative difference ${worst})`);

  const energy = s.ledger.readHourlyEnergy(epochMs(T0), epochMs(T0 + DRAIN_MS + 1));
  const measured = energy.reduce((a, r) => a + r.measuredJ, 0);
  assert.ok(Math.abs(measured - offline.totals.measured_j) < 1e-6 * measured, 'ledger measured energy = offline measured energy');
  assert.ok(Math.max(...s.metrics.residuals) < 1e-6, 'conservation holds in every settled period');
});

test('measured energy matches the simulator truth, and a tier alone on its GPU gets exactly that GPU minus idle', (t) => {
  const s = setup(11);
  t.after(s.cleanup);
  s.settler.addSamples(s.samples);
  s.ledger.insertRequests(s.requests, () => false);
  s.settler.settleDue(T0 + DRAIN_MS);

  // Truth: the simulator's own integral of its power, GPU by GPU, over the settled window.
  const truth = s.node.truth();
  for (const gpu of s.gpus) {
    const measured = s.metrics.measured.get(gpu.uuid) ?? 0;
    const expected = truth.perGpuJ[gpu.uuid] ?? Number.NaN;
    assert.ok(Math.abs(measured - expected) <= 1e-3 * expected, `GPU ${gpu.index}: measured ${measured.toFixed(1)} J vs truth ${expected.toFixed(1)} J`);
  }

  // The small tier is alone on GPU 0: its requests' energy = GPU 0 measured - idle - unattributed.
  const gpu0 = s.gpus[0]!.uuid;
  const energy = s.ledger.readHourlyEnergy(epochMs(T0), epochMs(T0 + DRAIN_MS + 1)).filter((r) => r.gpuUuid === gpu0);
  const gpu0Attributed = energy.reduce((a, r) => a + r.measuredJ - r.idleJ - r.unattributedJ, 0);
  const smallTier = s.metrics.finalized.filter((r) => r.tier === 'small').reduce((a, r) => a + r.joules, 0);
  assert.ok(smallTier > 0);
  assert.ok(Math.abs(smallTier - gpu0Attributed) < 1e-6 * gpu0Attributed, `small tier ${smallTier} J = GPU 0 attributed ${gpu0Attributed} J`);

  // The spare GPU 7 serves nothing: all its energy is idle.
  const gpu7 = s.gpus[7]!;
  assert.ok(Math.abs((s.metrics.idle.get(7) ?? 0) - (s.metrics.measured.get(gpu7.uuid) ?? -1)) < 1e-6, 'the spare GPU is all idle');
});

test('a settler restarted from the ledger resumes where it stopped and counts nothing twice', (t) => {
  const s = setup(5);
  t.after(s.cleanup);
  const half = T0 + 60_000;
  s.ledger.insertRequests(s.requests, () => false);
  s.settler.addSamples(s.samples.filter((x) => x.timestampMs <= half + 5_000));
  s.settler.settleDue(half);
  s.settler.flushSamples();
  const finalizedBefore = s.metrics.finalized.length;

  // A new settler on the same ledger, as after kill -9: state comes back from the file.
  const metrics = new RecordingMetrics();
  const resumed = new Settler({
    ledger: s.ledger, metrics, gpus: s.gpus, node: 'sim', periodMs: PERIOD_MS, latenessMs: 0, attribution: s.config, simulated: true,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  assert.equal(resumed.settledUntil, half);
  const pendingBefore = s.metrics.pendingJ;
  assert.ok(pendingBefore > 0, 'requests in flight at the stop had energy');
  const restored = resumed.restore(half + 5_000);
  assert.ok(Math.abs(metrics.pendingJ - pendingBefore) <= 1e-9 * pendingBefore, `pending energy shown from the start: ${metrics.pendingJ} J, was ${pendingBefore} J`);
  assert.equal(restored.requests, s.requests.length - finalizedBefore, 'unfinalized requests come back');
  resumed.addSamples(s.samples.filter((x) => x.timestampMs > half + 5_000));
  resumed.settleDue(T0 + DRAIN_MS);
  assert.equal(resumed.pendingRequests, 0);

  const offline = analyzeRun({ samples: s.samples, requests: s.requests, gpus: s.gpus, config: s.config, periodMs: PERIOD_MS, perRequest: true });
  const offlineById = new Map((offline.requests ?? []).map((r) => [r.request_id, r.joules]));
  const stored = s.ledger.readRequests(epochMs(T0), epochMs(T0 + DRAIN_MS + 1));
  for (const r of stored) {
    const expected = offlineById.get(r.record.requestId) ?? Number.NaN;
    assert.ok(Math.abs((r.final?.joules ?? -1) - expected) <= 1e-9 * Math.max(1, expected), `${r.record.requestId}: resumed settlement gives the uninterrupted answer`);
  }
  assert.equal(finalizedBefore + metrics.finalized.length, s.requests.length, 'each request finalized exactly once across the restart');
});

test('a restart goes on with the learned idle baseline: each request gets what it gets without the restart', (t) => {
  const straight = setup(5, true);
  t.after(straight.cleanup);
  const restarted = setup(5, true);
  t.after(restarted.cleanup);
  const end = T0 + DRAIN_MS;
  straight.ledger.insertRequests(straight.requests, () => false);
  straight.settler.addSamples(straight.samples);
  straight.settler.settleDue(end);

  const half = T0 + 60_000;
  restarted.ledger.insertRequests(restarted.requests, () => false);
  restarted.settler.addSamples(restarted.samples.filter((x) => x.timestampMs <= half + 5_000));
  restarted.settler.settleDue(half);
  restarted.settler.flushSamples();
  const resumed = new Settler({
    ledger: restarted.ledger, metrics: new RecordingMetrics(), gpus: restarted.gpus, node: 'sim', periodMs: PERIOD_MS, latenessMs: 0, attribution: restarted.config, simulated: true,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  resumed.restore(half + 5_000);
  resumed.addSamples(restarted.samples.filter((x) => x.timestampMs > half + 5_000));
  resumed.settleDue(end);

  const figures = (r: StoredRequest) => ({ staticJ: r.soFar.staticJ, dynamicJ: r.soFar.dynamicJ, joules: r.final?.joules ?? Number.NaN });
  const expected = new Map(straight.ledger.readRequests(epochMs(T0), epochMs(end + 1)).map((r) => [r.record.requestId, figures(r)]));
  const got = restarted.ledger.readRequests(epochMs(T0), epochMs(end + 1));
  assert.equal(got.length, expected.size);
  let staticJ = 0;
  for (const r of got) {
    const have = figures(r);
    const want = expected.get(r.record.requestId);
    staticJ += have.staticJ;
    for (const key of ['staticJ', 'dynamicJ', 'joules'] as const) {
      const w = want?.[key] ?? Number.NaN;
      assert.ok(Math.abs(have[key] - w) <= 1e-6 * Math.max(1, w), `${r.record.requestId} ${key}: ${have[key]} J with the restart, ${w} J without`);
    }
  }
  assert.ok(staticJ > 0, 'the baseline was learned: requests have static energy');
});

test('a restart after a configured idle baseline is removed learns it from what the GPU did, not from the old figure', (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-settler-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => { ledger.close(); rmSync(dir, { recursive: true, force: true }); });
  const gpu = { uuid: 'gpu-0', index: 0, name: 'H100' };
  const settlerWith = (idleBaselineW: Record<string, number>) => new Settler({
    ledger, metrics: new RecordingMetrics(), gpus: [gpu], node: 'n', periodMs: PERIOD_MS, latenessMs: 0,
    attribution: { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 100, idleBaselineW }, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  const samples: PowerSample[] = [];
  for (let ms = T0; ms <= T0 + 40_000; ms += 100) samples.push({ timestampMs: epochMs(ms), gpuUuid: gpu.uuid, gpuIndex: 0, powerW: watts(300), energyJ: joules(((ms - T0) * 300) / 1000) });
  // 600 W configured (a typo); the GPU idles at 300 W.
  const first = settlerWith({ [gpu.uuid]: 600 });
  first.addSamples(samples);
  first.settleDue(T0 + 40_000);
  first.flushSamples();
  const learned = (s: Settler) => (s as unknown as { idleBaselineFor(uuid: string): number | null }).idleBaselineFor(gpu.uuid);
  const second = settlerWith({});
  second.restore(T0 + 40_000);
  assert.equal(learned(second), 300, 'learned from the idle power seen, as an uninterrupted run learned it');
  // A ledger written before the carried state was kept: the stored idle observations give the same.
  const raw = new Database(join(dir, 'ledger.db'));
  raw.prepare("DELETE FROM agent_state WHERE key = 'gpu_carried_state'").run();
  const third = settlerWith({});
  third.restore(T0 + 40_000);
  assert.equal(learned(third), 300);
  // A value damaged by hand is taken as absent, not a reason to refuse to start.
  raw.prepare("INSERT INTO agent_state (key, value) VALUES ('gpu_carried_state', '{not json')").run();
  raw.close();
  const fourth = settlerWith({});
  assert.doesNotThrow(() => fourth.restore(T0 + 40_000));
  assert.equal(learned(fourth), 300);
});

test('a settler restarted before its first settlement resumes from the first stored sample: the first run loses no joule', (t) => {
  const s = setup(6);
  t.after(s.cleanup);
  // Run 1 is stopped (kill -9) 30 s in, before lateness let it settle anything.
  const stop = T0 + 30_000;
  s.ledger.insertRequests(s.requests.filter((r) => r.endMs <= stop), () => false);
  s.settler.addSamples(s.samples.filter((x) => x.timestampMs <= stop));
  s.settler.flushSamples(); // run 1 never settles: its lateness had not passed

  const metrics = new RecordingMetrics();
  const resumed = new Settler({
    ledger: s.ledger, metrics, gpus: s.gpus, node: 'sim', periodMs: PERIOD_MS, latenessMs: 0, attribution: s.config, simulated: true,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  assert.equal(resumed.settledUntil, null);
  const restored = resumed.restore(stop + 45_000);
  assert.equal(restored.samples, s.samples.filter((x) => x.timestampMs <= stop).length, 'every sample of run 1 comes back');
  assert.equal(resumed.lateEdge(), T0, 'records run 1 took as on time are still on time');
  s.ledger.insertRequests(s.requests.filter((r) => r.endMs > stop), () => false);
  resumed.addSamples(s.samples.filter((x) => x.timestampMs > stop));
  resumed.settleDue(T0 + DRAIN_MS);

  const truth = s.node.truth();
  for (const gpu of s.gpus) {
    const measured = metrics.measured.get(gpu.uuid) ?? 0;
    const expected = truth.perGpuJ[gpu.uuid] ?? Number.NaN;
    assert.ok(Math.abs(measured - expected) <= 1e-3 * expected, `GPU ${gpu.index}: measured ${measured.toFixed(1)} J vs truth ${expected.toFixed(1)} J`);
  }
  const offline = analyzeRun({ samples: s.samples, requests: s.requests, gpus: s.gpus, config: s.config, periodMs: PERIOD_MS, perRequest: true });
  const offlineById = new Map((offline.requests ?? []).map((r) => [r.request_id, r.joules]));
  const stored = s.ledger.readRequests(epochMs(T0), epochMs(T0 + DRAIN_MS + 1));
  assert.equal(stored.length, s.requests.length);
  for (const r of stored) {
    assert.equal(r.late, false, `${r.record.requestId} is not late`);
    const expected = offlineById.get(r.record.requestId) ?? Number.NaN;
    assert.ok(Math.abs((r.final?.joules ?? -1) - expected) <= 1e-9 * Math.max(1, expected), `${r.record.requestId}: ${r.final?.joules} J, uninterrupted ${expected} J`);
  }
});

test('records refused at ingest and sample errors reach the hourly data-quality rows once settlement reaches their hour', (t) => {
  const s = setup(4);
  t.after(s.cleanup);
  s.settler.addSamples(s.samples);
  s.settler.noteRejected(3, T0 + 5_000);
  s.settler.noteRejected(2, T0 + 7_000);
  s.settler.noteSampleError(T0 + 6_000);
  s.settler.noteRejected(4, T0 + 2 * 3_600_000); // an hour settlement has not reached: held, not written
  s.settler.settleDue(T0 + DRAIN_MS);
  const rows = s.ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 4 * 3_600_000));
  const hourT0 = Math.floor(T0 / 3_600_000) * 3_600_000;
  assert.deepEqual(rows.filter((r) => r.rejectedRecords > 0 || r.sampleErrors > 0).map((r) => [r.hourStartMs, r.rejectedRecords, r.sampleErrors]), [[hourT0, 5, 1]]);
  s.settler.settleDue(T0 + DRAIN_MS + 1_000); // written once: a later settlement adds nothing
  assert.equal(s.ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 4 * 3_600_000)).reduce((a, r) => a + r.rejectedRecords, 0), 5);
});

test('samples stamped inside settled time (a clock step back) are counted as sample errors, not lost quietly', (t) => {
  const s = setup(8);
  t.after(s.cleanup);
  const warnings: string[] = [];
  const settler = new Settler({
    ledger: s.ledger, metrics: s.metrics, gpus: s.gpus, node: 'sim', periodMs: PERIOD_MS, latenessMs: 0, attribution: s.config, simulated: true,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn: (_o: unknown, msg?: string) => void warnings.push(msg ?? ''), error() {}, debug() {} },
  });
  settler.addSamples(s.samples.filter((x) => x.timestampMs < T0 + 60_000));
  settler.settleDue(T0 + 60_000);
  assert.equal(settler.settledUntil, T0 + 60_000);
  // The clock steps back 30 s: eight GPUs send a reading stamped in settled time.
  const stale = s.samples.filter((x) => x.timestampMs >= T0 + 30_000 && x.timestampMs < T0 + 30_100);
  assert.equal(stale.length, 8);
  settler.addSamples(stale.map((x) => ({ ...x, timestampMs: epochMs(x.timestampMs + 50) })));
  assert.deepEqual(s.metrics.sampleErrors, Array(8).fill('stale_timestamp'));
  assert.equal(warnings.filter((w) => /clock step back/.test(w)).length, 1);
  settler.addSamples(s.samples.filter((x) => x.timestampMs >= T0 + 60_000 && x.timestampMs < T0 + 80_000));
  settler.settleDue(T0 + 80_000);
  const errors = s.ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 3_600_000)).reduce((a, r) => a + r.sampleErrors, 0);
  assert.equal(errors, 8, 'and in the ledger\'s data quality');
});

test('readings the ledger already holds, given again inside settled time, are skipped; other readings there still count as errors', (t) => {
  const s = setup(8);
  t.after(s.cleanup);
  s.settler.addSamples(s.samples.filter((x) => x.timestampMs < T0 + 60_000));
  s.settler.flushSamples(); // as the agent does before each settlement
  s.settler.settleDue(T0 + 60_000);
  const before = s.ledger.loadSamples(s.gpus[0]!.uuid, epochMs(T0), epochMs(T0 + 60_000)).length;
  // A replay with its own timestamps, restarted: its first 30 s again, as the ledger stored them.
  const again = s.samples.filter((x) => x.timestampMs < T0 + 30_000);
  assert.ok(again.length > 100);
  s.settler.addSamples(again);
  assert.deepEqual(s.metrics.sampleErrors, [], 'a repeat of a stored reading is no stale sample');
  // The same timestamps with another reading, or a timestamp the ledger lacks: stale, as before.
  const first = again[0]!;
  s.settler.addSamples([{ ...first, powerW: watts((first.powerW ?? 0) + 1) }, { ...first, timestampMs: epochMs(first.timestampMs + 1) }]);
  assert.deepEqual(s.metrics.sampleErrors, ['stale_timestamp', 'stale_timestamp']);
  s.settler.flushSamples();
  s.settler.settleDue(T0 + 70_000);
  assert.equal(s.ledger.loadSamples(s.gpus[0]!.uuid, epochMs(T0), epochMs(T0 + 60_000)).length, before + (first.gpuUuid === s.gpus[0]!.uuid ? 1 : 0), 'nothing stored twice');
  assert.equal(s.ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 3_600_000)).reduce((a, r) => a + r.sampleErrors, 0), 2);
});

test('host energy: each period gets its share of the host counter, and the periods add up to the counter exactly', (t) => {
  const s = setup(3);
  t.after(s.cleanup);
  s.settler.addSamples(s.samples);
  // A host drawing ~400 W, read every 700 ms (off the period grid), cumulative joules.
  const readings = [];
  for (let ms = T0; ms <= T0 + DRAIN_MS; ms += 700) readings.push({ timestampMs: ms, energyJ: 5_000 + 0.4 * (ms - T0) + Math.sin(ms) * 0.01, estimated: false });
  // Readings arrive in two halves, the second after some periods settled: nothing may be lost.
  const half = readings.findIndex((r) => r.timestampMs > T0 + 100_000);
  for (const r of readings.slice(0, half)) s.settler.addHostReading(r);
  s.settler.settleDue(T0 + 150_000);
  for (const r of readings.slice(half)) s.settler.addHostReading(r);
  s.settler.settleDue(T0 + DRAIN_MS);
  const expected = readings[readings.length - 1]!.energyJ - readings[0]!.energyJ;
  const stored = s.ledger.readHourlyHost(epochMs(T0), epochMs(T0 + DRAIN_MS + 1)).reduce((a, r) => a + r.hostJ, 0);
  assert.ok(Math.abs(stored - expected) < 1e-6, `ledger host energy ${stored} J = counter increase ${expected} J`);
  assert.ok(Math.abs(s.metrics.hostJ - expected) < 1e-6, 'metrics host energy agrees');
});

test('with a fresh ledger, a record from before the first sample is late, gets no energy and stays out of the usage figures', (t) => {
  const s = setup(2);
  t.after(s.cleanup);
  // Samples start at T0; the record ran before the agent measured anything.
  s.settler.addSamples(s.samples.filter((x) => x.timestampMs >= T0 + 20_000));
  assert.equal(s.settler.settledUntil, null);
  assert.equal(s.settler.lateEdge(), T0 + 20_000, 'the edge is the start of the first measured period');
  const early = { ...s.requests[0]!, requestId: 'before-any-sample', taskId: null, startMs: epochMs(T0 + 1_000), firstTokenMs: null, endMs: epochMs(T0 + 5_000) };
  s.ledger.insertRequests([early], () => true);
  s.settler.settleDue(T0 + 60_000);
  const stored = s.ledger.readRequests(epochMs(T0), epochMs(T0 + 10_000)).find((r) => r.record.requestId === 'before-any-sample');
  assert.ok(stored?.final, 'it is finalized, not dropped');
  assert.equal(stored.late, true);
  assert.equal(stored.final.joules, 0);
  assert.ok(!s.metrics.finalized.some((r) => r.requestId === 'before-any-sample'), 'its tokens do not lower J/token');
  const usage = s.ledger.readHourlyUsage(epochMs(T0 - 3_600_000), epochMs(T0 + 3_600_000)).reduce((a, r) => a + r.requests, 0);
  assert.equal(usage, 0);
  const lateRows = s.ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 3_600_000)).reduce((a, r) => a + r.lateRecords, 0);
  assert.equal(lateRows, 1, 'counted in data quality');
});
