import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import type { PowerSourceError, PowerSourceQuality } from '../power-source.js';
import { achievedPeriodMs } from '../achieved-period.js';
import { GpuTally } from '../gpu-tally.js';
import { DEFAULT_NVML_LIBRARY } from './nvml-binding.js';
import { NvmlInitError, type NvmlInitFailure } from './nvml-init-failure.js';
import { NvmlPowerSource } from './nvml-power-source.js';
import type { NvmlDeviceDescription, NvmlUnusableGpu } from './nvml-worker-protocol.js';

export interface NvmlProbeOptions {
  /** Period to sample at while probing. Default 100 ms. */
  readonly samplePeriodMs?: number;
  /** How long to sample. Default 1500 ms. */
  readonly probeMs?: number;
  readonly callTimeoutMs?: number;
}

export type NvmlProbeResult =
  | {
    readonly available: true;
    readonly library: string;
    readonly driverVersion: string | null;
    /** The GPUs at the end of the probe: those opened at its start, and those the source learnt while it ran. */
    readonly gpus: readonly GpuInfo[];
    /** UUIDs of the GPUs learnt while probing (not among those opened when it started). */
    readonly foundWhileProbing: readonly string[];
    readonly devices: readonly NvmlDeviceDescription[];
    /** GPUs NVML counts but that are not sampled, with why. */
    readonly unusable: readonly NvmlUnusableGpu[];
    readonly requestedPeriodMs: number;
    readonly achievedPeriodMs: number | null;
    readonly samples: number;
    readonly problems: readonly PowerSourceError[];
    readonly quality: PowerSourceQuality;
  }
  | { readonly available: false; readonly library: string; readonly failure: NvmlInitFailure };

/**
 * What NVML can do on this node, for `tokenwatt doctor`: starts the real NVML source (worker,
 * deadlines and all), samples for a moment to measure the period achieved, and stops it.
 */
export async function probeNvml(libraryPath?: string, options: NvmlProbeOptions = {}): Promise<NvmlProbeResult> {
  const library = libraryPath ?? (process.env.TOKENWATT_NVML_LIBRARY || DEFAULT_NVML_LIBRARY);
  const requestedPeriodMs = options.samplePeriodMs ?? 100;
  const source = new NvmlPowerSource({ libraryPath: library, samplePeriodMs: requestedPeriodMs, callTimeoutMs: options.callTimeoutMs ?? 2000 });
  try {
    const gpus = new GpuTally(await source.init());
    const samples: PowerSample[] = [];
    const problems: PowerSourceError[] = [];
    source.start((batch) => samples.push(...batch), (problem) => problems.push(problem), (gpu) => gpus.learn(gpu));
    await new Promise((resolve) => setTimeout(resolve, options.probeMs ?? 1500));
    await source.shutdown();
    return {
      available: true,
      library,
      driverVersion: source.driverVersion(),
      gpus: gpus.all(),
      foundWhileProbing: gpus.found(),
      devices: source.devices(),
      unusable: source.unusableGpus(),
      requestedPeriodMs,
      achievedPeriodMs: achievedPeriodMs(samples),
      samples: samples.length,
      problems,
      quality: source.quality(),
    };
  } catch (error) {
    await source.shutdown();
    if (error instanceof NvmlInitError) return { available: false, library, failure: error.toFailure() };
    return { available: false, library, failure: { reason: 'init_failed', code: null, message: String(error), fix: 'report this as a tokenwatt bug' } };
  }
}
