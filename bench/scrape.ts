import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { TokenwattMetrics } from '../exporters/prometheus/index.js';
import { BATCH_BUCKETS, CACHE_BUCKETS } from '../model/buckets.js';

/**
 * How long a Prometheus scrape of tokenwatt takes at its worst cardinality: every user label at
 * its value cap and tokenwatt_energy_joules_total at its series budget. Prints p50/p99, beside the
 * target (p99 <= 10 ms), of:
 *  - `metrics()` between settlements (the settled text is already rendered),
 *  - a real GET /metrics over loopback HTTP with a settlement before every scrape (its render runs
 *    off the scrape path, as in the agent),
 *  - the render itself after a settlement: event-loop time the agent spends once per settlement,
 *    and what a scrape costs when it lands before that render.
 * Figures only: benchmarks never assert timings.
 */

const LABEL_CAP = 50;
const SCRAPES = 200;
const HTTP_SCRAPES = 100;
const TARGET_P99_MS = 10;
const MODELS = [['llama-3.1-8b', 'small'], ['llama-3.1-70b', 'large'], ['qwen3-14b', 'medium'], ['qwen3-32b', 'medium']] as const;
const STATUSES = ['ok', 'error', 'cancelled'] as const;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** One settlement's worth of change: a request and the settlement mark. */
function settleOnce(metrics: TokenwattMetrics, i: number): void {
  metrics.requestFinalized({
    model: 'llama-3.1-8b', tier: 'small', status: 'ok', cacheBucket: 'hit', batchBucket: '1', labels: { team: 'team-1', feature: 'feature-1' },
    staticJ: 1, dynamicJ: 2, joules: 3, promptTokens: 10, cachedTokens: 10, completionTokens: 5, reasoningTokens: 0,
  });
  metrics.settled(1_700_000_000_000 + i * 10_000, 1_700_000_120_000 + i * 10_000, 1e-9);
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Fill every label to its cap and the energy metric past its series budget. Returns requests fed. */
function fill(metrics: TokenwattMetrics): number {
  let n = 0;
  // Every (model, cache, batch, status) x (team, feature) combination, team and feature each going
  // one past the cap so the "other" series exist too; the series budget stops the growth.
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
  metrics.settled(Date.now() - 120_000, Date.now(), 1e-9);
  return n;
}

/** Run `times` times after a warm-up; `selfTimed` runs return their own duration in ms. */
async function timeIt(times: number, run: () => Promise<unknown>, selfTimed = false): Promise<number[]> {
  for (let i = 0; i < 5; i += 1) await run(); // warm up the JIT
  const samples: number[] = [];
  for (let i = 0; i < times; i += 1) {
    const start = performance.now();
    const result = await run();
    samples.push(selfTimed ? (result as number) : performance.now() - start);
  }
  return samples.sort((a, b) => a - b);
}

function httpGet(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on('end', () => resolve(bytes));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** One result line; scrape lines show the target beside them, the render line what it costs instead. */
function line(label: string, samples: readonly number[], note?: string): string {
  const p99 = percentile(samples, 99);
  const beside = note ?? `target p99 <= ${TARGET_P99_MS} ms: ${p99 <= TARGET_P99_MS ? 'met' : 'MISSED'}`;
  return `  ${label.padEnd(18)} p50 ${percentile(samples, 50).toFixed(2)} ms  p99 ${p99.toFixed(2)} ms  (${beside})`;
}

export async function benchScrape(): Promise<void> {
  const metrics = new TokenwattMetrics({ labelCap: LABEL_CAP });
  const requests = fill(metrics);
  const text = await metrics.metrics();
  const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  console.log(`scrape: ${requests.toLocaleString('en-US')} requests fed, ${series.toLocaleString('en-US')} series, ${(Buffer.byteLength(text) / 1e6).toFixed(2)} MB per scrape`);
  console.log(line('metrics()', await timeIt(SCRAPES, () => metrics.metrics())));
  let i = 0;
  console.log(line('render/settlement', await timeIt(SCRAPES / 4, () => {
    settleOnce(metrics, (i += 1));
    return metrics.metrics(); // lands before the background render: pays for it
  }), 'event-loop time once per settlement, off the scrape path; a scrape landing first pays it'));

  const server: Server = createServer((_req, res) => {
    metrics
      .metrics()
      .then((body) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(body);
      })
      .catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    console.log(line('HTTP GET /metrics', await timeIt(HTTP_SCRAPES, async () => {
      settleOnce(metrics, (i += 1));
      await nextTurn(); // the agent's settle tick ends; the background render runs before the scrape arrives
      const start = performance.now();
      await httpGet(port);
      return performance.now() - start;
    }, true)));
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchScrape().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
