import { parseTimestamp } from '../request-record.js';
import { CarbonInputError, CarbonInputErrors } from './carbon-input-error.js';
import type { FactorBasis } from './grid-intensity-factor.js';

const HOUR_MS = 3_600_000;
const MAX_PROBLEMS = 20;
/** Above this no grid on earth has been; a larger number is a unit mistake (e.g. lb/MWh or g/MWh). */
export const MAX_INTENSITY_G_PER_KWH = 2000;

/** An hourly grid-intensity series read from a provider's CSV export. */
export interface HourlyIntensitySeries {
  /** Mean intensity (gCO2e/kWh) per UTC hour start, with the file lines it came from. */
  readonly hours: ReadonlyMap<number, { readonly gCo2ePerKwh: number; readonly lines: readonly number[] }>;
  readonly firstHourMs: number;
  readonly lastHourMs: number;
  readonly timestampColumn: string;
  readonly intensityColumn: string;
  /** From the column name: "life cycle" -> lifecycle, "direct" -> combustion, else unspecified. */
  readonly basis: FactorBasis;
  readonly dataLines: number;
}

/**
 * Parse an hourly (or finer) intensity CSV as grid-data providers export it: a header row, a
 * timestamp column (RFC 3339; a zone-less time only when the header says UTC, as in Electricity
 * Maps' "Datetime (UTC)") and a gCO2e/kWh column. Sub-hourly rows are averaged per hour.
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

  const problems: CarbonInputError[] = [];
  let omitted = 0;
  const problem = (reason: string, line: number): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(new CarbonInputError(options.source, reason, line));
    else omitted += 1;
  };
  const seen = new Map<number, number>();
  const sums = new Map<number, { sum: number; n: number; lines: number[] }>();
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
    const value = Number(valueText);
    if (!Number.isFinite(value) || value < 0 || value > MAX_INTENSITY_G_PER_KWH) {
      problem(`intensity ${JSON.stringify(valueText.slice(0, 20))} is not a number between 0 and ${MAX_INTENSITY_G_PER_KWH} gCO2e/kWh`, lineNo);
      continue;
    }
    const hour = Math.floor(ms.ms / HOUR_MS) * HOUR_MS;
    const bucket = sums.get(hour) ?? { sum: 0, n: 0, lines: [] };
    bucket.sum += value;
    bucket.n += 1;
    bucket.lines.push(lineNo);
    sums.set(hour, bucket);
  }
  if (problems.length > 0) throw new CarbonInputErrors(options.source, problems, omitted);
  if (sums.size === 0) throw new CarbonInputError(options.source, 'no data rows after the header');
  const hours = new Map<number, { gCo2ePerKwh: number; lines: number[] }>();
  for (const [hour, b] of sums) hours.set(hour, { gCo2ePerKwh: b.sum / b.n, lines: b.lines });
  const keys = [...hours.keys()];
  return {
    hours,
    firstHourMs: Math.min(...keys),
    lastHourMs: Math.max(...keys),
    timestampColumn: timeHeader,
    intensityColumn,
    basis: /life\s*-?\s*cycle/i.test(intensityColumn) ? 'lifecycle' : /direct|combustion/i.test(intensityColumn) ? 'combustion' : 'unspecified',
    dataLines,
  };
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
