import { isUtf8 } from 'node:buffer';
import { parseRequestRecord, recordLabelValueProblem } from '../../model/request-record.js';
import type { RecordError, RequestRecord, RequestStatus } from '../../model/request-record.js';
import { rawHeader } from './http-forwarding.js';
import type { OpenAiEndpoint } from './openai-endpoint.js';
import type { TokenUsage } from './openai-usage.js';
import type { ProxyConfig, ReplicaConfig } from './proxy-config.js';

/** Task and user labels a client attached to a call through request headers. */
export interface CallLabels {
  readonly taskId: string | null;
  readonly attempt: number | null;
  readonly labels: Readonly<Record<string, string>>;
}

/** The ledger's bounds (model/request-record.ts): a record beyond them is refused whole. */
const MAX_ID = 256;
export const MAX_MODEL = 256;
const MAX_TOKENS = 100_000_000;

/** Node reads header bytes as latin-1; clients send non-ASCII values as UTF-8, so bytes that are valid UTF-8 are read as such. */
function headerText(value: string): string {
  if (!/[\u0080-\u00ff]/.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : value;
}

/**
 * Read the task id, attempt and every configured label (`x-task-id`, `x-attempt`, `x-team`,
 * `x-feature` by default) from the request's raw headers. A header sent twice counts once, with
 * its first value (node would join them into "a, b", which is no task or team). A value the ledger
 * would refuse (too long, attempt not an integer 1..10000, a team or feature that is an ESG report
 * row key) is left out and reported through `refuse`, so one bad header never costs the call its record.
 * `refuse` gets the header and the record field it would have filled (task_id, attempt, a label's name).
 */
export function labelsFromHeaders(
  rawHeaders: readonly string[],
  names: ProxyConfig['headers'],
  refuse: (header: string, reason: string, field: string) => void,
): CallLabels {
  const read = (name: string): string | null => {
    const value = rawHeader(rawHeaders, name)?.trim();
    return value === undefined || value === '' ? null : headerText(value);
  };
  const bounded = (name: string, max: number, field: string): string | null => {
    const value = read(name);
    if (value !== null && value.length > max) {
      refuse(name, `longer than ${max} characters`, field);
      return null;
    }
    return value;
  };
  const taskId = bounded(names.taskId, MAX_ID, 'task_id');
  let attempt: number | null = null;
  const attemptText = read(names.attempt);
  if (attemptText !== null) {
    const n = /^\d{1,5}$/.test(attemptText) ? Number(attemptText) : Number.NaN;
    if (n >= 1 && n <= 10_000) attempt = n;
    else refuse(names.attempt, `must be an integer 1..10000 (got ${JSON.stringify(attemptText.slice(0, 20))})`, 'attempt');
  }
  const labels: Record<string, string> = {};
  for (const [label, header] of Object.entries(names.labels)) {
    const value = read(header);
    if (value === null) continue;
    const problem = recordLabelValueProblem(label, value);
    if (problem === null) labels[label] = value;
    else refuse(header, problem, label);
  }
  return { taskId, attempt, labels };
}

/** Everything the proxy learnt about one call, when it is over. */
export interface CallOutcome {
  readonly requestId: string;
  readonly endpoint: OpenAiEndpoint;
  readonly model: string;
  readonly startMs: number;
  /** First generated content the client received; null for non-streaming calls (see below). */
  readonly firstTokenMs: number | null;
  readonly endMs: number;
  readonly status: RequestStatus;
  /** Usage reported by the upstream and believed; null means the counts below are estimates. */
  readonly usage: TokenUsage | null;
  readonly estimate: { readonly promptTokens: number; readonly completionTokens: number; readonly reasoningTokens: number };
  readonly call: CallLabels;
  readonly replica: ReplicaConfig | undefined;
}

/**
 * The request record of one proxied call, checked against the ingest schema. A non-streaming
 * response arrives in one piece after the last token, so its first byte says nothing about the
 * end of prefill: its first_token is left out rather than put at the end of the call, which
 * would attribute the whole decode to prefill.
 */
export function buildProxyRecord(outcome: CallOutcome): { ok: true; record: RequestRecord } | { ok: false; errors: RecordError[] } {
  const { estimate } = outcome;
  // Estimates of huge bodies can pass the ledger's ceiling; reported usage is already checked against it.
  const tokens = outcome.usage ?? {
    promptTokens: Math.min(estimate.promptTokens, MAX_TOKENS),
    completionTokens: Math.min(estimate.completionTokens, MAX_TOKENS),
    reasoningTokens: Math.min(estimate.reasoningTokens, MAX_TOKENS),
    cachedTokens: 0,
  };
  const wire: Record<string, unknown> = {
    request_id: outcome.requestId,
    model: outcome.model,
    start: outcome.startMs,
    end: Math.max(outcome.endMs, outcome.startMs),
    prompt_tokens: tokens.promptTokens,
    cached_tokens: tokens.cachedTokens,
    completion_tokens: tokens.completionTokens,
    reasoning_tokens: Math.min(tokens.reasoningTokens, tokens.completionTokens),
    status: outcome.status,
    source: 'proxy',
  };
  if (outcome.usage === null) wire.tokens_estimated = true;
  if (outcome.firstTokenMs !== null && outcome.firstTokenMs >= outcome.startMs && outcome.firstTokenMs <= outcome.endMs) {
    wire.first_token = outcome.firstTokenMs;
  }
  if (outcome.call.taskId !== null) wire.task_id = outcome.call.taskId;
  if (outcome.call.attempt !== null) wire.attempt = outcome.call.attempt;
  if (Object.keys(outcome.call.labels).length > 0) wire.labels = outcome.call.labels;
  if (outcome.replica?.tier !== undefined) wire.tier = outcome.replica.tier;
  if (outcome.replica?.gpus !== undefined) wire.gpus = outcome.replica.gpus;
  return parseRequestRecord(wire, 0);
}

/**
 * A model name the ledger takes (at most MAX_MODEL characters): a longer one, from a client or
 * an upstream, is cut rather than costing the call its record.
 */
export function boundedModel(model: string): string {
  if (model.length <= MAX_MODEL) return model;
  const cut = model.slice(0, MAX_MODEL);
  const last = cut.charCodeAt(MAX_MODEL - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut; // not half a surrogate pair
}
