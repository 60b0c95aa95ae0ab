import os from 'node:os';
import si from 'systeminformation';

/** What the host is, recorded once at start-up (into the ledger and the ESG report's provenance). */
export interface HostInventory {
  readonly hostname: string;
  readonly cpuModel: string;
  readonly cpuCores: number;
  readonly cpuPhysicalCores: number | null;
  readonly memoryBytes: number;
  /** /etc/machine-id (stable across reboots), when readable. */
  readonly machineId: string | null;
  readonly os: { readonly platform: string; readonly distro: string; readonly release: string; readonly kernel: string; readonly arch: string };
}

/**
 * Reads the host inventory through systeminformation. Call once at start-up: some of its probes
 * spawn processes. Every field falls back to node:os when systeminformation cannot tell.
 */
export async function readHostInventory(): Promise<HostInventory> {
  const [cpu, mem, osInfo, ids] = await Promise.all([
    si.cpu().catch(() => null),
    si.mem().catch(() => null),
    si.osInfo().catch(() => null),
    si.uuid().catch(() => null),
  ]);
  const fallbackModel = os.cpus()[0]?.model?.trim() || 'unknown CPU';
  const model = [cpu?.manufacturer, cpu?.brand].filter((s) => s && s.trim() !== '').join(' ').trim();
  return {
    hostname: osInfo?.hostname || os.hostname(),
    cpuModel: model || fallbackModel,
    cpuCores: cpu?.cores || os.cpus().length,
    cpuPhysicalCores: cpu?.physicalCores || null,
    memoryBytes: mem?.total || os.totalmem(),
    machineId: ids?.os || null,
    os: {
      platform: osInfo?.platform || os.platform(),
      distro: osInfo?.distro || os.type(),
      release: osInfo?.release || os.release(),
      kernel: osInfo?.kernel || os.release(),
      arch: osInfo?.arch || os.arch(),
    },
  };
}
