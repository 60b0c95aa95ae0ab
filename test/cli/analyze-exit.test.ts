import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

/** `tokenwatt analyze` exit status as its help states it: 0 analysed; 1 bad input; 2 invalid configuration or option value. */
describe('tokenwatt analyze exit status', { timeout: 120_000 }, () => {
  let dir = '';
  let power = '';
  let requests = '';
  const analyze = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'agent/cli.ts', 'analyze', '--power', power, '--requests', requests, ...args], { encoding: 'utf8', timeout: 60_000 });

  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-analyze-exit-'));
    power = join(dir, 'power.csv');
    requests = join(dir, 'req.ndjson');
    const t0 = Date.UTC(2026, 6, 1);
    const rows = ['timestamp_ms,gpu,power_w,energy_j'];
    for (let i = 0; i <= 20; i += 1) rows.push(`${t0 + i * 1000},0,${i > 2 && i < 15 ? 400 : 80},`);
    writeFileSync(power, `${rows.join('\n')}\n`);
    writeFileSync(requests, `${JSON.stringify({ request_id: 'r1', model: 'm', gpus: [0], start: t0 + 3000, end: t0 + 14_000, prompt_tokens: 100, completion_tokens: 50 })}\n`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('analyses good input with exit 0', () => {
    const ok = analyze('--period', '10', '--nvidia-smi-utc-offset', '-300');
    assert.equal(ok.status, 0, ok.stderr);
  });

  it('a bad option value is a usage error: exit 2, named by commander', () => {
    for (const [flag, value] of [['--period', 'abc'], ['--period', '1.5'], ['--nvidia-smi-utc-offset', 'x']] as const) {
      const run = analyze(flag, value);
      assert.equal(run.status, 2, `${flag} ${value}: ${run.stderr}`);
      assert.match(run.stderr, new RegExp(`option '${flag} <\\w+>' argument '${value}' is invalid`), run.stderr);
    }
  });

  it('a configuration that names a GPU the trace lacks is a configuration error: exit 2', () => {
    const config = join(dir, 'a1.yaml');
    writeFileSync(config, 'attribution: { idleBaselineW: { "5": 60 } }\n');
    const run = analyze('--config', config);
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /invalid configuration: attribution\.idleBaselineW: no GPU 5 in the trace/);
  });
});
