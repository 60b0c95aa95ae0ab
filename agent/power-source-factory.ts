import type { PowerSource } from '../collectors/power-source.js';
import { ReplayPowerSource } from '../collectors/replay/replay-power-source.js';
import { SimulatedGpuNode } from '../collectors/simulated/simulated-gpu-node.js';
import { selectPowerSource } from './doctor.js';
import type { TokenwattConfig } from './config.js';
import { defaultDemoNodeConfig } from './demo-workload.js';
import type { Logger } from './logger.js';

/** Per-call deadline of hardware reads: a hung driver call is abandoned after this. */
const CALL_TIMEOUT_MS = 2000;

/**
 * The power source the config names. `auto` picks the best measured source (NVML, then
 * nvidia-smi) and never falls back to the simulator silently: simulated data must be asked for.
 */
export async function createPowerSource(config: TokenwattConfig, log: Logger): Promise<PowerSource> {
  const samplePeriodMs = Math.round(1000 / config.sampleRateHz);
  const power = config.power;
  switch (power.kind) {
    case 'simulated':
      // An idle simulated node (no workload): for trying the agent without a GPU. `demo` adds traffic.
      return new SimulatedGpuNode(defaultDemoNodeConfig({ samplePeriodMs }));
    case 'replay':
      return new ReplayPowerSource({
        path: power.file,
        keepTimestamps: config.replayKeepTimestamps,
        nvidiaSmiUtcOffsetMinutes: config.replayNvidiaSmiUtcOffset,
      });
    case 'auto':
    case 'nvml':
    case 'nvidia-smi': {
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
