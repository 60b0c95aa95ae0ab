import type { FinalizedRequest, RequestEnergyDelta } from '../agent/ledger-types.js';
import type { RequestPeriodShare } from './attribution-types.js';
import { batchBucket, cacheBucket, type BatchBucket, type CacheBucket } from './buckets.js';
import type { RequestStatus, ResolvedRequest } from './request-record.js';
import { joules, type EpochMs, type Joules } from './units.js';

/**
 * A request's energy is settled period by period and GPU by GPU; the running totals live in a
 * {@link RequestAccumulator}. Once the period holding its end is settled ({@link isFinalAfter}) it
 * is finalized into a {@link RequestResult}: the per-request figures of DESIGN.md "Attribution".
 */

/** A request's energy drawn in one hour: static, dynamic, prefill and decode joules. */
export type HourEnergy = readonly [staticJ: number, dynamicJ: number, prefillJ: number, decodeJ: number];

/**
 * Energy a request drew in hours before the hour it ends in, by hour start (epoch ms as a decimal
 * string); the rest of its energy is in that last hour. Empty for a request within one hour.
 */
export type EnergyBeforeEndHour = Readonly<Record<string, HourEnergy>>;

/** Running energy totals of one request over the periods and GPUs settled so far. */
export interface RequestAccumulator {
  readonly staticJ: number;
  readonly dynamicJ: number;
  readonly prefillJ: number;
  readonly decodeJ: number;
  /** Sum over GPUs of active time (a request on 2 GPUs for 1 s has 2000). */
  readonly activeMs: number;
  /** Sum over GPUs of the integral of concurrent requests over its active time. */
  readonly concurrencyMs: number;
  readonly estimated: boolean;
  /** Joules by physical GPU UUID. */
  readonly perGpuJ: Readonly<Record<string, number>>;
  /** The part of the totals drawn before the hour the request ends in (hourly rollups book it there). */
  readonly beforeEndHourJ: EnergyBeforeEndHour;
}

/** Totals of a request that has received nothing yet. */
export function emptyAccumulator(): RequestAccumulator {
  return { staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, activeMs: 0, concurrencyMs: 0, estimated: false, perGpuJ: {}, beforeEndHourJ: {} };
}

/** `before` with `more` added hour by hour (neither is modified). */
export function addEnergyBeforeEndHour(before: EnergyBeforeEndHour, more: EnergyBeforeEndHour): EnergyBeforeEndHour {
  const out: Record<string, HourEnergy> = { ...before };
  for (const [hour, e] of Object.entries(more)) {
    const prior = out[hour];
    out[hour] = prior === undefined ? e : [prior[0] + e[0], prior[1] + e[1], prior[2] + e[2], prior[3] + e[3]];
  }
  return out;
}

/**
 * New totals with `shares` (of this request, any periods and GPUs) added. `acc` is not modified;
 * its beforeEndHourJ is kept as is (the caller that knows the shares' hours adds to it).
 */
export function addShares(acc: RequestAccumulator, shares: readonly RequestPeriodShare[]): RequestAccumulator {
  const sums = { ...acc, perGpuJ: { ...acc.perGpuJ } };
  addSharesInto(sums, shares);
  return sums;
}

/** The summed fields of a RequestAccumulator, writable: what {@link addSharesInto} adds to. */
type ShareSums = { -readonly [K in Exclude<keyof RequestAccumulator, 'perGpuJ' | 'beforeEndHourJ'>]: RequestAccumulator[K] } & { perGpuJ: Record<string, number> };

/**
 * Add `shares` to `sums` in place: the one loop behind addShares and toEnergyDelta, which runs for
 * every request of every period (built into the object returned, it makes no copies to collect).
 */
function addSharesInto(sums: ShareSums, shares: readonly RequestPeriodShare[]): void {
  for (const share of shares) {
    sums.staticJ += share.staticJ;
    sums.dynamicJ += share.dynamicJ;
    sums.prefillJ += share.prefillJ;
    sums.decodeJ += share.decodeJ;
    sums.activeMs += share.activeMs;
    sums.concurrencyMs += share.concurrencyMs;
    sums.estimated ||= share.estimated;
    sums.perGpuJ[share.gpuUuid] = (sums.perGpuJ[share.gpuUuid] ?? 0) + share.staticJ + share.dynamicJ;
  }
}

/**
 * The ledger delta of one request in one settlement (its shares of that period, all GPUs), with the
 * request's running per-GPU totals when the caller has them (the ledger then need not read them back).
 */
export function toEnergyDelta(requestId: string, shares: readonly RequestPeriodShare[], perGpuJTotal?: Readonly<Record<string, number>>): RequestEnergyDelta {
  const delta: ShareSums & { requestId: string; perGpuJTotal?: Readonly<Record<string, number>> } = {
    requestId, staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, activeMs: 0, concurrencyMs: 0, estimated: false, perGpuJ: {},
  };
  if (perGpuJTotal !== undefined) delta.perGpuJTotal = perGpuJTotal;
  addSharesInto(delta, shares);
  return delta;
}

/**
 * True once every period that can hold energy of the request is settled, i.e. the request is
 * final. Its energy lies in [start, end) plus, for a zero-length decode, a point at end that belongs
 * to the period ending there; a zero-length request is a point at start, in the period starting there.
 */
export function isFinalAfter(record: Pick<ResolvedRequest, 'startMs' | 'endMs'>, settledUntilMs: number): boolean {
  return record.endMs > record.startMs ? record.endMs <= settledUntilMs : record.startMs < settledUntilMs;
}

/** The final figures of one request (DESIGN.md "Per request"). */
export interface RequestResult {
  readonly requestId: string;
  readonly taskId: string | null;
  readonly attempt: number | null;
  readonly model: string;
  readonly tier: string;
  readonly status: RequestStatus;
  readonly labels: Readonly<Record<string, string>>;
  readonly gpus: readonly string[];
  readonly startMs: EpochMs;
  readonly firstTokenMs: EpochMs | null;
  readonly endMs: EpochMs;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
  readonly staticJ: Joules;
  readonly dynamicJ: Joules;
  /** staticJ + dynamicJ: the request's marginal energy. */
  readonly joules: Joules;
  readonly prefillJ: Joules;
  readonly decodeJ: Joules;
  readonly perGpuJ: Readonly<Record<string, number>>;
  /** The part of its energy drawn before the hour it ended in, by hour (see {@link RequestAccumulator}). */
  readonly beforeEndHourJ: EnergyBeforeEndHour;
  readonly activeMs: number;
  readonly concurrencyMs: number;
  /** joules / completion tokens; null when the request produced no completion token. */
  readonly jPerOutputToken: number | null;
  /** Engine-reported batch size when given, else the time-weighted mean concurrency on its GPUs. */
  readonly observedBatchSize: number;
  readonly batchSizeSource: 'engine' | 'observed';
  readonly batchBucket: BatchBucket;
  readonly cacheBucket: CacheBucket;
  /** Some of its energy is estimated (gaps, resets, missing readings, time without any data). */
  readonly estimated: boolean;
  /**
   * The record arrived after part of its time was settled. That part stayed with idle (or other
   * requests) and is not re-attributed, so `joules` covers only its unsettled part.
   */
  readonly late: boolean;
  readonly tokensEstimated: boolean;
  readonly granularity: 'request' | 'interval';
  readonly source: string;
}

/**
 * Final figures of a request from its accumulated shares. The observed batch size is the
 * engine's `batch_size` when reported, else concurrencyMs / activeMs (the time-weighted mean number of
 * requests active on its GPUs, itself included), else 1 for a zero-length request.
 */
export function finalizeRequest(record: ResolvedRequest, acc: RequestAccumulator, opts: { readonly late: boolean }): RequestResult {
  const total = acc.staticJ + acc.dynamicJ;
  const engineBatch = record.batchSize !== null && Number.isFinite(record.batchSize) && record.batchSize >= 1;
  const observedBatchSize = engineBatch
    ? (record.batchSize as number)
    : acc.activeMs > 0
      ? Math.max(1, acc.concurrencyMs / acc.activeMs)
      : 1;
  const perGpuJ: Record<string, number> = {};
  for (const uuid of Object.keys(acc.perGpuJ).sort()) perGpuJ[uuid] = acc.perGpuJ[uuid] as number;
  return {
    requestId: record.requestId,
    taskId: record.taskId,
    attempt: record.attempt,
    model: record.model,
    tier: record.tier,
    status: record.status,
    labels: record.labels,
    gpus: record.gpus,
    startMs: record.startMs,
    firstTokenMs: record.firstTokenMs,
    endMs: record.endMs,
    promptTokens: record.promptTokens,
    cachedTokens: record.cachedTokens,
    completionTokens: record.completionTokens,
    reasoningTokens: record.reasoningTokens,
    staticJ: joules(acc.staticJ),
    dynamicJ: joules(acc.dynamicJ),
    joules: joules(total),
    prefillJ: joules(acc.prefillJ),
    decodeJ: joules(acc.decodeJ),
    perGpuJ,
    beforeEndHourJ: acc.beforeEndHourJ,
    activeMs: acc.activeMs,
    concurrencyMs: acc.concurrencyMs,
    jPerOutputToken: record.completionTokens > 0 ? total / record.completionTokens : null,
    observedBatchSize,
    batchSizeSource: engineBatch ? 'engine' : 'observed',
    batchBucket: batchBucket(observedBatchSize),
    cacheBucket: cacheBucket(record.cachedTokens, record.promptTokens),
    estimated: acc.estimated,
    late: opts.late,
    tokensEstimated: record.tokensEstimated,
    granularity: record.granularity,
    source: record.source,
  };
}

/** What the ledger keeps of a finalized request. */
export function toFinalizedRequest(result: RequestResult, settledAtMs: EpochMs): FinalizedRequest {
  return {
    requestId: result.requestId,
    joules: result.joules,
    jPerOutputToken: result.jPerOutputToken,
    observedBatchSize: result.observedBatchSize,
    batchBucket: result.batchBucket,
    cacheBucket: result.cacheBucket,
    settledAtMs,
  };
}
