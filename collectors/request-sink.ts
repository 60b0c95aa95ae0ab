import type { RecordError, RequestRecord } from '../model/request-record.js';

/** The answer to a batch of records: what was stored and what was refused. */
export interface IngestResult {
  /** New records committed to the ledger. */
  readonly accepted: number;
  /** Records that repeat one already stored (same request_id, same facts): acknowledged, not counted twice. */
  readonly duplicates: number;
  /** Accepted records that arrived after their period was settled (counted, reported as late). */
  readonly late: number;
  readonly errors: readonly RecordError[];
}

/** Thrown by a sink whose write queue is full; HTTP maps it to 429 with Retry-After. */
export class BackpressureError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`write queue full, retry after ${retryAfterSeconds}s`);
    this.name = 'BackpressureError';
  }
}

/**
 * Where request sources (HTTP ingest, proxy, engine-metrics scrape, OTLP) deliver records.
 * The promise resolves only after accepted records are committed: that is the acknowledgement.
 * Records are validated wire-level already; the sink resolves GPUs/tier and checks the window.
 */
export interface RequestSink {
  submit(records: readonly RequestRecord[], firstIndex?: number): Promise<IngestResult>;
}

/** A request source that runs in the agent (proxy, scraper, OTLP receiver). */
export interface RequestSource {
  start(sink: RequestSink): Promise<void>;
  shutdown(): Promise<void>;
}
