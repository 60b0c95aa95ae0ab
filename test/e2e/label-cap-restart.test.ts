import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { OTHER_LABEL_VALUE } from '../../exporters/prometheus/index.js';
import { sumOf, type Family } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent, type AgentProcess } from './agent-process.js';

const requests = (families: Map<string, Family>, labels: Record<string, string>): number => sumOf(families, 'tokenwatt_requests_total', labels);

test('past --labels-cap, a restart keeps the model and tier values the stopped agent had admitted', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const args = ['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--labels-cap', '2', '--settle-lateness', '2', '--settle-period', '1'];
  let n = 0;
  const post = async (agent: AgentProcess, model: string, tier: string, count: number): Promise<void> => {
    // Starting now, after the agent's first sample: a record from before it is late and left out of the usage series.
    await firstSample(agent);
    const now = Date.now();
    const lines = Array.from({ length: count }, () =>
      JSON.stringify({ request_id: `r-${(n += 1)}`, model, tier, gpus: [0], start: now, end: now + 200, prompt_tokens: 10, completion_tokens: 5 }));
    const reply = await agent.post('/v1/requests', lines.join('\n'));
    assert.equal(reply.status, 202, reply.body);
  };
  const settled = (agent: AgentProcess, what: string, check: (f: Map<string, Family>) => boolean) =>
    eventually(what, 20_000, async () => {
      const families = await agent.metrics();
      return check(families) ? families : undefined;
    });

  // Run 1: zz1 and zz2 take the two slots (in that order, one settlement after the other); aa3 folds into OTHER_LABEL_VALUE.
  const one = await startAgent(args);
  t.after(() => void one.stop());
  await post(one, 'zz1', 'tier-z1', 3);
  await settled(one, 'zz1 settled', (f) => requests(f, { model: 'zz1' }) === 3);
  await post(one, 'zz2', 'tier-z2', 3);
  await settled(one, 'zz2 settled', (f) => requests(f, { model: 'zz2' }) === 3);
  await post(one, 'aa3', 'tier-a3', 3);
  const before = await settled(one, 'aa3 settled', (f) => requests(f, { model: OTHER_LABEL_VALUE }) === 3);
  assert.deepEqual([requests(before, { model: 'aa3' }), requests(before, { tier: OTHER_LABEL_VALUE }), requests(before, { tier: 'tier-z2' })], [0, 3, 3]);
  assert.equal(await one.stop(), 0);

  // Run 2: the same names, the same fold (aa3 sorts first in the ledger, and must not take zz2's slot).
  const two = await startAgent(args);
  t.after(() => void two.stop());
  const after = await two.metrics();
  for (const [labels, value] of [[{ model: 'zz1' }, 3], [{ model: 'zz2' }, 3], [{ model: OTHER_LABEL_VALUE }, 3], [{ model: 'aa3' }, 0], [{ tier: 'tier-z2' }, 3], [{ tier: OTHER_LABEL_VALUE }, 3], [{ tier: 'tier-a3' }, 0]] as const) {
    assert.equal(requests(after, labels), value, `after the restart, requests_total${JSON.stringify(labels)}`);
  }
  // New records go where they went before the restart.
  await post(two, 'zz2', 'tier-z2', 1);
  await post(two, 'aa3', 'tier-a3', 1);
  const later = await settled(two, 'the new records settled', (f) => requests(f, {}) === 11);
  assert.deepEqual([requests(later, { model: 'zz2' }), requests(later, { model: OTHER_LABEL_VALUE }), requests(later, { model: 'aa3' })], [4, 4, 0]);
});
