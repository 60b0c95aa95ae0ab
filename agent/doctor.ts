import { readHostInventory, type HostInventory } from '../collectors/host/host-inventory.js';
import { RaplUnavailableError } from '../collectors/host/rapl-errors.js';
import { RaplHostPowerSource } from '../collectors/host/rapl-host-power-source.js';
import { probeNvml } from '../collectors/nvml/nvml-probe.js';
import { probeNvidiaSmi } from '../collectors/nvidia-smi/nvidia-smi-probe.js';
import type { ConfigSource } from './config-checks.js';
import type { PowerSetting } from './config-schema.js';
import {
  adviseOn, DOCTOR_EXIT_MEASURED, DOCTOR_EXIT_NO_MEASURED_SOURCE, powerSettingText, renderDoctorText, type DoctorReport, type RaplProbe,
} from './doctor-report.js';

export { selectPowerSource, NoMeasuredPowerSourceError } from './doctor-source-selection.js';
export type { SelectPowerSourceOptions, SelectedPowerSource, SourceAttempt } from './doctor-source-selection.js';
export { DOCTOR_EXIT_ERROR, DOCTOR_EXIT_MEASURED, DOCTOR_EXIT_NO_MEASURED_SOURCE, renderDoctorText } from './doctor-report.js';
export type { DoctorReport, RaplProbe } from './doctor-report.js';

export interface DoctorOptions {
  /** The power source the agent would be started with (its `power`); default auto. */
  readonly power?: PowerSetting;
  /** Where that setting came from, for the report. Default 'default'. */
  readonly powerFrom?: ConfigSource;
  /** libnvidia-ml path; default TOKENWATT_NVML_LIBRARY, else the loader's libnvidia-ml.so.1. */
  readonly nvmlLibrary?: string;
  /** nvidia-smi executable; default "nvidia-smi" on PATH. */
  readonly nvidiaSmi?: string;
  /** Default /sys/class/powercap. */
  readonly powercapRoot?: string;
  /** Period each GPU source is probed at. Default 100 ms. */
  readonly samplePeriodMs?: number;
  /** How long each GPU source samples to measure the period achieved. Default 1500 ms. */
  readonly probeMs?: number;
  readonly callTimeoutMs?: number;
  /** Environment of nvidia-smi children. */
  readonly env?: NodeJS.ProcessEnv;
  /** Read the host inventory (systeminformation). Default true. */
  readonly hostInventory?: boolean;
}

/**
 * `tokenwatt doctor`: probes every power source this node might have (the real code paths, for a
 * moment each), says which one `--power auto` would use and how good its data is, and what to
 * change. exitCode: 0 measured GPU data available, 1 none (see doctor-report.ts).
 */
export async function runDoctor(options: DoctorOptions = {}): Promise<{ report: DoctorReport; text: string; exitCode: number }> {
  const samplePeriodMs = options.samplePeriodMs ?? 100;
  const probeMs = options.probeMs ?? 1500;
  const [nvml, nvidiaSmi, rapl, host] = await Promise.all([
    probeNvml(options.nvmlLibrary, { samplePeriodMs, probeMs, callTimeoutMs: options.callTimeoutMs ?? 2000 }),
    probeNvidiaSmi(options.nvidiaSmi ?? 'nvidia-smi', { samplePeriodMs, probeMs, ...(options.env ? { env: options.env } : {}) }),
    probeRapl(options.powercapRoot ?? '/sys/class/powercap'),
    options.hostInventory === false ? Promise.resolve<HostInventory | null>(null) : readHostInventory().catch(() => null),
  ]);
  // What the agent's `power` would pick (auto: the first source whose start-up succeeds; nvml or
  // nvidia-smi: that one or nothing; simulated and replay measure nothing), and whether it
  // measures: a source that starts but gave no sample while probed would never get ready.
  const power = options.power ?? { kind: 'auto' };
  const auto = nvml.available ? 'nvml' : nvidiaSmi.available ? 'nvidia-smi' : null;
  const selected = power.kind === 'auto' ? auto
    : power.kind === 'nvml' ? (nvml.available ? 'nvml' : null)
      : power.kind === 'nvidia-smi' ? (nvidiaSmi.available ? 'nvidia-smi' : null)
        : null;
  const sampled = selected === 'nvml' ? nvml.available && nvml.samples > 0 : selected === 'nvidia-smi' ? nvidiaSmi.available && nvidiaSmi.samples > 0 : false;
  const exitCode = sampled ? DOCTOR_EXIT_MEASURED : DOCTOR_EXIT_NO_MEASURED_SOURCE;
  const report: DoctorReport = {
    canRun: sampled,
    power: { setting: powerSettingText(power), from: options.powerFrom ?? 'default' },
    selected,
    auto,
    nvml,
    nvidiaSmi,
    rapl,
    host,
    advice: adviseOn(nvml, nvidiaSmi, rapl, power),
    exitCode,
  };
  return { report, text: renderDoctorText(report), exitCode };
}

async function probeRapl(root: string): Promise<RaplProbe> {
  const rapl = new RaplHostPowerSource({ powercapRoot: root });
  try {
    await rapl.init();
    const q = rapl.quality();
    return { available: true, root, zones: q.zones, notes: q.notes };
  } catch (error) {
    if (error instanceof RaplUnavailableError) return { available: false, root, reason: error.reason, message: error.detail, fix: error.fix };
    return { available: false, root, reason: 'error', message: String(error), fix: 'report this as a tokenwatt bug' };
  }
}
