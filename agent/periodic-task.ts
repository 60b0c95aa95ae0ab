/**
 * A periodic loop in the OpenTelemetry style: a tick is skipped while the previous run is still
 * going, each run is bounded by a timeout, timers are unref'd (they never keep the process alive),
 * and every error goes to one handler instead of escaping a timer callback.
 */
export interface PeriodicTaskOptions {
  readonly name: string;
  readonly intervalMs: number;
  /** A run taking longer than this is reported as an error (the run itself cannot be cancelled). */
  readonly timeoutMs: number;
  readonly run: () => Promise<void> | void;
  readonly onError: (error: Error, taskName: string) => void;
}

export class PeriodicTask {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private skipped = 0;

  constructor(private readonly options: PeriodicTaskOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Ticks skipped because the previous run was still in progress. */
  get skippedTicks(): number {
    return this.skipped;
  }

  /**
   * Run once now (unless a run is in progress, in which case wait for that one). Resolves when
   * the run ends or its timeout passes, whichever is first; a run past its timeout still counts
   * as in progress, so later ticks are skipped until it really ends and stop() waits for it.
   */
  async tick(): Promise<void> {
    if (this.running) {
      this.skipped += 1;
      return this.running;
    }
    const { name, timeoutMs, run } = this.options;
    const work = Promise.resolve()
      .then(run)
      .then(
        () => undefined,
        (error: unknown) => this.report(error instanceof Error ? error : new Error(String(error))),
      );
    this.running = work.finally(() => {
      this.running = undefined;
    });
    let timeout: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timeout = setTimeout(() => resolve(true), timeoutMs);
      timeout.unref();
    });
    const late = await Promise.race([work.then(() => false), timedOut]);
    clearTimeout(timeout);
    if (late) this.report(new Error(`${name}: run exceeded ${timeoutMs} ms`));
  }

  /** To the error handler; a handler that throws must not become an unhandled rejection, which ends the process. */
  private report(error: Error): void {
    try {
      this.options.onError(error, this.options.name);
    } catch (handlerError) {
      process.emitWarning(`${this.options.name}: the error handler threw (${handlerError instanceof Error ? handlerError.message : String(handlerError)}) on: ${error.message}`);
    }
  }

  /** Stop ticking and wait for a run in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
