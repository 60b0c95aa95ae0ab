import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { firstSample, startAgent } from './agent-process.js';

const TOKEN = 's3cret-long-token-123';

/** One OTLP/JSON GenAI span (model m, 100 input and 50 output tokens) that ended just now. */
function genAiSpan(endMs: number): string {
  const ns = (ms: number) => `${BigInt(ms) * 1_000_000n}`;
  const attributes = [
    { key: 'gen_ai.operation.name', value: { stringValue: 'chat' } },
    { key: 'gen_ai.request.model', value: { stringValue: 'm' } },
    { key: 'gen_ai.usage.input_tokens', value: { intValue: 100 } },
    { key: 'gen_ai.usage.output_tokens', value: { intValue: 50 } },
  ];
  const span = { traceId: '0123456789abcdef0123456789abcdef', spanId: '0123456789abcdef', name: 'chat m', kind: 3, startTimeUnixNano: ns(endMs - 500), endTimeUnixNano: ns(endMs), attributes };
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ scope: { name: 't' }, spans: [span] }] }] });
}

test('the ingest token guards every write on the agent\'s port: POST /v1/traces as well as POST /v1/requests', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-token-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'agent.db');
  const agent = await startAgent(['run', '--power', 'simulated', '--db', db, '--replicas', 'm=0', '--settle-lateness', '30'], { TOKENWATT_INGEST_TOKEN: TOKEN });
  t.after(() => void agent.stop());
  await firstSample(agent);
  const json = { 'content-type': 'application/json' };
  const body = genAiSpan(Date.now());

  const none = await agent.post('/v1/traces', body, json);
  assert.equal(none.status, 401, none.body);
  assert.equal(JSON.parse(none.body).message, 'bearer token required');
  const wrong = await agent.post('/v1/traces', body, { ...json, authorization: 'Bearer not-the-token-at-all' });
  assert.equal(wrong.status, 401, wrong.body);
  const record = JSON.stringify({ request_id: 'r1', model: 'm', start: Date.now() - 500, end: Date.now(), prompt_tokens: 1, completion_tokens: 1 });
  assert.equal((await agent.post('/v1/requests', record, json)).status, 401);
  assert.equal(sumOf(await agent.metrics(), 'tokenwatt_records_total'), 0, 'nothing posted without the token was taken in');

  const right = await agent.post('/v1/traces', body, { ...json, authorization: `Bearer ${TOKEN}` });
  assert.equal(right.status, 200, right.body);
  assert.deepEqual(JSON.parse(right.body), {}, 'a full success');
  assert.equal(await agent.stop(), 0);
  const ledger = new Database(db, { readonly: true });
  t.after(() => ledger.close());
  const rows = ledger.prepare('SELECT model, prompt_tokens, completion_tokens FROM requests').all();
  assert.deepEqual(rows, [{ model: 'm', prompt_tokens: 100, completion_tokens: 50 }], 'only the span sent with the token is in the ledger');
});
