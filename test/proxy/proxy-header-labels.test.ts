/**
 * Record labels from request headers: every label the config maps to a header is carried, with
 * the checks a posted record's labels get; a value the ledger would refuse is left out with a
 * warning, and the call keeps its record.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { OTHER_LABEL_VALUE } from '../../exporters/prometheus/index.js';
import { startHarness } from './proxy-harness.js';
import type { Harness } from './proxy-harness.js';
import { tryRequest } from './raw-http.js';

let h: Harness;
before(async () => {
  h = await startHarness({ headers: { labels: { project: 'x-project', cost_center: 'x-cost-center', feature: 'x-product' } } });
});
after(() => h.close());

const call = (headers: Record<string, string>) =>
  tryRequest(`${h.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'llama-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
  });

test('every configured header label is carried into the record; team keeps its default header, feature moves to its own', async () => {
  const res = await call({ 'x-task-id': 't-labels', 'x-team': 'search', 'x-feature': 'ignored', 'x-product': 'chat', 'x-project': 'apollo', 'x-cost-center': 'cc-7' });
  assert.equal(res.status, 200);
  const r = await h.sink.recordOfTask('t-labels');
  assert.deepEqual(r.labels, { team: 'search', feature: 'chat', project: 'apollo', cost_center: 'cc-7' });
});

test('a label value the ledger would refuse is left out with a warning naming the header, and counted on every call by field; the call keeps its record', async () => {
  const before = h.leftOut.length;
  const bad = { 'x-team': '(none)', 'x-project': 'p'.repeat(257), 'x-cost-center': 'cc-8', 'x-attempt': '0' };
  const res = await call({ 'x-task-id': 't-bad-labels', ...bad });
  assert.equal(res.status, 200);
  const r = await h.sink.recordOfTask('t-bad-labels');
  assert.deepEqual(r.labels, { cost_center: 'cc-8' });
  assert.equal(r.attempt, null);
  const warnings = h.log.messages('warn');
  assert.ok(warnings.some((m) => /header x-team ignored: "\(none\)" is reserved/.test(m)), warnings.join('\n'));
  assert.ok(warnings.some((m) => /header x-project ignored: longer than 256 characters/.test(m)), warnings.join('\n'));
  assert.deepEqual(h.leftOut.slice(before).sort(), ['attempt', 'project', 'team']);
  // The same headers again: the log has said it, the count goes on (per call, not per kind).
  const again = await call({ 'x-task-id': 't-bad-labels-2', ...bad });
  assert.equal(again.status, 200);
  await h.sink.recordOfTask('t-bad-labels-2');
  assert.equal(h.log.messages('warn').filter((m) => /header x-team ignored/.test(m)).length, 1);
  assert.deepEqual(h.leftOut.slice(before).sort(), ['attempt', 'attempt', 'project', 'project', 'team', 'team']);
  // Counted as values left out, not as capture errors (the upstream and the record are fine).
  assert.deepEqual(h.errors, []);
});

test('the label fold value is refused in any header label, not only team and feature', async () => {
  const res = await call({ 'x-task-id': 't-fold-label', 'x-project': OTHER_LABEL_VALUE, 'x-cost-center': 'cc-9' });
  assert.equal(res.status, 200);
  const r = await h.sink.recordOfTask('t-fold-label');
  assert.deepEqual(r.labels, { cost_center: 'cc-9' });
  const warnings = h.log.messages('warn');
  assert.ok(warnings.some((m) => m.includes(`header x-project ignored: ${JSON.stringify(OTHER_LABEL_VALUE)} is reserved`)), warnings.join('\n'));
});
