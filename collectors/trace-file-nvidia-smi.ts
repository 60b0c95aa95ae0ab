import { powerDrawAveragedFor } from './nvidia-smi/nvidia-smi-inventory.js';
import type { TraceFormatParser, TraceRow } from './trace-file.js';
import { decimal, excerpt, leadingFields } from './trace-file-lines.js';

/** Query names nvidia-smi accepts for the same property (from --help-query-gpu). */
const ALIASES: Readonly<Record<string, string>> = {
  gpu_uuid: 'uuid',
  gpu_name: 'name',
  'gpu.power.draw.average': 'power.draw.average',
  'gpu.power.draw.instant': 'power.draw.instant',
  'gpu.power.current_limit': 'enforced.power.limit',
  'gpu.power.requested_limit': 'power.limit',
};

type Column = 'timestamp' | 'index' | 'uuid' | 'name' | 'power.draw' | 'power.draw.instant' | 'power.draw.average' | 'enforced.power.limit' | 'power.limit' | 'mig.mode.current' | 'compute_cap';
const COLUMNS: readonly Column[] = ['timestamp', 'index', 'uuid', 'name', 'power.draw', 'power.draw.instant', 'power.draw.average', 'enforced.power.limit', 'power.limit', 'mig.mode.current', 'compute_cap'];
const MAX_POWER_W = 5_000;

/** A field value nvidia-smi prints when it has no reading: [N/A], [Not Supported], ERR!, [Unknown Error], ... */
function unavailable(value: string): boolean {
  return value.charCodeAt(0) === 91 /* [ */ || value === 'N/A' || value === 'ERR!' || value === 'Not Supported' || value === 'Unknown Error';
}

/**
 * The CSV of `nvidia-smi --query-gpu=timestamp,index,uuid,power.draw,... --format=csv` with or
 * without units (`nounits`). Only the columns above are read, so a 200-column capture parses as
 * fast as a 4-column one.
 *
 * Power: power.draw.instant when present and readable (instantaneous); else power.draw (a ~1 s
 * average on Ampere and newer, which is where power.draw.average reads; where that column reads
 * [N/A] the board is older and power.draw is instantaneous; without that column, compute_cap
 * tells, and without either power.draw is taken as averaged, as the live sources do: unknown
 * means averaged, never overstate quality); else power.draw.average. A line with no readable
 * power is an error. nvidia-smi has no energy counter field (none in
 * --help-query-gpu of drivers 590-610), so these traces give energy by integration only.
 *
 * Timestamps ("2026/11/01 12:00:00.123") are the capture machine's local time with no zone:
 * read as UTC plus the configured offset, and said so in the notes.
 */
export class NvidiaSmiTraceParser implements TraceFormatParser {
  private readonly width: number;
  private repeatedHeaders = 0;
  private readonly usedPower = { instant: 0, draw: 0, average: 0 };
  /** Lines whose power.draw was taken as averaged for want of power.draw.average and compute_cap. */
  private averagingAssumed = 0;

  private constructor(
    private readonly headerLine: string,
    private readonly fieldCount: number,
    private readonly col: Readonly<Record<Column, number>>,
    private readonly utcOffsetMinutes: number,
  ) {
    this.width = Math.max(...Object.values(col)) + 1;
  }

  /** A parser for this header, or the reason it is unusable. */
  static create(fields: readonly string[], headerLine: string, utcOffsetMinutes: number): NvidiaSmiTraceParser | string {
    const col = Object.fromEntries(COLUMNS.map((c) => [c, -1])) as Record<Column, number>;
    fields.forEach((raw, i) => {
      const bracket = raw.indexOf(' [');
      const name = (bracket >= 0 ? raw.slice(0, bracket) : raw).trim().toLowerCase();
      const canonical = (ALIASES[name] ?? name) as Column;
      if (COLUMNS.includes(canonical) && col[canonical] < 0) col[canonical] = i;
    });
    if (col.timestamp < 0) return 'nvidia-smi header lacks "timestamp"';
    if (col.index < 0 && col.uuid < 0) return 'nvidia-smi header lacks "index" and "uuid": samples could not name their GPU';
    if (col['power.draw'] < 0 && col['power.draw.instant'] < 0 && col['power.draw.average'] < 0) return 'nvidia-smi header has no power.draw column';
    if (!Number.isFinite(utcOffsetMinutes) || Math.abs(utcOffsetMinutes) > 18 * 60) return `UTC offset ${utcOffsetMinutes} min is out of range`;
    return new NvidiaSmiTraceParser(headerLine, fields.length, col, utcOffsetMinutes);
  }

  parseLine(line: string, lineNumber: number): TraceRow | string | 'skip' {
    if (line === this.headerLine) {
      this.repeatedHeaders++; // a capture loop that restarted prints its header again
      return 'skip';
    }
    const { fields, total } = leadingFields(line, this.width);
    if (total !== this.fieldCount) return `expected ${this.fieldCount} fields, got ${total}`;

    const tsText = this.field(fields, 'timestamp') ?? '';
    const local = parseNvidiaSmiTimestamp(tsText);
    if (local === undefined) return `timestamp: not "YYYY/MM/DD HH:MM:SS.mmm" (${excerpt(tsText)})`;
    const ts = local - this.utcOffsetMinutes * 60_000;

    let gpuIndex: number | null = null;
    const indexText = this.field(fields, 'index');
    if (indexText !== undefined && !unavailable(indexText)) {
      const index = decimal(indexText);
      if (index === undefined || !Number.isInteger(index) || index < 0 || index > 1023) return `index: not a GPU index (${excerpt(indexText)})`;
      gpuIndex = index;
    }
    const uuidText = this.field(fields, 'uuid');
    const gpuUuid = uuidText !== undefined && uuidText !== '' && !unavailable(uuidText) ? uuidText : null;
    if (gpuIndex === null && gpuUuid === null) return `no GPU identity: index ${excerpt(indexText ?? '(absent)')}, uuid ${excerpt(uuidText ?? '(absent)')}`;

    const instant = this.power(fields, 'power.draw.instant');
    if (typeof instant === 'string') return instant;
    const draw = this.power(fields, 'power.draw');
    if (typeof draw === 'string') return draw;
    const average = this.power(fields, 'power.draw.average');
    if (typeof average === 'string') return average;
    let powerW: number;
    let powerAveraged: boolean;
    if (instant !== undefined) {
      powerW = instant;
      powerAveraged = false;
      this.usedPower.instant++;
    } else if (draw !== undefined) {
      powerW = draw;
      const averageText = this.field(fields, 'power.draw.average');
      if (averageText !== undefined) powerAveraged = !unavailable(averageText);
      else {
        const cc = this.field(fields, 'compute_cap');
        const known = cc !== undefined && cc !== '' && !unavailable(cc) ? cc : null;
        powerAveraged = powerDrawAveragedFor(known);
        if (known === null) this.averagingAssumed++;
      }
      this.usedPower.draw++;
    } else if (average !== undefined) {
      powerW = average;
      powerAveraged = true;
      this.usedPower.average++;
    } else {
      const shown = (['power.draw.instant', 'power.draw', 'power.draw.average'] as const)
        .filter((c) => this.col[c] >= 0)
        .map((c) => `${c} ${this.field(fields, c)}`);
      return `no power reading (${shown.join(', ')})`;
    }

    const row: { -readonly [K in keyof TraceRow]: TraceRow[K] } = { line: lineNumber, timestampMs: ts, gpuIndex, gpuUuid, powerW, energyJ: null, powerAveraged };
    // Inventory fields: read once per GPU is enough, but they are cheap and a later line may fix an [N/A].
    const limitW = this.power(fields, 'enforced.power.limit') ?? this.power(fields, 'power.limit');
    if (typeof limitW === 'number') row.powerLimitW = limitW;
    const name = this.field(fields, 'name');
    if (name !== undefined && name !== '' && !unavailable(name)) row.gpuName = name;
    const mig = this.field(fields, 'mig.mode.current');
    if (mig === 'Enabled' || mig === 'Disabled') row.migEnabled = mig === 'Enabled';
    return row;
  }

  private field(fields: readonly string[], c: Column): string | undefined {
    const i = this.col[c];
    return i < 0 ? undefined : (fields[i] ?? '');
  }

  /** A power column: watts, undefined when absent or unavailable ([N/A], ERR!, ...), or the reason it is malformed. */
  private power(fields: readonly string[], c: Column): number | string | undefined {
    const text = this.field(fields, c);
    if (text === undefined || unavailable(text)) return undefined;
    const value = parseWatts(text);
    if (value === undefined || value < 0 || value > MAX_POWER_W) return `${c}: not a power in watts (${excerpt(text)})`;
    return value;
  }

  notes(): string[] {
    const offset = this.utcOffsetMinutes;
    const notes = [
      offset === 0
        ? 'nvidia-smi timestamps carry no time zone: read as UTC'
        : `nvidia-smi timestamps carry no time zone: read as UTC${offset > 0 ? '+' : '-'}${Math.abs(offset)} min`,
      'nvidia-smi CSV has no energy counter: energy comes from integrating power',
    ];
    const { instant, draw, average } = this.usedPower;
    notes.push(`power from power.draw.instant: ${instant} lines, power.draw: ${draw}, power.draw.average: ${average}`);
    if (this.averagingAssumed > 0) {
      notes.push(`${this.averagingAssumed} power.draw line(s) without power.draw.average or compute_cap: taken as 1 s averages (power.draw averages on Ampere and newer except GA100; unknown means averaged)`);
    }
    if (this.repeatedHeaders > 0) notes.push(`${this.repeatedHeaders} repeated header line(s) skipped`);
    return notes;
  }
}

/** "69.85 W" (csv) or "69.85" (csv,nounits) as watts; undefined for anything else. */
function parseWatts(text: string): number | undefined {
  const bare = text.endsWith(' W') ? text.slice(0, -2) : text;
  return decimal(bare);
}

/**
 * "YYYY/MM/DD HH:MM:SS.mmm" (also "YYYY-MM-DD", fraction optional, 1-6 digits) as epoch ms,
 * reading the wall time as UTC. Undefined when malformed or not a real date.
 */
export function parseNvidiaSmiTimestamp(text: string): number | undefined {
  if (text.length < 19 || text.length > 26) return undefined;
  const num = (from: number, to: number): number => {
    let v = 0;
    for (let i = from; i < to; i++) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return NaN;
      v = v * 10 + c;
    }
    return v;
  };
  const sep = text[4];
  if ((sep !== '/' && sep !== '-') || text[7] !== sep || (text[10] !== ' ' && text[10] !== 'T') || text[13] !== ':' || text[16] !== ':') return undefined;
  const [year, month, day, hour, minute, second] = [num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19)];
  let ms = 0;
  if (text.length > 19) {
    if (text[19] !== '.' || text.length === 20) return undefined;
    const digits = text.length - 20;
    ms = (num(20, text.length) / 10 ** digits) * 1000;
  }
  if ([year, month, day, hour, minute, second, ms].some((v) => Number.isNaN(v))) return undefined;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  if (day > daysInMonth(year, month)) return undefined; // 2026/02/31 and the like
  return Date.UTC(year, month - 1, day, hour, minute, second) + ms;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}
