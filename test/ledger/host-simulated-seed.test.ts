import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Ledger } from '../../agent/ledger.js';
import type { SettlementCommit } from '../../agent/ledger-types.js';
import { TokenwattMetrics } from '../../exporters/prometheus/index.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { parseExposition, sumOf } from '../exporters/prometheus-exposition.js';
import { RETENTION, T0, pruneAt, tempLedger } from './temp-ledger.js';

const HOUR_MS = 3_600_000;
/** A prune at this time is past the retention of every rollup these tests write. */
const PAST_RETENTION = T0 + (RETENTION.rollupsDays + 1) * 24 * HOUR_MS;

/** One 10 s settlement in hour `hour` (from T0), its GPU and host energy from a simulated source or not. */
function settlement(hour: number, hostJ: number, simulated: boolean): SettlementCommit {
  const start = T0 + hour * HOUR_MS;
  const hourStartMs = epochMs(start);
  const gpuUuid = simulated ? 'GPU-sim-0' : 'GPU-real-0';
  return {
    periodStartMs: epochMs(start), periodEndMs: epochMs(start + 10_000), settledUntilMs: epochMs(start + 10_000),
    gpuTotals: [{
      gpuUuid, gpuIndex: 0, measuredJ: joules(100), idleJ: joules(100), staticJ: joules(0), dynamicJ: joules(0),
      unattributedJ: joules(0), residualJ: joules(0), estimatedJ: joules(0), coveredMs: 10_000, counterResets: 0, gaps: 0,
      samples: 10, idleBaselineW: watts(10), observedIdlePowerW: null, idleMs: 10_000,
    }],
    requestDeltas: [], finalized: [], usageRows: [], qualityRows: [], taskDeltas: [],
    energyRows: [{
      hourStartMs, node: 'node-a', gpuUuid, measuredJ: 100, idleJ: 100, staticJ: 0, dynamicJ: 0, unattributedJ: 0, estimatedJ: 0,
      coveredMs: 10_000, counterResets: 0, gaps: 0, simulated,
    }],
    hostRows: [{ hourStartMs, node: 'node-a', hostJ, estimated: false, simulated }],
  };
}

/** The host energy series an agent (simulated or not) shows right after seeding from the ledger, then adding `addJ`. */
async function hostSeries(ledger: Ledger, simulated: boolean, addJ: number): Promise<{ real: number; sim: number }> {
  const metrics = new TokenwattMetrics({ simulated, now: () => T0 });
  metrics.seed(ledger.counterTotals());
  metrics.addHostEnergy('rapl', addJ, false);
  const families = parseExposition(await metrics.metrics());
  const of = (s: 'true' | 'false'): number => sumOf(families, 'tokenwatt_host_energy_joules_total', { source: 'rapl', estimated: 'false', simulated: s });
  return { real: of('false'), sim: of('true') };
}

const near = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) <= 1e-6, `${what}: ${actual}, expected ${expected}`);
};

test('measured host energy after a simulated run on the same ledger is seeded and counted as not simulated; the simulated part stays apart', async (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  // A simulated run first (a demo or `--power simulated`), then the real GPUs on the same ledger.
  ledger.commitSettlement(settlement(0, 30, true));
  ledger.commitSettlement(settlement(1, 7, false));

  // The real agent restarted: its measured host energy goes on in simulated="false" (7 J before, +2 J now);
  // the 30 J of the simulated run stay under simulated="true", where the simulated agent counted them.
  const real = await hostSeries(ledger, false, 2);
  near(real.real, 9, 'simulated="false" after the restart of a real agent');
  near(real.sim, 30, 'simulated="true" after the restart of a real agent');
  // A simulated agent on that ledger: its series goes on from the simulated part only.
  const sim = await hostSeries(ledger, true, 2);
  near(sim.real, 7, 'simulated="false" after the restart of a simulated agent');
  near(sim.sim, 32, 'simulated="true" after the restart of a simulated agent');

  // Pruning carries the split.
  assert.ok(pruneAt(ledger, PAST_RETENTION).rollups > 0);
  const pruned = await hostSeries(ledger, false, 0);
  near(pruned.real, 7, 'simulated="false" after pruning');
  near(pruned.sim, 30, 'simulated="true" after pruning');
});
