/**
 * End to end with a real Prometheus (Debian's /usr/bin/prometheus, on loopback): the agent runs its
 * demo (simulated GPUs, built-in workload), Prometheus scrapes it every second and evaluates
 * deploy/prometheus/tokenwatt.rules.yaml. Checked:
 *  - what Prometheus stored is what the agent's /metrics said;
 *  - every rule group evaluates without error on real agent output;
 *  - each recording rule's recorded values equal the same figure recomputed here from the raw
 *    scraped counters at the rule's own evaluation times (an independent rate() implementation);
 *  - `promtool check metrics` accepts the agent's /metrics, and every catalogued family is there.
 * The J/token of a 5-minute window is not compared with the agent's totals since start: the two
 * differ legitimately while long requests straddle the window's edges.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { METRIC_CATALOG } from '../../exporters/prometheus/metric-catalog.js';
import { REPO_ROOT } from './support/k8s-validate.js';
import { stillPending } from './support/agent-metrics.js';
import { PROMETHEUS, PROMTOOL, requirePrometheusBinary } from './support/prometheus-binaries.js';
import { PrometheusApi, groupKey, sumRateBy } from './support/prom-api.js';
import { freePort } from '../e2e/agent-process.js';

const RULES = join(REPO_ROOT, 'deploy/prometheus/tokenwatt.rules.yaml');
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[] }).groups;
const recorded = new Map(rules.flatMap((g) => g.rules).filter((r) => r.record).map((r) => [r.record as string, r.expr]));
/**
 * A recording rule's expression with every recorded series it reads replaced by that rule's own
 * expression, so the whole chain is evaluated at one instant (recorded series carry the
 * timestamps of their rule evaluations, which differ slightly from the query time).
 */
const exprOf = (record: string): string => {
  const expr = recorded.get(record);
  if (expr === undefined) throw new Error(`no recording rule ${record}`);
  return expr.replace(/[a-zA-Z_:][a-zA-Z0-9_:]*/g, (name) => (name !== record && recorded.has(name) ? `(${exprOf(name)})` : name));
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());


/** Polls `probe` until it returns a value, at most `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, diagnostics: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = String(error);
    }
    await sleep(500);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${lastError}\n${diagnostics()}`);
}

/** A child process with its output kept for diagnostics. */
function start(command: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => output };
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Parses the text exposition format into series -> value (no HELP/TYPE lines). */
function parseExposition(text: string): Map<string, { name: string; labels: Record<string, string>; value: number }> {
  const out = new Map<string, { name: string; labels: Record<string, string>; value: number }>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const name = m[1] ?? '';
    out.set(seriesKey(name, labels), { name, labels, value: Number(m[4]) });
  }
  return out;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const sorted = Object.keys(labels).filter((k) => k !== 'job' && k !== 'instance' && k !== '__name__').sort();
  return `${name}{${sorted.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
}

function close(actual: number, expected: number, relative: number): boolean {
  return Math.abs(actual - expected) <= relative * Math.max(Math.abs(actual), Math.abs(expected), 1e-12);
}

describe('prometheus end to end', { timeout: 480_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-prom-e2e-'));
  let agent: ReturnType<typeof start> | undefined;
  let prometheus: ReturnType<typeof start> | undefined;
  let agentUrl = '';
  let api: PrometheusApi;

  before(async () => {
    requirePrometheusBinary(PROMETHEUS);
    requirePrometheusBinary(PROMTOOL);
    const agentPort = await freePort();
    agentUrl = `http://127.0.0.1:${agentPort}`;
    // The agent from its sources (what dist/ is compiled from), on loopback, with a throwaway
    // ledger and short settlement so figures appear within seconds. No TOKENWATT_* from outside.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOKENWATT_')));
    agent = start(
      process.execPath,
      ['--import', 'tsx', 'agent/cli.ts', 'demo', '--host', '127.0.0.1', '--port', String(agentPort), '--db', join(dir, 'demo.db'), '--settle-lateness', '2', '--settle-period', '1', '--summary-every', '0', '--seed', '7'],
      env,
    );
    await waitFor('the agent to be ready', 60_000, async () => ((await fetch(`${agentUrl}/readyz`)).ok ? true : undefined), () => agent?.output() ?? '');

    const promPort = await freePort();
    const config = {
      global: { scrape_interval: '2s', evaluation_interval: '1s', scrape_timeout: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: 'tokenwatt', static_configs: [{ targets: [`127.0.0.1:${agentPort}`] }] }],
    };
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config));
    prometheus = start(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      env,
    );
    api = new PrometheusApi(`http://127.0.0.1:${promPort}`);
    await waitFor('prometheus to be ready', 60_000, async () => ((await fetch(`http://127.0.0.1:${promPort}/-/ready`)).ok ? true : undefined), () => prometheus?.output() ?? '');
    // Enough scrapes for 5-minute rates to have many samples in their window.
    await waitFor(
      'J/token by tier from the recording rules',
      120_000,
      async () => ((await api.instant('tier:tokenwatt_joules_per_output_token:ratio_rate5m', Date.now())).length > 0 ? true : undefined),
      () => `agent:\n${agent?.output() ?? ''}\nprometheus:\n${prometheus?.output() ?? ''}`,
    );
    await sleep(15_000);
  });

  after(async () => {
    await stop(prometheus?.child);
    await stop(agent?.child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('scrapes the agent as job tokenwatt', async () => {
    const up = await api.instant('up{job="tokenwatt"}', Date.now());
    assert.deepEqual(up.map((u) => u.value), [1]);
  });

  it('stores what the agent exports (every counter between two reads of /metrics)', async () => {
    const before = parseExposition(await (await fetch(`${agentUrl}/metrics`)).text());
    const readAt = Date.now();
    await sleep(4_500);
    const queryAt = Date.now();
    // The latest stored sample of each counter, with its scrape time.
    const stored = await api.raw('{__name__=~"tokenwatt_.+_total", job="tokenwatt"}[4s]', queryAt);
    const after = parseExposition(await (await fetch(`${agentUrl}/metrics`)).text());
    assert.ok(stored.length >= 5, `stored ${stored.length} counter series`);
    for (const s of stored) {
      const key = seriesKey(s.labels.__name__ ?? '', s.labels);
      const [scrapedAt, value] = s.samples[s.samples.length - 1] ?? [0, NaN];
      assert.ok(scrapedAt > readAt, `${key} was scraped after the first read`);
      const low = before.get(key)?.value ?? 0;
      const high = after.get(key)?.value;
      assert.ok(high !== undefined, `${key} is in the agent's /metrics`);
      assert.ok(low <= value && value <= high, `${key}: agent ${low}..${high}, Prometheus ${value}`);
    }
  });

  it('evaluates every rule group without error', async () => {
    const body = await api.json<{ data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] } }>('/api/v1/rules');
    const groups = body.data.groups.map((g) => g.name).sort();
    assert.deepEqual(groups, rules.map((g) => g.name).sort());
    const unhealthy = body.data.groups.flatMap((g) => g.rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`));
    assert.deepEqual(unhealthy, []);
  });

  /**
   * A ratio recording rule against its recomputation from raw samples at each of its recent
   * evaluation times. An evaluation that ran while a scrape was being stored lacks that scrape's
   * samples (scrapes every 2 s, evaluations every 1 s, so at most every other one); the rule is
   * right when its other evaluations equal the recomputation exactly. Returns the number of groups.
   */
  async function compareRatio(record: string, numerator: string, denominator: string, by: readonly string[], windowS: number): Promise<number> {
    const recorded = await api.raw(`${record}[12s]`, Date.now() - 2_000);
    assert.ok(recorded.length > 0, `${record} is recorded`);
    const times = [...new Set(recorded.flatMap((r) => r.samples.map(([t]) => t)))].sort((a, b) => a - b);
    let exact = 0;
    let groups = 0;
    const differences: string[] = [];
    for (const at of times) {
      const [num, den] = await Promise.all([sumRateBy(api, numerator, windowS, by, at), sumRateBy(api, denominator, windowS, by, at)]);
      const expected = new Map<string, number>();
      for (const [key, d] of den) if (d > 0 && num.has(key)) expected.set(key, (num.get(key) ?? 0) / d);
      const got = new Map(recorded.flatMap((r) => r.samples.filter(([t]) => t === at).map(([, v]) => [groupKey(r.labels, by), v] as const)));
      const same = got.size === expected.size && [...expected].every(([key, value]) => close(got.get(key) ?? NaN, value, 1e-9));
      if (same) {
        exact += 1;
        groups = expected.size;
      } else {
        differences.push(`at ${at}: recorded ${JSON.stringify([...got])}, recomputed ${JSON.stringify([...expected])}`);
      }
    }
    assert.ok(exact > 0, `${record}: none of ${times.length} evaluations equals the recomputation\n${differences.slice(0, 3).join('\n')}`);
    return groups;
  }

  it('J per output token by tier equals the raw counters recomputed', async () => {
    const tiers = await compareRatio('tier:tokenwatt_joules_per_output_token:ratio_rate5m', 'tokenwatt_energy_joules_total', 'tokenwatt_tokens_total{kind="completion"}', ['tier'], 300);
    assert.ok(tiers >= 2, `the demo serves several tiers (${tiers})`);
  });

  it('idle share equals the raw counters recomputed', async () => {
    await compareRatio(':tokenwatt_idle_energy_share:ratio_rate5m', 'tokenwatt_idle_energy_joules_total', 'tokenwatt_gpu_energy_joules_total', [], 300);
  });

  /** TODO text while the agent lacks what a check needs (see support/agent-metrics.ts). */
  const pending = (...needs: string[]) => {
    const missing = stillPending().filter((p) => needs.includes(p));
    return missing.length === 0 ? false : `needs ${missing.join(', ')} from exporters/prometheus`;
  };

  it('J per output token by tier and batch bucket equals the raw counters recomputed', { todo: pending('tokenwatt_tokens_total{batch_bucket}') }, async () => {
    await compareRatio('tier_batch_bucket:tokenwatt_joules_per_output_token:ratio_rate5m', 'tokenwatt_energy_joules_total', 'tokenwatt_tokens_total{kind="completion"}', ['tier', 'batch_bucket'], 300);
  });

  it('J per output token by tier and cache bucket equals the raw counters recomputed', { todo: pending('tokenwatt_tokens_total{cache_bucket}') }, async () => {
    await compareRatio('tier_cache_bucket:tokenwatt_joules_per_output_token:ratio_rate5m', 'tokenwatt_energy_joules_total', 'tokenwatt_tokens_total{kind="completion"}', ['tier', 'cache_bucket'], 300);
  });

  it('J per request by team equals the raw counters recomputed', { todo: pending('tokenwatt_requests_total{team}') }, async () => {
    await compareRatio('team:tokenwatt_joules_per_request:ratio_rate1h', 'tokenwatt_energy_joules_total', 'tokenwatt_requests_total', ['team'], 3600);
  });

  it('emissions per 1,000 output tokens come from the agent\'s PUE and grid intensity', { todo: pending('tokenwatt_pue_ratio', 'tokenwatt_grid_intensity_grams_per_joule') }, async () => {
    const at = Date.now() - 3_000;
    const [energy, host, tokens, pue, grid, byPrometheus] = await Promise.all([
      sumRateBy(api, 'tokenwatt_gpu_energy_joules_total', 300, [], at),
      sumRateBy(api, 'tokenwatt_host_energy_joules_total', 300, [], at),
      sumRateBy(api, 'tokenwatt_tokens_total{kind="completion"}', 300, [], at),
      api.instant('max(tokenwatt_pue_ratio)', at),
      api.instant('max(tokenwatt_grid_intensity_grams_per_joule)', at),
      api.instant(exprOf(':tokenwatt_gco2e_per_1k_output_tokens:ratio_rate5m'), at),
    ]);
    const key = groupKey({}, []);
    const facility = ((energy.get(key) ?? 0) + (host.get(key) ?? 0)) * (pue[0]?.value ?? NaN);
    const expected = (1000 * facility * (grid[0]?.value ?? NaN)) / (tokens.get(key) ?? NaN);
    assert.ok(Number.isFinite(expected) && expected > 0, `recomputed ${expected}`);
    assert.ok(close(byPrometheus[0]?.value ?? NaN, expected, 1e-9), `Prometheus ${byPrometheus[0]?.value}, recomputed ${expected}`);
  });

  it('marks the demo as simulated, and the simulated-power alert is pending', async () => {
    const info = await api.instant('tokenwatt_power_source_info{simulated="true"}', Date.now());
    assert.equal(info.length, 1);
    const alerts = await api.json<{ data: { alerts: { labels: Record<string, string>; state: string }[] } }>('/api/v1/alerts');
    const simulated = alerts.data.alerts.find((a) => a.labels.alertname === 'TokenwattSimulatedPowerSource');
    assert.equal(simulated?.state, 'pending');
    // A healthy demo raises no warning or critical alert.
    const firing = alerts.data.alerts.filter((a) => a.labels.severity !== 'info').map((a) => `${a.labels.alertname} ${a.state}`);
    assert.deepEqual(firing, []);
  });

  it('promtool check metrics accepts the agent\'s /metrics', async () => {
    const text = await (await fetch(`${agentUrl}/metrics`)).text();
    const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = execFile(PROMTOOL, ['check', 'metrics'], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
      );
      child.stdin?.end(text);
    });
    assert.equal(result.code, 0, result.output);
  });

  it('exports every metric family of the catalog', async () => {
    const text = await (await fetch(`${agentUrl}/metrics`)).text();
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    const missing = Object.values(METRIC_CATALOG).map((m) => m.name).filter((n) => !families.has(n));
    assert.deepEqual(missing, []);
  });
  // Tasks close after a minute without requests, so this one waits for the first closed tasks.
  it('J per successful task and waste share by tier equal the raw counters recomputed', async () => {
    const ready = 'sum(tier:tokenwatt_successful_tasks:rate1h) > 0 and on () count(tier:tokenwatt_waste_energy_share:ratio_rate1h) > 0';
    await waitFor('closed tasks, some with waste', 180_000, async () => ((await api.instant(ready, Date.now() - 3_000)).length > 0 ? true : undefined));
    await sleep(4_000);
    await compareRatio('tier:tokenwatt_joules_per_successful_task:ratio_rate1h', 'tokenwatt_task_energy_joules_sum', 'tokenwatt_tasks_total{succeeded="true"}', ['tier'], 3600);
    await compareRatio('tier:tokenwatt_waste_energy_share:ratio_rate1h', 'tokenwatt_waste_energy_joules_total', 'tokenwatt_energy_joules_total', ['tier'], 3600);
  });
});
