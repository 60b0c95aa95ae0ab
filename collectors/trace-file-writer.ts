import type { PowerSample } from '../model/power-sample.js';

/**
 * Write samples as the plain trace `timestamp_ms,gpu,power_w,energy_j` that parsePowerTrace
 * reads back (GPUs by UUID; empty power or energy where a sample has none). Columns follow only
 * where the four would lose something on the way back:
 * - `gpu_index` when a GPU's index is not the one the reader would give it (GPUs named by UUID
 *   are numbered in order of first appearance), since request records may name GPUs by index;
 * - `power_averaged` (1/0, empty when unknown) when some sample's power is a ~1 s average;
 * - `simulated` (1/0) when some sample is simulated, so a demo recording stays labelled;
 * - `counter_run_start` (1/0) when some sample starts a new counter run, so that traces of several
 *   runs joined into one are read as resets there, not as the counter's steps.
 */
export function formatPlainTrace(samples: readonly PowerSample[]): string {
  const numbered = new Map<string, number>();
  for (const s of samples) if (!numbered.has(s.gpuUuid)) numbered.set(s.gpuUuid, numbered.size);
  const indexed = samples.some((s) => numbered.get(s.gpuUuid) !== s.gpuIndex);
  const averaged = samples.some((s) => s.powerAveraged === true);
  const simulated = samples.some((s) => s.simulated === true);
  const runStart = samples.some((s) => s.counterRunStart === true);
  const header = ['timestamp_ms', 'gpu', 'power_w', 'energy_j'];
  if (indexed) header.push('gpu_index');
  if (averaged) header.push('power_averaged');
  if (simulated) header.push('simulated');
  if (runStart) header.push('counter_run_start');
  const lines = [header.join(',')];
  for (const s of samples) {
    let line = `${s.timestampMs},${s.gpuUuid},${s.powerW ?? ''},${s.energyJ ?? ''}`;
    if (indexed) line += `,${s.gpuIndex}`;
    if (averaged) line += s.powerAveraged === undefined ? ',' : s.powerAveraged ? ',1' : ',0';
    if (simulated) line += s.simulated ? ',1' : ',0';
    if (runStart) line += s.counterRunStart ? ',1' : ',0';
    lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}
