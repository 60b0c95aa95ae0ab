import { UpstreamTimeoutError } from './http-forwarding.js';

/**
 * One upstream request under watch. The watchdog keeps its requests in an intrusive list (the
 * links live on the request itself): no Set or Map entry per request. A Set that every request
 * passes through keeps recently deleted members reachable for the young-generation collector,
 * which then copies and promotes every request's object graph: measured, it tripled the time
 * spent in garbage collection.
 */
export interface Watched {
  /** When the request was sent (ms, the watchdog's clock). */
  sentAt: number;
  /** The response headers arrived: the header timeout no longer applies. */
  responded: boolean;
  /** Bumped on every chunk the upstream sends (no clock read per chunk). */
  activity: number;
  /**
   * Reading from the upstream is paused until the client catches up (back-pressure): the
   * upstream's silence then is the client's doing, not the upstream's.
   */
  waitingForClient: boolean;
  /** The watchdog's own: `activity` at the last sweep, and since when it has not moved. */
  seen: number;
  quietSince: number;
  /** The watchdog's own: links of its list; `watching` says whether the request is in it. */
  watching: boolean;
  prevWatched: Watched | null;
  nextWatched: Watched | null;
  /** Called once, when the request ran out of time; the watch is over then. */
  onTimeout(error: UpstreamTimeoutError): void;
}

/** The watchdog's fields, initialised, for a class to extend: it only supplies onTimeout. */
export abstract class WatchedRequest implements Watched {
  sentAt = 0;
  responded = false;
  activity = 0;
  waitingForClient = false;
  seen = 0;
  quietSince = 0;
  watching = false;
  prevWatched: Watched | null = null;
  nextWatched: Watched | null = null;
  abstract onTimeout(error: UpstreamTimeoutError): void;
}

/**
 * The header timeout (no response within requestTimeoutMs of sending) and the idle timeout (the
 * upstream silent for idleTimeoutMs, before or during its answer) of every upstream request, kept
 * by one sweep over the requests in flight instead of two timers per request that would be armed,
 * re-armed on every chunk and cleared on the hot path. The sweep runs every `periodMs` while
 * requests are in flight, so a timeout fires up to `periodMs` late: a tenth of the shorter
 * timeout, between 10 ms and 1 s.
 */
export class UpstreamWatchdog {
  private head: Watched | null = null;
  private count = 0;
  private timer: NodeJS.Timeout | null = null;
  readonly periodMs: number;

  constructor(
    private readonly requestTimeoutMs: number,
    private readonly idleTimeoutMs: number,
    readonly now: () => number = Date.now,
  ) {
    this.periodMs = Math.min(1000, Math.max(10, Math.floor(Math.min(requestTimeoutMs, idleTimeoutMs) / 10)));
  }

  /** Requests under watch. */
  get size(): number {
    return this.count;
  }

  watch(call: Watched): void {
    if (call.watching) return;
    call.seen = call.activity;
    call.quietSince = call.sentAt;
    call.watching = true;
    call.prevWatched = null;
    call.nextWatched = this.head;
    if (this.head !== null) this.head.prevWatched = call;
    this.head = call;
    this.count++;
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.periodMs);
      this.timer.unref();
    }
  }

  unwatch(call: Watched): void {
    if (!call.watching) return;
    call.watching = false;
    const { prevWatched: prev, nextWatched: next } = call;
    if (prev !== null) prev.nextWatched = next;
    else this.head = next;
    if (next !== null) next.prevWatched = prev;
    call.prevWatched = null;
    call.nextWatched = null;
    this.count--;
  }

  /** Stop sweeping (requests still watched are forgotten). */
  close(): void {
    while (this.head !== null) this.unwatch(this.head);
    this.stop();
  }

  /** Check every watched request now (the timer calls this; tests may too). */
  sweep(): void {
    const now = this.now();
    let call = this.head;
    while (call !== null) {
      const next: Watched | null = call.nextWatched;
      if (call.activity !== call.seen || call.waitingForClient) {
        call.seen = call.activity;
        call.quietSince = now;
      }
      let error: UpstreamTimeoutError | null = null;
      if (!call.responded && now - call.sentAt >= this.requestTimeoutMs) error = new UpstreamTimeoutError('headers', this.requestTimeoutMs);
      else if (call.responded && now - call.quietSince >= this.idleTimeoutMs) error = new UpstreamTimeoutError('idle', this.idleTimeoutMs);
      if (error !== null) {
        this.unwatch(call);
        call.onTimeout(error);
      }
      call = next;
    }
    if (this.count === 0) this.stop();
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
