import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeLedger } from './ledger-fixture.js';
import { makeRollups } from './rollup-fixtures.js';

/** The real command line: `tokenwatt export` through agent/cli.ts, exit codes and messages included. */
describe('tokenwatt export on the command line', { timeout: 120_000 }, () => {
  let dir = '';
  let db = '';
  let config = '';
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'agent/cli.ts', 'export', ...args], { cwd: process.cwd(), encoding: 'utf8', env: { ...process.env, TOKENWATT_DB: db }, timeout: 60_000 });

  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-cli-'));
    db = writeLedger(join(dir, 'l.db'), 'node-a', makeRollups({ fromMs: Date.UTC(2026, 6, 1), hours: 30, seed: 4 }));
    config = join(dir, 'c.yaml');
    writeFileSync(config, 'carbon:\n  region: egrid:CAMX\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a report (ledger from TOKENWATT_DB) and verifies it with exit code 0', () => {
    const out = join(dir, 'q3.json');
    const written = cli('--quarter', '2026-Q3', '--config', config, '--out', out);
    assert.equal(written.status, 0, written.stderr);
    assert.match(written.stderr, /wrote .*q3\.json \(json/);
    const verified = cli('--verify', out, '--config', config);
    assert.equal(verified.status, 0, verified.stderr);
    assert.match(verified.stdout, /verified/);
  });

  it('exits 1 for bad data, 2 for a bad option value or configuration, with a clear message, writing nothing (as --help says)', () => {
    writeFileSync(join(dir, 'pue.yaml'), 'carbon:\n  region: FR\n  pue: 0.9\n');
    const out = join(dir, 'bad.json');
    const bad = cli('--quarter', '2026-Q3', '--config', join(dir, 'pue.yaml'), '--out', out);
    assert.equal(bad.status, 2, 'invalid configuration');
    assert.match(bad.stderr, /carbon\.pue: must be >= 1: PUE is facility energy \/ IT energy, so it cannot be below 1, got 0\.9$/m);
    assert.equal(existsSync(out), false);
    const noData = cli('--quarter', '2024-Q1', '--config', config);
    assert.equal(noData.status, 1, 'no data for the period');
    assert.match(noData.stderr, /no data between 2024-01-01/);
    const format = cli('--quarter', '2026-Q3', '--config', config, '--format', 'pdf');
    assert.equal(format.status, 2);
    assert.match(format.stderr, /--format <format>' argument 'pdf' is invalid/);
    for (const [args, message] of [
      [['--quarter', '2026-Q5'], /2026-Q5/],
      [['--quarter', '2026-Q3', '--from', '2026-07-01'], /use either --quarter or --from\/--to, not both/],
      [[], /say which period/],
      [['--quarter', '2026-Q3', '--prometheus', 'http://127.0.0.1:9', '--prometheus-header', 'no-colon'], /--prometheus-header: expected "Name: value"/],
    ] as const) {
      const r = cli(...args, '--config', config);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const help = cli('--help');
    assert.match(help.stdout, /Exit status: 0 written .*; 1 bad or missing data .*; 2 invalid configuration or option value\./s);
  });
});
