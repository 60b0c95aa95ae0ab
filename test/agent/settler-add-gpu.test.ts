import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import Database from '../../agent/sqlite-driver.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

/**
 * A GPU the power source learns after start-up (it hung at start-up before NVML gave its UUID, or
 * was found later) is settled from then on. Its driver counter ran on while it was away: that
 * stretch is counted once, as a gap (unattributed, estimated), not dropped and not counted twice.
 */

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const PERIOD_MS = 10_000;
const A: GpuInfo = { uuid: 'gpu-a', index: 0, name: 'H100' };
const B: GpuInfo = { uuid: 'gpu-b', index: 1, name: 'H100' };

class Metrics extends NullSettlementMetrics {
  readonly measured = new Map<string, number>();
  sampleErrors: string[] = [];
  override addMeasuredEnergy(_i: number, uuid: string, j: number): void { this.measured.set(uuid, (this.measured.get(uuid) ?? 0) + j); }
  sampleError(reason: string): void { this.sampleErrors.push(reason); }
}

function newSettler(ledger: Ledger, gpus: readonly GpuInfo[], metrics = new Metrics()) {
  const settler = new Settler({
    ledger, metrics, gpus, node: 'n', periodMs: PERIOD_MS, latenessMs: 5000, attribution: { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 1000 }, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  return { settler, metrics };
}

/** GPU `gpu` drawing 300 W since T0, its driver counter from 0 at T0, sampled every second in [from, to]. */
function steady(gpu: GpuInfo, from: number, to: number): PowerSample[] {
  const out: PowerSample[] = [];
  for (let t = from; t <= to; t += 1000) out.push({ timestampMs: epochMs(t), gpuUuid: gpu.uuid, gpuIndex: gpu.index, powerW: watts(300), energyJ: joules(((t - T0) * 300) / 1000) });
  return out;
}

function rowsOf(ledger: Ledger, uuid: string) {
  const rows = ledger.readHourlyEnergy(epochMs(T0 - 86_400_000), epochMs(T0 + 86_400_000)).filter((r) => r.gpuUuid === uuid);
  const sum = (pick: (r: (typeof rows)[number]) => number) => rows.reduce((a, r) => a + pick(r), 0);
  return { measured: sum((r) => r.measuredJ), unattributed: sum((r) => r.unattributedJ), estimated: sum((r) => r.estimatedJ), gaps: sum((r) => r.gaps) };
}

for (const [name, bLastMs] of [['sampled to the end of run 1', 26_000], ['stalled in run 1, its energy owed from then', 12_000]] as const) test(`a GPU learnt after a restart (${name}): its energy while it was away is counted once, as a gap, from the ledger on`, (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-add-gpu-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => { ledger.close(); rmSync(dir, { recursive: true, force: true }); });

  // Run 1 samples both GPUs and settles up to T0+20 s.
  const run1 = newSettler(ledger, [A, B]);
  run1.settler.addSamples([...steady(A, T0, T0 + 26_000), ...steady(B, T0, T0 + bLastMs)]);
  run1.settler.settleDue(T0 + 26_000);
  run1.settler.flushSamples();
  assert.equal(run1.settler.settledUntil, T0 + 20_000);

  // Run 2 starts with GPU A only (B hung at start-up before NVML gave its UUID) and settles on.
  const run2 = newSettler(ledger, [A]);
  run2.settler.restore(T0 + 30_000);
  run2.settler.addSamples(steady(A, T0 + 27_000, T0 + 76_000));
  run2.settler.settleDue(T0 + 70_000);
  assert.equal(run2.settler.settledUntil, T0 + 60_000);
  // Run 2's settlements rewrote the ledger's owed edges and carried states: B's, not settled here, are kept.
  assert.equal(ledger.getGpuCarriedState().has(B.uuid), true);
  if (bLastMs < 20_000) assert.equal(ledger.getEnergyCountedUntil()[B.uuid], T0 + bLastMs);
  // B answers at T0+70 s: learnt, then sampled. Its counter ran on meanwhile.
  run2.settler.addGpu(B, T0 + 70_000);
  run2.settler.addSamples([...steady(A, T0 + 77_000, T0 + 100_000), ...steady(B, T0 + 70_500, T0 + 100_000)]);
  run2.settler.settleDue(T0 + 100_000);
  assert.equal(run2.settler.settledUntil, T0 + 90_000);

  // Each GPU's measured energy over both runs is its counter's increase up to the settled edge.
  const expectedJ = (90_000 * 300) / 1000;
  for (const gpu of [A, B]) {
    const rows = rowsOf(ledger, gpu.uuid);
    assert.ok(Math.abs(rows.measured - expectedJ) < 1e-6, `${gpu.uuid}: ${rows.measured} J measured, counter rose ${expectedJ} J`);
    const exported = (run1.metrics.measured.get(gpu.uuid) ?? 0) + (run2.metrics.measured.get(gpu.uuid) ?? 0);
    assert.ok(Math.abs(exported - expectedJ) < 1e-6, `${gpu.uuid}: ${exported} J exported`);
  }
  // B's stretch away, from its last sample of run 1 to its first of run 2 (T0+70.5 s), is one gap,
  // unattributed and estimated; A, sampled throughout, has none.
  const b = rowsOf(ledger, B.uuid);
  assert.equal(b.gaps, 1);
  assert.ok(b.estimated >= ((70_000 - bLastMs) * 300) / 1000 - 1e-6 && b.unattributed >= b.estimated - 1e-6, `B away: ${b.estimated} J estimated, ${b.unattributed} J unattributed`);
  assert.equal(rowsOf(ledger, A.uuid).gaps, 0);
  assert.deepEqual([...run1.metrics.sampleErrors, ...run2.metrics.sampleErrors], []);
});

test('samples of a GPU the source never told of are counted as sample errors, not dropped quietly', (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-add-gpu-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => { ledger.close(); rmSync(dir, { recursive: true, force: true }); });
  const { settler, metrics } = newSettler(ledger, [A]);
  settler.addSamples([...steady(A, T0, T0 + 2000), ...steady(B, T0, T0 + 2000)]);
  assert.deepEqual(metrics.sampleErrors, ['unknown_gpu', 'unknown_gpu', 'unknown_gpu']);
});

test('a GPU learnt after start-up takes the idle baseline the config gives it; one given none learns its own', (t) => {
  const baselinesOf = (configuredW: number | undefined) => {
    const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-add-gpu-'));
    const path = join(dir, 'ledger.db');
    const ledger = Ledger.open(path, { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
    t.after(() => { ledger.close(); rmSync(dir, { recursive: true, force: true }); });
    const { settler } = newSettler(ledger, [A]);
    settler.addGpu(B, T0, configuredW);
    settler.addSamples([...steady(A, T0, T0 + 36_000), ...steady(B, T0, T0 + 36_000)]);
    settler.settleDue(T0 + 36_000);
    assert.equal(settler.settledUntil, T0 + 30_000);
    const db = new Database(path, { readonly: true });
    try {
      return (db.prepare('SELECT idle_baseline_w AS w FROM periods WHERE gpu_uuid = ? ORDER BY period_start_ms').all(B.uuid) as { w: number | null }[]).map((r) => r.w);
    } finally {
      db.close();
    }
  };
  assert.deepEqual(baselinesOf(120), [120, 120, 120]);
  assert.ok(baselinesOf(undefined).every((w) => w !== 120), 'without a configured baseline, B is not given 120 W');
});
