import type { PowerSample } from '../model/power-sample.js';
import type { OtlpSpanIds, RequestStatus, ResolvedRequest } from '../model/request-record.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow, TaskRow } from '../model/rollup-types.js';
import { epochMs, joules, watts } from '../model/units.js';
import type { EpochMs } from '../model/units.js';
import type { EnergyBeforeEndHour, RequestAccumulator } from '../model/request-result.js';
import type { CountedTask, TaskCountIncrement, WasteIncrement } from '../model/task-counters.js';
import type { FinalizedRequest, RequestEnergyDelta } from './ledger-types.js';

/**
 * Row shapes of the ledger tables and their conversion to and from the domain types.
 * SQLite stores flags as 0/1 and lists/maps as JSON text; nothing here touches the database.
 */

/** A request as the ledger holds it: the record, when it came, and its attribution so far. */
export interface StoredRequest {
  readonly record: ResolvedRequest;
  /** It arrived after its period had been settled (counted in data quality, never dropped). */
  readonly late: boolean;
  readonly receivedAtMs: EpochMs;
  /** Running totals over the periods settled so far (zero until the first one). */
  readonly soFar: RequestEnergyDelta;
  /** Final figures once its last period has been settled; null until then. */
  readonly final: FinalizedRequest | null;
}

/** Cumulative sums the agent seeds its Prometheus counters with after a restart. */
export interface CounterTotals {
  /** Settled energy per GPU (hourly_energy plus the sums pruning carried into pruned_energy). */
  readonly gpus: readonly GpuEnergyTotal[];
  /** Attributed energy, tokens and requests per label set (hourly_usage plus pruned_usage). */
  readonly usage: readonly UsageTotal[];
  /** Host energy (hourly_host plus pruned_host). */
  readonly hostJ: number;
  /** Host energy by kind (hourly_host.estimated: a configured overhead), without what was pruned before schema 8. */
  readonly hostByKind: { readonly measuredJ: number; readonly estimatedJ: number };
  /** The part of hostByKind counted while the GPU power source was simulated. */
  readonly hostSimulated: { readonly measuredJ: number; readonly estimatedJ: number };
  /** acceptedRecords and duplicateRecords: records stored in time and duplicates acknowledged, counted at ingest since schema 9. */
  readonly quality: {
    readonly lateRecords: number;
    readonly rejectedRecords: number;
    readonly sampleErrors: number;
    readonly acceptedRecords: number;
    readonly duplicateRecords: number;
  };
  readonly tasks: { readonly count: number; readonly succeeded: number; readonly joules: number; readonly wasteJ: number };
  /** tokenwatt_tasks_total as the agent counted it, series for series (schema 12; empty before). */
  readonly taskSeries: readonly TaskCountIncrement[];
  /** tokenwatt_waste_energy_joules_total as the agent counted it, series for series (schema 12; empty before). */
  readonly wasteSeries: readonly WasteIncrement[];
}

export interface GpuEnergyTotal {
  readonly gpuUuid: string;
  /** Index of the GPU in its latest retained period, or null when no period is retained. */
  readonly gpuIndex: number | null;
  readonly measuredJ: number;
  readonly idleJ: number;
  readonly staticJ: number;
  readonly dynamicJ: number;
  readonly unattributedJ: number;
  readonly estimatedJ: number;
  /** Sample-covered time, without what was pruned before schema 8. */
  readonly coveredMs: number;
  readonly simulated: boolean;
}

export type UsageTotal = Omit<HourlyUsageRow, 'hourStartMs'>;

export interface RequestRow {
  request_id: string;
  task_id: string | null;
  attempt: number | null;
  model: string;
  tier: string;
  gpus: string;
  /** Added by schema 11: undefined when a query does not select it. */
  gpus_sent?: string | null;
  start_ms: number;
  first_token_ms: number | null;
  end_ms: number;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  batch_size: number | null;
  status: string;
  labels: string;
  tokens_estimated: number;
  granularity: string;
  source: string;
  late: number;
  received_at_ms: number;
  static_j: number;
  dynamic_j: number;
  prefill_j: number;
  decode_j: number;
  active_ms: number;
  concurrency_ms: number;
  estimated: number;
  per_gpu_j: string;
  /** Absent in files of schema version 5 and earlier (read-only readers). */
  before_end_hour_j?: string;
  /** Absent in files of schema version 9 and earlier; NULL but for OTLP rows (see migration 010). */
  otlp_spans?: string | null;
  joules: number | null;
  j_per_output_token: number | null;
  observed_batch_size: number | null;
  batch_bucket: string | null;
  cache_bucket: string | null;
  finalized: number;
  settled_at_ms: number | null;
}

/** Column order of {@link writeRequestParams}; the INSERT statement is built from it. */
export const REQUEST_INSERT_COLUMNS = [
  'request_id', 'task_id', 'attempt', 'model', 'tier', 'gpus', 'start_ms', 'first_token_ms', 'end_ms',
  'prompt_tokens', 'cached_tokens', 'completion_tokens', 'reasoning_tokens', 'batch_size', 'status',
  'labels', 'tokens_estimated', 'granularity', 'source', 'late', 'received_at_ms', 'otlp_spans', 'gpus_sent',
] as const;

/**
 * Write the positional parameters of one request (REQUEST_INSERT_COLUMNS, in order) into `params`
 * from index `at`: the caller keeps one array for a whole multi-row statement. better-sqlite3
 * binds no booleans: 0/1. `json` gives the GPU list and labels as JSON text.
 */
export function writeRequestParams(params: unknown[], at: number, r: ResolvedRequest, late: boolean, receivedAtMs: number, json: RequestJsonText): void {
  params[at] = r.requestId;
  params[at + 1] = r.taskId;
  params[at + 2] = r.attempt;
  params[at + 3] = r.model;
  params[at + 4] = r.tier;
  params[at + 5] = json.gpus(r.gpus);
  params[at + 6] = r.startMs;
  params[at + 7] = r.firstTokenMs;
  params[at + 8] = r.endMs;
  params[at + 9] = r.promptTokens;
  params[at + 10] = r.cachedTokens;
  params[at + 11] = r.completionTokens;
  params[at + 12] = r.reasoningTokens;
  params[at + 13] = r.batchSize;
  params[at + 14] = r.status;
  params[at + 15] = json.labels(r.labels);
  params[at + 16] = r.tokensEstimated ? 1 : 0;
  params[at + 17] = r.granularity;
  params[at + 18] = r.source;
  params[at + 19] = late ? 1 : 0;
  params[at + 20] = receivedAtMs;
  params[at + 21] = r.otlpSpans === undefined ? null : JSON.stringify(r.otlpSpans);
  // GPUs named by index (as a node's replicas are often configured) are kept as sent on every such
  // record: their text is cached as the resolved list's is.
  params[at + 22] = r.gpusSent ? json.gpusSent(r.gpusSent) : null;
}

/**
 * JSON text of a request's GPU list and labels, the last text given again while they stay equal:
 * the requests of a batch nearly all repeat them, and a new text per record was work for
 * JSON.stringify and then for the garbage collector. The answer is always JSON.stringify's.
 */
const MAX_SINGLE_GPU_TEXTS = 1024;

export class RequestJsonText {
  /** JSON text of one-GPU lists, by GPU. */
  private readonly singleGpuTexts = new Map<string, string>();
  /** A copy of the last GPU list of two or more. */
  private lastGpus: readonly string[] = [];
  private gpusText = '[]';
  /** Own enumerable keys of the last labels, in enumeration order, and their values. */
  private labelKeys: string[] = [];
  private labelValues: unknown[] = [];
  private labelsText = '{}';

  /** The texts of GPU lists as sent (ResolvedRequest.gpusSent), cached apart from the resolved ones'. */
  private sent: RequestJsonText | null = null;

  gpusSent(list: readonly string[]): string {
    this.sent ??= new RequestJsonText();
    return this.sent.gpus(list);
  }

  gpus(list: readonly string[]): string {
    // A one-GPU list, by its GPU: a node's records alternate between its replicas' GPUs, which
    // missed the last-list check below on nearly every record (BENCHMARKS.md, Ingest, sixteenth
    // round). The GPUs are the node's own (resolved), so the map stays small; bounded anyway.
    if (list.length === 1) {
      const gpu = list[0] as string;
      let text = this.singleGpuTexts.get(gpu);
      if (text === undefined) {
        if (this.singleGpuTexts.size >= MAX_SINGLE_GPU_TEXTS) this.singleGpuTexts.clear();
        text = JSON.stringify(list);
        this.singleGpuTexts.set(gpu, text);
      }
      return text;
    }
    // Compared with a copy, element by element: the caller may change its list between batches.
    const last = this.lastGpus;
    let same = list.length === last.length;
    for (let i = 0; same && i < list.length; i++) same = list[i] === last[i];
    if (same) return this.gpusText;
    this.gpusText = JSON.stringify(list);
    this.lastGpus = list.slice();
    return this.gpusText;
  }

  labels(labels: Readonly<Record<string, string>>): string {
    const keys = this.labelKeys;
    const values = this.labelValues;
    let n = 0;
    let same = true;
    for (const key in labels) {
      // Own keys only, as JSON.stringify: an inherited one never matches.
      if (n === keys.length || keys[n] !== key || values[n] !== labels[key] || !Object.prototype.hasOwnProperty.call(labels, key)) {
        same = false;
        break;
      }
      n++;
    }
    if (same && n === keys.length) return this.labelsText;
    this.labelsText = JSON.stringify(labels);
    const ownKeys = Object.keys(labels);
    this.labelKeys = ownKeys;
    this.labelValues = ownKeys.map((k) => labels[k]);
    return this.labelsText;
  }
}

export function soFarFromRow(row: Pick<RequestRow, 'request_id' | 'static_j' | 'dynamic_j' | 'prefill_j' | 'decode_j' | 'active_ms' | 'concurrency_ms' | 'estimated' | 'per_gpu_j'>): RequestEnergyDelta {
  return {
    requestId: row.request_id,
    staticJ: row.static_j,
    dynamicJ: row.dynamic_j,
    prefillJ: row.prefill_j,
    decodeJ: row.decode_j,
    activeMs: row.active_ms,
    concurrencyMs: row.concurrency_ms,
    estimated: row.estimated !== 0,
    perGpuJ: JSON.parse(row.per_gpu_j) as Record<string, number>,
  };
}

export function requestFromRow(row: RequestRow): StoredRequest {
  const final: FinalizedRequest | null =
    row.finalized !== 0
      ? {
          requestId: row.request_id,
          joules: row.joules ?? 0,
          jPerOutputToken: row.j_per_output_token,
          observedBatchSize: row.observed_batch_size ?? 0,
          batchBucket: row.batch_bucket ?? '',
          cacheBucket: row.cache_bucket ?? '',
          settledAtMs: epochMs(row.settled_at_ms ?? 0),
        }
      : null;
  const record: ResolvedRequest = {
    requestId: row.request_id,
    taskId: row.task_id,
    attempt: row.attempt,
    model: row.model,
    tier: row.tier,
    gpus: JSON.parse(row.gpus) as string[],
    startMs: epochMs(row.start_ms),
    firstTokenMs: row.first_token_ms === null ? null : epochMs(row.first_token_ms),
    endMs: epochMs(row.end_ms),
    promptTokens: row.prompt_tokens,
    cachedTokens: row.cached_tokens,
    completionTokens: row.completion_tokens,
    reasoningTokens: row.reasoning_tokens,
    batchSize: row.batch_size,
    status: row.status as RequestStatus,
    labels: JSON.parse(row.labels) as Record<string, string>,
    tokensEstimated: row.tokens_estimated !== 0,
    granularity: row.granularity === 'interval' ? 'interval' : 'request',
    source: row.source,
    ...(typeof row.otlp_spans === 'string' ? { otlpSpans: JSON.parse(row.otlp_spans) as OtlpSpanIds } : {}),
  };
  // Only where it was stored (rare): a record without one reads back as it was given.
  const withSent: ResolvedRequest = row.gpus_sent ? { ...record, gpusSent: JSON.parse(row.gpus_sent) as string[] } : record;
  return { record: withSent, late: row.late !== 0, receivedAtMs: epochMs(row.received_at_ms), soFar: soFarFromRow(row), final };
}

/** An unsettled request as one settlement needs it: the record, its lateness and its energy so far. */
export interface PendingRequestRow {
  readonly record: ResolvedRequest;
  /** The row's rowid, so that settlement writes it without a lookup by request_id. */
  readonly rowid: number;
  readonly late: boolean;
  readonly soFar: RequestAccumulator;
}

/** What one read of pending rows shares between its rows (see {@link pendingFromRawRow}). */
export interface PendingReadCache {
  readonly parsed: Map<string, unknown>;
  readonly strings: Map<string, string>;
}

/** The bits of the flags column of LOAD_UNSETTLED_STARTING_BEFORE (ledger-sql.ts). */
export const PENDING_FLAGS = { tokensEstimated: 1, interval: 2, late: 4, hasEnergy: 8 } as const;

/** What a request that has received no energy yet has so far: shared by all such rows, hence frozen. */
const NOTHING_SO_FAR: RequestAccumulator = Object.freeze({
  staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, activeMs: 0, concurrencyMs: 0, estimated: false, perGpuJ: Object.freeze({}), beforeEndHourJ: Object.freeze({}),
});

/**
 * A row of LOAD_UNSETTLED_STARTING_BEFORE in raw (array) form (PENDING_RECORD_COLUMNS, then its
 * flags, PENDING_FLAGS), with `energy`: the raw rows of PENDING_ENERGY by rowid (rowid, then
 * PENDING_ENERGY_COLUMNS). Raw rows and a per-call cache keep the per-settlement read cheap in time
 * and memory (it runs for every request in every period it spans, and a period can hold tens of
 * thousands): JSON text that repeats across requests (label sets, GPU lists) is parsed once,
 * repeated strings (model, tier, status, source) are kept once, and requests with no energy yet
 * share one frozen accumulator.
 */
export function pendingFromRawRow(row: readonly unknown[], energy: ReadonlyMap<number, readonly unknown[]>, cache: PendingReadCache): PendingRequestRow {
  const json = <T>(text: string): T => {
    let value = cache.parsed.get(text);
    if (value === undefined) {
      value = JSON.parse(text) as unknown;
      cache.parsed.set(text, value);
    }
    return value as T;
  };
  const once = <T extends string>(text: T): T => {
    const kept = cache.strings.get(text) as T | undefined;
    if (kept !== undefined) return kept;
    cache.strings.set(text, text);
    return text;
  };
  const firstTokenMs = row[7] as number | null;
  const rowid = row[17] as number;
  const flags = row[18] as number;
  const record: ResolvedRequest = {
    requestId: row[0] as string,
    taskId: row[1] as string | null,
    attempt: row[2] as number | null,
    model: once(row[3] as string),
    tier: once(row[4] as string),
    gpus: json<string[]>(row[5] as string),
    startMs: epochMs(row[6] as number),
    firstTokenMs: firstTokenMs === null ? null : epochMs(firstTokenMs),
    endMs: epochMs(row[8] as number),
    promptTokens: row[9] as number,
    cachedTokens: row[10] as number,
    completionTokens: row[11] as number,
    reasoningTokens: row[12] as number,
    batchSize: row[13] as number | null,
    status: once(row[14] as RequestStatus),
    labels: json<Record<string, string>>(row[15] as string),
    tokensEstimated: (flags & PENDING_FLAGS.tokensEstimated) !== 0,
    granularity: (flags & PENDING_FLAGS.interval) !== 0 ? 'interval' : 'request',
    source: once(row[16] as string),
  };
  let soFar = NOTHING_SO_FAR;
  if ((flags & PENDING_FLAGS.hasEnergy) !== 0) {
    const e = energy.get(rowid);
    // Both reads run in one transaction; a row flagged in one and absent from the other is a bug.
    if (e === undefined) throw new Error(`pending request ${JSON.stringify(record.requestId)}: its energy so far was not read`);
    soFar = soFarFromEnergyRow(e);
  }
  return { record, rowid, late: (flags & PENDING_FLAGS.late) !== 0, soFar };
}

/** A raw row of PENDING_ENERGY (rowid, then PENDING_ENERGY_COLUMNS) as the request's energy so far. */
function soFarFromEnergyRow(e: readonly unknown[]): RequestAccumulator {
  const staticJ = e[1] as number;
  const dynamicJ = e[2] as number;
  const estimated = e[7] !== 0;
  const perGpu = e[8] as string;
  const beforeEndHour = e[9] as string;
  if (staticJ === 0 && dynamicJ === 0 && e[3] === 0 && e[4] === 0 && e[5] === 0 && e[6] === 0 && !estimated && perGpu === '{}' && beforeEndHour === '{}') return NOTHING_SO_FAR;
  return {
    staticJ,
    dynamicJ,
    prefillJ: e[3] as number,
    decodeJ: e[4] as number,
    activeMs: e[5] as number,
    concurrencyMs: e[6] as number,
    estimated,
    perGpuJ: JSON.parse(perGpu) as Record<string, number>,
    beforeEndHourJ: beforeEndHour === '{}' ? NOTHING_SO_FAR.beforeEndHourJ : (JSON.parse(beforeEndHour) as EnergyBeforeEndHour),
  };
}

export interface SampleRow {
  ts_ms: number;
  gpu_uuid: string;
  gpu_index: number;
  power_w: number | null;
  energy_j: number | null;
  averaged: number;
  simulated: number;
  counter_run_start: number;
}

export function sampleParams(s: PowerSample): unknown[] {
  return [s.timestampMs, s.gpuUuid, s.gpuIndex, s.powerW, s.energyJ, s.powerAveraged ? 1 : 0, s.simulated ? 1 : 0, s.counterRunStart ? 1 : 0];
}

export function sampleFromRow(row: SampleRow): PowerSample {
  const sample: PowerSample = {
    timestampMs: epochMs(row.ts_ms),
    gpuUuid: row.gpu_uuid,
    gpuIndex: row.gpu_index,
    powerW: row.power_w === null ? null : watts(row.power_w),
    energyJ: row.energy_j === null ? null : joules(row.energy_j),
  };
  // Optional flags appear only when set, as the sources emit them.
  if (row.averaged !== 0 || row.simulated !== 0 || row.counter_run_start !== 0) {
    return {
      ...sample,
      ...(row.averaged !== 0 && { powerAveraged: true }),
      ...(row.simulated !== 0 && { simulated: true }),
      ...(row.counter_run_start !== 0 && { counterRunStart: true }),
    };
  }
  return sample;
}

export interface HourlyEnergySqlRow {
  hour_start_ms: number;
  node: string;
  gpu_uuid: string;
  measured_j: number;
  idle_j: number;
  static_j: number;
  dynamic_j: number;
  unattributed_j: number;
  estimated_j: number;
  covered_ms: number;
  counter_resets: number;
  gaps: number;
  simulated: number;
}

export function hourlyEnergyFromRow(r: HourlyEnergySqlRow): HourlyEnergyRow {
  return {
    hourStartMs: epochMs(r.hour_start_ms),
    node: r.node,
    gpuUuid: r.gpu_uuid,
    measuredJ: r.measured_j,
    idleJ: r.idle_j,
    staticJ: r.static_j,
    dynamicJ: r.dynamic_j,
    unattributedJ: r.unattributed_j,
    estimatedJ: r.estimated_j,
    coveredMs: r.covered_ms,
    counterResets: r.counter_resets,
    gaps: r.gaps,
    simulated: r.simulated !== 0,
  };
}

export interface HourlyUsageSqlRow {
  hour_start_ms: number;
  node: string;
  model: string;
  tier: string;
  cache_bucket: string;
  batch_bucket: string;
  status: string;
  team: string;
  feature: string;
  requests: number;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  static_j: number;
  dynamic_j: number;
  prefill_j: number;
  decode_j: number;
  simulated: number;
}

export function usageTotalFromRow(r: Omit<HourlyUsageSqlRow, 'hour_start_ms'>): UsageTotal {
  return {
    node: r.node,
    model: r.model,
    tier: r.tier,
    cacheBucket: r.cache_bucket,
    batchBucket: r.batch_bucket,
    status: r.status,
    team: r.team,
    feature: r.feature,
    requests: r.requests,
    promptTokens: r.prompt_tokens,
    cachedTokens: r.cached_tokens,
    completionTokens: r.completion_tokens,
    reasoningTokens: r.reasoning_tokens,
    staticJ: r.static_j,
    dynamicJ: r.dynamic_j,
    prefillJ: r.prefill_j,
    decodeJ: r.decode_j,
    simulated: r.simulated !== 0,
  };
}

export function hourlyUsageFromRow(r: HourlyUsageSqlRow): HourlyUsageRow {
  return { hourStartMs: epochMs(r.hour_start_ms), ...usageTotalFromRow(r) };
}

export interface HourlyHostSqlRow {
  hour_start_ms: number;
  node: string;
  host_j: number;
  estimated: number;
}

export function hourlyHostFromRow(r: HourlyHostSqlRow): HourlyHostEnergyRow {
  return { hourStartMs: epochMs(r.hour_start_ms), node: r.node, hostJ: r.host_j, estimated: r.estimated !== 0 };
}

export interface HourlyQualitySqlRow {
  hour_start_ms: number;
  node: string;
  late_records: number;
  rejected_records: number;
  sample_errors: number;
}

export function hourlyQualityFromRow(r: HourlyQualitySqlRow): HourlyQualityRow {
  return {
    hourStartMs: epochMs(r.hour_start_ms),
    node: r.node,
    lateRecords: r.late_records,
    rejectedRecords: r.rejected_records,
    sampleErrors: r.sample_errors,
  };
}

export interface TaskSqlRow {
  task_id: string;
  node: string;
  first_start_ms: number;
  last_end_ms: number;
  requests: number;
  joules: number;
  waste_j: number;
  completion_tokens: number;
  last_status: string;
  tier: string;
  team: string;
  feature: string;
  /** Schema 14: what the counters have of a reopened task (all NULL otherwise, and absent before). */
  counted_tier?: string | null;
  counted_succeeded?: number | null;
  counted_joules?: number | null;
  counted_waste_j?: number | null;
  counted_failed_j?: number | null;
}

/**
 * What the task counters have of a task (schema 14; null: nothing, it never closed since), or why
 * its counted_* columns cannot be read. The five columns are written together: a row with some of
 * them only, or with a value no settlement writes (edited by hand), is refused by name, not read
 * as something else (a task never counted would be counted again; a counted_succeeded of 2 is not
 * "failed").
 */
export function countedFromRow(r: TaskSqlRow): CountedTask | null | string {
  const fields = {
    counted_tier: r.counted_tier, counted_succeeded: r.counted_succeeded, counted_joules: r.counted_joules,
    counted_waste_j: r.counted_waste_j, counted_failed_j: r.counted_failed_j,
  };
  const task = `task ${JSON.stringify(r.task_id)}`;
  const missing = Object.entries(fields).filter(([, v]) => v === null || v === undefined).map(([k]) => k);
  if (missing.length === Object.keys(fields).length) return null;
  if (missing.length > 0) return `${task}: ${missing.join(', ')} missing beside the other counted_* columns (they are written together)`;
  const tier = fields.counted_tier as unknown;
  if (typeof tier !== 'string') return `${task}: counted_tier is ${describe(tier)}, not text`;
  const succeeded = fields.counted_succeeded as unknown;
  if (succeeded !== 0 && succeeded !== 1) return `${task}: counted_succeeded is ${describe(succeeded)}, not 0 or 1`;
  for (const key of ['counted_joules', 'counted_waste_j', 'counted_failed_j'] as const) {
    const v = fields[key] as unknown;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return `${task}: ${key} is ${describe(v)}, not a finite number >= 0`;
  }
  return {
    tier, succeeded: succeeded === 1, joules: fields.counted_joules as number, wasteJ: fields.counted_waste_j as number, failedJ: fields.counted_failed_j as number,
  };
}

/** A stored value as a problem message shows it: text quoted, so 'yes' and a number read apart. */
function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export function taskFromRow(r: TaskSqlRow): TaskRow {
  return {
    taskId: r.task_id,
    node: r.node,
    firstStartMs: epochMs(r.first_start_ms),
    lastEndMs: epochMs(r.last_end_ms),
    requests: r.requests,
    succeeded: r.last_status === 'ok',
    joules: r.joules,
    wasteJ: r.waste_j,
    completionTokens: r.completion_tokens,
    tier: r.tier,
    team: r.team,
    feature: r.feature,
  };
}
