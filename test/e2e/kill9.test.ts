import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent } from './agent-process.js';

function records(prefix: string, n: number, endMs: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i += 1) {
    const end = endMs - (i % 50) * 20;
    lines.push(JSON.stringify({
      request_id: `${prefix}-${i}`, task_id: `${prefix}-task-${i % 40}`, model: 'meta-llama/Llama-3.1-8B-Instruct', gpus: [i % 8],
      start: end - 1500, first_token: end - 1200, end, prompt_tokens: 900, cached_tokens: (i % 3) * 300, completion_tokens: 64 + (i % 7),
      status: i % 17 === 0 ? 'error' : 'ok',
    }));
  }
  return lines.join('\n');
}

test('kill -9 loses no acknowledged record; the restarted agent resumes settling and counts nothing twice', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-kill9-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'agent.db');
  // Records end up to 1.2 s before they are built: with a 2 s lateness, a post that a slow machine
  // took 0.8 s to take in could find their periods settled (wholly late: no energy). 5 s leaves 3.8 s.
  const args = ['run', '--power', 'simulated', '--db', db, '--settle-lateness', '5', '--settle-period', '1'];

  const first = await startAgent(args);
  // Killed even when an assertion fails first: left running, it held the test file open for ever.
  t.after(() => first.kill9());
  // Records must lie in time the agent measured: a request that ended before the agent's first
  // sample gets no energy (and is flagged estimated), which is right but not what this test is about.
  // They end at most 1.2 s before they are built, so the first sample must be 1.5 s old by then (a
  // fixed 3 s from the start was not enough where the first sample came late).
  await firstSample(first);
  await new Promise((r) => setTimeout(r, 1500));
  let acknowledged = 0;
  const bodies: string[] = [];
  const post = async (batch: number): Promise<void> => {
    bodies[batch] = records(`b${batch}`, 100, Date.now() - 200);
    const reply = await first.post('/v1/requests', bodies[batch]);
    assert.equal(reply.status, 202, reply.body);
    acknowledged += JSON.parse(reply.body).accepted as number;
  };
  for (let batch = 0; batch < 3; batch += 1) await post(batch);
  // Let these settle, then post more and kill at once: the kill lands between settled and unsettled work.
  const before = await eventually('the first batches settled', 30_000, async () => {
    const m = await first.metrics();
    return sumOf(m, 'tokenwatt_requests_total') >= 300 ? m : undefined;
  });
  for (let batch = 3; batch < 6; batch += 1) await post(batch);
  assert.equal(acknowledged, 600);
  const settledBefore = sumOf(before, 'tokenwatt_settled_until_timestamp_seconds');
  const requestsBefore = sumOf(before, 'tokenwatt_requests_total');
  await first.kill9();

  // Every acknowledged record is in the file.
  const file = new Database(db, { readonly: true });
  const stored = (file.prepare('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
  file.close();
  assert.equal(stored, acknowledged, 'no acknowledged record lost');

  const second = await startAgent(args);
  t.after(() => second.stop());
  // A client retrying after the crash (the same body) is acknowledged, not double-counted.
  const retry = await second.post('/v1/requests', bodies[0] ?? '');
  assert.deepEqual(JSON.parse(retry.body), { accepted: 0, duplicates: 100, late: 0, rejected: 0 });

  const after = await eventually('all 600 requests settled after the restart', 60_000, async () => {
    const m = await second.metrics();
    return sumOf(m, 'tokenwatt_requests_total') >= 600 ? m : undefined;
  });
  assert.equal(sumOf(after, 'tokenwatt_requests_total'), 600, 'each request counted exactly once across the crash (counters seeded from the ledger)');
  assert.ok(sumOf(after, 'tokenwatt_requests_total') >= requestsBefore, 'counters did not go backwards');
  assert.ok(sumOf(after, 'tokenwatt_settled_until_timestamp_seconds') >= settledBefore, `settlement resumed, not restarted (${sumOf(after, 'tokenwatt_settled_until_timestamp_seconds')} vs ${settledBefore})`);

  const check = new Database(db, { readonly: true });
  const rows = check.prepare('SELECT count(*) AS n, sum(finalized) AS f, sum(joules > 0) AS energised FROM requests').get() as { n: number; f: number; energised: number };
  check.close();
  assert.equal(rows.n, 600);
  assert.equal(rows.f, 600, 'every request finalized once');
  assert.equal(rows.energised, 600, 'every request received energy');
});
