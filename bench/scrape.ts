import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants as perfConstants, performance, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HttpServer } from '../agent/http-server.js';
import { acceptsGzip, serveMetrics, TokenwattMetrics } from '../exporters/prometheus/index.js';
import { BATCH_BUCKETS, CACHE_BUCKETS } from '../model/buckets.js';
import type { ScrapeReply, ScrapeRequest } from './scrape-client.js';

/**
 * How long a Prometheus scrape of tokenwatt takes at its worst cardinality: every user label at
 * its value cap and tokenwatt_energy_joules_total at its series budget. Prints p50/p99/max, beside
 * the target (p99 <= 10 ms), of:
 *  - `metrics()` between settlements (the settled text is already rendered),
 *  - the render after a settlement: time the agent spends once per settlement, when one label set
 *    changed and when every series changed (a busy settlement), in wall time and (on Linux) in
 *    main-thread CPU time, which leaves out waiting for a core on a busy machine,
 *  - a real GET /metrics over loopback HTTP, through the agent's own HttpServer and /metrics
 *    handler, on a keep-alive connection like Prometheus's, with a settlement before every scrape
 *    (the worst case: its render, and for gzip its compression, have only just started), plain
 *    and with `Accept-Encoding: gzip` as Prometheus sends it. The scraper is a separate process
 *    (bench/scrape-client.ts), as Prometheus is, so what it receives does not load this heap;
 *    it times from the request to the last byte received and only counts bytes (Prometheus
 *    decompresses on its side). One plain and one gzip body are checked to be the same text.
 *    Beside each, the floor: the same bytes served from a fixed buffer by the same server to the
 *    same client, which shows what this machine's loopback and scheduling add at p99 by themselves.
 *    1,000 scrapes each, so that p99 is the tenth-slowest rather than the second.
 * Figures only: benchmarks never assert timings.
 */

const LABEL_CAP = 50;
const SCRAPES = 200;
const HTTP_SCRAPES = 1000;
const BUSY_SETTLEMENTS = 20;
const TARGET_P99_MS = 10;
const MODELS = [['llama-3.1-8b', 'small'], ['llama-3.1-70b', 'large'], ['qwen3-14b', 'medium'], ['qwen3-32b', 'medium']] as const;
const STATUSES = ['ok', 'error', 'cancelled'] as const;
const CLIENT = fileURLToPath(new URL('./scrape-client.ts', import.meta.url));
const SILENT = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

/**
 * On-CPU time of the main thread in ms (Linux schedstat), or null elsewhere. Unlike wall time it
 * leaves out time spent waiting for a core, so it stays meaningful on a shared, busy machine.
 */
function mainThreadCpuMs(): number | null {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return null;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** One settlement's worth of change: a request and the settlement mark. */
function settleOnce(metrics: TokenwattMetrics, i: number): void {
  metrics.requestFinalized({
    model: 'llama-3.1-8b', tier: 'small', status: 'ok', cacheBucket: 'hit', batchBucket: '1', labels: { team: 'team-1', feature: 'feature-1' },
    staticJ: 1, dynamicJ: 2, joules: 3, promptTokens: 10, cachedTokens: 10, completionTokens: 5, reasoningTokens: 0,
  });
  metrics.settled(1_700_000_000_000 + i * 10_000, 1e-9);
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Every (model, cache, batch, status) x (team, feature) combination, team and feature each going
 * one past the cap so the "(other)" series exist too; the series budget stops the growth. Fed once
 * it fills the labels; fed again it is a busy settlement that moves every series. Returns requests fed.
 */
function feedEveryLabelSet(metrics: TokenwattMetrics): number {
  let n = 0;
  for (let team = 0; team <= LABEL_CAP; team += 1) {
    for (const [model, tier] of MODELS) {
      for (const cacheBucket of CACHE_BUCKETS) {
        for (const batchBucket of BATCH_BUCKETS) {
          for (const status of STATUSES) {
            const feature = n % (LABEL_CAP + 1);
            metrics.requestFinalized({
              model, tier, status, cacheBucket, batchBucket,
              labels: { team: `team-${team}`, feature: `feature-${feature}` },
              staticJ: 3, dynamicJ: 9, joules: 12, promptTokens: 500, cachedTokens: 100, completionTokens: 200, reasoningTokens: 20,
            });
            n += 1;
          }
        }
      }
    }
  }
  return n;
}

/** Fill every label to its cap and the energy metric past its series budget. Returns requests fed. */
function fill(metrics: TokenwattMetrics): number {
  const n = feedEveryLabelSet(metrics);
  for (let gpu = 0; gpu < 8; gpu += 1) {
    metrics.setGpuPower(gpu, `GPU-${gpu}`, 300);
    metrics.addMeasuredEnergy(gpu, `GPU-${gpu}`, 1e6);
    metrics.addIdleEnergy(gpu, 1e5);
    metrics.sampleTaken(gpu, 1000);
  }
  for (const [, tier] of MODELS) {
    metrics.taskFinalized({ tier, succeeded: true, joules: 500, wasteJ: 50 });
    metrics.taskFinalized({ tier, succeeded: false, joules: 500, wasteJ: 100 });
  }
  metrics.setPowerSourceInfo({ kind: 'nvml', energyCounter: true, powerAveraged: false, simulated: false });
  metrics.settled(Date.now() - 120_000, 1e-9);
  return n;
}

/** Run `times` times after a warm-up; `selfTimed` runs return their own duration in ms. */
async function timeIt(times: number, run: () => Promise<unknown>, selfTimed = false, warmUp = 5): Promise<number[]> {
  for (let i = 0; i < warmUp; i += 1) await run(); // warm up the JIT
  const samples: number[] = [];
  for (let i = 0; i < times; i += 1) {
    const start = performance.now();
    const result = await run();
    samples.push(selfTimed ? (result as number) : performance.now() - start);
  }
  return samples.sort((a, b) => a - b);
}

/** The scraper process (bench/scrape-client.ts), asked one thing at a time over IPC. */
class Scraper {
  private readonly child: ChildProcess;
  private pending: { resolve: (reply: ScrapeReply) => void; reject: (error: Error) => void } | null = null;

  constructor(port: number) {
    // Its own node, without the agent's flags: it stands for Prometheus, not for the agent.
    this.child = fork(CLIENT, [String(port)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (reply: ScrapeReply) => {
      const pending = this.pending;
      this.pending = null;
      if (pending === null) return;
      if ('error' in reply) pending.reject(new Error(`scrape client: ${reply.error}`));
      else pending.resolve(reply);
    });
    this.child.on('exit', (code) => this.pending?.reject(new Error(`scrape client exited with ${code}`)));
  }

  ask(request: ScrapeRequest): Promise<ScrapeReply> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.child.send(request);
    });
  }

  async scrape(gzip: boolean, path?: string): Promise<number> {
    const reply = await this.ask(path === undefined ? { kind: 'scrape', gzip } : { kind: 'scrape', gzip, path });
    if (!('ms' in reply)) throw new Error('scrape client: no timing in its answer');
    return reply.ms;
  }

  close(): void {
    this.child.disconnect();
  }
}

/** One result line; scrape lines show the target beside them, the others what they cost instead. */
function line(label: string, samples: readonly number[], note?: string): string {
  const p99 = percentile(samples, 99);
  const beside = note ?? `target p99 <= ${TARGET_P99_MS} ms: ${p99 <= TARGET_P99_MS ? 'met' : 'MISSED'}`;
  const max = samples[samples.length - 1] ?? NaN;
  return `  ${label.padEnd(28)} p50 ${percentile(samples, 50).toFixed(2)} ms  p99 ${p99.toFixed(2)} ms  max ${max.toFixed(2)} ms  (${beside})`;
}

export async function benchScrape(): Promise<void> {
  // A fixed clock for the settle lag (read at each scrape): the client checks that a gzip body
  // and a plain one carry the same text, which a lag that moves between the two would break.
  const settledAtMs = Date.now();
  const metrics = new TokenwattMetrics({ labelCap: LABEL_CAP, now: () => settledAtMs });
  const requests = fill(metrics);
  const text = await metrics.metrics();
  const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  const gzipped = await metrics.scrape({ gzip: true });
  console.log(`scrape: ${requests.toLocaleString('en-US')} requests fed, ${series.toLocaleString('en-US')} series, ${(Buffer.byteLength(text) / 1e6).toFixed(2)} MB per scrape (${(gzipped.byteLength / 1e6).toFixed(3)} MB gzip)`);
  console.log(line('metrics()', await timeIt(SCRAPES, () => metrics.metrics())));
  let i = 0;
  const renderCpu: number[] = [];
  console.log(line('render/settlement', await timeIt(SCRAPES / 4, async () => {
    settleOnce(metrics, (i += 1));
    const cpu = mainThreadCpuMs();
    await metrics.rendered();
    if (cpu !== null) renderCpu.push((mainThreadCpuMs() ?? NaN) - cpu);
  }), 'once per settlement (one label set changed); a scrape landing first waits for it'));
  if (renderCpu.length > 0) console.log(line('  main-thread CPU', renderCpu.sort((a, b) => a - b), 'of that: event-loop time, without waiting for a core'));
  const busy: number[] = [];
  const busyCpu: number[] = [];
  const busyGzip: number[] = [];
  for (let k = 0; k < BUSY_SETTLEMENTS; k += 1) {
    feedEveryLabelSet(metrics);
    settleOnce(metrics, (i += 1));
    let start = performance.now();
    const cpu = mainThreadCpuMs();
    await metrics.rendered();
    busy.push(performance.now() - start);
    if (cpu !== null) busyCpu.push((mainThreadCpuMs() ?? NaN) - cpu);
    start = performance.now();
    await metrics.scrape({ gzip: true });
    busyGzip.push(performance.now() - start);
  }
  console.log(line('render/busy settlement', busy.sort((a, b) => a - b), 'the same when every series changed; it yields every few ms'));
  if (busyCpu.length > 0) console.log(line('  main-thread CPU', busyCpu.sort((a, b) => a - b), 'of that'));
  console.log(line('  then gzip scrape()', busyGzip.sort((a, b) => a - b), 'waits for the threadpool to compress every segment'));

  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: SILENT });
  server.route('GET', '/metrics', (req, res) => serveMetrics(metrics, req, res));
  // The floor: the same bytes from a fixed buffer (no settlement, no render), through the same
  // server and client. What it shows at p99 is this machine's loopback and scheduling, not tokenwatt.
  const fixed = { plain: await metrics.scrape({ gzip: false }), gzip: await metrics.scrape({ gzip: true }) };
  const fixedBody = { plain: Buffer.concat(fixed.plain.chunks), gzip: Buffer.concat(fixed.gzip.chunks) };
  server.route('GET', '/fixed', (req, res) => {
    const gzip = acceptsGzip(req.headers['accept-encoding']);
    res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': (gzip ? fixedBody.gzip : fixedBody.plain).length, ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
    res.end(gzip ? fixedBody.gzip : fixedBody.plain);
  });
  const { port } = await server.listen();
  const scraper = new Scraper(port);
  // Full (mark-compact) collections in this process during each phase: the p99 is where they land.
  let majorGcs = 0;
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if ((entry as { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) majorGcs += 1;
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  try {
    // The gzip body is exactly the plain text (nothing changes between the two scrapes).
    await scraper.ask({ kind: 'compare' });
    for (const encoding of [false, true]) {
      const name = encoding ? 'gzip' : 'plain';
      majorGcs = 0;
      const scrapes = await timeIt(HTTP_SCRAPES, async () => {
        settleOnce(metrics, (i += 1));
        await nextTurn(); // the agent's settle tick ends; the background render runs before the scrape arrives
        return scraper.scrape(encoding);
      }, true);
      console.log(line(`HTTP GET /metrics ${name}`, scrapes));
      console.log(`    ${HTTP_SCRAPES} scrapes, each after a settlement; full collections in this process meanwhile: ${majorGcs}`);
      console.log(line(`  floor: fixed ${name} body`, await timeIt(HTTP_SCRAPES, () => scraper.scrape(encoding, '/fixed'), true), 'the same bytes from a fixed buffer: the machine, not tokenwatt'));
    }
  } finally {
    gcObserver.disconnect();
    scraper.close();
    await server.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchScrape().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
