import type { PowerSource } from '../collectors/power-source.js';
import type { TokenwattConfig } from './config.js';
import type { Logger } from './logger.js';
import { RECORD_FUTURE_SKEW_MS } from './record-context.js';

/** Per-call deadline of hardware reads: a hung driver call is abandoned after this. */
const CALL_TIMEOUT_MS = 2000;

/**
 * The power source the config names. `auto` picks the best measured source (NVML, then
 * nvidia-smi) and never falls back to the simulator silently: simulated data must be asked for.
 * Only the chosen kind's modules are loaded (koffi's native library, the simulator's
 * calibration), so that a long-running agent does not hold the others in memory.
 */
export async function createPowerSource(config: TokenwattConfig, log: Logger): Promise<PowerSource> {
  const samplePeriodMs = Math.round(1000 / config.sampleRateHz);
  const power = config.power;
  switch (power.kind) {
    case 'simulated': {
      const { SimulatedGpuNode } = await import('../collectors/simulated/simulated-gpu-node.js');
      const { defaultDemoNodeConfig } = await import('./demo-workload.js');
      // An idle simulated node (no workload): for trying the agent without a GPU. `demo` adds traffic.
      return new SimulatedGpuNode(defaultDemoNodeConfig({ samplePeriodMs }));
    }
    case 'replay': {
      const { ReplayPowerSource } = await import('../collectors/replay/replay-power-source.js');
      const source = new ReplayPowerSource({
        path: power.file,
        keepTimestamps: config.replayKeepTimestamps,
        loop: config.replayLoop,
        // Samples must arrive before their period settles; ahead of the clock, as much as records may be.
        keptTimestampsWindow: { beforeMs: config.settleLateness * 1000, afterMs: RECORD_FUTURE_SKEW_MS },
        nvidiaSmiUtcOffsetMinutes: config.replayNvidiaSmiUtcOffset,
        // Played once (not looping): without this line the agent would only turn not ready, with no word of why.
        onEnd: () =>
          log.warn(
            { file: power.file },
            `replay: ${power.file} ended (its last sample replayed); the agent goes on without samples, so /readyz names its GPUs as not sampled. Stop it (SIGTERM); started again, it replays the trace from its first sample (--replay-loop true replays it without end)`,
          ),
      });
      // Read and checked now, as the measured sources are: a trace that cannot serve is no power source (exit 3).
      await source.init();
      return source;
    }
    case 'auto':
    case 'nvml':
    case 'nvidia-smi': {
      const { selectPowerSource } = await import('./doctor-source-selection.js');
      const selected = await selectPowerSource({
        prefer: power.kind,
        samplePeriodMs,
        callTimeoutMs: CALL_TIMEOUT_MS,
        ...(config.nvmlLibrary ? { nvmlLibrary: config.nvmlLibrary } : {}),
        ...(config.nvidiaSmi ? { nvidiaSmi: config.nvidiaSmi } : {}),
        log,
      });
      return selected.source;
    }
  }
}
