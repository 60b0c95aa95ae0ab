import type { EpochMs, Joules, Watts } from './units.js';

/**
 * One reading of one GPU. Sources emit these; the model turns consecutive samples of a GPU
 * into energy intervals. Power and the energy counter are independent: either may be missing.
 */
export interface PowerSample {
  /** Wall clock of the reading. */
  readonly timestampMs: EpochMs;
  /** GPU UUID: the stable key (index order is not stable across reboots). */
  readonly gpuUuid: string;
  /** GPU index as the driver numbers it now; for display only. */
  readonly gpuIndex: number;
  /** Power in watts, or null when the source had none this time. */
  readonly powerW: Watts | null;
  /**
   * Cumulative energy counter in joules since driver load (NVML
   * nvmlDeviceGetTotalEnergyConsumption / 1000), or null where the hardware has none.
   */
  readonly energyJ: Joules | null;
  /** True when powerW is a ~1 s moving average rather than instantaneous (NVML on Ampere+ except GA100). */
  readonly powerAveraged?: boolean;
  /** True for numbers produced by the simulator. Simulated data is never passed off as measured. */
  readonly simulated?: boolean;
  /**
   * The energy counter starts a new run here: this reading and the ones after it are not comparable
   * with the readings before (a simulator's or a replay's counter starts again with each agent
   * process). The interval into it is counted from power, as after a reset, whatever the values.
   */
  readonly counterRunStart?: boolean;
}

/** A GPU as a power source knows it. */
export interface GpuInfo {
  readonly uuid: string;
  readonly index: number;
  readonly name: string;
  /** Enforced power limit in watts, when known. */
  readonly powerLimitW?: Watts | null;
  readonly migEnabled?: boolean;
  /** MIG instance UUIDs on this physical GPU (requests on them are attributed to this GPU). */
  readonly migInstances?: readonly string[];
}
