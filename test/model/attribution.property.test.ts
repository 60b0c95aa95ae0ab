import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { AttributionConfig, GpuPeriodInput, PeriodSettlement, RequestPeriodShare } from '../../model/attribution-types.js';
import { settlePeriod } from '../../model/attribution.js';
import { conservationResidual, conservationTolerance } from '../../model/conservation.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, watts } from '../../model/units.js';
import { CONFIG, close, prng, referenceSettle, request, sample, T0 } from './helpers.js';

/**
 * Randomized workloads: GPU counts, jittered sampling, missing readings, counter resets, GPUs
 * without counters, short gaps and unattributable ones, zero-length requests and phases, multi-GPU
 * requests, fractional timestamps. Every property is checked on every period and GPU.
 */

interface Workload {
  readonly gpus: GpuPeriodInput[];
  readonly requests: ResolvedRequest[];
  readonly windowMs: number;
  readonly cuts: number[];
  readonly config: AttributionConfig;
}

function workload(seed: number, gpuCount: number, requestCount: number, seconds: number, periods: number): Workload {
  const rand = prng(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const windowMs = seconds * 1000;
  const gpus: GpuPeriodInput[] = [];
  for (let g = 0; g < gpuCount; g += 1) {
    const uuid = `gpu-${g}`;
    const hasCounter = rand() < 0.7;
    const samples: PowerSample[] = [];
    let t = T0 - 50 - Math.floor(rand() * 400);
    let counter = rand() * 1e6;
    let power = 60 + rand() * 600;
    while (t < T0 + windowMs + 400) {
      const missingPower = rand() < 0.05;
      const missingCounter = rand() < 0.03;
      samples.push(sample(uuid, t, missingPower ? null : power, hasCounter && !missingCounter ? counter : null, g));
      const gapRoll = rand();
      const step = gapRoll < 0.02 ? 2500 + rand() * 1500 : gapRoll < 0.06 ? 350 + rand() * 800 : 80 + rand() * 40;
      const nextPower = Math.max(0, power + (rand() - 0.5) * 200);
      counter += ((power + nextPower) / 2) * (step / 1000) * (0.9 + rand() * 0.2);
      if (rand() < 0.02) counter = rand() * 100; // driver reload
      power = nextPower;
      t += rand() < 0.2 ? step : Math.round(step);
    }
    gpus.push({ gpuUuid: uuid, gpuIndex: g, samples, idleBaselineW: rand() < 0.3 ? null : watts(30 + rand() * 150) });
  }
  const requests: ResolvedRequest[] = [];
  for (let i = 0; i < requestCount; i += 1) {
    const start = T0 - 1500 + rand() * (windowMs + 2000);
    const durationRoll = rand();
    const duration = durationRoll < 0.1 ? 0 : durationRoll < 0.2 ? rand() * 50 : rand() * 3000;
    const startMs = rand() < 0.5 ? Math.round(start) : start;
    const endMs = startMs + (rand() < 0.5 ? Math.round(duration) : duration);
    const ftRoll = rand();
    const firstTokenMs = ftRoll < 0.3 ? null : ftRoll < 0.4 ? startMs : ftRoll < 0.5 ? endMs : startMs + rand() * (endMs - startMs);
    const promptTokens = rand() < 0.1 ? 0 : Math.floor(rand() * 4000);
    const gpuList = gpus.filter(() => rand() < 0.5).map((g) => g.gpuUuid);
    requests.push(
      request({
        requestId: `r${i}`,
        startMs,
        endMs,
        firstTokenMs,
        promptTokens,
        cachedTokens: Math.floor(rand() * promptTokens),
        completionTokens: rand() < 0.15 ? 0 : Math.floor(rand() * 500),
        gpus: gpuList.length > 0 ? gpuList : [pick(gpus).gpuUuid],
      }),
    );
  }
  const cuts = [...new Set(Array.from({ length: periods - 1 }, () => T0 + 1000 * (1 + Math.floor(rand() * (seconds - 1)))))].sort((a, b) => a - b);
  const config: AttributionConfig = { ...CONFIG, wPrefill: 0.05 + rand() * 0.5, wCached: rand() * 0.05 };
  return { gpus, requests, windowMs, cuts, config };
}

function settle(w: Workload, from: number, to: number, requests = w.requests): PeriodSettlement {
  return settlePeriod({ periodStartMs: epochMs(from), periodEndMs: epochMs(to), gpus: w.gpus, requests, config: w.config });
}

const arbitraryWorkload = fc
  .record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    gpuCount: fc.integer({ min: 1, max: 4 }),
    requestCount: fc.integer({ min: 0, max: 40 }),
    seconds: fc.integer({ min: 2, max: 8 }),
    periods: fc.integer({ min: 1, max: 6 }),
  })
  .map(({ seed, gpuCount, requestCount, seconds, periods }) => workload(seed, gpuCount, requestCount, seconds, periods));

const key = (s: RequestPeriodShare): string => `${s.requestId}@${s.gpuUuid}`;

test('property: conservation and non-negativity on every period and GPU', () => {
  fc.assert(
    fc.property(arbitraryWorkload, (w) => {
      const bounds = [T0, ...w.cuts, T0 + w.windowMs];
      for (let i = 0; i + 1 < bounds.length; i += 1) {
        const s = settle(w, bounds[i] as number, bounds[i + 1] as number);
        for (const g of s.gpus) {
          const given = s.shares.filter((x) => x.gpuUuid === g.gpuUuid).reduce((sum, x) => sum + x.staticJ + x.dynamicJ, 0);
          const residual = g.measuredJ - (g.idleJ + given + g.unattributedJ);
          const tolerance = conservationTolerance(g.measuredJ);
          assert.ok(Math.abs(residual) <= tolerance, `GPU ${g.gpuUuid} period ${i}: residual ${residual} (measured ${g.measuredJ})`);
          assert.ok(Math.abs(conservationResidual(g).absoluteJ) <= tolerance);
          assert.ok(Math.abs(g.residualJ) <= tolerance);
          for (const v of [g.measuredJ, g.idleJ, g.staticJ, g.dynamicJ, g.unattributedJ, g.estimatedJ, g.coveredMs, g.idleMs]) assert.ok(v >= 0);
          assert.ok(g.estimatedJ <= g.measuredJ * (1 + 1e-12) + 1e-12);
        }
        for (const x of s.shares) {
          for (const v of [x.staticJ, x.dynamicJ, x.prefillJ, x.decodeJ, x.activeMs, x.concurrencyMs]) assert.ok(v >= 0, `${key(x)} negative`);
          assert.ok(close(x.prefillJ + x.decodeJ, x.staticJ + x.dynamicJ, 1e-12, 1e-12), `${key(x)}: phases do not add up`);
          assert.ok(x.concurrencyMs >= x.activeMs * (1 - 1e-12), `${key(x)}: concurrency below 1`);
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('property: the fast sweep matches the literal rules (brute force over intervals x requests)', () => {
  fc.assert(
    fc.property(arbitraryWorkload, (w) => {
      const from = T0;
      const to = T0 + w.windowMs;
      const s = settle(w, from, to);
      for (const gpu of w.gpus) {
        const onGpu = w.requests.filter((r) => r.gpus.includes(gpu.gpuUuid));
        const ref = referenceSettle(gpu.samples, onGpu, from, to, gpu.idleBaselineW, w.config);
        const got = s.gpus.find((g) => g.gpuUuid === gpu.gpuUuid);
        assert.ok(got);
        const tol = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * ref.measuredJ + 1e-9;
        assert.ok(tol(got.measuredJ, ref.measuredJ), `measured ${got.measuredJ} vs ${ref.measuredJ}`);
        assert.ok(tol(got.idleJ, ref.idleJ), `idle ${got.idleJ} vs ${ref.idleJ}`);
        assert.ok(tol(got.unattributedJ, ref.unattributedJ));
        const shares = s.shares.filter((x) => x.gpuUuid === gpu.gpuUuid);
        assert.deepEqual(shares.map((x) => x.requestId).sort(), [...ref.shares.keys()].sort());
        for (const x of shares) {
          const r = ref.shares.get(x.requestId);
          assert.ok(r);
          for (const field of ['staticJ', 'dynamicJ', 'prefillJ', 'decodeJ'] as const) {
            assert.ok(tol(x[field], r[field]), `${key(x)} ${field}: ${x[field]} vs reference ${r[field]}`);
          }
          assert.ok(close(x.activeMs, r.activeMs), `${key(x)} activeMs`);
          assert.ok(close(x.concurrencyMs, r.concurrencyMs, 1e-9, 1e-6), `${key(x)} concurrency ${x.concurrencyMs} vs ${r.concurrencyMs}`);
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('property: settling in periods gives the same as settling the whole window at once', () => {
  fc.assert(
    fc.property(arbitraryWorkload, (w) => {
      const whole = settle(w, T0, T0 + w.windowMs);
      const bounds = [T0, ...w.cuts, T0 + w.windowMs];
      const parts = bounds.slice(0, -1).map((b, i) => settle(w, b, bounds[i + 1] as number));
      for (const g of whole.gpus) {
        const pieces = parts.map((p) => p.gpus.find((x) => x.gpuUuid === g.gpuUuid));
        const sum = (f: (t: NonNullable<(typeof pieces)[number]>) => number): number => pieces.reduce((acc, t) => acc + (t ? f(t) : 0), 0);
        const tol = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * g.measuredJ + 1e-9;
        for (const field of ['measuredJ', 'idleJ', 'staticJ', 'dynamicJ', 'unattributedJ', 'estimatedJ'] as const) {
          assert.ok(tol(sum((t) => t[field]), g[field]), `${g.gpuUuid} ${field}: ${sum((t) => t[field])} vs ${g[field]}`);
        }
        for (const field of ['counterResets', 'gaps', 'samples'] as const) assert.equal(sum((t) => t[field]), g[field], field);
        assert.ok(close(sum((t) => t.coveredMs), g.coveredMs) && close(sum((t) => t.idleMs), g.idleMs));
      }
      const summed = new Map<string, { j: number; prefill: number; active: number; conc: number; est: boolean }>();
      for (const p of parts) {
        for (const x of p.shares) {
          const acc = summed.get(key(x)) ?? { j: 0, prefill: 0, active: 0, conc: 0, est: false };
          acc.j += x.staticJ + x.dynamicJ;
          acc.prefill += x.prefillJ;
          acc.active += x.activeMs;
          acc.conc += x.concurrencyMs;
          acc.est ||= x.estimated;
          summed.set(key(x), acc);
        }
      }
      assert.deepEqual([...summed.keys()].sort(), whole.shares.map(key).sort());
      for (const x of whole.shares) {
        const acc = summed.get(key(x));
        assert.ok(acc);
        const measured = whole.gpus.find((g) => g.gpuUuid === x.gpuUuid)?.measuredJ ?? 0;
        assert.ok(Math.abs(acc.j - (x.staticJ + x.dynamicJ)) <= 1e-9 * measured + 1e-9, `${key(x)} joules`);
        assert.ok(Math.abs(acc.prefill - x.prefillJ) <= 1e-9 * measured + 1e-9, `${key(x)} prefill`);
        assert.ok(close(acc.active, x.activeMs) && close(acc.conc, x.concurrencyMs, 1e-9, 1e-6), `${key(x)} time`);
        assert.equal(acc.est, x.estimated, `${key(x)} estimated`);
      }
    }),
    { numRuns: 150 },
  );
});

test('property: the result does not depend on the order of the requests', () => {
  fc.assert(
    fc.property(arbitraryWorkload, fc.integer(), (w, shuffleSeed) => {
      const rand = prng(shuffleSeed);
      const shuffled = [...w.requests];
      for (let i = shuffled.length - 1; i > 0; i -= 1) {
        const j = Math.floor(rand() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j] as ResolvedRequest, shuffled[i] as ResolvedRequest];
      }
      assert.deepEqual(settle(w, T0, T0 + w.windowMs, shuffled), settle(w, T0, T0 + w.windowMs));
    }),
    { numRuns: 100 },
  );
});
