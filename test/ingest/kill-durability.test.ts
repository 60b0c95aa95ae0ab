import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Agent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Ledger } from '../../agent/ledger.js';
import { epochMs } from '../../model/units.js';
import { RETENTION, T0, tempDir } from '../ledger/temp-ledger.js';

const CHILD = fileURLToPath(new URL('./durability-child.ts', import.meta.url));

function post(port: number, agent: Agent, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/requests', agent, headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('kill -9 mid-stream: every record acknowledged with 202 is in the ledger afterwards', { timeout: 90_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'ledger.db');
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
    createInterface({ input: child.stdout }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });

  const acknowledged: string[] = [];
  let failedAfterKill = 0;
  let killed = false;
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  let next = 0;
  // Each client sends until its connection fails: the kill lands while batches are in flight.
  const client = async (): Promise<void> => {
    for (;;) {
      const ids = Array.from({ length: 5 }, () => `k-${next++}`);
      const body = ids.map((id, i) => JSON.stringify({ request_id: id, model: 'llama-8b', gpus: [i % 2], start: T0, end: T0 + 500, prompt_tokens: 10, completion_tokens: 5 })).join('\n');
      try {
        const status = await post(port, agent, body);
        if (status === 202) acknowledged.push(...ids);
        else assert.fail(`unexpected status ${status} before the kill`);
      } catch (error) {
        if (!killed) throw error;
        failedAfterKill += 1;
        return;
      }
    }
  };
  const clients = Array.from({ length: 8 }, () => client());
  // Kill once a good number of batches went through, while the clients are still sending.
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (acknowledged.length >= 1500) {
        clearInterval(check);
        killed = true;
        child.kill('SIGKILL');
        resolve();
      }
    }, 5);
  });
  await Promise.all(clients);
  await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
  assert.equal(child.signalCode, 'SIGKILL');
  assert.equal(failedAfterKill, 8, 'every client had a request cut by the kill');

  const ledger = Ledger.open(path, { node: 'check', retention: RETENTION });
  t.after(() => ledger.close());
  const stored = new Set(ledger.readRequests(epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)).map((r) => r.record.requestId));
  const missing = acknowledged.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acknowledged.length} acknowledged records lost`);
  assert.ok(stored.size >= acknowledged.length);
  // Stored but unacknowledged ones are fine: the client retries them and the ledger deduplicates.
  t.diagnostic(`acknowledged ${acknowledged.length}, stored ${stored.size}, sent ${next}`);
});
