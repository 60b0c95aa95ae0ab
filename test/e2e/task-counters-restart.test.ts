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
  const args = ['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '1', '--settle-period', '1'];

  const first = await startAgent(args);
  t.after(() => first.kill9());
  await firstSample(first);
  await new Promise((r) => setTimeout(r, 1500));
  const now = Date.now();
  const line = (id: string, task: string, attempt: number, status: string, endMs: number): string => JSON.stringify({
    request_id: id, task_id: task, attempt, model: 'm', tier: 'gold', gpus: [0], start: endMs - 1000, end: endMs, prompt_tokens: 10, completion_tokens: 5, status,
  });
  // k1: a failed attempt, then an ok retry (attempt waste); k2: a failed task (its energy is waste too).
  const body = [line('r1', 'k1', 1, 'error', now - 600), line('r2', 'k1', 2, 'ok', now), line('r3', 'k2', 1, 'error', now)].join('\n');
  const posted = await first.post('/v1/requests', body);
  assert.equal(posted.status, 202, posted.body);
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
  // Counted once: the restarted agent does not count the closed tasks again as it settles on.
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(series(await second.metrics(), 'tokenwatt_tasks_total'), series(before, 'tokenwatt_tasks_total'));
  assert.equal(await second.stop(), 0, second.stderr().slice(-1500));
});
