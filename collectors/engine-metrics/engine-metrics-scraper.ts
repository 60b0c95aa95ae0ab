import { performance } from 'node:perf_hooks';
import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { RequestSink, RequestSource } from '../request-sink.js';
import { RecordDelivery } from '../proxy/record-delivery.js';
import type { DeliveryStats, SourceLog } from '../proxy/record-delivery.js';
import type { EngineMetricsConfig, EngineTargetConfig } from './engine-metrics-config.js';
import type { EngineKind } from './engine-metric-names.js';
import { detectEngine, readEngineSnapshot } from './engine-snapshot.js';
import type { EngineSnapshot } from './engine-snapshot.js';
import { baselineOf, nextInterval } from './interval-records.js';
import type { EngineBaseline, IntervalNote } from './interval-records.js';
import { parsePrometheusText } from './prometheus-text.js';

export interface EngineMetricsScraperOptions {
  readonly config: EngineMetricsConfig;
  readonly log: SourceLog;
  /** Every new problem (scrape failure, missing metric), once until it clears. */
  readonly onError?: (error: Error) => void;
  /** Wall clock (epoch ms), injectable for tests: stamps the records' bounds. */
  readonly now?: () => number;
  /**
   * Monotonic clock (ms), injectable for tests: measures the intervals, so a wall-clock step
   * (NTP, VM resume) neither drops nor stretches one. Defaults to `performance.now`, or to `now`
   * when only that is injected (one clock: a step back then makes the interval wait, reported).
   */
  readonly monotonicNow?: () => number;
}

/** What the scraper knows about one engine between ticks. */
interface TargetState {
  readonly target: EngineTargetConfig;
  readonly engineId: string;
  engine: EngineKind | null;
  /** Last good value of every series and the intervals not yet recorded; null before the first scrape. */
  baseline: EngineBaseline | null;
  /** Problems reported and not yet cleared, by code: each is logged once. */
  readonly problems: Map<string, string>;
}

/**
 * Engine-metrics mode: scrapes vLLM / SGLang `/metrics` every interval and turns counter deltas
 * into interval-level request records (see {@link nextInterval}). The first scrape of an engine
 * is its baseline; a failed scrape keeps the last good one, so the next interval still counts
 * every token. Shutdown takes one last scrape so the partial interval is recorded. Problems are
 * reported once and logged again only when they clear.
 */
export class EngineMetricsScraper implements RequestSource {
  private readonly states: TargetState[];
  private readonly now: () => number;
  private readonly monotonicNow: () => number;
  private delivery: RecordDelivery | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RequestRecord[]> | null = null;
  private stopped = false;

  constructor(private readonly options: EngineMetricsScraperOptions) {
    this.now = options.now ?? Date.now;
    this.monotonicNow = options.monotonicNow ?? (options.now ? options.now : () => performance.now());
    this.states = options.config.targets.map((target) => ({
      target,
      engineId: target.engineId ?? new URL(target.url).host,
      engine: target.engine === 'auto' ? null : target.engine,
      baseline: null,
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
    const wasRunning = !this.stopped && this.delivery !== null;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
    // One last scrape (bounded by the scrape timeout), so the tokens since the previous scrape are
    // recorded rather than lost with the baseline, which is not persisted across agent restarts.
    if (wasRunning && this.states.some((s) => s.baseline !== null)) {
      await this.scrapeOnce().catch((err: unknown) => this.report(null, 'final', `engine-metrics: final scrape failed: ${String(err)}`));
    }
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
    const monoMs = this.monotonicNow();
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

    const snapshot = readEngineSnapshot(parsed, engine, atMs, target.model ?? 'unknown', monoMs);
    this.checkResolved(state, snapshot);
    if (state.baseline === null) {
      state.baseline = baselineOf(snapshot);
      return [];
    }
    const { records, notes, baseline } = nextInterval(state.baseline, snapshot, { engineId: state.engineId, tier: target.tier, gpus: target.gpus });
    state.baseline = baseline;
    this.logNotes(state, snapshot, notes);
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
        this.report(state, `missing:${metric}`, `engine-metrics: ${url} exports no ${metric === 'promptTokens' ? 'prompt' : 'generation'}-token counter; no interval records while it is missing`);
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

  private logNotes(state: TargetState, snapshot: EngineSnapshot, notes: readonly IntervalNote[]): void {
    const url = state.target.url;
    const raised = new Set<string>();
    const problem = (code: string, message: string): void => {
      raised.add(code);
      this.report(state, code, message);
    };
    for (const note of notes) {
      switch (note.kind) {
        case 'counter-reset':
          this.options.log.warn({ url, model: note.model }, `engine-metrics: ${url} counters reset (${note.reason}); counting from the restart`);
          break;
        case 'missing-counter': {
          const what = note.metric === 'promptTokens' ? 'prompt' : 'generation';
          // A counter the page lacks altogether is reported once by checkResolved.
          if (snapshot.resolved[note.metric] !== undefined) {
            problem(`note:missing-counter:${note.model}:${note.metric}`, `engine-metrics: ${url} has no ${what}-token series for model ${note.model}; its tokens are not recorded while it is missing`);
          }
          this.options.log.debug({ url, ...note }, `engine-metrics: model ${note.model}: tokens not recorded (no ${what}-token series)`);
          break;
        }
        case 'series-missing':
          problem(
            `note:series-missing:${note.model}`,
            note.held
              ? `engine-metrics: ${url}: series of model ${note.model} seen before are missing (${note.series.join(', ')}); its record waits for the next scrape to cover the whole interval`
              : `engine-metrics: ${url}: series of model ${note.model} still missing (${note.series.join(', ')}); records go on without them and their tokens are counted when they are back`,
          );
          break;
        case 'series-returned':
          this.options.log.info({ url, ...note }, `engine-metrics: ${url}: ${note.series} is back; its tokens since ${new Date(note.sinceMs).toISOString()} are in this interval`);
          break;
        case 'series-unknown-start':
          this.options.log.warn({ url, ...note }, `engine-metrics: ${url}: ${note.series} first seen after a page whose lines of it were unreadable; what it counted before now is unknown and not recorded`);
          break;
        case 'counter-renamed':
          this.options.log.info({ url, ...note }, `engine-metrics: ${url}: model ${note.model} ${note.metric} now read from ${note.to} (was ${note.from})`);
          break;
        case 'cached-capped':
          this.options.log.debug({ url, ...note }, 'engine-metrics: cache hits exceed prompt tokens in this interval; capped, the rest carried to the next interval');
          break;
        case 'cached-credit-dropped':
          this.options.log.info({ url, ...note }, `engine-metrics: ${url}: model ${note.model}: ${note.tokens} cache-hit tokens carried from before the restart are void (their prefills died with it)`);
          break;
        case 'hit-rate-out-of-range':
          problem(`note:hit-rate:${note.model}`, `engine-metrics: ${url}: ${note.metric} of model ${note.model} is outside 0..1 (${note.values.join(', ')}); those values are left out of the cached-token estimate`);
          break;
        case 'clock-step': {
          const message = note.held
            ? `engine-metrics: the clock went back ${-note.wallMs} ms between two scrapes of ${url}; the interval waits for the next scrape`
            : `engine-metrics: the wall clock moved ${note.wallMs} ms while ${Math.round(note.monoMs)} ms passed between two scrapes of ${url} (a step of ${Math.round(note.wallMs - note.monoMs)} ms); the interval is stamped to end now and last ${Math.round(note.monoMs)} ms`;
          this.options.log.warn({ url, ...note }, message);
          this.options.onError?.(new Error(message));
          break;
        }
        case 'cached-estimated':
          break; // reported once by checkResolved
      }
    }
    for (const code of [...state.problems.keys()]) {
      if (code.startsWith('note:') && !raised.has(code)) this.clear(state, code, `engine-metrics: ${url}: ${code.slice('note:'.length)} cleared`);
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
