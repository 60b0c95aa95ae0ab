/**
 * Keeps a problem that repeats every tick (the same GPU failing the same way) from flooding the
 * error handler: the first occurrence passes, repeats within `windowMs` are counted, and the next
 * one after the window passes again with the count. Nothing is dropped without being counted.
 */
export class ProblemThrottle {
  private readonly seen = new Map<string, { lastReportMs: number; suppressed: number }>();

  constructor(private readonly windowMs: number) {}

  /** Returns the message to report now (with the count of suppressed repeats), or null to hold it. */
  admit(key: string, message: string, nowMs: number): string | null {
    const entry = this.seen.get(key);
    if (entry && nowMs - entry.lastReportMs < this.windowMs) {
      entry.suppressed++;
      return null;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.seen.set(key, { lastReportMs: nowMs, suppressed: 0 });
    return suppressed > 0 ? `${message} (and ${suppressed} more times since the last report)` : message;
  }

  /** Forget a key (the condition cleared), so its next occurrence is reported at once. */
  clear(key: string): void {
    this.seen.delete(key);
  }
}
