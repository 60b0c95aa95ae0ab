import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { epochMs } from '../../model/units.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { PrometheusQueryError, readPrometheusRollups } from '../../exporters/esg/prometheus-source.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 6, 1);
const PERIOD = { fromMs: T0, toMs: T0 + 2 * H, label: 'two hours' };
const t = (hourIndex: number): number => (T0 + (hourIndex + 1) * H) / 1000; // a point ends its hour

/** Canned answers of a Prometheus API, by the metric inside the query. */
const SERIES: Record<string, { metric: Record<string, string>; values: [number, string][] }[]> = {
  tokenwatt_gpu_energy_joules_total: [
    { metric: { instance: 'n1:9477', gpu: '0', uuid: 'GPU-a', simulated: 'false' }, values: [[t(0), '3600000'], [t(1), '1800000']] },
    { metric: { instance: 'n1:9477', gpu: '1', uuid: 'GPU-b', simulated: 'false' }, values: [[t(0), '1800000']] },
  ],
  tokenwatt_idle_energy_joules_total: [{ metric: { instance: 'n1:9477', gpu: '1' }, values: [[t(0), '1800000']] }, { metric: { instance: 'n1:9477', gpu: '0' }, values: [[t(1), '1800000']] }],
  tokenwatt_unattributed_energy_joules_total: [{ metric: { instance: 'n1:9477', gpu: '0' }, values: [[t(0), '600000']] }],
  tokenwatt_estimated_energy_joules_total: [],
  tokenwatt_gpu_covered_seconds_total: [],
  tokenwatt_energy_joules_total: [
    { metric: { instance: 'n1:9477', model: 'm', tier: 'big', cache_bucket: 'hit', batch_bucket: '1', status: 'ok', mode: 'static', simulated: 'false', team: 'search' }, values: [[t(0), '1000000']] },
    { metric: { instance: 'n1:9477', model: 'm', tier: 'big', cache_bucket: 'hit', batch_bucket: '1', status: 'ok', mode: 'dynamic', simulated: 'false', team: 'search' }, values: [[t(0), '2000000']] },
  ],
  tokenwatt_tokens_total: [
    { metric: { instance: 'n1:9477', model: 'm', tier: 'big', kind: 'completion' }, values: [[t(0), '1000.4']] },
    { metric: { instance: 'n1:9477', model: 'm', tier: 'big', kind: 'prompt' }, values: [[t(0), '5000']] },
  ],
  tokenwatt_requests_total: [{ metric: { instance: 'n1:9477', model: 'm', tier: 'big' }, values: [[t(0), '10']] }],
  tokenwatt_host_energy_joules_total: [{ metric: { instance: 'n1:9477', estimated: 'true' }, values: [[t(0), '360000'], [t(1), '360000']] }],
  tokenwatt_tasks_total: [
    { metric: { instance: 'n1:9477', tier: 'big', succeeded: 'true' }, values: [[t(0), '3']] },
    { metric: { instance: 'n1:9477', tier: 'big', succeeded: 'false' }, values: [[t(0), '1']] },
  ],
  tokenwatt_task_energy_joules_sum: [{ metric: { instance: 'n1:9477', tier: 'big' }, values: [[t(0), '4000']] }],
  tokenwatt_waste_energy_joules_total: [{ metric: { instance: 'n1:9477', tier: 'big' }, values: [[t(0), '1000']] }],
  tokenwatt_late_records_total: [{ metric: { instance: 'n1:9477' }, values: [[t(1), '2']] }],
  tokenwatt_records_rejected_total: [],
  tokenwatt_sample_errors_total: [],
};

describe('Prometheus source (HTTP API stand-in)', () => {
  let server: http.Server;
  let url = '';
  const seen: URLSearchParams[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      const params = new URL(req.url ?? '/', 'http://x').searchParams;
      seen.push(params);
      const query = params.get('query') ?? '';
      if (req.headers['x-scope-orgid'] !== 'tenant-1') {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'error', errorType: 'unauthorized', error: 'no org id' }));
        return;
      }
      if (query.startsWith('count by (node)')) {
        // The node-label probe: these series carry instance only.
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [{ metric: {}, values: [[t(0), '2']] }] } }));
        return;
      }
      if (query.startsWith('count by (job, instance)')) {
        // Agents without the counters-start gauge: this one is of an older version.
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: [{ metric: { job: 'tokenwatt', instance: 'n1:9477' }, values: [[t(0), '1']] }] } }));
        return;
      }
      const metric = /increase\((\w+)\[/.exec(query)?.[1] ?? '';
      const result = SERIES[metric];
      if (!result) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: `unknown ${metric}` }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType: 'matrix', result } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/prometheus/`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks for hourly increases aligned on the period, grouped by node and labels', async () => {
    const rollups = await readPrometheusRollups(PERIOD, { url, headers: { 'X-Scope-OrgID': 'tenant-1' } });
    assert.equal(seen.length, 17);
    // First the probe for a node label; without one, nodes are named by instance, and the notes say so.
    assert.match(seen[0]?.get('query') ?? '', /^count by \(node\) \(last_over_time\(tokenwatt_gpu_energy_joules_total\[1h\]\)\)$/);
    assert.equal(rollups.nodeLabel, 'instance');
    assert.match(rollups.notes.join(), /named by the Prometheus "instance" label: the GPU energy series carry no "node" label/);
    for (const p of seen.slice(1)) {
      assert.equal(p.get('start'), String(t(0)));
      assert.equal(p.get('end'), String(t(1)));
      assert.equal(p.get('step'), '3600');
    }
    // Agents older than tokenwatt_counters_start_timestamp_seconds are named in the notes.
    assert.equal(seen.filter((p) => (p.get('query') ?? '').startsWith('count by (job, instance) (last_over_time(')).length, 1);
    assert.ok(rollups.notes.some((n) => /^1 agent\(s\) export no tokenwatt_counters_start_timestamp_seconds \(older tokenwatt: n1:9477\)/.test(n)), rollups.notes.join('\n'));
    const counterQueries = seen.slice(1).filter((p) => (p.get('query') ?? '').startsWith('sum by'));
    assert.equal(counterQueries.length, 15);
    for (const p of counterQueries) {
      const query = p.get('query') ?? '';
      assert.match(query, /^sum by \(instance(, \w+)*\) \(increase\((tokenwatt_\w+)\[1h\]\)\) \+ /);
      // the first value of a series born in the hour is added back (increase() cannot see it)
      assert.match(query, /\(min_over_time\((tokenwatt_\w+)\[1h\]\) unless max_over_time\(\1\[1h\] offset 1h\)\)/);
      // ... when its agent says its counters started from zero, or it appeared after the agent's first scrape in the hour
      assert.match(query, /tokenwatt_counters_start_timestamp_seconds\{seeded="false"\}\[1h\]/);
      assert.match(query, /count_over_time\((tokenwatt_\w+)\[1h\]\) < on \(job, instance\) group_left \(\) /);
    }
  });

  it('turns counters into the rollups the report builder reads, and the report adds up', async () => {
    const rollups = await readPrometheusRollups(PERIOD, { url, headers: { 'X-Scope-OrgID': 'tenant-1' } });
    const a0 = rollups.energy.find((e) => e.gpuUuid === 'GPU-a' && e.hourStartMs === T0);
    assert.equal(a0?.measuredJ, 3_600_000);
    assert.equal(a0?.unattributedJ, 600_000);
    // attributed energy of the node-hour sits on its first GPU row
    assert.equal((a0?.staticJ ?? 0) + (a0?.dynamicJ ?? 0), 3_000_000);
    assert.equal(rollups.energy.find((e) => e.gpuUuid === 'GPU-b')?.idleJ, 1_800_000);
    assert.equal(rollups.usage[0]?.team, 'search');
    assert.equal(rollups.tokenCounts[0]?.completionTokens, 1000.4);
    const carbon = parseCarbonConfig({ intensityGPerKwh: 100, intensitySource: 'test', pue: 1 });
    assert.ok(carbon.ok);
    const report = buildEsgReport({
      ...rollups,
      tasks: [],
      carbon: carbon.config,
      period: PERIOD,
      toolVersion: 't',
      generatedAt: '2026-07-01T03:00:00.000Z',
      dataSource: 'prometheus',
      coverageKnown: false,
    });
    assert.deepEqual(esgReportSchemaProblems(report), []);
    assert.equal(report.totals.gpu_energy_kwh, 2); // 1 + 0.5 + 0.5 kWh
    assert.equal(report.totals.host_energy_kwh, 0.2);
    assert.equal(report.totals.completion_tokens, 1000);
    assert.equal(report.totals.requests, 10);
    assert.equal(report.tasks.count, 4);
    assert.equal(report.tasks.waste_share, 0.25);
    assert.equal(report.quality.sample_coverage, null);
    assert.equal(report.quality.late_records, 2);
    // tokens come by model and tier only: other dimensions say "unknown", not zero
    assert.equal(report.breakdowns.find((b) => b.by === 'tier')?.completion_tokens, 1000);
    assert.equal(report.breakdowns.find((b) => b.by === 'cache_bucket')?.completion_tokens, null);
    assert.equal(report.cross[0]?.j_per_output_token, null);
  });

  it('reports the API\'s own error, and an unreachable server', async () => {
    await assert.rejects(readPrometheusRollups(PERIOD, { url }), (e: unknown) => e instanceof PrometheusQueryError && /HTTP 401, unauthorized: no org id/.test(e.message));
    await assert.rejects(readPrometheusRollups(PERIOD, { url: 'http://127.0.0.1:1', timeoutMs: 5000 }), /cannot reach Prometheus at http:\/\/127\.0\.0\.1:1/);
  });
});

/**
 * A Prometheus stand-in that groups its raw series as `sum by (...)` and `count by (...)` do, so
 * the node label the export picks decides what it gets.
 */
function groupingPrometheus(raw: Record<string, { metric: Record<string, string>; values: [number, string][] }[]>): http.Server {
  return http.createServer((req, res) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams.get('query') ?? '';
    const [, op, labels, metric] = /^(sum|count) by \(([^)]*)\) \((?:increase|last_over_time)\((\w+)\[/.exec(query) ?? [];
    const by = (labels ?? '').split(',').map((l) => l.trim()).filter((l) => l !== '');
    const groups = new Map<string, { metric: Record<string, string>; values: Map<number, number> }>();
    for (const s of raw[metric ?? ''] ?? []) {
      const m = Object.fromEntries(by.filter((l) => s.metric[l] !== undefined).map((l) => [l, s.metric[l] as string]));
      const key = JSON.stringify(m);
      const g = groups.get(key) ?? { metric: m, values: new Map<number, number>() };
      for (const [ts, v] of s.values) g.values.set(ts, (g.values.get(ts) ?? 0) + (op === 'count' ? 1 : Number(v)));
      groups.set(key, g);
    }
    const result = [...groups.values()].map((g) => ({ metric: g.metric, values: [...g.values].sort((a, b) => a[0] - b[0]).map(([ts, v]) => [ts, String(v)]) }));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType: 'matrix', result } }));
  });
}

describe('Prometheus source: which label names the node', () => {
  // One GPU on gpu-node-1 for three hours; its DaemonSet pod was recreated during hour 1 (new pod IP).
  const THREE_HOURS = { fromMs: T0, toMs: T0 + 3 * H, label: 'three hours' };
  const a = { instance: '10.0.0.5:9477', job: 'tokenwatt' };
  const b = { instance: '10.0.0.9:9477', job: 'tokenwatt' };
  const raw = (withNode: (pod: Record<string, string>) => Record<string, string>) => ({
    tokenwatt_gpu_energy_joules_total: [
      { metric: { ...withNode(a), gpu: '0', uuid: 'GPU-a', simulated: 'false' }, values: [[t(0), '3600000'], [t(1), '1800000']] as [number, string][] },
      { metric: { ...withNode(b), gpu: '0', uuid: 'GPU-a', simulated: 'false' }, values: [[t(1), '1800000'], [t(2), '3600000']] as [number, string][] },
    ],
    tokenwatt_idle_energy_joules_total: [
      { metric: { ...withNode(a), gpu: '0' }, values: [[t(0), '3600000'], [t(1), '1800000']] as [number, string][] },
      { metric: { ...withNode(b), gpu: '0' }, values: [[t(1), '1800000'], [t(2), '3600000']] as [number, string][] },
    ],
    tokenwatt_host_energy_joules_total: [
      { metric: { ...withNode(a), estimated: 'false' }, values: [[t(0), '360000'], [t(1), '180000']] as [number, string][] },
      { metric: { ...withNode(b), estimated: 'false' }, values: [[t(1), '180000'], [t(2), '360000']] as [number, string][] },
    ],
  });
  const carbon = parseCarbonConfig({ intensityGPerKwh: 100, intensitySource: 'test', pue: 1, embodied: { gpuKgCo2e: 8766, hostKgCo2e: 8766, lifespanYears: 1, reservedShare: 1, source: 'test: 1 kg per hour' } });
  assert.ok(carbon.ok);

  async function reportFrom(series: ReturnType<typeof raw>, nodeLabel?: string) {
    const server = groupingPrometheus(series);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const rollups = await readPrometheusRollups(THREE_HOURS, { url, ...(nodeLabel !== undefined ? { nodeLabel } : {}) });
      assert.ok(carbon.ok);
      return buildEsgReport({
        ...rollups, tasks: [], carbon: carbon.config, period: THREE_HOURS, toolVersion: 't', generatedAt: '2026-07-01T04:00:00.000Z', dataSource: 'prometheus', coverageKnown: false, sourceNotes: rollups.notes,
      });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  it('takes the node label when the series carry it: a recreated pod stays one node with one GPU', async () => {
    const r = await reportFrom(raw((pod) => ({ ...pod, node: 'gpu-node-1' })));
    assert.deepEqual(r.nodes, ['gpu-node-1']);
    assert.equal(r.totals.gpu_count, 1);
    assert.equal(r.quality.expected_gpu_hours, 3);
    assert.equal(r.totals.reserved_gpu_hours, 3);
    assert.equal(r.totals.reserved_host_hours, 3);
    assert.equal(r.totals.embodied_kgco2e, 6);
    assert.equal(r.totals.gpu_energy_kwh, 3);
    assert.ok(!r.quality.notes.some((n) => /instance/.test(n)));
    assert.deepEqual(esgReportSchemaProblems(r), []);
  });

  it('falls back to instance when the series carry no node label, says so, and still counts the GPU once by its uuid', async () => {
    const r = await reportFrom(raw((pod) => pod));
    assert.deepEqual(r.nodes, ['10.0.0.5:9477', '10.0.0.9:9477']);
    assert.equal(r.totals.gpu_count, 1, 'one GPU uuid under two instance names');
    assert.equal(r.quality.expected_gpu_hours, 3);
    assert.equal(r.totals.reserved_gpu_hours, 3, 'the hour both pods reported counts once for the GPU');
    assert.ok(r.quality.notes.some((n) => /named by the Prometheus "instance" label: the GPU energy series carry no "node" label/.test(n)));
    assert.equal(r.totals.gpu_energy_kwh, 3);
  });

  it('reserves embodied emissions by the time covered by samples, as the ledger path does', async () => {
    // The agent started at 00:40 and stopped at 02:10; the pod was recreated at 01:30.
    const series = raw((pod) => ({ ...pod, node: 'gpu-node-1' }));
    const covered = {
      ...series,
      tokenwatt_gpu_covered_seconds_total: [
        { metric: { ...a, node: 'gpu-node-1', gpu: '0', uuid: 'GPU-a' }, values: [[t(0), '1200'], [t(1), '1800']] as [number, string][] },
        { metric: { ...b, node: 'gpu-node-1', gpu: '0', uuid: 'GPU-a' }, values: [[t(1), '1800'], [t(2), '600']] as [number, string][] },
      ],
    };
    const prom = await reportFrom(covered);
    assert.equal(prom.totals.reserved_gpu_hours, 1.5);
    assert.equal(prom.totals.reserved_host_hours, 1.5);
    assert.ok(!prom.quality.notes.some((n) => /tokenwatt_gpu_covered_seconds_total/.test(n)));
    // The covered time is known, so the quality section gives it, as the ledger path does.
    assert.equal(prom.quality.covered_gpu_hours, 1.5);
    assert.equal(prom.quality.sample_coverage, 0.5, '1.5 of 3 GPU-hours');
    assert.ok(prom.quality.notes.includes('Gap and counter-reset counts are not available from this data source.'));
    // The same node as its ledger holds it.
    const energy = (hour: number, measuredJ: number, coveredMs: number) => ({
      hourStartMs: epochMs(T0 + hour * H), node: 'gpu-node-1', gpuUuid: 'GPU-a', measuredJ, idleJ: measuredJ, staticJ: 0, dynamicJ: 0, unattributedJ: 0, estimatedJ: 0,
      coveredMs, counterResets: 0, gaps: 0, simulated: false,
    });
    assert.ok(carbon.ok);
    const ledger = buildEsgReport({
      energy: [energy(0, 3_600_000, 1_200_000), energy(1, 3_600_000, 3_600_000), energy(2, 3_600_000, 600_000)],
      host: [0, 1, 2].map((h) => ({ hourStartMs: epochMs(T0 + h * H), node: 'gpu-node-1', hostJ: h === 1 ? 360_000 : 360_000, estimated: false })),
      quality: [], usage: [], tasks: [], carbon: carbon.config, period: THREE_HOURS, toolVersion: 't', generatedAt: '2026-07-01T04:00:00.000Z',
    });
    assert.equal(ledger.totals.reserved_gpu_hours, 1.5);
    assert.equal(ledger.totals.embodied_gpu_kgco2e, prom.totals.embodied_gpu_kgco2e);
    assert.equal(ledger.totals.embodied_host_kgco2e, prom.totals.embodied_host_kgco2e);
    assert.equal(prom.totals.embodied_kgco2e, 3, '1 kg per observed GPU-hour and host-hour');
  });

  it('counts whole hours for agents without the covered-time counter, and says so', async () => {
    const r = await reportFrom(raw((pod) => ({ ...pod, node: 'gpu-node-1' })));
    assert.equal(r.totals.reserved_gpu_hours, 3);
    assert.ok(r.quality.notes.some((n) => /^3 GPU-hour\(s\) come from agents without tokenwatt_gpu_covered_seconds_total/.test(n)));
    // Whole hours are an assumption, not covered time: coverage is not given.
    assert.equal(r.quality.covered_gpu_hours, null);
    assert.equal(r.quality.sample_coverage, null);
    assert.ok(r.quality.notes.includes('Sample coverage, gap and counter-reset counts are not available from this data source.'));
  });

  it('tells simulated GPUs apart by node: every simulated node has the same UUIDs', async () => {
    const twoSimulatedNodes = raw((pod) => ({ ...pod, node: pod === a ? 'sim-a' : 'sim-b' }));
    for (const s of twoSimulatedNodes.tokenwatt_gpu_energy_joules_total) s.metric.simulated = 'true';
    const r = await reportFrom(twoSimulatedNodes);
    assert.deepEqual(r.nodes, ['sim-a', 'sim-b']);
    assert.equal(r.totals.gpu_count, 2);
    assert.equal(r.totals.reserved_gpu_hours, 4);
  });

  it('falls back to instance when only some series carry a node label; an explicit label is taken as given', async () => {
    const mixed = raw((pod) => (pod === a ? { ...pod, node: 'gpu-node-1' } : pod));
    const r = await reportFrom(mixed);
    assert.equal(r.nodes.length, 2);
    assert.ok(r.quality.notes.some((n) => /some GPU energy series carry no "node" label/.test(n)));
    const given = await reportFrom(raw((pod) => ({ ...pod, node: 'gpu-node-1' })), 'instance');
    assert.deepEqual(given.nodes, ['10.0.0.5:9477', '10.0.0.9:9477']);
    assert.equal(given.totals.gpu_count, 1);
    assert.ok(!given.quality.notes.some((n) => /instance/.test(n)), 'no note for a label the user chose');
  });
});
