import type { HostInventory } from '../collectors/host/host-inventory.js';
import { architectureName, NvmlArchitecture } from '../collectors/nvml/nvml-constants.js';
import type { NvmlProbeResult } from '../collectors/nvml/nvml-probe.js';
import type { NvidiaSmiProbeResult } from '../collectors/nvidia-smi/nvidia-smi-probe.js';
import type { ConfigSource } from './config-checks.js';
import type { PowerSetting } from './config-schema.js';

/** `tokenwatt doctor` exit status: the agent can run on measured GPU data. */
export const DOCTOR_EXIT_MEASURED = 0;
/** No measured GPU power source the agent would use: it could only run on simulated or replayed data, or not at all. */
export const DOCTOR_EXIT_NO_MEASURED_SOURCE = 1;
/** doctor itself could not run (bad option, internal error). */
export const DOCTOR_EXIT_ERROR = 2;

export type RaplProbe =
  | { readonly available: true; readonly root: string; readonly zones: readonly string[]; readonly notes: readonly string[] }
  | { readonly available: false; readonly root: string; readonly reason: string; readonly message: string; readonly fix: string };

/** Everything doctor found, as printed by --json. */
export interface DoctorReport {
  /** Whether `tokenwatt run` with `power` would measure (not simulate) and get samples. */
  readonly canRun: boolean;
  /** The agent's power setting judged (`auto`, `nvml`, `simulated`, `replay:FILE`...), and where it came from. */
  readonly power: { readonly setting: string; readonly from: ConfigSource };
  /** The measured source the agent would use with that setting; null for none (or simulated, replay). */
  readonly selected: 'nvml' | 'nvidia-smi' | null;
  /** The source `power auto` would use, whatever the setting. */
  readonly auto: 'nvml' | 'nvidia-smi' | null;
  readonly nvml: NvmlProbeResult;
  readonly nvidiaSmi: NvidiaSmiProbeResult;
  readonly rapl: RaplProbe;
  readonly host: HostInventory | null;
  /** What to change for better data, most important first. */
  readonly advice: readonly string[];
  readonly exitCode: number;
}

/** The setting as `--power` takes it. */
export function powerSettingText(power: PowerSetting): string {
  return power.kind === 'replay' ? `replay:${power.file}` : power.kind;
}

/** What to change, derived from the probes and the power setting judged. */
export function adviseOn(nvml: NvmlProbeResult, smi: NvidiaSmiProbeResult, rapl: RaplProbe, power: PowerSetting = { kind: 'auto' }): string[] {
  const advice: string[] = [];
  // A source named outright is the only one the agent tries: the other one, if it answers, is unused.
  if (power.kind === 'nvml' && !nvml.available && smi.available) advice.push('power is nvml, which this node cannot use, while nvidia-smi answers: set power to auto (NVML when it can be used, else nvidia-smi), or make NVML loadable.');
  if (power.kind === 'nvidia-smi' && nvml.available) advice.push('power is nvidia-smi while NVML can be used: power auto or nvml would use NVML, which gives the energy counter (exact energy) where nvidia-smi gives power samples only.');
  if (!nvml.available && !smi.available) {
    advice.push(`No measured GPU power source. NVML: ${nvml.failure.fix}. nvidia-smi: ${smi.fix}. ` +
      'Until then the agent can only run with --power simulated (every figure labelled simulated) or --power replay:FILE.');
  } else if (!nvml.available) {
    advice.push(`Make NVML loadable (${nvml.failure.fix}): it gives the cumulative energy counter (exact energy) and instantaneous power, where nvidia-smi gives power samples only.`);
  }
  if (nvml.available) {
    for (const d of nvml.devices) {
      if (!d.energyCounter) advice.push(`GPU ${d.index} (${d.name}) has no energy counter (${noCounterWhy(d.architecture)}): energy is integrated from power samples; keep the sample period at 100 ms or less.`);
      if (d.powerAveraged) advice.push(`GPU ${d.index} (${d.name}) gives only 1 s averaged power (nvmlDeviceGetPowerUsage): a driver that answers NVML_FI_DEV_POWER_INSTANT gives instantaneous readings; energy stays exact through the counter.`);
      if (d.powerMethod === 'none') advice.push(`GPU ${d.index} (${d.name}) reports no power at all: check that power management is supported on this board.`);
      if (d.migEnabled) advice.push(`MIG is on for GPU ${d.index}: power exists per physical GPU only; send the MIG UUIDs (${d.migInstances.slice(0, 2).join(', ')}${d.migInstances.length > 2 ? ', ...' : ''}) in request records' "gpus" so requests are attributed within GPU ${d.index}.`);
    }
    if (nvml.achievedPeriodMs !== null && nvml.achievedPeriodMs > nvml.requestedPeriodMs * 1.5) {
      advice.push(`NVML sampling achieved ${nvml.achievedPeriodMs} ms instead of ${nvml.requestedPeriodMs} ms: the node is loaded or the driver slow; enable persistence mode (nvidia-persistenced).`);
    }
    for (const u of nvml.unusable) advice.push(`GPU ${u.index} is not sampled through NVML: ${u.message}.`);
    if (nvml.samples === 0) advice.push(`NVML started but gave no sample in the probe: \`tokenwatt run --power auto\` would use it and never get ready. ${nvml.devices.length === 0 ? '' : 'Check the problems reported below and the kernel log (dmesg) for Xid errors.'}`.trim());
    if (nvml.problems.length > 0) advice.push(`NVML reported problems while probing: ${nvml.problems.map((p) => `${p.reason}: ${p.message}`).join('; ')}.`);
  } else if (smi.available) {
    if (smi.samples === 0) advice.push('nvidia-smi started but gave no sample in the probe: `tokenwatt run --power auto` would use it and never get ready.');
    advice.push('Through nvidia-smi there is no energy counter: energy is integrated from power samples (flagged as such in every report).');
    if (smi.quality.powerAveraged) advice.push('This nvidia-smi gives 1 s averaged power (no power.draw.instant on this driver or board): a newer driver offers power.draw.instant.');
    if (smi.achievedPeriodMs !== null && smi.achievedPeriodMs > smi.requestedPeriodMs * 1.5) {
      advice.push(`nvidia-smi achieved ${smi.achievedPeriodMs} ms instead of ${smi.requestedPeriodMs} ms between samples.`);
    }
  }
  if (!rapl.available) advice.push(`Host power: ${rapl.message} Fix: ${rapl.fix}.`);
  return advice;
}

const yes = (b: boolean) => (b ? 'yes' : 'no');
const FOUND_WHILE_PROBING = '; found while probing (not listed when the probe started)';

/** Why a GPU that NVML describes has no energy counter: its age, or (Volta and newer) the board or driver. */
function noCounterWhy(architecture: number | null): string {
  if (architecture !== null && architecture >= NvmlArchitecture.KEPLER && architecture < NvmlArchitecture.VOLTA) return 'pre-Volta';
  return `not supported by this ${architectureName(architecture)} board or driver, e.g. a vGPU guest`;
}
const ms = (v: number | null) => (v === null ? 'not measured (fewer than 2 samples per GPU)' : `${Math.round(v)} ms`);

/** The human-readable report. */
export function renderDoctorText(report: DoctorReport): string {
  const out: string[] = ['tokenwatt doctor: what this node can measure, and how well', ''];
  const { nvml, nvidiaSmi: smi, rapl } = report;

  out.push(`NVML (${nvml.library})`);
  if (nvml.available) {
    out.push(`  available: yes, driver ${nvml.driverVersion ?? 'unknown'}, ${nvml.devices.length} GPU(s)`);
    out.push(`  sampling period: requested ${nvml.requestedPeriodMs} ms, achieved ${ms(nvml.achievedPeriodMs)} (${nvml.samples} samples)`);
    for (const d of nvml.devices) {
      const power = d.powerMethod === 'field_instant' ? 'instantaneous (NVML_FI_DEV_POWER_INSTANT)'
        : d.powerMethod === 'power_usage' ? (d.powerAveraged ? '1 s average (nvmlDeviceGetPowerUsage)' : 'instantaneous (nvmlDeviceGetPowerUsage)') : 'none';
      out.push(`  GPU ${d.index} ${d.name} [${architectureName(d.architecture)}] ${d.uuid}${nvml.foundWhileProbing.includes(d.uuid) ? FOUND_WHILE_PROBING : ''}`);
      out.push(`    power limit ${d.powerLimitMw === null ? 'unknown' : `${d.powerLimitMw / 1000} W`}; energy counter: ${yes(d.energyCounter)}; power: ${power}`);
      out.push(`    MIG: ${d.migEnabled ? `enabled, ${d.migInstances.length} instance(s): ${d.migInstances.join(', ') || 'none created'}` : 'off'}`);
    }
    for (const u of nvml.unusable) out.push(`  GPU ${u.index} not sampled: ${u.message}`);
  } else {
    out.push(`  available: no (${nvml.failure.reason}): ${nvml.failure.message}`);
    out.push(`  fix: ${nvml.failure.fix}`);
  }
  out.push('');

  out.push(`nvidia-smi (${smi.binary})`);
  if (smi.available) {
    out.push(`  available: yes, ${smi.gpus.length} GPU(s), streaming ${smi.fields.join(',')}`);
    out.push(`  sampling period: requested ${smi.requestedPeriodMs} ms, achieved ${ms(smi.achievedPeriodMs)} (${smi.samples} samples)`);
    out.push(`  energy counter: no; power: ${smi.fields.includes('power.draw.instant') ? 'instantaneous (power.draw.instant)' : 'power.draw (1 s average on Ampere and newer)'}`);
    for (const g of smi.gpus) {
      out.push(`  GPU ${g.index} ${g.name} ${g.uuid}; MIG: ${g.migEnabled ? `enabled, ${g.migInstances?.length ?? 0} instance(s)` : 'off'}${smi.foundWhileProbing.includes(g.uuid) ? FOUND_WHILE_PROBING : ''}`);
    }
  } else {
    out.push(`  available: no (${smi.reason}): ${smi.message}`);
    out.push(`  fix: ${smi.fix}`);
  }
  out.push('');

  out.push(`Host power (RAPL under ${rapl.root})`);
  if (rapl.available) {
    out.push(`  available: yes, zones ${rapl.zones.join(', ')}`);
    for (const n of rapl.notes.slice(1)) out.push(`  ${n}`);
  } else {
    out.push(`  available: no (${rapl.reason}): ${rapl.message}`);
    out.push(`  fix: ${rapl.fix}`);
  }
  if (report.host) {
    const h = report.host;
    out.push(`  host: ${h.hostname}, ${h.cpuModel} (${h.cpuCores} cores), ${(h.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${h.os.distro} ${h.os.release} (${h.os.kernel}), machine id ${h.machineId ?? 'unknown'}`);
  }
  out.push('');

  out.push(`The agent would use: ${conclusion(report)}`);
  // doctor looks once; the agent keeps looking, so a GPU missing here may still be measured.
  if (report.selected) {
    out.push('GPUs that appear later (hot-added, or one that hung at start-up) or change (MIG devices created or destroyed) are learnt by the running agent without a restart: ' +
      `${report.selected === 'nvml' ? 'NVML counts its GPUs and reads their MIG devices again' : "nvidia-smi's GPU list is read again"} every 10 s. This report shows the GPUs present while probed.`);
  }
  if (report.advice.length > 0) {
    out.push('', 'What to change for better data:');
    for (const a of report.advice) out.push(`  - ${a}`);
  }
  out.push('', `exit status ${report.exitCode}`);
  return `${out.join('\n')}\n`;
}

/** Where the power setting came from, as the report says it. */
function powerFrom(from: ConfigSource): string {
  return from === 'flag' ? '--power' : from === 'env' ? 'TOKENWATT_POWER' : from === 'file' ? "the config file's power" : 'the default';
}

/** The report's last line: what the agent would use with its power setting, and whether it measures. */
function conclusion(report: DoctorReport): string {
  const { setting, from } = report.power;
  const named = from === 'default' ? `--power ${setting}` : `power ${setting}, from ${powerFrom(from)}`;
  if (setting === 'simulated' || setting.startsWith('replay:')) {
    return `${setting} (from ${powerFrom(from)}), not a measured source: no figure would be measured on this node. ` +
      `With power auto it would use ${report.auto ?? 'nothing measured'}.`;
  }
  if (report.selected && report.canRun) return `${report.selected} (${named}). It can run with measured data.`;
  if (report.selected) return `${report.selected} (${named}), but it gave no sample while probed: the agent would start and never get ready.`;
  if (setting === 'auto') return 'nothing measured. `tokenwatt run --power auto` would refuse to start; only --power simulated or replay:FILE would run.';
  const other = report.auto === null ? '' : ` ${report.auto} is: power auto or ${report.auto} would use it.`;
  return `nothing measured. \`tokenwatt run\` would refuse to start (exit 3) with power ${setting} (from ${powerFrom(from)}): ${setting === 'nvml' ? 'NVML' : 'nvidia-smi'} is not available.${other}`;
}
