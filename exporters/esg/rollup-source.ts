import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow, TaskRow } from '../../model/rollup-types.js';
import type { EpochMs } from '../../model/units.js';
import { epochMs } from '../../model/units.js';
import type { ReportPeriod } from './report-period.js';

/** The ledger's rollup readers (agent/ledger.ts Ledger satisfies it). */
export interface RollupReader {
  readHourlyEnergy(fromMs: EpochMs, toMs: EpochMs): HourlyEnergyRow[];
  readHourlyHost(fromMs: EpochMs, toMs: EpochMs): HourlyHostEnergyRow[];
  readHourlyQuality(fromMs: EpochMs, toMs: EpochMs): HourlyQualityRow[];
  readHourlyUsage(fromMs: EpochMs, toMs: EpochMs): HourlyUsageRow[];
  readTasks(fromMs: EpochMs, toMs: EpochMs): TaskRow[];
}

const DAY_MS = 86_400_000;

/**
 * The rollups of a period as lazy iterables, read one day at a time: a busy quarter holds
 * millions of usage rows, and the report needs them once each, so memory stays at one day.
 */
export function rollupsOf(reader: RollupReader, period: ReportPeriod): {
  energy: Iterable<HourlyEnergyRow>;
  host: Iterable<HourlyHostEnergyRow>;
  quality: Iterable<HourlyQualityRow>;
  usage: Iterable<HourlyUsageRow>;
  tasks: Iterable<TaskRow>;
} {
  const byDay = <T>(read: (from: EpochMs, to: EpochMs) => T[]): Iterable<T> => ({
    *[Symbol.iterator]() {
      for (let from = period.fromMs; from < period.toMs; from += DAY_MS) {
        yield* read(epochMs(from), epochMs(Math.min(from + DAY_MS, period.toMs)));
      }
    },
  });
  return {
    energy: byDay((a, b) => reader.readHourlyEnergy(a, b)),
    host: byDay((a, b) => reader.readHourlyHost(a, b)),
    quality: byDay((a, b) => reader.readHourlyQuality(a, b)),
    usage: byDay((a, b) => reader.readHourlyUsage(a, b)),
    tasks: byDay((a, b) => reader.readTasks(a, b)),
  };
}
