/**
 * Structure of deploy/grafana/tokenwatt.json: current with its source, panel ids and layout sane,
 * datasource templated, every query valid PromQL (promtool) reading only recording rules or agent
 * metrics, and the panels the issue asks for present.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { dashboardText } from '../../deploy/grafana/dashboard.js';
import { REPO_ROOT } from './support/k8s-validate.js';
import { seriesNames } from './support/agent-metrics.js';
import { metricNames } from './support/promql-names.js';
import { PROMTOOL, requirePrometheusBinary } from './support/prometheus-binaries.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const text = readFileSync(join(REPO_ROOT, 'deploy/grafana/tokenwatt.json'), 'utf8');
const dashboard: any = JSON.parse(text);
const panels: any[] = dashboard.panels;
const content = panels.filter((p) => p.type !== 'row');
const targets: { panel: string; expr: string }[] = content.flatMap((p) => p.targets.map((t: any) => ({ panel: p.title, expr: t.expr })));
const rules = (parse(readFileSync(join(REPO_ROOT, 'deploy/prometheus/tokenwatt.rules.yaml'), 'utf8')) as {
  groups: { rules: { record?: string; expr: string }[] }[];
}).groups.flatMap((g) => g.rules);
const records = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
const ruleExprs = rules.map((r) => r.expr);

/** The dashboard's variables replaced by what Grafana would send. */
function asPromql(expr: string): string {
  return expr.replace(/\$(tier|instance)/g, '.*');
}

describe('grafana dashboard', () => {
  it('is the output of deploy/grafana/dashboard.ts', () => {
    assert.equal(text, dashboardText());
  });

  it('has unique panel ids and a stable uid', () => {
    const ids = panels.map((p) => p.id);
    assert.ok(ids.every((id) => Number.isInteger(id) && id > 0));
    assert.equal(new Set(ids).size, ids.length);
    assert.equal(dashboard.uid, 'tokenwatt');
  });

  it('lays panels on the 24-column grid without overlaps', () => {
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      assert.ok(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, `${p.title}: ${JSON.stringify(p.gridPos)}`);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const cell = `${i},${j}`;
          assert.ok(!cells.has(cell), `${p.title} overlaps another panel at ${cell}`);
          cells.add(cell);
        }
      }
    }
  });

  it('reads from a templated Prometheus datasource everywhere', () => {
    const variable = dashboard.templating.list.find((v: any) => v.name === 'datasource');
    assert.equal(variable?.type, 'datasource');
    assert.equal(variable?.query, 'prometheus');
    for (const p of content) {
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
      for (const t of p.targets) assert.equal(t.datasource.uid, '${datasource}', p.title);
    }
    for (const v of dashboard.templating.list.filter((v: any) => v.type === 'query')) assert.equal(v.datasource.uid, '${datasource}');
  });

  it('every panel has a title, a description and at least one query with a unique refId', () => {
    for (const p of content) {
      assert.ok(p.title && p.description, `panel ${p.id}`);
      assert.ok(p.targets.length > 0, p.title);
      const refIds = p.targets.map((t: any) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, p.title);
    }
  });

  it('queries only recording rules and agent metrics, and charts every headline rule', () => {
    const known = seriesNames();
    const unknown = targets.flatMap(({ panel, expr }) => metricNames(expr).filter((n) => !known.has(n) && !records.has(n)).map((n) => `${panel}: ${n}`));
    assert.deepEqual(unknown, []);
    const used = new Set(targets.flatMap(({ expr }) => metricNames(expr)));
    // A headline rule is one no other rule reads; inputs of other rules need not be charted.
    const inputs = new Set(ruleExprs.flatMap(metricNames));
    const uncharted = [...records].filter((r) => !inputs.has(r) && !used.has(r));
    assert.deepEqual(uncharted, []);
  });

  it('every query and the annotation are valid PromQL (promtool check rules)', () => {
    requirePrometheusBinary(PROMTOOL);
    const exprs = [...targets.map((t) => t.expr), ...dashboard.annotations.list.filter((a: any) => a.expr).map((a: any) => a.expr)];
    const file = { groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard_query_${i}`, expr: asPromql(expr) })) }] };
    const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-dashboard-'));
    try {
      writeFileSync(join(dir, 'queries.yaml'), stringify(file));
      const out = execFileSync(PROMTOOL, ['check', 'rules', join(dir, 'queries.yaml')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      assert.match(out, new RegExp(`SUCCESS: ${exprs.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shows what the issue asks for', () => {
    const exprsOf = (needle: string) => targets.filter((t) => t.expr.includes(needle));
    const required: Record<string, string> = {
      'power per GPU': 'tokenwatt_gpu_power_watts',
      'J/token by tier': 'tier:tokenwatt_joules_per_output_token:ratio_rate5m',
      'J/token by batch size': 'tier_batch_bucket:tokenwatt_joules_per_output_token',
      'J/token by cache state': 'tier_cache_bucket:tokenwatt_joules_per_output_token',
      'energy per task': 'tier:tokenwatt_joules_per_successful_task',
      'idle share': 'tokenwatt_idle_energy_share',
      'waste share': 'tokenwatt_waste_energy_share',
      emissions: 'tokenwatt_gco2e_per_1k_output_tokens',
      'data quality': 'tokenwatt_records_rejected',
      'agent health': 'up{job="tokenwatt"',
    };
    for (const [what, needle] of Object.entries(required)) assert.ok(exprsOf(needle).length > 0, `${what} (${needle})`);
  });

  it('marks simulated data: a panel and an annotation on tokenwatt_power_source_info{simulated="true"}', () => {
    const simulated = 'tokenwatt_power_source_info{simulated="true"}';
    const annotation = dashboard.annotations.list.find((a: any) => typeof a.expr === 'string' && a.expr.includes(simulated));
    assert.ok(annotation?.enable, 'an enabled annotation');
    const panel = content.find((p) => p.targets.some((t: any) => t.expr.includes(simulated)));
    assert.ok(panel, 'a panel');
    const mapping = JSON.stringify(panel.fieldConfig.defaults.mappings);
    assert.match(mapping, /SIMULATED/);
    assert.match(mapping, /MEASURED/);
  });
});
