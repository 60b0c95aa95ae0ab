import { parseTimestamp } from '../request-record.js';
import { CarbonInputError, CarbonInputErrors } from './carbon-input-error.js';
import type { FactorBasis } from './grid-intensity-factor.js';

const HOUR_MS = 3_600_000;
/** A decimal number as a spreadsheet writes one (an exponent allowed). */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const MAX_PROBLEMS = 20;
/** Above this no grid on earth has been; a larger number is a unit mistake (e.g. lb/MWh or g/MWh). */
export const MAX_INTENSITY_G_PER_KWH = 2000;

/** An hourly grid-intensity series read from a provider's CSV export. */
export interface HourlyIntensitySeries {
  /**
   * Mean intensity (gCO2e/kWh) per UTC hour start, with the file lines it came from, and whether
   * the hour has only part of its rows (see {@link partialHours}): it is then averaged over part of
   * the hour only, which the report says.
   */
  readonly hours: ReadonlyMap<number, { readonly gCo2ePerKwh: number; readonly lines: readonly number[]; readonly partial: boolean }>;
  readonly firstHourMs: number;
  readonly lastHourMs: number;
  readonly timestampColumn: string;
  readonly intensityColumn: string;
  /** The unit the column's header names, and how its values were converted to gCO2e/kWh. */
  readonly unit: IntensityUnit;
  /** From the column name: "life cycle" -> lifecycle, "direct" -> combustion, else unspecified. */
  readonly basis: FactorBasis;
  readonly dataLines: number;
}

/** The unit of an intensity column, read from its header. */
export interface IntensityUnit {
  /** The unit the header names, normalised ("kg/kWh"), or null when it names none. */
  readonly named: string | null;
  /** Multiply a value by this to get gCO2e/kWh (1 for g/kWh and kg/MWh). */
  readonly toGPerKwh: number;
}

const MASS_IN_G: Readonly<Record<string, number>> = { g: 1, kg: 1e3, t: 1e6, tonne: 1e6, tonnes: 1e6, mt: 1e6, lb: 453.59237, lbs: 453.59237 };
const ENERGY_IN_KWH: Readonly<Record<string, number>> = { kwh: 1, mwh: 1e3, gwh: 1e6 };
/** A mass unit, an optional CO2 name, then "/" or "per" and an energy unit ("kgco2e/kwh", "lb per mwh", "g_co2eq/kwh"). */
const UNIT_PATTERN = /(tonnes|tonne|kg|lbs|lb|mt|g|t(?=co2))(?:co2(?:e|eq)?)?(?:\/|per)(kwh|mwh|gwh)/;

/**
 * The unit a column header names. Providers name columns "gCO₂eq/kWh" (Electricity Maps),
 * "lb/MWh" (eGRID), "kgCO2e per kWh"; a kgCO2e/kWh value read as g/kWh would be 1000x too low.
 */
export function intensityUnitOf(header: string): IntensityUnit {
  const compact = header.toLowerCase().replace(/₂/g, '2').replace(/[\s_\-.()[\]]/g, '');
  const m = UNIT_PATTERN.exec(compact);
  if (!m) return { named: null, toGPerKwh: 1 };
  const mass = m[1] ?? 'g';
  const energy = m[2] ?? 'kwh';
  const massName = ({ tonnes: 't', tonne: 't', mt: 't', lbs: 'lb' } as Record<string, string>)[mass] ?? mass;
  const energyName = { kwh: 'kWh', mwh: 'MWh', gwh: 'GWh' }[energy as 'kwh'];
  return { named: `${massName}/${energyName}`, toGPerKwh: (MASS_IN_G[mass] ?? 1) / (ENERGY_IN_KWH[energy] ?? 1) };
}

/**
 * Parse an hourly (or finer) intensity CSV as grid-data providers export it: a header row, a
 * timestamp column (RFC 3339; a zone-less time only when the header says UTC, as in Electricity
 * Maps' "Datetime (UTC)") and an intensity column. Values are gCO2e/kWh unless the column's header
 * names another unit (kgCO2e/kWh, t/MWh, lb/MWh, ...), which is converted. Sub-hourly rows are
 * averaged per hour.
 * Every bad line is reported with its number; nothing is skipped silently. Gaps are checked
 * later against the hours a report needs ({@link hourlyIntensityFor}).
 */
export function parseHourlyIntensityCsv(text: string, options: { source: string; column?: string }): HourlyIntensitySeries {
  const lines = text.split(/\r?\n/);
  const headerIndex = lines.findIndex((l) => l.trim() !== '');
  if (headerIndex < 0) throw new CarbonInputError(options.source, 'file is empty');
  const header = splitCsvLine(lines[headerIndex] ?? '').map((h) => h.trim());
  const timeCol = header.findIndex((h) => /time|date|period/i.test(h));
  if (timeCol < 0) {
    throw new CarbonInputError(options.source, `no timestamp column in header (${header.join(', ')}); expected a column named like "timestamp" or "Datetime (UTC)"`, headerIndex + 1);
  }
  const valueCol = pickIntensityColumn(header, options);
  const timeHeader = header[timeCol] ?? '';
  const zoneFromHeader = /utc/i.test(timeHeader);
  const intensityColumn = header[valueCol] ?? '';
  const unit = intensityUnitOf(intensityColumn);

  const problems: CarbonInputError[] = [];
  let omitted = 0;
  const problem = (reason: string, line: number): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(new CarbonInputError(options.source, reason, line));
    else omitted += 1;
  };
  const seen = new Map<number, number>();
  const sums = new Map<number, { sum: number; n: number; lines: number[]; times: number[] }>();
  let dataLines = 0;
  for (let i = headerIndex + 1; i < lines.length; i += 1) {
    const raw = lines[i] ?? '';
    if (raw.trim() === '') continue;
    const lineNo = i + 1;
    dataLines += 1;
    const cells = splitCsvLine(raw);
    const timeText = (cells[timeCol] ?? '').trim();
    const valueText = (cells[valueCol] ?? '').trim();
    const ms = parseHourTimestamp(timeText, zoneFromHeader);
    if (!ms.ok) {
      problem(`bad timestamp ${JSON.stringify(timeText.slice(0, 40))}: ${ms.reason}`, lineNo);
      continue;
    }
    const previous = seen.get(ms.ms);
    if (previous !== undefined) {
      problem(`duplicate timestamp ${timeText} (first on line ${previous})`, lineNo);
      continue;
    }
    seen.set(ms.ms, lineNo);
    if (valueText === '') {
      problem(`no value in column "${intensityColumn}" (an empty cell is a gap: fill it, or set carbon.intensityFill)`, lineNo);
      continue;
    }
    // A plain decimal only: Number() would read "0x10" as 16 and " " as 0.
    const read = DECIMAL.test(valueText) ? Number(valueText) : Number.NaN;
    const value = read * unit.toGPerKwh;
    if (!Number.isFinite(value) || value < 0 || value > MAX_INTENSITY_G_PER_KWH) {
      const asRead = unit.named === null || unit.toGPerKwh === 1 ? '' : ` (${unit.named}, that is ${value} gCO2e/kWh)`;
      problem(`intensity ${JSON.stringify(valueText.slice(0, 20))}${asRead} is not a number between 0 and ${MAX_INTENSITY_G_PER_KWH} gCO2e/kWh`, lineNo);
      continue;
    }
    const hour = Math.floor(ms.ms / HOUR_MS) * HOUR_MS;
    const bucket = sums.get(hour) ?? { sum: 0, n: 0, lines: [], times: [] };
    bucket.sum += value;
    bucket.n += 1;
    bucket.lines.push(lineNo);
    bucket.times.push(ms.ms);
    sums.set(hour, bucket);
  }
  if (problems.length > 0) throw new CarbonInputErrors(options.source, problems, omitted);
  if (sums.size === 0) throw new CarbonInputError(options.source, 'no data rows after the header');
  if (unit.named === null && [...sums.values()].every((b) => b.sum / b.n < 1)) {
    // No grid averages under 1 g/kWh hour after hour; kgCO2e/kWh or t/MWh values do.
    throw new CarbonInputError(
      options.source,
      `every value in column "${intensityColumn}" is below 1 and its header names no unit: if they are kgCO2e/kWh or tCO2e/MWh, ` +
        'say so in the header (for example "carbon_intensity_kgco2e_per_kwh"); if they really are gCO2e/kWh, name that unit',
      headerIndex + 1,
    );
  }
  const hours = new Map<number, { gCo2ePerKwh: number; lines: number[]; partial: boolean }>();
  const partial = partialHours(new Map([...sums].map(([hour, b]) => [hour, b.times])));
  for (const [hour, b] of sums) hours.set(hour, { gCo2ePerKwh: b.sum / b.n, lines: b.lines, partial: partial.has(hour) });
  // Not Math.min(...keys): a file of 20 years holds more hours than a call takes arguments.
  let firstHourMs = Number.POSITIVE_INFINITY;
  let lastHourMs = Number.NEGATIVE_INFINITY;
  for (const hour of hours.keys()) {
    if (hour < firstHourMs) firstHourMs = hour;
    if (hour > lastHourMs) lastHourMs = hour;
  }
  return {
    hours,
    firstHourMs,
    lastHourMs,
    timestampColumn: timeHeader,
    intensityColumn,
    unit,
    basis: /life\s*-?\s*cycle/i.test(intensityColumn) ? 'lifecycle' : /direct|combustion/i.test(intensityColumn) ? 'combustion' : 'unspecified',
    dataLines,
  };
}

/**
 * The hours that have fewer rows than their step gives. An hour's own step is the greatest common
 * divisor of the gaps between its rows and the hour (rows at :00 and :45 make a 15-minute step, so
 * 4 rows are due); one row is a whole hour at :00 (hourly data), part of one elsewhere. The gaps to
 * the rows either side, in the hours before and after, count too when that hour is whole by its
 * own rows: a lone 01:00 row 15 minutes after a whole 15-minute hour is a quarter of hour 1, and
 * rows at 01:15 and 01:45 before 02:00 lack :00 and :30. The step is local, so a file may change
 * resolution (ENTSO-E went from hourly to 15-minute values on 2025-10-01) and may miss whole hours;
 * a stray row makes only its own hour partial. A change to a coarser step shows where the hour
 * after goes on at its hour's own step: then the gap back to the finer rows before says nothing of
 * it (a lone 02:00 row after 15-minute rows, with 03:00 an hour later, is an hourly row). With
 * 15-minute rows after it, or none (a 15-minute file cut at 02:00), it is a quarter of its hour.
 */
function partialHours(timesByHour: ReadonlyMap<number, readonly number[]>): Set<number> {
  const hours = [...timesByHour.keys()].sort((a, b) => a - b).map((hourMs) => {
    const times = [...(timesByHour.get(hourMs) ?? [])].sort((a, b) => a - b);
    let stepMs = HOUR_MS;
    for (let i = 1; i < times.length; i += 1) stepMs = gcd(stepMs, (times[i] as number) - (times[i - 1] as number));
    const whole = times.length === 1 ? times[0] === hourMs : times.length >= HOUR_MS / stepMs;
    return { hourMs, times, stepMs, whole };
  });
  const partial = new Set<number>();
  hours.forEach((hour, i) => {
    let stepMs = hour.stepMs;
    const before = hours[i - 1];
    const after = hours[i + 1];
    const gapAfter = after?.whole ? (after.times[0] as number) - (hour.times.at(-1) as number) : null;
    // The data goes on at this hour's own step: a coarser one starts here, whatever came before.
    const startsOwnStep = after !== undefined && gapAfter !== null && gcd(gcd(stepMs, gapAfter), after.stepMs) === stepMs;
    if (before?.whole && !startsOwnStep) stepMs = gcd(stepMs, (hour.times[0] as number) - (before.times.at(-1) as number));
    if (gapAfter !== null) stepMs = gcd(stepMs, gapAfter);
    if (!hour.whole || hour.times.length < HOUR_MS / stepMs) partial.add(hour.hourMs);
  });
  return partial;
}

function gcd(a: number, b: number): number {
  let [x, y] = [Math.abs(a), Math.abs(b)];
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}

function pickIntensityColumn(header: readonly string[], options: { source: string; column?: string }): number {
  if (options.column !== undefined) {
    const index = header.findIndex((h) => h === options.column);
    if (index < 0) throw new CarbonInputError(options.source, `column "${options.column}" (carbon.intensityFileColumn) is not in the header: ${header.join(', ')}`, 1);
    return index;
  }
  const candidates = header.map((h, i) => ({ h, i })).filter(({ h }) => /gco2|carbon.?intensity/i.test(h));
  if (candidates.length === 0) {
    throw new CarbonInputError(options.source, `no intensity column in header (${header.join(', ')}); name one with carbon.intensityFileColumn`, 1);
  }
  // Electricity Maps exports both a direct and a life-cycle column; prefer life cycle (it is what
  // the shipped country table uses) and say so in the report.
  const lifecycle = candidates.find(({ h }) => /life\s*-?\s*cycle/i.test(h));
  return (lifecycle ?? candidates[0])?.i ?? 0;
}

function parseHourTimestamp(text: string, zoneFromHeader: boolean): { ok: true; ms: number } | { ok: false; reason: string } {
  const naive = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$/.test(text);
  if (naive) {
    if (!zoneFromHeader) return { ok: false, reason: 'no time zone: use RFC 3339 with Z or an offset, or a column header that names UTC' };
    const withSeconds = /\d{2}:\d{2}:\d{2}/.test(text) ? text : `${text}:00`;
    return parseTimestamp(`${withSeconds.replace(' ', 'T')}Z`);
  }
  return parseTimestamp(text);
}

/** Split one CSV line (RFC 4180 quoting, no embedded newlines: provider exports have none). */
export function splitCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      cells.push(cell);
      cell = '';
    } else cell += ch;
  }
  cells.push(cell);
  return cells;
}
