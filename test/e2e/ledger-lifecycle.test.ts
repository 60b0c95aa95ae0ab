import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, runCli, startAgent } from './agent-process.js';

function tempDb(t: { after: (f: () => void) => void }, prefix: string): { dir: string; db: string } {
  const dir = mkdtempSync(join(os.tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, db: join(dir, 'agent.db') };
}

function query<T>(db: string, text: string): T {
  const file = new Database(db, { readonly: true });
  try {
    return file.prepare(text).get() as T;
  } finally {
    file.close();
  }
}

test('a second agent on the same ledger file is refused at startup, naming the file and the first agent; once that one stops, it starts', { timeout: 90_000 }, async (t) => {
  const { db } = tempDb(t, 'tokenwatt-two-agents-');
  const args = ['run', '--power', 'simulated', '--db', db, '--settle-lateness', '2', '--settle-period', '1'];
  const first = await startAgent(args);
  t.after(() => first.stop());
  const second = await runCli([...args, '--port', '0', '--host', '127.0.0.1'], {}, 20_000);
  assert.equal(second.code, 1, second.stderr.slice(-2000));
  assert.match(second.stderr, new RegExp(`tokenwatt: cannot open the ledger ${db.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: another tokenwatt agent writes to it \\(pid ${first.child.pid} on host ${os.hostname()}`));
  assert.equal((await first.get('/readyz')).status === 503 ? 'unready' : 'ok', 'ok', 'the first agent is unaffected');
  assert.equal(await first.stop(), 0, `first agent exit: ${first.stderr().slice(-1500)}`);

  const third = await startAgent(args);
  t.after(() => third.stop());
  assert.doesNotMatch(third.stderr(), /took over/, 'a clean stop released the lease');
  // Stopped at once: the signal handlers go in before start-up (agent/run-agent.ts); the fixed 1 s
  // wait here was for handlers once installed after the "running" line.
  assert.equal(await third.stop(), 0, `third agent exit: ${third.stderr().slice(-1500)}`);
});

test('records rejected just before a stop are in the ledger\'s data quality after it', { timeout: 60_000 }, async (t) => {
  const { db } = tempDb(t, 'tokenwatt-rejected-');
  const agent = await startAgent(['run', '--power', 'simulated', '--db', db]);
  t.after(() => agent.stop());
  const reply = await agent.post('/v1/requests', JSON.stringify([{ request_id: 'bad', model: 'm' }, { request_id: 'bad2' }]), { 'content-type': 'application/json' });
  assert.equal(reply.status, 400);
  assert.equal(await agent.stop(), 0);
  // The default lateness (120 s) has not let anything settle: the counts are written at shutdown.
  assert.deepEqual(query(db, 'SELECT coalesce(sum(rejected_records), 0) AS rejected FROM hourly_quality'), { rejected: 2 });
});

test('host energy of the last lateness window before a restart is settled by the next run', { timeout: 90_000 }, async (t) => {
  const { dir, db } = tempDb(t, 'tokenwatt-host-restart-');
  const config = join(dir, 'host.json');
  writeFileSync(config, JSON.stringify({ hostPower: { overheadW: 100 } }));
  const args = ['run', '--power', 'simulated', '--db', db, '--settle-lateness', '4', '--settle-period', '1', '--config', config];
  for (let run = 0; run < 2; run += 1) {
    const agent = await startAgent(args);
    t.after(() => agent.stop());
    // Each run settles 4 s past its first sample (which takes about 8 s, the fixed wait this was),
    // then stops with the lateness window unsettled: a fixed 8 s from the start could leave a slow
    // machine's runs, started late, with under 8 s settled in all.
    await firstSample(agent);
    const sampledBy = Date.now();
    await eventually('4 s settled past the first sample', 30_000, async () =>
      (sumOf(await agent.metrics(), 'tokenwatt_settled_until_timestamp_seconds') * 1000 >= sampledBy + 4000 ? true : undefined));
    assert.equal(await agent.stop(), 0);
  }
  // Settled time in which the agent ran (GPU 0 sampled it), against the host energy of the same periods.
  const { coveredS } = query<{ coveredS: number }>(db, `SELECT sum(covered_ms) / 1000.0 AS coveredS FROM periods
    WHERE gpu_index = 0 AND samples > 0`);
  const { hostJ } = query<{ hostJ: number }>(db, 'SELECT coalesce(sum(host_j), 0) AS hostJ FROM hourly_host');
  assert.ok(coveredS > 8, `settled ${coveredS} s`);
  // Without the stored readings, the first run's last 4 s (about 400 J) were missing.
  assert.ok(Math.abs(hostJ - 100 * coveredS) < 150, `host energy ${hostJ.toFixed(0)} J for ${coveredS.toFixed(1)} s at 100 W`);
});
