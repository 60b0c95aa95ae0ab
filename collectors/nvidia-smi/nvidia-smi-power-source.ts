import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { epochMs, watts } from '../../model/units.js';
import { ProblemThrottle } from '../problem-throttle.js';
import type { PowerSource, PowerSourceError, PowerSourceQuality } from '../power-source.js';
import { NvidiaSmiClockOffset } from './nvidia-smi-clock-offset.js';
import { isNvidiaSmiHeader, parseNvidiaSmiPowerLine } from './nvidia-smi-csv.js';
import { chooseInventoryFields, chooseStreamFields, parseHelpQueryGpu } from './nvidia-smi-fields.js';
import { parseInventory, parseMigList, powerDrawAveragedFor, type NvidiaSmiGpu } from './nvidia-smi-inventory.js';
import { SupervisedLineProcess, signalGroup } from './supervised-line-process.js';
import { killGroupAtExit } from './child-groups.js';

export interface NvidiaSmiPowerSourceOptions {
  /** The nvidia-smi executable: a path, or a name looked up on PATH. Default "nvidia-smi". */
  readonly binary?: string;
  readonly samplePeriodMs: number;
  /** The stream is declared hung after this long without a usable line. Default max(2 s, 10 periods). */
  readonly stallTimeoutMs?: number;
  /** Grace for the stream's first line after each start. Default 15 s. */
  readonly startupTimeoutMs?: number;
  /** Deadline of the one-shot commands (--help-query-gpu, the inventory, -L). Default 10 s. */
  readonly commandTimeoutMs?: number;
  /**
   * How often the GPU list is read again while running: a GPU added (or gone) since start-up is
   * learnt (or reported) then, as NVML re-reads its device count. Default 10 s.
   */
  readonly inventoryRefreshMs?: number;
  /**
   * How long the samples of a GPU first seen in the stream wait for the GPU list (read at once) to
   * describe it, so that it is told with its MIG devices. Beyond that it is told undescribed and
   * its samples go on; the list describes it when it answers. Default 5 s.
   */
  readonly describeWaitMs?: number;
  /** Back-off between restarts of the stream. Default 1 s doubling to 60 s. */
  readonly restartBackoffMs?: { readonly initial: number; readonly max: number };
  /** Environment of the nvidia-smi children. Default: the agent's. */
  readonly env?: NodeJS.ProcessEnv;
  /** The agent's clock, compared with nvidia-smi's stamps to find a time-zone offset. Default Date.now. */
  readonly clock?: { now(): number };
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

/** Why nvidia-smi cannot be used at all. */
export type NvidiaSmiFailureReason = 'binary_missing' | 'failed' | 'timeout' | 'unsupported' | 'no_gpus';

export class NvidiaSmiInitError extends Error {
  /** @param detail what went wrong, without the fix */
  constructor(readonly reason: NvidiaSmiFailureReason, readonly detail: string, readonly fix: string) {
    super(`${detail} Fix: ${fix}`);
    this.name = 'NvidiaSmiInitError';
  }
}

const PROBLEM_WINDOW_MS = 60_000;

/**
 * GPU power from one long-lived `nvidia-smi --query-gpu=... --format=csv,noheader,nounits -lms N`
 * child: the fallback when NVML cannot be loaded in-process. Fields are chosen from what this
 * driver's `--help-query-gpu` offers (power.draw.instant where it exists). nvidia-smi has no
 * energy counter, so energy is left to power integration (quality says so). A watchdog restarts
 * the child with back-off when it hangs or exits; markers (`[N/A]`, `ERR!` ...) are handled per
 * field and reported; unparsable lines are reported, never silently dropped.
 */
export class NvidiaSmiPowerSource implements PowerSource {
  /** The driver's counter: it runs on across agent restarts. */
  readonly counterRestartsWithProcess = false;
  private readonly binary: string;
  private readonly throttle = new ProblemThrottle(PROBLEM_WINDOW_MS);
  private fields: readonly string[] = [];
  private instantAvailable = false;
  private gpus: NvidiaSmiGpu[] = [];
  private inventory: GpuInfo[] | null = null;
  private inventoryFields: readonly string[] = [];
  private migByUuid = new Map<string, string[]>();
  private version: string | null = null;
  private process: SupervisedLineProcess | null = null;
  private pending: PowerSample[] = [];
  private flushScheduled = false;
  private averagedSeen = false;
  private readonly clock: { now(): number };
  private readonly offset: NvidiaSmiClockOffset<Omit<PowerSample, 'timestampMs'>>;
  /**
   * GPUs the running stream child has printed a line for: cleared at each start of a child,
   * whether this source restarts it or the watchdog does after a hang or an exit.
   */
  private readonly inStream = new Set<string>();
  /**
   * GPUs listed by a refresh but not printed by the stream: restarted once for each, so it
   * enumerates again. Forgotten when the GPU is lost, or when a child that printed it hung or
   * exited (the watchdog's replacement that leaves it out earns one more restart). A restart this
   * source makes gives nothing back: streams that each leave out another GPU would loop.
   */
  private readonly streamRestartedFor = new Set<string>();
  /** GPUs a refresh listed that the stream had not printed (yet). */
  private readonly unstreamed = new Set<string>();
  /**
   * GPUs the stream printed before any list described them: their samples are held until the
   * list read at once describes them (or describeWaitMs passes), then told and released.
   */
  private readonly describing = new Map<string, { readonly index: number; readonly held: PowerSample[]; readonly timer: NodeJS.Timeout }>();
  /** Known GPUs the last refresh did not list, already reported as lost. */
  private readonly absent = new Set<string>();
  /**
   * GPUs lost since: a line of theirs counts as printed only if nvidia-smi stamped it at or after
   * this (agent clock, ms): the start of the list read that showed the GPU again (Infinity while it
   * is lost). A line printed before the loss and read late would otherwise pass for the stream
   * printing it, and a stream that no longer does would never be started again for it.
   */
  private readonly printedSince = new Map<string, number>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private refreshing = false;
  private refreshAgain = false;
  private stopped = false;
  private onSamples: ((samples: readonly PowerSample[]) => void) | null = null;
  private onError: ((error: PowerSourceError) => void) | null = null;
  private onGpu: ((gpu: GpuInfo) => void) | null = null;

  constructor(private readonly options: NvidiaSmiPowerSourceOptions) {
    if (!(options.samplePeriodMs >= 1) || !Number.isInteger(options.samplePeriodMs)) {
      throw new RangeError(`samplePeriodMs must be a whole number of ms >= 1 (nvidia-smi -lms), got ${options.samplePeriodMs}`);
    }
    this.binary = options.binary ?? 'nvidia-smi';
    this.clock = options.clock ?? { now: () => Date.now() };
    // A new offset must hold for 10 s (and 10 periods) of arrivals: a burst of late lines never qualifies.
    this.offset = new NvidiaSmiClockOffset(Math.max(10_000, 10 * options.samplePeriodMs), (offsetMs, previousMs) => {
      this.options.log?.warn({ offsetMs, previousMs, binary: this.binary },
        `nvidia-smi timestamps are ${offsetMs / 60_000} min off the agent's clock (its time zone differs?); that constant offset is applied to every line`);
    });
  }

  /** Idempotent once it succeeded: a source handed over initialised (selectPowerSource) may be init()ed again. */
  async init(): Promise<readonly GpuInfo[]> {
    if (this.inventory) return this.inventory;
    const offered = parseHelpQueryGpu(await this.command(['--help-query-gpu']));
    const choice = chooseStreamFields(offered);
    if (!choice.ok) {
      throw new NvidiaSmiInitError('unsupported', `${this.binary}: ${choice.reason}.`, 'upgrade the NVIDIA driver (any R450+ nvidia-smi reports timestamp, index, uuid and power.draw)');
    }
    this.fields = choice.fields;
    this.instantAvailable = choice.instantAvailable;
    const inventoryFields = chooseInventoryFields(offered);
    this.inventoryFields = inventoryFields;
    const inventory = parseInventory(await this.command(this.inventoryArgs()), inventoryFields);
    for (const error of inventory.errors) this.options.log?.warn({ binary: this.binary }, error);
    if (inventory.gpus.length === 0) {
      throw new NvidiaSmiInitError('no_gpus', `${this.binary} lists no GPU${inventory.errors.length ? ` (${inventory.errors.join('; ')})` : ''}.`, 'check that the GPUs are visible to this container (NVIDIA_VISIBLE_DEVICES, the device plugin) and healthy (nvidia-smi -L)');
    }
    this.gpus = inventory.gpus;
    if (this.gpus.some((g) => g.migEnabled)) this.migByUuid = parseMigList(await this.command(['-L']));
    this.version = await this.command(['--version']).then((v) => /DRIVER version\s*:\s*(\S+)/i.exec(v)?.[1] ?? null, () => null);
    this.inventory = this.gpus.map((g) => this.gpuInfo(g));
    return this.inventory;
  }

  start(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void, onGpu?: (gpu: GpuInfo) => void): void {
    if (this.fields.length === 0) throw new Error('NvidiaSmiPowerSource.start() needs a successful init() first');
    if (this.process) throw new Error('NvidiaSmiPowerSource.start() called twice');
    this.onSamples = onSamples;
    this.onError = onError;
    this.onGpu = onGpu ?? null;
    this.process = this.stream();
    this.process.start();
    this.scheduleRefresh();
  }

  /**
   * The next periodic read of the GPU list, inventoryRefreshMs after the last one ended (a timer,
   * not an interval): a list command as slow as the interval must not run back to back.
   */
  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (this.stopped) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh();
    }, this.options.inventoryRefreshMs ?? 10_000);
    this.refreshTimer.unref();
  }

  private stream(): SupervisedLineProcess {
    const period = this.options.samplePeriodMs;
    return new SupervisedLineProcess({
      command: this.binary,
      args: [`--query-gpu=${this.fields.join(',')}`, '--format=csv,noheader,nounits', '-lms', String(period)],
      ...(this.options.env ? { env: this.options.env } : {}),
      stallMs: this.options.stallTimeoutMs ?? Math.max(2000, 10 * period),
      startupMs: this.options.startupTimeoutMs ?? 15_000,
      backoffMs: this.options.restartBackoffMs ?? { initial: 1000, max: 60_000 },
      onStart: (restart) => this.streamStarted(restart),
      onLine: (line) => this.line(line),
      onProblem: (problem) => this.report({ reason: problem.reason, message: problem.message }),
      ...(this.options.log ? { log: this.options.log } : {}),
    });
  }

  /**
   * A new stream child enumerates the GPUs afresh: which GPUs it prints is judged from its own
   * lines, and each listed GPU gets a whole refresh interval to appear in them. A set kept from a
   * hung child would take a GPU it printed as printed by its replacement, never restarted for.
   * The watchdog's replacement also gives the GPUs its hung child printed their restart back.
   */
  private streamStarted(byWatchdog: boolean): void {
    if (byWatchdog) for (const uuid of this.inStream) this.streamRestartedFor.delete(uuid);
    this.inStream.clear();
    this.unstreamed.clear();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const process = this.process;
    this.process = null;
    await process?.stop();
    for (const placed of this.offset.drain()) this.take({ ...placed.item, timestampMs: epochMs(placed.timestampMs) });
    for (const uuid of [...this.describing.keys()]) this.releaseHeld(uuid, 'the agent stopped before the GPU list described it');
    this.flush();
  }

  quality(): PowerSourceQuality {
    const notes = [
      `nvidia-smi ${this.binary}${this.version ? ` (driver ${this.version})` : ''} streaming ${this.fields.join(',')} every ${this.options.samplePeriodMs} ms`,
      'no energy counter through nvidia-smi: energy is integrated from power samples',
    ];
    if (!this.instantAvailable) notes.push('this driver offers no power.draw.instant: power is power.draw, a 1 s average on Ampere and newer (except GA100)');
    const offsetMs = this.offset.currentOffsetMs;
    if (offsetMs) notes.push(`nvidia-smi stamps its lines ${offsetMs / 60_000} min off the agent's clock (another time zone): corrected by that constant offset`);
    for (const g of this.gpus) {
      if (this.absent.has(g.uuid)) notes.push(`GPU ${g.index} (${g.uuid}) is no longer listed by nvidia-smi: no samples (energy gap) until it is listed again`);
      if (g.migEnabled) {
        notes.push(`MIG enabled on GPU ${g.index} (${this.migByUuid.get(g.uuid)?.length ?? 0} instances): power exists per physical GPU only; requests on its MIG instances are attributed within it`);
      }
    }
    return {
      kind: 'nvidia-smi',
      energyCounter: false,
      powerAveraged: !this.instantAvailable || this.averagedSeen,
      simulated: false,
      samplePeriodMs: this.options.samplePeriodMs,
      notes,
    };
  }

  /** The stream's fields as chosen from --help-query-gpu. */
  streamFields(): readonly string[] {
    return this.fields;
  }

  private line(line: string): void {
    if (this.stopped || line.trim() === '' || isNvidiaSmiHeader(line)) return;
    const parsed = parseNvidiaSmiPowerLine(line, this.fields, {
      zone: 'local',
      powerDrawAveraged: (uuid) => {
        const gpu = this.gpus.find((g) => g.uuid === uuid);
        return gpu ? powerDrawAveragedFor(gpu.computeCapability) : undefined;
      },
    });
    if (!parsed.ok) {
      this.problem('parse', 'parse', `unusable nvidia-smi line (${parsed.reason}): ${JSON.stringify(line.slice(0, 160))}`);
      return;
    }
    this.process?.markProgress();
    const row = parsed.row;
    const since = this.printedSince.get(row.gpuUuid);
    if (since === undefined) this.inStream.add(row.gpuUuid);
    else if (row.timestampMs + (this.offset.currentOffsetMs ?? 0) >= since) {
      this.printedSince.delete(row.gpuUuid);
      this.inStream.add(row.gpuUuid);
    }
    for (const issue of row.issues) {
      this.problem(`${row.gpuUuid}:${issue.field}:${issue.marker}`, 'field', `GPU ${row.gpuIndex} ${issue.field}: ${issue.marker}`, row.gpuUuid);
    }
    if (row.powerW === null) return; // reported above as a field problem: no power, nothing to sample
    if (row.powerAveraged) this.averagedSeen = true;
    if (!this.inventory?.some((g) => g.uuid === row.gpuUuid) && !this.describing.has(row.gpuUuid)) this.awaitDescription(row.gpuUuid, row.gpuIndex);
    const sample = { gpuUuid: row.gpuUuid, gpuIndex: row.gpuIndex, powerW: watts(row.powerW), energyJ: null, powerAveraged: row.powerAveraged };
    // nvidia-smi's own stamp, corrected by the stream's time-zone offset (never replaced by the arrival time).
    for (const placed of this.offset.place(sample, row.timestampMs, this.clock.now())) {
      this.take({ ...placed.item, timestampMs: epochMs(placed.timestampMs) });
    }
    this.scheduleFlush();
  }

  /**
   * A GPU the stream prints that no list has described: the stream gives only its index and UUID,
   * and told so the agent would refuse records naming its MIG devices until the list was read. So
   * the list is read at once and its samples wait for it; it is told (before its first sample) as
   * the list describes it, or undescribed when the list does not show it or is too slow.
   */
  private awaitDescription(uuid: string, index: number): void {
    const waitMs = this.options.describeWaitMs ?? 5000;
    const timer = setTimeout(() => this.releaseHeld(uuid, `the GPU list did not describe it within ${waitMs} ms`), waitMs);
    timer.unref();
    this.describing.set(uuid, { index, held: [], timer });
    void this.refresh();
  }

  /** Tells of a GPU whose samples were held (undescribed unless a list described it) and hands them over. */
  private releaseHeld(uuid: string, why: string): void {
    const entry = this.describing.get(uuid);
    if (!entry) return;
    this.describing.delete(uuid);
    clearTimeout(entry.timer);
    if (!this.inventory?.some((g) => g.uuid === uuid)) {
      this.learn({ uuid, index: entry.index, name: 'NVIDIA GPU (not described yet)', powerLimitW: null, migEnabled: false, migInstances: [] },
        `found in the nvidia-smi stream after start-up (not listed when the agent started); ${why}: described when the list shows it`);
    }
    for (const sample of entry.held) this.pending.push(sample);
    this.scheduleFlush();
  }

  /** A sample to hand over, or to hold while its GPU is being described. */
  private take(sample: PowerSample): void {
    const describing = this.describing.get(sample.gpuUuid);
    if (describing) describing.held.push(sample);
    else this.pending.push(sample);
  }

  private scheduleFlush(): void {
    if (this.pending.length > 0 && !this.flushScheduled) {
      // Lines of one tick arrive together: hand them over as one batch.
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Reads the GPU list again (every inventoryRefreshMs, and when the stream prints an unknown GPU):
   * GPUs found since start-up are learnt (told to onGpu), changed ones (MIG reconfigured, power
   * limit) described anew, and known GPUs no longer listed are reported as lost: their energy is a
   * gap until they are listed again, as with NVML. One read at a time; a request during one (an
   * unknown GPU in the stream) runs another after it; the periodic one waits its interval after
   * the last read ends.
   */
  private async refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    // The periodic read waits for this one to end (rescheduled below), never queued behind it.
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    try {
      do {
        this.refreshAgain = false;
        const readAt = this.clock.now();
        const listed = parseInventory(await this.command(this.inventoryArgs()), this.inventoryFields);
        const mig = listed.gpus.some((g) => g.migEnabled) ? parseMigList(await this.command(['-L'])) : new Map<string, string[]>();
        if (this.stopped) return;
        for (const error of listed.errors) this.problem(`inventory:${error}`, 'parse', `re-reading the GPU list: ${error}`);
        // A line it could not read may be a known GPU: none is called lost on such a list.
        await this.takeInventory(listed.gpus, mig, listed.errors.length === 0, readAt);
      } while (this.refreshAgain && !this.stopped);
    } catch (error) {
      if (!this.stopped) this.problem('inventory', 'inventory', `re-reading the GPU list failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      this.refreshing = false;
      // GPUs the stream printed that the last list did not show (or no list was read): told undescribed.
      for (const uuid of [...this.describing.keys()]) this.releaseHeld(uuid, 'the GPU list read after it did not show it');
      this.scheduleRefresh();
    }
  }

  /** @param readAt when the read of `listed` started (agent clock) */
  private async takeInventory(listed: readonly NvidiaSmiGpu[], mig: ReadonlyMap<string, string[]>, complete: boolean, readAt: number): Promise<void> {
    const listedUuids = new Set(listed.map((g) => g.uuid));
    const notStreamed: string[] = [];
    for (const g of listed) {
      const known = this.inventory?.some((k) => k.uuid === g.uuid) === true;
      if (g.migEnabled) this.migByUuid.set(g.uuid, mig.get(g.uuid) ?? []);
      else this.migByUuid.delete(g.uuid);
      this.gpus = [...this.gpus.filter((k) => k.uuid !== g.uuid), g].sort((a, b) => a.index - b.index);
      if (this.absent.delete(g.uuid)) {
        this.printedSince.set(g.uuid, readAt);
        this.options.log?.info({ uuid: g.uuid }, `GPU ${g.index} (${g.uuid}) is listed by nvidia-smi again`);
      }
      const how = known ? 'described anew by nvidia-smi'
        : this.describing.has(g.uuid) ? 'found in the nvidia-smi stream after start-up (not listed when the agent started)'
          : 'found after start-up (nvidia-smi did not list it when the agent started)';
      this.learn(this.gpuInfo(g), how);
      this.releaseHeld(g.uuid, 'described');
      // Given one refresh interval to appear in the stream before the stream is started again.
      if (this.inStream.has(g.uuid)) this.unstreamed.delete(g.uuid);
      else if (!this.unstreamed.has(g.uuid)) this.unstreamed.add(g.uuid);
      else if (!this.streamRestartedFor.has(g.uuid)) notStreamed.push(g.uuid);
    }
    if (complete) {
      for (const g of this.gpus) {
        if (listedUuids.has(g.uuid) || this.absent.has(g.uuid)) continue;
        this.absent.add(g.uuid);
        // Gone: when it is listed again the running stream (holding its old handle) may not print
        // it, so it is watched afresh and earns one more restart (one per loss: no restart loop).
        this.inStream.delete(g.uuid);
        this.printedSince.set(g.uuid, Infinity);
        this.unstreamed.delete(g.uuid);
        this.streamRestartedFor.delete(g.uuid);
        this.report({ reason: 'gpu_lost', gpuUuid: g.uuid, message: `GPU ${g.index} (${g.uuid}) is no longer listed by nvidia-smi: no samples from it (an energy gap) until it is listed again` });
      }
    }
    // A stream started before a GPU appeared may never enumerate it: started again, once per GPU.
    if (notStreamed.length > 0 && this.process && !this.stopped) {
      for (const uuid of notStreamed) this.streamRestartedFor.add(uuid);
      this.options.log?.warn({ uuids: notStreamed }, `nvidia-smi lists ${notStreamed.join(', ')} but its stream prints no line for them: restarting the stream`);
      const old = this.process;
      this.process = this.stream();
      await old.stop();
      if (!this.stopped) this.process.start();
    }
  }

  /**
   * Take a GPU as one of this source's GPUs, or its new description, and tell onGpu (as the NVML
   * source does). Unchanged descriptions are not told again.
   */
  private learn(gpu: GpuInfo, how: string): void {
    const known = this.inventory ?? [];
    const at = known.findIndex((g) => g.uuid === gpu.uuid);
    if (at >= 0 && JSON.stringify(known[at]) === JSON.stringify(gpu)) return;
    this.inventory = (at >= 0 ? known.map((g) => (g.uuid === gpu.uuid ? gpu : g)) : [...known, gpu]).sort((a, b) => a.index - b.index);
    const limit = gpu.powerLimitW === null || gpu.powerLimitW === undefined ? 'power limit unknown' : `power limit ${gpu.powerLimitW} W`;
    const migInstances = gpu.migInstances ?? [];
    const mig = migInstances.length > 0 ? `MIG devices ${migInstances.join(', ')}` : 'no MIG devices';
    this.options.log?.[at >= 0 ? 'info' : 'warn']({ uuid: gpu.uuid, index: gpu.index }, `GPU ${gpu.index} (${gpu.uuid}) ${gpu.name}, ${limit}, ${mig}: ${how}`);
    try {
      this.onGpu?.(gpu);
    } catch (error) {
      this.options.log?.error({ err: error }, 'nvidia-smi power source GPU handler threw');
    }
  }

  private gpuInfo(g: NvidiaSmiGpu): GpuInfo {
    return {
      uuid: g.uuid,
      index: g.index,
      name: g.name,
      powerLimitW: g.powerLimitW === null ? null : watts(g.powerLimitW),
      migEnabled: g.migEnabled === true,
      migInstances: this.migByUuid.get(g.uuid) ?? [],
    };
  }

  private inventoryArgs(): string[] {
    return [`--query-gpu=${this.inventoryFields.join(',')}`, '--format=csv,noheader,nounits'];
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.onSamples?.(batch);
    } catch (error) {
      this.options.log?.error({ err: error }, 'nvidia-smi power source sample handler threw');
    }
  }

  private problem(key: string, reason: string, message: string, gpuUuid?: string): void {
    const admitted = this.throttle.admit(key, message, Date.now());
    if (admitted !== null) this.report({ reason, message: admitted, ...(gpuUuid ? { gpuUuid } : {}) });
  }

  private report(error: PowerSourceError): void {
    this.options.log?.warn({ reason: error.reason, uuid: error.gpuUuid }, error.message);
    try {
      this.onError?.(error);
    } catch (handlerError) {
      this.options.log?.error({ err: handlerError }, 'nvidia-smi power source error handler threw');
    }
  }

  /**
   * Runs a one-shot nvidia-smi command (argument vector, no shell) and returns its stdout. It leads
   * its own process group, killed as a whole on timeout or overflow, so a wrapper script that runs
   * nvidia-smi without `exec` leaves nothing running.
   */
  private command(args: readonly string[]): Promise<string> {
    const timeout = this.options.commandTimeoutMs ?? 10_000;
    const run = `${this.binary} ${args.join(' ')}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (outcome: string | NvidiaSmiInitError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (typeof outcome === 'string') resolve(outcome);
        else reject(outcome);
      };
      // Settles at once: a child stuck in the driver may survive SIGKILL and never close its output.
      const kill = (outcome: NvidiaSmiInitError): void => {
        settle(outcome);
        signalGroup(child, 'SIGKILL');
        child.stdout?.destroy();
        child.stderr?.destroy();
      };
      const failed = (exit: string): NvidiaSmiInitError => {
        // The first lines only, each cut short: a runaway output must not become the error message.
        const said = `${stdout()}\n${stderr()}`.trim().split('\n', 3).map((line) => (line.length > 300 ? `${line.slice(0, 300)}…` : line)).join(' | ');
        return new NvidiaSmiInitError('failed', `${run} failed (exit ${exit}): ${said}`,
          'run nvidia-smi on the node to see the driver error; if it cannot talk to the driver, load the driver or mount /dev/nvidia* into the container');
      };
      const child = spawn(this.binary, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: this.options.env ?? process.env, detached: true });
      killGroupAtExit(child);
      const overflow = (): void => kill(failed('ERR_CHILD_PROCESS_STDIO_MAXBUFFER'));
      const stdout = collectOutput(child.stdout, COMMAND_MAX_BUFFER, overflow);
      const stderr = collectOutput(child.stderr, COMMAND_MAX_BUFFER, overflow);
      const timer = setTimeout(() => kill(new NvidiaSmiInitError('timeout', `${run} did not finish within ${timeout} ms.`,
        'the driver is hung or slow: enable persistence mode (nvidia-persistenced) and check dmesg for Xid errors')), timeout);
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' || error.code === 'EACCES') {
          settle(new NvidiaSmiInitError('binary_missing', `${this.binary} could not be run (${error.code}).`,
            'install the NVIDIA driver utilities on the node or mount nvidia-smi into the container (NVIDIA runtime with NVIDIA_DRIVER_CAPABILITIES including "utility"), or pass its path with --nvidia-smi'));
        } else {
          settle(failed(String(error.code)));
        }
      });
      child.on('close', (code, signal) => settle(code === 0 ? stdout() : failed(String(code ?? signal))));
    });
  }
}

const COMMAND_MAX_BUFFER = 8 * 1024 * 1024;

/** Collects a stream's first `limit` bytes; more calls `overflow` once. Returns the text so far. */
function collectOutput(stream: Readable | null, limit: number, overflow: () => void): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream?.on('data', (chunk: Buffer) => {
    if (size > limit) return;
    chunks.push(chunk.subarray(0, limit - size));
    size += chunk.length;
    if (size > limit) overflow();
  });
  return () => Buffer.concat(chunks).toString('utf8');
}
