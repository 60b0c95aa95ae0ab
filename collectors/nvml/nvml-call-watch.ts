import { NVML_SYMBOLS_USED } from './nvml-symbols.js';

/**
 * Which NVML call the sampling worker is inside, and since when, in a few words of shared memory.
 * The worker marks each call's start and end (two Atomics stores, no messages), so the main thread
 * can enforce a deadline on every single call and name the one that hung, even while the worker's
 * thread is blocked inside the driver and can no longer answer messages.
 */

/** The one bound function the worker never calls under a deadline: it formats a return code, no driver work. */
type UnwatchedCall = 'nvmlErrorString';
export type WatchedCall = Exclude<(typeof NVML_SYMBOLS_USED)[number], UnwatchedCall>;

/** Every NVML function the worker calls, by a stable small id (index in this list): the bound symbols in their order. */
export const WATCHED_CALLS: readonly WatchedCall[] = NVML_SYMBOLS_USED.filter((s): s is WatchedCall => s !== 'nvmlErrorString');

const STATE = 0; // 0 idle, 1 inside a call
const CALL = 1;
const GPU = 2; // -1 when the call is not about one GPU
const STARTED = 3; // ms since `baseMs`, as int32 (wraps after 24 days; compared wrap-safely)
const SLOTS = 4;

/** Shared memory for one worker; pass `buffer` to it in workerData. */
export function createCallWatchBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

const callIds = new Map<string, number>(WATCHED_CALLS.map((name, id) => [name, id]));

/** Worker side: bracket each NVML call with begin/end. */
export class CallWatchWriter {
  private readonly slots: Int32Array;

  constructor(buffer: SharedArrayBuffer, private readonly baseMs: number) {
    this.slots = new Int32Array(buffer);
  }

  begin(call: WatchedCall, gpuIndex: number): void {
    Atomics.store(this.slots, CALL, callIds.get(call) ?? -1);
    Atomics.store(this.slots, GPU, gpuIndex);
    Atomics.store(this.slots, STARTED, (Date.now() - this.baseMs) | 0);
    Atomics.store(this.slots, STATE, 1);
  }

  end(): void {
    Atomics.store(this.slots, STATE, 0);
  }
}

/** A call that has been running for `elapsedMs`. */
export interface CallInFlight {
  readonly call: string;
  /** GPU index the call is about, or null for library-wide calls. */
  readonly gpuIndex: number | null;
  readonly elapsedMs: number;
}

/** Main-thread side: what is the worker doing right now? */
export class CallWatchReader {
  private readonly slots: Int32Array;

  constructor(buffer: SharedArrayBuffer, private readonly baseMs: number) {
    this.slots = new Int32Array(buffer);
  }

  current(nowMs: number): CallInFlight | null {
    if (Atomics.load(this.slots, STATE) !== 1) return null;
    const started = Atomics.load(this.slots, STARTED);
    const gpu = Atomics.load(this.slots, GPU);
    const call = WATCHED_CALLS[Atomics.load(this.slots, CALL)] ?? 'an NVML call';
    // int32 subtraction is wrap-safe for differences under 2^31 ms.
    const elapsedMs = (((nowMs - this.baseMs) | 0) - started) | 0;
    return { call, gpuIndex: gpu >= 0 ? gpu : null, elapsedMs: Math.max(0, elapsedMs) };
  }
}
