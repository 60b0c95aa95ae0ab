/**
 * Wakes a worker thread that sleeps in `Atomics.wait` instead of its event loop.
 *
 * The NVML worker ticks 10 times a second. Sleeping through libuv costs an epoll wake-up plus a
 * turn of the event loop per tick, about twice what a futex wait costs (measured in
 * BENCHMARKS.md), so the worker runs a plain loop and sleeps on one word of shared memory. The
 * main thread still talks to it with `postMessage`; after each message it bumps the word, which
 * ends the worker's sleep so that it reads the message at once with `receiveMessageOnPort`.
 */

const GENERATION = 0;

/** One int32 of shared memory; pass it to the worker in workerData. */
export function createWakeBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
}

/** Main-thread side: call after every postMessage to the worker. */
export function wakeWorker(buffer: SharedArrayBuffer): void {
  const word = new Int32Array(buffer);
  Atomics.add(word, GENERATION, 1);
  Atomics.notify(word, GENERATION);
}

/** Worker side. */
export class WakeWaiter {
  private readonly word: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.word = new Int32Array(buffer);
  }

  /** Read before draining messages: a message posted after this read ends the next sleep at once. */
  generation(): number {
    return Atomics.load(this.word, GENERATION);
  }

  /**
   * Sleeps until `timeoutMs` have passed or the main thread has called `wakeWorker` since
   * `generation` was read. An infinite timeout sleeps until woken.
   */
  sleep(generation: number, timeoutMs: number): void {
    Atomics.wait(this.word, GENERATION, generation, Math.max(0, timeoutMs));
  }
}
