import type { NvmlBinding, NvmlDeviceHandle, NvmlResult } from './nvml-binding.js';
import type { CallWatchWriter, WatchedCall } from './nvml-call-watch.js';
import { NVML_DEVICE_MIG_ENABLE, NVML_POWER_SCOPE_GPU, NvmlFieldId, NvmlReturn, nvmlReturnName } from './nvml-constants.js';
import { describeInitReturn, describeNoGpus, type NvmlInitFailure } from './nvml-init-failure.js';
import type { ReadingJournalWriter } from './nvml-reading-journal.js';
import {
  unidentifiedGpuKey, type NvmlDeviceDescription, type NvmlInventory, type NvmlPowerMethod, type NvmlProblem, type NvmlReading, type NvmlUnusableGpu,
} from './nvml-worker-protocol.js';
import { powerUsageIsAveraged } from './power-averaging.js';

/** Why a GPU that opened is still left out: NVML reports neither its power nor its energy. */
const UNMEASURABLE = 'reports neither power (nvmlDeviceGetPowerUsage and NVML_FI_DEV_POWER_INSTANT not supported) nor energy (nvmlDeviceGetTotalEnergyConsumption not supported), so NVML cannot measure it';
const UNMEASURABLE_FIX = 'NVML here gives no power or energy for any GPU (as on vGPU guests and some virtualised or embedded boards): measure on the host, where the driver exposes power, or check `nvidia-smi -q -d POWER`; with --power auto the agent tries nvidia-smi next';

/** Probes of a lost GPU (each through a handle looked up afresh) before NVML itself is re-initialised. */
export const REINIT_AFTER_LOST_PROBES = 3;
/** Reads in a row on which NVML says it is not initialised / the driver is not loaded, before NVML is re-initialised. */
export const REINIT_AFTER_CONTEXT_ERRORS = 3;

interface DeviceState {
  description: NvmlDeviceDescription;
  /** Replaced by a handle looked up afresh while the GPU is lost (the old one may stay invalid after a reset). */
  handle: NvmlDeviceHandle;
  powerMethod: NvmlPowerMethod;
  powerAveraged: boolean;
  /** Set while the GPU is lost: when to probe it again. */
  lostRetryAtMs: number | null;
  /** Probes since it was lost that found it still lost. */
  lostProbes: number;
  /** Why the last look-up of a fresh handle failed (a return code), or null. */
  lookupRc: number | null;
  /** Reads in a row that failed with NVML_ERROR_UNINITIALIZED or NVML_ERROR_DRIVER_NOT_LOADED. */
  contextErrors: number;
}

/** A GPU not opened (yet): set aside at start-up, not usable when the worker started, or new. */
interface UnopenedGpu {
  readonly index: number;
  /** Its description from an earlier worker when it was set aside; null when it was never opened. */
  readonly before: NvmlDeviceDescription | null;
  /** The key skip() names it by while it is held back: its UUID, or unidentifiedGpuKey(index) before NVML gave one. */
  readonly skipKey: string | null;
  /** When to try to open it (0: as soon as it is not skipped). */
  retryAtMs: number;
  /** A failed open of a set-aside GPU is reported once. */
  reported: boolean;
}

type StartResult = { readonly ok: true; readonly inventory: NvmlInventory } | { readonly ok: false; readonly failure: NvmlInitFailure };

export interface NvmlDeviceReaderExtras {
  /** Every reading is written here as soon as it is taken (see nvml-reading-journal.ts). */
  readonly journal?: ReadingJournalWriter;
  /**
   * GPUs not to open at start-up (a call on them hung before), by their earlier descriptions:
   * they are opened during a later read(), once skip() no longer names them.
   */
  readonly setAside?: readonly NvmlDeviceDescription[];
  /**
   * GPUs a call hung on before NVML gave their UUID, by index, with why: not opened at start-up,
   * but during a later read() once skip() no longer names unidentifiedGpuKey(index).
   */
  readonly leftOut?: readonly NvmlUnusableGpu[];
}


/**
 * Runs in the sampling worker: initialises NVML, takes the inventory, and reads every GPU once
 * per tick. Every NVML call is bracketed by the call watch so that the main thread can put a
 * deadline on it. Never throws for a GPU's failure: it becomes a problem, the others carry on.
 * GPUs that could not be opened, or were set aside, are tried again from read().
 */
export class NvmlDeviceReader {
  private devices: DeviceState[] = [];
  private unopened: UnopenedGpu[] = [];
  private readonly skipped = new Set<string>();
  private initialised = false;
  /** A re-initialisation of NVML was asked for (once per worker: a new worker starts afresh). */
  private reinitAsked = false;
  private readonly journal: ReadingJournalWriter | undefined;
  private readonly setAside: readonly NvmlDeviceDescription[];
  private readonly leftOut: readonly NvmlUnusableGpu[];
  /** GPUs NVML counted when last asked; more later are opened as new ones. */
  private deviceCount = 0;
  private countCheckAtMs = 0;

  constructor(
    private readonly nvml: NvmlBinding,
    private readonly watch: CallWatchWriter,
    private readonly lostRetryMs: number,
    private readonly now: () => number = Date.now,
    extras: NvmlDeviceReaderExtras = {},
  ) {
    this.journal = extras.journal;
    this.setAside = extras.setAside ?? [];
    this.leftOut = extras.leftOut ?? [];
  }

  start(): StartResult {
    const rc = this.call('nvmlInit_v2', -1, () => this.nvml.init());
    if (rc !== NvmlReturn.SUCCESS) {
      return { ok: false, failure: describeInitReturn(rc, this.errorString(rc), this.nvml.libraryPath) };
    }
    this.initialised = true;
    const driver = this.call('nvmlSystemGetDriverVersion', -1, () => this.nvml.driverVersion());
    const count = this.call('nvmlDeviceGetCount_v2', -1, () => this.nvml.deviceCount());
    if (!count.ok) {
      this.close();
      return { ok: false, failure: describeNoGpus(`nvmlDeviceGetCount_v2: ${this.explain(count.rc)}`) };
    }
    const setAside = new Map(this.setAside.map((d) => [d.index, d]));
    const leftOut = new Map(this.leftOut.map((u) => [u.index, u]));
    const unusable: NvmlUnusableGpu[] = [];
    const described: NvmlDeviceDescription[] = [];
    for (let index = 0; index < count.value; index++) {
      const out = leftOut.get(index);
      if (out) {
        // Not opened (its call may still hang) until skip() lets it: then identified as a new GPU.
        unusable.push(out);
        this.unopened.push({ index, before: null, skipKey: unidentifiedGpuKey(index), retryAtMs: 0, reported: true });
        continue;
      }
      const before = setAside.get(index);
      if (before) {
        // Not a single call into it: the call that hung before would hang again (a wedged GPU).
        this.unopened.push({ index, before, skipKey: before.uuid, retryAtMs: 0, reported: false });
        described.push(before);
        continue;
      }
      const opened = this.open(index);
      if ('message' in opened) {
        unusable.push({ index, message: opened.message, lost: opened.lost });
        this.unopened.push({ index, before: null, skipKey: null, retryAtMs: this.now() + this.lostRetryMs, reported: true });
      } else if (opened.powerMethod === 'none' && !opened.description.energyCounter) {
        // Neither power nor energy (e.g. a vGPU guest): nothing to sample. A capability, not a
        // passing state, so it is not tried again.
        unusable.push({ index, uuid: opened.description.uuid, message: UNMEASURABLE, lost: false, unmeasurable: true });
      } else {
        this.devices.push(opened);
        described.push(opened.description);
      }
    }
    this.deviceCount = count.value;
    this.countCheckAtMs = this.now() + this.lostRetryMs;
    if (described.length === 0) {
      this.close();
      const why = unusable.map((u) => `GPU ${u.index}: ${u.message}`).join('; ') || 'nvmlDeviceGetCount_v2 returned 0';
      const onlyUnmeasurable = unusable.length > 0 && unusable.every((u) => u.message === UNMEASURABLE);
      return { ok: false, failure: describeNoGpus(why, onlyUnmeasurable ? UNMEASURABLE_FIX : undefined) };
    }
    return {
      ok: true,
      inventory: {
        driverVersion: driver.ok ? driver.value : null,
        devices: described,
        unusable,
      },
    };
  }

  /** GPUs (by UUID) not to touch, e.g. one whose last call hung. */
  skip(uuids: readonly string[]): void {
    this.skipped.clear();
    for (const uuid of uuids) this.skipped.add(uuid);
  }

  /** One reading of every GPU. */
  read(): { readings: NvmlReading[]; problems: NvmlProblem[] } {
    const readings: NvmlReading[] = [];
    const problems: NvmlProblem[] = [];
    for (const device of this.devices) {
      if (this.skipped.has(device.description.uuid)) continue;
      const now = this.now();
      if (device.lostRetryAtMs !== null && now < device.lostRetryAtMs) continue;
      if (device.lostRetryAtMs !== null) this.reacquire(device);
      const reading = this.readDevice(device, now, problems);
      if (reading) {
        readings.push(reading);
        this.journal?.write(reading.index, reading.timestampMs, reading.powerMw, reading.energyMj, reading.powerAveraged);
      }
    }
    if (this.now() >= this.countCheckAtMs) this.checkDevices(problems);
    if (this.unopened.length > 0) this.openLater(problems);
    return { readings, problems };
  }

  /**
   * Every lostRetryMs: a GPU NVML counts now and did not before (hot-added) is opened as a new one
   * by openLater; the MIG devices of each open GPU are read again, since they can be created and
   * destroyed while the GPU runs (the MIG manager of a Kubernetes node does so).
   */
  private checkDevices(problems: NvmlProblem[]): void {
    this.countCheckAtMs = this.now() + this.lostRetryMs;
    const count = this.call('nvmlDeviceGetCount_v2', -1, () => this.nvml.deviceCount());
    if (count.ok && count.value > this.deviceCount) {
      for (let index = this.deviceCount; index < count.value; index++) this.unopened.push({ index, before: null, skipKey: null, retryAtMs: 0, reported: true });
      this.deviceCount = count.value;
    }
    for (const device of this.devices) {
      const { description } = device;
      if (device.lostRetryAtMs !== null || this.skipped.has(description.uuid)) continue;
      const read = this.migInstances(device.handle, description.index);
      if (!read.whole) continue; // kept as it was, read again next time
      const migs = read.uuids;
      const migInstances = migs ?? [];
      if ((migs !== null) === description.migEnabled && sameList(migInstances, description.migInstances)) continue;
      device.description = { ...description, migEnabled: migs !== null, migInstances };
      problems.push({
        uuid: description.uuid,
        reason: 'gpu_described',
        message: `GPU ${description.index} (${description.uuid}): its MIG devices changed, now ${migs === null ? 'MIG off' : migInstances.length > 0 ? migInstances.join(', ') : 'none'}`,
        device: device.description,
      });
    }
  }

  /** Tries to open the GPUs that are not open, each when its time has come and it is not skipped. */
  private openLater(problems: NvmlProblem[]): void {
    for (let i = 0; i < this.unopened.length; i++) {
      const gpu = this.unopened[i] as UnopenedGpu;
      const now = this.now();
      if (now < gpu.retryAtMs || (gpu.skipKey !== null && this.skipped.has(gpu.skipKey))) continue;
      const opened = this.open(gpu.index);
      if ('message' in opened) {
        gpu.retryAtMs = now + this.lostRetryMs;
        if (gpu.before && !gpu.reported) {
          gpu.reported = true;
          const { uuid } = gpu.before;
          problems.push({
            uuid,
            reason: opened.lost ? 'gpu_lost' : 'read_error',
            message: `GPU ${gpu.index} (${uuid}) could not be opened again after being set aside: ${opened.message}; tried again every ${this.lostRetryMs} ms`,
          });
        }
        continue;
      }
      this.unopened.splice(i--, 1);
      const { uuid, index } = opened.description;
      const twin = this.devices.find((d) => d.description.uuid === uuid);
      if (twin) {
        // Never two GPUs under one UUID: its energy would be counted twice.
        problems.push({ uuid, reason: 'gpu_unusable', message: `GPU ${index} answers with the UUID of GPU ${twin.description.index} (${uuid}), which is sampled already: GPU ${index} is not sampled` });
        continue;
      }
      if (opened.powerMethod === 'none' && !opened.description.energyCounter) {
        // As at start-up: nothing to sample, and a capability, so not tried again.
        problems.push({ uuid, reason: 'gpu_unmeasurable', message: UNMEASURABLE, device: opened.description });
        continue;
      }
      this.devices.push(opened);
      this.devices.sort((a, b) => a.description.index - b.description.index);
      const changed = gpu.before && gpu.before.uuid !== uuid ? ` (it was ${gpu.before.uuid} before)` : '';
      problems.push({
        uuid,
        reason: 'gpu_opened',
        message: `GPU ${index} (${uuid})${changed} is sampled again: it was ${gpu.skipKey === null ? 'not usable when the NVML worker started, or not counted by NVML then' : 'set aside after a hung call'}`,
        device: opened.description,
      });
    }
  }

  /** nvmlShutdown, once. */
  close(): void {
    if (!this.initialised) return;
    this.initialised = false;
    this.call('nvmlShutdown', -1, () => this.nvml.shutdown());
  }

  /**
   * A lost GPU is probed through a handle looked up afresh by its UUID, checked to name the same
   * GPU: after a GPU reset the handle from before may stay invalid (GPU_IS_LOST for good) while a
   * new one works. By UUID, not index, since NVML does not promise a stable index order.
   * When the look-up fails the old handle is probed (it costs nothing more than a look-up).
   */
  private reacquire(device: DeviceState): void {
    const { uuid, index } = device.description;
    const found = this.call('nvmlDeviceGetHandleByUUID', index, () => this.nvml.handleByUuid(uuid));
    if (!found.ok) {
      device.lookupRc = found.rc;
      return;
    }
    const check = this.call('nvmlDeviceGetUUID', index, () => this.nvml.uuid(found.value));
    if (!check.ok || check.value !== uuid) {
      device.lookupRc = check.ok ? NvmlReturn.ERROR_NOT_FOUND : check.rc;
      return;
    }
    device.lookupRc = null;
    device.handle = found.value;
  }

  private readDevice(device: DeviceState, timestampMs: number, problems: NvmlProblem[]): NvmlReading | null {
    const { uuid, index } = device.description;
    const wasLost = device.lostRetryAtMs !== null;
    let energyMj: number | null = null;
    let contextError = false;
    if (device.description.energyCounter) {
      // Hot path: bracketed inline rather than through call(), to spare a closure per call.
      this.watch.begin('nvmlDeviceGetTotalEnergyConsumption', index);
      const energy = this.nvml.totalEnergyMj(device.handle);
      this.watch.end();
      if (energy.ok) energyMj = energy.value;
      else if (energy.rc === NvmlReturn.ERROR_GPU_IS_LOST) return this.markLost(device, 'nvmlDeviceGetTotalEnergyConsumption', timestampMs, problems);
      else {
        contextError = isContextError(energy.rc);
        problems.push({ uuid, reason: 'read_error', message: `nvmlDeviceGetTotalEnergyConsumption on GPU ${index}: ${this.explain(energy.rc)}` });
      }
    }
    const power = this.readPower(device, problems);
    if (power === 'lost') return this.markLost(device, 'power reading', timestampMs, problems);
    if (wasLost) {
      device.lostRetryAtMs = null;
      device.lostProbes = 0;
      problems.push({ uuid, reason: 'gpu_recovered', message: `GPU ${index} (${uuid}) answers again after being lost${device.lookupRc === null ? ' (through a handle looked up afresh by its UUID)' : ''}` });
    }
    if (power === 'context') contextError = true;
    device.contextErrors = contextError ? device.contextErrors + 1 : 0;
    if (device.contextErrors >= REINIT_AFTER_CONTEXT_ERRORS) {
      this.askReinit(device, problems, `NVML no longer answers for GPU ${index} (${uuid}): NVML_ERROR_UNINITIALIZED or NVML_ERROR_DRIVER_NOT_LOADED on ${device.contextErrors} reads in a row (driver reloaded?)`);
    }
    const powerMw = power === 'context' ? null : power;
    if (energyMj === null && powerMw === null) return null;
    return { uuid, index, timestampMs, powerMw, energyMj, powerAveraged: device.powerAveraged };
  }

  /** Power in mW; 'lost' for GPU_IS_LOST, 'context' when NVML itself no longer answers (reported as a read error). */
  private readPower(device: DeviceState, problems: NvmlProblem[]): number | null | 'lost' | 'context' {
    const { uuid, index } = device.description;
    if (device.powerMethod === 'field_instant') {
      this.watch.begin('nvmlDeviceGetFieldValues', index);
      const field = this.nvml.fieldValue(device.handle, NvmlFieldId.POWER_INSTANT, NVML_POWER_SCOPE_GPU);
      this.watch.end();
      if (field.ok) return field.value;
      if (field.rc === NvmlReturn.ERROR_GPU_IS_LOST) return 'lost';
      if (field.rc !== NvmlReturn.ERROR_NOT_SUPPORTED) {
        problems.push({ uuid, reason: 'read_error', message: `nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT) on GPU ${index}: ${this.explain(field.rc)}` });
        return isContextError(field.rc) ? 'context' : null;
      }
      device.powerMethod = 'power_usage';
      device.powerAveraged = powerUsageIsAveraged(device.description.architecture, device.description.computeCapability);
      device.description = { ...device.description, powerMethod: device.powerMethod, powerAveraged: device.powerAveraged };
      problems.push({ uuid, reason: 'power_method_changed', message: `GPU ${index} stopped answering NVML_FI_DEV_POWER_INSTANT; power now comes from nvmlDeviceGetPowerUsage${device.powerAveraged ? ' (1 s averages)' : ''}` });
    }
    if (device.powerMethod !== 'power_usage') return null;
    this.watch.begin('nvmlDeviceGetPowerUsage', index);
    const usage = this.nvml.powerUsageMw(device.handle);
    this.watch.end();
    if (usage.ok) return usage.value;
    if (usage.rc === NvmlReturn.ERROR_GPU_IS_LOST) return 'lost';
    problems.push({ uuid, reason: 'read_error', message: `nvmlDeviceGetPowerUsage on GPU ${index}: ${this.explain(usage.rc)}` });
    return isContextError(usage.rc) ? 'context' : null;
  }

  private markLost(device: DeviceState, call: string, now: number, problems: NvmlProblem[]): null {
    const { uuid, index } = device.description;
    if (device.lostRetryAtMs === null) {
      problems.push({
        uuid,
        reason: 'gpu_lost',
        message: `GPU ${index} (${uuid}) is lost (${call}: NVML_ERROR_GPU_IS_LOST, the GPU fell off the bus or is otherwise inaccessible); its energy from now on is a gap until it answers again (probed every ${this.lostRetryMs} ms through a handle looked up afresh by its UUID; NVML is initialised again if it stays lost)`,
      });
    } else {
      device.lostProbes++;
      if (device.lostProbes >= REINIT_AFTER_LOST_PROBES) {
        const lookup = device.lookupRc === null ? 'a handle looked up afresh by its UUID is lost too' : `looking up a fresh handle by its UUID: ${this.explain(device.lookupRc)}`;
        this.askReinit(device, problems, `GPU ${index} (${uuid}) is still lost after ${device.lostProbes} probes (${lookup})`);
      }
    }
    device.lostRetryAtMs = now + this.lostRetryMs;
    return null;
  }

  /**
   * Asks the main thread to restart this worker with NVML shut down and initialised again, so that
   * NVML enumerates the GPUs afresh (e.g. after a driver reload or a GPU coming back on the bus).
   * Once per worker; the main thread does it once per GPU until that GPU samples again.
   */
  private askReinit(device: DeviceState, problems: NvmlProblem[], why: string): void {
    if (this.reinitAsked) return;
    this.reinitAsked = true;
    problems.push({ uuid: device.description.uuid, reason: 'nvml_reinit_wanted', message: why });
  }

  private open(index: number): DeviceState | { message: string; lost: boolean } {
    const handle = this.call('nvmlDeviceGetHandleByIndex_v2', index, () => this.nvml.handleByIndex(index));
    if (!handle.ok) return { message: `nvmlDeviceGetHandleByIndex_v2: ${this.explain(handle.rc)}`, lost: handle.rc === NvmlReturn.ERROR_GPU_IS_LOST };
    const h = handle.value;
    const uuid = this.call('nvmlDeviceGetUUID', index, () => this.nvml.uuid(h));
    if (!uuid.ok) return { message: `nvmlDeviceGetUUID: ${this.explain(uuid.rc)}`, lost: uuid.rc === NvmlReturn.ERROR_GPU_IS_LOST };
    this.watch.identify(index, uuid.value);
    const name = this.call('nvmlDeviceGetName', index, () => this.nvml.name(h));
    const limit = this.call('nvmlDeviceGetEnforcedPowerLimit', index, () => this.nvml.enforcedPowerLimitMw(h));
    const arch = this.call('nvmlDeviceGetArchitecture', index, () => this.nvml.architecture(h));
    const cc = this.call('nvmlDeviceGetCudaComputeCapability', index, () => this.nvml.computeCapability(h));
    const architecture = valueOrNull(arch);
    const computeCapability = valueOrNull(cc);
    // At opening, what could be read: a short list is read again at the next check.
    const migInstances = this.migInstances(h, index).uuids;
    const energy = this.call('nvmlDeviceGetTotalEnergyConsumption', index, () => this.nvml.totalEnergyMj(h));
    const { method, averaged } = this.choosePowerMethod(h, index, architecture, computeCapability);
    const description: NvmlDeviceDescription = {
      index,
      uuid: uuid.value,
      name: valueOrNull(name) ?? 'unknown NVIDIA GPU',
      powerLimitMw: valueOrNull(limit),
      architecture,
      computeCapability,
      migEnabled: migInstances !== null,
      migInstances: migInstances ?? [],
      // Anything but "not supported" means the counter exists (a transient error shows up later).
      energyCounter: energy.rc !== NvmlReturn.ERROR_NOT_SUPPORTED,
      powerMethod: method,
      powerAveraged: averaged,
    };
    return { description, handle: h, powerMethod: method, powerAveraged: averaged, lostRetryAtMs: null, lostProbes: 0, lookupRc: null, contextErrors: 0 };
  }

  /**
   * MIG device UUIDs when MIG mode is on, else null (power exists only for the parent GPU), and
   * whether the read was whole: not when a call failed otherwise than by saying there is no MIG
   * (or no device in a slot), so the list may be short. A re-read keeps what it had then.
   */
  private migInstances(device: NvmlDeviceHandle, index: number): { readonly uuids: string[] | null; readonly whole: boolean } {
    const mode = this.call('nvmlDeviceGetMigMode', index, () => this.nvml.migMode(device));
    if (!mode.ok) return { uuids: null, whole: mode.rc === NvmlReturn.ERROR_NOT_SUPPORTED };
    if (mode.value.current !== NVML_DEVICE_MIG_ENABLE) return { uuids: null, whole: true };
    const max = this.call('nvmlDeviceGetMaxMigDeviceCount', index, () => this.nvml.maxMigDeviceCount(device));
    if (!max.ok) return { uuids: [], whole: false };
    const uuids: string[] = [];
    let whole = true;
    for (let i = 0; i < max.value; i++) {
      const mig = this.call('nvmlDeviceGetMigDeviceHandleByIndex', index, () => this.nvml.migDeviceHandle(device, i));
      if (!mig.ok) {
        if (mig.rc !== NvmlReturn.ERROR_NOT_FOUND) whole = false; // NOT_FOUND: no MIG device in this slot
        continue;
      }
      const uuid = this.call('nvmlDeviceGetUUID', index, () => this.nvml.uuid(mig.value));
      if (uuid.ok) uuids.push(uuid.value);
      else whole = false;
    }
    return { uuids, whole };
  }

  private choosePowerMethod(
    device: NvmlDeviceHandle,
    index: number,
    architecture: number | null,
    computeCapability: { major: number; minor: number } | null,
  ): { method: NvmlPowerMethod; averaged: boolean } {
    const field = this.call('nvmlDeviceGetFieldValues', index, () =>
      this.nvml.fieldValue(device, NvmlFieldId.POWER_INSTANT, NVML_POWER_SCOPE_GPU));
    if (field.ok) return { method: 'field_instant', averaged: false };
    const usage = this.call('nvmlDeviceGetPowerUsage', index, () => this.nvml.powerUsageMw(device));
    if (usage.rc === NvmlReturn.ERROR_NOT_SUPPORTED) return { method: 'none', averaged: false };
    return { method: 'power_usage', averaged: powerUsageIsAveraged(architecture, computeCapability) };
  }

  private call<T>(name: WatchedCall, gpuIndex: number, fn: () => T): T {
    this.watch.begin(name, gpuIndex);
    try {
      return fn();
    } finally {
      this.watch.end();
    }
  }

  private explain(rc: number): string {
    return `${nvmlReturnName(rc)} (${this.errorString(rc)})`;
  }

  private errorString(rc: number): string {
    return this.call('nvmlErrorString', -1, () => this.nvml.errorString(rc));
  }
}

/** NVML itself no longer answers (not this GPU): only a new nvmlInit can help. */
function isContextError(rc: number): boolean {
  return rc === NvmlReturn.ERROR_UNINITIALIZED || rc === NvmlReturn.ERROR_DRIVER_NOT_LOADED;
}

function valueOrNull<T>(result: NvmlResult<T>): T | null {
  return result.ok ? result.value : null;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
