import { Command, Option } from 'commander';
import { DOCTOR_EXIT_ERROR, runDoctor } from '../doctor.js';

interface DoctorFlags {
  readonly nvmlLibrary?: string;
  readonly nvidiaSmi: string;
  readonly powercapRoot: string;
  readonly probeMs: string;
  readonly json?: boolean;
}

/**
 * `tokenwatt doctor`: what this node can measure, and how well. The report goes to `print`
 * (stdout by default); the exit status to process.exitCode.
 */
export function doctorCommand(print: (text: string) => void = (text) => process.stdout.write(text)): Command {
  return new Command('doctor')
    .description('What this node can measure, and how well: which GPU power sources exist (NVML, nvidia-smi) and which one the agent would use, the sampling period achieved, energy counter or not, averaged or instantaneous power, the MIG layout, host power (RAPL) access, and what to change for better data.')
    .addOption(new Option('--nvml-library <file>', 'path of libnvidia-ml.so.1 (default: found by the system loader)').env('TOKENWATT_NVML_LIBRARY'))
    .addOption(new Option('--nvidia-smi <path>', 'nvidia-smi executable').env('TOKENWATT_NVIDIA_SMI').default('nvidia-smi'))
    .addOption(new Option('--powercap-root <dir>', 'RAPL powercap tree').env('TOKENWATT_POWERCAP_ROOT').default('/sys/class/powercap'))
    .addOption(new Option('--probe-ms <ms>', 'how long each GPU source is sampled to measure its period').default('1500'))
    .option('--json', 'print the report as one JSON object')
    .addHelpText('after', [
      '',
      'Exit status:',
      '  0  the agent can run on measured GPU data (NVML, or nvidia-smi as the fallback)',
      '  1  no measured GPU power source: `tokenwatt run --power auto` would refuse to start',
      '     (only --power simulated or --power replay:FILE would run)',
      '  2  doctor could not run (bad option)',
    ].join('\n'))
    .action(async (flags: DoctorFlags) => {
      const probeMs = Number(flags.probeMs);
      if (!Number.isInteger(probeMs) || probeMs < 100 || probeMs > 60_000) {
        process.stderr.write(`tokenwatt doctor: --probe-ms must be a whole number of ms between 100 and 60000, got "${flags.probeMs}"\n`);
        process.exitCode = DOCTOR_EXIT_ERROR;
        return;
      }
      const { report, text, exitCode } = await runDoctor({
        ...(flags.nvmlLibrary ? { nvmlLibrary: flags.nvmlLibrary } : {}),
        nvidiaSmi: flags.nvidiaSmi,
        powercapRoot: flags.powercapRoot,
        probeMs,
      });
      print(flags.json ? `${JSON.stringify(report, null, 2)}\n` : text);
      process.exitCode = exitCode;
    });
}
