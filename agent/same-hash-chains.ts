/**
 * For each record of a request batch, the latest earlier record whose request_id has the same
 * hash, found in reused typed arrays: a batch's repeats and its distinct hashes come out of one
 * pass that allocates nothing per record. (A Map from request_id to seq, built for every batch,
 * was garbage to collect, and ingest's garbage collection was a quarter of its CPU: BENCHMARKS.md,
 * ninth round.)
 *
 * Equal hashes do not make equal ids: the caller compares the ids along a chain.
 */
export class SameHashChains {
  /** Open addressing: index + 1 of the latest record seen with a hash, 0 for an empty slot. */
  private slots = new Int32Array(2048);
  /** Per record: index of the previous record with its hash, or -1. */
  private previous = new Int32Array(1024);
  private size = 0;

  /** Chain the records of a batch by hash (replacing the batch chained before). */
  chain(hashes: readonly number[]): void {
    const n = hashes.length;
    if (this.slots.length < 2 * n) this.slots = new Int32Array(capacityFor(2 * n));
    else this.slots.fill(0);
    if (this.previous.length < n) this.previous = new Int32Array(capacityFor(n));
    const slots = this.slots;
    const previous = this.previous;
    const mask = slots.length - 1;
    for (let i = 0; i < n; i++) {
      const hash = hashes[i] as number;
      // `&` takes the hash's low 32 bits (ToInt32 is exact modulo 2^32 below 2^53).
      let slot = hash & mask;
      for (;;) {
        const at = slots[slot] as number;
        if (at === 0) {
          previous[i] = -1;
          break;
        }
        if (hashes[at - 1] === hash) {
          previous[i] = at - 1;
          break;
        }
        slot = (slot + 1) & mask;
      }
      slots[slot] = i + 1;
    }
    this.size = n;
  }

  /** Index of the latest earlier record of the chained batch with the same hash as record `i`, or -1. */
  previousOf(i: number): number {
    if (!(i >= 0 && i < this.size)) throw new RangeError(`record ${i} is not in the chained batch of ${this.size}`);
    return this.previous[i] as number;
  }
}

/** The smallest power of two at least `n` (and at least 16). */
function capacityFor(n: number): number {
  let capacity = 16;
  while (capacity < n) capacity *= 2;
  return capacity;
}
