import { BackpressureError } from '../collectors/request-sink.js';
import type { IngestResult, RequestSink, SightingRule, SourceStateWrite, SubmitOptions } from '../collectors/request-sink.js';
import { conflictReason, differingFacts, statedDifferences } from '../model/request-facts.js';
import { resolveRecord } from '../model/request-record.js';
import type { RecordContext, RecordError, RequestRecord, ResolvedRequest } from '../model/request-record.js';
import type { EpochMs } from '../model/units.js';
import type { InsertRequestsResult, Ledger } from './ledger.js';
import { isLateRecord } from '../model/settlement-schedule.js';

export interface IngestServiceOptions {
  /** Where records are stored (and the duplicates judged here counted, when it can). */
  readonly ledger: Pick<Ledger, 'insertRequests'> & Partial<Pick<Ledger, 'addDuplicateRecords' | 'findRequest' | 'mergeRequests'>>;
  /** The node's current view (GPUs, tiers, accepted time window). */
  readonly context: () => RecordContext;
  /** End of the settled time: a record starting before it is late (stored and counted, never dropped). */
  readonly settledUntil: () => EpochMs | null;
  /** Newly stored records, called after their commit (duplicates are not passed); `late` of them are late (see onLate). */
  readonly onAccepted: (records: ResolvedRequest[], late: number) => void;
  /** Records waiting for their commit beyond which a submission is refused with BackpressureError. */
  readonly queueLimit: number;
  /** Records refused, by reason (the field at fault): while resolving, or at commit for a request_id taken by a different record. */
  readonly onRejected?: (reason: string, n: number) => void;
  readonly onLate?: (n: number) => void;
  readonly onDuplicate?: (n: number) => void;
  /** A callback above threw after a commit; the commit stands. Defaults to a process warning. */
  readonly onError?: (error: unknown) => void;
  /** Seconds a refused client is told to wait (default 1). */
  readonly retryAfterSeconds?: number;
}

/** The ingest service was closed: it stores nothing more. */
export class IngestClosedError extends Error {
  constructor() {
    super('ingest is shutting down');
    this.name = 'IngestClosedError';
  }
}

interface Submission {
  readonly records: ResolvedRequest[];
  /** Each record's index in the batch its sender gave, for errors found at commit. */
  readonly indexes: number[];
  /** The records as sent (before resolution), at their index less `firstIndex`: a conflict compares what they state. */
  readonly sent: readonly RequestRecord[];
  readonly firstIndex: number;
  readonly errors: RecordError[];
  /** Source state committed with the records (see {@link SubmitOptions.state}). */
  readonly state: readonly SourceStateWrite[];
  /** Records refused while resolving, by reason: counted once the submission commits. */
  readonly rejectedBy: ReadonlyMap<string, number>;
  readonly sightings: SightingRule | null;
  resolve(result: IngestResult): void;
  reject(error: unknown): void;
}

/** What became of one submission's records at commit. */
interface Outcome {
  accepted: number;
  late: number;
  duplicates: number;
  /** The submission's own list until a conflict adds to it (copied then: rare). */
  errors: RecordError[];
  copied: boolean;
  /** Some of its records went to the second transaction (stored under alternate ids, or merged). */
  retried: boolean;
  notes: RecordError[];
  /** Of its duplicates, those judged here (not counted by the ledger). */
  judged: number;
  /** Of its duplicates, those the ledger found and counted in a committed transaction. */
  ledgerCounted: number;
}

/** A stored request to replace by its merge with a sighting of it (see SightingVerdict). */
interface Merge {
  readonly outcome: Outcome;
  readonly index: number;
  readonly record: ResolvedRequest;
}

/** Why a merged sighting was not applied: the request's figures are settled. */
function unmerged(o: Outcome, index: number, kept: RequestRecord, merged: RequestRecord): void {
  const adds = differingFacts(kept, merged).filter((f) => f !== 'otlp_spans');
  o.notes.push({
    index,
    requestId: kept.requestId,
    field: 'request_id',
    reason: `the other side of a request already settled: acknowledged, its ${adds.join(', ')} not applied (a settled request is not corrected)`,
  });
}

/** A record to store under its alternate id (see SightingRule). */
interface Retry {
  readonly outcome: Outcome;
  readonly index: number;
  readonly record: ResolvedRequest;
  readonly sent: RequestRecord;
}

/** Refuse a record whose request_id is taken by a different one. */
function refuse(o: Outcome, index: number, requestId: string, differing: readonly string[]): void {
  if (!o.copied) {
    o.errors = [...o.errors];
    o.copied = true;
  }
  o.errors.push({ index, requestId, field: 'request_id', reason: conflictReason(differing, 'the stored record') });
}

/**
 * The agent's RequestSink. Resolves records against the node's context, then GROUP-COMMITS:
 * every submission that arrives within one event-loop turn is written in a single ledger
 * transaction, and each promise settles only after that transaction has committed (the
 * acknowledgement means the records are on disk). A failed write rejects every submission in it.
 * Source state given with a submission is written in that same transaction, after every record,
 * in the order the submissions arrived: it is committed exactly when its records are.
 */
export class IngestService implements RequestSink {
  private queue: Submission[] = [];
  private queuedRecords = 0;
  private scheduled: NodeJS.Immediate | null = null;
  private closed = false;

  constructor(private readonly options: IngestServiceOptions) {
    if (!(options.queueLimit >= 1)) throw new Error(`queueLimit must be >= 1 (got ${options.queueLimit})`);
  }

  /** Records waiting for their commit (a health figure). */
  get queued(): number {
    return this.queuedRecords;
  }

  async submit(records: readonly RequestRecord[], firstIndex = 0, options: SubmitOptions = {}): Promise<IngestResult> {
    if (this.closed) throw new IngestClosedError();
    const context = this.options.context();
    const resolved: ResolvedRequest[] = [];
    const indexes: number[] = [];
    const errors: RecordError[] = [];
    const rejectedBy = new Map<string, number>();
    records.forEach((record, i) => {
      const r = resolveRecord(record, firstIndex + i, context);
      if (r.ok) {
        resolved.push(r.record);
        indexes.push(firstIndex + i);
      } else {
        errors.push(...r.errors);
        const reason = r.errors[0]?.field ?? 'record';
        rejectedBy.set(reason, (rejectedBy.get(reason) ?? 0) + 1);
      }
    });
    // A single submission larger than the limit still goes through when nothing else waits,
    // or it could never be stored; the body limit bounds its size.
    if (this.queuedRecords > 0 && this.queuedRecords + resolved.length > this.options.queueLimit) {
      throw new BackpressureError(this.options.retryAfterSeconds ?? 1);
    }
    const state = options.state ?? [];
    if (resolved.length === 0 && state.length === 0) {
      this.countRejected(rejectedBy);
      return { accepted: 0, duplicates: 0, late: 0, errors };
    }
    return new Promise<IngestResult>((resolve, reject) => {
      this.queue.push({ records: resolved, indexes, sent: records, firstIndex, errors, state, rejectedBy, sightings: options.sightings ?? null, resolve, reject });
      this.queuedRecords += resolved.length;
      this.scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Write everything queued now, in one transaction, and settle the waiting promises. */
  private flush(): void {
    this.scheduled = null;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.queuedRecords = 0;
    const settledUntil = this.options.settledUntil();
    // One rule for the whole agent (model/settlement-schedule.ts): late once any part lies in settled time.
    const isLate = (r: ResolvedRequest): boolean => isLateRecord(r, settledUntil);
    const outcomes: Outcome[] = batch.map((s) => ({ accepted: 0, late: 0, duplicates: 0, errors: s.errors, copied: false, retried: false, notes: [], judged: 0, ledgerCounted: 0 }));
    const retries: Retry[] = [];
    const merges: Merge[] = [];
    /** Requests merged in this flush, by id: a later sighting is judged against the merge. */
    const mergedNow = new Map<string, ResolvedRequest>();
    let refused = 0;
    /** A repeat of `kept` judged by its source's rule: true when it is that request (the outcome counted). */
    const sameRequest = (rule: SightingRule, o: Outcome, index: number, r: ResolvedRequest, stored: RequestRecord): boolean => {
      const kept = mergedNow.get(stored.requestId) ?? ({ ...stored, tier: stored.tier ?? r.tier, gpus: stored.gpus ?? r.gpus } as ResolvedRequest);
      const verdict = rule.judge(kept, r);
      if (verdict.kind === 'other') return false;
      o.duplicates += 1;
      o.judged += 1;
      if (verdict.kind === 'same') return true;
      // Under the stored id, with the stored tier and GPUs: the stored request, better known.
      const merged: ResolvedRequest = { ...verdict.record, requestId: kept.requestId, tier: kept.tier, gpus: kept.gpus };
      // Energy is attributed once: a request with any part in settled time keeps its figures.
      if (isLate(kept) || isLate(merged) || this.options.ledger.mergeRequests === undefined) unmerged(o, index, kept, merged);
      else {
        mergedNow.set(kept.requestId, merged);
        merges.push({ outcome: o, index, record: merged });
        o.retried = true;
      }
      return true;
    };
    // Sightings stored by an earlier version under another id: judged there, before storing (rare
    // look-ups: the rule names legacy ids only for records that could have been stored then).
    const judgedBefore = new Set<ResolvedRequest>();
    const find = this.options.ledger.findRequest?.bind(this.options.ledger);
    try {
      batch.forEach((s, k) => {
        const legacyIds = s.sightings?.legacyIds?.bind(s.sightings);
        if (legacyIds === undefined || find === undefined || s.sightings === null) return;
        s.records.forEach((r, i) => {
          const index = s.indexes[i] ?? i;
          for (const id of legacyIds(index)) {
            const kept = find(id);
            if (kept !== undefined && kept.source === r.source && sameRequest(s.sightings as SightingRule, outcomes[k] as Outcome, index, r, kept)) {
              judgedBefore.add(r);
              return;
            }
          }
        });
      });
    } catch (error) {
      for (const s of batch) s.reject(error); // nothing written yet: nothing is acknowledged
      return;
    }
    const notJudged = (records: ResolvedRequest[]) => (judgedBefore.size === 0 ? records : records.filter((r) => !judgedBefore.has(r)));
    const all = batch.length === 1 ? notJudged(batch[0]!.records) : batch.flatMap((s) => notJudged(s.records));
    const state = batch.length === 1 ? batch[0]!.state : batch.flatMap((s) => s.state);
    let stored: InsertRequestsResult;
    try {
      stored = this.options.ledger.insertRequests(all, isLate, state);
    } catch (error) {
      for (const s of batch) s.reject(error); // rolled back: nothing is acknowledged
      return;
    }
    // `inserted` keeps the order of `all`, so one pointer walks it beside the submissions.
    const inserted = stored.inserted;
    let nextInserted = 0;
    const conflicts = new Map(stored.conflicts.map((c) => [c.record, c]));
    batch.forEach((s, k) => {
      const o = outcomes[k] as Outcome;
      for (let i = 0; i < s.records.length; i++) {
        const r = s.records[i] as ResolvedRequest;
        if (judgedBefore.has(r)) continue;
        if (inserted[nextInserted] === r) {
          nextInserted += 1;
          o.accepted += 1;
          if (isLate(r)) o.late += 1;
          continue;
        }
        const conflict = conflicts.get(r);
        if (conflict === undefined) {
          o.duplicates += 1;
          o.ledgerCounted += 1;
          continue;
        }
        const index = s.indexes[i] ?? i;
        const sent = s.sent[index - s.firstIndex] as RequestRecord;
        const differing = statedDifferences(conflict.differing, sent);
        if (differing.length === 0) {
          o.duplicates += 1;
          o.judged += 1;
          continue;
        }
        if (s.sightings !== null) {
          if (sameRequest(s.sightings, o, index, r, conflict.kept)) continue;
          const alternate = s.sightings.alternateId(index);
          if (alternate !== null && alternate !== r.requestId) {
            retries.push({ outcome: o, index, record: { ...r, requestId: alternate }, sent });
            o.retried = true;
            continue;
          }
        }
        refuse(o, index, r.requestId, differing);
        refused += 1;
      }
    });
    // Another request under a taken id, stored under its alternate id: a second transaction, rare.
    let again: InsertRequestsResult | null = null;
    let againFailed: unknown = null;
    if (retries.length > 0) {
      try {
        again = this.options.ledger.insertRequests(retries.map((x) => x.record), isLate, []);
      } catch (error) {
        againFailed = error ?? new Error('storing under alternate ids failed');
      }
    }
    if (again !== null) {
      const conflictsAgain = new Map(again.conflicts.map((c) => [c.record, c]));
      let next = 0;
      for (const x of retries) {
        if (again.inserted[next] === x.record) {
          next += 1;
          x.outcome.accepted += 1;
          if (isLate(x.record)) x.outcome.late += 1;
          continue;
        }
        const conflict = conflictsAgain.get(x.record);
        // No conflict: the ledger found it a duplicate and counted it; an empty difference is judged here.
        const differing = conflict === undefined ? [] : statedDifferences(conflict.differing, x.sent);
        if (differing.length === 0) {
          x.outcome.duplicates += 1;
          if (conflict !== undefined) x.outcome.judged += 1;
          else x.outcome.ledgerCounted += 1;
        } else {
          refuse(x.outcome, x.index, x.record.requestId, differing);
          refused += 1;
        }
      }
    }
    // Sightings merged into the requests they complete: a third transaction, rare too.
    if (merges.length > 0 && againFailed === null) {
      try {
        const written = this.options.ledger.mergeRequests?.(merges.map((m) => m.record)) ?? [];
        merges.forEach((m, i) => {
          // Settled between the judgement and the write (the ledger's own check): reported as such.
          if (written[i] !== true) unmerged(m.outcome, m.index, m.record, m.record);
        });
      } catch (error) {
        againFailed = error ?? new Error('merging sightings failed');
      }
    }
    // The ledger counts the duplicates it finds; those judged here are added, and those of a
    // submission answered with an error (sent again, and counted then) taken back, so that its
    // count (which seeds tokenwatt_records_total after a restart) is what was acknowledged. The
    // records are committed whatever happens to this count.
    const failed = (o: Outcome): boolean => o.retried && againFailed !== null;
    const duplicateCorrection = outcomes.reduce((n, o) => n + (failed(o) ? -o.ledgerCounted : o.judged), 0);
    try {
      this.options.ledger.addDuplicateRecords?.(duplicateCorrection);
    } catch {
      // Left out of the ledger's count only; the answer and the metric still count them.
    }
    let lateTotal = 0;
    let duplicateTotal = 0;
    batch.forEach((s, k) => {
      const o = outcomes[k] as Outcome;
      lateTotal += o.late;
      // Its first part is committed; sent again, that part is acknowledged as duplicates.
      if (failed(o)) {
        s.reject(againFailed);
        return;
      }
      if (o.copied) o.errors.sort((a, b) => a.index - b.index);
      duplicateTotal += o.duplicates;
      s.resolve({ accepted: o.accepted, duplicates: o.duplicates, late: o.late, errors: o.errors, ...(o.notes.length > 0 ? { notes: o.notes } : {}) });
    });
    // Counted only once committed: a submission refused (429) or failed (503) is sent again, and
    // counted then.
    for (const s of batch) this.countRejected(s.rejectedBy);
    const storedNow = again === null || again.inserted.length === 0 ? stored.inserted : [...stored.inserted, ...again.inserted];
    this.notify(() => {
      if (storedNow.length > 0) this.options.onAccepted(storedNow, lateTotal);
    });
    if (refused > 0) this.notify(() => this.options.onRejected?.('request_id', refused));
    if (lateTotal > 0) this.notify(() => this.options.onLate?.(lateTotal));
    if (duplicateTotal > 0) this.notify(() => this.options.onDuplicate?.(duplicateTotal));
  }

  /** Records a source refused before submitting them (see RequestSink.noteRejected). */
  noteRejected(reason: string, n: number): void {
    if (n > 0) this.countRejected(new Map([[reason, n]]));
  }

  private countRejected(rejectedBy: ReadonlyMap<string, number>): void {
    if (rejectedBy.size === 0) return;
    this.notify(() => {
      for (const [reason, n] of rejectedBy) this.options.onRejected?.(reason, n);
    });
  }

  private notify(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      if (this.options.onError) this.options.onError(error);
      else process.emitWarning(`ingest callback failed after commit: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Refuse new submissions and commit what is queued. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.flush();
    }
  }
}
