import { epochMs, joules } from '../../model/units.js';
import type { HostPowerQuality, HostPowerReading, HostPowerSource } from './host-power-source.js';

/**
 * A constant host overhead in watts, configured per node, for when RAPL cannot be read. Its
 * energy is an estimate and says so in every reading and in quality().
 */
export class ConfiguredHostOverhead implements HostPowerSource {
  private startedMs: number | null = null;

  constructor(
    private readonly overheadW: number,
    private readonly why: string = 'configured host overhead',
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isFinite(overheadW) || overheadW < 0) throw new RangeError(`host overheadW must be a finite number >= 0, got ${overheadW}`);
  }

  async init(): Promise<void> {
    this.startedMs = this.now();
  }

  read(): HostPowerReading {
    const now = this.now();
    const start = this.startedMs ?? now;
    return { timestampMs: epochMs(now), energyJ: joules((this.overheadW * Math.max(0, now - start)) / 1000), zones: [], estimated: true };
  }

  quality(): HostPowerQuality {
    return {
      kind: 'configured',
      measured: false,
      estimated: true,
      zones: [],
      notes: [`host energy is an estimate: a constant ${this.overheadW} W (${this.why})`],
    };
  }
}
