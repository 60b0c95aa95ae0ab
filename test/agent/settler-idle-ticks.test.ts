import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { TokenwattMetrics } from '../../exporters/prometheus/index.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';

/**
 * The agent calls settleDue once a second; a period is due once every settle period. The ticks in
 * between settle nothing and must leave the settlement metrics alone: settled() adds the residual
 * it is given to tokenwatt_conservation_residual_joules_total, so a tick that repeated the last
 * period's residual counted it again every second.
 */

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const PERIOD_MS = 10_000;
const GPU = { uuid: 'gpu-0', index: 0, name: 'H100' };
const GPU1 = { uuid: 'gpu-1', index: 1, name: 'H100' };

/** TokenwattMetrics that also record each settled() call's residual. */
class CountingMetrics extends TokenwattMetrics {
  readonly settledCalls: number[] = [];
  /** The residuals each settled() call was given. */
  readonly residualCounts: number[] = [];
  override settled(settledUntilMs: number, residualJ: number | readonly number[]): void {
    this.settledCalls.push(settledUntilMs);
    this.residualCounts.push(typeof residualJ === 'number' ? 1 : residualJ.length);
    super.settled(settledUntilMs, residualJ);
  }
}

function sample(t: number, gpu = GPU): PowerSample {
  return { timestampMs: epochMs(t), gpuUuid: gpu.uuid, gpuIndex: gpu.index, powerW: watts(300), energyJ: joules(((t - T0) * 300) / 1000) };
}

test('settle ticks with nothing due do not report a settlement again: each period is reported once', (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-idle-ticks-'));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const metrics = new CountingMetrics();
  const settler = new Settler({
    ledger, metrics, gpus: [GPU, GPU1], node: 'n', periodMs: PERIOD_MS, latenessMs: 0, attribution: DEFAULT_ATTRIBUTION_CONFIG, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  const samples: PowerSample[] = [];
  for (let ms = T0; ms <= T0 + 3 * PERIOD_MS; ms += 100) samples.push(sample(ms), sample(ms, GPU1));
  settler.addSamples(samples);
  let periods = 0;
  // One tick a second over three periods, as the agent's settle task runs.
  for (let now = T0 + 1000; now <= T0 + 3 * PERIOD_MS + 500; now += 1000) periods += settler.settleDue(now);
  assert.equal(periods, 3, 'three periods settled');
  assert.deepEqual(metrics.settledCalls, [T0 + PERIOD_MS, T0 + 2 * PERIOD_MS, T0 + 3 * PERIOD_MS], 'settled() once per settled period, none for the ticks between');
  // The residual counter is a sum over periods and GPUs (README): each call carries both GPUs'.
  assert.deepEqual(metrics.residualCounts, [2, 2, 2]);
});
