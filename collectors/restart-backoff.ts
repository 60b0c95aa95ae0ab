/**
 * Exponential back-off between restarts of something that keeps failing (a hung NVML worker, a
 * dead nvidia-smi child): initial, 2x, 4x ... capped; reset once it works again.
 */
export class RestartBackoff {
  private failures = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError(`bad back-off range ${initialMs}..${maxMs} ms`);
  }

  /** Delay before the next attempt; each call counts one more consecutive failure. */
  next(): number {
    const delay = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return delay;
  }

  reset(): void {
    this.failures = 0;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}
