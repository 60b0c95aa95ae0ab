import { performance } from 'node:perf_hooks';
import { parseRequestRecord } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import type { RequestSink, RequestSource, SourceStateReader, SourceStateWrite } from '../request-sink.js';
import { RecordDelivery } from '../proxy/record-delivery.js';
import type { DeliveryStats, SourceLog } from '../proxy/record-delivery.js';
import type { EngineMetricsConfig, EngineTargetConfig } from './engine-metrics-config.js';
import type { EngineKind } from './engine-metric-names.js';
import { detectEngine, readEngineSnapshot } from './engine-snapshot.js';
import type { EngineSnapshot } from './engine-snapshot.js';
import { baselineOf, flushDeferred, MAX_FOREIGN_PAGES, MAX_HELD_SCRAPES, nextInterval } from './interval-records.js';
import type { EngineBaseline, IntervalNote, IntervalRecordOptions, IntervalResult } from './interval-records.js';
import { parsePrometheusText } from './prometheus-text.js';
import { baselineKey, restoreBaseline, serializeBaseline } from './baseline-state.js';

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

/** Resuming from a stored baseline older than this (and than 3 intervals) is logged as a warning. */
const LONG_RESUME_MS = 5 * 60_000;

/** What the scraper knows about one engine between ticks. */
interface TargetState {
  readonly target: EngineTargetConfig;
  readonly engineId: string;
  engine: EngineKind | null;
  /** Last good value of every series and the intervals not yet recorded; null before the first scrape. */
  baseline: EngineBaseline | null;
  /** Where the baseline is kept in the ledger (`agent_state`). */
  readonly stateKey: string;
  /** The baseline last handed to the delivery (with the records it produced), or read back at start. */
  saved: EngineBaseline | null;
  /** Problems reported and not yet cleared, by code: each is logged once. */
  readonly problems: Map<string, string>;
  /** Per model, where the last record's batch_size came from (logged when it changes). */
  readonly batchSources: Map<string, string>;
}

/**
 * Engine-metrics mode: scrapes vLLM / SGLang `/metrics` every interval and turns counter deltas
 * into interval-level request records (see {@link nextInterval}). The first scrape of an engine
 * is its baseline; a failed scrape keeps the last good one, so the next interval still counts
 * every token. Shutdown takes one last scrape so the partial interval is recorded. Problems are
 * reported once and logged again only when they clear.
 *
 * Started with a {@link SourceStateReader} (the agent passes one), the baseline survives the
 * agent: each scrape hands the new baseline to the sink with the records it produced, and the sink
 * commits both in one transaction (see baseline-state.ts), so the stored baseline always matches
 * the records stored. At start the stored baseline of each engine (by engineId) is read back, and
 * the first interval runs from it: what the engine counted while the agent was down (kill -9
 * included) is recorded, as one interval from the stored scrape to the first one of this run
 * (split into several records if it holds more than a record's token limit). An engine that
 * restarted meanwhile is handled as any counter reset: counted from its restart, what it counted
 * between the stored scrape and its death is unknowable (logged). A stored value that cannot be
 * used (corrupt, another version, another URL or engine) is reported by key and the engine starts
 * from a fresh baseline.
 */
export class EngineMetricsScraper implements RequestSource {
  private readonly states: TargetState[];
  private readonly now: () => number;
  private readonly monotonicNow: () => number;
  private delivery: RecordDelivery | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RequestRecord[]> | null = null;
  private stopped = false;
  /** Baselines are stored with the records only when they can be read back (the agent's wiring). */
  private persist = false;

  constructor(private readonly options: EngineMetricsScraperOptions) {
    this.now = options.now ?? Date.now;
    this.monotonicNow = options.monotonicNow ?? (options.now ? options.now : () => performance.now());
    this.states = options.config.targets.map((target) => {
      const engineId = target.engineId ?? new URL(target.url).host;
      return { target, engineId, engine: target.engine === 'auto' ? null : target.engine, baseline: null, stateKey: baselineKey(engineId), saved: null, problems: new Map(), batchSources: new Map() };
    });
  }

  /**
   * Read back each engine's stored baseline (when `state` is given), take the first scrape (the
   * baseline, or the interval since the stored one) and start the scrape loop.
   */
  async start(sink: RequestSink, state?: SourceStateReader): Promise<void> {
    this.delivery = new RecordDelivery(sink, { log: this.options.log, source: 'engine-metrics', onError: this.options.onError });
    this.stopped = false;
    this.persist = state !== undefined;
    this.options.log.info(
      { targets: this.states.map((s) => s.target.url), intervalMs: this.options.config.intervalMs },
      'engine-metrics: interval-level attribution from engine counters (no per-request data); records are labelled granularity=interval',
    );
    if (state) for (const target of this.states) if (target.baseline === null) this.restore(target, state);
    await this.scrapeOnce(); // the baseline, or the interval since the stored one
    this.scheduleNext();
  }

  /** Take the engine's stored baseline, if it has a usable one; else it starts from its first scrape. */
  private restore(state: TargetState, reader: SourceStateReader): void {
    const { url } = state.target;
    const fresh = `starting from a fresh baseline at the first scrape: what the engine counted since that baseline was stored is not recorded`;
    let value: string | undefined;
    try {
      value = reader.read(state.stateKey);
    } catch (err) {
      this.report(state, 'restore', `engine-metrics: ${url}: cannot read the stored baseline (agent_state key ${state.stateKey}): ${err instanceof Error ? err.message : String(err)}; ${fresh}`);
      return;
    }
    if (value === undefined) return;
    const restored = restoreBaseline(value, url, this.now(), this.monotonicNow());
    let problem = restored.ok ? null : restored.reason;
    if (restored.ok && state.engine !== null && restored.baseline.engine !== state.engine) problem = `it is of a ${restored.baseline.engine} engine, the target is configured as ${state.engine}`;
    if (!restored.ok || problem !== null) {
      this.report(state, 'restore', `engine-metrics: ${url}: the stored baseline (agent_state key ${state.stateKey}) is unusable: ${problem}; ${fresh}`);
      return;
    }
    const { baseline } = restored;
    state.baseline = baseline;
    state.saved = baseline;
    const awayMs = this.now() - baseline.atMs;
    const fields = { url, key: state.stateKey, storedAt: new Date(baseline.atMs).toISOString(), awayS: Math.round(awayMs / 1000) };
    if (awayMs <= Math.max(3 * this.options.config.intervalMs, LONG_RESUME_MS)) {
      this.options.log.info(fields, `engine-metrics: ${url}: resuming from the baseline stored at ${fields.storedAt}; the interval since then is recorded at the next scrape`);
    } else {
      // Its record ends at the first scrape, inside the retained window, so it is accepted however
      // old its start. Its tokens are exact; when within the interval they were served is not known.
      this.options.log.warn(
        fields,
        `engine-metrics: ${url}: resuming from the baseline stored at ${fields.storedAt}, ${fields.awayS} s ago: what the engine counted since is recorded as ONE interval from then to the next scrape ` +
          '(exact tokens, their timing within it unknown; no GPU power was measured while the agent was away, and the part of it in periods already settled counts as late)',
      );
    }
  }

  async shutdown(): Promise<void> {
    const wasRunning = !this.stopped && this.delivery !== null;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
    // One last scrape (bounded by the scrape timeout), so the tokens since the previous scrape are
    // recorded now. The baseline is stored with the records, so the next run counts from here; a
    // run killed without this scrape counts from the last baseline committed instead.
    if (wasRunning && this.states.some((s) => s.baseline !== null)) {
      await this.scrapeOnce().catch((err: unknown) => this.report(null, 'final', `engine-metrics: final scrape failed: ${String(err)}`));
    }
    // A scrape held for the next one to judge a counter drop gets no next one: counted now, flagged.
    this.flushDeferred();
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
    this.deliver(records);
    return records;
  }

  /** Count every scrape still held for judgement (see flushDeferred) and queue its records. */
  private flushDeferred(): void {
    const records: RequestRecord[] = [];
    for (const state of this.states) {
      const last = state.baseline?.deferred.at(-1);
      if (state.baseline === null || last === undefined) continue;
      records.push(...this.take(state, last.page, flushDeferred(state.baseline, this.recordOptions(state))));
    }
    this.deliver(records);
  }

  /** Queue records for the sink, each engine's new baseline with them. */
  private deliver(records: RequestRecord[]): void {
    if (!this.delivery) return;
    // Each engine's new baseline travels with the records it produced: committed together or not at all.
    const state: SourceStateWrite[] = [];
    if (this.persist) {
      for (const s of this.states) {
        if (s.baseline === null || s.baseline === s.saved) continue;
        state.push({ key: s.stateKey, value: serializeBaseline(s.baseline, s.target.url) });
        s.saved = s.baseline;
      }
    }
    if (records.length > 0 || state.length > 0) this.delivery.push(records, state);
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
    if (state.baseline !== null && state.baseline.engine !== engine) {
      // Only a stored baseline can be of another engine (one endpoint replaced by another).
      this.report(state, 'restore', `engine-metrics: ${target.url}: the stored baseline (agent_state key ${state.stateKey}) is of a ${state.baseline.engine} engine, the endpoint now serves ${engine}; starting from a fresh baseline: what was counted since that baseline was stored is not recorded`);
      state.baseline = null;
    }
    if (state.baseline === null) {
      state.baseline = baselineOf(snapshot);
      return [];
    }
    return this.take(state, snapshot, nextInterval(state.baseline, snapshot, this.recordOptions(state)));
  }

  private recordOptions(state: TargetState): IntervalRecordOptions {
    return { engineId: state.engineId, tier: state.target.tier, gpus: state.target.gpus };
  }

  /** Adopt a step's baseline, log its notes, and check its records (an invalid one is reported, not queued). */
  private take(state: TargetState, snapshot: EngineSnapshot, { records, notes, baseline }: IntervalResult): RequestRecord[] {
    const before = state.baseline;
    state.baseline = baseline;
    // A step that counted no scrape (it waits for judgement) says nothing of the problems raised before.
    const counted = before === null || before.atMs !== baseline.atMs || before.monoMs !== baseline.monoMs;
    this.logNotes(state, snapshot, notes, counted);
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

  private logNotes(state: TargetState, snapshot: EngineSnapshot, notes: readonly IntervalNote[], counted: boolean): void {
    const url = state.target.url;
    const raised = new Set<string>();
    const problem = (code: string, message: string): void => {
      raised.add(code);
      this.report(state, code, message);
    };
    for (const note of notes) {
      switch (note.kind) {
        case 'several-processes': {
          // Raised once and kept: the target stays a load balancer until its URL is changed.
          const fix = 'scrape the engine on this node directly (its pod IP, or 127.0.0.1 with host networking), not a Service or load balancer over several pods';
          if (!state.problems.has('several-processes')) {
            this.report(
              state,
              'several-processes',
              `engine-metrics: ${url} is answered by several engine processes (${note.reason}); pages of processes other than the one counted are left out, ` +
                `and those processes' GPUs may be on other nodes: ${fix}`,
            );
          }
          if (note.rebased) {
            this.options.log.warn({ url, ...note }, `engine-metrics: ${url}: the process counted (started ${note.baselineMarker}) answered none of the last ${MAX_FOREIGN_PAGES} scrapes; counting goes on from process ${note.marker}'s values now (nothing counted for the switch)`);
          } else this.options.log.debug({ url, ...note }, `engine-metrics: ${url}: page of process ${note.marker} left out (counting process ${note.baselineMarker})`);
          break;
        }
        case 'counter-reset':
          this.options.log.warn({ url, model: note.model }, `engine-metrics: ${url} counters reset (${note.reason}); counting from the restart`);
          break;
        case 'counter-dip':
          if (note.held) {
            this.options.log.debug({ url, ...note }, `engine-metrics: ${url}: ${note.series} dipped from ${note.from} to ${note.to} (a lagging rank or float error, not a restart); counting on from ${note.from}`);
          } else {
            this.options.log.warn({ url, ...note }, `engine-metrics: ${url}: ${note.series} went down from ${note.from} to ${note.to} with its _created unchanged (not a restart: part of its count went away); nothing counted for it, counting on from ${note.to}`);
          }
          break;
        case 'counter-drop-held':
          this.options.log.info(
            { url, ...note },
            `engine-metrics: ${url}: ${note.series} read ${note.to}, below its last value ${note.from}, and nothing on the page says the engine restarted; this scrape is counted once the next ones tell a bad reading from a restart`,
          );
          break;
        case 'counter-glitch':
          this.options.log.warn(
            { url, ...note },
            note.next === null
              ? `engine-metrics: ${url}: ${note.series} read ${note.to}, below its last value ${note.from}, and no later reading could judge it (shutdown, or the series missing from the next page); read as ${note.from}, so nothing is invented (a restart behind it shows at its next reading); records flagged tokens_estimated`
              : note.to > note.from
                ? `engine-metrics: ${url}: ${note.series} read ${note.to}, above its last value ${note.from}, then ${note.next}, back under it: a bad reading, not tokens; read as ${note.from}, the records on both sides flagged tokens_estimated`
                : `engine-metrics: ${url}: ${note.series} read ${note.to}, below its last value ${note.from}, then ${note.next}, back at it: a bad reading, not a restart; read as ${note.from}, the records on both sides flagged tokens_estimated`,
          );
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
          // One text whether held or not, so that it is reported once while the series are awaited.
          if (note.held) {
            problem(
              `note:series-missing:${note.model}`,
              `engine-metrics: ${url}: series of model ${note.model} seen before are missing (${note.series.join(', ')}); its records wait up to ${MAX_HELD_SCRAPES} scrapes for them, then go on without them`,
            );
          }
          break;
        case 'series-given-up':
          this.options.log.warn(
            { url, ...note },
            `engine-metrics: ${url}: series of model ${note.model} gone for ${MAX_HELD_SCRAPES + 1} scrapes (${note.series.join(', ')}); records go on without them and no longer wait for them; if they come back, what they counted since they were last seen is recorded then`,
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
        case 'cached-credit-expired':
          this.options.log.info(
            { url, ...note },
            `engine-metrics: ${url}: model ${note.model}: ${note.tokens} cache-hit tokens counted in the previous interval found no prompt tokens in this one; dropped (requests aborted before their first token, or preempted and looked up again)`,
          );
          break;
        case 'batch-size': {
          const what = `${note.source}${note.metric === null ? '' : ` (${note.metric})`}`;
          if (state.batchSources.get(note.model) !== what) {
            state.batchSources.set(note.model, what);
            const meaning = {
              'request-time': 'time-averaged from the growth of the time requests spent running',
              'e2e-latency': 'time-averaged from the growth of end-to-end request latency (queueing included, so high when requests wait)',
              'running-gauge': 'no request finished in the interval: the mean of the running-requests gauge at its two ends',
              none: 'unknown (no request finished and the running gauge read 0 or is absent): left unset',
            }[note.source];
            this.options.log.info({ url, ...note }, `engine-metrics: ${url}: model ${note.model}: batch_size is ${meaning}`);
          }
          break;
        }
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
        case 'interval-split':
          this.options.log.info({ url, ...note }, `engine-metrics: ${url}: model ${note.model}: the interval from ${new Date(note.startMs).toISOString()} to ${new Date(note.endMs).toISOString()} holds more tokens than one record may; recorded as ${note.pieces} records of it`);
          break;
        case 'cached-estimated':
          break; // reported once by checkResolved
      }
    }
    for (const code of counted ? [...state.problems.keys()] : []) {
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
