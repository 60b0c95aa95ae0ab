/**
 * OTLP spans carry the labels configured in otlp.attributes.labels, as posted records and the
 * proxy carry theirs: through the agent's own HTTP server into the ledger and /metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent } from './agent-process.js';

type Attr = { key: string; value: { stringValue: string } | { intValue: number } };
const str = (key: string, value: string): Attr => ({ key, value: { stringValue: value } });

/** One OTLP/JSON GenAI span of model m that ended at `endMs`. */
function genAiSpan(spanId: string, endMs: number, extra: Attr[]) {
  const ns = (ms: number) => `${BigInt(ms) * 1_000_000n}`;
  const attributes: Attr[] = [
    str('gen_ai.operation.name', 'chat'),
    str('gen_ai.request.model', 'm'),
    str('gen_ai.response.id', `call-${spanId}`),
    { key: 'gen_ai.usage.input_tokens', value: { intValue: 100 } },
    { key: 'gen_ai.usage.output_tokens', value: { intValue: 50 } },
    ...extra,
  ];
  return { traceId: '0123456789abcdef0123456789abcdef', spanId, name: 'chat m', kind: 3, startTimeUnixNano: ns(endMs - 500), endTimeUnixNano: ns(endMs), attributes };
}

test('OTLP spans carry every label of otlp.attributes.labels into the ledger and (in labels.user) /metrics; a bad value is left out, not the span', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-otlp-labels-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({
    labels: { user: ['team', 'feature', 'project'] },
    otlp: { replica: { gpus: [0] }, attributes: { labels: { project: ['tokenwatt.project', 'app.project'], cost_center: ['tokenwatt.cost_center'] } } },
  }));
  const db = join(dir, 'agent.db');
  // A 5 s lateness, and spans that start at "now" (taken after the first sample): with 1 s and
  // spans that started 0.5 s back, a post that a slow machine took a second to take in found their
  // periods settled (wholly late: not counted in requests_total), and the wait for both timed out.
  const agent = await startAgent(['run', '--config', file, '--power', 'simulated', '--db', db, '--settle-period', '1', '--settle-lateness', '5']);
  t.after(() => void agent.stop());
  await firstSample(agent);
  const end = Date.now() + 500;
  const body = JSON.stringify({
    resourceSpans: [{
      // The resource's attributes label every span of it that has none of its own.
      resource: { attributes: [str('tokenwatt.cost_center', 'cc-7')] },
      scopeSpans: [{ scope: { name: 't' }, spans: [
        genAiSpan('00000000000000a1', end, [str('tokenwatt.team', 'search'), str('app.project', 'apollo')]),
        // A team the ESG report keys its own row by and a cost centre too long for a record: left out, the span stored.
        genAiSpan('00000000000000a2', end, [str('tokenwatt.team', '(none)'), str('tokenwatt.project', 'gemini'), str('tokenwatt.cost_center', 'c'.repeat(300))]),
      ] }],
    }],
  });
  const answer = await agent.post('/v1/traces', body, { 'content-type': 'application/json' });
  assert.equal(answer.status, 200, answer.body);
  const partial = (JSON.parse(answer.body) as { partialSuccess?: { rejectedSpans: string; errorMessage: string } }).partialSuccess;
  assert.equal(partial?.rejectedSpans, '0', answer.body);
  assert.match(partial?.errorMessage ?? '', /span 00000000000000a2 .*: tokenwatt\.team: "\(none\)" is reserved.*left out of the record/);
  assert.match(partial?.errorMessage ?? '', /span 00000000000000a2 .*: tokenwatt\.cost_center: longer than 256 characters, left out of the record/);

  await eventually('both spans settled', 30_000, async () => (sumOf(await agent.metrics(), 'tokenwatt_requests_total', { model: 'm' }) === 2 ? true : undefined));
  const families = await agent.metrics();
  assert.equal(sumOf(families, 'tokenwatt_requests_total', { model: 'm', team: 'search', project: 'apollo' }), 1, 'project is a metric label');
  assert.equal(sumOf(families, 'tokenwatt_requests_total', { model: 'm', team: '', project: 'gemini' }), 1);
  // The values left out are counted by record field.
  assert.equal(sumOf(families, 'tokenwatt_label_values_left_out_total', { source: 'otlp', label: 'team' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_label_values_left_out_total', { source: 'otlp', label: 'cost_center' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_label_values_left_out_total', {}), 2);
  assert.equal(await agent.stop(), 0);

  const ledger = new Database(db, { readonly: true });
  t.after(() => ledger.close());
  const rows = ledger.prepare("SELECT request_id, labels FROM requests WHERE source = 'otlp' ORDER BY request_id").all() as { request_id: string; labels: string }[];
  assert.deepEqual(rows.map((r) => [r.request_id.split('/')[0], JSON.parse(r.labels)]), [
    ['call-00000000000000a1', { team: 'search', project: 'apollo', cost_center: 'cc-7' }],
    ['call-00000000000000a2', { project: 'gemini' }],
  ]);
});
