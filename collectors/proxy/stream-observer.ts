import type { OpenAiEndpoint } from './openai-endpoint.js';
import { parseChatUsage, parseResponsesUsage } from './openai-usage.js';
import type { TokenUsage } from './openai-usage.js';
import { parseSseEvent, withDataLine } from './sse-splitter.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
const NO_CHOICES: readonly unknown[] = [];

/** What one streamed response said, as far as it has been read. */
export interface StreamFacts {
  id: string | null;
  model: string | null;
  usage: TokenUsage | null;
  /** Why the usage the upstream sent was refused (absurd or inconsistent numbers). */
  usageRefused: string | null;
  /** Usage that lacked a count the record needs (e.g. only total_tokens): treated as absent. */
  usageIncomplete: string | null;
  /** Events that carried generated text, reasoning or tool-call arguments. */
  contentEvents: number;
  contentChars: number;
  reasoningChars: number;
  /** When the first such event arrived: the first token as the client saw it. */
  firstContentMs: number | null;
  /** Events whose data was not the JSON the API promises; the first one's reason. */
  malformedEvents: number;
  firstMalformed: string | null;
  /**
   * The generation ended properly: `[DONE]`, a terminal `response.*` event, a choice's
   * finish_reason, or the usage-only chunk that closes a stream. Usage on a content chunk (vLLM's
   * continuous_usage_stats) is not an end: a stream cut after it did not finish.
   */
  finished: boolean;
  /** The upstream reported an error inside the stream. */
  failure: string | null;
  /**
   * The upstream ended the generation before it was done: a choice's finish_reason `abort` (vLLM
   * v1, e.g. pause_generation(mode="abort")), or a Responses terminal event whose response status
   * is `cancelled`. Its tokens are real work; the call is recorded as cancelled.
   */
  cancelled: string | null;
}

/**
 * Reads the SSE events of one proxied stream (Chat Completions, Completions or Responses) and
 * decides what the client gets of each. Every event is passed on byte for byte, except usage the
 * client did not ask for (the proxy asked for it): a usage-only chunk is dropped, and a usage field
 * riding on a content chunk is removed from it.
 */
export class StreamObserver {
  readonly facts: StreamFacts = {
    id: null,
    model: null,
    usage: null,
    usageRefused: null,
    usageIncomplete: null,
    contentEvents: 0,
    contentChars: 0,
    reasoningChars: 0,
    firstContentMs: null,
    malformedEvents: 0,
    firstMalformed: null,
    finished: false,
    failure: null,
    cancelled: null,
  };

  /** No event read yet: the first may start with a byte order mark, which SSE readers skip. */
  private first = true;

  constructor(
    private readonly endpoint: OpenAiEndpoint,
    private readonly stripUsage: boolean,
    private readonly now: () => number,
  ) {}

  /** Observe one raw event; returns what to forward to the client (null: nothing). */
  observe(raw: Buffer): Buffer | null {
    let fields = raw;
    if (this.first) {
      this.first = false;
      if (raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) fields = raw.subarray(3);
    }
    const { event, data } = parseSseEvent(fields);
    if (data === null) return raw;
    // (a JSON object starts with "{", so only other data can be the end marker)
    if (data.charCodeAt(0) !== 0x7b && data.trim() === '[DONE]') {
      this.facts.finished = true;
      return raw;
    }
    let payload: unknown;
    try {
      payload = JSON.parse(data);
    } catch (err) {
      this.malformed(`data is not JSON (${(err as Error).message}): ${JSON.stringify(data.slice(0, 60))}`);
      return raw;
    }
    if (!isObject(payload)) {
      this.malformed(`data is not a JSON object: ${JSON.stringify(data.slice(0, 60))}`);
      return raw;
    }
    if (this.endpoint === 'responses') {
      this.observeResponsesEvent(event, payload);
      return raw;
    }
    return this.observeChunk(payload, raw, data);
  }

  /** One Chat Completions / Completions chunk. Runs for every streamed token: no allocation beyond the parse. */
  private observeChunk(chunk: Record<string, unknown>, raw: Buffer, data: string): Buffer | null {
    const f = this.facts;
    if (f.id === null) f.id = str(chunk.id);
    if (f.model === null) f.model = str(chunk.model);
    if (chunk.object === 'error' || isObject(chunk.error)) {
      const error = isObject(chunk.error) ? chunk.error : chunk;
      f.failure ??= str(error.message) ?? 'the upstream reported an error in the stream';
    } else if (str(chunk.error) !== null) {
      // {"error": "...", "error_type": ...}: text-generation-inference's shape, and simpler servers'.
      f.failure ??= chunk.error as string;
    }
    const choices = Array.isArray(chunk.choices) ? (chunk.choices as unknown[]) : NO_CHOICES;
    let chars = 0;
    let reasoning = 0;
    let content = false;
    for (let i = 0; i < choices.length; i++) {
      const choice = choices[i];
      if (!isObject(choice)) continue;
      // (With n > 1 choices, the first to end: a stream cut before the others end counts as ended.)
      if (typeof choice.finish_reason === 'string' && choice.finish_reason.length > 0) {
        f.finished = true;
        this.ended(choice.finish_reason);
      }
      const delta = isObject(choice.delta) ? choice.delta : null;
      // generated text: delta.content (chat), text (completions); reasoning: delta.reasoning_content, delta.reasoning
      const text = delta === null ? undefined : delta.content;
      if (typeof text === 'string') {
        chars += text.length;
        if (text.length > 0) content = true;
      }
      if (typeof choice.text === 'string') {
        chars += choice.text.length;
        if (choice.text.length > 0) content = true;
      }
      if (delta === null) continue;
      if (typeof delta.reasoning_content === 'string') {
        reasoning += delta.reasoning_content.length;
        if (delta.reasoning_content.length > 0) content = true;
      }
      if (typeof delta.reasoning === 'string') {
        reasoning += delta.reasoning.length;
        if (delta.reasoning.length > 0) content = true;
      }
      if (Array.isArray(delta.tool_calls)) {
        content = true;
        for (const call of delta.tool_calls as unknown[]) {
          if (isObject(call) && isObject(call.function) && typeof call.function.arguments === 'string') chars += call.function.arguments.length;
        }
      }
    }
    if (content) this.content(chars, reasoning);
    if (!isObject(chunk.usage)) {
      // Asked for usage on the client's behalf, OpenAI-style servers put "usage": null on every other
      // chunk: a member the client, which did not ask, would not have had.
      if (chunk.usage === null && this.stripUsage) return withDataLine(raw, withoutNullUsage(data) ?? JSON.stringify({ ...chunk, usage: undefined }));
      return raw;
    }
    this.usage(parseChatUsage(chunk.usage));
    if (choices.length === 0) f.finished = true; // the usage-only chunk comes after every choice ended
    if (!this.stripUsage) return raw;
    if (choices.length === 0) return null; // the usage-only chunk the client did not ask for
    const { usage: _usage, ...rest } = chunk;
    return withDataLine(raw, JSON.stringify(rest));
  }

  private observeResponsesEvent(eventName: string | null, payload: Record<string, unknown>): void {
    const f = this.facts;
    const type = str(payload.type) ?? eventName ?? '';
    const response = isObject(payload.response) ? payload.response : null;
    if (response) {
      f.id ??= str(response.id);
      f.model ??= str(response.model);
    }
    switch (type) {
      case 'response.output_text.delta':
      case 'response.refusal.delta':
      case 'response.function_call_arguments.delta':
        this.content(typeof payload.delta === 'string' ? payload.delta.length : 0, 0);
        break;
      case 'response.reasoning_text.delta':
      case 'response.reasoning_summary_text.delta':
        this.content(0, typeof payload.delta === 'string' ? payload.delta.length : 0);
        break;
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed':
        f.finished = true;
        if (response && response.usage !== undefined && response.usage !== null) this.usage(parseResponsesUsage(response.usage));
        if (response?.status === 'cancelled') f.cancelled ??= 'the response status is cancelled';
        if (type === 'response.failed') {
          const error = response && isObject(response.error) ? response.error : {};
          f.failure ??= str(error.message) ?? 'response.failed';
        }
        break;
      case 'error':
        f.failure ??= str(payload.message) ?? 'the upstream reported an error in the stream';
        break;
    }
  }

  /** A finish_reason other than stop and length: abort and error (vLLM v1's FINISH_REASON_STRINGS) end the call early. */
  private ended(reason: string): void {
    const outcome = finishReasonOutcome(reason);
    if (outcome === 'error') this.facts.failure ??= `finish_reason ${reason}`;
    else if (outcome === 'cancelled') this.facts.cancelled ??= `finish_reason ${reason}`;
  }

  private content(chars: number, reasoningChars: number): void {
    const f = this.facts;
    f.contentEvents++;
    f.contentChars += chars;
    f.reasoningChars += reasoningChars;
    f.firstContentMs ??= this.now();
  }

  private usage(result: ReturnType<typeof parseChatUsage>): void {
    if (result.ok) this.facts.usage = result.usage;
    else if (result.incomplete) this.facts.usageIncomplete ??= result.reason;
    else this.facts.usageRefused ??= result.reason;
  }

  /** Count an event that could not be read (e.g. one that never ended). */
  noteMalformed(reason: string): void {
    this.malformed(reason);
  }

  private malformed(reason: string): void {
    this.facts.malformedEvents++;
    this.facts.firstMalformed ??= reason;
  }
}

/**
 * What a choice's finish_reason says of the call: vLLM v1 ends a request it aborted (the client
 * went away, pause_generation(mode="abort")) with `abort`, and one that failed (a KV transfer that
 * failed) with `error`; any other value (stop, length, tool_calls, content_filter, repetition...)
 * is an end the model or its limits chose.
 */
export function finishReasonOutcome(reason: string): 'ok' | 'cancelled' | 'error' {
  return reason === 'abort' ? 'cancelled' : reason === 'error' ? 'error' : 'ok';
}

const NULL_USAGE = /"usage"\s*:\s*null/g;

/**
 * The chunk's JSON text without its top-level `"usage": null` member, edited in place so that the
 * rest keeps its bytes; null when the text holds that member other than once (then the caller
 * writes the chunk anew). A `"usage"` followed by a colon is a key, never a string value, so with
 * one occurrence it is the top-level member the caller found.
 */
function withoutNullUsage(text: string): string | null {
  // JSON split over several data lines is joined with LF: written back as one line, it is rewritten.
  if (text.includes('\n')) return null;
  const found = [...text.matchAll(NULL_USAGE)];
  if (found.length !== 1) return null;
  const at = (found[0] as RegExpExecArray).index;
  const end = at + (found[0] as RegExpExecArray)[0].length;
  // The comma before it, else the one after it, goes too.
  const before = /,\s*$/.exec(text.slice(0, at));
  if (before !== null) return text.slice(0, before.index) + text.slice(end);
  const after = /^\s*,\s*/.exec(text.slice(end));
  return text.slice(0, at) + text.slice(end + (after?.[0].length ?? 0));
}
