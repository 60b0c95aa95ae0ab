import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttributionConfig, GpuPeriodTotals, PeriodSettlement, RequestPeriodShare } from '../../model/attribution-types.js';
import { settlePeriod } from '../../model/attribution.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, watts } from '../../model/units.js';
import { CONFIG, request, sample, steadySamples, T0 } from './helpers.js';

/** Counter samples every 100 ms from T0 whose intervals hold `energies` joules (power matches). */
function counterSamples(gpu: string, energies: readonly number[], gpuIndex = 0): PowerSample[] {
  const out: PowerSample[] = [];
  let counter = 1000;
  out.push(sample(gpu, T0, (energies[0] ?? 0) * 10, counter, gpuIndex));
  energies.forEach((e, i) => {
    counter += e;
    out.push(sample(gpu, T0 + (i + 1) * 100, e * 10, counter, gpuIndex));
  });
  return out;
}

interface Gpu {
  uuid: string;
  samples: PowerSample[];
  baselineW?: number | null;
}

function settle(gpus: Gpu[], requests: ResolvedRequest[], from = T0, to = T0 + 1000, config: AttributionConfig = CONFIG): PeriodSettlement {
  return settlePeriod({
    periodStartMs: epochMs(from),
    periodEndMs: epochMs(to),
    gpus: gpus.map((g, index) => ({
      gpuUuid: g.uuid,
      gpuIndex: index,
      samples: g.samples,
      idleBaselineW: g.baselineW === undefined || g.baselineW === null ? null : watts(g.baselineW),
    })),
    requests,
    config,
  });
}

function shareOf(s: PeriodSettlement, id: string, gpu = 'gpu-0'): RequestPeriodShare {
  const share = s.shares.find((x) => x.requestId === id && x.gpuUuid === gpu);
  assert.ok(share, `no share for ${id} on ${gpu}`);
  return share;
}

function gpuOf(s: PeriodSettlement, gpu = 'gpu-0'): GpuPeriodTotals {
  const t = s.gpus.find((x) => x.gpuUuid === gpu);
  assert.ok(t);
  return t;
}

const near = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
};

test('idle only: all energy is idle and the idle power is observed', () => {
  const s = settle([{ uuid: 'gpu-0', samples: steadySamples('gpu-0', T0, T0 + 1000, 100, 200) }], []);
  const g = gpuOf(s);
  near(g.measuredJ, 200, 'measured');
  near(g.idleJ, 200, 'idle');
  assert.equal(g.staticJ + g.dynamicJ + g.unattributedJ, 0);
  assert.equal(g.idleMs, 1000);
  assert.equal(g.observedIdlePowerW, 200);
  assert.equal(g.samples, 10); // the sample at T0+1000 belongs to the next period
  assert.equal(g.coveredMs, 1000);
  assert.equal(s.shares.length, 0);
});

test('one request: static is the baseline x its intervals, dynamic the rest, split by phase', () => {
  // 300 W = 30 J per 100 ms interval; baseline 100 W = 10 J static per interval
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const r = request({ requestId: 'a', startMs: T0 + 200, firstTokenMs: T0 + 300, endMs: T0 + 700, promptTokens: 400, completionTokens: 10 });
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [r]);
  const a = shareOf(s, 'a');
  near(a.staticJ, 50, 'static');
  near(a.dynamicJ, 100, 'dynamic');
  near(a.prefillJ, 30, 'prefill = the whole [200, 300) interval');
  near(a.decodeJ, 120, 'decode');
  assert.equal(a.activeMs, 500);
  assert.equal(a.concurrencyMs, 500);
  assert.equal(a.estimated, false);
  const g = gpuOf(s);
  near(g.idleJ, 150, 'idle');
  assert.equal(g.idleMs, 500);
});

test('two overlapping requests: static by time, dynamic by work', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  // A: 40 decode work over 400 ms (10 per interval); B: 10 over 200 ms (5 per interval)
  const a = request({ requestId: 'a', startMs: T0, endMs: T0 + 400, completionTokens: 40 });
  const b = request({ requestId: 'b', startMs: T0 + 200, endMs: T0 + 400, completionTokens: 10 });
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [a, b]);
  // [0,200): A alone, 2 x (10 static + 20 dynamic); [200,400): static 5/5, dynamic 20 x 10/15 and 20 x 5/15
  near(shareOf(s, 'a').staticJ, 20 + 10, 'A static');
  near(shareOf(s, 'a').dynamicJ, 40 + (2 * 20 * 10) / 15, 'A dynamic');
  near(shareOf(s, 'b').staticJ, 10, 'B static');
  near(shareOf(s, 'b').dynamicJ, (2 * 20 * 5) / 15, 'B dynamic');
  assert.equal(shareOf(s, 'a').concurrencyMs, 200 + 2 * 200);
  assert.equal(shareOf(s, 'b').concurrencyMs, 2 * 200);
  near(gpuOf(s).idleJ, 6 * 30, 'idle');
});

test('prefill, cached and decode tokens weigh as configured', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  // A: 200 uncached x 0.25 + 800 cached x 0.05 = 90 work; B: 10 completion x 1 = 10 work
  const a = request({ requestId: 'a', startMs: T0, endMs: T0 + 100, promptTokens: 1000, cachedTokens: 800 });
  const b = request({ requestId: 'b', startMs: T0, endMs: T0 + 100, completionTokens: 10 });
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [a, b]);
  near(shareOf(s, 'a').staticJ + shareOf(s, 'a').dynamicJ, 5 + 18, 'A');
  near(shareOf(s, 'b').staticJ + shareOf(s, 'b').dynamicJ, 5 + 2, 'B');
  near(shareOf(s, 'a').prefillJ, 23, 'A without first token and no completion is all prefill');
  near(shareOf(s, 'b').decodeJ, 7, 'B without first token and no prompt is all decode');
});

test('unknown idle baseline: everything active is dynamic', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: null }], [request({ requestId: 'a', startMs: T0, endMs: T0 + 300, completionTokens: 5 })]);
  assert.equal(shareOf(s, 'a').staticJ, 0);
  near(shareOf(s, 'a').dynamicJ, 90, 'dynamic');
  assert.equal(gpuOf(s).idleBaselineW, null);
});

test('static is capped at the interval energy', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 50);
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 80 }], [request({ requestId: 'a', startMs: T0, endMs: T0 + 100, completionTokens: 5 })]);
  near(shareOf(s, 'a').staticJ, 5, 'static = E');
  assert.equal(shareOf(s, 'a').dynamicJ, 0);
});

test('a zero-length request is a point mass: time shares static, work shares dynamic', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const x = request({ requestId: 'x', startMs: T0 + 100, endMs: T0 + 150 }); // time, no work
  const z = request({ requestId: 'z', startMs: T0 + 150, endMs: T0 + 150, promptTokens: 100 }); // work, no time
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [x, z]);
  near(shareOf(s, 'x').staticJ, 10, 'x static (all time)');
  assert.equal(shareOf(s, 'x').dynamicJ, 0);
  assert.equal(shareOf(s, 'z').staticJ, 0);
  near(shareOf(s, 'z').dynamicJ, 20, 'z dynamic (all work)');
  assert.equal(shareOf(s, 'z').activeMs, 0);
  near(shareOf(s, 'z').prefillJ, 20, 'z is prompt only');
});

test('only point masses in an interval: static goes by work; zero work: equal parts', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const s1 = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [
    request({ requestId: 'p', startMs: T0 + 120, endMs: T0 + 120, completionTokens: 3 }),
    request({ requestId: 'q', startMs: T0 + 180, endMs: T0 + 180, completionTokens: 1 }),
  ]);
  near(shareOf(s1, 'p').staticJ + shareOf(s1, 'p').dynamicJ, 22.5, 'p = 3/4 of 30');
  near(shareOf(s1, 'q').staticJ + shareOf(s1, 'q').dynamicJ, 7.5, 'q = 1/4 of 30');
  const s2 = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [
    request({ requestId: 'p', startMs: T0 + 120, endMs: T0 + 120 }),
    request({ requestId: 'q', startMs: T0 + 180, endMs: T0 + 180 }),
  ]);
  near(shareOf(s2, 'p').staticJ, 5, 'p static');
  near(shareOf(s2, 'q').dynamicJ, 10, 'q dynamic');
  near(gpuOf(s2).idleJ, 270, 'the other 9 intervals are idle');
});

test('a zero-length decode at the end belongs to the last interval the request was active in', () => {
  // [300,400) and [400,500) hold 30 J, [500,600) holds 60 J
  const samples = counterSamples('gpu-0', [30, 30, 30, 30, 30, 60, 30, 30, 30, 30]);
  const y = request({ requestId: 'y', startMs: T0 + 300, firstTokenMs: T0 + 500, endMs: T0 + 500, completionTokens: 10 });
  const q = request({ requestId: 'q', startMs: T0 + 400, endMs: T0 + 600, completionTokens: 40 });
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [y, q]);
  // [300,400): y alone without work => 30 by time. [400,500): static 5/5; y's point (10) vs q (20): 20 x 10/30
  near(shareOf(s, 'y').staticJ + shareOf(s, 'y').dynamicJ, 30 + 5 + 20 / 3, 'y');
  near(shareOf(s, 'q').staticJ + shareOf(s, 'q').dynamicJ, 5 + 40 / 3 + 60, 'q');
  near(shareOf(s, 'y').prefillJ, 30 + 5, 'y prefill phase: [300,400) by time, and its static in [400,500)');
  near(shareOf(s, 'y').decodeJ, 20 / 3, 'y decode = its point mass');
});

test('a zero-length prefill at the start belongs to the first interval', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const p = request({ requestId: 'p', startMs: T0 + 600, firstTokenMs: T0 + 600, endMs: T0 + 800, promptTokens: 400 });
  const r = request({ requestId: 'r', startMs: T0 + 600, endMs: T0 + 800, completionTokens: 20 });
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [p, r]);
  // [600,700): static 5/5, dynamic 20 x 100/110 vs 20 x 10/110; [700,800): static 5/5, dynamic all to r
  near(shareOf(s, 'p').prefillJ, (20 * 100) / 110, 'p prefill = its point mass');
  near(shareOf(s, 'p').decodeJ, 10, 'p decode phase holds its static');
  near(shareOf(s, 'r').staticJ + shareOf(s, 'r').dynamicJ, 5 + (20 * 10) / 110 + 5 + 20, 'r');
});

test('no work in an interval: dynamic by time', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const s = settle([{ uuid: 'gpu-0', samples, baselineW: 100 }], [
    request({ requestId: 'a', startMs: T0, endMs: T0 + 100 }),
    request({ requestId: 'b', startMs: T0 + 50, endMs: T0 + 100 }),
  ]);
  near(shareOf(s, 'a').dynamicJ, (20 * 100) / 150, 'a');
  near(shareOf(s, 'b').dynamicJ, (20 * 50) / 150, 'b');
});

test('a request on two GPUs gets a share on each; concurrency is per GPU', () => {
  const g0 = steadySamples('gpu-0', T0, T0 + 1000, 100, 300, 0);
  const g1 = steadySamples('gpu-1', T0, T0 + 1000, 100, 200, 1);
  const tp = request({ requestId: 'tp', gpus: ['gpu-0', 'gpu-1'], startMs: T0, endMs: T0 + 500, completionTokens: 10 });
  const other = request({ requestId: 'o', gpus: ['gpu-1'], startMs: T0, endMs: T0 + 500, completionTokens: 10 });
  const s = settle([{ uuid: 'gpu-0', samples: g0 }, { uuid: 'gpu-1', samples: g1 }], [tp, other]);
  near(shareOf(s, 'tp', 'gpu-0').dynamicJ, 150, 'gpu-0: alone');
  near(shareOf(s, 'tp', 'gpu-1').dynamicJ, 50, 'gpu-1: half of 100');
  assert.equal(shareOf(s, 'tp', 'gpu-0').concurrencyMs, 500);
  assert.equal(shareOf(s, 'tp', 'gpu-1').concurrencyMs, 1000);
  assert.equal(s.shares.filter((x) => x.requestId === 'o').length, 1);
});

test('a counter reset falls back to power and flags the request', () => {
  const samples = [
    sample('gpu-0', T0, 300, 100),
    sample('gpu-0', T0 + 100, 300, 130),
    sample('gpu-0', T0 + 200, 300, 4), // reset
    sample('gpu-0', T0 + 300, 300, 34),
  ];
  const s = settle([{ uuid: 'gpu-0', samples }], [
    request({ requestId: 'hit', startMs: T0 + 100, endMs: T0 + 200, completionTokens: 1 }),
    request({ requestId: 'clean', startMs: T0 + 200, endMs: T0 + 300, completionTokens: 1 }),
  ], T0, T0 + 300);
  const g = gpuOf(s);
  near(g.measuredJ, 90, 'measured');
  assert.equal(g.counterResets, 1);
  near(g.estimatedJ, 30, 'estimated');
  assert.equal(shareOf(s, 'hit').estimated, true);
  near(shareOf(s, 'hit').dynamicJ, 30, 'reset interval from power');
  assert.equal(shareOf(s, 'clean').estimated, false);
});

test('a gap is estimated and counted; a request inside it shares it', () => {
  const samples = [sample('gpu-0', T0, 300, 0), sample('gpu-0', T0 + 100, 300, 30), sample('gpu-0', T0 + 500, 300, 150), sample('gpu-0', T0 + 600, 300, 180)];
  const s = settle([{ uuid: 'gpu-0', samples }], [request({ requestId: 'a', startMs: T0 + 200, endMs: T0 + 300, completionTokens: 1 })], T0, T0 + 600);
  const g = gpuOf(s);
  assert.equal(g.gaps, 1);
  near(g.estimatedJ, 120, 'estimated');
  assert.equal(g.coveredMs, 200);
  assert.equal(shareOf(s, 'a').estimated, true);
  near(shareOf(s, 'a').dynamicJ, 120, 'the active gap interval goes to the request');
  near(g.idleJ, 60, 'idle');
});

test('a gap past the limit is unattributed, never given to requests', () => {
  const samples = [sample('gpu-0', T0, 100, 0), sample('gpu-0', T0 + 100, 100, 10), sample('gpu-0', T0 + 2600, 100, 260)];
  const s = settle([{ uuid: 'gpu-0', samples }], [request({ requestId: 'a', startMs: T0 + 500, endMs: T0 + 900, completionTokens: 1 })], T0, T0 + 3000);
  const g = gpuOf(s);
  near(g.unattributedJ, 250, 'unattributed');
  near(g.idleJ, 10, 'idle');
  assert.equal(shareOf(s, 'a').staticJ + shareOf(s, 'a').dynamicJ, 0);
  assert.equal(shareOf(s, 'a').estimated, true);
});

test('time without any reading: requests in it get nothing and are flagged; it counts as a gap', () => {
  const samples = [sample('gpu-0', T0, 100), sample('gpu-0', T0 + 100, null), sample('gpu-0', T0 + 200, null), sample('gpu-0', T0 + 300, 100)];
  const s = settle([{ uuid: 'gpu-0', samples }], [request({ requestId: 'a', startMs: T0 + 120, endMs: T0 + 180, completionTokens: 1 })], T0, T0 + 300);
  assert.equal(gpuOf(s).gaps, 1);
  assert.equal(shareOf(s, 'a').dynamicJ, 0);
  assert.equal(shareOf(s, 'a').estimated, true);
  assert.equal(shareOf(s, 'a').activeMs, 60);
});

test('an interval crossing the period end is split in proportion to time', () => {
  // one 1000 ms interval over [T0 + 500, T0 + 1500) holding 100 J; the period ends at T0 + 1000
  const samples = [sample('gpu-0', T0 - 100, 100, 0), sample('gpu-0', T0 + 500, 100, 60), sample('gpu-0', T0 + 1500, 100, 160)];
  const cfg = { ...CONFIG, samplePeriodMs: 1000 };
  const r = request({ requestId: 'a', startMs: T0 + 700, endMs: T0 + 1200, completionTokens: 1 });
  const first = settle([{ uuid: 'gpu-0', samples }], [r], T0, T0 + 1000, cfg);
  const second = settle([{ uuid: 'gpu-0', samples }], [r], T0 + 1000, T0 + 2000, cfg);
  near(gpuOf(first).measuredJ, 60 * (500 / 600) + 50, 'first period');
  near(gpuOf(second).measuredJ, 50, 'second period');
  near(shareOf(first, 'a').dynamicJ, 50, 'active piece before the cut');
  near(shareOf(second, 'a').dynamicJ, 50, 'active piece after the cut');
  const whole = settle([{ uuid: 'gpu-0', samples }], [r], T0, T0 + 2000, cfg);
  near(shareOf(whole, 'a').dynamicJ, 100, 'the whole window gives the same');
});

test('requests outside the period, unknown GPUs and repeated ids add nothing', () => {
  const samples = steadySamples('gpu-0', T0, T0 + 1000, 100, 300);
  const a = request({ requestId: 'a', startMs: T0, endMs: T0 + 100, completionTokens: 1 });
  const s = settle([{ uuid: 'gpu-0', samples }], [
    a,
    { ...a },
    request({ requestId: 'later', startMs: T0 + 1000, endMs: T0 + 1100, completionTokens: 1 }),
    request({ requestId: 'ended', startMs: T0 - 100, endMs: T0, completionTokens: 1 }),
    request({ requestId: 'elsewhere', gpus: ['gpu-9'], startMs: T0, endMs: T0 + 100, completionTokens: 1 }),
  ]);
  assert.deepEqual(s.shares.map((x) => x.requestId), ['a']);
  near(shareOf(s, 'a').dynamicJ, 30, 'a once');
});

test('energy owed from before the period (settled before its closing sample existed) is counted here, unattributed and estimated, with its gap', () => {
  // The source stalled from T0+200 ms to T0+5.2 s: the period [T0+1 s, T0+2 s) and later ones were
  // settled with energy counted only up to T0+200 ms. Now the period [T0+5 s, T0+6 s) is settled.
  const samples = [
    ...counterSamples('gpu-0', [10, 10]), // T0, +100, +200
    sample('gpu-0', T0 + 5_200, 100, 1020 + 500),
    sample('gpu-0', T0 + 5_300, 100, 1020 + 510),
    sample('gpu-0', T0 + 6_000, 100, 1020 + 580),
  ];
  const active = [request({ requestId: 'r', startMs: T0 + 5_000, endMs: T0 + 6_000, completionTokens: 10 })];
  // The period [T0+5 000, T0+6 000), with energy counted up to `countedUntilMs` (or no such input).
  const settleFrom = (countedUntilMs?: number) =>
    settlePeriod({
      periodStartMs: epochMs(T0 + 5_000),
      periodEndMs: epochMs(T0 + 6_000),
      gpus: [{ gpuUuid: 'gpu-0', gpuIndex: 0, samples, idleBaselineW: watts(50), ...(countedUntilMs === undefined ? {} : { countedUntilMs: epochMs(countedUntilMs) }) }],
      requests: active,
      config: CONFIG,
    });
  const withOwed = settleFrom(T0 + 200);
  const plain = settleFrom();
  const owed = gpuOf(withOwed);
  const base = gpuOf(plain);
  // The gap interval [T0+200, T0+5 200) holds 500 J: 4 800 ms of it lie before the period start.
  near(owed.measuredJ - base.measuredJ, 480, 'the owed 480 J are measured here');
  near(owed.unattributedJ - base.unattributedJ, 480, 'unattributed');
  near(owed.estimatedJ - base.estimatedJ, 480, 'estimated');
  near(owed.staticJ + owed.dynamicJ, base.staticJ + base.dynamicJ, 'requests of this period get nothing of it');
  near(owed.residualJ, 0, 'conservation');
  assert.equal(owed.gaps, base.gaps + 1, 'the gap interval starting before the period is counted here');
  assert.equal(owed.samples, base.samples, 'no sample lies inside the owed stretch');
  assert.equal(owed.coveredMs, base.coveredMs, 'covered time stays time of this period');
  // Counted up to the period start already (or absent): nothing owed.
  const counted = settleFrom(T0 + 5_000);
  assert.deepEqual(counted, plain);
});
