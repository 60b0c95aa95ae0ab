import { z } from 'zod';
import { refuseReservedReportKey, reservedLabelValueReason, reservedReportKeyReason } from './report-keys.js';
import type { EpochMs } from './units.js';

/** Status of one request as the serving stack saw it. */
export type RequestStatus = 'ok' | 'error' | 'cancelled';

/**
 * A request record after validation: camelCase, times as epoch milliseconds, defaults applied.
 * `gpus` holds references as given (indices or UUIDs) until the agent resolves them to UUIDs
 * with {@link resolveRecordGpus}.
 */
export interface RequestRecord {
  readonly requestId: string;
  readonly taskId: string | null;
  readonly attempt: number | null;
  readonly model: string;
  /** Tier as given; null means "look it up in the config map, else 'default'". */
  readonly tier: string | null;
  readonly gpus: readonly string[] | null;
  readonly startMs: EpochMs;
  readonly firstTokenMs: EpochMs | null;
  readonly endMs: EpochMs;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
  readonly batchSize: number | null;
  readonly status: RequestStatus;
  readonly labels: Readonly<Record<string, string>>;
  /** True when token counts were estimated (e.g. a proxied stream without usage). */
  readonly tokensEstimated: boolean;
  /** 'interval' for records synthesised from engine counters (no per-request data). */
  readonly granularity: 'request' | 'interval';
  /** Where the record came from: http, proxy, engine-metrics, otlp, file, simulated. */
  readonly source: string;
  /** OTLP only: the span(s) the record was taken from, by side (one call seen from both sides is one record). */
  readonly otlpSpans?: OtlpSpanIds;
  /**
   * Set by resolveRecord (see ResolvedRequest.gpusSent). The wire parsers give it as null, so that
   * resolving a record replaces a property rather than adding one: an object spread plus one new
   * property cost about half again the ingest CPU per record (BENCHMARKS.md, Ingest, seventeenth round).
   */
  readonly gpusSent?: readonly string[] | null;
}

/** The span ids of an OTLP record: the app's client span, the engine's server span, or both once merged. */
export interface OtlpSpanIds {
  readonly client?: string;
  readonly server?: string;
}

/** A record whose tier and GPUs are settled: what attribution consumes. */
export interface ResolvedRequest extends RequestRecord {
  readonly tier: string;
  /** Physical GPU UUIDs (MIG instances resolved to their parent). */
  readonly gpus: readonly string[];
  /**
   * The GPU references as the record gave them, where they are not `gpus` itself (indexes, MIG
   * device UUIDs, another case); null (or absent) otherwise. A resend is compared with them: the
   * mapping from index to UUID may have changed since the first send.
   */
  readonly gpusSent?: readonly string[] | null;
}

/** One reason one record was refused. `index` is its position in the batch (0-based). */
export interface RecordError {
  readonly index: number;
  readonly requestId?: string;
  /** Wire name of the field at fault, or "(record)" for the record as a whole. */
  readonly field: string;
  readonly reason: string;
}

/** Largest token count of one record field: far above any context window, larger is a unit mistake. */
export const MAX_TOKENS = 100_000_000;
const MAX_ID_LENGTH = 256;
const MAX_LABELS = 32;
/** Most labels one record carries (the proxy's configured header labels are held to it too). */
export const MAX_RECORD_LABELS = MAX_LABELS;
const MAX_LABEL_VALUE = 256;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,63}$/;
/** A record label's name: the rule for posted records, and for labels other sources carry into theirs. */
export const recordLabelName = z.string().regex(LABEL_NAME, 'a label name must match [a-zA-Z_][a-zA-Z0-9_]* and be at most 64 characters');
const TOO_MANY_LABELS = `at most ${MAX_LABELS} labels`;
const NOT_WELL_FORMED = 'must be well-formed Unicode (it holds a lone UTF-16 surrogate, which SQLite and Prometheus cannot keep)';

/** String.prototype.isWellFormed (Node 20+; ES2024, newer than this project's lib). */
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Why a record would refuse `value` as its label `name` (the name itself valid), or null. The
 * proxy and OTLP check each label they carry with it, to leave out that label, not lose the record.
 */
export function recordLabelValueProblem(name: string, value: string): string | null {
  if (value.length > MAX_LABEL_VALUE) return `longer than ${MAX_LABEL_VALUE} characters`;
  if (!wellFormed(value)) return NOT_WELL_FORMED;
  return reservedLabelValueReason(name, value);
}

/** A text field: its length bounds, and well-formed Unicode so that it reads back as it was sent. */
const text = (min: number, max: number, emptyMessage?: string) =>
  z.string().min(min, emptyMessage).max(max).refine(wellFormed, NOT_WELL_FORMED);
// Epoch ms between 2000-01-01 and 2200-01-01: anything else is seconds or nanoseconds by mistake.
const MIN_EPOCH_MS = 946_684_800_000;
const MAX_EPOCH_MS = 7_258_118_400_000;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * Whether the fields of an RFC 3339 match name a real time. Date.parse rolls 2026-02-30 over
 * to March 2 and T24:00 to the next day; a record would then be attributed to another day.
 */
function realCalendarTime(m: RegExpExecArray): boolean {
  const field = (i: number): number => Number(m[i]);
  const [year, month, day] = [field(1), field(2), field(3)];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const dateOk = month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth;
  const timeOk = field(4) <= 23 && field(5) <= 59 && field(6) <= 59;
  const offsetOk = m[9] === undefined || (field(9) <= 23 && field(10) <= 59);
  return dateOk && timeOk && offsetOk;
}

/** Parse an RFC 3339 string or epoch milliseconds. Returns an error reason or the time. */
export function parseTimestamp(value: unknown): { ok: true; ms: EpochMs } | { ok: false; reason: string } {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { ok: false, reason: 'must be a finite number' };
    if (value < MIN_EPOCH_MS || value > MAX_EPOCH_MS) {
      return { ok: false, reason: `epoch milliseconds out of range (got ${value}; seconds or nanoseconds?)` };
    }
    if (!Number.isInteger(value)) return { ok: false, reason: `must be a whole number of epoch milliseconds (got ${value})` };
    return { ok: true, ms: value as EpochMs };
  }
  if (typeof value === 'string') {
    const fields = RFC3339.exec(value);
    if (!fields) return { ok: false, reason: `not an RFC 3339 timestamp: ${JSON.stringify(value.slice(0, 40))}` };
    if (fields[6] === '60') return { ok: false, reason: `leap seconds (:60) are not accepted: ${JSON.stringify(value.slice(0, 40))}; send :59.999` };
    const ms = Date.parse(value.replace(' ', 'T'));
    if (!Number.isFinite(ms) || !realCalendarTime(fields)) return { ok: false, reason: `not a valid date: ${JSON.stringify(value.slice(0, 40))}` };
    // The same range as epoch milliseconds: "0001-01-01T00:00:00Z" is an unset time (Go's zero value), not a start.
    if (ms < MIN_EPOCH_MS || ms > MAX_EPOCH_MS) return { ok: false, reason: `out of range (got ${JSON.stringify(value.slice(0, 40))}; from 2000 to 2200)` };
    return { ok: true, ms: ms as EpochMs };
  }
  if (value === undefined) return { ok: false, reason: 'required' };
  return { ok: false, reason: 'must be an RFC 3339 string or epoch milliseconds' };
}

const timestamp = z.unknown().transform((value, ctx) => {
  const parsed = parseTimestamp(value);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: parsed.reason });
    return z.NEVER;
  }
  return parsed.ms;
});
/** One reason per count: zod's int() also refuses integers past 2^53, where "must be an integer" would be wrong. */
const tokenCount = z.number().superRefine((n, ctx) => {
  const reason = n < 0 ? 'must be >= 0' : n > MAX_TOKENS ? `must be <= ${MAX_TOKENS}` : Number.isInteger(n) ? null : 'must be an integer';
  if (reason !== null) ctx.addIssue({ code: 'custom', message: reason });
});
const GPU_INDEX = 'a GPU index is a whole number from 0 to 1023';
/** zod's own message for a value neither branch takes is "Invalid input": say what a GPU entry is. */
const gpuRef = z.union([z.number().int(GPU_INDEX).min(0, GPU_INDEX).max(1023, GPU_INDEX), text(1, 128, 'a GPU UUID must not be empty')], {
  error: (issue) => (issue.code === 'invalid_union' ? `must be a GPU index (a whole number from 0 to 1023) or a GPU UUID string, got ${JSON.stringify(issue.input)?.slice(0, 40) ?? String(issue.input)}` : undefined),
});

/** The wire schema of DESIGN.md (snake_case). Unknown keys are refused so a typo is not lost silently. */
export const requestRecordWireSchema = z
  .strictObject({
    request_id: text(1, MAX_ID_LENGTH, 'must not be empty'),
    task_id: text(1, MAX_ID_LENGTH).optional(),
    attempt: z.number().int('must be an integer').min(1, 'must be >= 1').max(10_000).optional(),
    model: text(1, 256, 'must not be empty').superRefine(refuseReservedReportKey),
    tier: text(1, 64).superRefine(refuseReservedReportKey).optional(),
    gpus: z.array(gpuRef).min(1, 'must name at least one GPU').max(64).optional(),
    start: timestamp,
    first_token: timestamp.optional(),
    end: timestamp,
    prompt_tokens: tokenCount,
    cached_tokens: tokenCount.default(0),
    completion_tokens: tokenCount,
    reasoning_tokens: tokenCount.default(0),
    batch_size: z.number().int('must be an integer').min(1, 'must be >= 1').max(100_000).optional(),
    status: z.enum(['ok', 'error', 'cancelled']).default('ok'),
    labels: z
      .record(recordLabelName, text(0, MAX_LABEL_VALUE))
      .refine((labels) => Object.keys(labels).length <= MAX_LABELS, TOO_MANY_LABELS)
      .superRefine((labels, ctx) => {
        for (const [name, value] of Object.entries(labels)) {
          const reason = reservedLabelValueReason(name, value);
          if (reason !== null) ctx.addIssue({ code: 'custom', path: [name], message: reason });
        }
      })
      .optional(),
    tokens_estimated: z.boolean().optional(),
    granularity: z.enum(['request', 'interval']).optional(),
    source: text(1, 32).optional(),
  })
  .superRefine((r, ctx) => {
    for (const issue of crossFieldIssues(r)) ctx.addIssue({ code: 'custom', path: [issue.field], message: issue.message });
  });

/**
 * The checks between fields, in the order the schema reports them. zod 4 runs them even when a
 * field failed; only values that are valid themselves are compared, so one bad field yields one
 * error rather than a cascade.
 */
function crossFieldIssues(r: Readonly<Record<string, unknown>>): { field: string; message: string }[] {
  const issues: { field: string; message: string }[] = [];
  const count = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_TOKENS;
  const time = (t: unknown): t is number => typeof t === 'number' && Number.isFinite(t);
  const { start, first_token: firstToken, end } = r;
  if (time(end) && time(start) && end < start) issues.push({ field: 'end', message: 'end precedes start' });
  if (time(firstToken) && time(start) && time(end) && (firstToken < start || firstToken > end)) {
    issues.push({ field: 'first_token', message: 'first_token must lie between start and end' });
  }
  if (count(r.cached_tokens) && count(r.prompt_tokens) && r.cached_tokens > r.prompt_tokens) {
    issues.push({ field: 'cached_tokens', message: 'cached_tokens exceeds prompt_tokens' });
  }
  if (count(r.reasoning_tokens) && count(r.completion_tokens) && r.reasoning_tokens > r.completion_tokens) {
    issues.push({ field: 'reasoning_tokens', message: 'reasoning_tokens exceeds completion_tokens' });
  }
  return issues;
}

export type RequestRecordWire = z.input<typeof requestRecordWireSchema>;

function fromWire(r: z.output<typeof requestRecordWireSchema>): RequestRecord {
  return {
    requestId: r.request_id,
    taskId: r.task_id ?? null,
    attempt: r.attempt ?? null,
    model: r.model,
    tier: r.tier ?? null,
    gpus: r.gpus ? r.gpus.map(String) : null,
    startMs: r.start,
    firstTokenMs: r.first_token ?? null,
    endMs: r.end,
    promptTokens: r.prompt_tokens,
    cachedTokens: r.cached_tokens,
    completionTokens: r.completion_tokens,
    reasoningTokens: r.reasoning_tokens,
    batchSize: r.batch_size ?? null,
    status: r.status,
    labels: r.labels ?? {},
    tokensEstimated: r.tokens_estimated ?? false,
    granularity: r.granularity ?? 'request',
    source: r.source ?? 'http',
    gpusSent: null,
  };
}

/** Convert a record back to its wire form (for files, proxies and tests). */
export function toWire(r: RequestRecord): RequestRecordWire {
  const wire: Record<string, unknown> = {
    request_id: r.requestId,
    model: r.model,
    start: r.startMs,
    end: r.endMs,
    prompt_tokens: r.promptTokens,
    cached_tokens: r.cachedTokens,
    completion_tokens: r.completionTokens,
    reasoning_tokens: r.reasoningTokens,
    status: r.status,
  };
  if (r.taskId !== null) wire.task_id = r.taskId;
  if (r.attempt !== null) wire.attempt = r.attempt;
  if (r.tier !== null) wire.tier = r.tier;
  if (r.gpus !== null) wire.gpus = [...r.gpus];
  if (r.firstTokenMs !== null) wire.first_token = r.firstTokenMs;
  if (r.batchSize !== null) wire.batch_size = r.batchSize;
  if (Object.keys(r.labels).length > 0) wire.labels = { ...r.labels };
  if (r.tokensEstimated) wire.tokens_estimated = true;
  if (r.granularity !== 'request') wire.granularity = r.granularity;
  if (r.source !== 'http') wire.source = r.source;
  return wire as RequestRecordWire;
}

// ---- the common case, checked without zod ------------------------------------------------------
//
// Validating a record through zod allocates several kilobytes and takes microseconds; at 100k
// records/s that is most of the ingest budget. Nearly every record is well formed, so this
// accepts exactly the records the wire schema accepts, when they are plain JSON, and builds the
// same RequestRecord. Anything it is not sure about returns null and goes through zod, which also
// writes every error message. A property test (test/model/request-record-fast-path.test.ts)
// checks on random valid and invalid records that whatever this accepts, zod accepts with the
// same result.

const WIRE_KEYS = new Set(Object.keys(requestRecordWireSchema.shape));
const STATUSES: ReadonlySet<unknown> = new Set(['ok', 'error', 'cancelled']);

const isString = (v: unknown, min: number, max: number): v is string =>
  typeof v === 'string' && v.length >= min && v.length <= max && wellFormed(v);
const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** A timestamp the schema accepts (parseTimestamp), or null. */
function fastTime(v: unknown): EpochMs | null {
  if (typeof v === 'number') return Number.isInteger(v) && v >= MIN_EPOCH_MS && v <= MAX_EPOCH_MS ? (v as EpochMs) : null;
  if (typeof v !== 'string') return null;
  const parsed = parseTimestamp(v);
  return parsed.ok ? parsed.ms : null;
}

function fastGpus(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length < 1 || v.length > 64) return null;
  const out: string[] = new Array<string>(v.length);
  for (let i = 0; i < v.length; i++) {
    const g: unknown = v[i];
    if (isInt(g, 0, 1023)) out[i] = String(g);
    else if (isString(g, 1, 128)) out[i] = g;
    else return null;
  }
  return out;
}

function fastLabels(v: unknown): Record<string, string> | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) return null;
  const out: Record<string, string> = {};
  let n = 0;
  for (const key in v) {
    if (!Object.prototype.hasOwnProperty.call(v, key)) return null;
    const value: unknown = (v as Record<string, unknown>)[key];
    if (++n > MAX_LABELS || !LABEL_NAME.test(key) || !isString(value, 0, MAX_LABEL_VALUE) || reservedLabelValueReason(key, value) !== null) return null;
    out[key] = value;
  }
  return out;
}

/**
 * The record the wire schema would produce, for a plain, fully valid record; null when the
 * input needs the schema's full check (it may still be valid).
 */
export function acceptCommonRecord(input: object): RequestRecord | null {
  if (Object.getPrototypeOf(input) !== Object.prototype) return null;
  for (const key in input) {
    if (!WIRE_KEYS.has(key) || !Object.prototype.hasOwnProperty.call(input, key)) return null;
  }
  const r = input as Record<string, unknown>;
  const requestId = r.request_id;
  const model = r.model;
  if (!isString(requestId, 1, MAX_ID_LENGTH) || !isString(model, 1, 256) || reservedReportKeyReason(model) !== null) return null;
  const taskId = r.task_id;
  if (taskId !== undefined && !isString(taskId, 1, MAX_ID_LENGTH)) return null;
  const attempt = r.attempt;
  if (attempt !== undefined && !isInt(attempt, 1, 10_000)) return null;
  const tier = r.tier;
  if (tier !== undefined && (!isString(tier, 1, 64) || reservedReportKeyReason(tier) !== null)) return null;
  const gpus = r.gpus === undefined ? null : fastGpus(r.gpus);
  if (r.gpus !== undefined && gpus === null) return null;
  const startMs = fastTime(r.start);
  const endMs = fastTime(r.end);
  if (startMs === null || endMs === null || endMs < startMs) return null;
  const firstTokenMs = r.first_token === undefined ? null : fastTime(r.first_token);
  if (r.first_token !== undefined && (firstTokenMs === null || firstTokenMs < startMs || firstTokenMs > endMs)) return null;
  const promptTokens = r.prompt_tokens;
  const completionTokens = r.completion_tokens;
  const cachedTokens = r.cached_tokens === undefined ? 0 : r.cached_tokens; // null is not absent: zod refuses it
  const reasoningTokens = r.reasoning_tokens === undefined ? 0 : r.reasoning_tokens;
  if (!isInt(promptTokens, 0, MAX_TOKENS) || !isInt(completionTokens, 0, MAX_TOKENS)) return null;
  if (!isInt(cachedTokens, 0, promptTokens) || !isInt(reasoningTokens, 0, completionTokens)) return null;
  const batchSize = r.batch_size;
  if (batchSize !== undefined && !isInt(batchSize, 1, 100_000)) return null;
  const status = r.status === undefined ? 'ok' : r.status;
  if (!STATUSES.has(status)) return null;
  const labels = r.labels === undefined ? {} : fastLabels(r.labels);
  if (labels === null) return null;
  const tokensEstimated = r.tokens_estimated === undefined ? false : r.tokens_estimated;
  if (typeof tokensEstimated !== 'boolean') return null;
  const granularity = r.granularity === undefined ? 'request' : r.granularity;
  if (granularity !== 'request' && granularity !== 'interval') return null;
  const source = r.source;
  if (source !== undefined && !isString(source, 1, 32)) return null;
  return {
    requestId,
    taskId: taskId ?? null,
    attempt: attempt ?? null,
    model,
    tier: tier ?? null,
    gpus,
    startMs,
    firstTokenMs,
    endMs,
    promptTokens,
    cachedTokens,
    completionTokens,
    reasoningTokens,
    batchSize: batchSize ?? null,
    status: status as RequestStatus,
    labels,
    tokensEstimated,
    granularity,
    source: source ?? 'http',
    gpusSent: null,
  };
}

export function requestIdOf(input: unknown): string | undefined {
  if (input && typeof input === 'object' && 'request_id' in input) {
    const id = (input as { request_id: unknown }).request_id;
    if (typeof id === 'string') return id.slice(0, MAX_ID_LENGTH);
  }
  return undefined;
}

/** The refusal found before the schema runs (not an object; a reserved label name), or null. */
function refusedBeforeSchema(input: unknown, index: number): RecordError | null {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { index, field: '(record)', reason: 'must be a JSON object' };
  }
  // JSON.parse keeps "__proto__" as an own key, but copying it into an object sets the prototype
  // instead, so the label would vanish silently: refuse it by name.
  const labels = (input as { labels?: unknown }).labels;
  if (labels !== null && typeof labels === 'object' && Object.prototype.hasOwnProperty.call(labels, '__proto__')) {
    const requestId = requestIdOf(input);
    const error = { index, field: 'labels.__proto__', reason: 'reserved label name' };
    return requestId === undefined ? error : { ...error, requestId };
  }
  // The schema checks every key and value before it counts them, one issue each: a record of a
  // million bad labels took seconds and hundreds of MB. Past the limit, no label matters.
  if (labels !== null && typeof labels === 'object' && !Array.isArray(labels) && moreKeysThan(labels, MAX_LABELS)) {
    const requestId = requestIdOf(input);
    const error = { index, field: 'labels', reason: TOO_MANY_LABELS };
    return requestId === undefined ? error : { ...error, requestId };
  }
  return null;
}

/** Unknown keys named in an error; the rest are counted. */
const MAX_NAMED_KEYS = 5;
/** Longest key name shown in an error: a client's key can be as long as the body. */
const MAX_SHOWN_KEY = 64;

/** A client-chosen key as an error shows it. */
export function shownKey(key: string): string {
  return key.length > MAX_SHOWN_KEY ? `${key.slice(0, MAX_SHOWN_KEY - 3)}...` : key;
}

/** The error for unknown keys: the first few named in `field`, the rest counted in `reason`. */
function unknownKeysError(keys: readonly string[], total: number): { field: string; reason: string } {
  const field = keys.slice(0, MAX_NAMED_KEYS).map(shownKey).join(',');
  const rest = total - Math.min(total, MAX_NAMED_KEYS);
  return { field, reason: rest === 0 ? 'unknown field' : `unknown field (and ${rest} more unknown fields, not named)` };
}

/** The unknown keys of a record: the first MAX_NAMED_KEYS, and how many in all. */
function unknownKeysOf(input: object): { keys: string[]; total: number } {
  const keys: string[] = [];
  let total = 0;
  for (const key in input) {
    if (WIRE_KEYS.has(key)) continue;
    if (total++ < MAX_NAMED_KEYS) keys.push(key);
  }
  return { keys, total };
}

function moreKeysThan(o: object, n: number): boolean {
  let count = 0;
  for (const key in o) if (Object.prototype.hasOwnProperty.call(o, key) && ++count > n) return true;
  return false;
}

/** Through the wire schema: the record, or every issue as a RecordError. */
function parseWithSchema(input: object, index: number): { ok: true; record: RequestRecord } | { ok: false; errors: RecordError[] } {
  const result = requestRecordWireSchema.safeParse(input);
  if (result.success) return { ok: true, record: fromWire(result.data) };
  const requestId = requestIdOf(input);
  const errors = result.error.issues.map((issue): RecordError => {
    let field = issue.path.length > 0 ? issue.path.map((part) => shownKey(String(part))).join('.') : '(record)';
    let reason = issue.message;
    if (issue.code === 'unrecognized_keys') {
      ({ field, reason } = unknownKeysError(issue.keys, issue.keys.length));
    } else if (issue.code === 'invalid_key') {
      reason = issue.issues[0]?.message ?? reason; // zod says "Invalid key in record"; the key's own check says why
    } else if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
      reason = 'required';
    }
    return requestId === undefined ? { index, field, reason } : { index, requestId, field, reason };
  });
  return { ok: false, errors };
}

/**
 * Validate one wire record. Returns the record or every problem found in it (not just the first),
 * each naming the field and the reason.
 */
export function parseRequestRecord(input: unknown, index: number): { ok: true; record: RequestRecord } | { ok: false; errors: RecordError[] } {
  const early = refusedBeforeSchema(input, index);
  if (early !== null) return { ok: false, errors: [early] };
  const common = acceptCommonRecord(input as object);
  if (common !== null) return { ok: true, record: common };
  return parseWithSchema(input as object, index);
}

// ---- a refusal, cheaply ------------------------------------------------------------------------
//
// Past the errors an ingest answer lists, a refused record needs only to be counted, under the
// field of its first error (the reason of tokenwatt_records_rejected_total). The schema builds
// every issue of a record with its message: about 30 us for `{}`, and a body can hold millions.
// The schema reports a record's fields in its shape's order, then its unknown keys, then the
// checks between fields; so the first field that fails its own schema is the first error's field.
// test/model/request-record-fast-path.test.ts checks this against parseRequestRecord.

const SHAPE = requestRecordWireSchema.shape as Readonly<Record<string, z.ZodType>>;
const SHAPE_KEYS = Object.keys(SHAPE);
/** Fields the schema refuses when absent. */
const REQUIRED_KEYS: ReadonlySet<string> = new Set(SHAPE_KEYS.filter((key) => !SHAPE[key]?.safeParse(undefined).success));

/** The field of the first error the schema reports for a plain object, or null when it has none. */
function firstRefusedField(input: Readonly<Record<string, unknown>>): string | null {
  const parsed: Record<string, unknown> = {};
  for (const key of SHAPE_KEYS) {
    const value = input[key];
    if (value === undefined) {
      if (REQUIRED_KEYS.has(key)) return key;
      continue; // a default, which the checks between fields pass anyway
    }
    const result = (SHAPE[key] as z.ZodType).safeParse(value);
    if (!result.success) return [key, ...(result.error.issues[0]?.path ?? [])].map((part) => shownKey(String(part))).join('.');
    parsed[key] = result.data;
  }
  const { keys, total } = unknownKeysOf(input);
  if (total > 0) return unknownKeysError(keys, total).field;
  return crossFieldIssues(parsed)[0]?.field ?? null;
}

/**
 * What {@link parseRequestRecord} decides, without its error list: the same record, or the field
 * of its first error. For records past those an answer lists.
 */
export function checkRequestRecord(input: unknown): { ok: true; record: RequestRecord } | { ok: false; field: string } {
  const early = refusedBeforeSchema(input, 0);
  if (early !== null) return { ok: false, field: early.field };
  const common = acceptCommonRecord(input as object);
  if (common !== null) return { ok: true, record: common };
  const field = firstRefusedField(input as Readonly<Record<string, unknown>>);
  if (field !== null) return { ok: false, field };
  // Valid, but off the fast path (rare): the schema builds the record.
  const parsed = parseWithSchema(input as object, 0);
  return parsed.ok ? parsed : { ok: false, field: parsed.errors[0]?.field ?? '(record)' };
}

/** Validate a batch: good records are kept, each bad one yields its errors. */
export function parseRequestBatch(inputs: readonly unknown[], firstIndex = 0): { records: RequestRecord[]; errors: RecordError[] } {
  const records: RequestRecord[] = [];
  const errors: RecordError[] = [];
  inputs.forEach((input, i) => {
    const parsed = parseRequestRecord(input, firstIndex + i);
    if (parsed.ok) records.push(parsed.record);
    else errors.push(...parsed.errors);
  });
  return { records, errors };
}

/** What the node knows when it checks a record against its context (GPUs, tiers, time window). */
export interface RecordContext {
  /** Resolve an index or UUID (GPU or MIG instance) to a physical GPU UUID; undefined if unknown. */
  resolveGpu(ref: string): string | undefined;
  /** GPUs of the replica serving this model, from config; undefined when none is configured. */
  defaultGpus(model: string): readonly string[] | undefined;
  /** Tier from the config model->tier map; undefined when the model is not mapped. */
  tierOf(model: string): string | undefined;
  /** Oldest end time still inside the retained window. */
  readonly retainedFromMs: EpochMs;
  /** Latest start time accepted (now plus clock-skew allowance). */
  readonly acceptUntilMs: EpochMs;
}

/** A marker compared by identity: never handed out (a record with an empty list gets its own). */
const NO_GPUS: string[] = [];

/** Resolve tier and GPUs, and refuse records outside the window or naming unknown GPUs. */
export function resolveRecord(record: RequestRecord, index: number, ctx: RecordContext): { ok: true; record: ResolvedRequest } | { ok: false; errors: RecordError[] } {
  // The error list and the unknown GPUs are made only for a refused record: ingest resolves every
  // record it stores through here, and what it allocates per record is garbage to collect.
  let errors: RecordError[] | null = null;
  const err = (field: string, reason: string): void => {
    (errors ??= []).push({ index, requestId: record.requestId, field, reason });
  };
  let gpus: string[] = NO_GPUS;
  if (record.gpus !== null) {
    let unknown: string[] | null = null;
    for (const ref of record.gpus) {
      const uuid = ctx.resolveGpu(ref);
      if (uuid === undefined) (unknown ??= []).push(ref);
      // Started from a one-element literal: an empty array's first push reserves 17 slots.
      else if (gpus === NO_GPUS) gpus = [uuid];
      else if (!gpus.includes(uuid)) gpus.push(uuid);
    }
    if (unknown !== null) err('gpus', `no such GPU on this node: ${unknown.slice(0, 4).join(', ')}`);
  } else {
    const fallback = ctx.defaultGpus(record.model);
    if (fallback === undefined || fallback.length === 0) {
      err('gpus', `not given and no replica is configured for model ${JSON.stringify(record.model)}`);
    } else gpus = [...fallback];
  }
  if (record.endMs < ctx.retainedFromMs) {
    err('end', `outside the retained window (older than ${new Date(ctx.retainedFromMs).toISOString()})`);
  }
  if (record.startMs > ctx.acceptUntilMs) {
    err('start', `in the future (after ${new Date(ctx.acceptUntilMs).toISOString()})`);
  } else if (record.endMs > ctx.acceptUntilMs) {
    // A request still "running" far ahead would hold its GPUs' energy until then.
    err('end', `in the future (after ${new Date(ctx.acceptUntilMs).toISOString()})`);
  }
  if (errors !== null) return { ok: false, errors };
  const tier = record.tier ?? ctx.tierOf(record.model) ?? 'default';
  const resolved = gpus === NO_GPUS ? [] : gpus;
  const gpusSent = sentUnlessResolved(record.gpus, resolved);
  // Set only where the references were not the UUIDs: a record resolved from UUIDs stays as it was.
  return { ok: true, record: { ...record, tier, gpus: resolved, gpusSent } };
}

/** The references as sent, or null when they are the resolved UUIDs exactly (most records: no copy kept). */
function sentUnlessResolved(sent: readonly string[] | null, resolved: readonly string[]): readonly string[] | null {
  if (sent === null) return null;
  let same = sent.length === resolved.length;
  for (let i = 0; same && i < sent.length; i++) same = sent[i] === resolved[i];
  return same ? null : sent;
}
