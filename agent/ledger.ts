import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from './sqlite-driver.js';
import type { Database as Db, Statement } from 'better-sqlite3';
import type { PowerSample } from '../model/power-sample.js';
import type { IdleObservation } from '../model/idle-baseline.js';
import { differingFacts } from '../model/request-facts.js';
import type { RequestRecord, ResolvedRequest } from '../model/request-record.js';
import { addEnergyBeforeEndHour, type EnergyBeforeEndHour } from '../model/request-result.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow, TaskRow } from '../model/rollup-types.js';
import { epochMs, joules } from '../model/units.js';
import { summaryOf, type TaskRequest, type TaskSummary } from '../model/tasks.js';
import { isCounterIncrement, type CountedTask } from '../model/task-counters.js';
import type { EpochMs } from '../model/units.js';
import { LEDGER_MIGRATIONS, LedgerVersionError, latestVersion, migrate } from './migrations/index.js';
import { assertNotNewer } from './migrations/migration.js';
import { MIN_READABLE_VERSION, TOKENWATT_APPLICATION_ID, assertTokenwattFile, openError, readFileFacts } from './ledger-file.js';
import { DEFAULT_LEASE_STALE_MS, WriterLease, type LeaseHolder } from './ledger-lease.js';
import * as rows from './ledger-rows.js';
import type { CounterTotals, StoredRequest } from './ledger-rows.js';
import * as sql from './ledger-sql.js';
import { SOURCE_STATE_PREFIX } from '../collectors/request-sink.js';
import { RecentRequestIds, type IdIndexChunk } from './recent-request-ids.js';
import { requestIdHash } from './request-id-hash.js';
import { SameHashChains } from './same-hash-chains.js';
import type { SourceStateWrite } from '../collectors/request-sink.js';
import type { FinalizedRequest, GpuCarriedState, RequestEnergyDelta, RetentionPolicy, SettlementCommit, SettlementPeriod, SettlementRollups, SettlementWriter, TaskCounterIncrements } from './ledger-types.js';

export type { CounterTotals, GpuEnergyTotal, StoredRequest, UsageTotal } from './ledger-rows.js';
export { LedgerVersionError } from './migrations/index.js';
export { LedgerOpenError, MIN_READABLE_VERSION, TOKENWATT_APPLICATION_ID } from './ledger-file.js';
export { LedgerLockedError, type LeaseHolder } from './ledger-lease.js';

/**
 * The ledger's settled_until is not where this settler believed it was: another writer settled
 * the file (or the settler's view is stale). Nothing was written; the settler must reload.
 */
export class SettledUntilMismatchError extends Error {
  constructor(
    readonly storedMs: EpochMs | null,
    readonly expectedMs: EpochMs | null,
    period: SettlementPeriod,
  ) {
    super(`settlement of [${period.periodStartMs}, ${period.periodEndMs}) not applied: the ledger is settled until ${storedMs ?? 'nothing'}, not ${expectedMs ?? 'nothing'} as this settler believed (another writer?)`);
    this.name = 'SettledUntilMismatchError';
  }
}

/** A host energy reading as the ledger keeps it (see Settler.addHostReading). */
export interface StoredHostReading {
  readonly timestampMs: number;
  readonly energyJ: number;
  readonly estimated: boolean;
  /** The agent run whose host counter it comes from: the counter restarts with each run. */
  readonly segment: number;
}

/** What the prune needs to know of settlement, so that it never deletes what settlement still needs. */
export interface PruneGuard {
  readonly periodMs: number;
  readonly latenessMs: number;
}

export interface LedgerOptions {
  /** Node name written into rollup and task rows. */
  readonly node: string;
  readonly retention: RetentionPolicy;
  /**
   * NORMAL (default) survives a killed process, as WAL pages reach the OS at commit;
   * FULL also survives power loss, at an fsync per commit.
   */
  readonly synchronous?: 'NORMAL' | 'FULL';
  /** Milliseconds a writer waits for another connection's lock before failing (default 5000). */
  readonly busyTimeoutMs?: number;
  /** SQLite page cache of the agent's connection, in KiB (default {@link LEDGER_CACHE_KIB}). */
  readonly cacheKiB?: number;
  /** Clock for received_at_ms (tests pass a fixed one). */
  readonly now?: () => number;
  /** A writer lease whose heartbeat is older than this is taken over (default {@link DEFAULT_LEASE_STALE_MS}). */
  readonly leaseStaleMs?: number;
  /** When the request_id index is merged (see {@link RecentRequestIds}); tests pass small values. */
  readonly idIndexMerge?: { readonly rows: number; readonly chunks: number };
}

/**
 * better-sqlite3 builds SQLite with a 16 MB page cache per connection, and a busy agent fills it.
 * The pages the agent keeps touching (the b-tree edges that inserts append to, the rows of the
 * period being settled) fit in a few MB, and a miss is a read from the OS page cache: at 4 MB and
 * at 2 MB, ingest, the per-period read and the settlement writes measured no slower than at 16 MB
 * (with 12 periods of unsettled rows behind the one being settled, as at the default lateness).
 */
export const LEDGER_CACHE_KIB = 2048;

/** A repeated request_id whose record differs from the one stored under it. */
export interface RequestConflict {
  readonly record: ResolvedRequest;
  /** Wire names of the facts that differ from the stored record (e.g. `end`, `prompt_tokens`). */
  readonly differing: readonly string[];
  /** The record stored under that id. */
  readonly kept: RequestRecord;
}

/** What {@link Ledger.insertRequests} did with each record of a batch. */
export interface InsertRequestsResult {
  /** The records stored, in the order given. */
  readonly inserted: ResolvedRequest[];
  /** Ids of records that repeat a stored one exactly: acknowledged, not counted twice. */
  readonly duplicates: string[];
  readonly conflicts: RequestConflict[];
}

/** What one prune removed, per table family. */
export interface PruneResult {
  readonly samples: number;
  readonly requests: number;
  readonly periods: number;
  /** Rows of the hourly tables and tasks. */
  readonly rollups: number;
  /** Requests past their retention kept because they are not finalized yet. */
  readonly unsettledKept: number;
  /** Set when nothing was pruned on purpose, with the reason (the clock is far ahead of settlement...). */
  readonly skipped?: string;
}

/**
 * Pruning is skipped while the wall clock is this far past where settlement should be
 * (settled_until + lateness + one period): the clock has jumped, or settlement is stalled, and in
 * both cases cut-offs taken from the clock could delete what the ESG record or settlement needs.
 */
export const PRUNE_CLOCK_TOLERANCE_MS = 3_600_000;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const SETTLED_UNTIL = 'settled_until_ms';
/** Set by migration 7 (agent/migrations/007-usage-by-energy-hour.ts). */
const USAGE_BY_DRAWN_HOUR_FROM = 'usage_by_energy_hour_from';
const USAGE_BY_DRAWN_HOUR_SCHEMA = 7;
/** Migration 12 (agent/migrations/012-task-counters.ts): task and waste counter sums by series. */
const TASK_COUNTERS_SCHEMA = 12;
/** Migration 14 (agent/migrations/014-task-counted.ts): what the task counters have of a task that closed. */
const TASK_COUNTED_SCHEMA = 14;
const ENERGY_COUNTED_UNTIL = 'energy_counted_until_ms';
/** The task idle time the settlements closed tasks with (written when it changes). */
const TASK_IDLE_MS = 'task_idle_ms';
const GPU_CARRIED_STATE = 'gpu_carried_state';
const ADMITTED_LABEL_VALUES = 'admitted_label_values';
const NODE_KEY = 'node';
/** Up to this many distinct hashes, a batch's index lookup is one query per hash (see indexCandidates). */
const FEW_HASHES = 2;

/** Every request row up to this seq is in request_ids (the rest are in {@link RecentRequestIds}). */
const IDS_MERGED_THROUGH = 'request_ids_merged_through';
const NO_SEQS: readonly number[] = Object.freeze([]);
/** {@link requestIdHash} as an SQL function on the writer's connection (the merge at open, the prune). */
const ID_HASH_FUNCTION = 'tokenwatt_request_id_hash';

/** What one request batch's transaction did, beyond its result: applied to the recent ids once it commits. */
interface InsertRequestsTxResult {
  readonly result: InsertRequestsResult;
  /** (hash, seq) of each stored row, flat. */
  readonly stored: number[];
  readonly chunkWritten: boolean;
}

/**
 * The node's SQLite ledger: power samples, request records with their attribution, settled
 * periods, hourly rollups and tasks. One writer (the agent) and any number of readers
 * (export, analyze) share the file through WAL. Every multi-row write is one transaction.
 */
export class Ledger {
  private readonly statements = new Map<string, Statement>();
  private readonly now: () => number;
  private readonly insertRequestsTx: (records: readonly ResolvedRequest[], isLate: (r: ResolvedRequest) => boolean, state: readonly SourceStateWrite[]) => InsertRequestsTxResult;
  private readonly insertSamplesTx: (samples: readonly PowerSample[]) => number;
  private readonly settleTx: (period: SettlementPeriod, write: (writer: SettlementWriter) => unknown) => unknown;
  private readonly pruneTx: (nowMs: number, guard: PruneGuard) => { result: PruneResult; prunedUnmerged: number[] };
  private readonly addQualityTx: (rows: readonly HourlyQualityRow[]) => void;
  private readonly insertHostTx: (readings: readonly StoredHostReading[]) => number;
  /** Scratch of insertRequests, reused from batch to batch (it is most of what ingest allocates otherwise). */
  private readonly sameHashChains = new SameHashChains();
  private seqScratch = new Float64Array(1024);
  private readonly rowsToInsert = new RequestRowsToInsert((rowCount) => this.stmt(sql.insertRequests(rowCount)));

  private constructor(
    private readonly db: Db,
    /** Node name this ledger writes into its rows. */
    readonly node: string,
    private readonly retention: RetentionPolicy | null,
    now: () => number,
    /** Schema version of the file when it was opened (a reader may open an older one). */
    private readonly version: number,
    private readonly lease: WriterLease | null,
    /** The writer's rows not yet in the request_id index; null for a reader, which looks up no ids. */
    private readonly recentIds: RecentRequestIds | null = null,
  ) {
    this.now = now;
    this.insertRequestsTx = db.transaction((records, isLate, state) => {
      // One chunk of a due index merge rides along, so it commits (or not) with the batch.
      const chunkWritten = this.writeIdChunk(this.recentIds?.nextChunk() ?? null);
      const { result, stored } = this.insertRequestsIn(records, isLate);
      const set = this.stmt(sql.SET_STATE);
      for (const { key, value } of state) set.run(key, value);
      return { result, stored, chunkWritten };
    });
    this.insertSamplesTx = db.transaction((samples) => this.insertSamplesIn(samples));
    this.settleTx = db.transaction((period, write) => this.settleIn(period, write));
    this.pruneTx = db.transaction((nowMs, guard) => this.pruneIn(nowMs, guard));
    this.addQualityTx = db.transaction((rows) => {
      const upsert = this.stmt(sql.UPSERT_QUALITY);
      for (const q of rows) upsert.run(q.hourStartMs, q.node, q.lateRecords, q.rejectedRecords, q.sampleErrors);
    });
    this.insertHostTx = db.transaction((readings) => {
      const insert = this.stmt(sql.INSERT_HOST_READING);
      let stored = 0;
      for (const r of readings) stored += insert.run(r.timestampMs, r.segment, r.energyJ, r.estimated ? 1 : 0).changes;
      return stored;
    });
  }

  /**
   * Open (creating its directory, the file and the schema as needed) the ledger the agent writes.
   * Before anything is written, a file another application wrote is refused; then the writer lease
   * is taken, so a second agent on the same file is refused while the first one lives. Every
   * failure says `cannot open the ledger <path>: <reason> (<what to do>)`.
   */
  static open(path: string, opts: LedgerOptions): Ledger {
    let db: Db | null = null;
    let lease: WriterLease | null = null;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { timeout: opts.busyTimeoutMs ?? 5000 });
      // Reads only, before the first write (journal_mode = WAL writes the header).
      const facts = readFileFacts(db);
      assertNotNewer(facts.userVersion, latestVersion(LEDGER_MIGRATIONS), path);
      assertTokenwattFile(path, facts);
      // An existing ledger a live agent writes is refused before anything here writes to it.
      const staleMs = opts.leaseStaleMs ?? DEFAULT_LEASE_STALE_MS;
      if (path !== ':memory:' && facts.tables.includes('agent_state')) WriterLease.assertFree(db, path, Date.now(), staleMs);
      applyWriterPragmas(db, opts);
      migrate(db, LEDGER_MIGRATIONS, path);
      // Ledgers of schema 1 and 2 were written without it; they get it here.
      if (facts.applicationId !== TOKENWATT_APPLICATION_ID) db.pragma(`application_id = ${TOKENWATT_APPLICATION_ID}`);
      if (path !== ':memory:') lease = WriterLease.take(db, path, Date.now(), staleMs);
      // Used by the merge below and by prune().
      db.function(ID_HASH_FUNCTION, { deterministic: true }, (id: unknown) => requestIdHash(String(id)));
      // Under the lease: the rows a stopped writer had not merged into the id index.
      mergeRequestIdsAbove(db);
      const merge = opts.idIndexMerge;
      const recentIds = merge === undefined ? new RecentRequestIds() : new RecentRequestIds(merge.rows, merge.chunks);
      const ledger = new Ledger(db, opts.node, opts.retention, opts.now ?? Date.now, latestVersion(LEDGER_MIGRATIONS), lease, recentIds);
      ledger.setState(NODE_KEY, opts.node);
      return ledger;
    } catch (err) {
      try {
        lease?.release();
      } catch {
        // the file is closed below either way
      }
      db?.close();
      throw openError(path, err);
    }
  }

  /**
   * Open an existing ledger for reading only (export, analyze, a second process beside the agent).
   * Accepts every schema version from {@link MIN_READABLE_VERSION} (the readers' queries work on
   * all of them) and refuses a newer one, or a file that is not a tokenwatt ledger, rather than
   * misreading it. Takes no writer lease.
   */
  static openReadOnly(path: string, opts: { busyTimeoutMs?: number } = {}): Ledger {
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: opts.busyTimeoutMs ?? 5000 });
    try {
      const facts = readFileFacts(db);
      const version = facts.userVersion;
      const latest = latestVersion(LEDGER_MIGRATIONS);
      if (version === 0) throw new LedgerVersionError(`${path} is not a tokenwatt ledger (no schema version)`);
      if (version > latest) {
        throw new LedgerVersionError(`ledger ${path} has schema version ${version}, newer than this tokenwatt understands (${latest}): upgrade tokenwatt`);
      }
      if (version < MIN_READABLE_VERSION) {
        throw new LedgerVersionError(`ledger ${path} has schema version ${version}, older than this tokenwatt reads (${MIN_READABLE_VERSION}): run the agent on it once to migrate it`);
      }
      assertTokenwattFile(path, facts);
      const node = (db.prepare(sql.GET_STATE).get(NODE_KEY) as { value: string } | undefined)?.value ?? '';
      return new Ledger(db, node, null, Date.now, version, null);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** The stale writer this open took the lease over from (its process was gone or silent), or null. */
  get leaseTakenOver(): { holder: LeaseHolder; reason: string } | null {
    return this.lease?.takenOver ?? null;
  }

  /**
   * Refresh the writer lease's heartbeat (written at most every `everyMs`; the agent calls this on
   * each settle tick). Returns the holder that has taken the lease over when it is no longer this
   * ledger's (this process stalled past the stale time), else null.
   */
  heartbeat(everyMs = 10_000): LeaseHolder | null {
    return this.lease?.beat(Date.now(), everyMs) ?? null;
  }

  private stmt(text: string): Statement {
    let s = this.statements.get(text);
    if (s === undefined) {
      s = this.db.prepare(text);
      this.statements.set(text, s);
    }
    return s;
  }

  /**
   * Store request records in ONE transaction. A request_id already stored (or repeated within
   * the batch) is not inserted again. If the repeat agrees with the stored record on every fact
   * (times, tokens, model, GPUs, labels...), it is the same record sent again and is reported in
   * `duplicates`: acknowledged, not counted twice. If it differs, it is another record under a
   * taken id and is reported in `conflicts` with the facts that differ: the first stays, and the
   * caller must refuse this one by name rather than acknowledge it as stored.
   * `isLate` marks records whose period is already settled.
   *
   * `state` (source state, keys under {@link SOURCE_STATE_PREFIX}) is written in the same
   * transaction, after the records: a failure anywhere leaves records and state as they were.
   */
  insertRequests(records: readonly ResolvedRequest[], isLate: (r: ResolvedRequest) => boolean, state: readonly SourceStateWrite[] = []): InsertRequestsResult {
    if (records.length === 0 && state.length === 0) return { inserted: [], duplicates: [], conflicts: [] };
    for (const { key } of state) assertSourceKey(key);
    const { result, stored, chunkWritten } = this.insertRequestsTx(records, isLate, state);
    // Committed: only now may the rows be found through the recent ids, and the chunk count as merged.
    const recent = this.recentIds;
    if (recent !== null) {
      if (chunkWritten) recent.chunkWritten();
      for (let i = 0; i < stored.length; i += 2) recent.add(stored[i] as number, stored[i + 1] as number);
    }
    return result;
  }

  /** The record stored under this request_id, or undefined (a look-up outside insertRequests: rare). */
  findRequest(requestId: string): ResolvedRequest | undefined {
    const seq = this.seqOf(requestId);
    if (seq === undefined) return undefined;
    const row = this.stmt(sql.REQUEST_AT).get(seq, requestId) as rows.RequestRow | undefined;
    return row === undefined ? undefined : rows.requestFromRow(row).record;
  }

  /**
   * Replace stored requests by merged sightings of them (same request_id; model, tier, GPUs,
   * batch size and source stay as stored), in one transaction. A row that has energy attributed,
   * is finalized or late is left as it is: its figures are settled and cannot be corrected. Returns
   * whether each record was written.
   */
  mergeRequests(records: readonly ResolvedRequest[]): boolean[] {
    if (records.length === 0) return [];
    return this.db.transaction(() =>
      records.map((r) => {
        const seq = this.seqOf(r.requestId);
        if (seq === undefined) return false;
        const changes = this.stmt(sql.MERGE_REQUEST_AT).run(
          r.taskId, r.attempt, r.startMs, r.firstTokenMs, r.endMs, r.promptTokens, r.cachedTokens, r.completionTokens, r.reasoningTokens,
          r.status, JSON.stringify(r.labels), r.tokensEstimated ? 1 : 0, r.otlpSpans === undefined ? null : JSON.stringify(r.otlpSpans), seq, r.requestId,
        ).changes;
        return changes === 1;
      }),
    )();
  }

  /**
   * Count `n` records acknowledged as duplicates that the caller judged so itself (a conflict a
   * source showed to be the same record), in one transaction; the ledger's own are counted by
   * {@link insertRequests}. A negative `n` takes back duplicates {@link insertRequests} counted
   * in a submission the caller then answered with an error (it is sent again, and counted then).
   */
  addDuplicateRecords(n: number): void {
    if (!Number.isInteger(n)) throw new RangeError(`addDuplicateRecords: n must be a whole number, got ${n}`);
    if (n !== 0) this.db.transaction(() => this.addRecordCounts(0, n))();
  }

  private addRecordCounts(accepted: number, duplicates: number): void {
    if (accepted === 0 && duplicates === 0) return;
    this.stmt(sql.ADD_RECORD_COUNTS).run(this.node, accepted, duplicates);
  }

  /** The committed value of a source's state key (see {@link insertRequests}), or undefined. */
  readSourceState(key: string): string | undefined {
    assertSourceKey(key);
    return this.getState(key);
  }

  private insertRequestsIn(records: readonly ResolvedRequest[], isLate: (r: ResolvedRequest) => boolean): { result: InsertRequestsResult; stored: number[] } {
    const receivedAt = this.now();
    const inserted: ResolvedRequest[] = [];
    const duplicates: string[] = [];
    const conflicts: RequestConflict[] = [];
    const stored: number[] = [];
    let inTime = 0;
    const hashes = records.map((r) => requestIdHash(r.requestId));
    // Rows of this batch are not in the recent ids before it commits: a repeat within the batch is
    // found along its hash chain, where each record's new seq (0: none) is kept.
    const chains = this.sameHashChains;
    chains.chain(hashes);
    const seqHere = this.batchSeqs(records.length);
    // After this transaction's merge chunk, so the index already holds the rows it merged.
    const indexed = this.indexCandidates(hashes, chains);
    // New rows are numbered here and written many to a statement; `unwritten` holds their parameters.
    let lastSeq = (this.stmt(sql.LAST_REQUEST_SEQ).get() as { seq: number }).seq;
    const unwritten = this.rowsToInsert;
    unwritten.clear();
    for (let i = 0; i < records.length; i++) {
      const r = records[i] as ResolvedRequest;
      const hash = hashes[i] as number;
      let seq: number | undefined;
      for (let j = chains.previousOf(i); j >= 0 && seq === undefined; j = chains.previousOf(j)) {
        if (seqHere[j] !== 0 && (records[j] as ResolvedRequest).requestId === r.requestId) seq = seqHere[j];
      }
      // A repeat within the batch is compared with its stored row, so that row is written first (rare).
      if (seq !== undefined) unwritten.write();
      else seq = this.seqOf(r.requestId, hash, indexed.get(hash) ?? NO_SEQS);
      if (seq === undefined) {
        lastSeq += 1;
        const late = isLate(r);
        if (!late) inTime += 1;
        unwritten.add(lastSeq, r, late, receivedAt);
        seqHere[i] = lastSeq;
        stored.push(hash, lastSeq);
        inserted.push(r);
        continue;
      }
      // Rare (a repeat), so the stored row is read back only here.
      const row = this.stmt(sql.REQUEST_AT).get(seq, r.requestId) as rows.RequestRow | undefined;
      if (row === undefined) throw new Error(`request ${JSON.stringify(r.requestId)} was found under its id but not read back`);
      const kept = rows.requestFromRow(row).record;
      const differing = differingFacts(kept, r);
      if (differing.length === 0) duplicates.push(r.requestId);
      else conflicts.push({ record: r, differing, kept });
    }
    unwritten.write();
    // Counted with the records, so tokenwatt_records_total seeded from them at a restart is what was acknowledged.
    this.addRecordCounts(inTime, duplicates.length);
    return { result: { inserted, duplicates, conflicts }, stored };
  }

  /**
   * The seq of the row stored under this request_id, or undefined when there is none: through the
   * rows not merged yet, then the index. Each candidate is checked against its row's request_id.
   */
  private seqOf(requestId: string, hash = requestIdHash(requestId), indexed?: readonly number[]): number | undefined {
    // `indexed`: the index's candidates when the caller has read them already (a batch, in one query).
    // Indexed loops: for-of over arrays of several kinds (the frozen empty one among them) made an iterator per record.
    const isAt = this.stmt(sql.IS_REQUEST_AT);
    const recent = this.recentIds?.candidates(hash) ?? NO_SEQS;
    for (let i = 0; i < recent.length; i++) {
      if (isAt.get(recent[i], requestId) !== undefined) return recent[i];
    }
    const fromIndex = indexed ?? (this.stmt(sql.ID_CANDIDATES).pluck().all(hash) as number[]);
    for (let i = 0; i < fromIndex.length; i++) {
      if (isAt.get(fromIndex[i], requestId) !== undefined) return fromIndex[i];
    }
    return undefined;
  }

  /**
   * The index's candidate seqs of each of these hashes, by hash: one query for a whole batch rather
   * than one per record (the statement's own cost was most of a lookup, as nearly every id is new).
   */
  private indexCandidates(hashes: readonly number[], chains: SameHashChains): Map<number, number[]> {
    const found = new Map<number, number[]>();
    if (hashes.length === 0) return found;
    // Each hash once (the first of its chain): the join would return a repeated hash's entries once per repeat.
    const distinct: number[] = [];
    for (let i = 0; i < hashes.length; i++) if (chains.previousOf(i) === -1) distinct.push(hashes[i] as number);
    if (distinct.length <= FEW_HASHES) {
      // A single-record POST: a lookup per hash costs less than building and joining a JSON array.
      for (const hash of distinct) {
        const seqs = this.stmt(sql.ID_CANDIDATES).pluck().all(hash) as number[];
        if (seqs.length > 0) found.set(hash, seqs);
      }
      return found;
    }
    for (const row of this.stmt(sql.ID_CANDIDATES_OF).raw().iterate(JSON.stringify(distinct)) as Iterable<[number, number]>) {
      const seqs = found.get(row[0]);
      if (seqs === undefined) found.set(row[0], [row[1]]);
      else seqs.push(row[1]);
    }
    return found;
  }

  /** A zeroed array of `n` seqs, reused from batch to batch (Float64: seqs may pass 2^31). */
  private batchSeqs(n: number): Float64Array {
    if (this.seqScratch.length < n) this.seqScratch = new Float64Array(Math.max(n, 2 * this.seqScratch.length));
    const seqs = this.seqScratch.subarray(0, n);
    seqs.fill(0);
    return seqs;
  }

  /** Write one chunk of an index merge (inside the caller's transaction). Returns whether there was one. */
  private writeIdChunk(chunk: IdIndexChunk | null): boolean {
    if (chunk === null) return false;
    const perStatement = sql.ROWS_PER_INSERT.requestIds;
    for (let from = 0; from < chunk.hashes.length; from += perStatement) {
      const to = Math.min(from + perStatement, chunk.hashes.length);
      const params: number[] = [];
      for (let i = from; i < to; i++) params.push(chunk.hashes[i] as number, chunk.seqs[i] as number);
      this.stmt(sql.mergeRequestIds(to - from)).run(...params);
    }
    if (chunk.mergedThroughSeq !== null) this.setState(IDS_MERGED_THROUGH, String(chunk.mergedThroughSeq));
    return true;
  }

  /** Store power samples in one transaction. A repeated (GPU, timestamp) keeps the first reading. Returns the number stored. */
  insertSamples(samples: readonly PowerSample[]): number {
    if (samples.length === 0) return 0;
    return this.insertSamplesTx(samples);
  }

  private insertSamplesIn(samples: readonly PowerSample[]): number {
    const insert = this.stmt(sql.INSERT_SAMPLE);
    let stored = 0;
    for (const s of samples) stored += insert.run(...rows.sampleParams(s)).changes;
    return stored;
  }

  /**
   * Samples of one GPU with timestamps in [fromMs, toMs], plus the last one before fromMs and the
   * first one after toMs when they exist, sorted by time.
   */
  loadSamples(gpuUuid: string, fromMs: EpochMs, toMs: EpochMs): PowerSample[] {
    const found = this.stmt(sql.LOAD_SAMPLES).all({ gpu: gpuUuid, from: fromMs, to: toMs }) as rows.SampleRow[];
    return found.map(rows.sampleFromRow);
  }

  /**
   * Every stored idle observation by GPU, in time order: what a restart on a ledger written before
   * the carried GPU state was kept learns its idle baselines from (one scan of the periods).
   */
  idleObservations(): Map<string, IdleObservation[]> {
    const out = new Map<string, IdleObservation[]>();
    for (const r of this.stmt(sql.IDLE_OBSERVATIONS).iterate() as Iterable<{ uuid: string; w: number; ms: number }>) {
      let list = out.get(r.uuid);
      if (!list) out.set(r.uuid, (list = []));
      list.push({ powerW: r.w, durationMs: r.ms });
    }
    return out;
  }

  /**
   * The carried state of each GPU as the last settlement stored it (see
   * {@link SettlementWriter.gpuCarriedState}); entries that do not read back whole are left out.
   * Empty in a ledger written before this was kept.
   */
  getGpuCarriedState(): Map<string, GpuCarriedState> {
    const out = new Map<string, GpuCarriedState>();
    const parsed = parseStateJson(this.getState(GPU_CARRIED_STATE));
    if (parsed === null || typeof parsed !== 'object') return out;
    for (const [uuid, raw] of Object.entries(parsed as Record<string, unknown>)) {
      const state = carriedStateOf(raw);
      if (state !== null) out.set(uuid, state);
    }
    return out;
  }

  /**
   * The label values that kept their name, by label, in the order they were admitted, as the last
   * settlement that changed them stored them ({@link SettlementWriter.admittedLabelValues}); null
   * in a ledger written before they were kept. A label whose entry does not read back whole is left out.
   */
  getAdmittedLabelValues(): Map<string, string[]> | null {
    const parsed = parseStateJson(this.getState(ADMITTED_LABEL_VALUES));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
    const out = new Map<string, string[]>();
    for (const [label, values] of Object.entries(parsed as Record<string, unknown>)) {
      if (Array.isArray(values) && values.every((v) => typeof v === 'string')) out.set(label, values as string[]);
    }
    return out;
  }

  /** Timestamp of the GPU's earliest stored sample, or null when it has none. */
  earliestSampleMs(gpuUuid: string): number | null {
    return (this.stmt(sql.EARLIEST_SAMPLE).get(gpuUuid) as { t: number | null }).t;
  }

  /** GPUs that have samples in the ledger. */
  sampleGpus(): string[] {
    return (this.stmt(sql.SAMPLE_GPUS).all() as { uuid: string }[]).map((r) => r.uuid);
  }

  /** Energy already given to requests not finalized yet (what tokenwatt_pending_attributed_energy_joules shows). */
  pendingAttributedJ(): number {
    return (this.stmt(sql.PENDING_ATTRIBUTED).get() as { j: number }).j;
  }

  /** Requests not finalized yet, by start time, with their running attribution (`soFar`). */
  loadUnsettledRequests(): StoredRequest[] {
    return (this.stmt(sql.LOAD_UNSETTLED).all() as rows.RequestRow[]).map(rows.requestFromRow);
  }

  /** Requests not yet finalized that start before `endMs`, with their attribution so far: what one settlement needs. */
  loadUnsettledStartingBefore(endMs: EpochMs): rows.PendingRequestRow[] {
    const cache: rows.PendingReadCache = { parsed: new Map(), strings: new Map() };
    const pending: rows.PendingRequestRow[] = [];
    // The energy so far of the few rows that have some, by rowid; read first and in one transaction
    // with the rows, so that both statements see the same rows.
    this.db.transaction(() => {
      const energy = new Map<number, unknown[]>();
      for (const row of this.stmt(sql.PENDING_ENERGY).raw(true).iterate(endMs) as IterableIterator<unknown[]>) energy.set(row[0] as number, row);
      // Row by row: each raw row is garbage as soon as it is converted, so a settlement of many
      // requests does not hold them all twice.
      for (const row of this.stmt(sql.LOAD_UNSETTLED_STARTING_BEFORE).raw(true).iterate(endMs) as IterableIterator<unknown[]>) {
        pending.push(rows.pendingFromRawRow(row, energy, cache));
      }
    })();
    return pending;
  }

  /** How many requests are stored and not yet finalized. */
  countUnsettledRequests(): number {
    return (this.stmt(sql.COUNT_UNSETTLED).get() as { n: number }).n;
  }

  /** Running attribution of the given requests (absent ids are left out), for resuming after a restart. */
  requestEnergySoFar(ids: readonly string[]): Map<string, RequestEnergyDelta> {
    const found = new Map<string, RequestEnergyDelta>();
    if (ids.length === 0) return found;
    const wanted = new Set(ids);
    const seqs: number[] = [];
    for (const id of wanted) {
      const seq = this.seqOf(id);
      if (seq !== undefined) seqs.push(seq);
    }
    for (const row of this.stmt(sql.ENERGY_SO_FAR).all(JSON.stringify(seqs)) as rows.RequestRow[]) {
      if (wanted.has(row.request_id)) found.set(row.request_id, rows.soFarFromRow(row));
    }
    return found;
  }

  /**
   * Apply one settlement in ONE transaction: period totals, request deltas, finalized requests,
   * additive rollups, tasks and settled_until_ms. Any failure (a period settled twice, a delta
   * or finalization for a request the ledger does not hold, settled_until moving backwards)
   * rolls all of it back and throws.
   */
  commitSettlement(commit: SettlementCommit): void {
    this.settle(commit, (writer) => {
      writer.periodTotals(commit.gpuTotals);
      const finalizedById = new Map(commit.finalized.map((f) => [f.requestId, f]));
      if (finalizedById.size !== commit.finalized.length) throw new Error('cannot finalize a request twice in one settlement');
      for (const delta of commit.requestDeltas) {
        const final = finalizedById.get(delta.requestId) ?? null;
        finalizedById.delete(delta.requestId);
        writer.request(delta, final);
      }
      for (const final of finalizedById.values()) writer.request(null, final);
      writer.rollups(commit);
      if (commit.taskCounters) writer.taskCounters(commit.taskCounters);
    });
  }

  /**
   * Run one settlement as one transaction: `write` gets a {@link SettlementWriter} for the period's
   * rows, then settled_until moves to `settledUntilMs`. All of it is committed, or (when anything
   * throws) none of it, and the error says which period was not applied. The settler writes each
   * request as it computes it, so a period of many requests never holds all its rows at once.
   */
  settle<T>(period: SettlementPeriod, write: (writer: SettlementWriter) => T): T {
    try {
      return this.settleTx(period, write) as T;
    } catch (err) {
      if (err instanceof SettledUntilMismatchError) throw err;
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(`settlement of [${period.periodStartMs}, ${period.periodEndMs}) not applied: ${why}`, { cause: err });
    }
  }

  private settleIn(period: SettlementPeriod, write: (writer: SettlementWriter) => unknown): unknown {
    const before = this.getSettledUntil();
    if (period.expectedSettledUntilMs !== undefined && before !== period.expectedSettledUntilMs) {
      throw new SettledUntilMismatchError(before, period.expectedSettledUntilMs, period);
    }
    if (before !== null && period.settledUntilMs < before) {
      throw new Error(`settled_until would move backwards (${before} -> ${period.settledUntilMs})`);
    }
    const result = write(new LedgerSettlementWriter(period, (text) => this.stmt(text), this.node, (id) => this.seqOf(id)));
    this.setState(SETTLED_UNTIL, String(period.settledUntilMs));
    return result;
  }

  /** End of the settled time (exclusive), or null before the first settlement. */
  getSettledUntil(): EpochMs | null {
    const value = this.getState(SETTLED_UNTIL);
    return value === undefined ? null : epochMs(Number(value));
  }

  /**
   * GPUs whose energy the last settlement counted only up to a time before settled_until (ms by GPU
   * UUID; see {@link SettlementWriter.energyCountedUntil}). Empty when none, or in a ledger written
   * before this was kept.
   */
  getEnergyCountedUntil(): Record<string, number> {
    const parsed = parseStateJson(this.getState(ENERGY_COUNTED_UNTIL));
    const out: Record<string, number> = {};
    if (parsed !== null && typeof parsed === 'object') {
      for (const [uuid, ms] of Object.entries(parsed)) if (typeof ms === 'number' && Number.isFinite(ms)) out[uuid] = ms;
    }
    return out;
  }

  /**
   * The task idle time the last settlements closed tasks with (ms), or null when none stored (a
   * ledger of an older version, or a value edited into something else): tasks whose last request
   * ended within it of settled_until are still open.
   */
  getTaskIdleMs(): number | null {
    const value = Number(this.getState(TASK_IDLE_MS) ?? NaN);
    return Number.isFinite(value) && value >= 0 ? value : null;
  }

  /**
   * Hours from this time on have their usage energy booked in the hours it was drawn (schema 7);
   * earlier usage rows book each request's energy whole in the hour it ended. Infinity for a file
   * of an older schema (all its rows are of the old kind).
   */
  usageByDrawnHourFrom(): number {
    if (this.schemaVersion() < USAGE_BY_DRAWN_HOUR_SCHEMA) return Number.POSITIVE_INFINITY;
    const value = Number(this.getState(USAGE_BY_DRAWN_HOUR_FROM) ?? 0);
    return Number.isFinite(value) ? value : 0;
  }

  private getState(key: string): string | undefined {
    return (this.stmt(sql.GET_STATE).get(key) as { value: string } | undefined)?.value;
  }

  private setState(key: string, value: string): void {
    this.stmt(sql.SET_STATE).run(key, value);
  }

  /**
   * Delete what is past retention: samples after samplesHours, finalized requests and settled
   * periods after requestsDays, hourly rollups and tasks after rollupsDays. A request that is not
   * finalized is never deleted, however old. The sums of the deleted rollups and tasks are added
   * to the pruned totals in the same transaction, so {@link counterTotals} never shrinks.
   *
   * The ages are taken from min(now, settled_until), not from the wall clock alone, and samples
   * (and host readings) from the last period before settled_until on are kept, as a restart needs
   * them. Nothing is pruned before the first settlement, nor while `nowMs` is more than
   * {@link PRUNE_CLOCK_TOLERANCE_MS} past settled_until + lateness + one period (a clock that
   * jumped forward, or a stalled settlement): the result then says why in `skipped`.
   */
  prune(nowMs: EpochMs, guard: PruneGuard = { periodMs: 0, latenessMs: 0 }): PruneResult {
    const { result, prunedUnmerged } = this.pruneTx(nowMs, guard);
    // Committed: rows deleted before their merge must not be merged.
    if (prunedUnmerged.length > 0) this.recentIds?.forget(prunedUnmerged);
    return result;
  }

  private pruneIn(nowMs: number, guard: PruneGuard): { result: PruneResult; prunedUnmerged: number[] } {
    if (this.retention === null) throw new Error('a read-only ledger does not prune');
    const settled = this.getSettledUntil();
    const none = { samples: 0, requests: 0, periods: 0, rollups: 0, unsettledKept: 0 };
    if (settled === null) return { result: { ...none, skipped: 'nothing is settled yet' }, prunedUnmerged: [] };
    const aheadMs = nowMs - (settled + guard.latenessMs + guard.periodMs);
    if (aheadMs > PRUNE_CLOCK_TOLERANCE_MS) {
      const skipped = `the clock is ${Math.round(aheadMs / 60_000)} min past where settlement should be (settled until ${new Date(settled).toISOString()}): a clock step forward, or settlement stalled`;
      return { result: { ...none, skipped }, prunedUnmerged: [] };
    }
    const refMs = Math.min(nowMs, settled);
    const { samplesHours, requestsDays, rollupsDays } = this.retention;
    const samplesBefore = Math.min(refMs - samplesHours * HOUR_MS, settled - guard.periodMs);
    const requestsBefore = refMs - requestsDays * DAY_MS;
    const rollupsBefore = refMs - rollupsDays * DAY_MS;
    let samples = 0;
    const pruneSamples = this.stmt(sql.PRUNE_SAMPLES);
    for (const gpu of this.sampleGpus()) samples += pruneSamples.run(gpu, samplesBefore).changes;
    if (this.version >= 3) {
      // The last host reading at or before settled_until is where a restart resumes the host counter.
      const lastSettled = (this.stmt(sql.LAST_HOST_READING_AT).get(settled) as { t: number | null }).t;
      this.stmt(sql.PRUNE_HOST_READINGS).run(Math.min(samplesBefore, lastSettled ?? samplesBefore));
    }
    // The index entries go with their rows; rows not merged yet are only in memory (see prune()).
    const mergedThrough = Number(this.getState(IDS_MERGED_THROUGH) ?? 0);
    const prunedUnmerged = this.stmt(sql.PRUNED_UNMERGED_SEQS).pluck().all(requestsBefore, mergedThrough) as number[];
    this.stmt(sql.PRUNE_REQUEST_IDS).run(requestsBefore);
    const requests = this.stmt(sql.PRUNE_REQUESTS).run(requestsBefore).changes;
    const unsettledKept = (this.stmt(sql.COUNT_OLD_UNSETTLED).get(requestsBefore) as { n: number }).n;
    const periods = this.stmt(sql.PRUNE_PERIODS).run(requestsBefore).changes;
    // Their sums first, in this transaction: the counter totals must not shrink with the rows.
    for (const text of sql.CARRY_PRUNED_ROLLUPS) this.stmt(text).run(rollupsBefore);
    let rollups = 0;
    for (const text of sql.PRUNE_ROLLUPS) rollups += this.stmt(text).run(rollupsBefore).changes;
    return { result: { samples, requests, periods, rollups, unsettledKept }, prunedUnmerged };
  }

  /** Hourly GPU energy rows with hourStartMs in [fromMs, toMs). */
  readHourlyEnergy(fromMs: EpochMs, toMs: EpochMs): HourlyEnergyRow[] {
    return (this.stmt(sql.READ_HOURLY_ENERGY).all(fromMs, toMs) as rows.HourlyEnergySqlRow[]).map(rows.hourlyEnergyFromRow);
  }

  /** Hourly attributed usage rows with hourStartMs in [fromMs, toMs). */
  readHourlyUsage(fromMs: EpochMs, toMs: EpochMs): HourlyUsageRow[] {
    return (this.stmt(sql.READ_HOURLY_USAGE).all(fromMs, toMs) as rows.HourlyUsageSqlRow[]).map(rows.hourlyUsageFromRow);
  }

  /** Hourly host energy rows with hourStartMs in [fromMs, toMs). */
  readHourlyHost(fromMs: EpochMs, toMs: EpochMs): HourlyHostEnergyRow[] {
    return (this.stmt(sql.READ_HOURLY_HOST).all(fromMs, toMs) as rows.HourlyHostSqlRow[]).map(rows.hourlyHostFromRow);
  }

  /** Hourly data-quality rows with hourStartMs in [fromMs, toMs). */
  readHourlyQuality(fromMs: EpochMs, toMs: EpochMs): HourlyQualityRow[] {
    return (this.stmt(sql.READ_HOURLY_QUALITY).all(fromMs, toMs) as rows.HourlyQualitySqlRow[]).map(rows.hourlyQualityFromRow);
  }

  /** Tasks whose last request ended in [fromMs, toMs). */
  readTasks(fromMs: EpochMs, toMs: EpochMs): TaskRow[] {
    return (this.stmt(sql.READ_TASKS).all(fromMs, toMs) as rows.TaskSqlRow[]).map(rows.taskFromRow);
  }

  /**
   * Tasks whose last request ended at or after `fromMs`, each with what the task counters have of it
   * (null: never closed, or closed before schema 14 and not reopened since).
   */
  readTasksWithCounted(fromMs: EpochMs): { task: TaskRow; counted: CountedTask | null; problem: string | null }[] {
    const found = this.stmt(sql.READ_TASKS).all(fromMs, Number.MAX_SAFE_INTEGER) as rows.TaskSqlRow[];
    return found.map((r) => {
      const task = rows.taskFromRow(r);
      if (this.version < TASK_COUNTED_SCHEMA) return { task, counted: null, problem: null };
      const read = rows.countedFromRow(r);
      return typeof read === 'string' ? { task, counted: null, problem: read } : { task, counted: read, problem: null };
    });
  }

  /** What the task counters have of the given tasks, by task id, as {@link readTasksWithCounted} reads it (tasks without a row are absent). */
  countedTasks(taskIds: readonly string[]): Map<string, { counted: CountedTask | null; problem: string | null }> {
    const found = new Map<string, { counted: CountedTask | null; problem: string | null }>();
    if (taskIds.length === 0 || this.version < TASK_COUNTED_SCHEMA) return found;
    for (const r of this.stmt(sql.TASKS_BY_ID).all(JSON.stringify(taskIds)) as rows.TaskSqlRow[]) {
      const read = rows.countedFromRow(r);
      found.set(r.task_id, typeof read === 'string' ? { counted: null, problem: read } : { counted: read, problem: null });
    }
    return found;
  }

  /** The stored rows of the given tasks, as task summaries, by task id (tasks without a row are absent). */
  storedTasks(taskIds: readonly string[]): Map<string, TaskSummary> {
    const found = new Map<string, TaskSummary>();
    if (taskIds.length === 0) return found;
    for (const r of this.stmt(sql.TASKS_BY_ID).all(JSON.stringify(taskIds)) as rows.TaskSqlRow[]) {
      found.set(r.task_id, summaryOf(r.task_id, {
        requests: r.requests,
        joules: r.joules,
        wasteJ: r.waste_j,
        completionTokens: r.completion_tokens,
        firstStartMs: r.first_start_ms,
        lastEndMs: r.last_end_ms,
        lastStatus: r.last_status,
        tier: r.tier,
      }));
    }
    return found;
  }

  /**
   * The finalized requests of the given tasks, with what their task figures need (model/tasks.ts).
   * Inside a settlement it sees that settlement's own finalizations too.
   */
  finalizedTaskRequests(taskIds: readonly string[]): TaskRequest[] {
    if (taskIds.length === 0) return [];
    type Row = { request_id: string; task_id: string; attempt: number | null; tier: string; status: string; start_ms: number; end_ms: number; joules: number | null; completion_tokens: number; labels: string };
    return (this.stmt(sql.TASK_REQUESTS).all(JSON.stringify(taskIds)) as Row[]).map((r) => ({
      requestId: r.request_id,
      taskId: r.task_id,
      attempt: r.attempt,
      tier: r.tier,
      status: r.status as TaskRequest['status'],
      startMs: epochMs(r.start_ms),
      endMs: epochMs(r.end_ms),
      joules: joules(r.joules ?? 0),
      completionTokens: r.completion_tokens,
      labels: JSON.parse(r.labels) as Record<string, string>,
    }));
  }

  /** Requests that ended in [fromMs, toMs), oldest first, at most `limit` (default all). */
  readRequests(fromMs: EpochMs, toMs: EpochMs, limit = -1): StoredRequest[] {
    return (this.stmt(sql.READ_REQUESTS).all(fromMs, toMs, limit) as rows.RequestRow[]).map(rows.requestFromRow);
  }

  /**
   * Lifetime sums of the settled rollups and tasks, to seed Prometheus counters after a restart:
   * the retained hourly rows plus the sums that pruning carried into the pruned_* tables, so they
   * do not shrink when rollups pass retention (Prometheus would read that as a counter reset).
   * A GPU's index still comes from its latest retained period (null when none is retained).
   */
  counterTotals(): CounterTotals {
    type GpuSums = Omit<rows.HourlyEnergySqlRow, 'hour_start_ms' | 'node' | 'counter_resets' | 'gaps'> & { gpu_index: number | null };
    const totals = sql.counterTotalsSql(this.version);
    const gpus = (this.stmt(totals.gpuEnergy).all() as GpuSums[]).map((g) => ({
      gpuUuid: g.gpu_uuid,
      gpuIndex: g.gpu_index,
      measuredJ: g.measured_j,
      idleJ: g.idle_j,
      staticJ: g.static_j,
      dynamicJ: g.dynamic_j,
      unattributedJ: g.unattributed_j,
      estimatedJ: g.estimated_j,
      coveredMs: g.covered_ms,
      simulated: g.simulated !== 0,
    }));
    const usage = (this.stmt(totals.usage).all() as Omit<rows.HourlyUsageSqlRow, 'hour_start_ms'>[]).map(rows.usageTotalFromRow);
    const host = this.stmt(totals.host).get() as { host_j: number; measured_j: number; estimated_j: number; sim_measured_j: number; sim_estimated_j: number };
    const quality = this.stmt(totals.quality).get() as { late: number; rejected: number; sample_errors: number; accepted: number; duplicates: number };
    const tasks = this.stmt(totals.tasks).get() as { count: number; succeeded: number; joules: number; waste_j: number };
    return {
      gpus,
      usage,
      hostJ: host.host_j,
      hostByKind: { measuredJ: host.measured_j, estimatedJ: host.estimated_j },
      hostSimulated: { measuredJ: host.sim_measured_j, estimatedJ: host.sim_estimated_j },
      quality: {
        lateRecords: quality.late, rejectedRecords: quality.rejected, sampleErrors: quality.sample_errors,
        acceptedRecords: quality.accepted, duplicateRecords: quality.duplicates,
      },
      tasks: { count: tasks.count, succeeded: tasks.succeeded, joules: tasks.joules, wasteJ: tasks.waste_j },
      ...this.taskCounterTotals(),
    };
  }

  /** The task and waste counters' lifetime sums by series (none before schema 12, which began them). */
  private taskCounterTotals(): Pick<CounterTotals, 'taskSeries' | 'wasteSeries'> {
    if (this.version < TASK_COUNTERS_SCHEMA) return { taskSeries: [], wasteSeries: [] };
    type Flags = { succeeded: number; simulated: number };
    const taskSeries = (this.stmt(sql.TASK_COUNT_SERIES).all() as ({ tier: string; count: number } & Flags)[])
      .map((r) => ({ tier: r.tier, succeeded: r.succeeded !== 0, simulated: r.simulated !== 0, count: r.count }));
    const wasteSeries = (this.stmt(sql.WASTE_SERIES).all() as { tier: string; reason: string; simulated: number; joules: number }[])
      .map((r) => ({ tier: r.tier, reason: r.reason, simulated: r.simulated !== 0, joules: r.joules }));
    return { taskSeries, wasteSeries };
  }

  /** Record data-quality counts (rejected records, sample errors...) in ONE transaction, added to their hourly rows. */
  addQuality(rows: readonly HourlyQualityRow[]): void {
    if (rows.length > 0) this.addQualityTx(rows);
  }

  /** Store host energy readings in one transaction; a repeated timestamp keeps the first. Returns the number stored. */
  insertHostReadings(readings: readonly StoredHostReading[]): number {
    if (readings.length === 0) return 0;
    return this.insertHostTx(readings);
  }

  /**
   * Host readings from `fromMs` on, plus the last one before it, in time order (every reading
   * when `fromMs` is null). Empty on a file older than schema version 3.
   */
  loadHostReadings(fromMs: number | null): StoredHostReading[] {
    if (this.version < 3) return [];
    const found = this.stmt(sql.LOAD_HOST_READINGS).all({ from: fromMs ?? Number.MIN_SAFE_INTEGER }) as { ts_ms: number; segment: number; energy_j: number; estimated: number }[];
    return found.map((r) => ({ timestampMs: r.ts_ms, segment: r.segment, energyJ: r.energy_j, estimated: r.estimated !== 0 }));
  }

  /** Schema version of the open file (PRAGMA user_version). */
  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /**
   * Close the connection. Idempotent. SQLite checkpoints the WAL when the last connection closes;
   * no explicit checkpoint here, so a reader in another process cannot stall shutdown.
   */
  close(): void {
    if (!this.db.open) return;
    try {
      this.lease?.release();
    } catch {
      // An unwritable file keeps the row: the next agent on this host sees the process gone and takes over.
    }
    if (!this.db.readonly) this.db.pragma('optimize');
    this.db.close();
  }
}

/** Sources keep their state beside the agent's own keys: they may touch only theirs. */
function assertSourceKey(key: string): void {
  if (typeof key !== 'string' || !key.startsWith(SOURCE_STATE_PREFIX) || key.length === SOURCE_STATE_PREFIX.length) {
    throw new Error(`source state key ${JSON.stringify(key)} must start with ${JSON.stringify(SOURCE_STATE_PREFIX)} and name something after it`);
  }
}

/** The writes of one settlement, valid only inside the transaction of {@link Ledger.settle}. */
class LedgerSettlementWriter implements SettlementWriter {
  constructor(
    private readonly period: SettlementPeriod,
    private readonly stmt: (text: string) => Statement,
    private readonly node: string,
    private readonly seqOf: (requestId: string) => number | undefined,
  ) {}

  periodTotals(gpuTotals: SettlementCommit['gpuTotals']): void {
    const { periodStartMs, periodEndMs } = this.period;
    const insert = this.stmt(sql.INSERT_PERIOD);
    for (const g of gpuTotals) {
      insert.run(
        periodStartMs, periodEndMs, g.gpuUuid, g.gpuIndex, g.measuredJ, g.idleJ, g.staticJ, g.dynamicJ, g.unattributedJ,
        g.residualJ, g.estimatedJ, g.coveredMs, g.counterResets, g.gaps, g.samples, g.idleBaselineW, g.observedIdlePowerW, g.idleMs,
      );
    }
  }

  energyCountedUntil(byGpu: Readonly<Record<string, number>>): void {
    this.stmt(sql.SET_STATE).run(ENERGY_COUNTED_UNTIL, JSON.stringify(byGpu));
  }

  gpuCarriedState(byGpu: Readonly<Record<string, GpuCarriedState>>): void {
    this.stmt(sql.SET_STATE).run(GPU_CARRIED_STATE, JSON.stringify(byGpu));
  }

  admittedLabelValues(byLabel: Readonly<Record<string, readonly string[]>>): void {
    this.stmt(sql.SET_STATE).run(ADMITTED_LABEL_VALUES, JSON.stringify(byLabel));
  }

  taskCounters(counters: TaskCounterIncrements): void {
    // A value the counter refuses (not finite, negative) is not counted there either; a NaN would
    // also fail the whole settlement on the NOT NULL column.
    const count = this.stmt(sql.ADD_TASK_COUNT);
    for (const t of counters.tasks) {
      if (Number.isInteger(t.count) && t.count >= 0) count.run(t.tier, t.succeeded ? 1 : 0, t.simulated ? 1 : 0, t.count);
    }
    const waste = this.stmt(sql.ADD_WASTE);
    for (const w of counters.waste) if (isCounterIncrement(w.joules)) waste.run(w.tier, w.reason, w.simulated ? 1 : 0, w.joules);
  }

  // A missing row is reported, not thrown: a settlement that failed on it would fail at every
  // retry, and settling would stop for good over one task's restart bookkeeping.
  taskReopened(taskId: string, counted: CountedTask): boolean {
    return this.setTaskCounted(taskId, counted);
  }

  taskClosed(taskId: string, counted: CountedTask): boolean {
    return this.setTaskCounted(taskId, counted);
  }

  private setTaskCounted(taskId: string, c: CountedTask): boolean {
    return this.stmt(sql.SET_TASK_COUNTED).run(c.tier, c.succeeded ? 1 : 0, c.joules, c.wasteJ, c.failedJ, taskId).changes === 1;
  }

  taskIdleMs(ms: number): void {
    this.stmt(sql.SET_STATE).run(TASK_IDLE_MS, String(ms));
  }

  request(delta: RequestEnergyDelta | null, final: FinalizedRequest | null, rowid?: number): void {
    const requestId = delta?.requestId ?? final?.requestId;
    if (requestId === undefined) return;
    if (delta !== null && final !== null && final.requestId !== delta.requestId) {
      throw new Error(`energy of request ${JSON.stringify(delta.requestId)} written with the final figures of ${JSON.stringify(final.requestId)}`);
    }
    // The seq read with the pending row, else found through the id index; -1 matches no row.
    const seq = rowid ?? this.seqOf(requestId) ?? -1;
    if (delta === null && final !== null) {
      const changed = this.stmt(sql.FINALIZE_REQUEST_AT).run(
        final.joules, final.jPerOutputToken, final.observedBatchSize, final.batchBucket, final.cacheBucket, final.settledAtMs, seq, requestId,
      ).changes;
      if (changed !== 1) throw new Error(`cannot finalize request ${JSON.stringify(requestId)}: not in the ledger or already finalized`);
      return;
    }
    const d = delta as RequestEnergyDelta;
    let perGpu: Readonly<Record<string, number>>;
    // null leaves the stored value: the usual request, all of whose energy is in its end hour.
    let beforeEndHour: string | null = d.beforeEndHourJTotal !== undefined ? JSON.stringify(d.beforeEndHourJTotal) : null;
    const addsBeforeEndHour = d.beforeEndHourJTotal === undefined && d.beforeEndHourJ !== undefined && Object.keys(d.beforeEndHourJ).length > 0;
    if (d.perGpuJTotal !== undefined && !addsBeforeEndHour) perGpu = d.perGpuJTotal;
    else {
      const current = this.stmt(sql.PER_GPU_AT).get(seq, requestId) as { per_gpu_j: string; before_end_hour_j: string } | undefined;
      if (current === undefined) throw new Error(`energy delta for request ${JSON.stringify(requestId)}, which the ledger does not hold`);
      if (d.perGpuJTotal !== undefined) perGpu = d.perGpuJTotal;
      else {
        const merged = JSON.parse(current.per_gpu_j) as Record<string, number>;
        for (const [gpu, j] of Object.entries(d.perGpuJ)) merged[gpu] = (merged[gpu] ?? 0) + j;
        perGpu = merged;
      }
      if (addsBeforeEndHour) {
        beforeEndHour = JSON.stringify(addEnergyBeforeEndHour(JSON.parse(current.before_end_hour_j) as EnergyBeforeEndHour, d.beforeEndHourJ ?? {}));
      }
    }
    if (final !== null) {
      // Its last period: one statement adds the energy and finalizes (the common case for short requests).
      const changed = this.stmt(sql.ADD_ENERGY_AND_FINALIZE_AT).run(
        d.staticJ, d.dynamicJ, d.prefillJ, d.decodeJ, d.activeMs, d.concurrencyMs, d.estimated ? 1 : 0, JSON.stringify(perGpu), beforeEndHour,
        final.joules, final.jPerOutputToken, final.observedBatchSize, final.batchBucket, final.cacheBucket, final.settledAtMs,
        seq, requestId,
      ).changes;
      if (changed !== 1) throw new Error(`cannot finalize request ${JSON.stringify(requestId)}: not in the ledger or already finalized`);
      return;
    }
    const changed = this.stmt(sql.ADD_REQUEST_ENERGY_AT).run(
      d.staticJ, d.dynamicJ, d.prefillJ, d.decodeJ, d.activeMs, d.concurrencyMs, d.estimated ? 1 : 0, JSON.stringify(perGpu), beforeEndHour,
      seq, requestId,
    ).changes;
    if (changed !== 1) throw new Error(`energy delta for request ${JSON.stringify(requestId)}, which the ledger does not hold`);
  }

  rollups(r: SettlementRollups): void {
    const usage = this.stmt(sql.UPSERT_USAGE);
    for (const u of r.usageRows) {
      usage.run(
        u.hourStartMs, u.node, u.model, u.tier, u.cacheBucket, u.batchBucket, u.status, u.team, u.feature, u.requests,
        u.promptTokens, u.cachedTokens, u.completionTokens, u.reasoningTokens, u.staticJ, u.dynamicJ, u.prefillJ, u.decodeJ,
        u.simulated ? 1 : 0,
      );
    }
    const energy = this.stmt(sql.UPSERT_ENERGY);
    for (const e of r.energyRows) {
      energy.run(
        e.hourStartMs, e.node, e.gpuUuid, e.measuredJ, e.idleJ, e.staticJ, e.dynamicJ, e.unattributedJ, e.estimatedJ,
        e.coveredMs, e.counterResets, e.gaps, e.simulated ? 1 : 0,
      );
    }
    const host = this.stmt(sql.UPSERT_HOST);
    for (const h of r.hostRows) host.run(h.hourStartMs, h.node, h.hostJ, h.estimated ? 1 : 0, h.simulated === true ? h.hostJ : 0);
    const quality = this.stmt(sql.UPSERT_QUALITY);
    for (const q of r.qualityRows) quality.run(q.hourStartMs, q.node, q.lateRecords, q.rejectedRecords, q.sampleErrors);
    const task = this.stmt(sql.UPSERT_TASK);
    for (const t of r.taskDeltas) {
      task.run(
        t.taskId, this.node, t.firstStartMs, t.lastEndMs, t.requests, t.joules, t.wasteJ, t.completionTokens, t.lastStatus,
        t.tier, t.team, t.feature,
      );
    }
  }
}

/**
 * The pragmas of the writer's connection: WAL, the sync level, the busy timeout and the page cache
 * (exported so that a benchmark's raw SQLite baseline runs under the same ones).
 */
export function applyWriterPragmas(db: Db, opts: Pick<LedgerOptions, 'synchronous' | 'busyTimeoutMs' | 'cacheKiB'> = {}): void {
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
  db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
  db.pragma('temp_store = MEMORY');
  db.pragma(`cache_size = -${opts.cacheKiB ?? LEDGER_CACHE_KIB}`);
}

/**
 * Merge into request_ids every request row above the merged-through mark, and move the mark to the
 * last row: at open, for the rows a stopped writer had not merged (all rows, once, for a file
 * migrated to schema version 5). Idempotent: a row already merged is passed over.
 */
function mergeRequestIdsAbove(db: Db): void {
  db.transaction(() => {
    const mark = (db.prepare(sql.GET_STATE).get(IDS_MERGED_THROUGH) as { value: string } | undefined)?.value;
    const from = mark === undefined ? 0 : Number(mark);
    const last = (db.prepare(sql.MAX_REQUEST_SEQ).get() as { seq: number | null }).seq;
    if (last === null || last <= from) return;
    db.prepare(sql.MERGE_REQUEST_IDS_ABOVE).run(from);
    db.prepare(sql.SET_STATE).run(IDS_MERGED_THROUGH, String(last));
  }).immediate();
}

/**
 * New request rows of one batch, written ROWS_PER_INSERT.requests to a statement (the last
 * statement takes the rest). `write` writes what is held now. The parameter array is the
 * statement's whole list, kept from statement to statement: a new array per row, copied into a
 * growing one, was garbage to collect (BENCHMARKS.md, ninth round).
 */
class RequestRowsToInsert {
  private static readonly PARAMS_PER_ROW = 1 + rows.REQUEST_INSERT_COLUMNS.length;
  private readonly params: unknown[] = Array.from({ length: sql.ROWS_PER_INSERT.requests * RequestRowsToInsert.PARAMS_PER_ROW }, () => null);
  private readonly json = new rows.RequestJsonText();
  private rows = 0;

  constructor(private readonly statementFor: (rowCount: number) => Statement) {}

  add(seq: number, r: ResolvedRequest, late: boolean, receivedAtMs: number): void {
    const at = this.rows * RequestRowsToInsert.PARAMS_PER_ROW;
    this.params[at] = seq;
    rows.writeRequestParams(this.params, at + 1, r, late, receivedAtMs, this.json);
    this.rows += 1;
    if (this.rows === sql.ROWS_PER_INSERT.requests) this.write();
  }

  write(): void {
    if (this.rows === 0) return;
    const full = this.rows === sql.ROWS_PER_INSERT.requests;
    const params = full ? this.params : this.params.slice(0, this.rows * RequestRowsToInsert.PARAMS_PER_ROW);
    const changes = this.statementFor(this.rows).run(...params).changes;
    // Every row is new (seq above the largest ever used): anything else is a bug, and the batch rolls back.
    if (changes !== this.rows) throw new Error(`inserted ${changes} request rows of ${this.rows}`);
    this.rows = 0;
  }

  /** Forget rows held from a batch that rolled back. */
  clear(): void {
    this.rows = 0;
  }
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** A stored GpuCarriedState, checked field by field; null when any field is not what was written. */
function carriedStateOf(raw: unknown): GpuCarriedState | null {
  if (raw === null || typeof raw !== 'object') return null;
  const r = raw as Record<string, unknown>;
  const hw = r.counterHighWater as Record<string, unknown> | null | undefined;
  const idle = r.idle as Record<string, unknown> | null | undefined;
  if (!finite(r.fromMs) || idle === null || typeof idle !== 'object' || !finite(idle.observedMs)) return null;
  if (idle.estimateW !== null && !finite(idle.estimateW)) return null;
  if (hw !== null && (typeof hw !== 'object' || !finite(hw.energyJ) || !finite(hw.atMs) || (hw.missed !== undefined && hw.missed !== true) || (hw.newRun !== undefined && hw.newRun !== true))) return null;
  if (r.counterRunEndMs !== undefined && !finite(r.counterRunEndMs)) return null;
  return {
    counterHighWater: hw === null ? null : {
      energyJ: hw.energyJ as number,
      atMs: hw.atMs as number,
      ...(hw.missed === true ? { missed: true as const } : {}),
      ...(hw.newRun === true ? { newRun: true as const } : {}),
    },
    fromMs: r.fromMs,
    idle: { estimateW: idle.estimateW as number | null, observedMs: idle.observedMs },
    ...(finite(r.counterRunEndMs) && { counterRunEndMs: r.counterRunEndMs }),
  };
}

/**
 * A state value written as JSON by a settlement, or null when absent or not JSON (a file edited or
 * damaged by hand): the callers then go on as with a ledger that never kept it, rather than refuse
 * to start.
 */
function parseStateJson(value: string | undefined): unknown {
  if (value === undefined) return null;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return null;
  }
}
