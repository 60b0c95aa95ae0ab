import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { series, sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent } from './agent-process.js';

/**
 * tokenwatt_tasks_total and tokenwatt_waste_energy_joules_total go on from the ledger after kill -9:
 * the settlement that closed a task committed its counts with it, and the restarted agent seeds the
 * counters from them (before, they started from 0: a counter reset in Prometheus).
 */


test('kill -9: tasks_total and waste_energy_joules_total go on from their values in the restarted agent', { timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-task-counters-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A 5 s lateness (the tasks still close after a minute): with 1 s, a post that a slow machine took
  // a second or two to take in found the records' periods settled, so they got no energy, and the
  // wait for waste energy timed out.
  const args = ['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '5', '--settle-period', '1'];

  const first = await startAgent(args);
  t.after(() => first.kill9());
  // The records start at "now" or after, taken after the first sample: in measured time (they
  // started 1.6 s back, after a fixed 1.5 s wait, which a late first sample could leave short).
  await firstSample(first);
  const now = Date.now();
  const line = (id: string, task: string, attempt: number, status: string, endMs: number): string => JSON.stringify({
    request_id: id, task_id: task, attempt, model: 'm', tier: 'gold', gpus: [0], start: endMs - 1000, end: endMs, prompt_tokens: 10, completion_tokens: 5, status,
  });
  // k1: a failed attempt, then an ok retry (attempt waste); k2: a failed task (its energy is waste too).
  const body = [line('r1', 'k1', 1, 'error', now + 1000), line('r2', 'k1', 2, 'ok', now + 1600), line('r3', 'k2', 1, 'error', now + 1600)].join('\n');
  const posted = await first.post('/v1/requests', body);
  assert.equal(posted.status, 202, posted.body);
  assert.deepEqual(JSON.parse(posted.body), { accepted: 3, duplicates: 0, late: 0, rejected: 0 });
  // A task closes after a minute without requests.
  const before = await eventually('both tasks closed, with waste', 120_000, async () => {
    const m = await first.metrics();
    return sumOf(m, 'tokenwatt_tasks_total') >= 2 && sumOf(m, 'tokenwatt_waste_energy_joules_total') > 0 ? m : undefined;
  });
  await first.kill9();

  const second = await startAgent(args);
  t.after(() => second.stop());
  const after = await second.metrics();
  for (const name of ['tokenwatt_tasks_total', 'tokenwatt_waste_energy_joules_total']) {
    const was = series(before, name);
    const now = series(after, name);
    assert.ok(was.size > 0, `${name} had series`);
    for (const [labels, value] of was) {
      assert.ok((now.get(labels) ?? 0) >= value, `${name}${labels}: ${now.get(labels) ?? 'absent'} after the restart, ${value} before (a counter reset)`);
    }
  }
  // Counted once: the restarted agent does not count the closed tasks again as it settles on, past
  // the periods the killed one left and a second of its own (a fixed 3 s wait could end before a
  // slow machine had settled anything).
  const restartedMs = Date.now();
  const settledOn = await eventually('the restarted agent settling past its start', 30_000, async () => {
    const m = await second.metrics();
    return sumOf(m, 'tokenwatt_settled_until_timestamp_seconds') * 1000 >= restartedMs + 1000 ? m : undefined;
  });
  assert.deepEqual(series(settledOn, 'tokenwatt_tasks_total'), series(before, 'tokenwatt_tasks_total'));
  assert.equal(await second.stop(), 0, second.stderr().slice(-1500));
});
