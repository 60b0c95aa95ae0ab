import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { RequestSink, RequestSource } from '../request-sink.js';
import { RecordDelivery } from '../proxy/record-delivery.js';
import type { DeliveryStats, SourceLog } from '../proxy/record-delivery.js';
import type { EngineMetricsConfig, EngineTargetConfig } from './engine-metrics-config.js';
import type { EngineKind } from './engine-metric-names.js';
import { detectEngine, readEngineSnapshot } from './engine-snapshot.js';
import type { EngineSnapshot } from './engine-snapshot.js';
import { intervalRecords } from './interval-records.js';
import type { IntervalNote } from './interval-records.js';
import { parsePrometheusText } from './prometheus-text.js';

export interface EngineMetricsScraperOptions {
  readonly config: EngineMetricsConfig;
  readonly log: SourceLog;
  /** Every new problem (scrape failure, missing metric), once until it clears. */
  readonly onError?: (error: Error) => void;
  /** Wall clock, injectable for tests. */
  readonly now?: () => number;
}

/** What the scraper knows about one engine between ticks. */
interface TargetState {
  readonly target: EngineTargetConfig;
  readonly engineId: string;
  engine: EngineKind | null;
  previous: EngineSnapshot | null;
  /** Problems reported and not yet cleared, by code: each is logged once. */
  readonly problems: Map<string, string>;
}

/**
 * Engine-metrics mode: scrapes vLLM / SGLang `/metrics` every interval and turns counter deltas
 * into interval-level request records (see {@link intervalRecords}). The first scrape of an engine
 * is its baseline; a failed scrape keeps the last good one, so the next interval still counts
 * every token. Problems are reported once and logged again only when they clear.
 */
export class EngineMetricsScraper implements RequestSource {
  private readonly states: TargetState[];
  private readonly now: () => number;
  private delivery: RecordDelivery | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RequestRecord[]> | null = null;
  private stopped = false;

  constructor(private readonly options: EngineMetricsScraperOptions) {
    this.now = options.now ?? Date.now;
    this.states = options.config.targets.map((target) => ({
      target,
      engineId: target.engineId ?? new URL(target.url).host,
      engine: target.engine === 'auto' ? null : target.engine,
      previous: null,
      problems: new Map(),
    }));
  }

  async start(sink: RequestSink): Promise<void> {
    this.delivery = new RecordDelivery(sink, { log: this.options.log, source: 'engine-metrics', onError: this.options.onError });
    this.stopped = false;
    this.options.log.info(
      { targets: this.states.map((s) => s.target.url), intervalMs: this.options.config.intervalMs },
      'engine-metrics: interval-level attribution from engine counters (no per-request data); records are labelled granularity=interval',
    );
    await this.scrapeOnce(); // the baseline
    this.scheduleNext();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    await this.delivery?.flush();
    this.delivery?.close();
  }

  stats(): DeliveryStats | null {
    return this.delivery?.stats() ?? null;
  }

  /**
   * Scrape every engine once and queue the interval records since each one's previous scrape.
   * Returns those records. A call while one is running waits for it instead of overlapping.
   */
  scrapeOnce(): Promise<RequestRecord[]> {
    if (this.running) return this.running;
    this.running = this.scrapeAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    const interval = this.options.config.intervalMs;
    // Aligned to the wall-clock grid so intervals of different agents line up.
    const delay = interval - (this.now() % interval);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.scrapeOnce()
        .catch((err: unknown) => this.report(null, 'tick', `engine-metrics: scrape loop failed: ${String(err)}`))
        .finally(() => this.scheduleNext());
    }, delay);
    this.timer.unref();
  }

  private async scrapeAll(): Promise<RequestRecord[]> {
    const results = await Promise.all(this.states.map((state) => this.scrapeTarget(state)));
    const records = results.flat();
    if (records.length > 0) this.delivery?.push(records);
    return records;
  }

  private async scrapeTarget(state: TargetState): Promise<RequestRecord[]> {
    const { target } = state;
    let text: string;
    try {
      text = await this.fetchText(target.url);
    } catch (err) {
      this.report(state, 'fetch', `engine-metrics: cannot scrape ${target.url}: ${err instanceof Error ? err.message : String(err)}`);
      return [];
    }
    const atMs = this.now();
    this.clear(state, 'fetch', `engine-metrics: ${target.url} answers again`);
    const parsed = parsePrometheusText(text);
    if (parsed.errors.length > 0) {
      const first = parsed.errors[0];
      this.report(state, 'parse', `engine-metrics: ${target.url}: ${parsed.errors.length} unreadable line(s), first at line ${first?.line}: ${first?.reason}`);
    } else this.clear(state, 'parse');

    const engine = state.engine ?? detectEngine(parsed);
    if (engine === null) {
      this.report(state, 'engine', `engine-metrics: ${target.url} exports no vllm:* or sglang:* metrics (is it a vLLM/SGLang /metrics endpoint? SGLang needs --enable-metrics)`);
      return [];
    }
    if (state.engine === null) this.options.log.info({ url: target.url, engine }, `engine-metrics: ${target.url} is ${engine}`);
    state.engine = engine;
    this.clear(state, 'engine');

    const snapshot = readEngineSnapshot(parsed, engine, atMs, target.model ?? 'unknown');
    this.checkResolved(state, snapshot);
    const previous = state.previous;
    state.previous = snapshot;
    if (previous === null) return [];

    const { records, notes } = intervalRecords(previous, snapshot, { engineId: state.engineId, tier: target.tier, gpus: target.gpus });
    this.logNotes(state, notes);
    const out: RequestRecord[] = [];
    records.forEach((wire, index) => {
      const parsedRecord = parseRequestRecord(wire, index);
      if (parsedRecord.ok) out.push(parsedRecord.record);
      else {
        const reasons = parsedRecord.errors.map((e) => `${e.field}: ${e.reason}`).join('; ');
        this.options.log.error({ requestId: wire.request_id, reasons }, `engine-metrics: interval record ${wire.request_id} is invalid: ${reasons}`);
        this.options.onError?.(new Error(`engine-metrics: interval record ${wire.request_id} is invalid: ${reasons}`));
      }
    });
    return out;
  }

  private checkResolved(state: TargetState, snapshot: EngineSnapshot): void {
    const { resolved } = snapshot;
    const url = state.target.url;
    for (const metric of ['promptTokens', 'generationTokens'] as const) {
      if (resolved[metric] === undefined) {
        this.report(state, `missing:${metric}`, `engine-metrics: ${url} exports no ${metric === 'promptTokens' ? 'prompt' : 'generation'}-token counter; no interval records until it does`);
      } else this.clear(state, `missing:${metric}`, `engine-metrics: ${url} exports ${resolved[metric]} again`);
    }
    if (resolved.cachedTokens === undefined && resolved.cacheHitRate === undefined) {
      this.report(state, 'missing:cached', `engine-metrics: ${url} exports no prefix-cache counter; cached_tokens will be 0`);
    } else if (resolved.cachedTokens === undefined) {
      this.report(state, 'missing:cached', `engine-metrics: ${url} exports only ${resolved.cacheHitRate}; cached_tokens are estimated from it (records marked tokens_estimated)`);
    } else this.clear(state, 'missing:cached');
    if (resolved.runningRequests === undefined) {
      this.report(state, 'missing:running', `engine-metrics: ${url} exports no running-requests gauge; batch_size is left to the agent's own estimate`);
    } else this.clear(state, 'missing:running');
  }

  private logNotes(state: TargetState, notes: readonly IntervalNote[]): void {
    for (const note of notes) {
      switch (note.kind) {
        case 'counter-reset':
          this.options.log.warn({ url: state.target.url, model: note.model }, `engine-metrics: ${state.target.url} counters reset (${note.reason}); counting from the restart`);
          break;
        case 'cached-capped':
          this.options.log.debug({ url: state.target.url, ...note }, 'engine-metrics: cache hits exceed prompt tokens in this interval; capped');
          break;
        case 'missing-counter':
        case 'cached-estimated':
          break; // reported once by checkResolved
      }
    }
  }

  private report(state: TargetState | null, code: string, message: string): void {
    const problems = state?.problems;
    if (problems?.get(code) === message) return;
    problems?.set(code, message);
    this.options.log.warn({ url: state?.target.url }, message);
    this.options.onError?.(new Error(message));
  }

  private clear(state: TargetState, code: string, recovered?: string): void {
    if (!state.problems.has(code)) return;
    state.problems.delete(code);
    if (recovered) this.options.log.info({ url: state.target.url }, recovered);
  }

  private async fetchText(url: string): Promise<string> {
    const { timeoutMs, maxBodyBytes } = this.options.config;
    const response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'text/plain;version=0.0.4;q=1,*/*;q=0.1' },
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`HTTP ${response.status} ${response.statusText}`);
    }
    if (!response.body) return '';
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBodyBytes) {
        await reader.cancel().catch(() => undefined);
        throw new Error(`body larger than maxBodyBytes (${maxBodyBytes})`);
      }
      chunks.push(value);
    }
    return Buffer.concat(chunks).toString('utf8');
  }
}
