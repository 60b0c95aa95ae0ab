import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { splitCsvLine } from '../../model/carbon/hourly-intensity-csv.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { checkContentSha256 } from '../../exporters/esg/canonical-json.js';
import { CSV_COLUMNS } from '../../exporters/esg/csv-format.js';
import { ReportSchemaError } from '../../exporters/esg/esg-errors.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { renderReport } from '../../exporters/esg/render-report.js';
import { esgReportSchemaPath, esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { epochMs } from '../../model/units.js';
import { makeRollups } from './rollup-fixtures.js';

const T0 = Date.UTC(2026, 6, 1);

function report(options: { simulated?: boolean; team?: string } = {}): EsgReport {
  const rollups = makeRollups({ fromMs: T0, hours: 72, gpus: 2, seed: 7, simulated: options.simulated ?? false });
  if (options.team !== undefined) rollups.usage = rollups.usage.map((u) => ({ ...u, team: options.team ?? '' }));
  const carbon = parseCarbonConfig({
    region: 'gcp:europe-west4',
    pue: 1.2,
    market: { instruments: [{ kind: 'ppa', coverageShare: 0.4, source: 'PPA' }], residualMix: { gCo2ePerKwh: 380, source: 'AIB 2025 NL' } },
    offsets: [{ kgCo2e: 5, description: 'credits', source: 'registry' }],
  });
  if (!carbon.ok) throw new Error(carbon.errors.join());
  return buildEsgReport({
    ...rollups,
    carbon: carbon.config,
    period: { fromMs: T0, toMs: Date.UTC(2026, 9, 1), label: '2026-Q3' },
    toolVersion: '1.2.3',
    generatedAt: '2026-10-01T08:00:00.000Z',
  });
}

/** Parse our CSV (RFC 4180, CRLF, no newlines inside cells). */
function parseCsv(text: string): string[][] {
  return text.split('\r\n').filter((l) => l !== '').map(splitCsvLine);
}

describe('JSON format and its published schema', () => {
  const r = report();

  it('is published in the repository and validates the report', () => {
    assert.match(esgReportSchemaPath(), /schemas\/esg-report\.schema\.json$/);
    assert.deepEqual(esgReportSchemaProblems(r), []);
    const json = JSON.parse(renderReport(r, 'json')) as EsgReport;
    assert.deepEqual(json, r);
    assert.ok(checkContentSha256(json).ok);
  });

  it('has the fields the issue names', () => {
    for (const key of ['gpu_energy_kwh', 'host_energy_kwh', 'idle_energy_kwh', 'facility_energy_kwh', 'emissions_location_kgco2e', 'emissions_market_kgco2e', 'embodied_kgco2e'] as const) {
      assert.equal(typeof r.totals[key], 'number', key);
    }
    assert.equal(typeof r.sci.per_1k_tokens_gco2e, 'number');
    assert.equal(typeof r.sci.per_task_gco2e, 'number');
    assert.match(r.content_sha256, /^[0-9a-f]{64}$/);
  });

  it('rejects reports that break it, and no format is rendered from them', () => {
    const broken = [
      { ...r, totals: { ...r.totals, gpu_energy_kwh: -1 } },
      { ...r, totals: { ...r.totals, pue: 0.7 } },
      { ...r, simulated: 'no' },
      { ...r, extra: 1 },
      { ...r, quality: { ...r.quality, simulated_share: undefined } },
    ];
    for (const b of broken) {
      assert.ok(esgReportSchemaProblems(b).length > 0, JSON.stringify(b).slice(0, 60));
      for (const format of ['json', 'csv', 'html', 'impact'] as const) assert.throws(() => renderReport(b as EsgReport, format), ReportSchemaError);
    }
  });
});

describe('CSV format', () => {
  const r = report({ team: '=HYPERLINK("http://x")' });
  const rows = parseCsv(renderReport(r, 'csv'));

  it('is tidy: one header, then one row per measure and breakdown key, seven columns each', () => {
    assert.deepEqual(rows[0], [...CSV_COLUMNS]);
    assert.ok(rows.length > 100);
    for (const row of rows) assert.equal(row.length, 7, row.join('|'));
    // Each (section, measure, by, key) appears once; notes and missing-hour ranges are lists.
    const keys = rows
      .slice(1)
      .filter((row) => !(row[0] === 'quality' && row[1] === 'note') && row[1] !== 'missing_hours')
      .map((row) => row.slice(0, 4).join('|'));
    assert.equal(new Set(keys).size, keys.length);
  });

  it('carries the totals and breakdown figures of the JSON report', () => {
    const value = (section: string, measure: string, by = '', key = ''): string | undefined =>
      rows.find((row) => row[0] === section && row[1] === measure && row[2] === by && row[3] === key)?.[4];
    assert.equal(Number(value('totals', 'facility_energy_kwh')), r.totals.facility_energy_kwh);
    assert.equal(Number(value('sci', 'per_1k_tokens_gco2e')), r.sci.per_1k_tokens_gco2e);
    const large = r.breakdowns.find((b) => b.by === 'tier' && b.key === 'large');
    assert.equal(Number(value('breakdown', 'j_per_output_token', 'tier', 'large')), large?.j_per_output_token);
    assert.equal(value('report', 'content_sha256'), r.content_sha256);
    assert.equal(rows.find((row) => row[0] === 'totals' && row[1] === 'emissions_market_kgco2e')?.[5], 'kgCO2e');
    assert.deepEqual(['per_token_gco2e', 'per_1k_tokens_gco2e', 'per_task_gco2e', 'operational_gco2e'].map((m) => rows.find((row) => row[1] === m)?.[5]), ['gCO2e/output token', 'gCO2e/1k output tokens', 'gCO2e/successful task', 'gCO2e']);
  });

  it('defuses spreadsheet formulas in label values', () => {
    const team = rows.find((row) => row[0] === 'breakdown' && row[2] === 'team');
    assert.equal(team?.[3], '\'=HYPERLINK("http://x")');
  });
});

describe('Impact Framework manifest', () => {
  const r = report();
  const manifest = parseYaml(renderReport(r, 'impact')) as {
    name: string;
    initialize: { plugins: Record<string, { path: string; method: string; config?: Record<string, unknown> }> };
    tree: { children: Record<string, { children: Record<string, { pipeline: { compute: string[] }; inputs: Record<string, number | string>[]; outputs: Record<string, number | string>[] }> }> };
  };

  it('declares builtin plugins and a compute pipeline per component (IF 1.x layout)', () => {
    assert.ok(manifest.name.includes('2026-Q3'));
    for (const plugin of Object.values(manifest.initialize.plugins)) {
      assert.equal(plugin.path, 'builtin');
      assert.ok(['Multiply', 'Sum', 'Sci'].includes(plugin.method));
    }
    const node = manifest.tree.children['node-a'];
    assert.ok(node);
    assert.deepEqual(node.children.period?.pipeline.compute, ['facility-energy', 'operational-carbon', 'sum-carbon', 'sci']);
  });

  it('has inputs whose computed outputs reproduce the report', () => {
    const period = manifest.tree.children['node-a']?.children.period;
    const input = period?.inputs[0] ?? {};
    const output = period?.outputs[0] ?? {};
    const energy = Number(input['it-energy']) * Number(input.pue);
    const operational = energy * Number(input['grid/carbon-intensity']);
    assert.ok(Math.abs(Number(output.energy) - energy) < 1e-6 * energy);
    assert.ok(Math.abs(Number(output['carbon-operational']) - operational) < 1e-6 * operational);
    assert.ok(Math.abs(Number(output['carbon-operational']) / 1000 - r.totals.emissions_location_kgco2e) < 1e-6 * r.totals.emissions_location_kgco2e);
    const carbon = Number(output['carbon-operational']) + Number(input['carbon-embodied']);
    assert.ok(Math.abs(Number(output.carbon) - carbon) < 1e-8 * carbon);
    assert.ok(Math.abs(Number(output.sci) - (r.sci.per_token_gco2e ?? 0)) < 1e-6 * (r.sci.per_token_gco2e ?? 1));
    const months = manifest.tree.children['node-a']?.children.months;
    assert.equal(months?.inputs.length, 3);
  });
});

describe('HTML format (static checks; rendering is checked in Chromium)', () => {
  it('is one self-contained file: no script, no external resource, a CSP that forbids fetching', () => {
    const html = renderReport(report({ team: '<script>alert(1)</script>' }), 'html');
    assert.match(html, /^<!DOCTYPE html>/);
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /\b(src|href)=["']?(https?:)?\/\//i);
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok((html.match(/<svg /g) ?? []).length >= 5);
  });

  it('charts every UTC day of a period that starts at noon', () => {
    const rollups = makeRollups({ fromMs: T0, hours: 72, gpus: 2, seed: 7 });
    const carbon = parseCarbonConfig({ region: 'IE' });
    assert.ok(carbon.ok);
    const period = { fromMs: T0 + 12 * 3_600_000, toMs: T0 + 60 * 3_600_000, label: 'noon to noon' };
    const r = buildEsgReport({ ...rollups, carbon: carbon.config, period, toolVersion: 't', generatedAt: '2026-10-01T08:00:00.000Z' });
    assert.deepEqual(r.series.daily_overhead.map((d) => d.day), ['2026-07-01', '2026-07-02', '2026-07-03']);
    const idleBars = [...renderReport(r, 'html').matchAll(/<title>(\d\d-\d\d) idle: [^<]*<\/title>/g)].map((m) => m[1]);
    assert.deepEqual(idleBars, ['07-01', '07-02', '07-03']);
  });

  it('puts a simulated banner on simulated data', () => {
    const html = renderReport(report({ simulated: true }), 'html');
    assert.match(html, /class="banner" role="alert"><strong>SIMULATED DATA/);
    assert.match(html, /<title>SIMULATED DATA \(not a measurement\)/);
    assert.doesNotMatch(renderReport(report(), 'html'), /class="banner"/);
  });
});

describe('estimated GPU energy is said to be estimated', () => {
  const hour = T0;
  const rollups = (estimatedJ: number, simulated = false) => ({
    energy: [{ hourStartMs: epochMs(hour), node: 'n', gpuUuid: 'GPU-0', measuredJ: 360_000, idleJ: 360_000, staticJ: 0, dynamicJ: 0, unattributedJ: 0, estimatedJ, coveredMs: 0, counterResets: 0, gaps: 1, simulated }],
    host: [], quality: [], usage: [], tasks: [],
  });
  const carbon = parseCarbonConfig({ region: 'FR' });
  assert.ok(carbon.ok);
  const build = (estimatedJ: number, simulated = false): EsgReport => {
    assert.ok(carbon.ok);
    return buildEsgReport({ ...rollups(estimatedJ, simulated), carbon: carbon.config, period: { fromMs: T0, toMs: T0 + 3_600_000, label: 'one hour' }, toolVersion: '1', generatedAt: '2026-10-01T08:00:00.000Z' });
  };
  const category = (r: EsgReport): unknown => (parseYaml(renderReport(r, 'impact')) as { tags: { category: unknown } }).tags.category;

  it('in the quality notes, with its share', () => {
    assert.ok(build(360_000).quality.notes.some((n) => /^0\.1 kWh \(100% of the GPU energy\) is estimated, not measured/.test(n)));
    assert.ok(build(90_000).quality.notes.some((n) => /^0\.025 kWh \(25% of the GPU energy\) is estimated/.test(n)));
    assert.ok(!build(0).quality.notes.some((n) => /is estimated, not measured/.test(n)));
  });

  it('in the Impact Framework category', () => {
    assert.equal(category(build(360_000)), 'estimated');
    assert.equal(category(build(90_000)), 'measured, 25% estimated');
    assert.equal(category(build(0)), 'measured');
    assert.equal(category(build(0, true)), 'simulated');
  });

  it('and the PUE and embodied factors say when they are documented defaults', () => {
    const factors = build(0).factors;
    assert.match(factors.find((f) => f.role === 'pue')?.note ?? '', /^documented default/);
    assert.match(factors.find((f) => f.role === 'embodied-gpu')?.note ?? '', /^documented default \(literature estimate/);
  });
});
