import { NvmlBufferSize } from './nvml-constants.js';
import { NVML_SYMBOLS_USED } from './nvml-symbols.js';

/**
 * Which NVML call the sampling worker is inside, and since when, in a few words of shared memory.
 * The worker marks each call's start and end (two Atomics stores, no messages), so the main thread
 * can enforce a deadline on every single call and name the one that hung, even while the worker's
 * thread is blocked inside the driver and can no longer answer messages. The UUID of the GPU being
 * opened is kept there too: a GPU whose call hangs while it is opened is known by it, not only by
 * its index, though the worker never got to report it.
 */

/**
 * Every bound function is called under a deadline, nvmlErrorString too: it does no driver work, but
 * a call that did not return outside the watch would stop sampling with nothing noticing.
 */
export type WatchedCall = (typeof NVML_SYMBOLS_USED)[number];

/** Every NVML function the worker calls, by a stable small id (index in this list): the bound symbols in their order. */
export const WATCHED_CALLS: readonly WatchedCall[] = NVML_SYMBOLS_USED;

const STATE = 0; // 0 idle, 1 inside a call
const CALL = 1;
const GPU = 2; // -1 when the call is not about one GPU
const STARTED = 3; // ms since `baseMs`, as int32 (wraps after 24 days; compared wrap-safely)
const IDENTIFIED_GPU = 4; // index of the GPU whose UUID follows, -1 when none
const UUID_LENGTH = 5; // bytes of that UUID (UTF-8)
const SLOTS = 6;
const UUID_AT = SLOTS * Int32Array.BYTES_PER_ELEMENT;

/** Shared memory for one worker; pass `buffer` to it in workerData. */
export function createCallWatchBuffer(): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(UUID_AT + NvmlBufferSize.UUID);
  new Int32Array(buffer, 0, SLOTS)[IDENTIFIED_GPU] = -1;
  return buffer;
}

const callIds = new Map<string, number>(WATCHED_CALLS.map((name, id) => [name, id]));

/** Worker side: bracket each NVML call with begin/end. */
export class CallWatchWriter {
  private readonly slots: Int32Array;
  private readonly uuidBytes: Uint8Array;

  constructor(buffer: SharedArrayBuffer, private readonly baseMs: number) {
    this.slots = new Int32Array(buffer, 0, SLOTS);
    this.uuidBytes = new Uint8Array(buffer, UUID_AT);
  }

  /** The GPU at `gpuIndex` has this UUID (called while opening it, before the calls that may hang). */
  identify(gpuIndex: number, uuid: string): void {
    Atomics.store(this.slots, IDENTIFIED_GPU, -1); // no reader takes a half-written UUID
    const { written } = new TextEncoder().encodeInto(uuid, this.uuidBytes);
    Atomics.store(this.slots, UUID_LENGTH, written);
    Atomics.store(this.slots, IDENTIFIED_GPU, gpuIndex);
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
  private readonly uuidBytes: Uint8Array;

  constructor(buffer: SharedArrayBuffer, private readonly baseMs: number) {
    this.slots = new Int32Array(buffer, 0, SLOTS);
    this.uuidBytes = new Uint8Array(buffer, UUID_AT);
  }

  /** The UUID the worker last identified for this GPU index, or null (read while the worker is blocked in a call). */
  identity(gpuIndex: number): string | null {
    if (Atomics.load(this.slots, IDENTIFIED_GPU) !== gpuIndex) return null;
    const length = Atomics.load(this.slots, UUID_LENGTH);
    // Copied out of shared memory: TextDecoder does not read a SharedArrayBuffer view.
    return new TextDecoder().decode(this.uuidBytes.slice(0, length));
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
