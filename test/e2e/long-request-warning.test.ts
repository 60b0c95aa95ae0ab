import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent } from './agent-process.js';

const WARNING = /requests longer than --settle-lateness/;

test('a request longer than the lateness window is warned about with its fix; an interval record as long is not', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '5', '--settle-period', '1', '--log-level', 'info']);
  t.after(() => void agent.stop());
  const now = Date.now();
  // Both longer than the 5 s lateness, and of different lengths, so the warning says which one it
  // is about (it is given at most once a minute). An engine-metrics interval record first: 30 s.
  const record = (id: string, granularity: 'request' | 'interval', seconds: number) =>
    JSON.stringify({ request_id: id, model: 'm', tier: 'small', gpus: [0], start: now - 100 - seconds * 1000, end: now - 100, prompt_tokens: 10, cached_tokens: 0, completion_tokens: 5, granularity });
  const interval = await agent.post('/v1/requests', record('interval-1', 'interval', 30));
  assert.equal(interval.status, 202, interval.body);
  assert.match(interval.body, /"accepted":1/);
  const request = await agent.post('/v1/requests', record('request-1', 'request', 20));
  assert.equal(request.status, 202, request.body);
  const line = await eventually('the long-request warning', 10_000, async () => agent.stderr().split('\n').find((l) => WARNING.test(l)));
  const warning = JSON.parse(line) as { requests: number; longestS: number; settleLatenessS: number };
  assert.deepEqual({ requests: warning.requests, longestS: warning.longestS, settleLatenessS: warning.settleLatenessS }, { requests: 1, longestS: 20, settleLatenessS: 5 });
  assert.equal(agent.stderr().split('\n').filter((l) => WARNING.test(l)).length, 1);
});

test('a commit of 160,000 long requests is counted as accepted and warned about (no spread of them into one call)', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '30', '--settle-period', '1', '--body-limit-bytes', '33554432', '--log-level', 'info']);
  t.after(() => void agent.stop());
  // Started just now, after the agent's first sample, and running on past the lateness: long, yet
  // in time (not late) unless the commit comes more than the lateness (30 s) later.
  await firstSample(agent);
  const now = Date.now();
  const n = 160_000;
  const lines = Array.from({ length: n }, (_, i) =>
    `{"request_id":"long-${i}","model":"m","tier":"small","gpus":[0],"start":${now},"end":${now + 60_000 + (i % 1000)},"prompt_tokens":1,"completion_tokens":1}`);
  const reply = await agent.post('/v1/requests', lines.join('\n'));
  assert.equal(reply.status, 202, reply.body.slice(0, 500));
  assert.deepEqual(JSON.parse(reply.body), { accepted: n, duplicates: 0, late: 0, rejected: 0 });
  assert.equal(sumOf(await agent.metrics(), 'tokenwatt_records_total', { result: 'accepted' }), n);
  const line = await eventually('the long-request warning', 10_000, async () => agent.stderr().split('\n').find((l) => WARNING.test(l)));
  const warning = JSON.parse(line) as { requests: number; longestS: number };
  assert.deepEqual({ requests: warning.requests, longestS: warning.longestS }, { requests: n, longestS: 61 });
  assert.doesNotMatch(agent.stderr(), /ingest callback failed/);
});
