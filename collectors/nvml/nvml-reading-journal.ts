/**
 * Every reading the sampling worker takes, also written to a ring of shared memory as it is taken.
 *
 * The worker posts its readings in batches (about once a second: fewer thread wake-ups). When
 * one NVML call hangs, the main thread terminates the worker, and the batch it had not posted yet
 * would die with it: up to a second of readings of every GPU, healthy ones included. The journal
 * keeps them: the worker writes each reading here right after taking it (a few stores into a
 * Float64Array and one Atomics.store, no allocation, no message), and tags each batch it posts
 * with the journal position it reached. When the main thread retires a worker it reads back what
 * was written after the last batch it received (`ReadingJournalReader.since`).
 *
 * The worker posts a batch before its unposted readings exceed half the ring, so a worker blocked
 * in the driver never has more unposted readings than the ring holds. Readings can only be
 * overwritten before they are salvaged when the main thread itself fell behind by more than the
 * ring (its event loop blocked for seconds while batches queued up); `since` counts those, and
 * the power source reports them.
 */

/** Readings the ring holds (a power of two). 4096 x 40 bytes: 160 KiB per worker. */
export const JOURNAL_CAPACITY = 4096;

const FIELDS = 5; // GPU index, timestamp ms, power mW (NaN: none), energy mJ (NaN: none), averaged 0/1
const HEAD = 0; // Int32 header: sequence number after the last written reading (wraps; compared wrap-safely)
const HEADER_BYTES = 8; // keeps the Float64Array aligned

/** One reading as the journal keeps it (the GPU by index; null: not read this time). */
export interface JournalReading {
  readonly index: number;
  readonly timestampMs: number;
  readonly powerMw: number | null;
  readonly energyMj: number | null;
  readonly powerAveraged: boolean;
}

/** Shared memory for one worker's journal; pass it to the worker in workerData. */
export function createReadingJournal(capacity = JOURNAL_CAPACITY): SharedArrayBuffer {
  if (!Number.isInteger(Math.log2(capacity)) || capacity < 2) throw new RangeError(`journal capacity must be a power of two, got ${capacity}`);
  return new SharedArrayBuffer(HEADER_BYTES + capacity * FIELDS * Float64Array.BYTES_PER_ELEMENT);
}

/** The typed-array views both sides of a journal use on its shared memory. */
abstract class JournalViews {
  protected readonly header: Int32Array;
  protected readonly values: Float64Array;
  protected readonly mask: number;
  readonly capacity: number;

  constructor(buffer: SharedArrayBuffer) {
    this.values = new Float64Array(buffer, HEADER_BYTES);
    this.header = new Int32Array(buffer, 0, 1);
    this.capacity = this.values.length / FIELDS;
    this.mask = this.capacity - 1;
  }
}

/** Worker side. */
export class ReadingJournalWriter extends JournalViews {
  private seq: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.seq = Atomics.load(this.header, HEAD);
  }

  /** Sequence number after the last reading written (int32, wraps). */
  get head(): number {
    return this.seq;
  }

  write(index: number, timestampMs: number, powerMw: number | null, energyMj: number | null, powerAveraged: boolean): void {
    const at = (this.seq & this.mask) * FIELDS;
    const values = this.values;
    values[at] = index;
    values[at + 1] = timestampMs;
    values[at + 2] = powerMw ?? NaN;
    values[at + 3] = energyMj ?? NaN;
    values[at + 4] = powerAveraged ? 1 : 0;
    this.seq = (this.seq + 1) | 0;
    // Publishes the stores above: a reader that sees this head sees the reading.
    Atomics.store(this.header, HEAD, this.seq);
  }
}

/** Main-thread side. */
export class ReadingJournalReader extends JournalViews {
  /** Sequence number after the last reading written. */
  head(): number {
    return Atomics.load(this.header, HEAD);
  }

  /**
   * Readings written after sequence number `from`, oldest first, and how many of them were
   * already overwritten (the oldest ones, beyond the ring's capacity). Read it once the worker no
   * longer writes (retired, blocked or gone): a reading written meanwhile may be torn.
   */
  since(from: number): { readings: JournalReading[]; overwritten: number; head: number } {
    const head = this.head();
    const unread = (head - from) | 0;
    if (unread <= 0) return { readings: [], overwritten: 0, head };
    const kept = Math.min(unread, this.capacity);
    const readings: JournalReading[] = [];
    for (let k = kept; k > 0; k--) {
      const at = (((head - k) | 0) & this.mask) * FIELDS;
      const v = this.values;
      const powerMw = v[at + 2] as number;
      const energyMj = v[at + 3] as number;
      readings.push({
        index: v[at] as number,
        timestampMs: v[at + 1] as number,
        powerMw: Number.isNaN(powerMw) ? null : powerMw,
        energyMj: Number.isNaN(energyMj) ? null : energyMj,
        powerAveraged: v[at + 4] === 1,
      });
    }
    return { readings, overwritten: unread - kept, head };
  }
}
