/**
 * The recording proxy as `tokenwatt run` configures it, in front of the fake OpenAI-compatible
 * upstream: where it listens, and which header labels reach the ledger and /metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { startFakeUpstream } from '../proxy/fake-upstream.js';
import { rawRequest } from '../proxy/raw-http.js';
import { eventually, freePort, startAgent } from './agent-process.js';

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function setup(t: import('node:test').TestContext, config: Record<string, unknown>) {
  const upstream = await startFakeUpstream();
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-proxy-'));
  t.after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = join(dir, 'config.json');
  // upstream only in the file: the proxy runs from the config section, as in the chart.
  writeFileSync(file, JSON.stringify({ ...config, proxy: { upstream: upstream.url, replica: { gpus: [0] }, ...(config.proxy as object | undefined) } }));
  const proxyPort = await freePort();
  const db = join(dir, 'agent.db');
  // startAgent adds --host 127.0.0.1.
  const agent = await startAgent(['run', '--config', file, '--power', 'simulated', '--db', db, '--proxy-port', String(proxyPort), '--settle-period', '1', '--settle-lateness', '1']);
  t.after(() => void agent.stop());
  return { agent, proxyPort, db };
}

// Linux routes all of 127.0.0.0/8 to the loopback device: a listener on every interface accepts
// 127.0.0.2, one bound to 127.0.0.1 refuses it.
test('--host 127.0.0.1: the recording proxy listens on 127.0.0.1 too, not on every interface', { timeout: 60_000 }, async (t) => {
  const { agent, proxyPort } = await setup(t, {});
  assert.match(agent.stderr(), new RegExp(`proxy: listening on 127\\.0\\.0\\.1:${proxyPort},`));
  assert.equal(await accepts('127.0.0.1', proxyPort), true);
  assert.equal(await accepts('127.0.0.2', proxyPort), false, 'not reachable on another address');
});

test('proxy.host set in the file wins over --host', { timeout: 60_000 }, async (t) => {
  const { agent, proxyPort } = await setup(t, { proxy: { host: '0.0.0.0' } });
  assert.match(agent.stderr(), new RegExp(`proxy: listening on 0\\.0\\.0\\.0:${proxyPort},`));
  assert.equal(await accepts('127.0.0.2', proxyPort), true);
});

test('every label in labels.headers reaches the record, the ledger and (in labels.user) /metrics', { timeout: 60_000 }, async (t) => {
  const headers = { task_id: 'x-task-id', team: 'x-team', feature: 'x-feature', project: 'x-project', cost_center: 'x-cost-center' };
  const { agent, proxyPort, db } = await setup(t, { labels: { user: ['team', 'feature', 'project'], headers } });
  const call = await rawRequest(`http://127.0.0.1:${proxyPort}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-task-id': 'T1', 'x-team': 'search', 'x-feature': 'chat', 'x-project': 'apollo', 'x-cost-center': 'cc-7' },
    body: JSON.stringify({ model: 'mm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
  });
  assert.equal(call.status, 200, call.body.toString());

  const settled = await eventually('the proxied request settled', 30_000, async () => {
    const n = sumOf(await agent.metrics(), 'tokenwatt_requests_total', { model: 'mm' });
    return n > 0 ? n : undefined;
  });
  assert.equal(settled, 1);
  const families = await agent.metrics();
  assert.equal(sumOf(families, 'tokenwatt_requests_total', { model: 'mm', team: 'search', feature: 'chat', project: 'apollo' }), 1, 'project is a metric label');
  assert.equal(await agent.stop(), 0);

  const ledger = new Database(db, { readonly: true });
  t.after(() => ledger.close());
  const rows = ledger.prepare("SELECT task_id, labels FROM requests WHERE source = 'proxy'").all() as { task_id: string; labels: string }[];
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.task_id, 'T1');
  assert.deepEqual(JSON.parse(rows[0]?.labels ?? '{}'), { team: 'search', feature: 'chat', project: 'apollo', cost_center: 'cc-7' });
});

test('a header value a record refuses is left out of the record and counted in /metrics by source and field, not as a capture error', { timeout: 60_000 }, async (t) => {
  const { agent, proxyPort } = await setup(t, {});
  for (const task of ['T2', 'T3']) {
    const call = await rawRequest(`http://127.0.0.1:${proxyPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-task-id': task, 'x-team': '(none)', 'x-feature': 'chat' },
      body: JSON.stringify({ model: 'mm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
    });
    assert.equal(call.status, 200, call.body.toString());
  }
  const families = await eventually('both calls recorded', 30_000, async () => {
    const f = await agent.metrics();
    return sumOf(f, 'tokenwatt_records_total', { result: 'accepted' }) === 2 ? f : undefined;
  });
  assert.equal(sumOf(families, 'tokenwatt_label_values_left_out_total', { source: 'proxy', label: 'team' }), 2);
  assert.equal(sumOf(families, 'tokenwatt_label_values_left_out_total', { label: 'feature' }), 0);
  assert.equal(sumOf(families, 'tokenwatt_capture_errors_total', {}), 0);
  assert.equal(await agent.stop(), 0);
});
