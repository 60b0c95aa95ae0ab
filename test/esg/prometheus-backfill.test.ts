import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readPrometheusRollups } from '../../exporters/esg/prometheus-source.js';
import type { PrometheusRollups } from '../../exporters/esg/prometheus-source.js';
import { PROMETHEUS, PROMTOOL, requirePrometheusBinary } from '../deploy/support/prometheus-binaries.js';
import { freePort } from '../e2e/agent-process.js';

/**
 * The ESG export's PromQL on a REAL Prometheus (Debian's package), over scrapes written into its
 * TSDB with `promtool tsdb create-blocks-from openmetrics`: timings a live scrape cannot be made
 * to hit (an agent's only scrape in an hour, an outage of over an hour) are laid down exactly.
 * Each agent is on a node of its own (but "pair"), so each case is read from its node's rows.
 */

const H = 3600;
const T0 = Date.UTC(2026, 0, 5) / 1000; // an hour boundary, seconds
const PERIOD = { fromMs: T0 * 1000, toMs: (T0 + 2 * H) * 1000, label: 'two hours' };
const EVERY = 60;
/** Scrape times every minute at :30 (never on an hour boundary), from..to inclusive, in seconds. */
const scrapes = (from: number, to: number): number[] => Array.from({ length: Math.floor((to - from) / EVERY) + 1 }, (_, i) => from + i * EVERY);
/** 0:59:30 as T0 + hm(0, 59, 30). */
const hm = (h: number, m: number, s = 0): number => T0 + h * H + m * 60 + s;

interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly samples: readonly (readonly [number, number])[];
}

interface Agent {
  readonly instance: string;
  readonly node: string;
  readonly uuid: string;
  /** The counters-start gauge; absent for an agent older than it. */
  readonly start?: { readonly at: number; readonly seeded: boolean };
  readonly scrapes: readonly number[];
  /** GPU energy at time t. */
  readonly energy: (t: number) => number;
  /** Completion tokens per model at time t; undefined while the series does not exist. */
  readonly tokens?: Readonly<Record<string, (t: number) => number | undefined>>;
}

function seriesOf(a: Agent): Series[] {
  const target = { job: 'tokenwatt', instance: a.instance, node: a.node };
  const out: Series[] = [{ name: 'tokenwatt_gpu_energy_joules_total', labels: { ...target, gpu: '0', uuid: a.uuid, simulated: 'false' }, samples: a.scrapes.map((t) => [t, a.energy(t)]) }];
  if (a.start) out.push({ name: 'tokenwatt_counters_start_timestamp_seconds', labels: { ...target, seeded: String(a.start.seeded) }, samples: a.scrapes.map((t) => [t, a.start?.at ?? 0]) });
  for (const [model, value] of Object.entries(a.tokens ?? {})) {
    const samples = a.scrapes.flatMap((t): [number, number][] => {
      const v = value(t);
      return v === undefined ? [] : [[t, v]];
    });
    out.push({ name: 'tokenwatt_tokens_total', labels: { ...target, model, tier: 't', cache_bucket: 'miss', batch_bucket: '1', kind: 'completion', simulated: 'false' }, samples });
  }
  return out;
}

/** OpenMetrics text: each family's samples together, as promtool reads them. */
function openMetrics(series: readonly Series[]): string {
  const lines: string[] = [];
  for (const name of [...new Set(series.map((s) => s.name))]) {
    lines.push(name.endsWith('_total') ? `# TYPE ${name.slice(0, -'_total'.length)} counter` : `# TYPE ${name} gauge`);
    for (const s of series.filter((x) => x.name === name)) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(',');
      for (const [t, v] of s.samples) lines.push(`${name}{${labels}} ${v} ${t}`);
    }
  }
  lines.push('# EOF');
  return `${lines.join('\n')}\n`;
}

const SEED = 1e7;
const AGENTS: Agent[] = [
  // A new agent started at 0:59 on an empty ledger: its scrape at 0:59:30 is its only one in hour 0.
  { instance: 'fresh:9477', node: 'n-fresh', uuid: 'GPU-fresh', start: { at: hm(0, 59), seeded: false }, scrapes: scrapes(hm(0, 59, 30), hm(1, 59, 30)),
    energy: (t) => 100 * (t - hm(0, 59)), tokens: { m: (t) => t - hm(0, 59) } },
  // An agent restarted at 0:20 in a new pod on a ledger with totals: its counters go on from them
  // (not new), but a model first served at 0:40 is a series that starts from 0 (one request, 500 tokens).
  { instance: 'seeded:9477', node: 'n-seeded', uuid: 'GPU-seeded', start: { at: hm(0, 20), seeded: true }, scrapes: scrapes(hm(0, 20, 30), hm(1, 59, 30)),
    energy: (t) => SEED + 100 * (t - hm(0, 20)), tokens: { old: (t) => 1e6 + (t - hm(0, 20)), new: (t) => (t >= hm(0, 40, 30) ? 500 : undefined) } },
  // Running since -2:00, not scraped from -1:30 to 0:30 (Prometheus or the network down): its series
  // come back at 0:30:30 with all they counted, which is not new; a model first served at 0:45 is.
  { instance: 'outage:9477', node: 'n-outage', uuid: 'GPU-outage', start: { at: hm(-2, 0), seeded: false },
    scrapes: [...scrapes(hm(-2, 0, 30), hm(-2, 30, 30)), ...scrapes(hm(0, 30, 30), hm(1, 59, 30))],
    energy: (t) => 100 * (t - hm(-2, 0)), tokens: { late: (t) => (t >= hm(0, 45, 30) ? 500 : undefined) } },
  // Three agents on one node: one running all along, one restarted at 0:58 in a new pod on a
  // ledger with totals, one new at 0:58 on an empty ledger; the last two scraped once in hour 0.
  { instance: 'pair-a:9477', node: 'n-pair', uuid: 'GPU-pa', start: { at: hm(-2, 0), seeded: false }, scrapes: scrapes(hm(-2, 0, 30), hm(1, 59, 30)), energy: (t) => 100 * (t - hm(-2, 0)) },
  { instance: 'pair-b:9477', node: 'n-pair', uuid: 'GPU-pb', start: { at: hm(0, 58), seeded: true }, scrapes: scrapes(hm(0, 59, 30), hm(1, 59, 30)), energy: (t) => SEED + 100 * (t - hm(0, 58)) },
  { instance: 'pair-c:9477', node: 'n-pair', uuid: 'GPU-pc', start: { at: hm(0, 58), seeded: false }, scrapes: scrapes(hm(0, 59, 30), hm(1, 59, 30)), energy: (t) => 100 * (t - hm(0, 58)) },
  // An agent of an older version (no counters-start gauge), new at 0:30 with several scrapes in
  // hour 0: the inference it falls back to still counts its first values.
  { instance: 'older:9477', node: 'n-older', uuid: 'GPU-older', scrapes: scrapes(hm(0, 30, 30), hm(1, 59, 30)), energy: (t) => 100 * (t - hm(0, 30)), tokens: { m: () => 500 } },
];


const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('Prometheus path on a real Prometheus, scrapes backfilled: whose first values are new', { timeout: 120_000 }, () => {
  let dir = '';
  let prometheus: ChildProcess | undefined;
  let rollups: PrometheusRollups;

  before(async () => {
    const promtool = requirePrometheusBinary(PROMTOOL);
    const server = requirePrometheusBinary(PROMETHEUS);
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-backfill-'));
    const input = join(dir, 'scrapes.om');
    writeFileSync(input, openMetrics(AGENTS.flatMap(seriesOf)));
    execFileSync(promtool, ['tsdb', 'create-blocks-from', 'openmetrics', '--quiet', input, join(dir, 'tsdb')], { stdio: 'pipe', timeout: 60_000 });
    const config = join(dir, 'prometheus.yml');
    writeFileSync(config, 'global: {}\n');
    const port = await freePort();
    const log = openSync(join(dir, 'prometheus.log'), 'w');
    prometheus = spawn(server, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, '--storage.tsdb.retention.time=100y', `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
      stdio: ['ignore', log, log],
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
      if (ready) break;
      if (Date.now() > deadline || prometheus.exitCode !== null) throw new Error(`prometheus did not become ready (see ${join(dir, 'prometheus.log')})`);
      await sleep(250);
    }
    rollups = await readPrometheusRollups(PERIOD, { url, nodeLabel: 'node' });
  });

  after(async () => {
    if (prometheus && prometheus.exitCode === null && prometheus.signalCode === null) {
      const exited = new Promise<void>((resolve) => prometheus?.once('exit', () => resolve()));
      prometheus.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (prometheus.exitCode === null && prometheus.signalCode === null) prometheus.kill('SIGKILL');
    }
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  const energy = (uuid: string, hour: number): number | undefined => rollups.energy.find((e) => e.gpuUuid === uuid && e.hourStartMs === (T0 + hour * H) * 1000)?.measuredJ;
  const tokens = (node: string, model: string, hour: number): number | undefined =>
    rollups.tokenCounts.find((r) => r.node === node && r.model === model && r.hourStartMs === (T0 + hour * H) * 1000)?.completionTokens;
  const near = (actual: number | undefined, expected: number, what: string): void => {
    assert.ok(actual !== undefined && Math.abs(actual - expected) <= 1e-9 * expected, `${what}: ${actual} (expected ${expected})`);
  };

  it('counts a new agent\'s lone first scrape in its hour: what it counted before that scrape is not lost', () => {
    near(energy('GPU-fresh', 0), 3000, 'hour 0: 30 s at 100 W before the first scrape');
    near(tokens('n-fresh', 'm', 0), 30, 'hour 0 tokens');
    // With the next hour's increase (extrapolated to its end), all the agent counted by its last scrape.
    near((energy('GPU-fresh', 0) ?? 0) + (energy('GPU-fresh', 1) ?? 0), 100 * (hm(1, 59, 30) - hm(0, 59)), 'both hours');
    near(energy('GPU-pc', 0), 9000, 'a new agent beside others on its node');
  });

  it('never counts what a restarted agent seeded from its ledger, but counts a series it started from 0', () => {
    const seeded = energy('GPU-seeded', 0) ?? 0;
    assert.ok(seeded > 100 * 39 * 60 && seeded < 100 * 41 * 60, `hour 0: the 40 minutes counted since the restart, not the seed: ${seeded} J`);
    assert.ok((tokens('n-seeded', 'old', 0) ?? 0) < 3000, `seeded tokens: ${tokens('n-seeded', 'old', 0)}`);
    near(tokens('n-seeded', 'new', 0), 500, 'a model first served after the restart, one request');
    // A seeded agent whose lone first scrape falls in the hour, beside an agent scraped all along on the same node.
    assert.equal(energy('GPU-pb', 0) ?? 0, 0, 'its seed is not new, whatever the other agents on its node');
    near(energy('GPU-pa', 0), 360_000, 'the agent running all along');
  });

  it('does not count again what a series held when it comes back after over an hour unscraped', () => {
    const back = energy('GPU-outage', 0) ?? 0;
    assert.ok(back > 100 * 29 * 60 && back < 100 * 31 * 60, `hour 0: the increase since 0:30:30, not the ${100 * (hm(0, 30, 30) - hm(-2, 0))} J counted since the start: ${back}`);
    near(tokens('n-outage', 'late', 0), 500, 'a series that appeared after the agent came back');
  });

  it('falls back to the inference for agents without the counters-start gauge, and says which they are', () => {
    const older = energy('GPU-older', 0) ?? 0;
    assert.ok(older >= 100 * 30 * 60 && older < 100 * 31 * 60, `hour 0 of an older agent, from its start: ${older}`);
    near(tokens('n-older', 'm', 0), 500, 'its first value, inferred new');
    assert.ok(rollups.notes.some((n) => /^1 agent\(s\) export no tokenwatt_counters_start_timestamp_seconds \(older tokenwatt: older:9477\)/.test(n)), rollups.notes.join('\n'));
  });
});
