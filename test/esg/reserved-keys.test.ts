import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Settler } from '../../agent/settler.js';
import { buildEsgReport, UNALLOCATED_KEY } from '../../exporters/esg/build-esg-report.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { mergeEsgReports } from '../../exporters/esg/merge-reports.js';
import { rollupsOf } from '../../exporters/esg/rollup-source.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { NullSettlementMetrics } from '../agent/null-settlement-metrics.js';
import { send } from '../ingest/http-client.js';
import { startIngestServer } from '../ingest/ingest-server.js';
import { steadySamples } from '../model/helpers.js';
import { makeRollups } from './rollup-fixtures.js';

/**
 * "(unallocated)" (facility energy no request used) and "(none)" (no team or feature) are the
 * report's own row keys. A request carrying one as its model, tier, team or feature is refused at
 * ingest, naming the field, so no row of the report can be taken for the other.
 */

const H = 3_600_000;
const T = Date.UTC(2026, 4, 12, 8);
const PERIOD = { fromMs: T, toMs: T + 2 * H, label: 'two hours' };
const CARBON = (() => {
  const parsed = parseCarbonConfig({ intensityGPerKwh: 200, intensitySource: 'test', pue: 1.2 });
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.config;
})();
const LABEL_DIMENSIONS = ['tier', 'model', 'team', 'feature', 'cache_bucket', 'batch_bucket'] as const;

const record = (id: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  request_id: id, model: 'llama-8b', start: T + 10 * 60_000, end: T + 20 * 60_000, prompt_tokens: 500, completion_tokens: 200, ...extra,
});

test('a record naming a report row key as its model, tier, team or feature is refused at ingest, and the report keeps one "(unallocated)" row', async (t) => {
  const server = await startIngestServer();
  t.after(() => server.stop());
  const body = [
    record('ok', { labels: { team: 'search', feature: 'chat' } }),
    record('team', { labels: { team: UNALLOCATED_KEY } }),
    record('feature', { labels: { team: 'search', feature: '(none)' } }),
    record('tier', { tier: UNALLOCATED_KEY }),
    record('model', { model: UNALLOCATED_KEY, gpus: [0] }),
    // Labels the report does not break down by may hold anything.
    record('tenant', { labels: { team: 'ads', tenant: UNALLOCATED_KEY } }),
  ].map((r) => JSON.stringify(r)).join('\n');
  const reply = await send(server.port, { headers: { 'content-type': 'application/x-ndjson' }, body });
  assert.equal(reply.status, 400, reply.text);
  assert.equal(reply.json?.accepted, 2);
  const errors = reply.json?.errors as { index: number; field: string; reason: string }[];
  assert.deepEqual(errors.map((e) => [e.index, e.field]), [[1, 'labels.team'], [2, 'labels.feature'], [3, 'tier'], [4, 'model']]);
  for (const e of errors) assert.match(e.reason, /^"\((unallocated|none)\)" is reserved: the ESG report keys its row/);

  // Settled over two hours, the second without a request: its facility energy is unallocated.
  const settler = new Settler({
    ledger: server.ledger, metrics: new NullSettlementMetrics(), gpus: [{ uuid: 'GPU-0', index: 0, name: 'H100' }], node: 'node-a', periodMs: 60_000, latenessMs: 0,
    attribution: { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 1000, idleBaselineW: { 'GPU-0': 100 } }, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  settler.addSamples(steadySamples('GPU-0', T, T + 2 * H, 1000, 300));
  while ((settler.settledUntil ?? 0) < T + 2 * H - 60_000) if (settler.settleDue(T + 2 * H) === 0) break;
  assert.equal(settler.pendingRequests, 0);
  const report = buildEsgReport({ ...rollupsOf(server.ledger, PERIOD), carbon: CARBON, period: PERIOD, toolVersion: 't', generatedAt: '2026-05-13T00:00:00.000Z' });
  assert.ok(report.totals.unallocated_facility_energy_kwh > 0, 'the second hour is unallocated');
  assert.equal(report.totals.requests, 2);
  assertOneUnallocatedRow(report);
  assert.deepEqual(report.breakdowns.filter((b) => b.by === 'team').map((b) => b.key), ['ads', 'search', UNALLOCATED_KEY]);
  assert.deepEqual(report.breakdowns.filter((b) => b.by === 'feature').map((b) => b.key), ['(none)', 'chat', UNALLOCATED_KEY]);
  assert.ok(!report.quality.notes.some((n) => /refused the value/.test(n)));

  // A fleet merge sums rows by key: two nodes' unallocated rows make the fleet's, and nothing else joins them.
  const rows = rollupsOf(server.ledger, PERIOD);
  const onNodeB = <R extends { node: string }>(it: Iterable<R>): R[] => [...it].map((r) => ({ ...r, node: 'node-b' }));
  const nodeB = buildEsgReport({
    energy: onNodeB(rows.energy), host: onNodeB(rows.host), quality: onNodeB(rows.quality), usage: onNodeB(rows.usage), tasks: onNodeB(rows.tasks),
    carbon: CARBON, period: PERIOD, toolVersion: 't', generatedAt: '2026-05-13T00:00:00.000Z',
  });
  const fleet = mergeEsgReports([{ name: 'a.json', report }, { name: 'b.json', report: nodeB }], { toolVersion: 't', generatedAt: '2026-05-13T00:00:00.000Z' });
  assert.deepEqual(fleet.nodes, ['node-a', 'node-b']);
  assertOneUnallocatedRow(fleet);
});

test('usage stored before the refusal with a reserved value is said in the report notes', () => {
  const period = { fromMs: Date.UTC(2026, 6, 1), toMs: Date.UTC(2026, 6, 2), label: 'day' };
  const rollups = makeRollups({ fromMs: period.fromMs, hours: 24 });
  const legacy = rollups.usage.map((u, i) => (i === 0 ? { ...u, team: UNALLOCATED_KEY } : i === 1 ? { ...u, feature: '(none)' } : u));
  const notes = buildEsgReport({ ...rollups, usage: legacy, carbon: CARBON, period, toolVersion: 't', generatedAt: 'x' }).quality.notes;
  assert.ok(notes.some((n) => n.startsWith('Usage recorded before tokenwatt refused the value has team "(unallocated)"')), notes.join('\n'));
  assert.ok(notes.some((n) => n.startsWith('Usage recorded before tokenwatt refused the value has feature "(none)": it is counted in the row of requests without a feature')));
  assert.ok(!buildEsgReport({ ...rollups, carbon: CARBON, period, toolVersion: 't', generatedAt: 'x' }).quality.notes.some((n) => /refused the value/.test(n)));
});

function assertOneUnallocatedRow(report: EsgReport): void {
  for (const by of LABEL_DIMENSIONS) {
    const rows = report.breakdowns.filter((b) => b.by === by && b.key === UNALLOCATED_KEY);
    assert.equal(rows.length, 1, `${by}: one "(unallocated)" row`);
    assert.equal(rows[0]?.fully_loaded_energy_kwh, report.totals.unallocated_facility_energy_kwh, `${by}: it is the unallocated energy`);
    assert.equal(rows[0]?.attributed_energy_kwh, 0);
  }
}

