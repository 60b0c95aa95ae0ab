import { createHash } from 'node:crypto';
import type { RequestRecordWire } from '../../model/request-record.js';
import type { EngineSnapshot, ModelReading } from './engine-snapshot.js';

/** Something worth telling the operator about one interval (logged by the scraper). */
export type IntervalNote =
  | { readonly kind: 'counter-reset'; readonly model: string; readonly reason: string }
  | { readonly kind: 'missing-counter'; readonly model: string; readonly metric: 'promptTokens' | 'generationTokens' }
  | { readonly kind: 'cached-capped'; readonly model: string; readonly cached: number; readonly prompt: number }
  | { readonly kind: 'cached-estimated'; readonly model: string };

export interface IntervalRecordOptions {
  /** Stable name of the scraped engine (request ids are built from it). */
  readonly engineId: string;
  readonly tier?: string;
  readonly gpus?: readonly (string | number)[];
}

/**
 * Turn two consecutive scrapes of one engine into interval-level request records, one per served
 * model that did work in between (pure: same snapshots, same records).
 *
 * - Tokens are counter deltas. A counter that went down, or a changed restart marker, means the
 *   engine restarted: the delta is then the counter's current value (what it counted since the
 *   restart; tokens between the previous scrape and the restart are unknowable), as Prometheus'
 *   `increase()` does. A series absent from the previous scrape started at zero in between.
 * - Cached tokens come from the cached-token counter, capped at the interval's prompt tokens (the
 *   engines count cache hits when a request is scheduled and prompt tokens when its prefill ends,
 *   so one interval can see more hits than prompts). Without such a counter, the hit-rate gauge
 *   times the prompt tokens is used and the record is marked `tokens_estimated`.
 * - batch_size is the mean of the running-requests gauge at the interval's two ends (at least 1).
 * - The request id is derived from engine, model and the interval's bounds, so resubmitting the
 *   same interval is acknowledged as a duplicate rather than counted twice.
 * - Records carry granularity "interval" and source "engine-metrics": attribution spreads their
 *   work over the whole interval and every figure says it is interval-level.
 */
export function intervalRecords(
  prev: EngineSnapshot,
  curr: EngineSnapshot,
  options: IntervalRecordOptions,
): { records: RequestRecordWire[]; notes: IntervalNote[] } {
  const records: RequestRecordWire[] = [];
  const notes: IntervalNote[] = [];
  if (curr.atMs <= prev.atMs) return { records, notes };
  const restarted = prev.restartMarker !== null && curr.restartMarker !== null && prev.restartMarker !== curr.restartMarker;

  for (const [model, now] of curr.models) {
    const before = prev.models.get(model);
    const resetReasons: string[] = [];
    const delta = (metric: string, a: number | null | undefined, b: number | null): number | null => {
      if (b === null) return null;
      if (a === null || a === undefined) return b; // a new series starts at zero
      if (restarted || b < a) {
        resetReasons.push(restarted ? 'engine restarted' : `${metric} went from ${a} to ${b}`);
        return b;
      }
      return b - a;
    };
    const prompt = delta('prompt tokens', before?.promptTokens, now.promptTokens);
    const generation = delta('generation tokens', before?.generationTokens, now.generationTokens);
    if (prompt === null) notes.push({ kind: 'missing-counter', model, metric: 'promptTokens' });
    if (generation === null) notes.push({ kind: 'missing-counter', model, metric: 'generationTokens' });
    if (prompt === null || generation === null) continue;
    const promptTokens = Math.round(prompt);
    const completionTokens = Math.round(generation);

    const cached = cachedTokensOf(model, before, now, promptTokens, delta, notes);
    const running = meanRunning(before, now);
    if (resetReasons.length > 0) notes.push({ kind: 'counter-reset', model, reason: [...new Set(resetReasons)].join('; ') });
    if (promptTokens === 0 && completionTokens === 0 && (running === null || running < 0.5)) continue; // idle

    const wire: Record<string, unknown> = {
      request_id: intervalRequestId(options.engineId, model, prev.atMs, curr.atMs),
      model,
      start: prev.atMs,
      end: curr.atMs,
      prompt_tokens: promptTokens,
      cached_tokens: cached.tokens,
      completion_tokens: completionTokens,
      reasoning_tokens: 0,
      status: 'ok',
      granularity: 'interval',
      source: 'engine-metrics',
    };
    if (running !== null) wire.batch_size = Math.max(1, Math.round(running));
    if (cached.estimated) wire.tokens_estimated = true;
    if (options.tier !== undefined) wire.tier = options.tier;
    if (options.gpus !== undefined && options.gpus.length > 0) wire.gpus = [...options.gpus];
    records.push(wire as RequestRecordWire);
  }
  return { records, notes };
}

function cachedTokensOf(
  model: string,
  before: ModelReading | undefined,
  now: ModelReading,
  promptTokens: number,
  delta: (metric: string, a: number | null | undefined, b: number | null) => number | null,
  notes: IntervalNote[],
): { tokens: number; estimated: boolean } {
  let cached: number | null = null;
  if (now.cachedTokens !== null) {
    // Only compare readings of the same counter: after an engine upgrade renames it, the first
    // interval has no comparable previous value. A series that did not exist before (SGLang
    // creates it on the first cache hit) started at zero.
    const renamed = before?.cachedMetric != null && before.cachedMetric !== now.cachedMetric;
    cached = renamed ? null : delta('cached tokens', before?.cachedTokens, now.cachedTokens);
  }
  if (cached === null && now.cacheHitRate !== null && now.cacheHitRate >= 0 && now.cacheHitRate <= 1) {
    notes.push({ kind: 'cached-estimated', model });
    return { tokens: Math.round(promptTokens * now.cacheHitRate), estimated: true };
  }
  const tokens = Math.max(0, Math.round(cached ?? 0));
  if (tokens > promptTokens) {
    notes.push({ kind: 'cached-capped', model, cached: tokens, prompt: promptTokens });
    return { tokens: promptTokens, estimated: false };
  }
  return { tokens, estimated: false };
}

function meanRunning(before: ModelReading | undefined, now: ModelReading): number | null {
  const values = [before?.runningRequests, now.runningRequests].filter((v): v is number => typeof v === 'number' && v >= 0);
  if (values.length === 0) return null;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

const MAX_PART = 96;

/** `engine-metrics:<engine>:<model>:<start>-<end>`; over-long parts are replaced by a hash. */
export function intervalRequestId(engineId: string, model: string, startMs: number, endMs: number): string {
  const part = (text: string): string =>
    text.length <= MAX_PART ? text : `sha256-${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
  return `engine-metrics:${part(engineId)}:${part(model)}:${startMs}-${endMs}`;
}
