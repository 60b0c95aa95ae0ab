import type { NvmlInitFailure } from './nvml-init-failure.js';

/** How a GPU's power is read, chosen once at start-up from what the GPU answers. */
export type NvmlPowerMethod = 'field_instant' | 'power_usage' | 'none';

/** One physical GPU as the worker found it (plain data: crosses the thread boundary). */
export interface NvmlDeviceDescription {
  readonly index: number;
  readonly uuid: string;
  readonly name: string;
  readonly powerLimitMw: number | null;
  /** nvmlDeviceArchitecture_t, or null when the driver would not say. */
  readonly architecture: number | null;
  readonly computeCapability: { readonly major: number; readonly minor: number } | null;
  readonly migEnabled: boolean;
  readonly migInstances: readonly string[];
  /** nvmlDeviceGetTotalEnergyConsumption works (Volta and newer). */
  readonly energyCounter: boolean;
  readonly powerMethod: NvmlPowerMethod;
  /** Readings from `powerMethod` are ~1 s averages. */
  readonly powerAveraged: boolean;
}

/** Everything the worker learnt at start-up. */
export interface NvmlInventory {
  readonly driverVersion: string | null;
  readonly devices: readonly NvmlDeviceDescription[];
  /**
   * GPUs NVML counts but could not open (e.g. already lost), with why; `lost` when NVML said
   * NVML_ERROR_GPU_IS_LOST. The worker tries to open them again every `lostRetryMs`.
   */
  readonly unusable: readonly NvmlUnusableGpu[];
}

export interface NvmlUnusableGpu {
  readonly index: number;
  /** Known for a GPU set aside because a call hung while it was being opened at start-up, and for an unmeasurable one. */
  readonly uuid?: string;
  readonly message: string;
  readonly lost: boolean;
  /** NVML reads neither its power nor its energy: a capability, so it is never tried again. */
  readonly unmeasurable?: boolean;
}

/** One GPU's reading in one tick. Null fields: not available this time (see problems). */
export interface NvmlReading {
  readonly uuid: string;
  readonly index: number;
  readonly timestampMs: number;
  readonly powerMw: number | null;
  readonly energyMj: number | null;
  readonly powerAveraged: boolean;
}

/** A per-GPU problem met during a tick. */
export interface NvmlProblem {
  readonly uuid: string;
  /**
   * gpu_lost | read_error | power_method_changed | gpu_recovered, or gpu_opened: a GPU set aside
   * at start-up or not usable then was opened later (`device` says what it is), or
   * gpu_unmeasurable: such a GPU was opened and reads neither power nor energy (`device` too;
   * `message` is the reason alone), or gpu_described: an open GPU's MIG devices changed (`device`
   * describes it now), or
   * nvml_reinit_wanted: NVML does not answer for this GPU even through a handle looked up afresh
   * (or says it is not initialised), so the worker asks to be restarted with NVML initialised again.
   */
  readonly reason: string;
  readonly message: string;
  readonly device?: NvmlDeviceDescription;
}

/** What one tick read. */
export interface NvmlTick {
  readonly readings: readonly NvmlReading[];
  readonly problems: readonly NvmlProblem[];
}

export type MainToWorker =
  | {
    readonly type: 'start';
    readonly periodMs: number;
    /** Ticks are posted together at most this often (problems at once): fewer thread wake-ups. */
    readonly deliveryIntervalMs: number;
    readonly skipUuids: readonly string[];
  }
  | { readonly type: 'shutdown' };

export type WorkerToMain =
  | { readonly type: 'ready'; readonly inventory: NvmlInventory }
  | { readonly type: 'init_failed'; readonly failure: NvmlInitFailure }
  /** `endSeq`: the reading journal's position after the last reading in these ticks (nvml-reading-journal.ts). */
  | { readonly type: 'ticks'; readonly ticks: readonly NvmlTick[]; readonly endSeq: number }
  | { readonly type: 'closed' };

/** Passed to the worker at creation. */
export interface NvmlWorkerData {
  readonly libraryPath: string;
  readonly watchBuffer: SharedArrayBuffer;
  readonly watchBaseMs: number;
  /** Bumped by the main thread after each message it posts (worker-wake.ts). */
  readonly wakeBuffer: SharedArrayBuffer;
  /** How often a lost GPU is probed again. */
  readonly lostRetryMs: number;
  /** Every reading is also written here as it is taken, so a terminated worker loses none (nvml-reading-journal.ts). */
  readonly journalBuffer: SharedArrayBuffer;
  /**
   * GPUs not to touch at start-up, with their descriptions from before: set aside after a call on
   * them hung. The worker describes them as before and opens them only once a `start` message no
   * longer lists them in skipUuids. By description (index) since their UUID cannot be read
   * without calling into them.
   */
  readonly setAside: readonly NvmlDeviceDescription[];
  /**
   * GPUs a call hung on at start-up before NVML gave their UUID, with why: not opened at start,
   * but once a `start` message no longer lists unidentifiedGpuKey(index) in skipUuids.
   */
  readonly leftOut: readonly NvmlUnusableGpu[];
}

/** How a `start` message's skipUuids names a GPU whose UUID is not known: by its index. */
export function unidentifiedGpuKey(index: number): string {
  return `index:${index}`;
}

export function isUnidentifiedGpuKey(key: string): boolean {
  return key.startsWith('index:');
}
