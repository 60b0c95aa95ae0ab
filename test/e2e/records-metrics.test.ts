import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { firstSample, startAgent } from './agent-process.js';

test('tokenwatt_records_total counts each record under one result: accepted (in time), late, duplicate', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '5', '--settle-period', '1']);
  t.after(() => void agent.stop());
  await firstSample(agent); // a record from before the first sample is late
  const now = Date.now();
  const record = (id: string, startMs: number) =>
    JSON.stringify({ request_id: id, model: 'm', tier: 'small', gpus: [0], start: startMs, end: startMs + 500, prompt_tokens: 10, completion_tokens: 5 });
  // One record from before the agent started (late: its time is settled or was never sampled), one from now.
  const body = [record('late-1', now - 60_000), record('in-time-1', now)].join('\n');
  const reply = await agent.post('/v1/requests', body);
  assert.equal(reply.status, 202, reply.body);
  assert.deepEqual(JSON.parse(reply.body), { accepted: 2, duplicates: 0, late: 1, rejected: 0 });
  assert.equal((await agent.post('/v1/requests', record('in-time-1', now))).status, 202); // a duplicate
  const families = await agent.metrics();
  const results = Object.fromEntries(['accepted', 'late', 'duplicate'].map((result) => [result, sumOf(families, 'tokenwatt_records_total', { result })]));
  assert.deepEqual(results, { accepted: 1, late: 1, duplicate: 1 });
  assert.equal(sumOf(families, 'tokenwatt_records_total'), 3, 'three records taken in');
  assert.match(families.get('tokenwatt_records_total')?.help ?? '', /each under one result: accepted \(stored in time\)/);
});
