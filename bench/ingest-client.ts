/**
 * Load generator for bench/ingest.ts, run as a separate process so that the server's own cost is
 * what gets measured. Posts to 127.0.0.1:PORT over keep-alive connections for DURATION_MS after a
 * short warm-up, and prints one JSON line: {records, requests, failures, elapsedMs, p50Ms, p99Ms}.
 * Usage: node --import tsx bench/ingest-client.ts PORT single|batch DURATION_MS CONNECTIONS
 */
import { Agent, request } from 'node:http';

const [portArg, mode, durationArg, connectionsArg] = process.argv.slice(2);
const port = Number(portArg);
const durationMs = Number(durationArg ?? 3000);
const connections = Number(connectionsArg ?? 4);
const perRequest = mode === 'batch' ? 1000 : 1;
const WARMUP_MS = 500;
const T0 = Date.UTC(2026, 10, 1, 10);

let next = 0;
function line(): string {
  const id = next++;
  const start = T0 + (id % 3_600_000);
  return `{"request_id":"${mode}-${process.pid}-${id}","model":"llama-8b","gpus":[${id % 2}],"start":${start},"first_token":${start + 80},"end":${start + 900},"prompt_tokens":512,"cached_tokens":128,"completion_tokens":64,"labels":{"team":"search"}}`;
}
function body(): string {
  if (perRequest === 1) return line();
  const lines = new Array<string>(perRequest);
  for (let i = 0; i < perRequest; i += 1) lines[i] = line();
  return lines.join('\n');
}

const agent = new Agent({ keepAlive: true, maxSockets: connections });
const headers = { 'content-type': perRequest === 1 ? 'application/json' : 'application/x-ndjson' };

function post(text: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/requests', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(text);
  });
}

const began = Date.now();
const measureFrom = began + WARMUP_MS;
const stopAt = measureFrom + durationMs;
let records = 0;
let requests = 0;
let failures = 0;
const latencies: number[] = [];

async function loop(): Promise<void> {
  while (Date.now() < stopAt) {
    const text = body();
    const sent = performance.now();
    const status = await post(text).catch(() => 0);
    const at = Date.now();
    if (at < measureFrom || at > stopAt) continue;
    latencies.push(performance.now() - sent);
    requests += 1;
    if (status === 202) records += perRequest;
    else failures += 1;
  }
}

await Promise.all(Array.from({ length: connections }, () => loop()));
agent.destroy();
latencies.sort((a, b) => a - b);
const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
process.stdout.write(`${JSON.stringify({ records, requests, failures, elapsedMs: durationMs, p50Ms: pct(0.5), p99Ms: pct(0.99) })}\n`);
