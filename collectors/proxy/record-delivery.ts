import type { Logger } from 'pino';
import type { RequestRecord } from '../../model/request-record.js';
import { BackpressureError } from '../request-sink.js';
import type { IngestResult, RequestSink, SourceStateWrite } from '../request-sink.js';

/** The logger a request source needs (agent/logger.ts hands out pino loggers). */
export type SourceLog = Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;

export interface RecordDeliveryOptions {
  readonly log: SourceLog;
  /** Source name for log lines (proxy, engine-metrics). */
  readonly source: string;
  /** Records per submit. */
  readonly maxBatch?: number;
  /**
   * Bytes per submit, with `recordBytes` what one record takes in it (for a sink that posts
   * records over HTTP: the body limit). A record larger than that on its own goes alone.
   */
  readonly maxBatchBytes?: number;
  readonly recordBytes?: (record: RequestRecord) => number;
  /** How long records gather before a submit: one commit for many requests. */
  readonly flushDelayMs?: number;
  /** Records held while the sink refuses or fails; beyond this the newest are dropped, loudly. */
  readonly maxPending?: number;
  /** Every delivery failure, for the agent's source-error accounting. */
  readonly onError?: (error: Error) => void;
}

/** Counts since the delivery started. */
export interface DeliveryStats {
  readonly accepted: number;
  readonly duplicates: number;
  readonly late: number;
  /** Records the sink refused (each logged with its field and reason). */
  readonly refused: number;
  /** Records lost because the queue was full, or because the source could not build them (each loss logged as an error). */
  readonly dropped: number;
  readonly pending: number;
}

/**
 * Source state pushed with records: it goes to the sink in the submit that holds the last of
 * those records, never earlier, and those records are never split across two submits.
 */
interface StateMark {
  /** Index in `pending` of the first record pushed with the state. */
  from: number;
  /** Index in `pending` just past the last record pushed with the state (= from when it came alone). */
  at: number;
  state: readonly SourceStateWrite[];
}

const MAX_BACKOFF_MS = 30_000;
const MAX_LOGGED_REFUSALS = 5;

/**
 * Hands records from a request source to the sink without making the source wait: records are
 * batched, submitted in order, kept and retried when the sink pushes back (BackpressureError,
 * after its Retry-After) or fails (exponential backoff). Nothing is dropped silently: a refusal
 * is logged with the record's field and reason, an overflow as an error with its count.
 *
 * Records may be pushed with source state (the engine-metrics baseline they were computed from):
 * the state is submitted in the same submit as the last of those records, so the sink commits
 * both or neither, and a retry resubmits the same records with the same state. Those records
 * stay in one submit even beyond `maxBatch`. State pushed later overwrites earlier state of the
 * same key only once the records pushed in between are committed.
 */
export class RecordDelivery {
  private readonly pending: RequestRecord[] = [];
  /** In push order; `at` never decreases. */
  private readonly marks: StateMark[] = [];
  /** Marks (the first ones) in the submit under way: they must not change until it settles. */
  private marksInFlight = 0;
  private readonly maxBatch: number;
  private readonly flushDelayMs: number;
  private readonly maxPending: number;
  private timer: NodeJS.Timeout | null = null;
  private draining: Promise<void> | null = null;
  private failures = 0;
  private pushedBack = false;
  private readonly counts = { accepted: 0, duplicates: 0, late: 0, refused: 0, dropped: 0 };

  constructor(
    private readonly sink: RequestSink,
    private readonly options: RecordDeliveryOptions,
  ) {
    this.maxBatch = options.maxBatch ?? 256;
    this.flushDelayMs = options.flushDelayMs ?? 50;
    this.maxPending = options.maxPending ?? 100_000;
  }

  /**
   * Queue records for the sink; returns at once. `state`, when given, is committed with these
   * records (and after every record pushed before them); with no record it is committed after
   * every record pushed before it.
   */
  push(records: readonly RequestRecord[], state?: readonly SourceStateWrite[]): void {
    const from = this.pending.length;
    const room = this.maxPending - this.pending.length;
    if (records.length > room) {
      const lost = records.length - Math.max(0, room);
      this.counts.dropped += lost;
      const error = new Error(`${this.options.source}: ${lost} request record(s) dropped, ${this.pending.length} already waiting for the sink`);
      this.options.log.error({ dropped: lost, pending: this.pending.length }, error.message);
      this.options.onError?.(error);
    }
    // One at a time: up to maxPending records, more than a call takes as arguments.
    for (let i = 0; i < Math.min(room, records.length); i++) this.pending.push(records[i] as RequestRecord);
    if (state !== undefined && state.length > 0) this.mark(from, state);
    this.schedule(this.flushDelayMs);
  }

  private mark(from: number, state: readonly SourceStateWrite[]): void {
    const at = this.pending.length;
    const last = this.marks.at(-1);
    // State alone, and no record since the last mark: one commit can carry both (the later value
    // of a key wins), so a sink that is down for long does not pile up one mark per push.
    if (at === from && last !== undefined && last.at === from && this.marks.length > this.marksInFlight) {
      last.state = [...last.state, ...state];
    } else this.marks.push({ from, at, state });
  }

  /** Count records the source lost before it could push them (it logs why). */
  noteDropped(count: number): void {
    this.counts.dropped += count;
  }

  stats(): DeliveryStats {
    return { ...this.counts, pending: this.pending.length };
  }

  /** Deliver what is pending, retrying push-back until `timeoutMs` has passed. Resolves when empty or out of time. */
  async flush(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.hasPending() && Date.now() < deadline) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      await this.drain();
      if (this.hasPending()) await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
    }
    await this.draining;
  }

  /**
   * Stop the retry timer; anything still pending is reported as not delivered. State not
   * delivered keeps its last committed value, which matches the records committed.
   */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length > 0) {
      this.options.log.error({ pending: this.pending.length }, `${this.options.source}: ${this.pending.length} request record(s) not delivered at shutdown`);
    } else if (this.marks.length > 0) {
      this.options.log.warn(`${this.options.source}: its latest state was not stored at shutdown; the next start resumes from the state stored last`);
    }
  }

  private hasPending(): boolean {
    return this.pending.length > 0 || this.marks.length > 0;
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.draining) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.drain();
    }, delayMs);
    this.timer.unref();
  }

  private drain(): Promise<void> {
    if (this.draining) return this.draining;
    this.draining = this.submitAll().then((retryInMs) => {
      this.draining = null;
      if (retryInMs !== null) this.schedule(retryInMs);
    });
    return this.draining;
  }

  /** Submit until empty; on failure, returns when to try again. */
  private async submitAll(): Promise<number | null> {
    while (this.hasPending()) {
      const size = this.batchSize();
      const batch = this.pending.slice(0, size);
      let due = 0;
      while (due < this.marks.length && (this.marks[due] as StateMark).at <= size) due++;
      const state = latestPerKey(this.marks.slice(0, due));
      let result: IngestResult;
      this.marksInFlight = due;
      try {
        result = await (state.length > 0 ? this.sink.submit(batch, 0, { state }) : this.sink.submit(batch));
      } catch (err) {
        return this.onSubmitError(err);
      } finally {
        this.marksInFlight = 0;
      }
      this.pending.splice(0, size);
      this.marks.splice(0, due);
      for (const m of this.marks) {
        m.from -= size;
        m.at -= size;
      }
      this.failures = 0;
      if (this.pushedBack) {
        this.pushedBack = false;
        this.options.log.info(`${this.options.source}: the ingest queue accepts records again`);
      }
      this.account(result, batch);
    }
    return null;
  }

  /** Records in the next submit: up to maxBatch (and maxBatchBytes), cut before records pushed with state that would not fit whole. */
  private batchSize(): number {
    let size = Math.min(this.pending.length, this.maxBatch);
    const { maxBatchBytes, recordBytes } = this.options;
    if (maxBatchBytes !== undefined && recordBytes !== undefined) {
      let bytes = recordBytes(this.pending[0] as RequestRecord);
      for (let n = 1; n < size; n++) {
        bytes += recordBytes(this.pending[n] as RequestRecord);
        if (bytes > maxBatchBytes) {
          size = n;
          break;
        }
      }
    }
    const straddling = this.marks.find((m) => m.at > size);
    if (straddling === undefined || straddling.from >= size) return size;
    return straddling.from > 0 ? straddling.from : straddling.at;
  }

  /** Log the failure; returns the delay before the next attempt. */
  private onSubmitError(err: unknown): number {
    if (err instanceof BackpressureError || (err instanceof Error && err.name === 'BackpressureError')) {
      const retryAfterMs = Math.max(100, ((err as BackpressureError).retryAfterSeconds || 1) * 1000);
      if (!this.pushedBack) {
        this.pushedBack = true;
        this.options.log.warn({ pending: this.pending.length, retryAfterMs }, `${this.options.source}: ingest queue full, holding records and retrying`);
      }
      return retryAfterMs;
    }
    this.failures++;
    const error = err instanceof Error ? err : new Error(String(err));
    const backoffMs = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 10));
    this.options.log.error({ err: error, pending: this.pending.length, retryInMs: backoffMs }, `${this.options.source}: delivering request records failed: ${error.message}`);
    this.options.onError?.(error);
    return backoffMs;
  }

  private account(result: IngestResult, batch: readonly RequestRecord[]): void {
    this.counts.accepted += result.accepted;
    this.counts.duplicates += result.duplicates;
    this.counts.late += result.late;
    if (result.errors.length === 0) return;
    const refused = new Set(result.errors.map((e) => e.index));
    this.counts.refused += refused.size;
    result.errors.slice(0, MAX_LOGGED_REFUSALS).forEach((e) => {
      const requestId = e.requestId ?? batch[e.index]?.requestId;
      this.options.log.warn({ requestId, field: e.field, reason: e.reason }, `${this.options.source}: record ${requestId ?? `#${e.index}`} refused: ${e.field}: ${e.reason}`);
    });
    if (result.errors.length > MAX_LOGGED_REFUSALS) {
      this.options.log.warn({ refused: refused.size }, `${this.options.source}: ${result.errors.length - MAX_LOGGED_REFUSALS} more refusal(s) in the same batch`);
    }
  }
}

/** The writes of these marks in order, one per key (the last). */
function latestPerKey(marks: readonly StateMark[]): SourceStateWrite[] {
  const byKey = new Map<string, SourceStateWrite>();
  for (const m of marks) {
    for (const w of m.state) {
      byKey.delete(w.key);
      byKey.set(w.key, w);
    }
  }
  return [...byKey.values()];
}

/** Not unref'd: a shutdown flush must keep the process alive until it is done (it is bounded). */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
