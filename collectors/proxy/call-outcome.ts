/**
 * How a proxied call ended, judged from what the upstream answered: the status its record gets,
 * its usage, and the estimates that stand in when usage is missing or refused.
 */
import type { RequestStatus } from '../../model/request-record.js';
import type { OpenAiEndpoint } from './openai-endpoint.js';
import { parseChatUsage, parseResponsesUsage } from './openai-usage.js';
import type { TokenUsage } from './openai-usage.js';
import type { ScannedAnswer } from './json-scan.js';
import { finishReasonOutcome } from './stream-observer.js';
import type { StreamFacts } from './stream-observer.js';
import { tokensFromChars } from './token-estimate.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);

/** What the upstream's answer told us, filled in as it arrives. */
export interface Answer {
  id: string | null;
  model: string | null;
  usage: TokenUsage | null;
  firstContentMs: number | null;
  completionEstimate: number;
  reasoningEstimate: number;
  /** Why the call is not a success, if it is not. */
  problem: string | null;
  /**
   * The upstream refused the call (4xx) or was never reached (the connection could not be made):
   * it generated nothing, and the record carries zero tokens rather than estimates. A call that
   * reached the upstream and then failed (5xx included), timed out or was cancelled may have been
   * prefilling or generating, so it keeps its estimates.
   */
  refused: boolean;
  /** Usage the upstream sent without the counts a record needs: the tokens are estimated (why, for a warning). */
  usageIgnored: string | null;
  /**
   * The proxy could not get or read the whole answer (cut in its middle, a malformed stream, a 2xx
   * body that is not JSON, usage it refused): a failure of capture, counted in
   * tokenwatt_capture_errors_total. An error the upstream answered in good form (a non-2xx, an
   * error object, finish_reason error) is not: it is recorded, and capture worked.
   */
  unread: boolean;
}

/** Status of a stream that ended: ok only if it finished properly and its usage is believable. */
export function streamOutcome(f: StreamFacts, answer: Answer): RequestStatus {
  answer.usage = f.usage;
  if (f.usage === null) answer.usageIgnored = f.usageIncomplete;
  if (f.usageRefused !== null) {
    answer.usage = null;
    answer.problem = `usage refused: ${f.usageRefused}`;
    answer.unread = true;
    return 'error';
  }
  if (f.failure !== null) {
    answer.problem = `the upstream reported an error in the stream: ${f.failure}`;
    return 'error';
  }
  if (f.malformedEvents > 0) {
    answer.problem = `${f.malformedEvents} malformed event(s) in the stream; first: ${f.firstMalformed}`;
    answer.unread = true;
    return 'error';
  }
  if (!f.finished) {
    answer.problem = 'the stream ended without [DONE], a finish_reason, a final usage chunk or a final response event';
    answer.unread = true;
    return 'error';
  }
  if (f.cancelled !== null) {
    answer.problem = `the upstream ended the generation early (${f.cancelled})`;
    return 'cancelled';
  }
  return 'ok';
}

/**
 * Status of a non-streaming answer, from its JSON body (null: not readable, so its tokens stay
 * estimated).
 */
export function jsonOutcome(endpoint: OpenAiEndpoint, answer: Answer, body: Buffer | null): RequestStatus {
  if (body === null) return 'ok';
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    answer.problem = `the upstream answered 2xx with a body that is not JSON (${(err as Error).message})`;
    answer.unread = true;
    return 'error';
  }
  if (!isObject(json)) {
    answer.problem = 'the upstream answered 2xx with a body that is not a JSON object';
    answer.unread = true;
    return 'error';
  }
  const { chars, reasoningChars } = generatedText(endpoint, json);
  const finishReasons: string[] = [];
  for (const choice of Array.isArray(json.choices) ? json.choices : []) {
    if (isObject(choice) && typeof choice.finish_reason === 'string') finishReasons.push(choice.finish_reason);
  }
  return judgeJson(endpoint, answer, json, chars, reasoningChars, finishReasons);
}

/** Status of a non-streaming answer too large to keep, from what a scan of it kept (json-scan). */
export function scannedJsonOutcome(endpoint: OpenAiEndpoint, answer: Answer, scan: ScannedAnswer): RequestStatus {
  if (!scan.complete) {
    answer.problem = 'the upstream answered 2xx with a body that is not a JSON object';
    answer.unread = true;
    return 'error';
  }
  return judgeJson(endpoint, answer, scan.members, scan.chars, scan.reasoningChars, scan.finishReasons);
}

/**
 * The answer's top-level members (all of them, or those a scan kept), its generated characters and
 * its choices' finish reasons: its status, usage and estimates.
 */
function judgeJson(endpoint: OpenAiEndpoint, answer: Answer, json: Record<string, unknown>, chars: number, reasoningChars: number, finishReasons: readonly string[]): RequestStatus {
  answer.id = str(json.id);
  answer.model = str(json.model);
  answer.completionEstimate = tokensFromChars(chars + reasoningChars);
  answer.reasoningEstimate = tokensFromChars(reasoningChars);
  if (json.object === 'error' || isObject(json.error)) {
    answer.problem = 'the upstream answered 2xx with an error object';
    return 'error';
  }
  if (typeof json.error === 'string' && json.error.length > 0) {
    // {"error": "...", "error_type": ...}: text-generation-inference's shape, and simpler servers'.
    answer.problem = `the upstream answered 2xx with an error: ${json.error.slice(0, 200)}`;
    return 'error';
  }
  if (json.usage !== undefined && json.usage !== null) {
    const usage = endpoint === 'responses' ? parseResponsesUsage(json.usage) : parseChatUsage(json.usage);
    if (usage.ok) answer.usage = usage.usage;
    else if (usage.incomplete) answer.usageIgnored = usage.reason;
    else {
      answer.problem = `usage refused: ${usage.reason}`;
      answer.unread = true;
      return 'error';
    }
  }
  if (endpoint === 'responses' && json.status === 'failed') {
    answer.problem = 'the response status is failed';
    return 'error';
  }
  // (incomplete is the Responses API's finish_reason length: a limit reached, not a failure.)
  if (endpoint === 'responses' && json.status === 'cancelled') {
    answer.problem = 'the upstream ended the generation early (the response status is cancelled)';
    return 'cancelled';
  }
  // With several choices, the worst end is the call's.
  const ends = finishReasons.map(finishReasonOutcome);
  const worst = ends.includes('error') ? 'error' : ends.includes('cancelled') ? 'cancelled' : 'ok';
  if (worst !== 'ok') {
    const reason = finishReasons.find((r) => finishReasonOutcome(r) === worst) as string;
    answer.problem = worst === 'error' ? `the upstream reported an error: finish_reason ${reason}` : `the upstream ended the generation early (finish_reason ${reason})`;
  }
  return worst;
}

/** Characters of generated text (and reasoning) in a non-streaming answer, for estimates. */
function generatedText(endpoint: OpenAiEndpoint, json: Record<string, unknown>): { chars: number; reasoningChars: number } {
  let chars = 0;
  let reasoningChars = 0;
  const len = (v: unknown): number => (typeof v === 'string' ? v.length : 0);
  if (endpoint === 'responses') {
    for (const item of Array.isArray(json.output) ? json.output : []) {
      if (!isObject(item)) continue;
      for (const part of Array.isArray(item.content) ? item.content : []) {
        if (!isObject(part)) continue;
        if (item.type === 'reasoning') reasoningChars += len(part.text);
        else chars += len(part.text);
      }
      chars += len(item.arguments);
    }
    return { chars, reasoningChars };
  }
  for (const choice of Array.isArray(json.choices) ? json.choices : []) {
    if (!isObject(choice)) continue;
    chars += len(choice.text);
    const message = isObject(choice.message) ? choice.message : {};
    chars += len(message.content);
    reasoningChars += len(message.reasoning_content) + len(message.reasoning);
    // generated tool calls are tokens too (the streaming path counts their argument deltas)
    for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
      if (isObject(call) && isObject(call.function)) chars += len(call.function.arguments);
    }
    if (isObject(message.function_call)) chars += len(message.function_call.arguments);
  }
  return { chars, reasoningChars };
}
