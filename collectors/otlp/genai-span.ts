import { createHash } from 'node:crypto';
import type { RequestRecordWire } from '../../model/request-record.js';
import { parseRequestRecord, recordLabelValueProblem } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import { differingFacts } from '../../model/request-facts.js';
import type { SightingVerdict } from '../request-sink.js';
import type { OtlpConfig } from './otlp-config.js';
import { UnreadableValue } from './otlp-spans.js';
import type { AttributeValue, OtlpSpan } from './otlp-spans.js';

/**
 * OpenTelemetry GenAI semantic-convention attributes read from a span, by preference. The older
 * names (gen_ai.usage.prompt_tokens / completion_tokens, the flat cache_read_input_tokens) are
 * still emitted by instrumentations pinned to semconv <= 1.36, so they are read as fallbacks.
 */
export const GENAI = {
  inputTokens: ['gen_ai.usage.input_tokens', 'gen_ai.usage.prompt_tokens'],
  outputTokens: ['gen_ai.usage.output_tokens', 'gen_ai.usage.completion_tokens'],
  cachedTokens: ['gen_ai.usage.cache_read.input_tokens', 'gen_ai.usage.cache_read_input_tokens'],
  reasoningTokens: ['gen_ai.usage.reasoning.output_tokens'],
  model: ['gen_ai.response.model', 'gen_ai.request.model'],
  /**
   * The call's id: the response id the app got back (client spans), else vLLM's `gen_ai.request.id`
   * on its own llm_request span, which is that same id: both sides of one call name it alike.
   */
  callId: ['gen_ai.response.id', 'gen_ai.request.id'],
  operation: 'gen_ai.operation.name',
  errorType: 'error.type',
  /** vLLM's llm_request spans (not semconv): seconds from arrival, where the span starts, to the first token. */
  timeToFirstToken: 'gen_ai.latency.time_to_first_token',
} as const;

/**
 * Operations whose spans wrap inference calls rather than being one: their usage, if any, is the
 * sum of child spans that are recorded themselves, so taking it too would count tokens twice.
 */
const WRAPPER_OPERATIONS = new Set(['invoke_agent', 'create_agent', 'execute_tool', 'invoke_workflow']);
/** Embeddings generate nothing: no output count means exactly zero output tokens, not an unknown. */
const EMBEDDING_OPERATION = 'embeddings';

/** An attribute (or span field) at fault, and why. */
export interface SpanProblem {
  readonly field: string;
  readonly reason: string;
  /** For a task or label value left out of the record: the record field (task_id, attempt, a label's name). */
  readonly leftOut?: string;
}

/**
 * What becomes of a span. `warnings` name values that were left out or not read while the span
 * itself was recorded or ignored (OTLP partial success may carry them with no span rejected).
 */
export type SpanVerdict = (
  | { readonly kind: 'ignored' }
  | { readonly kind: 'record'; readonly record: RequestRecord; readonly alternateId: string | null; readonly legacyId: string | null }
  | { readonly kind: 'rejected'; readonly field: string; readonly reason: string; readonly counted: RejectedAs }
) & { readonly warnings: readonly SpanProblem[] };

/**
 * The record field a refused span is counted under in tokenwatt_records_rejected_total, as HTTP
 * ingest counts a refused record (a bounded set: never an attribute name a sender chose).
 */
export type RejectedAs = 'prompt_tokens' | 'completion_tokens' | 'cached_tokens' | 'reasoning_tokens' | 'model' | 'start' | 'end' | 'status' | 'request_id' | 'first_token' | 'record';

type Judgement =
  | { readonly kind: 'ignored' }
  | { readonly kind: 'record'; readonly record: RequestRecord; readonly alternateId: string | null; readonly legacyId: string | null }
  | ({ readonly kind: 'rejected'; readonly counted: RejectedAs } & SpanProblem);

const MAX_TOKENS = 100_000_000;
const MAX_ID_LENGTH = 256;
const MAX_LABEL_VALUE = 256;
const MAX_ATTEMPT = 10_000;

/**
 * A span with GenAI token usage becomes one request record (source "otlp"): span start/end are
 * the request times, its request id from the call id and the trace id (see requestIdsOf), status from the span
 * status or `error.type`. Spans without GenAI usage are not requests and are ignored. A GenAI span
 * that cannot be a record is rejected with the attribute at fault and the reason. Attribute values
 * present but unreadable, and task/label values left out, are named in the warnings.
 */
export function genAiSpanToRecord(span: OtlpSpan, config: Pick<OtlpConfig, 'attributes' | 'replica' | 'models' | 'defaultModel'>): SpanVerdict {
  const warnings: SpanProblem[] = [];
  const judgement = judge(span, config, warnings);
  // A rejected span is named once, by what rejected it; more about it would crowd out other spans.
  if (judgement.kind === 'rejected') return { ...judgement, warnings: [] };
  const named = new Set(warnings.map((w) => w.field));
  for (const [key, value] of span.attributes) {
    if (value instanceof UnreadableValue && !named.has(key)) warnings.push({ field: key, reason: `${value.reason}, not read` });
  }
  return { ...judgement, warnings };
}

/**
 * `convert`, except that an unexpected error (a bug, or input nobody foresaw) rejects that span
 * alone, naming the error, so that the other spans of the export are still stored.
 */
export function rejectingOnError(convert: (span: OtlpSpan) => SpanVerdict, onError: (error: Error, span: OtlpSpan) => void): (span: OtlpSpan) => SpanVerdict {
  return (span) => {
    try {
      return convert(span);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      onError(error, span);
      return { kind: 'rejected', field: '(span)', reason: `could not be converted: ${error.name}: ${error.message}`, counted: 'record', warnings: [] };
    }
  };
}

function judge(span: OtlpSpan, config: Pick<OtlpConfig, 'attributes' | 'replica' | 'models' | 'defaultModel'>, warnings: SpanProblem[]): Judgement {
  const attr = (keys: readonly string[]): { key: string; value: AttributeValue } | null => {
    for (const key of keys) {
      const value = span.attributes.get(key);
      if (value !== undefined && value !== null) return { key, value };
    }
    return null;
  };
  const input = attr(GENAI.inputTokens);
  const output = attr(GENAI.outputTokens);
  if (input === null && output === null) return { kind: 'ignored' };
  const operation = span.attributes.get(GENAI.operation);
  if (typeof operation === 'string' && WRAPPER_OPERATIONS.has(operation)) return { kind: 'ignored' };

  const tokens: Record<string, number> = {};
  const sources: Record<string, string> = {}; // wire field -> the attribute it came from
  for (const [name, found] of [
    ['prompt_tokens', input],
    ['completion_tokens', output],
    ['cached_tokens', attr(GENAI.cachedTokens)],
    ['reasoning_tokens', attr(GENAI.reasoningTokens)],
  ] as const) {
    if (found === null) continue;
    const n = tokenCount(found.value);
    if (typeof n === 'string') return { kind: 'rejected', field: found.key, reason: n, counted: name };
    tokens[name] = n;
    sources[name] = found.key;
  }
  // The first model attribute that is a non-empty string: an empty or non-string response model
  // (some servers send "") does not hide the request model.
  const named = GENAI.model.map((key): { key: string; value: AttributeValue | undefined } => ({ key, value: span.attributes.get(key) })).filter((m) => m.value !== undefined && m.value !== null);
  const usable = named.find((m): m is { key: string; value: string } => typeof m.value === 'string' && m.value !== '');
  for (const m of named) {
    if (m === usable) break;
    warnings.push({ field: m.key, reason: `must be a non-empty string (got ${describe(m.value as AttributeValue)}), ${usable?.key ?? (config.defaultModel !== undefined ? 'otlp.defaultModel' : 'nothing')} used` });
  }
  const model: { key: string; value: string } | null = usable ?? (config.defaultModel !== undefined ? { key: 'otlp.defaultModel', value: config.defaultModel } : null);
  if (model === null) {
    return { kind: 'rejected', field: 'gen_ai.request.model', reason: 'required: neither gen_ai.response.model nor gen_ai.request.model is a non-empty string (set otlp.defaultModel for spans that name none)', counted: 'model' };
  }
  sources.model = model.key;
  if (span.startNs === null || span.startNs === 0n) return { kind: 'rejected', field: 'startTimeUnixNano', reason: 'missing or not a unix-nanosecond timestamp', counted: 'start' };
  if (span.endNs === null || span.endNs === 0n) return { kind: 'rejected', field: 'endTimeUnixNano', reason: 'missing or not a unix-nanosecond timestamp', counted: 'end' };
  // Checked in nanoseconds: rounding to milliseconds could hide an end slightly before the start.
  if (span.endNs < span.startNs) return { kind: 'rejected', field: 'endTimeUnixNano', reason: 'end precedes start', counted: 'end' };
  // An unknown status could be a failure: taking it for "ok" would hide wasted energy.
  if (span.statusCode instanceof UnreadableValue) return { kind: 'rejected', field: 'status.code', reason: span.statusCode.reason, counted: 'status' };
  const ids = requestIdsOf(span, attr(GENAI.callId));
  if (ids === null) return { kind: 'rejected', field: 'spanId', reason: 'no gen_ai.response.id or gen_ai.request.id and no valid traceId/spanId to identify the request', counted: 'request_id' };
  sources.request_id = ids.source;

  const wire: Record<string, unknown> = {
    request_id: ids.requestId,
    model: model.value,
    start: nanosToMs(span.startNs),
    end: nanosToMs(span.endNs),
    prompt_tokens: tokens.prompt_tokens ?? 0,
    completion_tokens: tokens.completion_tokens ?? 0,
    cached_tokens: tokens.cached_tokens ?? 0,
    reasoning_tokens: tokens.reasoning_tokens ?? 0,
    status: statusOf(span),
    source: 'otlp',
  };
  // Only one of input/output was reported: the other is unknown, not zero (except an embedding's output).
  if (input === null || (output === null && operation !== EMBEDDING_OPERATION)) wire.tokens_estimated = true;
  const firstToken = firstTokenOf(span, span.startNs, span.endNs, warnings);
  if (firstToken !== null) wire.first_token = firstToken;
  const task = taskFields(span, config.attributes, warnings);
  Object.assign(wire, task.wire);
  const replica = config.models?.[model.value] ?? config.replica;
  if (replica?.tier !== undefined) wire.tier = replica.tier;
  if (replica?.gpus !== undefined) wire.gpus = replica.gpus;

  const parsed = parseRequestRecord(wire as RequestRecordWire, 0);
  if (!parsed.ok) {
    const first = parsed.errors[0];
    return { kind: 'rejected', field: wireFieldToAttribute(first?.field ?? '(record)', { ...sources, ...task.sources }), reason: first?.reason ?? 'invalid', counted: rejectedAs(first?.field) };
  }
  const record = ids.side === null ? parsed.record : { ...parsed.record, otlpSpans: { [ids.side]: span.spanId } };
  return { kind: 'record', record, alternateId: ids.alternateId, legacyId: ids.legacyId };
}

const COUNTED: ReadonlySet<string> = new Set<RejectedAs>(['prompt_tokens', 'completion_tokens', 'cached_tokens', 'reasoning_tokens', 'model', 'start', 'end', 'status', 'request_id', 'first_token']);

function rejectedAs(field: string | undefined): RejectedAs {
  const head = field?.split('.')[0] ?? '';
  return COUNTED.has(head) ? (head as RejectedAs) : 'record';
}

/** Longest call id kept as it is in a request id; a longer one is replaced by a hash of it. */
const MAX_CALL_ID = 200;

/**
 * Host clocks of the app and the engine may disagree by this much (NTP keeps them within
 * milliseconds): two sightings of one call further apart are two calls.
 */
export const SIGHTING_SKEW_MS = 1000;

/**
 * The request id of a span's record, and the one it takes if that is taken by another call.
 *
 * A span with a call id (gen_ai.response.id, else gen_ai.request.id) is `<call id>/<trace id>`:
 * the app's client span and vLLM's llm_request span of one call share both (vLLM continues the
 * trace of the request's traceparent), so the second of them to arrive is that call seen again
 * (see {@link sameCall}), acknowledged as a duplicate. The trace id keeps apart calls of servers
 * that reuse ids (Ollama's chatcmpl-0..999). Two calls in one trace that share a call id are told
 * apart by {@link sameCall}; the second is stored under the alternate id, `<call id>/<trace
 * id>/<span id>`. A span without a call id is `otlp-<trace id>-<span id>`.
 */
function requestIdsOf(
  span: OtlpSpan,
  callId: { key: string; value: AttributeValue } | null,
): { requestId: string; alternateId: string | null; legacyId: string | null; side: 'client' | 'server' | null; source: string } | null {
  const call = callId !== null && typeof callId.value === 'string' ? callId.value : '';
  if (call.trim() !== '' && callId !== null) {
    const id = call.length <= MAX_CALL_ID && !/\p{Surrogate}/u.test(call) ? call : `sha256-${createHash('sha256').update(call).digest('hex').slice(0, 24)}`;
    // Before e6f87c7 a span's request id was its gen_ai.response.id alone (up to 256 characters).
    const legacyId = callId.key === GENAI.callId[0] && call.length <= MAX_ID_LENGTH ? call : null;
    if (span.traceId === '') return { requestId: id, alternateId: null, legacyId: null, side: null, source: callId.key };
    // The side of the call the span saw: the app's (it got the response id back) or the engine's.
    const side = span.spanId === '' ? null : callId.key === GENAI.callId[0] ? 'client' : 'server';
    return { requestId: `${id}/${span.traceId}`, alternateId: span.spanId === '' ? null : `${id}/${span.traceId}/${span.spanId}`, legacyId, side, source: callId.key };
  }
  if (span.traceId !== '' && span.spanId !== '') return { requestId: `otlp-${span.traceId}-${span.spanId}`, alternateId: null, legacyId: null, side: null, source: 'spanId' };
  return null;
}

/**
 * Whether `repeat`, stored under the request id of `kept`, is the same call seen again (the other
 * side of it, or its span sent again with other details): the same prompt and completion tokens
 * (the app's client reads its usage from the server's answer, so both sides count alike; a count
 * one side did not report matches any), and
 * times that overlap, within {@link SIGHTING_SKEW_MS}. Start, end, first token, cached tokens,
 * status and labels may differ between the sides (vLLM's span starts at arrival and names no
 * task; a client span knows no first token): the record stored first is kept.
 */
export function sameCall(kept: RequestRecord, repeat: RequestRecord): boolean {
  return (
    sameCount(kept, repeat, 'promptTokens') &&
    sameCount(kept, repeat, 'completionTokens') &&
    repeat.startMs <= kept.endMs + SIGHTING_SKEW_MS &&
    kept.startMs <= repeat.endMs + SIGHTING_SKEW_MS
  );
}

/**
 * Counts agree, or one side did not report it: a span with only one of input/output is recorded
 * with the other as 0 and tokens_estimated, so that 0 is unknown, not a count that differs (else
 * the pair would be stored as two calls, its known count counted twice).
 */
function sameCount(kept: RequestRecord, repeat: RequestRecord, count: 'promptTokens' | 'completionTokens'): boolean {
  return kept[count] === repeat[count] || unknownCount(kept, count) || unknownCount(repeat, count);
}

/** A count the span did not report: recorded as 0 with tokens_estimated. */
function unknownCount(r: RequestRecord, count: 'promptTokens' | 'completionTokens'): boolean {
  return r.source === 'otlp' && r.tokensEstimated && r[count] === 0;
}

/**
 * What a record stored under a taken request id is to the record stored there (see SightingRule):
 * the same span sent again, the other side of the same call (merged when it adds to what is
 * stored), or another call. Two spans of one side are never one call: an app that makes two
 * identical calls in one trace under a reused response id made two calls. A record stored before
 * span ids were kept (no `otlpSpans`) is judged by {@link sameCall} alone.
 */
export function judgeSighting(kept: RequestRecord, repeat: RequestRecord): SightingVerdict {
  const side = repeat.otlpSpans?.client !== undefined ? 'client' : repeat.otlpSpans?.server !== undefined ? 'server' : null;
  if (side !== null && kept.otlpSpans !== undefined) {
    const stored = kept.otlpSpans[side];
    if (stored === repeat.otlpSpans?.[side]) return { kind: 'same' };
    if (stored !== undefined) return { kind: 'other' };
  }
  if (!sameCall(kept, repeat)) return { kind: 'other' };
  const merged = mergeSightings(kept, repeat);
  return differingFacts(kept, merged).some((f) => f !== 'otlp_spans') ? { kind: 'merge', record: merged } : { kind: 'same' };
}

const STATUS_RANK = { ok: 0, cancelled: 1, error: 2 } as const;

/**
 * One call's two sightings as one record, under `kept`'s id, model, tier and GPUs (stored first):
 * - each token count from the side that reported it (a count one side left out is unknown, not 0),
 *   the larger cached and reasoning counts; estimated only if a count is still unknown;
 * - start, end and first token from the engine's (server) span: it runs from the request's arrival
 *   at the engine to its last token, which is when the GPU worked on it; the app's span adds
 *   network and client time, over which the request's energy share would be spread too thin.
 *   A first token only the app knows is kept if it falls within those times;
 * - task, attempt and labels from the app's (client) span, which knows them (the engine's
 *   fills in those the app's lacks); the worse status (error, then cancelled), so that waste shows.
 */
export function mergeSightings(kept: RequestRecord, repeat: RequestRecord): RequestRecord {
  // A kept record without span ids (stored before they were kept) is taken for the other side.
  const repeatIsServer = repeat.otlpSpans?.server !== undefined || (repeat.otlpSpans === undefined && kept.otlpSpans?.client !== undefined);
  const server = repeatIsServer ? repeat : kept;
  const client = repeatIsServer ? kept : repeat;
  const count = (c: 'promptTokens' | 'completionTokens') => (unknownCount(kept, c) ? repeat[c] : kept[c]);
  const unknownBoth = (c: 'promptTokens' | 'completionTokens') => unknownCount(kept, c) && unknownCount(repeat, c);
  const clientFirst = client.firstTokenMs;
  const firstTokenMs = server.firstTokenMs ?? (clientFirst !== null && clientFirst >= server.startMs && clientFirst <= server.endMs ? clientFirst : null);
  const spans = { ...kept.otlpSpans, ...repeat.otlpSpans };
  return {
    ...kept,
    taskId: client.taskId ?? server.taskId,
    attempt: client.attempt ?? server.attempt,
    startMs: server.startMs,
    firstTokenMs,
    endMs: server.endMs,
    promptTokens: count('promptTokens'),
    completionTokens: count('completionTokens'),
    cachedTokens: Math.max(kept.cachedTokens, repeat.cachedTokens),
    reasoningTokens: Math.max(kept.reasoningTokens, repeat.reasoningTokens),
    status: STATUS_RANK[repeat.status] > STATUS_RANK[kept.status] ? repeat.status : kept.status,
    labels: { ...server.labels, ...client.labels },
    tokensEstimated: unknownBoth('promptTokens') || unknownBoth('completionTokens'),
    ...(Object.keys(spans).length > 0 ? { otlpSpans: spans } : {}),
  };
}

function tokenCount(value: AttributeValue): number | string {
  if (value instanceof UnreadableValue) return `must be an integer token count (${value.reason})`;
  let n: number;
  if (typeof value === 'bigint') n = Number(value);
  else if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d{1,12}$/.test(value)) n = Number(value);
  else return `must be an integer token count (got ${describe(value)})`;
  if (!Number.isInteger(n) || n < 0 || n > MAX_TOKENS) return `must be an integer 0..${MAX_TOKENS} (got ${describe(value)})`;
  return n;
}

/**
 * End of prefill, from vLLM's time-to-first-token (seconds after the span's start, a double).
 * Used only when it falls within the span; otherwise it is named and the request has no split.
 */
function firstTokenOf(span: OtlpSpan, startNs: bigint, endNs: bigint, warnings: SpanProblem[]): number | null {
  const value = span.attributes.get(GENAI.timeToFirstToken);
  if (value === undefined || value === null) return null;
  const offsetNs = (typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : Number.NaN) * 1e9;
  // Written so that NaN fails too; the end bound is an integer, so rounding stays within it.
  if (!(offsetNs >= 0 && offsetNs <= Number(endNs - startNs))) {
    warnings.push({ field: GENAI.timeToFirstToken, reason: `must be seconds from the span's start to no later than its end (got ${describe(value)}), not used` });
    return null;
  }
  return nanosToMs(startNs + BigInt(Math.round(offsetNs)));
}

type Read<T> = { readonly value: T } | { readonly refused: string };

/**
 * task_id, attempt, the team/feature labels and every label of `labels` from the configured span
 * (else resource) attributes. A value the record would refuse is left out and named, as the proxy
 * does with its headers: one bad label never costs a request its record, and the rule is the same
 * for all of them.
 */
function taskFields(span: OtlpSpan, keys: OtlpConfig['attributes'], warnings: SpanProblem[]): { wire: Record<string, unknown>; sources: Record<string, string> } {
  const wire: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const labels: Record<string, string> = {};
  const take = <T>(field: string, attributeKeys: readonly string[], read: (value: AttributeValue) => Read<T> | null, put: (value: T) => void) => {
    const found = configured(span, attributeKeys, read);
    if (found === null) return;
    if ('refused' in found.read) {
      warnings.push({ field: found.key, reason: `${found.read.refused}, left out of the record`, leftOut: field.startsWith('labels.') ? field.slice('labels.'.length) : field });
      return;
    }
    put(found.read.value);
    sources[field] = found.key;
  };
  take('task_id', keys.taskId, (v) => textOf(v, MAX_ID_LENGTH), (v) => (wire.task_id = v));
  take('attempt', keys.attempt, attemptOf, (v) => (wire.attempt = v));
  const label = (name: string, attributeKeys: readonly string[]) => take(`labels.${name}`, attributeKeys, (v) => labelOf(name, v), (v) => (labels[name] = v));
  label('team', keys.team);
  label('feature', keys.feature);
  for (const name in keys.labels) label(name, keys.labels[name] as readonly string[]);
  if (Object.keys(labels).length > 0) wire.labels = labels;
  return { wire, sources };
}

/** The first configured key with a value on the span, else on its resource; blank counts as absent. */
function configured<T>(span: OtlpSpan, keys: readonly string[], read: (value: AttributeValue) => Read<T> | null): { key: string; read: Read<T> } | null {
  for (const key of keys) {
    const value = span.attributes.get(key) ?? span.resourceAttributes.get(key);
    if (value === undefined || value === null) continue;
    const result = read(value);
    if (result !== null) return { key, read: result };
  }
  return null;
}

function textOf(value: AttributeValue, max: number): Read<string> | null {
  if (typeof value === 'string') {
    const text = value.trim();
    if (text === '') return null;
    if (text.length > max) return { refused: `longer than ${max} characters` };
    // The ledger refuses a lone surrogate (OTLP/JSON can escape one) and the record with it.
    return /\p{Surrogate}/u.test(text) ? { refused: 'must be well-formed Unicode (it holds a lone UTF-16 surrogate)' } : { value: text };
  }
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isFinite(value))) return { value: String(value) };
  return { refused: `must be a string (got ${describe(value)})` };
}

/** A label's value as a record would keep it (textOf, then the record's own checks, as ESG row keys for team and feature). */
function labelOf(name: string, value: AttributeValue): Read<string> | null {
  const read = textOf(value, MAX_LABEL_VALUE);
  if (read === null || 'refused' in read) return read;
  const problem = recordLabelValueProblem(name, read.value);
  return problem === null ? read : { refused: problem };
}

/** An integer 1..10000 as an int, a whole double (2.0) or decimal text; anything else is refused. */
function attemptOf(value: AttributeValue): Read<number> | null {
  if (typeof value === 'string' && value.trim() === '') return null;
  const n = typeof value === 'bigint' ? Number(value) : typeof value === 'number' ? value : typeof value === 'string' && /^\s*\d{1,5}\s*$/.test(value) ? Number(value) : Number.NaN;
  return Number.isInteger(n) && n >= 1 && n <= MAX_ATTEMPT ? { value: n } : { refused: `must be an integer 1..${MAX_ATTEMPT} (got ${describe(value)})` };
}

/** A value for an error message. Never JSON of the value itself: it may hold bigints. */
function describe(value: AttributeValue): string {
  if (value instanceof UnreadableValue) return value.reason;
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  if (typeof value === 'bigint' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value instanceof Uint8Array) return 'bytes';
  if (Array.isArray(value)) return 'array';
  return value === null ? 'null' : 'kvlist';
}

function statusOf(span: OtlpSpan): 'ok' | 'error' | 'cancelled' {
  const errorType = span.attributes.get(GENAI.errorType);
  const cancelled = (text: string) => /cancel|abort/i.test(text);
  if (typeof errorType === 'string' && errorType !== '') return cancelled(errorType) ? 'cancelled' : 'error';
  if (span.statusCode === 2) return cancelled(span.statusMessage) ? 'cancelled' : 'error';
  return 'ok';
}

/** Unix nanoseconds to whole epoch milliseconds (rounding keeps start <= end). */
function nanosToMs(ns: bigint): number {
  return Math.round(Number(ns / 1000n) / 1000);
}

/** Name a refused wire field by the span attribute or field it came from (`sources`: the attributes read). */
function wireFieldToAttribute(field: string, sources: Readonly<Record<string, string>>): string {
  const map: Record<string, string> = {
    model: GENAI.model[0],
    start: 'startTimeUnixNano',
    end: 'endTimeUnixNano',
    request_id: GENAI.callId[0],
    first_token: GENAI.timeToFirstToken,
    status: 'status.code',
    ...sources,
  };
  return Object.hasOwn(map, field) ? (map[field] as string) : field;
}
