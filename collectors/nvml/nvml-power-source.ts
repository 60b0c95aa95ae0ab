import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { classifyCounterReading, COUNTER_GLITCH_SHARE, judgeCounterReading, MAX_PLAUSIBLE_POWER_W, nextCounterHighWater, type CounterHighWater } from '../../model/energy-timeline.js';
import { epochMs, joules, watts } from '../../model/units.js';
import type { PowerSource, PowerSourceError, PowerSourceQuality, UnidentifiedGpu, UnsampledGpu } from '../power-source.js';
import { DEFAULT_NVML_LIBRARY } from './nvml-binding.js';
import { CallWatchReader, createCallWatchBuffer, type CallInFlight } from './nvml-call-watch.js';
import { createReadingJournal, ReadingJournalReader } from './nvml-reading-journal.js';
import { createWakeBuffer, wakeWorker } from './worker-wake.js';
import { architectureName } from './nvml-constants.js';
import { describeInitTimeout, NvmlInitError, type NvmlInitFailure } from './nvml-init-failure.js';
import {
  isUnidentifiedGpuKey, unidentifiedGpuKey,
  type MainToWorker, type NvmlDeviceDescription, type NvmlInventory, type NvmlProblem, type NvmlReading, type NvmlUnusableGpu, type NvmlWorkerData, type WorkerToMain,
} from './nvml-worker-protocol.js';
import { markBlocked, unmarkBlocked } from './blocked-calls.js';
import { startModuleWorker } from './module-worker.js';
import { powerUsageIsAveraged } from './power-averaging.js';
import { ProblemThrottle } from '../problem-throttle.js';
import { RestartBackoff } from '../restart-backoff.js';

export interface NvmlPowerSourceOptions {
  /** libnvidia-ml path; default TOKENWATT_NVML_LIBRARY, else "libnvidia-ml.so.1" via the loader. */
  readonly libraryPath?: string;
  readonly samplePeriodMs: number;
  /** Deadline of every NVML call; past it the worker is declared hung, terminated and restarted. */
  readonly callTimeoutMs: number;
  /** Deadline of nvmlInit_v2 itself, which is slow without persistence mode. Default max(10 s, callTimeoutMs). */
  readonly initTimeoutMs?: number;
  /** How often a lost GPU is probed again. Default 10 s. */
  readonly lostRetryMs?: number;
  /** Back-off between worker restarts. Default 500 ms doubling to 30 s. */
  readonly restartBackoffMs?: { readonly initial: number; readonly max: number };
  /**
   * Samples reach onSamples (still one call per tick) at most this late: the worker posts its
   * ticks together, which saves thread wake-ups. Problems are posted at once. Default 1000 ms.
   */
  readonly deliveryIntervalMs?: number;
  /** Terminated workers whose thread is still blocked in the driver, before restarts pause. Default 3. */
  readonly maxStuckWorkers?: number;
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

type Phase = 'idle' | 'initialising' | 'ready' | 'running' | 'stopped';

interface WorkerRun {
  readonly worker: Worker;
  readonly watch: CallWatchReader;
  /** What the worker read, in shared memory: what it had not posted is recovered when it is retired. */
  readonly journal: ReadingJournalReader;
  /** Journal position after the last reading received (or recovered) from this worker. */
  receivedSeq: number;
  /** Posts to the worker and wakes it (it sleeps in Atomics.wait, not in its event loop). */
  readonly send: (message: MainToWorker) => void;
  /** Settles the start-up of this worker. */
  readonly started: Promise<NvmlInventory>;
  /** Fails `started` (no-op once settled). */
  readonly failStart: (failure: NvmlInitFailure) => void;
  ready: boolean;
  /**
   * The worker has ended its work by itself (said `closed` or `init_failed`, or exited): it is not
   * blocked in the driver, so retiring it does not count as a stuck call.
   */
  finished: boolean;
  /** Asked to close so that a new worker initialises NVML afresh (nvmlShutdown here, nvmlInit there). */
  reinit: boolean;
  /** UUIDs of the GPUs this worker was told not to open at its start (workerData.setAside). */
  readonly setAside: ReadonlySet<string>;
}

/** A GPU a call hung on while the first worker opened it. */
interface StartUpHang {
  readonly index: number;
  /** Null when the call hung before NVML gave the UUID: it is set aside by its index, then identified once opened. */
  readonly uuid: string | null;
  /** The call and the GPU, e.g. "nvmlDeviceGetFieldValues on GPU 1 (GPU-...)". */
  readonly what: string;
  readonly message: string;
}

/** Time in which a problem repeating every tick is reported once. */
const PROBLEM_WINDOW_MS = 60_000;

/**
 * GPU power and energy from NVML, read by a worker thread through koffi. Energy comes from the
 * cumulative counter (nvmlDeviceGetTotalEnergyConsumption, mJ), power from
 * NVML_FI_DEV_POWER_INSTANT or, failing that, nvmlDeviceGetPowerUsage (labelled averaged where it
 * is a 1 s average). Every NVML call has a deadline enforced here, on the main thread: a hung call
 * gets the worker terminated and restarted with back-off, and the GPU it hung on is set aside for
 * a while so the others keep sampling: the restarted worker does not call into it at all (not even
 * to open it) until its time is up and no thread is still blocked in a call on it. Readings the
 * terminated worker had taken but not posted yet are recovered from shared memory (the reading
 * journal). A lost GPU is reported and simply stops producing samples; the energy model flags the
 * gap. A GPU that cannot be opened when a worker (re)starts is reported too, and tried again
 * every lostRetryMs. A call that hangs while the first worker opens a GPU does not fail init():
 * NVML is started again without that GPU, which is set aside as mid-run and listed as not usable
 * until a worker opens it.
 */
export class NvmlPowerSource implements PowerSource {
  /** The driver's counter: it runs on across agent restarts. */
  readonly counterRestartsWithProcess = false;
  private readonly libraryPath: string;
  private readonly initTimeoutMs: number;
  private readonly lostRetryMs: number;
  private readonly maxStuckWorkers: number;
  private readonly backoff: RestartBackoff;
  private readonly throttle = new ProblemThrottle(PROBLEM_WINDOW_MS);
  private phase: Phase = 'idle';
  private run: WorkerRun | null = null;
  /** The worker being shut down: its last ticks are still taken. */
  private draining: WorkerRun | null = null;
  private readonly stuck = new Set<Worker>();
  /** Terminated workers still blocked in a call on a GPU, by that GPU's UUID: it stays set aside until the call returns. */
  private readonly stuckOn = new Map<Worker, string>();
  /** GPUs known at start-up that a restarted worker could not open, already reported. */
  private readonly unopenedReported = new Set<string>();
  private inventory: NvmlInventory | null = null;
  private gpus: GpuInfo[] = [];
  /** Highest energy counter reading per GPU since its last reset (the timeline's high-water mark). */
  private readonly counterHighWater = new Map<string, CounterHighWater>();
  /** A drop below the mark waiting for the next reading to say whether it was a reset or a glitch. */
  private readonly pendingDrop = new Map<string, { highWater: CounterHighWater; energyJ: number; atMs: number }>();
  private readonly lostGpus = new Set<string>();
  /** GPUs for which NVML was initialised again and that have not sampled since: not again for them. */
  private readonly reinitTried = new Set<string>();
  private readonly quarantine = new Map<string, { untilMs: number; backoffMs: number }>();
  /** GPUs a call hung on while the first worker opened them, by index, until a worker opens them. */
  private readonly hungAtStart = new Map<number, StartUpHang>();
  private watchdog: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private stalledReported = false;
  private onSamples: ((samples: readonly PowerSample[]) => void) | null = null;
  private onError: ((error: PowerSourceError) => void) | null = null;
  private onGpu: ((gpu: GpuInfo) => void) | null = null;

  constructor(private readonly options: NvmlPowerSourceOptions) {
    if (!(options.samplePeriodMs > 0)) throw new RangeError(`samplePeriodMs must be > 0, got ${options.samplePeriodMs}`);
    if (!(options.callTimeoutMs > 0)) throw new RangeError(`callTimeoutMs must be > 0, got ${options.callTimeoutMs}`);
    this.libraryPath = options.libraryPath ?? (process.env.TOKENWATT_NVML_LIBRARY || DEFAULT_NVML_LIBRARY);
    this.initTimeoutMs = options.initTimeoutMs ?? Math.max(10_000, options.callTimeoutMs);
    this.lostRetryMs = options.lostRetryMs ?? 10_000;
    this.maxStuckWorkers = options.maxStuckWorkers ?? 3;
    this.backoff = new RestartBackoff(options.restartBackoffMs?.initial ?? 500, options.restartBackoffMs?.max ?? 30_000);
  }

  /** Idempotent once it succeeded: a source handed over initialised (selectPowerSource) may be init()ed again. */
  async init(): Promise<readonly GpuInfo[]> {
    if (this.phase === 'ready' || this.phase === 'running') return this.gpus;
    if (this.phase !== 'idle') throw new Error(`NvmlPowerSource.init() cannot run in state ${this.phase}`);
    this.phase = 'initialising';
    let run = this.startWorker();
    this.run = run;
    this.startWatchdog();
    try {
      let inventory: NvmlInventory;
      for (;;) {
        try {
          inventory = await run.started;
          break;
        } catch (error) {
          // hung() replaced a worker whose call hung on a GPU it opened by one that leaves it out.
          if (this.run !== run && this.run) {
            run = this.run;
            continue;
          }
          // No GPU left to sample once those are left out: a start-up timeout, as before any was.
          const noneLeft = this.hungAtStart.size > 0 && error instanceof NvmlInitError && error.reason === 'no_gpus';
          throw noneLeft ? this.noGpuAnswered(error.detail) : error;
        }
      }
      this.adopt(run, inventory);
      if (this.inventory?.devices.length === 0) throw this.noGpuAnswered();
      this.phase = 'ready';
      return this.gpus;
    } catch (error) {
      this.phase = 'stopped';
      this.stopTimers();
      if (this.run) {
        // Ready with no GPU opened: it waits for `start`, in no driver call, so it is not stuck.
        if (this.run.ready) this.run.finished = true;
        this.retire(this.run);
      }
      this.run = null;
      throw error;
    }
  }

  /** GPUs a call hung on at start-up before NVML gave their UUID, until they are opened (identified). */
  unidentifiedGpus(): readonly UnidentifiedGpu[] {
    return [...this.hungAtStart.values()].filter((h) => h.uuid === null).map((h) => ({ index: h.index, reason: `${h.what} hung at start-up` })).sort((a, b) => a.index - b.index);
  }

  /**
   * GPUs NVML counts that are neither sampled nor among the GPUs (a GPU set aside after a hang is
   * one of them, a gap) nor unidentified: unmeasurable ones, and ones that could not be opened.
   */
  unsampledGpus(): readonly UnsampledGpu[] {
    const unidentified = new Set(this.unidentifiedGpus().map((u) => u.index));
    return (this.inventory?.unusable ?? [])
      .filter((u) => !unidentified.has(u.index) && !this.gpus.some((g) => g.index === u.index || g.uuid === u.uuid))
      .map((u) => ({ index: u.index, ...(u.uuid === undefined ? {} : { uuid: u.uuid }), reason: u.message, retried: u.unmeasurable !== true }));
  }

  start(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void, onGpu?: (gpu: GpuInfo) => void): void {
    if (this.phase !== 'ready') throw new Error(`NvmlPowerSource.start() needs a successful init() first (state ${this.phase})`);
    this.onSamples = onSamples;
    this.onError = onError;
    this.onGpu = onGpu ?? null;
    this.phase = 'running';
    if (this.run) this.sendStart(this.run);
    // Said now that someone listens (the sample-error metric, readiness); adopt() logged them.
    for (const h of this.hungAtStart.values()) {
      this.safely(() => onError({ reason: 'timeout', ...(h.uuid === null ? {} : { gpuUuid: h.uuid }), message: h.message }));
    }
  }

  async shutdown(): Promise<void> {
    if (this.phase === 'stopped' && !this.run) return;
    this.phase = 'stopped';
    this.stopTimers();
    const run = this.run;
    this.run = null;
    if (!run) return;
    this.draining = run;
    const closed = new Promise<void>((resolve) => {
      if (run.finished) resolve();
      run.worker.on('message', (m: WorkerToMain) => { if (m.type === 'closed') resolve(); });
      run.worker.once('exit', () => resolve());
    });
    run.worker.ref(); // keep the process up until the worker has said goodbye (or the deadline passed)
    run.send({ type: 'shutdown' });
    await raceTimeout(closed, Math.max(1000, this.options.callTimeoutMs));
    // Takes from the journal what a worker that never said goodbye had read. Only such a worker
    // (still blocked in a driver call past the deadline) counts as stuck: one that said `closed`
    // is on its way out, and counting it sent the agent to exit with SIGKILL after a clean stop.
    this.retire(run);
    this.draining = null;
  }

  quality(): PowerSourceQuality {
    const devices = this.inventory?.devices ?? [];
    return {
      kind: 'nvml',
      energyCounter: devices.length > 0 && devices.every((d) => d.energyCounter),
      powerAveraged: devices.some((d) => d.powerAveraged),
      simulated: false,
      samplePeriodMs: this.options.samplePeriodMs,
      notes: this.notes(devices),
    };
  }

  /** What NVML reported per GPU at start-up (power method, energy counter, MIG), for `doctor`. */
  devices(): readonly NvmlDeviceDescription[] {
    return this.inventory?.devices ?? [];
  }

  /** GPUs NVML counts but that are not sampled (could not be opened, or give neither power nor energy), for `doctor`. */
  unusableGpus(): readonly NvmlUnusableGpu[] {
    return this.inventory?.unusable ?? [];
  }

  driverVersion(): string | null {
    return this.inventory?.driverVersion ?? null;
  }

  /** Terminated workers whose thread is still blocked inside a driver call. */
  stuckCalls(): number {
    return this.stuck.size;
  }

  // ---- worker lifecycle -------------------------------------------------------------------

  private startWorker(): WorkerRun {
    const buffer = createCallWatchBuffer();
    const baseMs = Date.now();
    const wakeBuffer = createWakeBuffer();
    const journalBuffer = createReadingJournal();
    const setAside = this.setAsideDevices();
    const workerData: NvmlWorkerData = {
      libraryPath: this.libraryPath,
      watchBuffer: buffer,
      watchBaseMs: baseMs,
      wakeBuffer,
      lostRetryMs: this.lostRetryMs,
      journalBuffer,
      setAside,
      leftOut: [...this.hungAtStart.values()].filter((h) => h.uuid === null).map((h) => ({ index: h.index, message: h.message, lost: false })),
    };
    const worker = startModuleWorker(new URL('./nvml-worker.js', import.meta.url), { workerData });
    let settle: { resolve: (inventory: NvmlInventory) => void; reject: (error: Error) => void } | null = null;
    const started = new Promise<NvmlInventory>((resolve, reject) => { settle = { resolve, reject }; });
    started.catch(() => undefined); // a restart's failure is handled below, not as an unhandled rejection
    const fail = (failure: NvmlInitFailure): void => {
      settle?.reject(new NvmlInitError(failure));
      settle = null;
    };
    const run: WorkerRun = {
      worker,
      watch: new CallWatchReader(buffer, baseMs),
      journal: new ReadingJournalReader(journalBuffer),
      receivedSeq: 0,
      send: (message) => { worker.postMessage(message); wakeWorker(wakeBuffer); },
      started,
      failStart: fail,
      ready: false,
      finished: false,
      reinit: false,
      setAside: new Set(setAside.map((d) => d.uuid)),
    };
    worker.on('message', (message: WorkerToMain) => {
      if (message.type === 'closed' || message.type === 'init_failed') run.finished = true;
      if (this.draining === run && message.type === 'ticks') {
        run.receivedSeq = message.endSeq;
        for (const tick of message.ticks) this.receive(tick.readings, tick.problems);
        return;
      }
      if (this.run !== run) return; // a retired worker's late words
      switch (message.type) {
        case 'ready':
          run.ready = true;
          worker.unref();
          settle?.resolve(message.inventory);
          settle = null;
          break;
        case 'init_failed':
          fail(message.failure);
          break;
        case 'ticks':
          run.receivedSeq = message.endSeq;
          for (const tick of message.ticks) this.receive(tick.readings, tick.problems);
          break;
        case 'closed':
          if (run.reinit && this.phase === 'running') {
            // It called nvmlShutdown: the next worker's nvmlInit enumerates the GPUs afresh.
            this.retire(run);
            this.run = null;
            this.scheduleRestart();
          }
          break;
      }
    });
    worker.on('error', (error) => {
      if (this.run !== run) return;
      fail({ reason: 'init_failed', code: null, message: `NVML worker failed: ${error.message}`, fix: 'report this as a tokenwatt bug' });
      if (run.ready) this.workerDied(run, `NVML worker failed: ${error.message}`);
    });
    worker.on('exit', (code) => {
      run.finished = true;
      unmarkBlocked(worker);
      this.stuck.delete(worker);
      this.stuckOn.delete(worker);
      if (this.run !== run) {
        if (this.phase === 'running' && !this.run && !this.restartTimer) this.scheduleRestart();
        return;
      }
      fail({ reason: 'init_failed', code: null, message: `NVML worker exited (code ${code}) before it was ready`, fix: 'see the errors logged before this one' });
      if (run.ready) this.workerDied(run, `NVML worker exited unexpectedly (code ${code})`);
    });
    if (this.phase === 'running') {
      run.started.then(
        (inventory) => this.restarted(run, inventory),
        (error: unknown) => {
          if (this.run !== run) return;
          const failure = error instanceof NvmlInitError ? error.toFailure() : null;
          this.report({ reason: failure?.reason === 'timeout' ? 'timeout' : 'init_failed', message: `NVML restart failed: ${error instanceof Error ? error.message : String(error)}` });
          this.retire(run);
          this.run = null;
          this.scheduleRestart();
        },
      );
    }
    return run;
  }

  private restarted(run: WorkerRun, inventory: NvmlInventory): void {
    if (this.run !== run || this.phase !== 'running') return;
    for (const device of inventory.devices) {
      if (run.setAside.has(device.uuid)) continue; // a stand-in: not opened by this worker
      const hung = this.hungAtStart.get(device.index);
      if (hung?.uuid === device.uuid) {
        this.identified(device.index);
        this.learn(device, 'opened by the restarted NVML worker after a call on it hung at start-up');
      } else {
        this.learn(device, 'found by the restarted NVML worker, not among the GPUs taken at start-up');
      }
    }
    const presented = this.present(run, inventory);
    this.inventory = { ...presented, devices: mergeDevices(this.inventory?.devices ?? [], presented.devices) };
    this.options.log?.info({ gpus: inventory.devices.length }, 'NVML worker restarted');
    for (const device of inventory.devices) {
      // A GPU lost before opened again by the new worker (e.g. after NVML was initialised again).
      if (!this.lostGpus.delete(device.uuid)) continue;
      this.counterHighWater.delete(device.uuid); // the counter may have restarted while it was away
      this.pendingDrop.delete(device.uuid);
      this.throttle.clear(`${device.uuid}:gpu_lost`);
      this.options.log?.info({ uuid: device.uuid }, `GPU ${device.index} (${device.uuid}) was opened again by the restarted NVML worker after being lost`);
    }
    for (const u of inventory.unusable) this.unopenedAtRestart(u.index, u.message, u.lost);
    this.sendStart(run);
  }

  /** A GPU known at start-up that the restarted worker could not open: reported once (the worker tries again). */
  private unopenedAtRestart(index: number, message: string, lost: boolean): void {
    const gpu = this.gpus.find((g) => g.index === index);
    if (!gpu) {
      this.options.log?.warn({ index }, `GPU ${index} is not usable through NVML: ${message}`);
      return;
    }
    if (this.unopenedReported.has(gpu.uuid) || this.lostGpus.has(gpu.uuid)) return; // said already
    this.unopenedReported.add(gpu.uuid);
    if (lost) this.lostGpus.add(gpu.uuid);
    this.report({
      reason: lost ? 'gpu_lost' : 'gpu_unusable',
      gpuUuid: gpu.uuid,
      message: `GPU ${index} (${gpu.uuid}) could not be opened when the NVML worker restarted (${message}); its energy is a gap until it can be opened again (tried every ${this.lostRetryMs} ms)`,
    });
  }

  /** Set aside (left out of sampling): its time is not up, or a thread is still blocked in a call on it. */
  private isSetAside(uuid: string, untilMs: number, now: number): boolean {
    if (untilMs === 0) return false;
    if (untilMs > now) return true;
    for (const on of this.stuckOn.values()) if (on === uuid) return true;
    return false;
  }

  /** Descriptions of the GPUs set aside now, for a new worker not to open them. */
  private setAsideDevices(): NvmlDeviceDescription[] {
    const now = Date.now();
    const devices: NvmlDeviceDescription[] = [];
    for (const [uuid, q] of this.quarantine) {
      if (!this.isSetAside(uuid, q.untilMs, now)) continue;
      const device = this.inventory?.devices.find((d) => d.uuid === uuid) ?? this.standInFor(uuid);
      if (device) devices.push(device);
    }
    return devices;
  }

  private sendStart(run: WorkerRun): void {
    const now = Date.now();
    const skipUuids = [...this.quarantine].filter(([uuid, q]) => this.isSetAside(uuid, q.untilMs, now)).map(([uuid]) => uuid);
    run.send({
      type: 'start',
      periodMs: this.options.samplePeriodMs,
      deliveryIntervalMs: this.options.deliveryIntervalMs ?? 1000,
      skipUuids,
    });
  }

  private workerDied(run: WorkerRun, message: string): void {
    if (this.run !== run || this.phase !== 'running') return;
    this.report({ reason: 'worker_error', message: `${message}; restarting it` });
    this.retire(run);
    this.run = null;
    this.scheduleRestart();
  }

  /**
   * Terminate a worker without waiting: a thread blocked in the driver does not stop until the
   * call returns. What it had read but not posted is taken from its journal first. It counts as
   * stuck until it exits, unless it had already finished by itself (then nothing blocks it).
   */
  private retire(run: WorkerRun): void {
    this.recover(run);
    if (!run.finished) {
      this.stuck.add(run.worker);
      markBlocked(run.worker);
    }
    run.worker.unref();
    const gone = (): void => {
      unmarkBlocked(run.worker);
      this.stuck.delete(run.worker);
      this.stuckOn.delete(run.worker);
    };
    run.worker.terminate().then(gone, gone);
  }

  /**
   * The readings a worker took after the last batch it posted (or whose batch is still in flight:
   * a retired worker's messages are ignored), from its journal. None is lost unless the main
   * thread fell more than the journal's capacity behind; those are counted and reported.
   */
  private recover(run: WorkerRun): void {
    const { readings, overwritten, head } = run.journal.since(run.receivedSeq);
    run.receivedSeq = head;
    const recovered: NvmlReading[] = [];
    let unknown = 0;
    for (const r of readings) {
      const device = this.describedGpu(r.index);
      if (device) recovered.push({ ...r, uuid: device.uuid });
      else unknown++;
    }
    if (recovered.length > 0) this.receive(recovered, [], false);
    const lost = overwritten + unknown;
    if (lost > 0) {
      this.report({
        reason: 'readings_lost',
        message: `${lost} NVML reading(s) taken by the retired worker could not be recovered (${overwritten > 0 ? `the agent fell more than ${run.journal.capacity} readings behind` : 'GPU not in the inventory'}); their energy is estimated across the gap`,
      });
    }
  }

  private scheduleRestart(): void {
    if (this.phase !== 'running' || this.restartTimer || this.run) return;
    if (this.stuck.size >= this.maxStuckWorkers) {
      if (!this.stalledReported) {
        this.stalledReported = true;
        this.report({ reason: 'stalled', message: `${this.stuck.size} NVML calls are still blocked in the driver; no new sampling worker until one returns (GPU energy is a gap meanwhile)` });
      }
      return; // the 'exit' of a stuck worker calls us again
    }
    const delay = this.backoff.next();
    this.options.log?.warn({ delayMs: delay, attempt: this.backoff.consecutiveFailures }, 'restarting the NVML worker');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.phase !== 'running' || this.run) return;
      this.stalledReported = false;
      this.run = this.startWorker();
    }, delay);
    this.restartTimer.unref();
  }

  // ---- deadlines ----------------------------------------------------------------------------

  private startWatchdog(): void {
    // A quarter of the deadline: a hang is caught within 1.25x the deadline, with few main-thread wake-ups.
    const every = Math.max(5, Math.min(1000, this.options.callTimeoutMs / 4));
    this.watchdog = setInterval(() => this.checkDeadlines(), every);
    this.watchdog.unref();
  }

  private checkDeadlines(): void {
    const run = this.run;
    if (run) {
      const call = run.watch.current(Date.now());
      const limit = call?.call === 'nvmlInit_v2' ? this.initTimeoutMs : this.options.callTimeoutMs;
      if (call && call.elapsedMs > limit) this.hung(run, call, limit);
    }
    this.releaseQuarantine();
  }

  private hung(run: WorkerRun, call: CallInFlight, limitMs: number): void {
    if (!run.ready && this.phase === 'initialising' && call.gpuIndex !== null) {
      this.hungAtStartUp(run, call.call, call.gpuIndex, limitMs);
      return;
    }
    const device = call.gpuIndex === null ? undefined : this.describedGpu(call.gpuIndex);
    const where = call.gpuIndex === null ? '' : ` on GPU ${call.gpuIndex}${device ? ` (${device.uuid})` : ''}`;
    // One hung at start-up before NVML gave its UUID, hanging again as a worker opens it: set aside
    // by its index again (longer), or every new worker would call into it and hang too.
    const unidentified = call.gpuIndex !== null && !device && this.hungAtStart.get(call.gpuIndex)?.uuid === null;
    const asideKey = device ? device.uuid : unidentified && call.gpuIndex !== null ? unidentifiedGpuKey(call.gpuIndex) : null;
    // Set the GPU aside, also when a restarted worker hung opening it (at init(): hungAtStartUp).
    if (asideKey !== null && (run.ready || this.phase === 'running')) this.setGpuAside(run, asideKey);
    if (!run.ready) {
      // Start-up: init() or the restart logic sees the failure through `started` and retires the worker.
      run.failStart(describeInitTimeout(`${call.call}${where}`, limitMs));
      return;
    }
    this.retire(run);
    this.run = null;
    this.report({
      reason: 'timeout',
      ...(device ? { gpuUuid: device.uuid } : {}),
      message: `${call.call}${where} did not return within ${limitMs} ms; the NVML worker was terminated and is being restarted` +
        (asideKey !== null ? `, GPU ${call.gpuIndex} is left out for a while so the others keep sampling` : ''),
    });
    this.scheduleRestart();
  }

  /** Leave the GPU out of sampling for a while (longer after each hang), and while the call is blocked. */
  private setGpuAside(run: WorkerRun, uuid: string): void {
    const previous = this.quarantine.get(uuid);
    const backoffMs = Math.min(300_000, previous ? previous.backoffMs * 2 : Math.max(1000, this.options.samplePeriodMs * 10));
    this.quarantine.set(uuid, { untilMs: Date.now() + backoffMs, backoffMs });
    this.stuckOn.set(run.worker, uuid);
  }

  /**
   * A call hung while the first worker opened a GPU: the GPU is set aside as mid-run (by the UUID
   * the worker had read, from the call watch) and a new worker starts NVML without it; init()
   * waits for that one. A GPU whose UUID NVML had not given yet is set aside by its index; once
   * opened it is identified and becomes one of the source's GPUs (onGpu).
   */
  private hungAtStartUp(run: WorkerRun, call: string, index: number, limitMs: number): void {
    const uuid = run.watch.identity(index);
    const what = `${call} on GPU ${index}${uuid === null ? '' : ` (${uuid})`}`;
    const message = uuid === null
      ? `${what} did not return within ${limitMs} ms at start-up, before NVML gave the GPU's UUID; GPU ${index} is left out (not sampled) and opened, to learn which GPU it is, once that call has returned and its time set aside is up`
      : `${what} did not return within ${limitMs} ms at start-up; GPU ${index} is left out (its energy is a gap) and opened again once that call has returned and its time set aside is up`;
    this.hungAtStart.set(index, { index, uuid, what, message });
    this.setGpuAside(run, uuid ?? unidentifiedGpuKey(index));
    this.retire(run);
    this.run = this.startWorker();
    run.failStart(describeInitTimeout(what, limitMs));
  }

  /** Every GPU hung at start-up (or the rest were not usable): init() fails as a timeout, naming the calls. */
  private noGpuAnswered(detail?: string): NvmlInitError {
    const failure = describeInitTimeout([...this.hungAtStart.values()].map((h) => h.what).join(', '), this.options.callTimeoutMs);
    return new NvmlInitError(detail ? { ...failure, message: `${failure.message} ${detail}` } : failure);
  }

  /** What is known of the GPU at this index: its description, or a stand-in for one set aside at start-up. */
  private describedGpu(index: number): NvmlDeviceDescription | undefined {
    const device = this.inventory?.devices.find((d) => d.index === index);
    if (device) return device;
    const uuid = this.hungAtStart.get(index)?.uuid;
    return uuid ? standIn(index, uuid) : undefined;
  }

  private standInFor(uuid: string): NvmlDeviceDescription | undefined {
    for (const h of this.hungAtStart.values()) if (h.uuid === uuid) return standIn(h.index, uuid);
    return undefined;
  }

  /**
   * A worker's inventory as this source reports it: the stand-ins of GPUs set aside since
   * start-up (described so to the worker) are listed as not usable, with why, not as devices.
   */
  private present(run: WorkerRun, inventory: NvmlInventory): NvmlInventory {
    const devices: NvmlDeviceDescription[] = [];
    const unusable = [...inventory.unusable];
    for (const d of inventory.devices) {
      const hung = this.hungAtStart.get(d.index);
      if (hung?.uuid === d.uuid && run.setAside.has(d.uuid)) unusable.push({ index: d.index, uuid: d.uuid, message: hung.message, lost: false });
      else devices.push(d);
    }
    return { ...inventory, devices, unusable: unusable.sort((a, b) => a.index - b.index) };
  }

  private releaseQuarantine(): void {
    if (this.quarantine.size === 0 || this.phase !== 'running') return;
    const now = Date.now();
    let released = false;
    for (const [uuid, q] of this.quarantine) {
      if (q.untilMs > 0 && !this.isSetAside(uuid, q.untilMs, now)) {
        q.untilMs = 0; // keep the back-off for the next hang of this GPU
        released = true;
      }
    }
    if (released && this.run?.ready) this.sendStart(this.run);
  }

  // ---- samples ------------------------------------------------------------------------------

  /** `live`: from a running worker's batch (resets the restart back-off), not recovered from a journal. */
  private receive(readings: readonly NvmlReading[], problems: readonly NvmlProblem[], live = true): void {
    if (this.phase !== 'running' && !this.draining) return;
    const samples: PowerSample[] = [];
    for (const r of readings) {
      const energyJ = r.energyMj === null ? null : r.energyMj / 1000;
      if (energyJ !== null) this.checkCounter(r, energyJ);
      samples.push({
        timestampMs: epochMs(r.timestampMs),
        gpuUuid: r.uuid,
        gpuIndex: r.index,
        powerW: r.powerMw === null ? null : watts(r.powerMw / 1000),
        energyJ: energyJ === null ? null : joules(energyJ),
        powerAveraged: r.powerAveraged,
      });
    }
    if (samples.length > 0) {
      if (live) this.backoff.reset();
      if (this.reinitTried.size > 0) for (const r of readings) this.reinitTried.delete(r.uuid);
      this.safely(() => this.onSamples?.(samples));
    }
    for (const p of problems) this.problem(p);
  }

  /**
   * Report a counter that went backwards or leapt, judged as the energy timeline judges it (against
   * the highest reading so far): a reset, or a glitch that the attribution reads as the highest
   * reading. A drop is judged once the next reading shows whether the counter climbed straight back
   * (judgeCounterReading). Glitches go through the throttle, so a jittery counter does not log a
   * warning per sample.
   */
  private checkCounter(r: NvmlReading, energyJ: number): void {
    const pending = this.pendingDrop.get(r.uuid);
    if (pending) {
      this.pendingDrop.delete(r.uuid);
      this.judgeDrop(r, pending, { energyJ, atMs: r.timestampMs });
    }
    const highWater = this.counterHighWater.get(r.uuid) ?? null;
    const kind = classifyCounterReading(highWater, energyJ, r.timestampMs);
    if (kind === 'reset') {
      this.pendingDrop.set(r.uuid, { highWater: highWater as CounterHighWater, energyJ, atMs: r.timestampMs });
      return;
    }
    if (kind === 'glitch') {
      this.reportGlitch(r, energyJ, highWater as CounterHighWater);
      return;
    }
    this.counterHighWater.set(r.uuid, nextCounterHighWater(highWater, energyJ, r.timestampMs) as CounterHighWater);
  }

  private judgeDrop(r: NvmlReading, drop: { highWater: CounterHighWater; energyJ: number; atMs: number }, next: { energyJ: number; atMs: number }): void {
    if (judgeCounterReading(drop.highWater, drop.energyJ, drop.atMs, next) === 'glitch') {
      this.reportGlitch(r, drop.energyJ, drop.highWater);
      return;
    }
    this.counterHighWater.set(r.uuid, { energyJ: drop.energyJ, atMs: drop.atMs });
    this.report({ reason: 'counter_reset', gpuUuid: r.uuid, message: `energy counter of GPU ${r.index} (${r.uuid}) went backwards from ${drop.highWater.energyJ.toFixed(3)} J to ${drop.energyJ.toFixed(3)} J (driver reload or reset); that interval falls back to power integration` });
  }

  private reportGlitch(r: NvmlReading, energyJ: number, mark: CounterHighWater): void {
    const how = energyJ < mark.energyJ
      ? energyJ >= mark.energyJ * (1 - COUNTER_GLITCH_SHARE)
        ? `below its highest reading ${mark.energyJ.toFixed(3)} J by at most ${COUNTER_GLITCH_SHARE * 100}%`
        : `below its highest reading ${mark.energyJ.toFixed(3)} J, and the next reading climbed straight back`
      : `above its highest reading ${mark.energyJ.toFixed(3)} J by more than ${MAX_PLAUSIBLE_POWER_W} W could draw since`;
    this.throttledReport('counter_glitch', r.uuid, `energy counter of GPU ${r.index} (${r.uuid}) read ${energyJ.toFixed(3)} J, ${how}: taken as a glitch, it is read as the highest reading (the intervals beside it are flagged estimated)`);
  }

  private throttledReport(reason: string, gpuUuid: string, text: string): void {
    const message = this.throttle.admit(`${gpuUuid}:${reason}`, text, Date.now());
    if (message !== null) this.report({ reason, gpuUuid, message });
  }

  private problem(p: NvmlProblem): void {
    if (p.reason === 'gpu_opened') {
      this.opened(p);
      return;
    }
    if (p.reason === 'gpu_unmeasurable') {
      this.unmeasurable(p);
      return;
    }
    if (p.reason === 'gpu_described') {
      const device = p.device;
      if (!device) return;
      if (this.inventory) this.inventory = { ...this.inventory, devices: this.inventory.devices.map((d) => (d.uuid === device.uuid ? device : d)) };
      // Told as a new description: records naming its new MIG devices are taken from now on.
      this.learn(device, 'its MIG devices changed (NVML reads them again every 10 s)');
      return;
    }
    if (p.reason === 'gpu_recovered') {
      this.lostGpus.delete(p.uuid);
      this.throttle.clear(`${p.uuid}:read_error`);
      this.counterHighWater.delete(p.uuid); // the counter may have restarted while it was away
      this.pendingDrop.delete(p.uuid);
      this.options.log?.info({ uuid: p.uuid }, p.message);
      return;
    }
    if (p.reason === 'nvml_reinit_wanted') {
      this.reinit(p);
      return;
    }
    if (p.reason === 'gpu_lost') this.lostGpus.add(p.uuid);
    if (p.reason === 'power_method_changed' && this.inventory) {
      this.inventory = {
        ...this.inventory,
        devices: this.inventory.devices.map((d) => (d.uuid === p.uuid
          ? { ...d, powerMethod: 'power_usage' as const, powerAveraged: powerUsageIsAveraged(d.architecture, d.computeCapability) }
          : d)),
      };
    }
    const message = this.throttle.admit(`${p.uuid}:${p.reason}`, p.message, Date.now());
    if (message !== null) this.report({ reason: p.reason, gpuUuid: p.uuid, message });
  }

  /**
   * The worker found NVML not answering for a GPU (still lost through a handle looked up afresh, or
   * NVML uninitialised): it is asked to shut NVML down and exit, and a new worker initialises NVML
   * again, which enumerates the GPUs afresh. Once per GPU until that GPU samples again, so that a
   * GPU gone for good does not restart the worker over and over (the new worker keeps trying to
   * open it every lostRetryMs, which takes a fresh handle each time).
   */
  private reinit(p: NvmlProblem): void {
    const run = this.run;
    if (!run?.ready || run.reinit || this.phase !== 'running') return;
    if (this.reinitTried.has(p.uuid)) {
      this.options.log?.debug({ uuid: p.uuid }, `${p.message}; NVML was initialised again for it already`);
      return;
    }
    this.reinitTried.add(p.uuid);
    run.reinit = true;
    this.report({
      reason: 'nvml_reinit',
      gpuUuid: p.uuid,
      message: `${p.message}; restarting the NVML worker with NVML shut down and initialised again, so that NVML finds the GPUs afresh`,
    });
    run.send({ type: 'shutdown' });
  }

  /** A GPU set aside or not usable at a worker's start was opened: sampled again, described anew. */
  private opened(p: NvmlProblem): void {
    let hung = false;
    for (const [index, h] of this.hungAtStart) {
      // By UUID, or by index for one that had none: never another GPU's placeholder.
      if (h.uuid === p.uuid || (h.uuid === null && index === p.device?.index)) {
        this.identified(index);
        hung = true;
      }
    }
    this.lostGpus.delete(p.uuid);
    this.unopenedReported.delete(p.uuid);
    this.throttle.clear(`${p.uuid}:read_error`);
    this.throttle.clear(`${p.uuid}:gpu_lost`);
    this.counterHighWater.delete(p.uuid); // the counter may have restarted while it was away
    this.pendingDrop.delete(p.uuid);
    const device = p.device;
    if (device && this.inventory) {
      this.inventory = {
        ...this.inventory,
        devices: [...this.inventory.devices.filter((d) => d.uuid !== device.uuid), device].sort((a, b) => a.index - b.index),
        unusable: this.inventory.unusable.filter((u) => u.index !== device.index),
      };
    }
    this.options.log?.info({ uuid: p.uuid }, p.message);
    if (device) this.learn(device, hung ? 'learnt after a call on it hung at start-up' : 'found after start-up (NVML did not count it, or it could not be opened, when the agent started)');
  }

  /**
   * A GPU not usable at a worker's start (or counted later) opened and reads neither power nor
   * energy: as one found so at start-up, it is not one of the GPUs (records naming it are refused)
   * and readiness names it as unsampled, for good.
   */
  private unmeasurable(p: NvmlProblem): void {
    const device = p.device;
    if (!device || !this.inventory) return;
    for (const [index, h] of this.hungAtStart) {
      if (h.uuid === device.uuid || (h.uuid === null && index === device.index)) this.identified(index);
    }
    this.lostGpus.delete(device.uuid);
    this.inventory = {
      ...this.inventory,
      unusable: [
        ...this.inventory.unusable.filter((u) => u.index !== device.index),
        { index: device.index, uuid: device.uuid, message: p.message, lost: false, unmeasurable: true },
      ].sort((a, b) => a.index - b.index),
    };
    this.report({ reason: 'gpu_unusable', gpuUuid: device.uuid, message: `GPU ${device.index} (${device.uuid}) ${p.message}: not sampled` });
  }

  /** A GPU hung at start-up was opened: no longer a stand-in, nor set aside by its index. */
  private identified(index: number): void {
    this.hungAtStart.delete(index);
    this.quarantine.delete(unidentifiedGpuKey(index));
  }

  /**
   * Take a GPU's description as one of this source's GPUs: a stand-in or an unknown GPU becomes
   * the GPU it is (name, power limit, MIG devices), told to onGpu. By UUID only: a GPU answering
   * with another UUID than its stand-in is another GPU, and the stand-in stays a gap.
   */
  private learn(device: NvmlDeviceDescription, how: string): void {
    const gpu = gpuInfoOf(device);
    const at = this.gpus.findIndex((g) => g.uuid === gpu.uuid);
    if (at >= 0 && JSON.stringify(this.gpus[at]) === JSON.stringify(gpu)) return;
    this.gpus = at >= 0 ? this.gpus.map((g) => (g.uuid === gpu.uuid ? gpu : g)) : [...this.gpus, gpu].sort((a, b) => a.index - b.index);
    const limit = gpu.powerLimitW === null ? 'power limit unknown' : `power limit ${gpu.powerLimitW} W`;
    const mig = gpu.migInstances.length > 0 ? `MIG devices ${gpu.migInstances.join(', ')}` : 'no MIG devices';
    this.options.log?.[at >= 0 ? 'info' : 'warn']({ uuid: gpu.uuid, index: gpu.index }, `GPU ${gpu.index} (${gpu.uuid}) ${gpu.name}, ${limit}, ${mig}: ${how}`);
    this.safely(() => this.onGpu?.(gpu));
  }

  private report(error: PowerSourceError): void {
    this.options.log?.warn({ reason: error.reason, uuid: error.gpuUuid }, error.message);
    this.safely(() => this.onError?.(error));
  }

  /** A throwing handler must not take the sampling loop down with it. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.options.log?.error({ err: error }, 'NVML power source handler threw');
    }
  }

  /** The first worker's inventory. GPUs set aside at start-up are among the GPUs: a gap until opened. */
  private adopt(run: WorkerRun, inventory: NvmlInventory): void {
    this.inventory = this.present(run, inventory);
    this.gpus = inventory.devices.map(gpuInfoOf);
    for (const u of this.inventory.unusable) this.options.log?.warn({ index: u.index, uuid: u.uuid }, `GPU ${u.index} is not usable through NVML: ${u.message}`);
  }

  private notes(devices: readonly NvmlDeviceDescription[]): string[] {
    const notes: string[] = [];
    if (this.inventory?.driverVersion) notes.push(`NVIDIA driver ${this.inventory.driverVersion}, library ${this.libraryPath}`);
    for (const d of devices) {
      const power = d.powerMethod === 'field_instant'
        ? 'instantaneous power (NVML_FI_DEV_POWER_INSTANT)'
        : d.powerMethod === 'power_usage'
          ? `power from nvmlDeviceGetPowerUsage (${d.powerAveraged ? '1 s averages' : 'instantaneous'})`
          : 'no power reading';
      const energy = d.energyCounter ? 'cumulative energy counter' : 'no energy counter (energy integrated from power)';
      notes.push(`GPU ${d.index} ${d.name} (${architectureName(d.architecture)}): ${power}, ${energy}`);
      if (d.migEnabled) {
        notes.push(`MIG enabled on GPU ${d.index} (${d.migInstances.length} instances): power and energy exist per physical GPU only; requests on its MIG instances are attributed within it`);
      }
    }
    for (const u of this.inventory?.unusable ?? []) notes.push(`GPU ${u.index} not usable: ${u.message}`);
    for (const uuid of this.lostGpus) notes.push(`GPU ${uuid} is lost: no samples (energy gap) until it answers again`);
    const now = Date.now();
    for (const [uuid, q] of this.quarantine) {
      // One set aside by its index is among the unusable GPUs, noted above.
      if (!this.isSetAside(uuid, q.untilMs, now) || isUnidentifiedGpuKey(uuid)) continue;
      notes.push(q.untilMs > now
        ? `GPU ${uuid} left out after a hung NVML call until ${new Date(q.untilMs).toISOString()}`
        : `GPU ${uuid} left out: an NVML call on it is still blocked in the driver`);
    }
    if (this.stuck.size > 0) notes.push(`${this.stuck.size} NVML call(s) still blocked in the driver`);
    return notes;
  }

  private stopTimers(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.watchdog = null;
    this.restartTimer = null;
  }
}

function gpuInfoOf(d: NvmlDeviceDescription): GpuInfo & { readonly powerLimitW: ReturnType<typeof watts> | null; readonly migInstances: readonly string[] } {
  return {
    uuid: d.uuid,
    index: d.index,
    name: d.name,
    powerLimitW: d.powerLimitMw === null ? null : watts(d.powerLimitMw / 1000),
    migEnabled: d.migEnabled,
    migInstances: d.migInstances,
  };
}

/** What a worker is told of a GPU set aside at start-up before it was described: only who it is. */
function standIn(index: number, uuid: string): NvmlDeviceDescription {
  return {
    index, uuid, name: 'NVIDIA GPU not opened yet (a call on it hung at start-up)', powerLimitMw: null, architecture: null,
    computeCapability: null, migEnabled: false, migInstances: [], energyCounter: false, powerMethod: 'none', powerAveraged: false,
  };
}

/** Keep start-up descriptions for GPUs a restart did not see (lost ones), take new ones as they are. */
function mergeDevices(before: readonly NvmlDeviceDescription[], after: readonly NvmlDeviceDescription[]): NvmlDeviceDescription[] {
  const seen = new Set(after.map((d) => d.uuid));
  return [...after, ...before.filter((d) => !seen.has(d.uuid))];
}

async function raceTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); })]);
  if (timer) clearTimeout(timer);
}
