import type { RefusedMark, TraceFormatParser, TraceRow } from './trace-file.js';
import { decimal, excerpt, leadingFields } from './trace-file-lines.js';

// Epoch ms between 2000-01-01 and 2200-01-01: anything else is seconds or microseconds by mistake.
const MIN_EPOCH_MS = 946_684_800_000;
const MAX_EPOCH_MS = 7_258_118_400_000;
/** Far above any board's power: larger is a unit mistake (mW power, mJ counter). */
export const MAX_POWER_W = 5_000;
/**
 * Energy counters tick in steps (NVML's every few tens of ms), so over a very short interval a
 * correct counter can imply a high power: the counter check takes an interval as at least this long.
 */
const MIN_COUNTER_INTERVAL_MS = 100;
const MAX_GPU_INDEX = 1023;

/**
 * The plain trace `timestamp_ms,gpu,power_w,energy_j`: columns in any order, extra columns
 * ignored, power_w or energy_j may be left out of the header or empty on a line (not both).
 * Optional columns keep what formatPlainTrace writes through a file round trip: `gpu_index`
 * (the index of a GPU named by UUID in `gpu`), `power_averaged` (1/0, empty: unknown),
 * `simulated` (1/0, a simulator's label) and `counter_run_start` (1/0: the GPU's counter starts a
 * new run here, as a simulator's or a replay's does with each agent process).
 */
export class PlainTraceParser implements TraceFormatParser {
  private readonly width: number;
  private readonly extraColumns: string[];
  private repeatedHeaders = 0;

  private constructor(
    private readonly header: readonly string[],
    private readonly headerLine: string,
    private readonly col: Columns,
  ) {
    this.width = Math.max(...Object.values(col)) + 1;
    const known = new Set(['timestamp_ms', 'gpu', 'power_w', 'energy_j', 'gpu_index', 'power_averaged', 'simulated', 'counter_run_start']);
    this.extraColumns = header.filter((h) => !known.has(h));
  }

  /** A parser for this header (fields lower-cased; the raw line spots repeated headers), or the reason it is unusable. */
  static create(header: readonly string[], headerLine: string): PlainTraceParser | string {
    const at = (name: string): number => header.indexOf(name);
    const col: Columns = {
      ts: at('timestamp_ms'), gpu: at('gpu'), power: at('power_w'), energy: at('energy_j'),
      gpuIndex: at('gpu_index'), averaged: at('power_averaged'), simulated: at('simulated'), runStart: at('counter_run_start'),
    };
    if (col.gpu < 0) return 'header lacks the "gpu" column (expected timestamp_ms,gpu,power_w,energy_j)';
    if (col.power < 0 && col.energy < 0) return 'header has neither "power_w" nor "energy_j"';
    const dup = header.find((h, i) => h !== '' && header.indexOf(h) !== i);
    if (dup) return `header names column ${excerpt(dup)} twice`;
    return new PlainTraceParser(header, headerLine, col);
  }

  parseLine(line: string, lineNumber: number): TraceRow | RefusedMark | string | 'skip' {
    if (line === this.headerLine) {
      this.repeatedHeaders++; // concatenated traces repeat the header
      return 'skip';
    }
    const { fields, total } = leadingFields(line, this.width);
    const row = this.row(fields, total, lineNumber);
    if (typeof row !== 'string' || fieldAt(fields, this.col.runStart) !== '1') return row;
    // A refused line that marks a new counter run: the run still began there, so its mark goes on when its GPU is known.
    if (total !== this.header.length) return `${row}; a counter_run_start mark on it is lost: its fields do not line up with the header`;
    const gpu = this.gpu(fields);
    if (typeof gpu === 'string') return `${row}; its counter_run_start mark is lost: its gpu field cannot be read`;
    return { refused: row, ...gpu };
  }

  private row(fields: readonly string[], total: number, lineNumber: number): TraceRow | string {
    if (total !== this.header.length) return `expected ${this.header.length} fields, got ${total}`;

    const tsText = fieldAt(fields, this.col.ts);
    const ts = decimal(tsText);
    if (ts === undefined) return `timestamp_ms: not a number (${excerpt(tsText)})`;
    if (ts < MIN_EPOCH_MS || ts > MAX_EPOCH_MS) return `timestamp_ms: ${tsText} is not epoch milliseconds (seconds or microseconds?)`;

    const gpu = this.gpu(fields);
    if (typeof gpu === 'string') return gpu;
    const { gpuIndex, gpuUuid } = gpu;

    const powerText = fieldAt(fields, this.col.power);
    let powerW: number | null = null;
    if (powerText !== '') {
      const p = decimal(powerText);
      if (p === undefined) return `power_w: not a number (${excerpt(powerText)})`;
      if (p < 0 || p > MAX_POWER_W) return `power_w: ${powerText} out of range 0..${MAX_POWER_W} W`;
      powerW = p;
    }
    const energyText = fieldAt(fields, this.col.energy);
    let energyJ: number | null = null;
    if (energyText !== '') {
      const e = decimal(energyText);
      if (e === undefined) return `energy_j: not a number (${excerpt(energyText)})`;
      if (e < 0) return `energy_j: ${energyText} is negative (a cumulative counter)`;
      energyJ = e;
    }
    if (powerW === null && energyJ === null) return 'neither power_w nor energy_j has a value';
    const averagedText = fieldAt(fields, this.col.averaged);
    if (averagedText !== '' && averagedText !== '0' && averagedText !== '1') return `power_averaged: expected 1, 0 or empty (${excerpt(averagedText)})`;
    const simulatedText = fieldAt(fields, this.col.simulated);
    if (simulatedText !== '' && simulatedText !== '0' && simulatedText !== '1') return `simulated: expected 1, 0 or empty (${excerpt(simulatedText)})`;
    const runStartText = fieldAt(fields, this.col.runStart);
    if (runStartText !== '' && runStartText !== '0' && runStartText !== '1') return `counter_run_start: expected 1, 0 or empty (${excerpt(runStartText)})`;
    const row: { -readonly [K in keyof TraceRow]: TraceRow[K] } = { line: lineNumber, timestampMs: ts, gpuIndex, gpuUuid, powerW, energyJ };
    if (averagedText !== '') row.powerAveraged = averagedText === '1';
    if (simulatedText === '1') row.simulated = true;
    if (runStartText === '1') row.counterRunStart = true;
    return row;
  }

  /** The GPU a line names (its gpu and gpu_index fields), or why it cannot be read. */
  private gpu(fields: readonly string[]): { gpuIndex: number | null; gpuUuid: string | null } | string {
    const gpuText = fieldAt(fields, this.col.gpu);
    let gpuIndex: number | null = null;
    let gpuUuid: string | null = null;
    if (gpuText === '') return 'gpu: empty';
    if (isDigits(gpuText)) {
      gpuIndex = Number(gpuText);
      if (gpuIndex > MAX_GPU_INDEX) return `gpu: index ${gpuText} out of range 0..${MAX_GPU_INDEX}`;
    } else if (gpuText.length <= 128 && !/\s/.test(gpuText)) {
      gpuUuid = gpuText;
    } else {
      return `gpu: not an index or a UUID (${excerpt(gpuText)})`;
    }
    const indexText = fieldAt(fields, this.col.gpuIndex);
    if (indexText !== '') {
      if (!isDigits(indexText) || Number(indexText) > MAX_GPU_INDEX) return `gpu_index: not a GPU index 0..${MAX_GPU_INDEX} (${excerpt(indexText)})`;
      const index = Number(indexText);
      if (gpuIndex !== null && gpuIndex !== index) return `gpu_index: ${index} disagrees with gpu ${gpuIndex}`;
      gpuIndex = index;
    }
    return { gpuIndex, gpuUuid };
  }

  notes(): string[] {
    const notes = ['plain trace: timestamp_ms,gpu,power_w,energy_j (energy_j: cumulative counter, joules)'];
    if (this.col.averaged >= 0) notes.push('the trace says which power readings are ~1 s averages (column "power_averaged")');
    if (this.col.simulated >= 0) notes.push('the trace marks simulated samples (column "simulated")');
    if (this.col.runStart >= 0) notes.push('the trace marks where a GPU\'s energy counter starts a new run (column "counter_run_start"): a counter reset there');
    if (this.extraColumns.length > 0) notes.push(`columns ignored: ${this.extraColumns.join(', ')}`);
    if (this.repeatedHeaders > 0) notes.push(`${this.repeatedHeaders} repeated header line(s) skipped`);
    return notes;
  }
}

interface Columns {
  readonly ts: number;
  readonly gpu: number;
  readonly power: number;
  readonly energy: number;
  readonly gpuIndex: number;
  readonly averaged: number;
  readonly simulated: number;
  readonly runStart: number;
}

function isDigits(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return text.length > 0 && text.length <= 6;
}

/** Field i of a line, '' for a column the header lacks (i < 0). */
function fieldAt(fields: readonly string[], i: number): string {
  return i < 0 ? '' : (fields[i] ?? '');
}

/** A GPU's counter reading on one line, for counterUnitProblem. */
export interface CounterReading {
  readonly line: number;
  readonly timestampMs: number;
  readonly energyJ: number;
  readonly powerW: number | null;
}

/**
 * The reason a counter step is impossible, or undefined when it is fine. `prev` is the GPU's
 * previous accepted reading, earlier in time. A counter that goes back is a reset (the energy model
 * flags it); one that rises faster than MAX_POWER_W is not joules: NVML counts millijoules, and
 * a counter copied without the division reads ~1000x the power (said so when power_w agrees).
 */
export function counterUnitProblem(prev: CounterReading, cur: CounterReading): string | undefined {
  const deltaJ = cur.energyJ - prev.energyJ;
  const dtMs = cur.timestampMs - prev.timestampMs;
  if (!(deltaJ > 0) || !(dtMs > 0)) return undefined;
  const meanW = deltaJ / (Math.max(dtMs, MIN_COUNTER_INTERVAL_MS) / 1000);
  if (meanW <= MAX_POWER_W) return undefined;
  const powers = [cur.powerW, prev.powerW].filter((p): p is number => p !== null && p > 0);
  const powerW = powers.length > 0 ? powers.reduce((a, b) => a + b, 0) / powers.length : null;
  const ratio = powerW === null ? null : meanW / powerW;
  const why = ratio !== null && ratio > 300 && ratio < 3000
    ? `${Math.round(ratio)}x power_w (${round(powerW as number)} W): energy_j looks like millijoules (NVML's unit); the trace wants joules`
    : 'not a cumulative counter in joules (millijoules?)';
  return `energy_j: counter rises ${round(deltaJ)} in ${round(dtMs)} ms since line ${prev.line}, a mean of ${round(meanW)} W (above ${MAX_POWER_W} W): ${why}`;
}

function round(x: number): string {
  return String(Math.round(x * 100) / 100);
}
