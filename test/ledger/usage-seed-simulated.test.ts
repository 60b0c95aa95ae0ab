import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger } from '../../agent/ledger.js';
import { TokenwattMetrics } from '../../exporters/prometheus/tokenwatt-metrics.js';
import type { HourlyUsageRow } from '../../model/rollup-types.js';
import { epochMs } from '../../model/units.js';
import { parseExposition, sumOf } from '../exporters/prometheus-exposition.js';
import { RETENTION, T0, pruneAt, tempLedger } from './temp-ledger.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function usageRow(hour: number, simulated: boolean, requests: number, joules: number): HourlyUsageRow {
  return {
    hourStartMs: epochMs(hour), node: 'node-a', model: 'llama-8b', tier: 'small', cacheBucket: '0', batchBucket: '1', status: 'ok',
    team: 'search', feature: '', requests, promptTokens: 10 * requests, cachedTokens: 0, completionTokens: 5 * requests, reasoningTokens: 0,
    staticJ: joules, dynamicJ: 2 * joules, prefillJ: joules, decodeJ: 2 * joules, simulated,
  };
}

function settleUsage(ledger: Ledger, hour: number, rows: HourlyUsageRow[]): void {
  ledger.commitSettlement({
    periodStartMs: epochMs(hour), periodEndMs: epochMs(hour + 10_000), settledUntilMs: epochMs(hour + 10_000),
    gpuTotals: [], requestDeltas: [], finalized: [], usageRows: rows, energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
  });
}

/** requests_total and the static energy of the label set, by simulated, as a restart seeds them. */
async function seeded(ledger: Ledger): Promise<Record<string, [number, number]>> {
  const metrics = new TokenwattMetrics();
  metrics.seed(ledger.counterTotals());
  const m = parseExposition(await metrics.metrics());
  const out: Record<string, [number, number]> = {};
  for (const simulated of ['false', 'true']) {
    out[simulated] = [
      sumOf(m, 'tokenwatt_requests_total', { simulated, team: 'search' }),
      Math.round(sumOf(m, 'tokenwatt_energy_joules_total', { simulated, mode: 'static', team: 'search' }) * 1e6) / 1e6,
    ];
  }
  return out;
}

test('a label set counted under a simulated source and a measured one seeds each simulated series with its own sums, also once pruned', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  // A demo in the first hour, a real agent on the same ledger in the next two, with the same labels.
  settleUsage(ledger, T0, [usageRow(T0, true, 3, 30)]);
  settleUsage(ledger, T0 + HOUR, [usageRow(T0 + HOUR, false, 2, 7)]);
  settleUsage(ledger, T0 + 2 * HOUR, [usageRow(T0 + 2 * HOUR, false, 1, 4)]);
  const expected = { false: [3, 11], true: [3, 30] };
  assert.deepEqual(await seeded(ledger), expected);
  // The first two hours past retention: their sums go on in pruned_usage, still apart.
  pruneAt(ledger, T0 + 2 * HOUR + RETENTION.rollupsDays * DAY);
  assert.equal(ledger.readHourlyUsage(epochMs(0), epochMs(T0 + 2 * HOUR)).length, 0, 'pruned');
  assert.deepEqual(await seeded(ledger), expected);
  ledger.close();
  const reopened = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => reopened.close());
  assert.deepEqual(await seeded(reopened), expected);
});
