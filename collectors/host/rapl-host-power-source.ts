import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { epochMs, joules } from '../../model/units.js';
import { wrappedDelta } from './energy-counter-wrap.js';
import { HostPowerReadError, type HostPowerQuality, type HostPowerReading, type HostPowerSource, type HostZoneReading } from './host-power-source.js';
import { raplAbsentError, raplPermissionError, RaplUnavailableError } from './rapl-errors.js';
import { discoverRaplZones, type RaplZone } from './rapl-zones.js';

export interface RaplHostPowerSourceOptions {
  /** Default /sys/class/powercap. */
  readonly powercapRoot?: string;
  /** Reads a sysfs file (default fs.readFileSync utf8); injectable for tests. */
  readonly readFile?: (path: string) => string;
  readonly now?: () => number;
}

interface ZoneState {
  readonly zone: RaplZone;
  readonly maxRangeUj: number | null;
  lastUj: number;
  totalUj: number;
  wraps: number;
}

/**
 * Host CPU package + DRAM energy from the RAPL counters under /sys/class/powercap, summed over
 * packages and their DRAM zones (children never added to their package), each zone's energy_uj
 * corrected for wraparound at its max_energy_range_uj.
 */
export class RaplHostPowerSource implements HostPowerSource {
  private readonly root: string;
  private readonly readFile: (path: string) => string;
  private readonly now: () => number;
  private zones: ZoneState[] = [];
  private skipped: { name: string; why: string }[] = [];

  constructor(options: RaplHostPowerSourceOptions = {}) {
    this.root = options.powercapRoot ?? '/sys/class/powercap';
    this.readFile = options.readFile ?? ((path) => readFileSync(path, 'utf8'));
    this.now = options.now ?? Date.now;
  }

  async init(): Promise<void> {
    const discovery = discoverRaplZones(this.root, (dir) => this.readOptional(join(dir, 'name')));
    if (discovery.zones.length === 0) throw raplAbsentError(this.root);
    this.skipped = [...discovery.skipped];
    this.zones = discovery.zones.map((zone) => {
      const range = this.readOptional(join(zone.dir, 'max_energy_range_uj'));
      const first = this.readCounter(zone);
      return { zone, maxRangeUj: range !== null && /^\d+$/.test(range) ? Number(range) : null, lastUj: first, totalUj: 0, wraps: 0 };
    });
  }

  read(): HostPowerReading {
    if (this.zones.length === 0) throw new HostPowerReadError('not_initialised', 'RaplHostPowerSource.read() before a successful init()');
    const timestampMs = this.now();
    const zones: HostZoneReading[] = [];
    let totalUj = 0;
    for (const state of this.zones) {
      let value: number;
      try {
        value = this.readCounter(state.zone);
      } catch (error) {
        const reason = error instanceof RaplUnavailableError ? error.reason : 'unreadable';
        throw new HostPowerReadError(reason, error instanceof Error ? error.message : String(error));
      }
      const { delta, wrapped } = wrappedDelta(state.lastUj, value, state.maxRangeUj);
      if (wrapped) state.wraps++;
      state.lastUj = value;
      state.totalUj += delta;
      totalUj += state.totalUj;
      zones.push({ name: state.zone.name, kind: state.zone.kind, path: state.zone.dir, energyJ: joules(state.totalUj / 1e6) });
    }
    return { timestampMs: epochMs(timestampMs), energyJ: joules(totalUj / 1e6), zones, estimated: false };
  }

  quality(): HostPowerQuality {
    const notes = [`RAPL under ${this.root}: ${this.zones.map((z) => z.zone.name).join(', ') || 'no zones'}`];
    for (const s of this.skipped) notes.push(`${s.name} not summed: ${s.why}`);
    if (!this.zones.some((z) => z.zone.kind === 'dram')) notes.push('no DRAM zone: memory energy is not included');
    const wraps = this.zones.reduce((n, z) => n + z.wraps, 0);
    if (wraps > 0) notes.push(`${wraps} counter wraparound(s) corrected with max_energy_range_uj`);
    notes.push('RAPL covers CPU packages and DRAM only, not fans, disks, NICs or power-supply losses');
    return { kind: 'rapl', measured: true, estimated: false, zones: this.zones.map((z) => z.zone.name), notes };
  }

  private readCounter(zone: RaplZone): number {
    const path = join(zone.dir, 'energy_uj');
    let text: string;
    try {
      text = this.readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') throw raplPermissionError(path);
      throw new RaplUnavailableError('unreadable', `${path} could not be read (${code ?? String(error)}).`, 'check that /sys/class/powercap is mounted from the host and the intel_rapl driver is loaded');
    }
    const trimmed = text.trim();
    if (!/^\d+$/.test(trimmed)) throw new RaplUnavailableError('unreadable', `${path} holds "${trimmed.slice(0, 40)}", not a counter in microjoules.`, 'check the powercap driver (dmesg | grep -i rapl)');
    return Number(trimmed);
  }

  private readOptional(path: string): string | null {
    try {
      return this.readFile(path).trim();
    } catch {
      return null;
    }
  }
}
