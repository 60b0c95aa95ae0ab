import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderAnalyzeTables, type AnalyzeReportView } from '../../exporters/analyze-table.js';
import { formatJoules, formatRatio, SIMULATED_BANNER } from '../../exporters/summary-table.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import { analyzeRun, type AnalyzeReport } from '../../model/analysis.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, joules, watts } from '../../model/units.js';

// Compile-time check: the model's report is accepted as it is.
const asView = (report: AnalyzeReport): AnalyzeReportView => report;

const T0 = Date.UTC(2026, 0, 5, 10, 0, 0);

/** 20 s of one GPU at 10 Hz: 80 W idle, 300 W while a request runs. */
function recordedRun(simulated: boolean): AnalyzeReport {
  const requests: ResolvedRequest[] = [
    { id: 'r1', task: 't1', start: 2_000, end: 6_000, status: 'error' as const, tier: 'large' },
    { id: 'r2', task: 't1', start: 7_000, end: 11_000, status: 'ok' as const, tier: 'large' },
    { id: 'r3', task: null, start: 12_000, end: 14_000, status: 'ok' as const, tier: 'small' },
  ].map((r, i) => ({
    requestId: r.id, taskId: r.task, attempt: r.task === null ? null : i + 1, model: `m-${r.tier}`, tier: r.tier, gpus: ['GPU-a'],
    startMs: epochMs(T0 + r.start), firstTokenMs: null, endMs: epochMs(T0 + r.end),
    promptTokens: 200, cachedTokens: i * 50, completionTokens: 100, reasoningTokens: 0, batchSize: null, status: r.status,
    labels: {}, tokensEstimated: false, granularity: 'request' as const, source: simulated ? 'simulated' : 'file',
  }));
  const samples: PowerSample[] = [];
  let energy = 0;
  for (let t = 0; t <= 20_000; t += 100) {
    const busy = requests.some((r) => T0 + t >= r.startMs && T0 + t < r.endMs);
    const power = busy ? 300 : 80;
    samples.push({ timestampMs: epochMs(T0 + t), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(power), energyJ: joules(energy), simulated });
    energy += power * 0.1;
  }
  return analyzeRun({ samples, requests, gpus: [{ uuid: 'GPU-a', index: 0 }], config: DEFAULT_ATTRIBUTION_CONFIG, perRequest: true });
}

test('a real analyze report renders: banner only when simulated, every group kind, tasks, quality, requests', () => {
  const measured = recordedRun(false);
  const text = renderAnalyzeTables(asView(measured));
  assert.ok(!text.includes('SIMULATED'), 'a measured run has no banner');
  assert.match(text, new RegExp(`^energy: measured ${formatJoules(measured.totals.measured_j).replace('.', '\\.')} = attributed`));
  for (const group of measured.groups) {
    const line = text.split('\n').find((l) => l.startsWith(`${group.key} `) && l.includes(formatJoules(group.joules)));
    assert.ok(line, `row for ${group.by}=${group.key}`);
    assert.ok(line.includes(formatRatio(group.j_per_output_token)), `${group.key}: marginal J/token shown`);
  }
  for (const by of new Set(measured.groups.map((g) => g.by))) assert.match(text, new RegExp(`^${by} +requests`, 'm'), `${by} table`);
  assert.match(text, /^tasks: 1, 1 succeeded; /m);
  assert.match(text, /^t1 +2 +yes /m);
  assert.match(text, /^quality: .*simulated false/m);
  // The window's ends are shown as dates, named without the _ms the JSON keys carry.
  assert.match(text, new RegExp(`^quality: .*window_start ${new Date(T0).toISOString().replace(/\./g, '\\.')}; window_end ${new Date(T0 + 20_000).toISOString().replace(/\./g, '\\.')};`, 'm'));
  assert.doesNotMatch(text, /_ms \d{4}-/, 'no field named in ms holds a date');
  for (const r of measured.requests ?? []) assert.match(text, new RegExp(`^${r.request_id}\\b`, 'm'));

  const simulated = renderAnalyzeTables(asView(recordedRun(true)));
  assert.equal(simulated.split('\n')[0], SIMULATED_BANNER);
});

test('many tasks: the largest are listed and the rest summed, so no energy disappears from view', () => {
  const report: AnalyzeReportView = {
    totals: { measured_j: 100, idle_j: 10, attributed_j: 90, unattributed_j: 0, residual_j: 0 },
    groups: [],
    tasks: Array.from({ length: 5 }, (_, i) => ({ task_id: `task-${i}`, requests: 1, succeeded: i !== 0, joules: (i + 1) * 10 })),
    quality: { simulated: false },
  };
  const text = renderAnalyzeTables(report, { maxTasks: 2 });
  assert.match(text, /^task-4 /m);
  assert.match(text, /^task-3 /m);
  assert.doesNotMatch(text, /^task-0 /m);
  assert.match(text, /\.\.\. and 3 more tasks, 60 J together/);
  assert.match(text, /tasks: 5, 4 succeeded; 37\.5 J per successful task/);
  assert.doesNotMatch(text, /^request_id/m, 'no request table without --per-request');
});

test('requests with estimated energy are marked', () => {
  const report: AnalyzeReportView = {
    totals: { measured_j: 1, idle_j: 0, attributed_j: 1, unattributed_j: 0, residual_j: 0 },
    groups: [],
    tasks: [],
    quality: {},
    requests: [{ request_id: 'r-est', joules: 1, static_j: 0.2, dynamic_j: 0.8, batch_size: 1.5, cache_bucket: 'miss', estimated: true }],
  };
  const text = renderAnalyzeTables(report);
  assert.match(text, /^r-est \* +1 J +0\.2 J +0\.8 J +1\.5 +miss$/m);
  assert.match(text, /\* some of this request's energy is estimated/);
});
