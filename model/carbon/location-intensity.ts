import { CarbonInputError, CarbonInputErrors } from './carbon-input-error.js';
import type { FactorProvenance, GridIntensityFactor } from './grid-intensity-factor.js';
import type { HourlyIntensitySeries, IntensityUnit } from './hourly-intensity-csv.js';
import { findRegionFactor } from './region-lookup.js';

const HOUR_MS = 3_600_000;
const MAX_PROBLEMS = 20;

/** What to do with an hour the intensity file has no value for. */
export type IntensityFill = 'error' | 'carry-forward' | 'mean';

/** Location-based grid intensity (GHG Protocol Scope 2): one value per UTC hour. */
export interface LocationIntensity {
  readonly kind: 'region' | 'constant' | 'hourly';
  /** gCO2e/kWh for the hour starting at hourStartMs. */
  gPerKwhAt(hourStartMs: number): number;
  /** Read after the last gPerKwhAt: an hourly file's mean and fill note count the hours asked for later too. */
  readonly provenance: FactorProvenance;
  /** Hours whose value came from the fill policy rather than the file (disclosed in the report). */
  readonly filledHours: number;
}

/** Where the location-based intensity comes from: exactly one of the three. */
export type LocationIntensitySpec =
  | { readonly kind: 'region'; readonly region: string }
  | { readonly kind: 'constant'; readonly gCo2ePerKwh: number; readonly source: string; readonly year: number | null }
  | {
      readonly kind: 'hourly';
      readonly series: HourlyIntensitySeries;
      readonly fill: IntensityFill;
      /** File name and SHA-256 of its bytes, so a later --verify sees a changed file. */
      readonly fileName: string;
      readonly fileSha256: string;
    };

/**
 * Resolve the location-based intensity for the hours a report needs. An hourly file must cover
 * every needed hour and have no holes inside its own range unless a fill policy says otherwise;
 * each problem names the hour and the neighbouring file lines.
 */
export function resolveLocationIntensity(
  spec: LocationIntensitySpec,
  table: readonly GridIntensityFactor[],
  neededHours: readonly number[],
): LocationIntensity {
  if (spec.kind === 'region') {
    const factor = findRegionFactor(table, spec.region);
    return {
      kind: 'region',
      gPerKwhAt: () => factor.gCo2ePerKwh,
      filledHours: 0,
      provenance: {
        role: 'location',
        id: factor.id,
        value: factor.gCo2ePerKwh,
        unit: 'gCO2e/kWh',
        source: `${factor.source} <${factor.sourceUrl}>; published as ${factor.publishedValue} ${factor.publishedUnit}`,
        year: factor.year,
        basis: factor.basis,
        note: factor.note ?? null,
      },
    };
  }
  if (spec.kind === 'constant') {
    return {
      kind: 'constant',
      gPerKwhAt: () => spec.gCo2ePerKwh,
      filledHours: 0,
      provenance: {
        role: 'location',
        id: 'configured-constant',
        value: spec.gCo2ePerKwh,
        unit: 'gCO2e/kWh',
        source: spec.source,
        year: spec.year,
        basis: 'unspecified',
        note: 'configured by the operator (carbon.intensityGPerKwh)',
      },
    };
  }
  const values = fillHours(spec.series, spec.fill, neededHours, spec.fileName);
  // Hours asked for after resolution (usage without measured energy rows): they are used too, so
  // the provenance's mean and fill note count them (it is read after the figures are computed).
  const needed = new Set(neededHours);
  const usedLater: number[] = [];
  let filledLater = 0;
  const provenanceBase = {
    role: 'location',
    id: `hourly-file:${spec.fileName}`,
    unit: 'gCO2e/kWh (mean of the hours used)',
    source:
      `hourly intensity file ${spec.fileName} (sha256 ${spec.fileSha256}), column "${spec.series.intensityColumn}" (${unitNote(spec.series.unit)}), ` +
      `${spec.series.dataLines} data lines, ${new Date(spec.series.firstHourMs).toISOString()} to ${new Date(spec.series.lastHourMs).toISOString()}`,
    year: null,
    basis: spec.series.basis,
  } as const;
  return {
    kind: 'hourly',
    gPerKwhAt: (hour) => {
      const v = values.values.get(hour);
      if (v !== undefined) {
        if (!needed.has(hour)) {
          needed.add(hour);
          usedLater.push(hour);
        }
        return v;
      }
      // An hour resolved only now: usage with no measured energy rows (those decide the hours
      // resolved up front). The fill policy applies to it as to any other.
      const filled = fillOne(spec.series, spec.fill, hour, meanOf(spec.series));
      if (filled === undefined) {
        const where = hour >= spec.series.firstHourMs && hour <= spec.series.lastHourMs ? 'a gap in the file' : `the file covers ${iso(spec.series.firstHourMs)} to ${iso(spec.series.lastHourMs)}`;
        throw new CarbonInputError(
          `${spec.fileName} (set carbon.intensityFill to "carry-forward" or "mean" to fill gaps)`,
          `no value for the hour ${iso(hour)}, which has attributed usage but no measured energy rows (${where})`,
        );
      }
      values.values.set(hour, filled);
      needed.add(hour);
      usedLater.push(hour);
      filledLater += 1;
      return filled;
    },
    get filledHours() {
      return values.filled + filledLater;
    },
    get provenance(): FactorProvenance {
      const used = [...neededHours, ...usedLater];
      let sum = 0;
      for (const h of used) sum += values.values.get(h) ?? 0;
      return {
        ...provenanceBase,
        value: used.length > 0 ? sum / used.length : 0,
        note: hourlyFileNote(values.filled + filledLater, spec.fill, partialHours(spec.series, used)),
      };
    },
  };
}

function fillHours(
  series: HourlyIntensitySeries,
  fill: IntensityFill,
  neededHours: readonly number[],
  fileName: string,
): { values: Map<number, number>; filled: number } {
  const values = new Map<number, number>();
  for (const [hour, v] of series.hours) values.set(hour, v.gCo2ePerKwh);
  const holes: number[] = [];
  for (let h = series.firstHourMs; h <= series.lastHourMs; h += HOUR_MS) if (!series.hours.has(h)) holes.push(h);
  const outside = neededHours.filter((h) => h < series.firstHourMs || h > series.lastHourMs);
  if (fill === 'error') {
    const problems: CarbonInputError[] = [];
    // Only the gaps the report needs: a gap in hours without data is no reason to refuse the file.
    const needed = new Set(neededHours);
    const neededHoles = holes.filter((h) => needed.has(h));
    for (const h of neededHoles) {
      if (problems.length >= MAX_PROBLEMS) break;
      const before = series.hours.get(lastPresentBefore(series, h))?.lines.at(-1);
      const after = series.hours.get(firstPresentAfter(series, h))?.lines[0];
      problems.push(new CarbonInputError(fileName, `gap: no value for the hour ${iso(h)} (between lines ${before ?? '?'} and ${after ?? '?'})`));
    }
    if (outside.length > 0 && problems.length < MAX_PROBLEMS) {
      problems.push(
        new CarbonInputError(
          fileName,
          `the file covers ${iso(series.firstHourMs)} to ${iso(series.lastHourMs)} but the report needs ${outside.length} hour(s) outside it ` +
            `(first ${iso(Math.min(...outside))}, last ${iso(Math.max(...outside))})`,
        ),
      );
    }
    const total = neededHoles.length + (outside.length > 0 ? 1 : 0);
    if (problems.length > 0) {
      throw new CarbonInputErrors(`${fileName} (set carbon.intensityFill to "carry-forward" or "mean" to fill gaps)`, problems, total - problems.length);
    }
    return { values, filled: 0 };
  }
  const mean = meanOf(series);
  const toFill = [...new Set([...holes, ...outside])].sort((a, b) => a - b);
  for (const h of toFill) values.set(h, fillOne(series, fill, h, mean) as number);
  const needed = new Set(neededHours);
  return { values, filled: toFill.filter((h) => needed.has(h)).length };
}

function meanOf(series: HourlyIntensitySeries): number {
  let mean = 0;
  for (const v of series.hours.values()) mean += v.gCo2ePerKwh / series.hours.size;
  return mean;
}

/**
 * The value the fill policy gives an hour the file lacks (undefined under "error"): the file's
 * mean, or the last value before it (the first value, for an hour before the file).
 */
function fillOne(series: HourlyIntensitySeries, fill: IntensityFill, hour: number, mean: number): number | undefined {
  if (fill === 'error') return undefined;
  if (fill === 'mean') return mean;
  return (series.hours.get(lastPresentBefore(series, hour)) ?? series.hours.get(series.firstHourMs))?.gCo2ePerKwh ?? mean;
}

function lastPresentBefore(series: HourlyIntensitySeries, hour: number): number {
  let h = Math.min(hour, series.lastHourMs + HOUR_MS) - HOUR_MS;
  while (h >= series.firstHourMs && !series.hours.has(h)) h -= HOUR_MS;
  return h;
}

function firstPresentAfter(series: HourlyIntensitySeries, hour: number): number {
  let h = hour + HOUR_MS;
  while (h <= series.lastHourMs && !series.hours.has(h)) h += HOUR_MS;
  return h;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** How the file's values became gCO2e/kWh, for the provenance. */
function unitNote(unit: IntensityUnit): string {
  if (unit.named === null) return 'no unit in the header: read as gCO2e/kWh';
  if (unit.toGPerKwh === 1) return `${unit.named}, equal to gCO2e/kWh`;
  return `${unit.named}, multiplied by ${unit.toGPerKwh} to gCO2e/kWh`;
}

function hourlyFileNote(filled: number, fill: string, partialHours: number): string | null {
  const notes: string[] = [];
  if (filled > 0) notes.push(`${filled} hour(s) filled by policy "${fill}"`);
  if (partialHours > 0) notes.push(`${partialHours} hour(s) of the file averaged from only part of the hour's rows (fewer than the hour's step gives)`);
  return notes.length > 0 ? notes.join('; ') : null;
}

/** Needed hours the file covers with fewer rows than their step gives. */
function partialHours(series: HourlyIntensitySeries, neededHours: readonly number[]): number {
  let partial = 0;
  for (const h of neededHours) {
    if (series.hours.get(h)?.partial === true) partial += 1;
  }
  return partial;
}
