import type { PowerSample } from '../model/power-sample.js';

/**
 * The sampling period a source actually achieved: the median interval between consecutive
 * samples of the same GPU, over all GPUs. Null with fewer than two samples of any GPU.
 */
export function achievedPeriodMs(samples: readonly PowerSample[]): number | null {
  const byGpu = new Map<string, number[]>();
  for (const s of samples) {
    const list = byGpu.get(s.gpuUuid) ?? [];
    list.push(s.timestampMs);
    byGpu.set(s.gpuUuid, list);
  }
  const intervals: number[] = [];
  for (const times of byGpu.values()) {
    times.sort((a, b) => a - b);
    for (let i = 1; i < times.length; i++) intervals.push((times[i] ?? 0) - (times[i - 1] ?? 0));
  }
  if (intervals.length === 0) return null;
  intervals.sort((a, b) => a - b);
  const mid = Math.floor(intervals.length / 2);
  return intervals.length % 2 === 1 ? (intervals[mid] ?? null) : ((intervals[mid - 1] ?? 0) + (intervals[mid] ?? 0)) / 2;
}
