import type { PowerSample } from '../model/power-sample.js';

/**
 * Write samples as the plain trace `timestamp_ms,gpu,power_w,energy_j` that parsePowerTrace
 * reads back (GPUs by UUID; empty power or energy where a sample has none). When any sample is
 * simulated a `simulated` column (1/0) is added, so a demo recording stays labelled.
 */
export function formatPlainTrace(samples: readonly PowerSample[]): string {
  const simulated = samples.some((s) => s.simulated === true);
  const lines = [simulated ? 'timestamp_ms,gpu,power_w,energy_j,simulated' : 'timestamp_ms,gpu,power_w,energy_j'];
  for (const s of samples) {
    const base = `${s.timestampMs},${s.gpuUuid},${s.powerW ?? ''},${s.energyJ ?? ''}`;
    lines.push(simulated ? `${base},${s.simulated ? 1 : 0}` : base);
  }
  return `${lines.join('\n')}\n`;
}
