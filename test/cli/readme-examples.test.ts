/**
 * README.md's and deploy/README.md's shell examples, run as written (only the address and the
 * `tokenwatt` command are adapted): the ingest examples against a live agent, the ESG export
 * example against a ledger holding the quarter it names.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quarterPeriod } from '../../exporters/esg/report-period.js';
import { writeLedger } from '../esg/ledger-fixture.js';
import { makeRollups } from '../esg/rollup-fixtures.js';

const PORT = 19521;
const REPO = process.cwd();
const hasCurl = spawnSync('curl', ['--version']).status === 0;

function shellBlocks(file: string): string[] {
  return [...readFileSync(join(REPO, file), 'utf8').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
}

function blockWith(file: string, text: string): string {
  const block = shellBlocks(file).find((b) => b.includes(text));
  assert.ok(block !== undefined, `${file}: no shell example with ${text}`);
  return block;
}

describe('README examples, run as written', { timeout: 120_000 }, () => {
  let dir = '';
  let agent: ChildProcess | undefined;
  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-readme-'));
    if (!hasCurl) return;
    agent = spawn(process.execPath, ['--import', 'tsx', 'agent/cli.ts', 'run', '--power', 'simulated', '--port', String(PORT), '--host', '127.0.0.1', '--db', join(dir, 'agent.db'), '--log-level', 'info'], {
      env: { ...process.env, TOKENWATT_CONFIG: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent did not start:\n${err}`)), 60_000);
      agent?.stderr?.on('data', (c: Buffer) => {
        err += c.toString();
        if (err.includes('tokenwatt agent running')) {
          clearTimeout(timer);
          resolve();
        }
      });
      agent?.on('exit', (code) => reject(new Error(`agent exited with ${code}:\n${err}`)));
    });
    // The examples date their records a few seconds back; a record from before the agent's first
    // sample is late by design, so give the fresh agent that much history first.
    await new Promise((resolve) => setTimeout(resolve, 4000));
  });
  after(async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((resolve) => agent?.on('exit', resolve));
      agent.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [file, address] of [
    ['README.md', 'localhost:9477'],
    ['deploy/README.md', 'http://tokenwatt-ingest.tokenwatt.svc:9477'],
  ] as const) {
    it(`${file}: the ingest example gets 202`, { skip: hasCurl ? false : 'no curl here' }, () => {
      const block = blockWith(file, `${address}/v1/requests`);
      const script = block.replace(address, `http://127.0.0.1:${PORT}`).replace(/\bcurl -s /, "curl -s -w '\\n%{http_code}' ");
      const run = spawnSync('sh', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(run.status, 0, run.stderr);
      const [body, status] = run.stdout.trim().split('\n');
      assert.equal(status, '202', body);
      assert.match(body ?? '', /"accepted":1,.*"late":0/, 'accepted as live, not late');
    });
  }

  it('README.md: the ESG export example writes the JSON, then the HTML, then verifies the JSON', () => {
    const block = blockWith('README.md', 'export --config');
    const lines = block.split('\n').filter((l) => !/--merge|--prometheus/.test(l));
    const quarter = /--quarter (\d{4}-Q[1-4])/.exec(block)?.[1];
    assert.ok(quarter !== undefined);
    const period = quarterPeriod(quarter);
    const db = writeLedger(join(dir, 'export.db'), 'node-a', makeRollups({ fromMs: period.fromMs, hours: 30, seed: 2 }));
    const script = [`tokenwatt() { "${process.execPath}" --import "${import.meta.resolve('tsx')}" "${join(REPO, 'agent/cli.ts')}" "$@"; }`, 'set -e', ...lines].join('\n');
    const run = spawnSync('bash', ['-c', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, TOKENWATT_DB: db, TOKENWATT_CONFIG: '' }, timeout: 90_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /verified/);
    for (const name of /--out (\S+)/g[Symbol.matchAll](block)) if (!/fleet/.test(name[1] ?? '')) assert.ok(existsSync(join(dir, name[1] ?? '')), name[1]);
  });
});
