import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { conflictReason, differingFacts } from '../../model/request-facts.js';
import type { RequestRecord } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import { request } from '../ledger/temp-ledger.js';

/** One change per fact, under the fact's wire name. */
const CHANGES: Record<string, (r: RequestRecord) => RequestRecord> = {
  task_id: (r) => ({ ...r, taskId: r.taskId === null ? 't' : null }),
  attempt: (r) => ({ ...r, attempt: (r.attempt ?? 0) + 1 }),
  model: (r) => ({ ...r, model: `${r.model}-x` }),
  tier: (r) => ({ ...r, tier: r.tier === 'large' ? 'small' : 'large' }),
  gpus: (r) => ({ ...r, gpus: [...(r.gpus ?? []), 'GPU-9'] }),
  start: (r) => ({ ...r, startMs: epochMs(r.startMs - 1) }),
  first_token: (r) => ({ ...r, firstTokenMs: r.firstTokenMs === null ? r.startMs : null }),
  end: (r) => ({ ...r, endMs: epochMs(r.endMs + 1) }),
  prompt_tokens: (r) => ({ ...r, promptTokens: r.promptTokens + 1 }),
  cached_tokens: (r) => ({ ...r, cachedTokens: r.cachedTokens + 1 }),
  completion_tokens: (r) => ({ ...r, completionTokens: r.completionTokens + 1 }),
  reasoning_tokens: (r) => ({ ...r, reasoningTokens: r.reasoningTokens + 1 }),
  batch_size: (r) => ({ ...r, batchSize: (r.batchSize ?? 0) + 1 }),
  status: (r) => ({ ...r, status: r.status === 'ok' ? 'error' : 'ok' }),
  labels: (r) => ({ ...r, labels: { ...r.labels, extra: 'x' } }),
  tokens_estimated: (r) => ({ ...r, tokensEstimated: !r.tokensEstimated }),
  granularity: (r) => ({ ...r, granularity: r.granularity === 'request' ? 'interval' : 'request' }),
};

test('property: each changed fact is named by its wire name, in a fixed order, and nothing else is', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000 }), fc.subarray(Object.keys(CHANGES), { minLength: 1 }), (i, changed) => {
      const kept = request(i);
      const repeat = changed.reduce((r, wire) => CHANGES[wire]!(r), kept as RequestRecord);
      assert.deepEqual(differingFacts(kept, repeat), Object.keys(CHANGES).filter((wire) => changed.includes(wire)));
    }),
  );
});

test('a restatement differs in nothing: label order, GPU order and the capture path are not facts', () => {
  const kept = request(3, { labels: { team: 'a', feature: 'b' }, source: 'http' });
  assert.deepEqual(differingFacts(kept, { ...kept, labels: { feature: 'b', team: 'a' }, source: 'proxy' }), []);
  assert.deepEqual(differingFacts(kept, { ...kept, labels: { team: 'a' } }), ['labels'], 'a label dropped is a difference');
  assert.deepEqual(differingFacts({ ...kept, gpus: null }, { ...kept, gpus: null }), []);
  const twoGpus = { ...kept, gpus: ['GPU-0', 'GPU-1'] };
  assert.deepEqual(differingFacts(twoGpus, { ...twoGpus, gpus: ['GPU-1', 'GPU-0'] }), []);
  assert.deepEqual(differingFacts(twoGpus, { ...twoGpus, gpus: ['GPU-1', 'GPU-2'] }), ['gpus']);
});

test('the refusal names where the kept record is and what differs', () => {
  assert.equal(
    conflictReason(['end', 'prompt_tokens'], 'line 4'),
    'already used by line 4 with a different end, prompt_tokens: that record is kept and this one is not stored (give each request its own id)',
  );
});
