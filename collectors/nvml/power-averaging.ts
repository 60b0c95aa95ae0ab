import { NvmlArchitecture } from './nvml-constants.js';

/**
 * Whether nvmlDeviceGetPowerUsage (and nvidia-smi's power.draw) returns a ~1 s moving average
 * rather than an instantaneous reading on this GPU. NVML docs: "On Ampere (except GA100) or newer
 * GPUs, the API returns power averaged over 1 sec interval. On GA100 and older architectures,
 * instantaneous power is returned." GA100 is the one Ampere die with compute capability 8.0
 * (A100, A30); the other Ampere dies are 8.6/8.7.
 *
 * When the architecture is not known the answer is "averaged": claiming instantaneous readings
 * without knowing would overstate the data's quality.
 */
export function powerUsageIsAveraged(
  architecture: number | null,
  computeCapability: { readonly major: number; readonly minor: number } | null,
): boolean {
  if (architecture === null || architecture === NvmlArchitecture.UNKNOWN) return true;
  if (architecture < NvmlArchitecture.AMPERE) return false;
  if (architecture === NvmlArchitecture.AMPERE && computeCapability?.major === 8 && computeCapability.minor === 0) return false;
  return true;
}
