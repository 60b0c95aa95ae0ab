import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { achievedPeriodMs } from '../achieved-period.js';
import { GpuTally } from '../gpu-tally.js';
import type { PowerSourceError, PowerSourceQuality } from '../power-source.js';
import { NvidiaSmiInitError, NvidiaSmiPowerSource, type NvidiaSmiFailureReason } from './nvidia-smi-power-source.js';

export interface NvidiaSmiProbeOptions {
  readonly samplePeriodMs?: number;
  readonly probeMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

export type NvidiaSmiProbeResult =
  | {
    readonly available: true;
    readonly binary: string;
    readonly fields: readonly string[];
    /** The GPUs at the end of the probe: those listed at its start, and those the source learnt while it ran. */
    readonly gpus: readonly GpuInfo[];
    /** UUIDs of the GPUs learnt while probing (not listed when it started). */
    readonly foundWhileProbing: readonly string[];
    readonly requestedPeriodMs: number;
    readonly achievedPeriodMs: number | null;
    readonly samples: number;
    readonly averagedSamples: number;
    readonly problems: readonly PowerSourceError[];
    readonly quality: PowerSourceQuality;
  }
  | { readonly available: false; readonly binary: string; readonly reason: NvidiaSmiFailureReason | 'error'; readonly message: string; readonly fix: string };

/** What the nvidia-smi fallback can do on this node, for `tokenwatt doctor`. */
export async function probeNvidiaSmi(binary = 'nvidia-smi', options: NvidiaSmiProbeOptions = {}): Promise<NvidiaSmiProbeResult> {
  const requestedPeriodMs = options.samplePeriodMs ?? 100;
  const probeMs = options.probeMs ?? 1500;
  const source = new NvidiaSmiPowerSource({
    binary,
    samplePeriodMs: requestedPeriodMs,
    commandTimeoutMs: 10_000,
    startupTimeoutMs: Math.max(probeMs, 5000),
    ...(options.env ? { env: options.env } : {}),
  });
  try {
    const gpus = new GpuTally(await source.init());
    const samples: PowerSample[] = [];
    const problems: PowerSourceError[] = [];
    source.start((batch) => samples.push(...batch), (problem) => problems.push(problem), (gpu) => gpus.learn(gpu));
    // The child needs a moment to start; sample until probeMs after the first line (bounded).
    const deadline = Date.now() + probeMs + 5000;
    while (samples.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, probeMs));
    await source.shutdown();
    return {
      available: true,
      binary,
      fields: source.streamFields(),
      gpus: gpus.all(),
      foundWhileProbing: gpus.found(),
      requestedPeriodMs,
      achievedPeriodMs: achievedPeriodMs(samples),
      samples: samples.length,
      averagedSamples: samples.filter((s) => s.powerAveraged).length,
      problems,
      quality: source.quality(),
    };
  } catch (error) {
    await source.shutdown();
    if (error instanceof NvidiaSmiInitError) return { available: false, binary, reason: error.reason, message: error.detail, fix: error.fix };
    return { available: false, binary, reason: 'error', message: String(error), fix: 'report this as a tokenwatt bug' };
  }
}
