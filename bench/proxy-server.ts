/**
 * The proxy of bench/proxy.ts, run as its own process (so that it can be pinned to a core): an
 * OpenAiProxy in front of UPSTREAM_URL with a sink that accepts every record, as the agent runs it
 * (logging silenced). The proxy is loaded from dist/ (the built JavaScript, as deployed) when
 * dist/ is built and not older than the sources, else from the TypeScript sources through tsx.
 * The same process also runs, for reference, on this machine and in this placement:
 * - a bare TCP relay to the upstream (bytes piped both ways, no HTTP): the cost of an extra hop alone;
 * - a minimal node:http forwarder (request and answer piped through node:http's server and client,
 *   the proxy's keep-alive and noDelay settings, nothing read): the floor of any proxy built on
 *   node:http, as tokenwatt's is, before it does anything of its own.
 *
 * Talks to its parent over IPC: sends {port, relayPort, forwarderPort, sources} when listening; answers 'cpu'
 * with its CPU time so far (µs); on 'stop' shuts down, sends its delivery counts and exits.
 *
 * Usage (from bench/proxy.ts): node --import tsx bench/proxy-server.ts UPSTREAM_URL
 * Profile it by adding --cpu-prof to node's options (bench/proxy.ts does, given TOKENWATT_PROXY_BENCH_PROF=DIR).
 */
import { readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type * as ProxyModule from '../collectors/proxy/openai-proxy.js';
import type * as ConfigModule from '../collectors/proxy/proxy-config.js';
import type { IngestResult, RequestSink } from '../collectors/request-sink.js';

const upstream = process.argv[2];
if (!upstream) throw new Error('usage: proxy-server.ts UPSTREAM_URL');
const upstreamUrl = new URL(upstream);

/** dist/ holds a build of every source the proxy runs, none older than its source. */
function distIsCurrent(): boolean {
  const root = fileURLToPath(new URL('..', import.meta.url));
  for (const dir of ['collectors/proxy', 'model']) {
    for (const name of readdirSync(`${root}${dir}`)) {
      if (!name.endsWith('.ts')) continue;
      try {
        if (statSync(`${root}dist/${dir}/${name.slice(0, -3)}.js`).mtimeMs < statSync(`${root}${dir}/${name}`).mtimeMs) return false;
      } catch {
        return false;
      }
    }
  }
  return true;
}

const built = distIsCurrent();
const { OpenAiProxy } = (await import(built ? '../dist/collectors/proxy/openai-proxy.js' : '../collectors/proxy/openai-proxy.js')) as typeof ProxyModule;
const { proxyConfigSchema } = (await import(built ? '../dist/collectors/proxy/proxy-config.js' : '../collectors/proxy/proxy-config.js')) as typeof ConfigModule;

const acceptingSink: RequestSink = {
  async submit(records): Promise<IngestResult> {
    return { accepted: records.length, duplicates: 0, late: 0, errors: [] };
  },
};
const silent = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
const proxy = new OpenAiProxy({ config: proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream, replica: { gpus: [0] } }), log: silent });
await proxy.start(acceptingSink);

const relay = net.createServer({ noDelay: true }, (client) => {
  const server = net.connect({ host: upstreamUrl.hostname, port: Number(upstreamUrl.port), noDelay: true });
  client.pipe(server).pipe(client);
  client.on('error', () => server.destroy());
  server.on('error', () => client.destroy());
});
await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));

const forwardAgent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', noDelay: true });
const forwarder = http.createServer({ noDelay: true }, (req, res) => {
  const up = http.request(
    { host: upstreamUrl.hostname, port: Number(upstreamUrl.port), method: req.method, path: req.url, headers: req.headers, agent: forwardAgent },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  up.on('error', () => res.destroy());
  req.pipe(up);
});
await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));

process.send?.({
  port: proxy.port,
  relayPort: (relay.address() as AddressInfo).port,
  forwarderPort: (forwarder.address() as AddressInfo).port,
  sources: built ? 'dist' : 'tsx',
});

process.on('message', (msg) => {
  if (msg === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpuUs: u.user + u.system });
    return;
  }
  relay.close();
  forwarder.close();
  forwardAgent.destroy();
  void proxy.shutdown().then(() => {
    process.send?.({ delivery: proxy.stats().delivery }, () => process.exit(0));
  });
});
