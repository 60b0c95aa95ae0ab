import type { AttributionConfig, EnergyInterval } from '../../model/attribution-types.js';
import { sliceInterval, toEnergyIntervals } from '../../model/energy-timeline.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, joules, watts } from '../../model/units.js';

/** Test fixtures and a literal (slow) reference of the attribution rules, to check the fast sweep against. */

export const T0 = 1_779_998_400_000; // a whole hour (494_444 h) of epoch ms, so period and hour grids are simple

export const CONFIG: AttributionConfig = {
  wPrefill: 0.25,
  wCached: 0.05,
  wDecode: 1,
  samplePeriodMs: 100,
  maxAttributableGapMs: 2_000,
  idleBaselineW: {},
};

/** Request fields as plain numbers for times (branded inside). */
export type RequestFields = Omit<Partial<ResolvedRequest>, 'startMs' | 'endMs' | 'firstTokenMs'> & {
  requestId: string;
  startMs: number;
  endMs: number;
  firstTokenMs?: number | null;
};

export function request(fields: RequestFields): ResolvedRequest {
  return {
    taskId: null,
    attempt: null,
    model: 'm',
    tier: 'default',
    gpus: ['gpu-0'],
    promptTokens: 0,
    cachedTokens: 0,
    completionTokens: 0,
    reasoningTokens: 0,
    batchSize: null,
    status: 'ok',
    labels: {},
    tokensEstimated: false,
    granularity: 'request',
    source: 'test',
    ...fields,
    startMs: epochMs(fields.startMs),
    endMs: epochMs(fields.endMs),
    firstTokenMs: fields.firstTokenMs === undefined || fields.firstTokenMs === null ? null : epochMs(fields.firstTokenMs),
  };
}

export function sample(gpuUuid: string, t: number, powerW: number | null, energyJ: number | null = null, gpuIndex = 0): PowerSample {
  return {
    timestampMs: epochMs(t),
    gpuUuid,
    gpuIndex,
    powerW: powerW === null ? null : watts(powerW),
    energyJ: energyJ === null ? null : joules(energyJ),
  };
}

/** Samples every `stepMs` over [from, to] at constant power, with a counter that matches it. */
export function steadySamples(gpuUuid: string, from: number, to: number, stepMs: number, powerW: number, gpuIndex = 0): PowerSample[] {
  const out: PowerSample[] = [];
  for (let t = from; t <= to; t += stepMs) out.push(sample(gpuUuid, t, powerW, ((t - from) * powerW) / 1000, gpuIndex));
  return out;
}

export interface ReferenceShare {
  staticJ: number;
  dynamicJ: number;
  prefillJ: number;
  decodeJ: number;
  activeMs: number;
  concurrencyMs: number;
}

export interface ReferenceGpu {
  measuredJ: number;
  idleJ: number;
  unattributedJ: number;
  shares: Map<string, ReferenceShare>;
}

const overlap = (a0: number, a1: number, b0: number, b1: number): number => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/**
 * The rules of DESIGN.md "Attribution", written out literally: every interval x every request.
 * Slow and obvious on purpose.
 */
export function referenceSettle(
  samples: readonly PowerSample[],
  requests: readonly ResolvedRequest[],
  p0: number,
  p1: number,
  baselineW: number | null,
  config: AttributionConfig,
): ReferenceGpu {
  // Cut at the period bounds and at every whole second, as DESIGN's intervals are refined.
  const intervals: EnergyInterval[] = [];
  for (const iv of toEnergyIntervals(samples, config)) {
    const from = Math.max(iv.startMs, p0);
    const to = Math.min(iv.endMs, p1);
    const cuts = [from];
    for (let t = Math.ceil(from / 1000) * 1000; t < to; t += 1000) if (t > from) cuts.push(t);
    cuts.push(to);
    for (let i = 0; i + 1 < cuts.length; i += 1) {
      const part = sliceInterval(iv, cuts[i] as number, cuts[i + 1] as number);
      if (part) intervals.push(part);
    }
  }
  const out: ReferenceGpu = { measuredJ: 0, idleJ: 0, unattributedJ: 0, shares: new Map() };
  const rs = requests.map((r) => {
    const prompt = r.promptTokens;
    const cached = r.cachedTokens;
    const wp = (prompt - cached) * config.wPrefill + cached * config.wCached;
    const wd = r.completionTokens * config.wDecode;
    const s = r.startMs as number;
    const e = r.endMs as number;
    const f = r.firstTokenMs as number | null;
    const frac = wp + wd > 0 ? wp / (wp + wd) : r.completionTokens > 0 ? 0 : 1;
    return { r, s, e, f, wp, wd, frac };
  });
  for (const r of rs) {
    const activeMs = overlap(r.s, r.e, p0, p1);
    const point = r.s === r.e && r.s >= p0 && r.s < p1;
    if (activeMs > 0 || point) {
      let concurrencyMs = 0;
      for (const q of rs) concurrencyMs += Math.max(0, Math.min(r.e, q.e, p1) - Math.max(r.s, q.s, p0));
      out.shares.set(r.r.requestId, { staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, activeMs, concurrencyMs });
    }
  }
  for (const iv of intervals) {
    const a = iv.startMs as number;
    const b = iv.endMs as number;
    const E = iv.energyJ as number;
    out.measuredJ += E;
    if (iv.unattributable) {
      out.unattributedJ += E;
      continue;
    }
    const inStart = (t: number): boolean => a <= t && t < b;
    const inEnd = (t: number): boolean => a < t && t <= b;
    // per request: time and work in each phase inside [a, b)
    const parts = rs.map((x) => {
      const time = overlap(x.s, x.e, a, b);
      let prefillTime = 0;
      let decodeTime = 0;
      let prefillWork = 0;
      let decodeWork = 0;
      let wholeTime = 0;
      let wholeWork = 0;
      let zero = 0;
      if (x.e > x.s) {
        if (x.f === null) {
          wholeTime = time;
          wholeWork = ((x.wp + x.wd) * time) / (x.e - x.s);
        } else {
          prefillTime = overlap(x.s, x.f, a, b);
          decodeTime = overlap(x.f, x.e, a, b);
          prefillWork = x.f > x.s ? (x.wp * prefillTime) / (x.f - x.s) : inStart(x.s) ? x.wp : 0;
          decodeWork = x.e > x.f ? (x.wd * decodeTime) / (x.e - x.f) : inEnd(x.e) ? x.wd : 0;
        }
      } else if (inStart(x.s)) {
        wholeWork = x.wp + x.wd;
        if (wholeWork === 0) zero = 1;
      }
      return { x, time, prefillTime, decodeTime, wholeTime, prefillWork, decodeWork, wholeWork, zero };
    });
    const T = parts.reduce((s, p) => s + p.time, 0);
    const W = parts.reduce((s, p) => s + p.prefillWork + p.decodeWork + p.wholeWork, 0);
    const Z = parts.reduce((s, p) => s + p.zero, 0);
    if (T === 0 && W === 0 && Z === 0) {
      out.idleJ += E;
      continue;
    }
    const S = baselineW === null ? 0 : Math.min((baselineW * (b - a)) / 1000, E);
    const D = E - S;
    for (const p of parts) {
      const work = p.prefillWork + p.decodeWork + p.wholeWork;
      if (p.time === 0 && work === 0 && p.zero === 0) continue;
      const share = out.shares.get(p.x.r.requestId);
      if (!share) throw new Error(`reference: ${p.x.r.requestId} has energy in [${a},${b}) but no share`);
      // static by time (else by work, else equal); dynamic by work (else by time, else equal)
      const st = T > 0 ? S / T : 0;
      const sw = T === 0 && W > 0 ? S / W : 0;
      const dw = W > 0 ? D / W : 0;
      const dt = W === 0 && T > 0 ? D / T : 0;
      const z = T === 0 && W === 0 ? 1 / Z : 0;
      const staticPrefill = st * p.prefillTime + sw * p.prefillWork;
      const staticDecode = st * p.decodeTime + sw * p.decodeWork;
      const staticWhole = st * p.wholeTime + sw * p.wholeWork + S * z * p.zero;
      const dynPrefill = dw * p.prefillWork + dt * p.prefillTime;
      const dynDecode = dw * p.decodeWork + dt * p.decodeTime;
      const dynWhole = dw * p.wholeWork + dt * p.wholeTime + D * z * p.zero;
      share.staticJ += staticPrefill + staticDecode + staticWhole;
      share.dynamicJ += dynPrefill + dynDecode + dynWhole;
      share.prefillJ += staticPrefill + dynPrefill + (staticWhole + dynWhole) * p.x.frac;
      share.decodeJ += staticDecode + dynDecode + (staticWhole + dynWhole) * (1 - p.x.frac);
    }
  }
  return out;
}

/** Loose float equality: |a - b| <= rel x max(|a|, |b|) + abs. */
export function close(a: number, b: number, rel = 1e-9, abs = 1e-9): boolean {
  return Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b)) + abs;
}

/** Deterministic PRNG (mulberry32) for fixtures. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
