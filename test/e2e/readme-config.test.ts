import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../agent/config.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import type { AnalyzeReport } from '../../model/analysis.js';
import { writeLedger } from '../esg/ledger-fixture.js';
import { makeRollups } from '../esg/rollup-fixtures.js';
import { runCli } from './agent-process.js';

/** README › Configuration's example file, as written there. */
function readmeConfig(): string {
  const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(yaml !== undefined, 'README has a Configuration section with a YAML example');
  return yaml;
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-readme-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('README\'s config example (a proxy section whose upstream comes from --upstream): run needs the flags; doctor, analyze and export take the file as it is', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const yaml = readmeConfig();
  assert.match(yaml, /^proxy: \{ replica: \{ gpus: \[0\] \} \}/m, 'the example still has a proxy section without an upstream');
  const config = join(dir, 'config.yaml');
  writeFileSync(config, yaml);

  // run: the section's upstream and port come from the flags (or the environment) its comment names.
  const bare = loadConfig({ configFile: config, env: {}, flags: {} });
  assert.ok(!bare.ok);
  assert.match(bare.errors.join('\n'), /^proxy: the section needs an upstream/m);
  assert.ok(loadConfig({ configFile: config, env: {}, flags: { proxyPort: '9478', upstream: 'http://127.0.0.1:8000' } }).ok);
  assert.ok(loadConfig({ configFile: config, env: { TOKENWATT_PROXY_PORT: '9478', TOKENWATT_UPSTREAM: 'http://127.0.0.1:8000' }, flags: {} }).ok);

  // doctor (no measured source here: exit 1, the report printed; before the fix exit 2, "invalid configuration").
  const missing = join(dir, 'missing');
  const doctor = await runCli(['doctor', '--config', config, '--probe-ms', '100', '--nvml-library', missing, '--nvidia-smi', missing, '--powercap-root', missing, '--json']);
  assert.doesNotMatch(doctor.stderr, /invalid configuration/);
  assert.equal(doctor.code, 1, doctor.stderr);
  assert.equal((JSON.parse(doctor.stdout) as { nvml: { available: boolean } }).nvml.available, false);

  // analyze: the file's replicas and tiers apply (a record without gpus goes to GPU 0, tier small).
  const t0 = Date.UTC(2026, 10, 3, 12);
  const trace = join(dir, 'trace.csv');
  writeFileSync(trace, ['timestamp_ms,gpu,power_w,energy_j', ...Array.from({ length: 11 }, (_, k) => `${t0 + k * 1000},0,300,${300 * k}`)].join('\n') + '\n');
  const requests = join(dir, 'requests.ndjson');
  writeFileSync(requests, `${JSON.stringify({ request_id: 'r1', model: 'meta-llama/Llama-3.1-8B-Instruct', start: t0 + 2000, end: t0 + 8000, prompt_tokens: 100, completion_tokens: 50 })}\n`);
  const analyze = await runCli(['analyze', '--power', trace, '--requests', requests, '--config', config, '--json']);
  assert.equal(analyze.code, 0, analyze.stderr);
  const report = JSON.parse(analyze.stdout) as AnalyzeReport;
  const small = report.groups.find((g) => g.by === 'tier' && g.key === 'small');
  assert.ok(small !== undefined && small.joules > 0, JSON.stringify(report.groups));

  // export: the file's carbon section.
  const from = Date.UTC(2026, 6, 1);
  const db = writeLedger(join(dir, 'ledger.db'), 'gpu-node-17', makeRollups({ fromMs: from, hours: 24, gpus: 1, seed: 5, node: 'gpu-node-17' }));
  const out = join(dir, 'q3.json');
  const exported = await runCli(['export', '--config', config, '--db', db, '--quarter', '2026-Q3', '--out', out]);
  assert.equal(exported.code, 0, exported.stderr);
  const esg = JSON.parse(readFileSync(out, 'utf8')) as EsgReport;
  assert.equal(esg.totals.pue, 1.3);
});

test('a chart-like config (proxy section; upstream and port from TOKENWATT_UPSTREAM / TOKENWATT_PROXY_PORT): doctor runs on it', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const config = join(dir, 'config.yaml');
  writeFileSync(config, 'power: simulated\nproxy: { replica: { gpus: [0] } }\n');
  const missing = join(dir, 'missing');
  const doctor = await runCli(['doctor', '--config', config, '--probe-ms', '100', '--nvml-library', missing, '--nvidia-smi', missing, '--powercap-root', missing],
    { TOKENWATT_UPSTREAM: 'http://127.0.0.1:8000', TOKENWATT_PROXY_PORT: '9478' });
  assert.doesNotMatch(doctor.stderr, /invalid configuration/);
  assert.equal(doctor.code, 1, doctor.stderr);
  assert.match(doctor.stdout, /exit status 1/);
});
