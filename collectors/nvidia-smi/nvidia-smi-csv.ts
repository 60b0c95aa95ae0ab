/**
 * Parsing of `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]` output, live (-lms) or
 * recorded. nvidia-smi never quotes: cells are separated by ", ". A cell may carry a unit
 * ("71.15 W") unless `nounits` was given, and may be one of the markers nvidia-smi prints instead
 * of a value: "[N/A]", "[Not Supported]", "ERR!", "[Unknown Error]", "[Requested functionality has
 * been deprecated]", "[Insufficient Permissions]", "[GPU is lost]". Markers are handled per field:
 * one bad field never discards the other fields of its line.
 */

/** Fields tokenwatt streams, in this order, when the driver offers them all. */
export const NVIDIA_SMI_STREAM_FIELDS = ['timestamp', 'index', 'uuid', 'power.draw.instant', 'power.draw.average', 'power.draw'] as const;

export type NvidiaSmiCell =
  | { readonly kind: 'value'; readonly text: string }
  | { readonly kind: 'missing'; readonly marker: string };

const MARKERS = new Set(['N/A', 'ERR!', '']);

/** One cell, trimmed; markers become `missing`. */
export function parseNvidiaSmiCell(raw: string): NvidiaSmiCell {
  const text = raw.trim();
  if (MARKERS.has(text) || /^\[.*\]$/.test(text)) return { kind: 'missing', marker: text === '' ? '(empty)' : text };
  return { kind: 'value', text };
}

/** A number in watts (or any unit): "71.15", "71.15 W". Null when the cell is not a plain number. */
export function parseNvidiaSmiNumber(cell: NvidiaSmiCell, unit?: string): number | null {
  if (cell.kind !== 'value') return null;
  let text = cell.text;
  if (unit && text.endsWith(` ${unit}`)) text = text.slice(0, -(unit.length + 1));
  if (!/^-?\d+(\.\d+)?$/.test(text)) return null;
  return Number(text);
}

/** Column names of a header line, without the " [unit]" suffixes. */
export function parseNvidiaSmiHeader(line: string): string[] {
  return line.split(',').map((h) => h.trim().replace(/\s*\[[^\]]*\]$/, ''));
}

/** Whether a line is a `--format=csv` header rather than data. */
export function isNvidiaSmiHeader(line: string): boolean {
  return /^\s*timestamp\s*(,|$)/.test(line) || /\[W\]/.test(line);
}

/**
 * "YYYY/MM/DD HH:MM:SS.mmm" (nvidia-smi's format, in the node's local time zone, without an
 * offset) to epoch ms. `zone` says how to read it: the live source uses 'local' (same machine);
 * recorded logs are usually read as 'utc' for reproducible results. Null when malformed.
 */
export function parseNvidiaSmiTimestamp(text: string, zone: 'local' | 'utc'): number | null {
  const m = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  const ms = Number((m[7] ?? '0').padEnd(3, '0'));
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return null;
  const value = zone === 'utc' ? Date.UTC(y, mo - 1, d, h, mi, s, ms) : new Date(y, mo - 1, d, h, mi, s, ms).getTime();
  return Number.isFinite(value) ? value : null;
}

/** A field of a line that held a marker instead of a value. */
export interface NvidiaSmiFieldIssue {
  readonly field: string;
  readonly marker: string;
}

/** One GPU's power reading from one line. */
export interface NvidiaSmiPowerRow {
  readonly timestampMs: number;
  readonly gpuIndex: number;
  readonly gpuUuid: string;
  /** Null when every power field held a marker (see `issues`). */
  readonly powerW: number | null;
  /** powerW is a ~1 s average (power.draw on Ampere+ except GA100, or power.draw.average). */
  readonly powerAveraged: boolean;
  /** Which field powerW came from. */
  readonly powerField: string | null;
  readonly issues: readonly NvidiaSmiFieldIssue[];
}

export type NvidiaSmiLineResult =
  | { readonly ok: true; readonly row: NvidiaSmiPowerRow }
  | { readonly ok: false; readonly reason: string };

export interface NvidiaSmiLineOptions {
  /** How to read the timestamp column (see parseNvidiaSmiTimestamp). Default 'local'. */
  readonly zone?: 'local' | 'utc';
  /**
   * Whether `power.draw` is a 1 s average for this GPU, when the line has no power.draw.average
   * column to tell (e.g. from compute_cap). Unknown means averaged: never overstate quality.
   */
  readonly powerDrawAveraged?: (uuid: string) => boolean | undefined;
}

const UUID = /^GPU-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$/;

/**
 * One data line of a `--query-gpu` power stream whose columns are `columns` (names without
 * units). Needs timestamp, index and uuid columns; power comes from power.draw.instant if it has a
 * value, else power.draw, else power.draw.average.
 */
export function parseNvidiaSmiPowerLine(line: string, columns: readonly string[], options: NvidiaSmiLineOptions = {}): NvidiaSmiLineResult {
  const cells = line.split(',');
  if (cells.length !== columns.length) {
    return { ok: false, reason: `expected ${columns.length} comma-separated fields (${columns.join(', ')}), got ${cells.length}` };
  }
  const byName = new Map<string, NvidiaSmiCell>();
  columns.forEach((name, i) => byName.set(name, parseNvidiaSmiCell(cells[i] ?? '')));
  const text = (name: string): string | null => {
    const cell = byName.get(name);
    return cell?.kind === 'value' ? cell.text : null;
  };

  const stamp = text('timestamp');
  const timestampMs = stamp === null ? null : parseNvidiaSmiTimestamp(stamp, options.zone ?? 'local');
  if (timestampMs === null) return { ok: false, reason: `timestamp: "${(cells[columns.indexOf('timestamp')] ?? '').trim()}" is not YYYY/MM/DD HH:MM:SS.mmm` };
  const indexText = text('index');
  if (indexText === null || !/^\d+$/.test(indexText)) return { ok: false, reason: `index: "${indexText ?? 'missing'}" is not a GPU index` };
  const uuid = text('uuid');
  if (uuid === null || !UUID.test(uuid)) return { ok: false, reason: `uuid: "${uuid ?? 'missing'}" is not a GPU UUID` };

  const issues: NvidiaSmiFieldIssue[] = [];
  const watts = (name: string): { value: number | null; issue: NvidiaSmiFieldIssue | null } => {
    const cell = byName.get(name);
    if (!cell) return { value: null, issue: null };
    if (cell.kind === 'missing') return { value: null, issue: { field: name, marker: cell.marker } };
    const value = parseNvidiaSmiNumber(cell, 'W');
    return { value, issue: value === null ? { field: name, marker: `not a number: ${cell.text}` } : null };
  };
  const instant = watts('power.draw.instant');
  const draw = watts('power.draw');
  const average = watts('power.draw.average');
  // power.draw.average has a value exactly on Ampere+ except GA100, where power.draw is averaged too;
  // its [N/A] on older GPUs is expected, not an issue.
  const drawAveraged = byName.has('power.draw.average')
    ? average.value !== null
    : options.powerDrawAveraged?.(uuid) ?? true;

  let powerW: number | null = null;
  let powerField: string | null = null;
  let powerAveraged = false;
  // Report a marker only where it cost something: the preferred field, or every field when none had a value.
  if (instant.issue) issues.push(instant.issue);
  if (instant.value !== null) [powerW, powerField] = [instant.value, 'power.draw.instant'];
  else if (draw.value !== null) [powerW, powerField, powerAveraged] = [draw.value, 'power.draw', drawAveraged];
  else if (average.value !== null) [powerW, powerField, powerAveraged] = [average.value, 'power.draw.average', true];
  if (powerW === null) for (const r of [draw, average]) if (r.issue) issues.push(r.issue);
  if (powerW !== null && (powerW < 0 || powerW > 100_000)) {
    issues.push({ field: powerField ?? 'power', marker: `implausible value ${powerW} W` });
    powerW = null;
    powerField = null;
  }
  return {
    ok: true,
    row: { timestampMs, gpuIndex: Number(indexText), gpuUuid: uuid, powerW, powerAveraged: powerW === null ? false : powerAveraged, powerField, issues },
  };
}

/** A recorded `nvidia-smi --query-gpu ... -lms N` log, parsed line by line. */
export interface NvidiaSmiLog {
  readonly columns: readonly string[];
  readonly rows: readonly NvidiaSmiPowerRow[];
  /** Lines that could not be used, by 1-based line number, with why. Nothing is dropped silently. */
  readonly errors: readonly { readonly line: number; readonly reason: string }[];
}

/**
 * Parses a whole log. A header line (--format=csv without noheader) sets the columns, also
 * mid-file (nvidia-smi restarted); without one, `columns` (default NVIDIA_SMI_STREAM_FIELDS) says
 * what the noheader lines hold.
 */
export function parseNvidiaSmiLog(text: string, options: NvidiaSmiLineOptions & { readonly columns?: readonly string[] } = {}): NvidiaSmiLog {
  let columns: readonly string[] = options.columns ?? NVIDIA_SMI_STREAM_FIELDS;
  const rows: NvidiaSmiPowerRow[] = [];
  const errors: { line: number; reason: string }[] = [];
  const zone = options.zone ?? 'utc';
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === '') return;
    if (isNvidiaSmiHeader(raw)) {
      columns = parseNvidiaSmiHeader(raw);
      return;
    }
    const parsed = parseNvidiaSmiPowerLine(raw, columns, { ...options, zone });
    if (parsed.ok) rows.push(parsed.row);
    else errors.push({ line: i + 1, reason: parsed.reason });
  });
  return { columns, rows, errors };
}
