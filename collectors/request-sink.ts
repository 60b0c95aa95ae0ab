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
  /**
   * Records acknowledged with something not applied (a sighting that came after its request was
   * settled, see {@link SightingVerdict}): not errors, but the sender should hear of them.
   */
  readonly notes?: readonly RecordError[];
}

/** Thrown by a sink whose write queue is full; HTTP maps it to 429 with Retry-After. */
export class BackpressureError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`write queue full, retry after ${retryAfterSeconds}s`);
    this.name = 'BackpressureError';
  }
}

/**
 * Every key of source state starts with this, so that a source can never overwrite the agent's
 * own state (settled_until, the writer lease...) that lives in the same table.
 */
export const SOURCE_STATE_PREFIX = 'source:';

/** One value a source keeps across agent restarts (e.g. the engine-metrics scraper's counter baseline). */
export interface SourceStateWrite {
  /** Starts with {@link SOURCE_STATE_PREFIX}. */
  readonly key: string;
  readonly value: string;
}

/** How a record whose request_id is taken by one with other facts is judged (see {@link SightingRule}). */
export type SightingVerdict =
  /** The stored request seen again, adding nothing: acknowledged as a duplicate, not stored. */
  | { readonly kind: 'same' }
  /**
   * The stored request seen again, from its other side, with more to know about it: acknowledged as
   * a duplicate, and `record` (the stored one merged with the repeat, under its id) replaces it while
   * no energy is attributed to it; once its time is settled it is not changed, and the sender is told.
   */
  | { readonly kind: 'merge'; readonly record: RequestRecord }
  /** Another request that reuses the id: stored under {@link SightingRule.alternateId}. */
  | { readonly kind: 'other' };

/**
 * For a source that may see one request more than once, from different sides (OTLP: the app's
 * client span and the engine's server span of one call, under one request_id): how a record whose
 * request_id is taken by a record with other facts is judged.
 */
export interface SightingRule {
  judge(kept: RequestRecord, repeat: RequestRecord): SightingVerdict;
  /**
   * Another request that reuses the id is stored under this id instead (the usual idempotency
   * applies there); null: refused as a request_id conflict. `index`: the record's index in the
   * submission, `firstIndex` included.
   */
  alternateId(index: number): string | null;
  /**
   * Ids an earlier version of the agent stored this record under: looked up before it is stored,
   * and a record found there (of the same source) is judged as one under its own id would be.
   */
  legacyIds?(index: number): readonly string[];
}

export interface SubmitOptions {
  /**
   * Source state stored in the SAME transaction as the submission's records: when the promise
   * resolves both are committed, when it rejects neither is (the state keeps its previous value).
   * Writes to one key within a commit: the last one wins. A sink without storage may ignore it.
   */
  readonly state?: readonly SourceStateWrite[];
  /** See {@link SightingRule}; without it a request_id taken by other facts is a conflict. */
  readonly sightings?: SightingRule;
}

/**
 * Where request sources (HTTP ingest, proxy, engine-metrics scrape, OTLP) deliver records.
 * The promise resolves only after accepted records are committed: that is the acknowledgement.
 * Records are validated wire-level already; the sink resolves GPUs/tier and checks the window.
 * A submission may carry no record and only state.
 */
export interface RequestSink {
  submit(records: readonly RequestRecord[], firstIndex?: number, options?: SubmitOptions): Promise<IngestResult>;
  /**
   * Records a source refused before submitting them (an OTLP span that cannot be a record), by a
   * bounded reason (a record field): counted as the agent counts refused records. Call it only
   * once the sender has been answered for good (not for a batch it will send again).
   */
  noteRejected?(reason: string, n: number): void;
}

/** Reads back the state a source stored through {@link SubmitOptions.state}. */
export interface SourceStateReader {
  /** The last committed value of `key` (which starts with {@link SOURCE_STATE_PREFIX}), or undefined. */
  read(key: string): string | undefined;
}

/** A request source that runs in the agent (proxy, scraper, OTLP receiver). */
export interface RequestSource {
  /** `state`, when given, reads what the source stored with its records in earlier runs. */
  start(sink: RequestSink, state?: SourceStateReader): Promise<void>;
  shutdown(): Promise<void>;
}
