/**
 * Attribution throughput: requests settled per second by `settlePeriod` for 8 GPUs sampled at 10 Hz
 * in 10 s periods, on synthetic seeded workloads (no I/O: the pure model only). Prints figures; never
 * asserts timings.  Run: node --import tsx bench/attribution.ts
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../model/attribution-config.js';
import type { GpuPeriodInput } from '../model/attribution-types.js';
import { settlePeriod } from '../model/attribution.js';
import { worstResidualJ } from '../model/conservation.js';
import type { PowerSample } from '../model/power-sample.js';
import type { ResolvedRequest } from '../model/request-record.js';
import { isFinalAfter } from '../model/request-result.js';
import { epochMs, joules, watts } from '../model/units.js';

const GPUS = 8;
const SAMPLE_MS = 100;
const PERIOD_MS = 10_000;
const T0 = 1_779_998_400_000;

/** mulberry32: deterministic, so every run settles the same workload. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Scenario {
  readonly name: string;
  /** Requests active at once per GPU, on average. */
  readonly concurrency: number;
  readonly promptTokens: readonly [number, number];
  readonly completionTokens: readonly [number, number];
  /** Decode time per output token (ms). */
  readonly itlMs: number;
  /** GPUs per replica (tensor parallelism). */
  readonly tensorParallel: number;
}

const SCENARIOS: readonly Scenario[] = [
  { name: 'chat: 32 concurrent/GPU, ~4 s requests', concurrency: 32, promptTokens: [100, 4000], completionTokens: [20, 400], itlMs: 20, tensorParallel: 1 },
  { name: 'short: 64 concurrent/GPU, ~0.5 s requests', concurrency: 64, promptTokens: [50, 1000], completionTokens: [1, 60], itlMs: 12, tensorParallel: 1 },
  { name: 'long: 128 concurrent/GPU, ~15 s requests', concurrency: 128, promptTokens: [1000, 16000], completionTokens: [200, 1000], itlMs: 25, tensorParallel: 1 },
  { name: 'tensor parallel x4: 64 concurrent/replica, ~4 s', concurrency: 64, promptTokens: [100, 4000], completionTokens: [20, 400], itlMs: 20, tensorParallel: 4 },
];

function workload(s: Scenario, seconds: number, seed: number): { samples: PowerSample[][]; requests: ResolvedRequest[] } {
  const rand = prng(seed);
  const between = ([lo, hi]: readonly [number, number]): number => Math.floor(lo + rand() * (hi - lo));
  const samples: PowerSample[][] = [];
  for (let g = 0; g < GPUS; g += 1) {
    const list: PowerSample[] = [];
    let counter = 1e6 * rand();
    for (let t = T0 - SAMPLE_MS; t <= T0 + seconds * 1000 + SAMPLE_MS; t += SAMPLE_MS) {
      const power = 250 + rand() * 400;
      const at = t + Math.round((rand() - 0.5) * 10); // sampling jitter
      list.push({ timestampMs: epochMs(at), gpuUuid: `GPU-${g}`, gpuIndex: g, powerW: watts(power), energyJ: joules(counter) });
      counter += (power * SAMPLE_MS) / 1000;
    }
    samples.push(list);
  }
  const requests: ResolvedRequest[] = [];
  const replicas = GPUS / s.tensorParallel;
  for (let rep = 0; rep < replicas; rep += 1) {
    const gpus = Array.from({ length: s.tensorParallel }, (_, k) => `GPU-${rep * s.tensorParallel + k}`);
    const meanPrompt = (s.promptTokens[0] + s.promptTokens[1]) / 2;
    const meanCompletion = (s.completionTokens[0] + s.completionTokens[1]) / 2;
    const meanDuration = 30 + meanPrompt * 0.05 + meanCompletion * s.itlMs;
    const gapMs = meanDuration / s.concurrency; // Poisson arrivals at concurrency / mean duration
    for (let t = T0 - 20_000; t < T0 + seconds * 1000; t += -Math.log(1 - rand()) * gapMs) {
      const prompt = between(s.promptTokens);
      const completion = between(s.completionTokens);
      const startMs = Math.round(t);
      const firstTokenMs = startMs + Math.round(30 + prompt * 0.05);
      const endMs = firstTokenMs + Math.round(completion * s.itlMs * (0.8 + rand() * 0.4));
      requests.push({
        requestId: `r-${rep}-${requests.length}`,
        taskId: null,
        attempt: null,
        model: 'bench-model',
        tier: 'bench',
        gpus,
        startMs: epochMs(startMs),
        firstTokenMs: epochMs(firstTokenMs),
        endMs: epochMs(endMs),
        promptTokens: prompt,
        cachedTokens: rand() < 0.5 ? Math.floor(prompt * rand()) : 0,
        completionTokens: completion,
        reasoningTokens: 0,
        batchSize: null,
        status: 'ok',
        labels: {},
        tokensEstimated: false,
        granularity: 'request',
        source: 'bench',
      });
    }
  }
  requests.sort((x, y) => x.startMs - y.startMs);
  return { samples, requests };
}

/** Samples of [p0, p1) plus the neighbour on each side (what the settler passes). */
function windowOf(samples: readonly PowerSample[], p0: number, p1: number): PowerSample[] {
  let from = 0;
  while (from + 1 < samples.length && (samples[from + 1] as PowerSample).timestampMs <= p0) from += 1;
  let to = from;
  while (to < samples.length && (samples[to] as PowerSample).timestampMs < p1) to += 1;
  return samples.slice(from, Math.min(to + 1, samples.length));
}

interface ScenarioRun {
  readonly requests: number;
  readonly periods: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly worstPeriodMs: number;
  readonly requestPeriods: number;
  readonly worstResidualJ: number;
}

/** Settle `seconds` of the scenario period by period; only the settlePeriod calls are timed. */
function runScenario(s: Scenario, seconds: number, seed: number): ScenarioRun {
  const { samples, requests } = workload(s, seconds, seed);
  const settled = new Set<string>();
  let next = 0;
  let open: ResolvedRequest[] = [];
  let wallMs = 0;
  let cpuMs = 0;
  let worstPeriodMs = 0;
  let worstResidual = 0;
  let requestPeriods = 0;
  const periods = (seconds * 1000) / PERIOD_MS;
  for (let p = 0; p < periods; p += 1) {
    const p0 = T0 + p * PERIOD_MS;
    const p1 = p0 + PERIOD_MS;
    while (next < requests.length && (requests[next] as ResolvedRequest).startMs < p1) open.push(requests[next++] as ResolvedRequest);
    open = open.filter((r) => !isFinalAfter(r, p0));
    const gpus: GpuPeriodInput[] = samples.map((list, g) => ({ gpuUuid: `GPU-${g}`, gpuIndex: g, samples: windowOf(list, p0, p1), idleBaselineW: watts(70) }));
    const began = performance.now();
    const cpu = process.cpuUsage();
    const result = settlePeriod({ periodStartMs: epochMs(p0), periodEndMs: epochMs(p1), gpus, requests: open, config: DEFAULT_ATTRIBUTION_CONFIG });
    const used = process.cpuUsage(cpu);
    const took = performance.now() - began;
    wallMs += took;
    cpuMs += (used.user + used.system) / 1000;
    worstPeriodMs = Math.max(worstPeriodMs, took);
    worstResidual = Math.max(worstResidual, worstResidualJ(result.gpus));
    requestPeriods += open.length;
    for (const r of open) if (isFinalAfter(r, p1) && r.startMs >= T0) settled.add(r.requestId);
  }
  return { requests: settled.size, periods, wallMs, cpuMs, worstPeriodMs, requestPeriods, worstResidualJ: worstResidual };
}

/** Best of `repeats` runs (least wall time): other processes only ever add time. */
function best(s: Scenario, repeats: number): ScenarioRun {
  let chosen: ScenarioRun | null = null;
  for (let i = 0; i < repeats; i += 1) {
    const run = runScenario(s, 120, 7);
    if (chosen === null || run.wallMs < chosen.wallMs) chosen = run;
  }
  return chosen as ScenarioRun;
}

export async function benchAttribution(): Promise<void> {
  const repeats = 7; // a scenario times only ~10-50 ms: more runs so one preemption cannot set the figure
  console.log(
    `settlePeriod: ${GPUS} GPUs, ${1000 / SAMPLE_MS} Hz samples with energy counter, ${PERIOD_MS / 1000} s periods, ` +
      `120 s of synthetic seeded workload per scenario, best of ${repeats} runs`,
  );
  for (const s of SCENARIOS) runScenario(s, 30, 99); // warm-up: let the JIT settle first
  for (const s of SCENARIOS) {
    const r = best(s, repeats);
    const rate = (ms: number): string => Math.round((r.requests / ms) * 1000).toLocaleString('en-US');
    console.log(
      `${s.name.padEnd(48)} ${String(r.requests).padStart(6)} requests: ` +
        `${rate(r.wallMs)} requests/s settled (${rate(r.cpuMs)} per CPU-second); ` +
        `${(r.wallMs / r.periods).toFixed(2)} ms/period (max ${r.worstPeriodMs.toFixed(2)}), ` +
        `${((r.wallMs * 1000) / r.requestPeriods).toFixed(2)} µs per request-period; worst |residual| ${r.worstResidualJ.toExponential(1)} J`,
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchAttribution();
}
