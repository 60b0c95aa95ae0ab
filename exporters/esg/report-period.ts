const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Years a report may cover: Date.UTC reads 0-99 as 1900-1999, and no ledger predates 1990. */
const FIRST_YEAR = 1990;
const LAST_YEAR = 2199;

/** The reporting period: [fromMs, toMs) on whole UTC hours (rollups are hourly). */
export interface ReportPeriod {
  readonly fromMs: number;
  readonly toMs: number;
  readonly label: string;
}

/** A bad --quarter/--from/--to, with the flag it came from. */
export class PeriodError extends Error {
  override readonly name = 'PeriodError';
}

/** "2026-Q3" -> 2026-07-01T00:00Z .. 2026-10-01T00:00Z. */
export function quarterPeriod(quarter: string): ReportPeriod {
  const m = /^(\d{4})-?Q([1-4])$/i.exec(quarter.trim());
  if (!m) throw new PeriodError(`--quarter: expected YYYY-Qn such as 2026-Q3 (got "${quarter}")`);
  const year = Number(m[1]);
  const q = Number(m[2]);
  if (year < FIRST_YEAR || year > LAST_YEAR) throw new PeriodError(`--quarter: the year must lie in ${FIRST_YEAR}-${LAST_YEAR} (got "${quarter}")`);
  return {
    fromMs: Date.UTC(year, (q - 1) * 3, 1),
    toMs: Date.UTC(year, q * 3, 1),
    label: `${year}-Q${q}`,
  };
}

/** --from/--to: a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time on a whole hour; `to` is exclusive. */
export function rangePeriod(from: string, to: string): ReportPeriod {
  const fromMs = parseBoundary(from, '--from');
  const toMs = parseBoundary(to, '--to');
  if (toMs <= fromMs) throw new PeriodError(`--to (${to}) must be after --from (${from})`);
  return { fromMs, toMs, label: `${new Date(fromMs).toISOString()} to ${new Date(toMs).toISOString()}` };
}

function parseBoundary(text: string, flag: string): number {
  const value = text.trim();
  const date = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const full = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(value);
  if (!date && !full) throw new PeriodError(`${flag}: expected YYYY-MM-DD or an RFC 3339 time with a zone (got "${text}")`);
  const ms = Date.parse(date ? `${value}T00:00:00Z` : value);
  // Date.parse rolls 2026-02-30 over to March 2 and T24:00 to the next day: a typo would move the period.
  if (!Number.isFinite(ms) || !realCalendarFields(value)) throw new PeriodError(`${flag}: not a valid date (got "${text}")`);
  const year = new Date(ms).getUTCFullYear();
  if (year < FIRST_YEAR || year > LAST_YEAR) throw new PeriodError(`${flag}: the year must lie in ${FIRST_YEAR}-${LAST_YEAR} (got "${text}")`);
  if (ms % HOUR_MS !== 0) throw new PeriodError(`${flag}: must fall on a whole UTC hour, as the ledger keeps hourly rollups (got "${text}")`);
  return ms;
}

/** The date exists, and the time and zone offset, when given, are within their ranges. */
function realCalendarFields(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  const back = new Date(0);
  back.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0-99 as 1900-1999
  if (back.getUTCFullYear() !== year || back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day) return false;
  const time = /T(\d{2}):(\d{2})(?::(\d{2}))?/i.exec(value);
  if (time !== null && (Number(time[1]) > 23 || Number(time[2]) > 59 || Number(time[3] ?? 0) > 59)) return false;
  const zone = /([+-])(\d{2}):(\d{2})$/.exec(value);
  return zone === null || (Number(zone[2]) <= 23 && Number(zone[3]) <= 59);
}

export function periodHours(period: ReportPeriod): number {
  return Math.round((period.toMs - period.fromMs) / HOUR_MS);
}

/** The UTC midnight at or before `ms`. */
export const utcDayStart = (ms: number): number => Math.floor(ms / DAY_MS) * DAY_MS;

/**
 * The period cut at UTC midnights: [from, next midnight), whole days, [last midnight, to). Each
 * piece lies in one UTC day (and so one month), so sums per piece can be labelled by its start.
 */
export function utcDaySlices(period: Pick<ReportPeriod, 'fromMs' | 'toMs'>): [fromMs: number, toMs: number][] {
  const slices: [number, number][] = [];
  for (let from = period.fromMs; from < period.toMs; ) {
    const to = Math.min(utcDayStart(from) + DAY_MS, period.toMs);
    slices.push([from, to]);
    from = to;
  }
  return slices;
}

export const HOUR = HOUR_MS;
