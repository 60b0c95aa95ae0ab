import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
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
    await readPrometheusRollups(PERIOD, { url, headers: { 'X-Scope-OrgID': 'tenant-1' } });
    assert.equal(seen.length, 14);
    for (const p of seen) {
      assert.equal(p.get('start'), String(t(0)));
      assert.equal(p.get('end'), String(t(1)));
      assert.equal(p.get('step'), '3600');
      const query = p.get('query') ?? '';
      assert.match(query, /^sum by \(instance(, \w+)*\) \(increase\((tokenwatt_\w+)\[1h\]\)\) \+ /);
      // the first value of a series born in the hour is added back (increase() cannot see it)
      assert.match(query, /\(min_over_time\((tokenwatt_\w+)\[1h\]\) unless max_over_time\(\1\[1h\] offset 1h\)\)/);
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
