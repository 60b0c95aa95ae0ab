import { readFileSync } from 'node:fs';
import { REGION_INTENSITY_TABLE } from '../collectors/carbon-data/region-intensity-table.js';
import type { CarbonConfig } from '../model/carbon/carbon-config.js';
import { parseHourlyIntensityCsv, type HourlyIntensitySeries } from '../model/carbon/hourly-intensity-csv.js';
import { DEFAULT_PUE } from '../model/carbon/pue.js';
import { findRegionFactor } from '../model/carbon/region-lookup.js';

/** The live carbon factors the agent exports beside its energy counters (for Prometheus rules). */
export interface CarbonGauges {
  readonly site: string;
  readonly pue: number;
  /** Location-based gCO2e/kWh in force at `nowMs`, and the factor it comes from; null when unknown. */
  intensityAt(nowMs: number): { readonly gPerKwh: number; readonly factor: string } | null;
}

/**
 * Factors from the `carbon` section: PUE (configured, else the documented default) and the
 * location-based grid intensity from a shipped region, a configured constant, or the current
 * hour of an hourly intensity file. Without any grid setting the intensity is unknown and no
 * emissions gauge is exported — an emission figure is never invented. Throws with the config
 * key named when the region is unknown or the file cannot be read.
 */
export function carbonGauges(carbon: CarbonConfig | undefined): CarbonGauges {
  const site = carbon?.site ?? '';
  const pue = carbon?.pue ?? DEFAULT_PUE;
  if (carbon?.region !== undefined) {
    const factor = findRegionFactor(REGION_INTENSITY_TABLE, carbon.region);
    return { site, pue, intensityAt: () => ({ gPerKwh: factor.gCo2ePerKwh, factor: factor.id }) };
  }
  if (carbon?.intensityGPerKwh !== undefined) {
    const value = carbon.intensityGPerKwh;
    return { site, pue, intensityAt: () => ({ gPerKwh: value, factor: 'configured-constant' }) };
  }
  if (carbon?.intensityFile !== undefined) {
    let series: HourlyIntensitySeries;
    try {
      series = parseHourlyIntensityCsv(readFileSync(carbon.intensityFile, 'utf8'), {
        source: carbon.intensityFile,
        ...(carbon.intensityFileColumn ? { column: carbon.intensityFileColumn } : {}),
      });
    } catch (error) {
      throw new Error(`carbon.intensityFile ${carbon.intensityFile}: ${error instanceof Error ? error.message : String(error)}`);
    }
    return {
      site,
      pue,
      intensityAt: (nowMs) => {
        const hour = series.hours.get(Math.floor(nowMs / 3_600_000) * 3_600_000);
        return hour ? { gPerKwh: hour.gCo2ePerKwh, factor: 'hourly-file' } : null;
      },
    };
  }
  return { site, pue, intensityAt: () => null };
}
