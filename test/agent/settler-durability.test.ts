import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

const T0 = Date.UTC(2026, 10, 3, 9, 0, 0);
const GPU: GpuInfo = { index: 0, uuid: 'GPU-0', name: 'test' };
const PERIOD_MS = 1000;
const LATENESS_MS = 4000;

class Metrics extends NullSettlementMetrics {
  hostJ = 0;
  override addHostEnergy(_s: string, j: number): void { this.hostJ += j; }
}

function setup(t: { after: (f: () => void) => void }) {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-settler-durability-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const warnings: string[] = [];
  const settler = (): { settler: Settler; metrics: Metrics } => {
    const metrics = new Metrics();
    const s = new Settler({
      ledger, metrics, gpus: [GPU], node: 'n', periodMs: PERIOD_MS, latenessMs: LATENESS_MS,
      attribution: { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 100 }, simulated: true, labelValue: (_n, v) => v ?? '',
      taskIdleMs: 60_000, hostSource: 'configured', log: { info() {}, warn: (_o: unknown, m?: string) => void warnings.push(m ?? ''), error() {}, debug() {} },
    });
    return { settler: s, metrics };
  };
  return { ledger, settler, warnings };
}

/** 100 W samples of GPU-0 every 100 ms over [fromMs, toMs], with a cumulative counter. */
function samples(fromMs: number, toMs: number): PowerSample[] {
  const out: PowerSample[] = [];
  for (let ms = fromMs; ms <= toMs; ms += 100) out.push({ timestampMs: epochMs(ms), gpuUuid: GPU.uuid, gpuIndex: 0, powerW: watts(100), energyJ: joules((ms - T0) / 10) });
  return out;
}

const hostJ = (ledger: Ledger): number => ledger.readHourlyHost(epochMs(T0 - 3_600_000), epochMs(T0 + 3_600_000)).reduce((a, r) => a + r.hostJ, 0);

test('host energy of the periods left unsettled at a restart is settled by the next run from the stored readings', (t) => {
  const { ledger, settler } = setup(t);
  // Run 1: 10 s, a 50 W host overhead read every second (its counter starts at 0 with the run).
  const one = settler();
  one.settler.restore(T0);
  one.settler.addSamples(samples(T0, T0 + 10_000));
  for (let s = 0; s <= 10; s += 1) one.settler.addHostReading({ timestampMs: T0 + s * 1000, energyJ: 50 * s, estimated: true });
  one.settler.flushSamples();
  one.settler.settleDue(T0 + 10_000); // lateness 4 s: settled until T0 + 6 s
  one.settler.flushSamples(); // what shutdown does
  assert.equal(one.settler.settledUntil, T0 + 6000);
  assert.ok(Math.abs(hostJ(ledger) - 300) < 1e-6, `run 1 settled 6 s of host energy (${hostJ(ledger)} J)`);

  // Run 2, two seconds later: a new host counter from 0.
  const two = settler();
  two.settler.restore(T0 + 12_000);
  two.settler.addSamples(samples(T0 + 12_000, T0 + 22_000));
  for (let s = 0; s <= 10; s += 1) two.settler.addHostReading({ timestampMs: T0 + 12_000 + s * 1000, energyJ: 50 * s, estimated: true });
  two.settler.flushSamples();
  two.settler.settleDue(T0 + 26_000); // settles until T0 + 22 s

  // 10 s of run 1 and 10 s of run 2 at 50 W; nothing for the 2 s the agent was down.
  assert.ok(Math.abs(hostJ(ledger) - 1000) < 1e-6, `host energy over both runs: ${hostJ(ledger)} J, expected 1000 J`);
  assert.ok(Math.abs(one.metrics.hostJ + two.metrics.hostJ - 1000) < 1e-6, 'the host counter metric agrees');
});

test('a settler whose ledger was settled further by another writer resyncs instead of failing every tick', (t) => {
  const { ledger, settler, warnings } = setup(t);
  const { settler: s } = settler();
  s.restore(T0);
  s.addSamples(samples(T0, T0 + 20_000));
  s.settleDue(T0 + 9000); // until T0 + 5 s
  assert.equal(s.settledUntil, T0 + 5000);
  // Another writer settles [5 s, 8 s) in the same file.
  const empty = { gpuTotals: [], requestDeltas: [], finalized: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [] };
  for (let k = 5; k < 8; k += 1) {
    ledger.commitSettlement({ ...empty, periodStartMs: epochMs(T0 + k * 1000), periodEndMs: epochMs(T0 + (k + 1) * 1000), settledUntilMs: epochMs(T0 + (k + 1) * 1000) });
  }
  assert.doesNotThrow(() => s.settleDue(T0 + 12_000));
  assert.equal(s.settledUntil, T0 + 8000, 'took the ledger\'s settled_until');
  assert.ok(warnings.some((w) => /another writer/.test(w)), 'and said so');
  assert.equal(s.settleDue(T0 + 12_000), 0, 'nothing more is due yet');
  s.settleDue(T0 + 14_000);
  assert.equal(s.settledUntil, T0 + 10_000, 'and goes on settling from there');
  assert.equal(ledger.getSettledUntil(), T0 + 10_000);
});

test('rejected records and sample errors are written to the ledger without waiting for settlement', (t) => {
  const { ledger, settler } = setup(t);
  const { settler: s } = settler();
  s.restore(T0);
  s.noteRejected(2, T0 + 1000);
  s.noteSampleError(T0 + 1500);
  s.noteRejected(3, T0 + 3_600_000 + 5);
  // Nothing is settled (the agent stops within its first lateness window): the counts are written anyway.
  const flush = (s as unknown as { flushQuality?: () => number }).flushQuality;
  assert.equal(typeof flush, 'function', 'Settler.flushQuality exists');
  flush!.call(s);
  const rows = () => ledger.readHourlyQuality(epochMs(T0 - 3_600_000), epochMs(T0 + 2 * 3_600_000));
  const hour = Math.floor(T0 / 3_600_000) * 3_600_000;
  assert.deepEqual(rows().map((r) => [r.hourStartMs, r.rejectedRecords, r.sampleErrors]), [[hour, 2, 1], [hour + 3_600_000, 3, 0]]);
  // Written once: neither a second flush nor a settlement reaching those hours adds them again.
  flush!.call(s);
  s.addSamples(samples(T0, T0 + 10_000));
  s.settleDue(T0 + 10_000);
  assert.equal(rows().reduce((a, r) => a + r.rejectedRecords, 0), 5);
});

test('samples buffered through a long ledger outage are kept, all of them, and written once it recovers', (t) => {
  const { ledger, settler } = setup(t);
  const { settler: s } = settler();
  s.restore(T0);
  // 250,000 samples (7 h at 10 Hz of one GPU): more than one call can take as arguments.
  const many = samples(T0, T0 + 25_000_000 - 100);
  const insertSamples = ledger.insertSamples.bind(ledger);
  let failing = true;
  ledger.insertSamples = (batch) => {
    if (failing) throw new Error('disk full');
    return insertSamples(batch);
  };
  s.addSamples(many);
  assert.throws(() => s.flushSamples(), /disk full/);
  failing = false;
  assert.equal(s.flushSamples(), many.length);
  assert.equal(ledger.loadSamples(GPU.uuid, epochMs(T0), epochMs(T0 + 25_000_000)).length, many.length);
  assert.equal(s.flushSamples(), 0, 'written once');
});
