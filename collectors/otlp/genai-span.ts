import type { RequestRecordWire } from '../../model/request-record.js';
import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { OtlpConfig } from './otlp-config.js';
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
  responseId: ['gen_ai.response.id'],
  operation: 'gen_ai.operation.name',
  errorType: 'error.type',
} as const;

/**
 * Operations whose spans wrap inference calls rather than being one: their usage, if any, is the
 * sum of child spans that are recorded themselves, so taking it too would count tokens twice.
 */
const WRAPPER_OPERATIONS = new Set(['invoke_agent', 'create_agent', 'execute_tool', 'invoke_workflow']);

export type SpanVerdict =
  | { readonly kind: 'ignored' }
  | { readonly kind: 'record'; readonly record: RequestRecord }
  | { readonly kind: 'rejected'; readonly field: string; readonly reason: string };

const MAX_TOKENS = 100_000_000;

/**
 * A span with GenAI token usage becomes one request record (source "otlp"): span start/end are
 * the request times, the response id (else trace+span id) its request id, status from the span
 * status or `error.type`. Spans without GenAI usage are not requests and are ignored. A GenAI span
 * that cannot be a record is rejected with the attribute at fault and the reason.
 */
export function genAiSpanToRecord(span: OtlpSpan, config: Pick<OtlpConfig, 'attributes' | 'replica' | 'models'>): SpanVerdict {
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
  for (const [name, found] of [
    ['prompt_tokens', input],
    ['completion_tokens', output],
    ['cached_tokens', attr(GENAI.cachedTokens)],
    ['reasoning_tokens', attr(GENAI.reasoningTokens)],
  ] as const) {
    if (found === null) continue;
    const n = tokenCount(found.value);
    if (typeof n === 'string') return { kind: 'rejected', field: found.key, reason: n };
    tokens[name] = n;
  }
  const model = attr(GENAI.model);
  if (model === null || typeof model.value !== 'string' || model.value === '') {
    return { kind: 'rejected', field: 'gen_ai.request.model', reason: 'required: neither gen_ai.response.model nor gen_ai.request.model is a non-empty string' };
  }
  if (span.startNs === null || span.startNs === 0n) return { kind: 'rejected', field: 'startTimeUnixNano', reason: 'missing or not a unix-nanosecond timestamp' };
  if (span.endNs === null || span.endNs === 0n) return { kind: 'rejected', field: 'endTimeUnixNano', reason: 'missing or not a unix-nanosecond timestamp' };
  // Checked in nanoseconds: rounding to milliseconds could hide an end slightly before the start.
  if (span.endNs < span.startNs) return { kind: 'rejected', field: 'endTimeUnixNano', reason: 'end precedes start' };
  const responseId = attr(GENAI.responseId);
  let requestId: string;
  if (responseId !== null && typeof responseId.value === 'string' && responseId.value.length > 0 && responseId.value.length <= 256) {
    requestId = responseId.value;
  } else if (span.traceId !== '' && span.spanId !== '') {
    requestId = `otlp-${span.traceId}-${span.spanId}`;
  } else {
    return { kind: 'rejected', field: 'spanId', reason: 'no gen_ai.response.id and no valid traceId/spanId to identify the request' };
  }

  const wire: Record<string, unknown> = {
    request_id: requestId,
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
  // Only one of input/output was reported: the other is unknown, not zero.
  if (input === null || output === null) wire.tokens_estimated = true;
  const text = (keys: readonly string[]): string | null => {
    for (const key of keys) {
      const value = span.attributes.get(key) ?? span.resourceAttributes.get(key);
      if (typeof value === 'string' && value.trim() !== '') return value.trim();
      if (typeof value === 'bigint' || typeof value === 'number') return String(value);
    }
    return null;
  };
  const taskId = text(config.attributes.taskId);
  if (taskId !== null) wire.task_id = taskId;
  const attempt = text(config.attributes.attempt);
  if (attempt !== null && /^\d+$/.test(attempt)) wire.attempt = Number(attempt);
  const labels: Record<string, string> = {};
  const team = text(config.attributes.team);
  const feature = text(config.attributes.feature);
  if (team !== null) labels.team = team;
  if (feature !== null) labels.feature = feature;
  if (Object.keys(labels).length > 0) wire.labels = labels;
  const replica = config.models?.[model.value] ?? config.replica;
  if (replica?.tier !== undefined) wire.tier = replica.tier;
  if (replica?.gpus !== undefined) wire.gpus = replica.gpus;

  const parsed = parseRequestRecord(wire as RequestRecordWire, 0);
  if (!parsed.ok) {
    const first = parsed.errors[0];
    return { kind: 'rejected', field: wireFieldToAttribute(first?.field ?? '(record)'), reason: first?.reason ?? 'invalid' };
  }
  return { kind: 'record', record: parsed.record };
}

function tokenCount(value: AttributeValue): number | string {
  let n: number;
  if (typeof value === 'bigint') n = Number(value);
  else if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d{1,12}$/.test(value)) n = Number(value);
  else return `must be an integer token count (got ${describe(value)})`;
  if (!Number.isInteger(n) || n < 0 || n > MAX_TOKENS) return `must be an integer 0..${MAX_TOKENS} (got ${describe(value)})`;
  return n;
}

function describe(value: AttributeValue): string {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return 'bytes';
  return JSON.stringify(value)?.slice(0, 40) ?? String(value);
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

/** Name a refused wire field by the span attribute or field it came from. */
function wireFieldToAttribute(field: string): string {
  const map: Record<string, string> = {
    prompt_tokens: GENAI.inputTokens[0],
    completion_tokens: GENAI.outputTokens[0],
    cached_tokens: GENAI.cachedTokens[0],
    reasoning_tokens: GENAI.reasoningTokens[0],
    model: GENAI.model[0],
    start: 'startTimeUnixNano',
    end: 'endTimeUnixNano',
    request_id: GENAI.responseId[0],
  };
  return map[field] ?? field;
}
