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
  // A 5 s lateness: records starting "now" stay in time unless the post takes 5 s to be taken in
  // (with 2 s, a slow machine's pause made them late: left out of the usage series, the waits below timed out).
  const args = ['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--labels-cap', '2', '--settle-lateness', '5', '--settle-period', '1'];
  let n = 0;
  /** Posts `count` records of each group, group k starting 1.5 s after group k - 1: each group ends in a later 1 s period. */
  const post = async (agent: AgentProcess, groups: readonly (readonly [model: string, tier: string, count: number])[]): Promise<void> => {
    // Starting now, after the agent's first sample: a record from before it is late and left out of the usage series.
    await firstSample(agent);
    const now = Date.now();
    const lines = groups.flatMap(([model, tier, count], k) => Array.from({ length: count }, () =>
      JSON.stringify({ request_id: `r-${(n += 1)}`, model, tier, gpus: [0], start: now + 1500 * k, end: now + 1500 * k + 200, prompt_tokens: 10, completion_tokens: 5 })));
    const reply = await agent.post('/v1/requests', lines.join('\n'));
    assert.equal(reply.status, 202, reply.body);
    assert.deepEqual(JSON.parse(reply.body), { accepted: lines.length, duplicates: 0, late: 0, rejected: 0 });
  };
  const settled = (agent: AgentProcess, what: string, check: (f: Map<string, Family>) => boolean) =>
    eventually(what, 20_000, async () => {
      const families = await agent.metrics();
      return check(families) ? families : undefined;
    });

  // Run 1: zz1 and zz2 take the two slots (in that order, one settlement after the other); aa3 folds into OTHER_LABEL_VALUE.
  // The three end in three successive periods, which the agent settles one at a time (each its own
  // commit, in time order, even when it catches up): posted at once, they are admitted in that
  // order with one wait for the lateness instead of three.
  const one = await startAgent(args);
  t.after(() => void one.stop());
  await post(one, [['zz1', 'tier-z1', 3], ['zz2', 'tier-z2', 3], ['aa3', 'tier-a3', 3]]);
  const before = await settled(one, 'the three groups settled', (f) => requests(f, {}) === 9);
  assert.deepEqual([requests(before, { model: 'zz1' }), requests(before, { model: 'zz2' }), requests(before, { model: 'aa3' }), requests(before, { tier: OTHER_LABEL_VALUE }), requests(before, { tier: 'tier-z2' })], [3, 3, 0, 3, 3]);
  assert.equal(await one.stop(), 0);

  // Run 2: the same names, the same fold (aa3 sorts first in the ledger, and must not take zz2's slot).
  const two = await startAgent(args);
  t.after(() => void two.stop());
  const after = await two.metrics();
  for (const [labels, value] of [[{ model: 'zz1' }, 3], [{ model: 'zz2' }, 3], [{ model: OTHER_LABEL_VALUE }, 3], [{ model: 'aa3' }, 0], [{ tier: 'tier-z2' }, 3], [{ tier: OTHER_LABEL_VALUE }, 3], [{ tier: 'tier-a3' }, 0]] as const) {
    assert.equal(requests(after, labels), value, `after the restart, requests_total${JSON.stringify(labels)}`);
  }
  // New records go where they went before the restart.
  await post(two, [['zz2', 'tier-z2', 1], ['aa3', 'tier-a3', 1]]);
  const later = await settled(two, 'the new records settled', (f) => requests(f, {}) === 11);
  assert.deepEqual([requests(later, { model: 'zz2' }), requests(later, { model: OTHER_LABEL_VALUE }), requests(later, { model: 'aa3' })], [4, 4, 0]);
});
