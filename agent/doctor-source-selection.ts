import type { Logger } from 'pino';
import { NvmlInitError } from '../collectors/nvml/nvml-init-failure.js';
import { NvmlPowerSource } from '../collectors/nvml/nvml-power-source.js';
import { NvidiaSmiInitError, NvidiaSmiPowerSource } from '../collectors/nvidia-smi/nvidia-smi-power-source.js';
import type { PowerSource } from '../collectors/power-source.js';
import type { GpuInfo } from '../model/power-sample.js';

export interface SelectPowerSourceOptions {
  /** auto: NVML, else nvidia-smi, else an error. nvml / nvidia-smi: that one or an error. */
  readonly prefer: 'auto' | 'nvml' | 'nvidia-smi';
  readonly samplePeriodMs: number;
  /** Deadline of each NVML call. */
  readonly callTimeoutMs: number;
  readonly nvmlLibrary?: string;
  /** nvidia-smi executable; default "nvidia-smi" on PATH. */
  readonly nvidiaSmi?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

/** A measured source that could not be used, and what would fix it. */
export interface SourceAttempt {
  readonly kind: 'nvml' | 'nvidia-smi';
  readonly reason: string;
  readonly message: string;
  readonly fix: string;
}

export interface SelectedPowerSource {
  /** Initialised (init() done), not started. */
  readonly source: PowerSource;
  readonly kind: 'nvml' | 'nvidia-smi';
  readonly gpus: readonly GpuInfo[];
  /** Sources tried before this one (auto falling back from NVML to nvidia-smi). */
  readonly skipped: readonly SourceAttempt[];
}

/** No measured GPU power source works. The simulator is never picked silently in its place. */
export class NoMeasuredPowerSourceError extends Error {
  constructor(readonly attempts: readonly SourceAttempt[]) {
    super([
      'No measured GPU power source on this node:',
      ...attempts.map((a) => `  - ${a.kind}: ${a.message} Fix: ${a.fix}`),
      'Run `tokenwatt doctor` for details. To try tokenwatt without a GPU, use --power simulated (every figure is then labelled simulated).',
    ].join('\n'));
    this.name = 'NoMeasuredPowerSourceError';
  }
}

/**
 * The `--power auto|nvml|nvidia-smi` choice, made by initialising the candidates in order of data
 * quality: NVML (energy counter, instantaneous power, in-process), then nvidia-smi (power only).
 */
export async function selectPowerSource(options: SelectPowerSourceOptions): Promise<SelectedPowerSource> {
  const attempts: SourceAttempt[] = [];
  const order: ('nvml' | 'nvidia-smi')[] = options.prefer === 'auto' ? ['nvml', 'nvidia-smi'] : [options.prefer];
  for (const kind of order) {
    const source = kind === 'nvml'
      ? new NvmlPowerSource({
        samplePeriodMs: options.samplePeriodMs,
        callTimeoutMs: options.callTimeoutMs,
        ...(options.nvmlLibrary ? { libraryPath: options.nvmlLibrary } : {}),
        ...(options.log ? { log: options.log } : {}),
      })
      : new NvidiaSmiPowerSource({
        samplePeriodMs: Math.max(1, Math.round(options.samplePeriodMs)),
        ...(options.nvidiaSmi ? { binary: options.nvidiaSmi } : {}),
        ...(options.env ? { env: options.env } : {}),
        ...(options.log ? { log: options.log } : {}),
      });
    try {
      const gpus = await source.init();
      if (attempts.length > 0) {
        options.log?.warn({ skipped: attempts }, `GPU power from ${kind}: ${attempts.map((a) => `${a.kind} unavailable (${a.reason})`).join(', ')}`);
      } else {
        options.log?.info({ kind, gpus: gpus.length }, `GPU power from ${kind}`);
      }
      return { source, kind, gpus, skipped: attempts };
    } catch (error) {
      await source.shutdown();
      if (error instanceof NvmlInitError || error instanceof NvidiaSmiInitError) {
        attempts.push({ kind, reason: error.reason, message: error.detail, fix: error.fix });
        continue;
      }
      throw error;
    }
  }
  throw new NoMeasuredPowerSourceError(attempts);
}
