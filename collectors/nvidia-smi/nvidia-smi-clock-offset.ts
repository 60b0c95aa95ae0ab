/**
 * nvidia-smi stamps its lines in the local time of its own process, without a zone. When the
 * child runs under another time zone than the agent (a TZ variable, a container without
 * /etc/localtime), every stamp is off by the same whole number of quarter-hours: that is the only
 * thing to correct. A line that merely arrives late (the agent's event loop was busy, the pipe
 * buffered) keeps its own stamp: it is when the reading was taken.
 *
 * So the offset is estimated, not decided per line: the first line's arrival minus its stamp,
 * rounded to 15 minutes, is the offset (0 in the usual case, where a delay of up to 7.5 minutes
 * still rounds to 0). It changes only when lines keep disagreeing with it, by the same amount,
 * for `confirmMs` of arrival time (e.g. a daylight-saving change in one zone but not the other).
 * Lines that disagree are held back meanwhile and then stamped with whichever offset turned out
 * right, so times never jump back and forth. A burst of lines read late after a long stall
 * arrives within moments and never changes the offset.
 */

const QUARTER_HOUR_MS = 15 * 60_000;

/** An item and the time to stamp it with. */
export interface Placed<T> {
  readonly item: T;
  readonly timestampMs: number;
}

export class NvidiaSmiClockOffset<T> {
  private offsetMs: number | null = null;
  private held: { item: T; stampedMs: number }[] = [];
  private heldOffsetMs = 0;
  private heldSinceMs = 0;

  /**
   * @param confirmMs how long (arrival time) lines must agree on a new offset before it is adopted
   * @param onChange told when an offset is first found to be non-zero, or changes
   */
  constructor(
    private readonly confirmMs: number,
    private readonly onChange: (offsetMs: number, previousMs: number | null) => void = () => undefined,
  ) {}

  /** The offset in use (ms added to nvidia-smi's stamps), or null before the first line. */
  get currentOffsetMs(): number | null {
    return this.offsetMs;
  }

  /** Lines held back while a new offset is being confirmed. */
  get heldCount(): number {
    return this.held.length;
  }

  /**
   * Place one line stamped `stampedMs` (its stamp read as the agent's local time) that arrived at
   * `arrivedMs`. Returns the lines that can be emitted now, in order: usually just this one.
   */
  place(item: T, stampedMs: number, arrivedMs: number): Placed<T>[] {
    const candidate = roundToQuarterHour(arrivedMs - stampedMs);
    if (this.offsetMs === null) {
      this.offsetMs = candidate;
      if (candidate !== 0) this.onChange(candidate, null);
      return [{ item, timestampMs: stampedMs + candidate }];
    }
    if (candidate === this.offsetMs) {
      // Any disagreement before this line was lateness, not a new offset.
      const out = this.release(this.offsetMs);
      out.push({ item, timestampMs: stampedMs + this.offsetMs });
      return out;
    }
    let out: Placed<T>[] = [];
    if (this.held.length > 0 && candidate !== this.heldOffsetMs) out = this.release(this.offsetMs);
    if (this.held.length === 0) {
      this.heldOffsetMs = candidate;
      this.heldSinceMs = arrivedMs;
    }
    this.held.push({ item, stampedMs });
    if (arrivedMs - this.heldSinceMs >= this.confirmMs) {
      const previous = this.offsetMs;
      this.offsetMs = candidate;
      this.onChange(candidate, previous);
      for (const placed of this.release(candidate)) out.push(placed); // held lines: as many as arrived, no spread
    }
    return out;
  }

  /** Lines still held (at shutdown): stamped with the offset in use. */
  drain(): Placed<T>[] {
    return this.release(this.offsetMs ?? 0);
  }

  private release(offsetMs: number): Placed<T>[] {
    if (this.held.length === 0) return [];
    const out = this.held.map((h) => ({ item: h.item, timestampMs: h.stampedMs + offsetMs }));
    this.held = [];
    return out;
  }
}

function roundToQuarterHour(ms: number): number {
  return Math.round(ms / QUARTER_HOUR_MS) * QUARTER_HOUR_MS || 0; // || 0: no -0
}
