/**
 * The request rows stored since the ledger's id index (table request_ids) was last merged, found
 * by the hash of their request_id until they are merged.
 *
 * Why: request ids from OpenAI-compatible servers are random (`chatcmpl-<uuid>`), and a B-tree keyed
 * by them takes each new id on a page of its own: every record dirtied one index page, written to
 * the WAL at commit and again at the checkpoint. Instead, new rows are only appended (in `seq`
 * order) and remembered here; once {@link mergeRows} have gathered, they are written to the index
 * in hash order, a hash range per chunk, so one index page takes many ids at once. Each chunk is
 * written in the transaction of the next request batch, so no single write stalls the agent for
 * the whole merge, and the chunk commits, or not, with that batch.
 *
 * Holds numbers only (hash and seq per row, and two slots: 24 bytes a row of capacity), never the ids.
 * Nothing is lost with the process: at open, the ledger merges every row above the merged-through
 * mark (the rows this held), so a crash between chunks only repeats them (merging is idempotent).
 */
export class RecentRequestIds {
  private fresh = new Generation();
  private merging: { readonly generation: Generation; nextChunk: number } | null = null;

  /**
   * @param mergeRows rows that start a merge (at the default, two generations hold about 3 MB)
   * @param chunks hash ranges a merge is written in, one per request batch
   */
  constructor(
    readonly mergeRows = 32_768,
    readonly chunks = 8,
  ) {
    if (!Number.isInteger(mergeRows) || mergeRows < 1) throw new Error(`mergeRows must be a positive integer, got ${mergeRows}`);
    if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`chunks must be a positive integer, got ${chunks}`);
  }

  /** Remember a committed row. Rows must come in increasing seq (SQLite's AUTOINCREMENT gives that). */
  add(hash: number, seq: number): void {
    this.fresh.add(hash, seq);
  }

  /** Seqs of remembered rows whose id may have this hash (to be checked against the row's request_id). */
  candidates(hash: number): readonly number[] {
    const found = this.fresh.candidates(hash);
    if (this.merging === null) return found;
    const merging = this.merging.generation.candidates(hash);
    if (merging.length === 0) return found;
    return found.length === 0 ? merging : found.concat(merging);
  }

  /** Rows remembered and not yet merged. */
  get size(): number {
    return this.fresh.size + (this.merging?.generation.size ?? 0);
  }

  /**
   * The next chunk to write to the index, or null when no merge is due. Starts a merge when
   * {@link mergeRows} have gathered. Nothing changes until {@link chunkWritten} says the chunk
   * was committed: a chunk whose transaction rolled back is offered again.
   */
  nextChunk(): IdIndexChunk | null {
    if (this.merging === null) {
      if (this.fresh.size < this.mergeRows) return null;
      this.merging = { generation: this.fresh, nextChunk: 0 };
      this.fresh = new Generation();
    }
    const { generation, nextChunk } = this.merging;
    const last = nextChunk === this.chunks - 1;
    return { ...generation.hashRange(nextChunk, this.chunks), mergedThroughSeq: last ? generation.maxSeq : null };
  }

  /**
   * Rows deleted (by a prune) before they were merged: they leave the merge, so the index never
   * names a row that is gone. Rare: a row must pass its retention before {@link mergeRows} others
   * have come after it.
   */
  forget(seqs: readonly number[]): void {
    const gone = new Set(seqs);
    this.fresh = this.fresh.without(gone);
    if (this.merging !== null) this.merging = { generation: this.merging.generation.without(gone), nextChunk: this.merging.nextChunk };
  }

  /** The chunk last returned by {@link nextChunk} is committed. */
  chunkWritten(): void {
    if (this.merging === null) throw new Error('chunkWritten without a merge under way');
    this.merging.nextChunk++;
    if (this.merging.nextChunk === this.chunks) this.merging = null;
  }
}

/** One hash range of a merge: (hash, seq) pairs sorted by hash. */
export interface IdIndexChunk {
  readonly hashes: readonly number[];
  readonly seqs: readonly number[];
  /** Set on a merge's last chunk: every row up to this seq is in the index once it commits. */
  readonly mergedThroughSeq: number | null;
}

const NONE: readonly number[] = Object.freeze([]);
/** 2^53: the hashes of request-id-hash.ts are below it. */
const HASH_SPACE = 9_007_199_254_740_992;

/**
 * The rows remembered since a point, in typed arrays: hash and seq per row (Float64: seqs may pass
 * 2^31), and an open-addressing table on the hash's low bits giving each row's index. A Map of
 * the same rows allocated some 100 bytes per row as it grew (a twentieth of what ingest allocated
 * per record) and held about 60; this holds 24 per row of capacity, grown by doubling.
 */
class Generation {
  private hashes = new Float64Array(1024);
  private seqs = new Float64Array(1024);
  /** Index + 1 of a row, 0 for an empty slot; twice the rows' capacity, a power of two. */
  private slots = new Int32Array(2048);
  private count = 0;
  maxSeq = 0;

  get size(): number {
    return this.count;
  }

  add(hash: number, seq: number): void {
    if (seq <= this.maxSeq) throw new Error(`request rows must be remembered in increasing seq (${seq} after ${this.maxSeq})`);
    if (this.count === this.hashes.length) this.grow();
    const i = this.count;
    this.hashes[i] = hash;
    this.seqs[i] = seq;
    this.count = i + 1;
    this.maxSeq = seq;
    this.place(i);
  }

  /** A generation holding the same rows but those in `gone` (it keeps the same maxSeq). */
  without(gone: ReadonlySet<number>): Generation {
    const kept = new Generation();
    for (let i = 0; i < this.count; i++) {
      const seq = this.seqs[i] as number;
      if (!gone.has(seq)) kept.add(this.hashes[i] as number, seq);
    }
    kept.maxSeq = Math.max(kept.maxSeq, this.maxSeq);
    return kept;
  }

  candidates(hash: number): readonly number[] {
    const slots = this.slots;
    const mask = slots.length - 1;
    let found: number[] | null = null;
    // Every row with this hash lies in the run of filled slots from the hash's own (`&` takes its low 32 bits).
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const at = slots[slot] as number;
      if (at === 0) break;
      if (this.hashes[at - 1] === hash) (found ??= []).push(this.seqs[at - 1] as number);
    }
    // Nearly every id of a batch is new: the common answer allocates nothing.
    return found ?? NONE;
  }

  /** The pairs whose hash falls in range `index` of `count` equal ranges, sorted by hash. */
  hashRange(index: number, count: number): { hashes: number[]; seqs: number[] } {
    const from = index === 0 ? 0 : Math.floor((HASH_SPACE / count) * index);
    const to = index === count - 1 ? HASH_SPACE : Math.floor((HASH_SPACE / count) * (index + 1));
    const hashes = this.hashes;
    let n = 0;
    for (let i = 0; i < this.count; i++) {
      const h = hashes[i] as number;
      if (h >= from && h < to) n++;
    }
    const sorted = new Float64Array(n);
    for (let i = 0, k = 0; i < this.count; i++) {
      const h = hashes[i] as number;
      if (h >= from && h < to) sorted[k++] = h;
    }
    // A typed array sorts natively, with no comparator called from the sort (which took 1.5% of
    // batch ingest's cycles). Each row of a hash is then found along its probe run, where rows lie
    // in the order they were added, so a hash's rows stay in seq order.
    sorted.sort();
    const slots = this.slots;
    const mask = slots.length - 1;
    const outHashes = new Array<number>(n);
    const outSeqs = new Array<number>(n);
    let written = 0;
    for (let i = 0; i < n; i++) {
      const h = sorted[i] as number;
      if (i > 0 && sorted[i - 1] === h) continue;
      for (let slot = h & mask; ; slot = (slot + 1) & mask) {
        const at = slots[slot] as number;
        if (at === 0) break;
        if (hashes[at - 1] === h) {
          outHashes[written] = h;
          outSeqs[written] = this.seqs[at - 1] as number;
          written++;
        }
      }
    }
    return { hashes: outHashes, seqs: outSeqs };
  }

  /** Put row `i` in the first empty slot from its hash's. */
  private place(i: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = (this.hashes[i] as number) & mask;
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = i + 1;
  }

  private grow(): void {
    const capacity = 2 * this.hashes.length;
    const hashes = new Float64Array(capacity);
    hashes.set(this.hashes);
    this.hashes = hashes;
    const seqs = new Float64Array(capacity);
    seqs.set(this.seqs);
    this.seqs = seqs;
    this.slots = new Int32Array(2 * capacity);
    for (let i = 0; i < this.count; i++) this.place(i);
  }
}
