/**
 * The NVML sampling worker (a worker_threads thread). It owns the FFI binding: it loads the
 * library, initialises NVML, reports the inventory, then reads every GPU once per period and posts
 * the readings in batches. It never decides about deadlines: the main thread watches its calls (call watch)
 * and terminates it when one hangs. Each reading is also written to the reading journal (shared
 * memory) as it is taken, so that the main thread recovers what this worker had not posted yet.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { NvmlBinding } from './nvml-binding.js';
import { CallWatchWriter } from './nvml-call-watch.js';
import { NvmlDeviceReader } from './nvml-device-reader.js';
import { NvmlInitError } from './nvml-init-failure.js';
import { ReadingJournalWriter } from './nvml-reading-journal.js';
import type { MainToWorker, NvmlTick, NvmlWorkerData, WorkerToMain } from './nvml-worker-protocol.js';
import { WakeWaiter } from './worker-wake.js';

if (!parentPort) throw new Error('nvml-worker.ts must run in a worker thread');
const port = parentPort;
const data = workerData as NvmlWorkerData;
const post = (message: WorkerToMain): void => port.postMessage(message);

function main(): void {
  let reader: NvmlDeviceReader;
  const journal = new ReadingJournalWriter(data.journalBuffer);
  try {
    reader = new NvmlDeviceReader(new NvmlBinding(data.libraryPath), new CallWatchWriter(data.watchBuffer, data.watchBaseMs), data.lostRetryMs, Date.now, {
      journal,
      setAside: data.setAside,
      leftOut: data.leftOut,
    });
  } catch (error) {
    const failure = error instanceof NvmlInitError
      ? error.toFailure()
      : { reason: 'init_failed' as const, code: null, message: String(error), fix: 'report this as a tokenwatt bug' };
    post({ type: 'init_failed', failure });
    port.close();
    return;
  }
  const started = reader.start();
  if (!started.ok) {
    post({ type: 'init_failed', failure: started.failure });
    port.close();
    return;
  }
  post({ type: 'ready', inventory: started.inventory });

  // A plain loop that sleeps in Atomics.wait (see worker-wake.ts): the event loop never runs again,
  // so messages from the main thread are read with receiveMessageOnPort when it wakes us.
  const wake = new WakeWaiter(data.wakeBuffer);
  let pending: NvmlTick[] = [];
  let lastDelivery = Date.now();
  // Readings not posted yet stay within half the journal, so a terminated worker's are all still there.
  const journalLimit = journal.capacity >> 1;
  let postedSeq = journal.head;
  const deliver = (): void => {
    if (pending.length > 0) post({ type: 'ticks', ticks: pending, endSeq: journal.head });
    pending = [];
    postedSeq = journal.head;
    lastDelivery = Date.now();
  };
  let schedule: { periodMs: number; deliveryIntervalMs: number; nextMs: number } | null = null;
  for (;;) {
    const generation = wake.generation();
    for (let received = receiveMessageOnPort(port); received; received = receiveMessageOnPort(port)) {
      const message = received.message as MainToWorker;
      if (message.type === 'shutdown') {
        deliver(); // nothing already read is lost at shutdown
        reader.close();
        post({ type: 'closed' });
        port.close();
        return;
      }
      deliver();
      reader.skip(message.skipUuids);
      schedule = { periodMs: message.periodMs, deliveryIntervalMs: message.deliveryIntervalMs, nextMs: Date.now() };
    }
    if (!schedule) {
      wake.sleep(generation, Infinity);
      continue;
    }
    let now = Date.now();
    if (now >= schedule.nextMs) {
      const read = reader.read();
      if (read.readings.length > 0 || read.problems.length > 0) pending.push(read);
      now = Date.now();
      if (read.problems.length > 0 || now - lastDelivery >= schedule.deliveryIntervalMs || ((journal.head - postedSeq) | 0) > journalLimit) deliver();
      // Ticks sit on a fixed grid; a tick that overran skips the grid points it missed.
      const period = schedule.periodMs;
      schedule.nextMs += period;
      if (schedule.nextMs <= now) schedule.nextMs += Math.ceil((now - schedule.nextMs + 1) / period) * period;
    }
    wake.sleep(generation, schedule.nextMs - now);
  }
}

main();
