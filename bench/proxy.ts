/**
 * Latency and throughput the OpenAI-compatible proxy adds, against a fast fake upstream on
 * 127.0.0.1 that answers at once, so the proxy's own cost is what shows.
 *
 * Three processes: the fake upstream (bench/proxy-upstream.ts), the load generator
 * (bench/proxy-client.ts) and the proxy with a sink that accepts every record
 * (bench/proxy-server.ts; the proxy code comes from dist/ when it is built and current, as
 * deployed, else from the sources through tsx: the output says which). Direct and proxied runs
 * use the very same client and upstream processes, so they differ only by the proxy hop. Two
 * layouts, each with fresh processes:
 * - pinned (taskset): the proxy alone on one CPU, the load generator and the upstream together on
 *   another, for the direct runs as for the proxied ones. This is the deployment's shape: on a GPU
 *   node the engine's bottleneck is the GPU and the proxy runs on a spare core, so it must not be
 *   charged for taking CPU away from the client and upstream it is compared against. Where
 *   pinning is impossible (no taskset, one CPU) the output says so and only the unpinned layout runs.
 * - unpinned: the three processes share every CPU the machine lends (2 vCPUs where the earlier
 *   figures were taken). With an upstream that does no work, the proxy's socket work then competes
 *   with the client's and the upstream's, so this is a worst case, kept so that nothing is hidden.
 * Per layout and for three kinds of call: non-streaming; streaming (SSE, 16 content events) where
 * the client does not ask for usage, so the proxy injects and strips it (its most expensive path,
 * and the upstream writes one event more proxied than direct); and streaming where the client asks
 * for usage itself ("stream+usage"), so direct and proxied calls cost the upstream the same:
 * - Latency: the same request direct, through the proxy, through a bare TCP relay (bytes piped
 *   both ways, no HTTP) and through a minimal node:http forwarder (request and answer piped, nothing
 *   read), both in the proxy's process and place, one at a time on keep-alive connections, the
 *   order reversed every other round. p50/p99 of time to first body byte and of total time, and
 *   the difference from direct (the added latency). Target: p99 added <= 1 ms. Measured twice per
 *   kind: "cold", right after the processes start that kind of call (200 warm-up calls), and
 *   "steady", after the kind's throughput rounds (tens of thousands of calls), as a long-running
 *   agent serves. Cold figures include the JIT still compiling the client's, upstream's and
 *   proxy's code for that path. The relay's column is what any extra hop costs on this machine
 *   (loopback, a process to wake on another CPU); the forwarder's is what any proxy built on
 *   node:http costs (parsing and writing HTTP twice); the rest of the proxy's is its own work
 *   (reading the answer, records).
 * - Throughput: a fixed number of requests at a fixed concurrency, direct and proxied in
 *   alternation for a few rounds; the ratio proxied/direct per round (median and range).
 *   Target: >= 90 %. With an upstream that costs nothing this is the worst case: a real engine
 *   spends milliseconds to seconds per call, the proxy tens of microseconds. The bare relay and
 *   the node:http forwarder are measured the same way after each round: the throughput any hop,
 *   and any node:http proxy, allows here.
 * - CPU per request (user + system, from each process's own accounting) of the proxy (and of the
 *   relay and the forwarder in its place), and of the client and the upstream, during the
 *   throughput runs: the proxy's cost with the noise of scheduling taken out. In the pinned
 *   layout the proxied throughput can reach direct only while the proxy's CPU per request stays
 *   below the client's and upstream's together.
 * Prints figures; asserts nothing. Bounded: about 185,000 requests per layout (~75 s each on 2 vCPUs).
 *
 * Run: npm run bench -- proxy   (or: node --import tsx bench/proxy.ts)
 * Options (environment): TOKENWATT_PROXY_BENCH_LAYOUT=pinned|unpinned|both (default both),
 * TOKENWATT_PROXY_BENCH_ROUNDS=N throughput rounds (default 3), TOKENWATT_PROXY_BENCH_PROF=DIR
 * writes a CPU profile of the proxy process (node --cpu-prof) into DIR.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { CallKind, ClientCommand, LatencySample } from './proxy-client.js';
import type { DeliveryStats } from '../collectors/proxy/record-delivery.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';

const CALL_KINDS: readonly CallKind[] = ['json', 'stream', 'stream-usage'];
const KIND_LABELS: Readonly<Record<CallKind, string>> = { json: 'non-stream', stream: 'streaming', 'stream-usage': 'stream+usage' };
const SETTINGS = { streamEvents: 16, latencyRequests: 1500, warmup: 200, throughputRequests: 4000, concurrency: 32 };
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Layout {
  readonly name: 'pinned' | 'unpinned';
  readonly description: string;
  /** taskset CPU lists, or null for no pinning. */
  readonly proxyCpus: string | null;
  readonly loadCpus: string | null;
}

interface Throughput {
  readonly directRps: number;
  readonly proxiedRps: number;
  /** Through the bare TCP relay: what any hop allows on this machine. */
  readonly relayedRps: number;
  /** Through the minimal node:http forwarder: what any proxy on node:http allows. */
  readonly forwardedRps: number;
  /** CPU µs per request: the proxy's (and the relay's and forwarder's in its place), and the client's and upstream's in the direct and in the proxied run. */
  readonly proxyCpu: number;
  readonly relayCpu: number;
  readonly forwarderCpu: number;
  readonly direct: { readonly client: number; readonly upstream: number };
  readonly proxied: { readonly client: number; readonly upstream: number };
}

/** One latency measurement: the same sequential calls to each target. */
interface LatencyRun {
  readonly direct: LatencySample[];
  readonly proxied: LatencySample[];
  /** Through the bare TCP relay that stands where the proxy does. */
  readonly relayed: LatencySample[];
  /** Through the minimal node:http forwarder that stands where the proxy does. */
  readonly forwarded: LatencySample[];
}

interface ModeResult {
  readonly kind: CallKind;
  /** Right after the kind's first calls (warm-up only). */
  readonly cold: LatencyRun;
  /** After the kind's throughput rounds: the steady state of a long-running agent. */
  readonly steady: LatencyRun;
  readonly rounds: Throughput[];
}

/** CPUs this process may run on (Linux), from /proc/self/status; null where unknown. */
function allowedCpus(): number[] | null {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Cpus_allowed_list:'));
    if (!line) return null;
    const cpus: number[] = [];
    for (const part of line.slice(line.indexOf(':') + 1).trim().split(',')) {
      const [a, b] = part.split('-').map(Number);
      if (a === undefined || !Number.isInteger(a)) continue;
      for (let c = a; c <= (b ?? a); c++) cpus.push(c);
    }
    return cpus;
  } catch {
    return null;
  }
}

/** The pinned layout, or why it cannot be had here. */
function pinnedLayout(): Layout | string {
  const cpus = allowedCpus();
  if (cpus === null) return 'the CPUs this process may use are unknown (no /proc/self/status)';
  if (cpus.length < 2) return `only ${cpus.length} CPU available`;
  const [load, proxy] = cpus as [number, number];
  const check = spawnSync('taskset', ['-c', String(proxy), 'true']);
  if (check.error || check.status !== 0) return `taskset failed: ${check.error?.message ?? check.stderr.toString().trim()}`;
  return {
    name: 'pinned',
    description: `proxy alone on CPU ${proxy}; load generator and upstream together on CPU ${load}, direct and proxied alike (taskset)`,
    proxyCpus: String(proxy),
    loadCpus: String(load),
  };
}

function startNode(script: string, args: readonly string[], cpus: string | null, nodeOptions: readonly string[] = []): ChildProcess {
  const argv = [...nodeOptions, '--import', 'tsx', fileURLToPath(new URL(script, import.meta.url)), ...args];
  const child =
    cpus === null
      ? spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      : spawn('taskset', ['-c', cpus, process.execPath, ...argv], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal === null) console.log(`${script} exited with ${code}`);
  });
  return child;
}

/** The child's next message (after sending `message`, if given). */
function ask<T>(child: ChildProcess, message?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      child.off('exit', onExit);
      if (typeof m === 'object' && m !== null && 'error' in m) reject(new Error(String((m as { error: unknown }).error)));
      else resolve(m as T);
    };
    const onExit = (code: number | null): void => {
      child.off('message', onMessage);
      reject(new Error(`a bench process exited (${code}) before answering`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
    if (message !== undefined) child.send(message as string);
  });
}

const cpuOf = async (child: ChildProcess): Promise<number> => (await ask<{ cpuUs: number }>(child, 'cpu')).cpuUs;

async function runLayout(layout: Layout, rounds: number): Promise<{ results: ModeResult[]; delivery: DeliveryStats | null; sources: string }> {
  const profDir = process.env.TOKENWATT_PROXY_BENCH_PROF;
  const upstream = startNode('./proxy-upstream.ts', [String(SETTINGS.streamEvents)], layout.loadCpus);
  const children = [upstream];
  try {
    const upstreamUrl = `http://127.0.0.1:${(await ask<{ port: number }>(upstream)).port}`;
    // The proxy runs inside the agent in production, so with the agent's node flags.
    const proxy = startNode('./proxy-server.ts', [upstreamUrl], layout.proxyCpus, [...AGENT_NODE_FLAGS, ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])]);
    children.push(proxy);
    const started = await ask<{ port: number; relayPort: number; forwarderPort: number; sources: string }>(proxy);
    const proxiedUrl = `http://127.0.0.1:${started.port}`;
    const relayedUrl = `http://127.0.0.1:${started.relayPort}`;
    const forwardedUrl = `http://127.0.0.1:${started.forwarderPort}`;
    const client = startNode('./proxy-client.ts', [JSON.stringify(SETTINGS)], layout.loadCpus);
    children.push(client);
    await ask(client);

    const command = <T>(c: ClientCommand): Promise<T> => ask<T>(client, c);
    const results: ModeResult[] = [];
    for (const kind of CALL_KINDS) {
      const latency = async (): Promise<LatencyRun> => {
        const [direct = [], proxied = [], relayed = [], forwarded = []] = await command<LatencySample[][]>({
          cmd: 'latency',
          targets: [upstreamUrl, proxiedUrl, relayedUrl, forwardedUrl],
          kind,
        });
        return { direct, proxied, relayed, forwarded };
      };
      const cold = await latency();
      const measured: Throughput[] = [];
      for (let round = 0; round < rounds; round++) {
        // hopProcessCpu: the proxy process's CPU, which also hosts the relay and the forwarder.
        const one = async (base: string): Promise<{ rps: number; clientCpu: number; upstreamCpu: number; hopProcessCpu: number }> => {
          const [u0, p0] = [await cpuOf(upstream), await cpuOf(proxy)];
          const { rps, cpuUs } = await command<{ rps: number; cpuUs: number }>({ cmd: 'throughput', base, kind });
          const [u1, p1] = [await cpuOf(upstream), await cpuOf(proxy)];
          const n = SETTINGS.throughputRequests;
          return { rps, clientCpu: cpuUs / n, upstreamCpu: (u1 - u0) / n, hopProcessCpu: (p1 - p0) / n };
        };
        // alternate which goes first, so that drift on a shared machine falls on both
        let direct: Awaited<ReturnType<typeof one>>;
        let proxied: Awaited<ReturnType<typeof one>>;
        if (round % 2 === 0) {
          direct = await one(upstreamUrl);
          proxied = await one(proxiedUrl);
        } else {
          proxied = await one(proxiedUrl);
          direct = await one(upstreamUrl);
        }
        const relayed = await one(relayedUrl);
        const forwarded = await one(forwardedUrl);
        measured.push({
          directRps: direct.rps,
          proxiedRps: proxied.rps,
          relayedRps: relayed.rps,
          forwardedRps: forwarded.rps,
          proxyCpu: proxied.hopProcessCpu,
          relayCpu: relayed.hopProcessCpu,
          forwarderCpu: forwarded.hopProcessCpu,
          direct: { client: direct.clientCpu, upstream: direct.upstreamCpu },
          proxied: { client: proxied.clientCpu, upstream: proxied.upstreamCpu },
        });
      }
      results.push({ kind, cold, steady: await latency(), rounds: measured });
    }
    client.send('stop');
    const { delivery } = await ask<{ delivery: DeliveryStats | null }>(proxy, 'stop');
    return { results, delivery, sources: started.sources };
  } finally {
    for (const child of children) if (child.exitCode === null && child.connected) child.send('stop');
    await new Promise((r) => setTimeout(r, 200));
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

const fmt = (ms: number): string => ms.toFixed(3).padStart(9);
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

function report(layout: Layout, results: readonly ModeResult[], delivery: DeliveryStats | null, sources: string): void {
  console.log(`\n${layout.name}: ${layout.description}`);
  console.log(`proxy code: ${sources === 'dist' ? 'dist/ (built JavaScript, as deployed)' : 'TypeScript sources through tsx (dist/ missing or older than the sources)'}`);
  console.log(
    'mode         latency  metric        direct p50  direct p99   proxy p50   proxy p99   added p50   added p99 | relay added p50   p99 | fwd added p50   p99  (ms)',
  );
  for (const r of results) {
    const mode = KIND_LABELS[r.kind].padEnd(12);
    for (const [phase, run] of [['cold', r.cold], ['steady', r.steady]] as const) {
      for (const [index, metric] of ['first byte', 'total'].entries()) {
        const pick = (samples: readonly LatencySample[]): [number, number] => {
          const values = samples.map((s) => s[index] ?? Number.NaN);
          return [percentile(values, 50), percentile(values, 99)];
        };
        const [d50, d99] = pick(run.direct);
        const [p50, p99] = pick(run.proxied);
        const [b50, b99] = pick(run.relayed);
        const [f50, f99] = pick(run.forwarded);
        console.log(
          `${mode} ${phase.padEnd(8)} ${metric.padEnd(12)} ${fmt(d50)}  ${fmt(d99)}  ${fmt(p50)}  ${fmt(p99)}  ${fmt(p50 - d50)}  ${fmt(p99 - d99)} |     ${fmt(b50 - d50)} ${fmt(b99 - d99)} |   ${fmt(f50 - d50)} ${fmt(f99 - d99)}`,
        );
      }
    }
    const ratios = r.rounds.map((t) => (100 * t.proxiedRps) / t.directRps);
    const relayRatios = r.rounds.map((t) => (100 * t.relayedRps) / t.directRps);
    const forwardRatios = r.rounds.map((t) => (100 * t.forwardedRps) / t.directRps);
    const med = (pick: (t: Throughput) => number): number => percentile(r.rounds.map(pick), 50);
    console.log(
      `${mode} throughput            direct ${int(med((t) => t.directRps))} req/s, proxied ${int(med((t) => t.proxiedRps))} req/s (medians of ${r.rounds.length} rounds); ` +
        `ratio ${percentile(ratios, 50).toFixed(1)} % (rounds ${Math.min(...ratios).toFixed(1)}-${Math.max(...ratios).toFixed(1)} %); ` +
        `bare relay ${int(med((t) => t.relayedRps))} req/s, ${percentile(relayRatios, 50).toFixed(1)} % of direct; ` +
        `node:http forwarder ${int(med((t) => t.forwardedRps))} req/s, ${percentile(forwardRatios, 50).toFixed(1)} % of direct`,
    );
    const us = (pick: (t: Throughput) => number): string => `${med(pick).toFixed(0)} µs`;
    console.log(
      `${mode} CPU/request           proxy ${us((t) => t.proxyCpu)} (in its place: node:http forwarder ${us((t) => t.forwarderCpu)}, bare relay ${us((t) => t.relayCpu)}); client + upstream ${us((t) => t.direct.client)} + ${us((t) => t.direct.upstream)} direct, ` +
        `${us((t) => t.proxied.client)} + ${us((t) => t.proxied.upstream)} proxied (medians)`,
    );
  }
  console.log(`records delivered: ${delivery?.accepted ?? 0} (refused ${delivery?.refused ?? 0}, dropped ${delivery?.dropped ?? 0})`);
}

export async function benchProxy(): Promise<void> {
  const wanted = process.env.TOKENWATT_PROXY_BENCH_LAYOUT ?? 'both';
  const rounds = Math.max(1, Number(process.env.TOKENWATT_PROXY_BENCH_ROUNDS ?? 3) || 3);
  const { streamEvents, latencyRequests, throughputRequests, concurrency } = SETTINGS;
  const cpus = allowedCpus();
  console.log(
    `proxy bench: fast fake upstream, node ${process.version}, ${cpus?.length ?? '?'} CPUs; upstream, load generator and proxy in separate processes; ` +
      `${latencyRequests} sequential requests per side, throughput ${rounds} rounds of ${throughputRequests} requests per side at concurrency ${concurrency}, streams of ${streamEvents} events`,
  );
  const layouts: Layout[] = [];
  if (wanted !== 'unpinned') {
    const pinned = pinnedLayout();
    if (typeof pinned === 'string') console.log(`pinned layout not measured: ${pinned}; only the unpinned figures follow`);
    else layouts.push(pinned);
  }
  if (wanted !== 'pinned' || layouts.length === 0) {
    layouts.push({
      name: 'unpinned',
      description: `the three processes share all ${cpus?.length ?? '?'} CPUs, as the three threads of the earlier figures did: the proxy competes with the client and the upstream for CPU`,
      proxyCpus: null,
      loadCpus: null,
    });
  }
  for (const layout of layouts) {
    const { results, delivery, sources } = await runLayout(layout, rounds);
    report(layout, results, delivery, sources);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchProxy().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
