import type { EpochMs, Joules } from '../../model/units.js';

/** One RAPL zone's energy, cumulative since the source started (wrap-corrected). */
export interface HostZoneReading {
  /** The zone's own name ("package-0", "dram"), qualified by its package for children ("package-0/dram"). */
  readonly name: string;
  readonly kind: 'package' | 'dram';
  readonly path: string;
  readonly energyJ: Joules;
}

/** Host (CPU + memory) energy: its own series, beside the GPUs', in every summary. */
export interface HostPowerReading {
  readonly timestampMs: EpochMs;
  /** Cumulative since the source started: wrap-corrected sum of the zones (or the configured estimate). */
  readonly energyJ: Joules;
  readonly zones: readonly HostZoneReading[];
  /** True when the energy is an estimate (configured overhead), not a measurement. */
  readonly estimated: boolean;
}

export interface HostPowerQuality {
  /** rapl | configured */
  readonly kind: string;
  readonly measured: boolean;
  readonly estimated: boolean;
  /** Names of the zones summed into energyJ. */
  readonly zones: readonly string[];
  readonly notes: readonly string[];
}

/**
 * Host power, read on demand by the agent (which owns the timer). init() throws a clear error when
 * the source cannot work; read() throws a HostPowerReadError for a failed read.
 */
export interface HostPowerSource {
  init(): Promise<void>;
  read(): HostPowerReading;
  quality(): HostPowerQuality;
}

/** A read that failed (a zone file vanished, permission changed); the agent reports it and carries on. */
export class HostPowerReadError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
    this.name = 'HostPowerReadError';
  }
}
