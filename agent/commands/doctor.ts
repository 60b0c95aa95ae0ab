import { Command, Option } from 'commander';
import { loadConfig, parsePowerSetting, type ConfigSource, type PowerSetting } from '../config.js';
import { nvmlCallsBlocked } from '../../collectors/nvml/blocked-calls.js';
import { DOCTOR_EXIT_ERROR, runDoctor } from '../doctor.js';
import { exitProcess } from '../exit-process.js';

interface DoctorFlags {
  readonly config?: string;
  readonly power?: string;
  readonly nvmlLibrary?: string;
  readonly nvidiaSmi?: string;
  readonly powercapRoot?: string;
  /** The default is a number; a value given is the flag's string (checked below). */
  readonly probeMs: string | number;
  readonly json?: boolean;
}

const DEFAULT_NVIDIA_SMI = 'nvidia-smi';
const DEFAULT_POWERCAP_ROOT = '/sys/class/powercap';

/**
 * `tokenwatt doctor`: what this node can measure, and how well. The report goes to `print`
 * (stdout by default); the exit status to process.exitCode.
 */
export function doctorCommand(print: (text: string) => void = (text) => process.stdout.write(text)): Command {
  return new Command('doctor')
    .description('What this node can measure, and how well: which GPU power sources exist (NVML, nvidia-smi) and which one the agent would use, the sampling period achieved, energy counter or not, averaged or instantaneous power, the MIG layout, host power (RAPL) access, and what to change for better data.')
    .addOption(new Option('--config <file>', "the agent's config file: doctor judges the source the agent would use (power) and looks where it would (nvmlLibrary, nvidiaSmi, hostPower.powercapRoot); flags and env vars win").env('TOKENWATT_CONFIG'))
    .addOption(new Option('--power <source>', 'the power source the agent would be started with: auto, nvml, nvidia-smi, simulated or replay:FILE (default: power of --config, else auto)').env('TOKENWATT_POWER'))
    .addOption(new Option('--nvml-library <file>', 'path of libnvidia-ml.so.1 (default: nvmlLibrary of --config, else found by the system loader)').env('TOKENWATT_NVML_LIBRARY'))
    .addOption(new Option('--nvidia-smi <path>', `nvidia-smi executable (default: nvidiaSmi of --config, else ${DEFAULT_NVIDIA_SMI})`).env('TOKENWATT_NVIDIA_SMI'))
    .addOption(new Option('--powercap-root <dir>', `RAPL powercap tree (default: hostPower.powercapRoot of --config, else ${DEFAULT_POWERCAP_ROOT})`).env('TOKENWATT_POWERCAP_ROOT'))
    .addOption(new Option('--probe-ms <ms>', 'how long each GPU source is sampled to measure its period').default(1500))
    .option('--json', 'print the report as one JSON object')
    .addHelpText('after', [
      '',
      'Exit status:',
      '  0  the agent can run on measured GPU data (NVML, or nvidia-smi as the fallback): the',
      '     source its power setting would use gave samples while probed',
      '  1  no measured GPU power source for that setting: `tokenwatt run` would refuse to start',
      '     (with auto: only --power simulated or --power replay:FILE would run; with nvml or',
      '     nvidia-smi: that source is not available), the setting is simulated or replay:FILE',
      '     (nothing measured), or the source it would use gave no sample (the agent would',
      '     start and never get ready)',
      '  2  doctor could not run (bad option, invalid --config)',
    ].join('\n'))
    .action(async function (this: Command, flags: DoctorFlags) {
      const probeMs = Number(flags.probeMs);
      if (!Number.isInteger(probeMs) || probeMs < 100 || probeMs > 60_000) {
        process.stderr.write(`tokenwatt doctor: --probe-ms must be a whole number of ms between 100 and 60000, got "${flags.probeMs}"\n`);
        process.exitCode = DOCTOR_EXIT_ERROR;
        return;
      }
      // Only the file: the agent's other env vars are not doctor's business (and its own are read
      // above), so neither are the checks that need them (a proxy section's upstream from --upstream).
      const loaded = flags.config !== undefined && flags.config.trim() !== '' ? loadConfig({ configFile: flags.config, env: {}, flags: {}, forRun: false }) : undefined;
      if (loaded !== undefined && !loaded.ok) {
        process.stderr.write(`tokenwatt doctor: invalid configuration (${loaded.errors.length} error${loaded.errors.length === 1 ? '' : 's'}):\n${loaded.errors.map((e) => `  - ${e}\n`).join('')}`);
        process.exitCode = DOCTOR_EXIT_ERROR;
        return;
      }
      const config = loaded?.config;
      const power = powerOf(flags.power, this.getOptionValueSource('power'), config?.power, loaded?.ok === true ? loaded.sources.power : undefined);
      if ('error' in power) {
        process.stderr.write(`tokenwatt doctor: ${power.error}\n`);
        process.exitCode = DOCTOR_EXIT_ERROR;
        return;
      }
      const nvmlLibrary = flags.nvmlLibrary || config?.nvmlLibrary;
      const { report, text, exitCode } = await runDoctor({
        power: power.setting,
        powerFrom: power.from,
        ...(nvmlLibrary ? { nvmlLibrary } : {}),
        nvidiaSmi: flags.nvidiaSmi || config?.nvidiaSmi || DEFAULT_NVIDIA_SMI,
        powercapRoot: flags.powercapRoot || config?.hostPower?.powercapRoot || DEFAULT_POWERCAP_ROOT,
        probeMs,
      });
      print(flags.json ? `${JSON.stringify(report, null, 2)}\n` : text);
      process.exitCode = exitCode;
      // A driver call that hung while NVML was probed would hold the exit until the driver returns
      // (forever on a wedged GPU): end at once with the same status.
      if (nvmlCallsBlocked() > 0) exitProcess(exitCode);
    });
}

/** The power setting judged: --power, else TOKENWATT_POWER (commander reads both), else the config file's, else auto. */
function powerOf(given: string | undefined, givenBy: string | undefined, configured: PowerSetting | undefined, configuredBy: ConfigSource | undefined): { setting: PowerSetting; from: ConfigSource } | { error: string } {
  // An empty value counts as unset, as the agent's environment does.
  if (given !== undefined && given.trim() !== '') {
    const setting = parsePowerSetting(given.trim());
    if (setting === null) return { error: `--power / TOKENWATT_POWER: must be auto, nvml, nvidia-smi, simulated or replay:FILE, got ${JSON.stringify(given)}` };
    return { setting, from: givenBy === 'env' ? 'env' : 'flag' };
  }
  return configured === undefined ? { setting: { kind: 'auto' }, from: 'default' } : { setting: configured, from: configuredBy ?? 'default' };
}
