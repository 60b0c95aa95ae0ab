import type { GpuInfo } from '../model/power-sample.js';

/**
 * A power source's GPUs as a short run (doctor's probe) saw them: those it started with, and those
 * it told of while running (onGpu: found after start-up, or described anew), the latest telling winning.
 */
export class GpuTally {
  private readonly byUuid = new Map<string, GpuInfo>();
  private readonly initial: ReadonlySet<string>;

  constructor(atStart: readonly GpuInfo[]) {
    for (const gpu of atStart) this.byUuid.set(gpu.uuid, gpu);
    this.initial = new Set(this.byUuid.keys());
  }

  learn(gpu: GpuInfo): void {
    this.byUuid.set(gpu.uuid, gpu);
  }

  all(): GpuInfo[] {
    return [...this.byUuid.values()].sort((a, b) => a.index - b.index);
  }

  /** UUIDs of the GPUs told of that were not there at the start, by index. */
  found(): string[] {
    return this.all().filter((g) => !this.initial.has(g.uuid)).map((g) => g.uuid);
  }
}
