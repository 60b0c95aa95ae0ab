/**
 * End to end: the real agent process (`tokenwatt run --power simulated --proxy-port --upstream`,
 * run from source through tsx) in front of the fake OpenAI-compatible upstream, called with the
 * official openai client. What the client saw (usage, statuses) must be what the ledger stores
 * and what /metrics counts once the requests are settled.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '../../agent/sqlite-driver.js';
import OpenAI from 'openai';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { startFakeUpstream } from './fake-upstream.js';
import { freePort } from '../e2e/agent-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));


function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
}

/** Sum of a metric's series matching `labels`, grouped by `by`. */
function sumBy(text: string, name: string, labels: Record<string, string>, by: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of parsePrometheusText(text).samples) {
    if (s.name !== name || !Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
    const key = s.labels[by] ?? '';
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

test('agent + proxy: tokens and statuses the openai client saw are the ledger rows and the /metrics counters', { timeout: 120_000 }, async (t) => {
  const upstream = await startFakeUpstream({ tokenDelayMs: 15 });
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-e2e-proxy-'));
  t.after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const proxyPort = await freePort();
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ proxy: { host: '127.0.0.1' } }));
  const db = join(dir, 'ledger.db');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'agent/cli.ts', 'run', '--config', configFile, '--power', 'simulated', '--host', '127.0.0.1', '--port', '0',
      '--proxy-port', String(proxyPort), '--upstream', upstream.url, '--db', db, '--settle-period', '1', '--settle-lateness', '5',
      '--replicas', 'llama-8b=0@small', '--log-level', 'info'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  child.stdout.on('data', (c: Buffer) => (logs += c.toString()));
  child.stderr.on('data', (c: Buffer) => (logs += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const agentPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start:\n${logs.slice(-3000)}`)), 60_000);
    const check = () => {
      const match = /"port":(\d+)[^\n]*"msg":"tokenwatt agent running"/.exec(logs);
      if (match && /proxy: listening/.test(logs)) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      } else setTimeout(check, 100);
    };
    check();
    void exited.then((code) => reject(new Error(`agent exited with ${code}:\n${logs.slice(-3000)}`)));
  });

  // The calls start after the agent's first sample (a record that starts before it is late), and
  // the lateness is 5 s: with 1 s, and calls made at once, a machine slow to sample, or to take in
  // a record the proxy handed on, made some late: energy-free, those are left out of
  // requests_total, and the count by status below came out short.
  for (let i = 0; ; i++) {
    if ((sumBy(await get(agentPort, '/metrics'), 'tokenwatt_samples_total', {}, '')[''] ?? 0) > 0) break;
    if (i >= 120) throw new Error(`no power sample in 30 s:\n${logs.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }

  const client = new OpenAI({ baseURL: `http://127.0.0.1:${proxyPort}/v1`, apiKey: 'sk-e2e', maxRetries: 0 });
  const seen = new Map<string, { status: string; prompt?: number; completion?: number; cached?: number; minCompletion?: number }>();

  const plain = await client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'hello' }], max_tokens: 6 }, { headers: { 'x-task-id': 'e2e-task', 'x-team': 'search' } });
  seen.set(plain.id, { status: 'ok', prompt: plain.usage?.prompt_tokens, completion: plain.usage?.completion_tokens, cached: plain.usage?.prompt_tokens_details?.cached_tokens });

  const stream = await client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'count' }], max_tokens: 4, stream: true, stream_options: { include_usage: true } }, { headers: { 'x-task-id': 'e2e-task', 'x-attempt': '2' } });
  let streamId = '';
  let streamUsage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    streamId = chunk.id;
    streamUsage = chunk.usage ?? streamUsage;
  }
  seen.set(streamId, { status: 'ok', prompt: streamUsage?.prompt_tokens, completion: streamUsage?.completion_tokens, cached: streamUsage?.prompt_tokens_details?.cached_tokens });

  const response = await client.responses.create({ model: 'llama-8b', input: 'hi', max_output_tokens: 3 });
  seen.set(response.id, { status: 'ok', prompt: response.usage?.input_tokens, completion: response.usage?.output_tokens, cached: response.usage?.input_tokens_details.cached_tokens });

  await assert.rejects(client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-fake': 'fail-500' } }), /500/);

  const controller = new AbortController();
  const long = await client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'a long one' }], max_tokens: 400, stream: true }, { signal: controller.signal });
  let received = 0;
  try {
    for await (const chunk of long) if (chunk.choices[0]?.delta.content && ++received === 4) controller.abort();
  } catch {
    // aborting may end the iteration with an AbortError
  }
  await upstream.waitForAborts(1);

  // /metrics once everything is settled: 5 requests, by status as the client saw them.
  const expectedStatuses = { ok: 3, error: 1, cancelled: 1 };
  let metrics = '';
  for (let i = 0; i < 120; i++) {
    metrics = await get(agentPort, '/metrics');
    const byStatus = sumBy(metrics, 'tokenwatt_requests_total', { model: 'llama-8b', tier: 'small' }, 'status');
    if ((byStatus.ok ?? 0) + (byStatus.error ?? 0) + (byStatus.cancelled ?? 0) >= 5) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.deepEqual(sumBy(metrics, 'tokenwatt_requests_total', { model: 'llama-8b', tier: 'small' }, 'status'), expectedStatuses, `metrics:\n${metrics.slice(0, 3000)}`);
  const tokens = sumBy(metrics, 'tokenwatt_tokens_total', { model: 'llama-8b', tier: 'small' }, 'kind');

  child.kill('SIGTERM');
  assert.equal(await exited, 0, `clean shutdown\n${logs.slice(-2000)}`);

  const ledger = new Database(db, { readonly: true });
  t.after(() => ledger.close());
  const rows = ledger
    .prepare("SELECT request_id, task_id, attempt, status, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, tokens_estimated, labels, first_token_ms, source, finalized FROM requests WHERE source = 'proxy' ORDER BY start_ms")
    .all() as { request_id: string; task_id: string | null; attempt: number | null; status: string; prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number; tokens_estimated: number; labels: string; first_token_ms: number | null; finalized: number }[];
  assert.equal(rows.length, 5);
  for (const [id, saw] of seen) {
    const row = rows.find((r) => r.request_id.startsWith(`${id}/`));
    assert.ok(row, `ledger row for ${id}`);
    assert.equal(row.status, saw.status);
    assert.equal(row.prompt_tokens, saw.prompt);
    assert.equal(row.completion_tokens, saw.completion);
    assert.equal(row.cached_tokens, saw.cached);
    assert.equal(row.tokens_estimated, 0);
    assert.equal(row.finalized, 1);
  }
  const first = rows.find((r) => r.request_id.startsWith(`${plain.id}/`));
  assert.equal(first?.task_id, 'e2e-task');
  assert.deepEqual(JSON.parse(first?.labels ?? '{}'), { team: 'search' });
  assert.equal(rows.find((r) => r.request_id.startsWith(`${streamId}/`))?.attempt, 2);
  const cancelled = rows.find((r) => r.status === 'cancelled');
  assert.ok(cancelled && cancelled.completion_tokens >= received && cancelled.tokens_estimated === 1);
  const failed = rows.find((r) => r.status === 'error');
  assert.deepEqual([failed?.prompt_tokens, failed?.tokens_estimated], [Math.ceil(1 / 4), 1], 'a 500 after the upstream had the call: its prompt estimate, flagged');

  // The counters equal the ledger's sums.
  const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((a, r) => a + f(r), 0);
  assert.equal(tokens.prompt, sum((r) => r.prompt_tokens));
  assert.equal(tokens.completion, sum((r) => r.completion_tokens));
  assert.equal(tokens.cached, sum((r) => r.cached_tokens));
  assert.equal(tokens.reasoning ?? 0, sum((r) => r.reasoning_tokens));
});
