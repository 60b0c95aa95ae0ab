import type { GpuInfo, PowerSample } from '../model/power-sample.js';

/** How good a source's data is; shown by `doctor`, /readyz and every report. */
export interface PowerSourceQuality {
  /** nvml | nvidia-smi | replay | simulated */
  readonly kind: string;
  /** Cumulative energy counter available (exact energy) or power integration only. */
  readonly energyCounter: boolean;
  /** Power readings are ~1 s averages, not instantaneous. */
  readonly powerAveraged: boolean;
  readonly simulated: boolean;
  /** Sampling period the source is configured for, in ms. */
  readonly samplePeriodMs: number;
  /** Free-form notes (e.g. "MIG enabled on GPU 0: power is per physical GPU"). */
  readonly notes: readonly string[];
}

/** A problem a source met while sampling; routed to one handler, never thrown at the agent. */
export interface PowerSourceError {
  readonly gpuUuid?: string;
  /** Short machine-readable reason, used as a metric label: timeout, gpu_lost, parse, exited, ... */
  readonly reason: string;
  readonly message: string;
}

/**
 * The seam between hardware and the agent (Kepler's PowerMeter). A source reads GPU power and
 * energy and pushes samples; it never blocks the caller and never throws out of its loop.
 */
export interface PowerSource {
  /**
   * The energy counter starts again with each agent process (a simulator, a replayed trace), so
   * its readings are not comparable with those a stopped agent stored: the settler marks each GPU's
   * first sample of the process as the start of a new counter run (PowerSample.counterRunStart).
   * False for a driver's counter (NVML, nvidia-smi), which runs on across agent restarts.
   */
  readonly counterRestartsWithProcess: boolean;
  /** Discover GPUs and prepare. Throws (with a clear message) only when the source cannot work at all. */
  init(): Promise<readonly GpuInfo[]>;
  /**
   * Start emitting samples to `onSamples` (a batch per tick) and problems to `onError`. A source
   * whose GPUs can change after init() tells `onGpu` of each GPU it learns or describes anew (a
   * GPU that hung at start-up, one found later), before the first sample of a new one.
   */
  start(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void, onGpu?: (gpu: GpuInfo) => void): void;
  /** Stop sampling and release resources. Idempotent. */
  shutdown(): Promise<void>;
  quality(): PowerSourceQuality;
  /**
   * GPUs the source sees but cannot name yet (an NVML call on one hung at start-up before it gave
   * the UUID): not among init()'s GPUs until onGpu tells of them, yet the node has them, so
   * readiness names them as not sampled. Absent or empty for a source whose GPUs are all known.
   */
  unidentifiedGpus?(): readonly UnidentifiedGpu[];
  /**
   * Other GPUs the source sees but does not sample, so not among its GPUs (one NVML reads neither
   * power nor energy from, as on a vGPU guest; one that could not be opened): readiness counts and
   * names them. Absent or empty for a source that samples every GPU it sees.
   */
  unsampledGpus?(): readonly UnsampledGpu[];
}

/** A GPU seen but not sampled, and why. */
export interface UnsampledGpu {
  readonly index: number;
  readonly uuid?: string;
  readonly reason: string;
  /** Tried again (it may be sampled later); false for a GPU that cannot be measured at all. */
  readonly retried: boolean;
}

/** A GPU known only by its index, and why. */
export interface UnidentifiedGpu {
  readonly index: number;
  readonly reason: string;
}
