import type { GpuInfo, PowerSample } from '../model/power-sample.js';
import { epochMs, joules, watts } from '../model/units.js';
import { forEachLine, leadingFields } from './trace-file-lines.js';
import { NvidiaSmiTraceParser } from './trace-file-nvidia-smi.js';
import { PlainTraceParser } from './trace-file-plain.js';

/** A line of a trace that could not be used, and why. Lines are numbered from 1. */
export interface TraceError {
  readonly line: number;
  readonly message: string;
}

export type TraceFormat = 'plain' | 'nvidia-smi';

export interface ParsedPowerTrace {
  /** Good samples, sorted by time, then GPU index (so each GPU's samples are in order). */
  readonly samples: PowerSample[];
  /** Every line that was not used, with its reason; nothing is skipped silently. */
  readonly errors: TraceError[];
  /** Which format the header showed; 'unknown' when it showed neither (then `errors` says why). */
  readonly format: TraceFormat | 'unknown';
  /** GPUs seen in the trace, by index. */
  readonly gpus: GpuInfo[];
  /** How the trace was read (time zone assumption, repeated headers, ...). */
  readonly notes: string[];
}

export interface ParsePowerTraceOptions {
  /** Shown in notes. */
  readonly fileName?: string;
  /**
   * nvidia-smi timestamps carry no time zone: they are the capture machine's local time. They
   * are read as UTC plus this offset (minutes east of UTC, e.g. 120 for UTC+2); default 0.
   */
  readonly nvidiaSmiUtcOffsetMinutes?: number;
}

/** One good row from a format parser. */
export interface TraceRow {
  readonly line: number;
  readonly timestampMs: number;
  /** Index when the trace gives one. */
  readonly gpuIndex: number | null;
  /** UUID when the trace gives one. */
  readonly gpuUuid: string | null;
  readonly powerW: number | null;
  readonly energyJ: number | null;
  readonly powerAveraged?: boolean;
  readonly simulated?: boolean;
  readonly gpuName?: string;
  readonly powerLimitW?: number;
  readonly migEnabled?: boolean;
}

/** What a format parser does with the lines after the header. */
export interface TraceFormatParser {
  /** Parse one data line: a row, or the reason it is bad, or 'skip' for a repeated header. */
  parseLine(line: string, lineNumber: number): TraceRow | string | 'skip';
  /** Notes on how the file was read. */
  notes(): string[];
}

/**
 * Parse a power trace file: the plain CSV `timestamp_ms,gpu,power_w,energy_j` (gpu = index or
 * UUID, energy_j = cumulative counter in joules, may be empty) or the CSV that
 * `nvidia-smi --query-gpu=timestamp,index,uuid,power.draw,... --format=csv[,nounits]` prints.
 * The format is recognised from the header. Blank lines and lines starting with '#' are
 * comments. Never throws on content: every unusable line is in `errors` with its number.
 */
export function parsePowerTrace(text: string, opts: ParsePowerTraceOptions = {}): ParsedPowerTrace {
  const errors: TraceError[] = [];
  const rows: TraceRow[] = [];
  let parser: TraceFormatParser | undefined;
  let format: TraceFormat | 'unknown' = 'unknown';
  let headerSeen = false;
  forEachLine(text, (line, lineNumber) => {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */ || line.trim().length === 0) return;
    if (!headerSeen) {
      headerSeen = true;
      const { fields } = leadingFields(line, Number.MAX_SAFE_INTEGER);
      const names = fields.map((f) => f.toLowerCase());
      if (names.includes('timestamp_ms')) {
        const plain = PlainTraceParser.create(names, line);
        if (typeof plain === 'string') errors.push({ line: lineNumber, message: plain });
        else [parser, format] = [plain, 'plain'];
      } else if (names.includes('timestamp') && names.some((n) => n.startsWith('power.draw') || n.startsWith('gpu.power.draw'))) {
        const smi = NvidiaSmiTraceParser.create(fields, line, opts.nvidiaSmiUtcOffsetMinutes ?? 0);
        if (typeof smi === 'string') errors.push({ line: lineNumber, message: smi });
        else [parser, format] = [smi, 'nvidia-smi'];
      } else {
        errors.push({
          line: lineNumber,
          message: 'unrecognised header: expected "timestamp_ms,gpu,power_w,energy_j" or nvidia-smi --query-gpu CSV (timestamp, index or uuid, power.draw...)',
        });
      }
      return;
    }
    if (!parser) {
      errors.push({ line: lineNumber, message: 'not read: the header was not recognised' });
      return;
    }
    const parsed = parser.parseLine(line, lineNumber);
    if (parsed === 'skip') return;
    if (typeof parsed === 'string') errors.push({ line: lineNumber, message: parsed });
    else rows.push(parsed);
  });
  if (!headerSeen) errors.push({ line: 1, message: 'empty trace: no header line' });
  const { samples, gpus, duplicates } = assemble(rows);
  errors.push(...duplicates);
  errors.sort((a, b) => a.line - b.line);
  const notes = [
    ...(opts.fileName ? [`trace ${opts.fileName}`] : []),
    ...(parser ? parser.notes() : []),
  ];
  return { samples, errors, format, gpus, notes };
}

/** Format an error as "file:line: message". */
export function formatTraceError(fileName: string, error: TraceError): string {
  return `${fileName}:${error.line}: ${error.message}`;
}

/**
 * Give every GPU a UUID and an index (a trace may name GPUs by either), build the inventory,
 * sort by time and refuse a second sample of one GPU at one instant.
 */
function assemble(rows: readonly TraceRow[]): { samples: PowerSample[]; gpus: GpuInfo[]; duplicates: TraceError[] } {
  const byUuid = new Map<string, GpuInfo>();
  const byIndex = new Map<number, GpuInfo>();
  const usedIndices = new Set(rows.map((r) => r.gpuIndex).filter((i): i is number => i !== null));
  let nextFree = 0;
  const gpuOf = (row: TraceRow): GpuInfo => {
    const known = (row.gpuUuid !== null ? byUuid.get(row.gpuUuid) : undefined) ?? (row.gpuUuid === null && row.gpuIndex !== null ? byIndex.get(row.gpuIndex) : undefined);
    if (known) return known;
    let index = row.gpuIndex;
    if (index === null) {
      while (usedIndices.has(nextFree)) nextFree++;
      index = nextFree;
      usedIndices.add(index);
    }
    const uuid = row.gpuUuid ?? `GPU-index-${index}`; // the trace gives no UUID: a stable stand-in
    const gpu: GpuInfo = {
      uuid,
      index,
      name: row.gpuName ?? `GPU ${index} (from trace)`,
      ...(row.powerLimitW !== undefined && { powerLimitW: watts(row.powerLimitW) }),
      ...(row.migEnabled !== undefined && { migEnabled: row.migEnabled }),
    };
    byUuid.set(uuid, gpu);
    if (!byIndex.has(index)) byIndex.set(index, gpu);
    return gpu;
  };
  const built: PowerSample[] = rows.map((row) => {
    const gpu = gpuOf(row);
    const sample: PowerSample = {
      timestampMs: epochMs(row.timestampMs),
      gpuUuid: gpu.uuid,
      gpuIndex: gpu.index,
      powerW: row.powerW === null ? null : watts(row.powerW),
      energyJ: row.energyJ === null ? null : joules(row.energyJ),
    };
    if (row.powerAveraged !== undefined) (sample as { powerAveraged?: boolean }).powerAveraged = row.powerAveraged;
    if (row.simulated) (sample as { simulated?: boolean }).simulated = true;
    return sample;
  });
  // Traces are nearly always in order already: sort (a permutation) only when they are not.
  const before = (a: number, b: number): number =>
    (built[a] as PowerSample).timestampMs - (built[b] as PowerSample).timestampMs || (built[a] as PowerSample).gpuIndex - (built[b] as PowerSample).gpuIndex || a - b;
  let order: number[] | undefined;
  for (let i = 1; i < built.length; i++) {
    if (before(i - 1, i) > 0) {
      order = built.map((_, j) => j).sort(before);
      break;
    }
  }
  const samples: PowerSample[] = [];
  const duplicates: TraceError[] = [];
  const lastByGpu = new Map<string, { timestampMs: number; line: number }>();
  for (let k = 0; k < built.length; k++) {
    const i = order ? (order[k] as number) : k;
    const sample = built[i] as PowerSample;
    const line = (rows[i] as TraceRow).line;
    const last = lastByGpu.get(sample.gpuUuid);
    if (last === undefined) lastByGpu.set(sample.gpuUuid, { timestampMs: sample.timestampMs, line });
    else if (last.timestampMs === sample.timestampMs) {
      duplicates.push({ line, message: `second sample of GPU ${sample.gpuIndex} at ${new Date(sample.timestampMs).toISOString()} (first on line ${last.line})` });
      continue;
    } else {
      last.timestampMs = sample.timestampMs;
      last.line = line;
    }
    samples.push(sample);
  }
  const gpus = [...new Set(byUuid.values())].sort((a, b) => a.index - b.index);
  return { samples, gpus, duplicates };
}
