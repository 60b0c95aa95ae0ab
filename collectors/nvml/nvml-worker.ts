/**
 * The NVML sampling worker (a worker_threads thread). It owns the FFI binding: it loads the
 * library, initialises NVML, reports the inventory, then reads every GPU once per period and posts
 * the readings. It never decides about deadlines: the main thread watches its calls (call watch)
 * and terminates it when one hangs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { NvmlBinding } from './nvml-binding.js';
import { CallWatchWriter } from './nvml-call-watch.js';
import { NvmlDeviceReader } from './nvml-device-reader.js';
import { NvmlInitError } from './nvml-init-failure.js';
import type { MainToWorker, NvmlTick, NvmlWorkerData, WorkerToMain } from './nvml-worker-protocol.js';

if (!parentPort) throw new Error('nvml-worker.ts must run in a worker thread');
const port = parentPort;
const data = workerData as NvmlWorkerData;
const post = (message: WorkerToMain): void => port.postMessage(message);

function main(): void {
  let reader: NvmlDeviceReader;
  try {
    reader = new NvmlDeviceReader(new NvmlBinding(data.libraryPath), new CallWatchWriter(data.watchBuffer, data.watchBaseMs), data.lostRetryMs);
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

  let timer: NodeJS.Timeout | null = null;
  let pending: NvmlTick[] = [];
  let lastDelivery = Date.now();
  const deliver = (): void => {
    if (pending.length > 0) post({ type: 'ticks', ticks: pending });
    pending = [];
    lastDelivery = Date.now();
  };
  const stop = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  port.on('message', (message: MainToWorker) => {
    if (message.type === 'shutdown') {
      stop();
      deliver(); // nothing already read is lost at shutdown
      reader.close();
      post({ type: 'closed' });
      port.close();
      return;
    }
    stop();
    deliver();
    reader.skip(message.skipUuids);
    const period = message.periodMs;
    // Ticks sit on a fixed grid; a tick that overran skips the grid points it missed.
    let next = Date.now();
    const tick = (): void => {
      const read = reader.read();
      if (read.readings.length > 0 || read.problems.length > 0) pending.push(read);
      const now = Date.now();
      if (read.problems.length > 0 || now - lastDelivery >= message.deliveryIntervalMs) deliver();
      next += period;
      if (next <= now) next += Math.ceil((now - next + 1) / period) * period;
      timer = setTimeout(tick, next - now);
    };
    tick();
  });
}

main();
