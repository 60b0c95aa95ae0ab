/**
 * Latency and throughput the OpenAI-compatible proxy adds, against a fast fake upstream on
 * 127.0.0.1 that answers at once, so the proxy's own cost is what shows.
 *
 * Three threads, as in a deployment where the proxy does not share a core with the engine or
 * its clients: the fake upstream and the load generator run in worker threads, the proxy (with a
 * sink that accepts every record) in the main thread.
 * - Latency: the same requests alternately direct and through the proxy, one at a time, on
 *   keep-alive connections. p50/p99 of time to first body byte and of total time, and the
 *   difference proxied - direct (the added latency). Target: p99 added <= 1 ms.
 * - Throughput: a fixed number of requests at a fixed concurrency, direct then proxied; ratio
 *   proxied/direct. Target: >= 90 %. With an upstream that costs nothing this is the worst case:
 *   a real engine spends milliseconds to seconds per call, the proxy tens of microseconds.
 * Non-streaming and streaming (SSE, 16 content events; the client does not ask for usage, so the
 * proxy injects and strips it: its most expensive path).
 * Prints figures; asserts nothing. Bounded: a few thousand requests in all.
 *
 * Run: node --import tsx bench/proxy.ts
 */
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { OpenAiProxy } from '../collectors/proxy/openai-proxy.js';
import { proxyConfigSchema } from '../collectors/proxy/proxy-config.js';
import type { IngestResult, RequestSink } from '../collectors/request-sink.js';

const SETTINGS = { streamEvents: 16, latencyRequests: 1500, warmup: 200, throughputRequests: 4000, concurrency: 32 };

/** The fake upstream (plain JS: worker threads run it without a TypeScript loader). */
const UPSTREAM_WORKER = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const N = workerData.streamEvents;
let n = 0;
const server = http.createServer((req, res) => {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString());
    const id = 'chatcmpl-' + (++n);
    if (!body.stream) {
      const out = JSON.stringify({ id, object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 } });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) }).end(out);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    let i = 0;
    const next = () => {
      if (i < N) {
        res.write('data: {"id":"' + id + '","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"t' + (i++) + ' "},"finish_reason":null}]}\\n\\n');
        setImmediate(next);
        return;
      }
      if (body.stream_options && body.stream_options.include_usage) {
        res.write('data: {"id":"' + id + '","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":' + N + ',"total_tokens":' + (12 + N) + '}}\\n\\n');
      }
      res.end('data: [DONE]\\n\\n');
    };
    next();
  });
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
parentPort.on('message', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
`;

/** The load generator: latency (sequential, alternating) then throughput (concurrent), per mode. */
const CLIENT_WORKER = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { direct, proxied, streamEvents, latencyRequests, warmup, throughputRequests, concurrency } = workerData;
function request(agent, base, stream) {
  const payload = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello there' }], max_tokens: streamEvents, stream });
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let first = 0n;
    const req = http.request(base + '/v1/chat/completions', { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      res.on('data', () => { if (first === 0n) first = process.hrtime.bigint(); });
      res.on('end', () => resolve([Number(first - start) / 1e6, Number(process.hrtime.bigint() - start) / 1e6]));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}
async function latency(stream) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < warmup; i++) { await request(agent, direct, stream); await request(agent, proxied, stream); }
  const d = [], p = [];
  for (let i = 0; i < latencyRequests; i++) {
    if (i % 2 === 0) { d.push(await request(agent, direct, stream)); p.push(await request(agent, proxied, stream)); }
    else { p.push(await request(agent, proxied, stream)); d.push(await request(agent, direct, stream)); }
  }
  agent.destroy();
  return { direct: d, proxied: p };
}
async function throughput(base, stream) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let issued = 0;
  const started = process.hrtime.bigint();
  const worker = async () => { while (issued < throughputRequests) { issued++; await request(agent, base, stream); } };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return throughputRequests / (Number(process.hrtime.bigint() - started) / 1e9);
}
(async () => {
  const results = [];
  for (const stream of [false, true]) {
    const lat = await latency(stream);
    results.push({ stream, ...lat, directRps: await throughput(direct, stream), proxiedRps: await throughput(proxied, stream) });
  }
  parentPort.postMessage(results);
})().catch((err) => { throw err; });
`;

interface ModeResult {
  readonly stream: boolean;
  /** [first byte ms, total ms] per request. */
  readonly direct: [number, number][];
  readonly proxied: [number, number][];
  readonly directRps: number;
  readonly proxiedRps: number;
}

const acceptingSink: RequestSink = {
  async submit(records): Promise<IngestResult> {
    return { accepted: records.length, duplicates: 0, late: 0, errors: [] };
  },
};

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

function onceMessage<T>(worker: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

const fmt = (ms: number) => ms.toFixed(3).padStart(9);

export async function benchProxy(): Promise<void> {
  const upstream = new Worker(UPSTREAM_WORKER, { eval: true, workerData: SETTINGS });
  const upstreamPort = await onceMessage<number>(upstream);
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const silent = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
  const proxy = new OpenAiProxy({ config: proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream: upstreamUrl, replica: { gpus: [0] } }), log: silent });
  await proxy.start(acceptingSink);
  const { streamEvents, latencyRequests, throughputRequests, concurrency } = SETTINGS;
  console.log(
    `proxy bench: fast fake upstream, node ${process.version}; upstream, load generator and proxy on separate threads; ` +
      `${latencyRequests} sequential requests per side, throughput ${throughputRequests} requests at concurrency ${concurrency}, streams of ${streamEvents} events`,
  );
  try {
    const client = new Worker(CLIENT_WORKER, { eval: true, workerData: { ...SETTINGS, direct: upstreamUrl, proxied: `http://127.0.0.1:${proxy.port}` } });
    const results = await onceMessage<ModeResult[]>(client);
    await client.terminate();
    console.log('mode         metric        direct p50  direct p99   proxy p50   proxy p99   added p50   added p99  (ms)');
    for (const r of results) {
      const mode = r.stream ? 'streaming' : 'non-stream';
      for (const [index, metric] of ['first byte', 'total'].entries()) {
        const d = r.direct.map((s) => s[index] ?? Number.NaN);
        const p = r.proxied.map((s) => s[index] ?? Number.NaN);
        const [d50, d99, p50, p99] = [percentile(d, 50), percentile(d, 99), percentile(p, 50), percentile(p, 99)];
        console.log(`${mode.padEnd(12)} ${metric.padEnd(12)} ${fmt(d50)}  ${fmt(d99)}  ${fmt(p50)}  ${fmt(p99)}  ${fmt(p50 - d50)}  ${fmt(p99 - d99)}`);
      }
      console.log(
        `${mode.padEnd(12)} throughput   direct ${r.directRps.toFixed(0)} req/s, proxied ${r.proxiedRps.toFixed(0)} req/s, ratio ${((100 * r.proxiedRps) / r.directRps).toFixed(1)} %`,
      );
    }
  } finally {
    await proxy.shutdown();
    upstream.postMessage('stop');
    await new Promise((resolve) => upstream.once('exit', resolve));
  }
  const stats = proxy.stats().delivery;
  console.log(`records delivered: ${stats?.accepted ?? 0} (refused ${stats?.refused ?? 0}, dropped ${stats?.dropped ?? 0})`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchProxy().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
