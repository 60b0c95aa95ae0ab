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
 * Holds numbers only (hash and seq per row, and two slots: 24 bytes a row of capacity; while a
 * generation is merged, also its rows sorted by hash: 16 bytes a row), never the ids.
 * Nothing is lost with the process: at open, the ledger merges every row above the merged-through
 * mark (the rows this held), so a crash between chunks only repeats them (merging is idempotent).
 */
export class RecentRequestIds {
  private fresh = new Generation();
  /** The generation being merged, and its rows in hash order (sorted once, at the merge's first chunk). */
  private merging: { readonly generation: Generation; nextChunk: number; sorted: SortedRows | null } | null = null;

  /**
   * @param mergeRows rows that start a merge (at the default, two generations hold about 3.5 MB)
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
      this.merging = { generation: this.fresh, nextChunk: 0, sorted: null };
      this.fresh = new Generation();
    }
    const merging = this.merging;
    const sorted = (merging.sorted ??= merging.generation.sortedByHash());
    const index = merging.nextChunk;
    const from = index === 0 ? 0 : Math.floor((HASH_SPACE / this.chunks) * index);
    const to = index === this.chunks - 1 ? HASH_SPACE : Math.floor((HASH_SPACE / this.chunks) * (index + 1));
    const start = firstAtLeast(sorted.hashes, from);
    const end = firstAtLeast(sorted.hashes, to);
    return {
      hashes: sorted.hashes.subarray(start, end),
      seqs: sorted.seqs.subarray(start, end),
      mergedThroughSeq: index === this.chunks - 1 ? merging.generation.maxSeq : null,
    };
  }

  /**
   * Rows deleted (by a prune) before they were merged: they leave the merge, so the index never
   * names a row that is gone. Rare: a row must pass its retention before {@link mergeRows} others
   * have come after it.
   */
  forget(seqs: readonly number[]): void {
    const gone = new Set(seqs);
    this.fresh = this.fresh.without(gone);
    if (this.merging !== null) this.merging = { generation: this.merging.generation.without(gone), nextChunk: this.merging.nextChunk, sorted: null };
  }

  /** The chunk last returned by {@link nextChunk} is committed. */
  chunkWritten(): void {
    if (this.merging === null) throw new Error('chunkWritten without a merge under way');
    this.merging.nextChunk++;
    if (this.merging.nextChunk === this.chunks) this.merging = null;
  }
}

/** One hash range of a merge: (hash, seq) pairs sorted by hash, then seq. */
export interface IdIndexChunk {
  readonly hashes: Float64Array;
  readonly seqs: Float64Array;
  /** Set on a merge's last chunk: every row up to this seq is in the index once it commits. */
  readonly mergedThroughSeq: number | null;
}

const NONE: readonly number[] = Object.freeze([]);
/** 2^53: the hashes of request-id-hash.ts are below it. */
const HASH_SPACE = 9_007_199_254_740_992;
const TWO_32 = 4_294_967_296;
/** Bits of the hash each pass of the radix sort orders by (the counts: 2^11 slots). */
const RADIX_BITS = 11;

/** A generation's rows sorted by hash, then seq. */
interface SortedRows {
  readonly hashes: Float64Array;
  readonly seqs: Float64Array;
}

/** The first position in ascending `sorted` holding a value >= `value` (its length when none does). */
function firstAtLeast(sorted: Float64Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reorder `order` (row numbers) stably by the `bits` bits of `words[row]` from bit `shift`: one pass
 * of a least-significant-digit radix sort. Returns the reordered rows (in `spare`).
 */
function radixPass(order: Uint32Array, spare: Uint32Array, words: Uint32Array, shift: number, bits: number, counts: Uint32Array): Uint32Array {
  const mask = (1 << bits) - 1;
  counts.fill(0);
  for (let i = 0; i < order.length; i++) (counts[((words[order[i] as number] as number) >>> shift) & mask] as number)++;
  let at = 0;
  for (let d = 0; d <= mask; d++) {
    const n = counts[d] as number;
    counts[d] = at;
    at += n;
  }
  for (let i = 0; i < order.length; i++) {
    const row = order[i] as number;
    const d = ((words[row] as number) >>> shift) & mask;
    spare[counts[d] as number] = row;
    counts[d] = (counts[d] as number) + 1;
  }
  return spare;
}

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

  /**
   * Every row, sorted by hash and then seq. A radix sort of the row numbers on the hash's 53 bits,
   * 11 at a time, in typed arrays: stable, so a hash's rows keep the order they were added in (seq
   * order). Sorting each merge chunk's hashes natively and finding each one's rows along its probe
   * run cost 190-240 ns a row (2% of batch ingest); this, 65-120 (a throwaway timing of 20 merges).
   */
  sortedByHash(): SortedRows {
    const n = this.count;
    const low = new Uint32Array(n);
    const high = new Uint32Array(n);
    let order: Uint32Array = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const h = this.hashes[i] as number;
      low[i] = h >>> 0; // h mod 2^32: exact, as h < 2^53
      high[i] = (h - (low[i] as number)) / TWO_32;
      order[i] = i;
    }
    let spare: Uint32Array = new Uint32Array(n);
    const counts = new Uint32Array(1 << RADIX_BITS);
    // Bits 0-31 from `low`, then bits 32-52 from `high`, least significant first.
    for (const [words, width] of [[low, 32], [high, 21]] as const) {
      for (let shift = 0; shift < width; shift += RADIX_BITS) {
        const sorted = radixPass(order, spare, words, shift, Math.min(RADIX_BITS, width - shift), counts);
        spare = order;
        order = sorted;
      }
    }
    const hashes = new Float64Array(n);
    const seqs = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const row = order[i] as number;
      hashes[i] = this.hashes[row] as number;
      seqs[i] = this.seqs[row] as number;
    }
    return { hashes, seqs };
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
