/**
 * The Prometheus rules under promtool: `check rules` on the rules file (and the chart's copy), and
 * `test rules` on deploy/prometheus/tests/*.yaml. Also checks that the unit tests cover every alert
 * with a firing case, and that rules read only metrics the agent exports or other rules record.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { REPO_ROOT } from './support/k8s-validate.js';
import { METRIC_CATALOG } from '../../exporters/prometheus/metric-catalog.js';
import { PENDING_LABELS, seriesNames, stillPending } from './support/agent-metrics.js';
import { metricNames } from './support/promql-names.js';
import { PROMTOOL, requirePrometheusBinary } from './support/prometheus-binaries.js';

const RULES = 'deploy/prometheus/tokenwatt.rules.yaml';
const TESTS_DIR = 'deploy/prometheus/tests';

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
interface RulesFile {
  groups: { name: string; rules: Rule[] }[];
}

const rules: Rule[] = (parse(readFileSync(join(REPO_ROOT, RULES), 'utf8')) as RulesFile).groups.flatMap((g) => g.rules);
const testFiles = readdirSync(join(REPO_ROOT, TESTS_DIR)).filter((f) => f.endsWith('.yaml')).sort();

function promtool(args: string[], cwd = REPO_ROOT): string {
  try {
    return execFileSync(PROMTOOL, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

describe('prometheus rules', () => {
  before(() => {
    requirePrometheusBinary(PROMTOOL);
  });

  it('pass promtool check rules (the file and the chart copy)', () => {
    const out = promtool(['check', 'rules', RULES, 'deploy/helm/tokenwatt/files/tokenwatt.rules.yaml']);
    assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  for (const file of testFiles) {
    it(`pass promtool test rules ${file}`, () => {
      const out = promtool(['test', 'rules', file], join(REPO_ROOT, TESTS_DIR));
      assert.match(out, /SUCCESS/);
    });
  }

  it('a broken expectation makes promtool test rules fail (control)', () => {
    const source = readFileSync(join(REPO_ROOT, TESTS_DIR, 'energy.test.yaml'), 'utf8');
    assert.ok(source.includes('value: 500000'));
    const broken = source.replace('value: 500000', 'value: 500001');
    const tmp = mkdtempSync(join(tmpdir(), 'tokenwatt-promtool-'));
    try {
      const path = join(tmp, 'broken.test.yaml');
      // rule_files are relative to the test file: point at the real rules from the scratch copy.
      writeFileSync(path, broken.replace('../tokenwatt.rules.yaml', join(REPO_ROOT, RULES)));
      assert.throws(() => promtool(['test', 'rules', path]), /FAILED/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('have a firing test case for every alert', () => {
    const fired = new Set<string>();
    for (const file of testFiles) {
      const doc = parse(readFileSync(join(REPO_ROOT, TESTS_DIR, file), 'utf8')) as {
        tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
      };
      for (const t of doc.tests) for (const a of t.alert_rule_test ?? []) if (a.exp_alerts.length > 0) fired.add(a.alertname);
    }
    const alerts = rules.flatMap((r) => (r.alert ? [r.alert] : []));
    assert.ok(alerts.length >= 6);
    assert.deepEqual(alerts.filter((a) => !fired.has(a)), []);
  });

  it('have the required recording rules and alerts', () => {
    const records = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    for (const name of [
      'tier:tokenwatt_joules_per_output_token:ratio_rate5m',
      'tier_batch_bucket:tokenwatt_joules_per_output_token:ratio_rate5m',
      'tier_cache_bucket:tokenwatt_joules_per_output_token:ratio_rate5m',
      'tier:tokenwatt_joules_per_successful_task:ratio_rate1h',
      ':tokenwatt_idle_energy_share:ratio_rate5m',
      ':tokenwatt_gco2e_per_1k_output_tokens:ratio_rate5m',
    ]) {
      assert.ok(records.has(name), name);
    }
    const alerts = new Set(rules.flatMap((r) => (r.alert ? [r.alert] : [])));
    for (const name of [
      'TokenwattAgentDown',
      'TokenwattSamplingStalled',
      'TokenwattConservationResidual',
      'TokenwattJoulesPerTokenUpWeekOverWeek',
      'TokenwattTenantEnergyAnomaly',
    ]) {
      assert.ok(alerts.has(name), name);
    }
  });

  it('read only agent metrics and rules recorded in the same file', () => {
    const known = seriesNames();
    const records = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    const unknown = rules.flatMap((r) =>
      metricNames(r.expr)
        .filter((n) => !known.has(n) && !records.has(n))
        .map((n) => `${r.record ?? r.alert}: ${n}`),
    );
    assert.deepEqual(unknown, []);
    // The facility rule selects its counters by a name regex: it must match exactly the measured
    // GPU and host energy counters, never the attributed/idle parts of the GPU energy.
    for (const r of rules) {
      for (const m of r.expr.matchAll(/__name__=~"([^"]+)"/g)) {
        const re = new RegExp(`^(?:${m[1]})$`);
        const matched = [...known].filter((n) => re.test(n)).sort();
        assert.deepEqual(matched, ['tokenwatt_gpu_energy_joules_total', 'tokenwatt_host_energy_joules_total'], String(r.record));
      }
    }
  });

  it('group only by labels the agent exports on each metric', () => {
    const catalog = new Map<string, { labels: readonly string[]; userLabels?: boolean }>(Object.values(METRIC_CATALOG).map((m) => [m.name, m]));
    const missing: string[] = [];
    for (const r of rules) {
      // sum by (labels) (... metric ...): every grouping label must be on every raw metric inside.
      for (const m of r.expr.matchAll(/sum by \(([^)]*)\) \(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)/g)) {
        const labels = (m[1] ?? '').split(',').map((l) => l.trim()).filter((l) => l !== '' && l !== 'instance' && l !== 'le');
        for (const name of metricNames(m[2] ?? '')) {
          const family = catalog.get(name.replace(/_(bucket|sum|count)$/, '')) ?? catalog.get(name);
          if (family === undefined) continue;
          for (const label of labels) {
            const has = family.labels.includes(label) || (family.userLabels === true && ['team', 'feature'].includes(label));
            if (!has && !PENDING_LABELS[name]?.includes(label)) missing.push(`${r.record ?? r.alert}: ${name} has no label ${label}`);
          }
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it('need no metric or label the agent does not export yet', { todo: pendingNote() }, () => {
    assert.deepEqual(stillPending(), []);
  });
});

/** Why the pending test is a TODO, or false once nothing is pending. */
function pendingNote(): string | false {
  const pending = stillPending();
  return pending.length === 0 ? false : `exporters/prometheus must add ${pending.join(', ')}`;
}
