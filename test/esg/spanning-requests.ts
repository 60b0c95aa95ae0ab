import fc from 'fast-check';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyUsageRow } from '../../model/rollup-types.js';
import { epochMs } from '../../model/units.js';
import type { Rollups } from './rollup-fixtures.js';

/**
 * Hourly rollups built from requests that may cross hour boundaries (ESG additivity tests): each
 * request draws constant power over [start, end) on one GPU, so its energy lands in the hours it
 * was drawn; the energy rows hold idle + unattributed + the requests' energy of each GPU-hour, as
 * a settlement writes them. Usage is booked either as ledgers before schema 7 did (the whole
 * request in the hour it ended) or by the hours its energy was drawn (counts in the hour it
 * ended, as agents of schema 7 wrote them before tokens went with the energy; the breakdowns add
 * up whichever hour holds the tokens). Unfinalized requests have energy rows but no usage rows yet.
 */

export const H = 3_600_000;

export interface SpanningRequest {
  readonly node: string;
  readonly gpu: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly watts: number;
  readonly staticShare: number;
  readonly tier: string;
  readonly model: string;
  readonly team: string;
  readonly feature: string;
  readonly cacheBucket: string;
  readonly batchBucket: string;
  readonly completionTokens: number;
  readonly finalized: boolean;
}

export type UsageBooking = 'end-hour' | 'drawn-hours';

/** Requests starting in the `hours` hours from `fromMs`, some running hours long, some ending exactly on an hour. */
export function spanningRequestArb(fromMs: number, hours: number): fc.Arbitrary<SpanningRequest> {
  return fc
    .record({
      node: fc.constantFrom('n1', 'n2'),
      gpu: fc.integer({ min: 0, max: 1 }),
      startS: fc.integer({ min: 0, max: hours * 3600 - 1 }),
      durationS: fc.oneof(fc.integer({ min: 0, max: 180 }), fc.integer({ min: 0, max: 3 * 3600 })),
      endsOnHour: fc.boolean(),
      watts: fc.double({ min: 1, max: 700, noNaN: true }),
      staticShare: fc.double({ min: 0, max: 1, noNaN: true }),
      tier: fc.constantFrom('small', 'large'),
      model: fc.constantFrom('m-8b', 'm-70b', 'm-235b'),
      team: fc.constantFrom('', 'search', 'ads'),
      feature: fc.constantFrom('chat', 'summarize'),
      cacheBucket: fc.constantFrom('miss', 'partial', 'hit'),
      batchBucket: fc.constantFrom('1', '2-4', '5-16'),
      completionTokens: fc.integer({ min: 0, max: 5000 }),
      finalized: fc.double({ min: 0, max: 1, noNaN: true }).map((x) => x < 0.85),
    })
    .map((r) => {
      const startMs = fromMs + r.startS * 1000;
      const naturalEnd = startMs + r.durationS * 1000;
      // Ending exactly at hh:00:00.000 puts all the energy in the hour before the one the request ends in.
      const endMs = r.endsOnHour ? Math.floor(naturalEnd / H) * H + H : naturalEnd;
      return { node: r.node, gpu: r.gpu, startMs, endMs, watts: r.watts, staticShare: r.staticShare, tier: r.tier, model: r.model, team: r.team, feature: r.feature, cacheBucket: r.cacheBucket, batchBucket: r.batchBucket, completionTokens: r.completionTokens, finalized: r.finalized };
    });
}

/** Joules a request drew in each hour it overlaps. */
export function joulesByHour(r: SpanningRequest): Map<number, number> {
  const out = new Map<number, number>();
  for (let h = Math.floor(r.startMs / H) * H; h < r.endMs; h += H) {
    const ms = Math.min(r.endMs, h + H) - Math.max(r.startMs, h);
    if (ms > 0) out.set(h, (r.watts * ms) / 1000);
  }
  return out;
}

/**
 * Rollups of the requests over the hours [fromMs, fromMs + hours h) and every later hour a
 * request reaches: one energy row per GPU-hour (idle 80 W, unattributed 2 W on odd hours), host
 * energy on even hours.
 */
export function spanningRollups(requests: readonly SpanningRequest[], fromMs: number, hours: number, booking: UsageBooking): Rollups {
  const hoursOf = new Set<number>();
  for (let i = 0; i < hours; i += 1) hoursOf.add(fromMs + i * H);
  for (const r of requests) for (const h of joulesByHour(r).keys()) hoursOf.add(h);
  const attributed = new Map<string, { staticJ: number; dynamicJ: number }>();
  for (const r of requests) {
    for (const [h, j] of joulesByHour(r)) {
      const key = `${r.node}\u0001${r.gpu}\u0001${h}`;
      const a = attributed.get(key) ?? { staticJ: 0, dynamicJ: 0 };
      a.staticJ += j * r.staticShare;
      a.dynamicJ += j * (1 - r.staticShare);
      attributed.set(key, a);
    }
  }
  const energy: HourlyEnergyRow[] = [];
  const host: HourlyHostEnergyRow[] = [];
  for (const h of [...hoursOf].sort((a, b) => a - b)) {
    const odd = ((h / H) & 1) === 1;
    for (const node of ['n1', 'n2']) {
      for (const gpu of [0, 1]) {
        const a = attributed.get(`${node}\u0001${gpu}\u0001${h}`) ?? { staticJ: 0, dynamicJ: 0 };
        const idleJ = 80 * 3600;
        const unattributedJ = odd ? 2 * 3600 : 0;
        energy.push({
          hourStartMs: epochMs(h),
          node,
          gpuUuid: `GPU-${node}-${gpu}`,
          measuredJ: idleJ + unattributedJ + a.staticJ + a.dynamicJ,
          idleJ,
          staticJ: a.staticJ,
          dynamicJ: a.dynamicJ,
          unattributedJ,
          estimatedJ: 0,
          coveredMs: H,
          counterResets: 0,
          gaps: 0,
          simulated: false,
        });
      }
      if (!odd) host.push({ hourStartMs: epochMs(h), node, hostJ: 50 * 3600, estimated: false });
    }
  }
  const usage = new Map<string, { -readonly [K in keyof HourlyUsageRow]: HourlyUsageRow[K] }>();
  const book = (r: SpanningRequest, hour: number, j: number, counts: boolean): void => {
    const key = [hour, r.node, r.model, r.tier, r.cacheBucket, r.batchBucket, r.team, r.feature].join('\u0001');
    let row = usage.get(key);
    if (!row) {
      row = {
        hourStartMs: epochMs(hour), node: r.node, model: r.model, tier: r.tier, cacheBucket: r.cacheBucket, batchBucket: r.batchBucket, status: 'ok',
        team: r.team, feature: r.feature, requests: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0, reasoningTokens: 0,
        staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, simulated: false,
      };
      usage.set(key, row);
    }
    row.staticJ += j * r.staticShare;
    row.dynamicJ += j * (1 - r.staticShare);
    row.prefillJ += j / 2;
    row.decodeJ += j / 2;
    if (counts) {
      row.requests += 1;
      row.promptTokens += 2 * r.completionTokens;
      row.completionTokens += r.completionTokens;
    }
  };
  for (const r of requests) {
    if (!r.finalized) continue;
    const endHour = Math.floor(r.endMs / H) * H;
    const drawn = joulesByHour(r);
    if (booking === 'end-hour') {
      book(r, endHour, [...drawn.values()].reduce((s, j) => s + j, 0), true);
      continue;
    }
    for (const [h, j] of drawn) if (h !== endHour) book(r, h, j, false);
    book(r, endHour, drawn.get(endHour) ?? 0, true);
  }
  return { energy, host, usage: [...usage.values()], tasks: [], quality: [] };
}
