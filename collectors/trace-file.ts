import type { GpuInfo } from '../model/power-sample.js';
import { PowerSampleColumns, SAMPLE_AVERAGED, SAMPLE_AVERAGED_KNOWN, SAMPLE_COUNTER_RUN_START, SAMPLE_SIMULATED } from '../model/power-sample-columns.js';
import { COUNTER_GLITCH_SHARE } from '../model/energy-timeline.js';
import { watts } from '../model/units.js';
import { forEachLine, forEachLineOfFile, leadingFields, MAX_LINE_CHARS } from './trace-file-lines.js';
import { NvidiaSmiTraceParser } from './trace-file-nvidia-smi.js';
import { counterUnitProblem, PlainTraceParser, type CounterReading } from './trace-file-plain.js';

/** A line of a trace that could not be used, and why. Lines are numbered from 1. */
export interface TraceError {
  readonly line: number;
  readonly message: string;
  /** The kind of problem, without the line's values (what `errorsByReason` counts). */
  readonly reason: string;
}

/**
 * Bad lines kept with their messages: the first this many by line number. The rest are only counted
 * (`errorCount`, `errorsByReason`): a day-long capture whose power reads [N/A] has millions of bad lines.
 */
export const MAX_KEPT_TRACE_ERRORS = 100;

export type TraceFormat = 'plain' | 'nvidia-smi';

export interface ParsedPowerTrace {
  /**
   * Good samples, sorted by time, then GPU index. Each GPU's samples are in the order of its lines:
   * a line earlier than its GPU's previous one is an error, never sorted in (see assemble). Held in
   * columns: a day of a node is millions of samples.
   */
  readonly samples: PowerSampleColumns;
  /**
   * The first MAX_KEPT_TRACE_ERRORS lines that were not used (by line number), with their reasons.
   * Every one is counted in `errorCount` and `errorsByReason`: nothing is skipped silently.
   */
  readonly errors: TraceError[];
  /** How many lines were not used in all (`errors` lists the first of them). */
  readonly errorCount: number;
  /** `errorCount` by reason, most frequent first (ties by reason); the counts sum to `errorCount`. */
  readonly errorsByReason: readonly { readonly reason: string; readonly count: number }[];
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
  /** The GPU's counter starts a new run here (PowerSample.counterRunStart). */
  readonly counterRunStart?: boolean;
  readonly gpuName?: string;
  readonly powerLimitW?: number;
  readonly migEnabled?: boolean;
}

/**
 * A bad line that marks counter_run_start and names a GPU that can be read: the new run began
 * there, so the mark passes to that GPU's next accepted line (see assemble).
 */
export interface RefusedMark {
  /** Why the line is bad. */
  readonly refused: string;
  readonly gpuIndex: number | null;
  readonly gpuUuid: string | null;
}

/** What a format parser does with the lines after the header. */
export interface TraceFormatParser {
  /** Parse one data line: a row, or the reason it is bad (with its GPU's mark when it carries one), or 'skip' for a repeated header. */
  parseLine(line: string, lineNumber: number): TraceRow | RefusedMark | string | 'skip';
  /** Notes on how the file was read. */
  notes(): string[];
}

/**
 * Parse a power trace file: the plain CSV `timestamp_ms,gpu,power_w,energy_j` (gpu = index or
 * UUID, energy_j = cumulative counter in joules, may be empty) or the CSV that
 * `nvidia-smi --query-gpu=timestamp,index,uuid,power.draw,... --format=csv[,nounits]` prints.
 * The format is recognised from the header. Blank lines and lines starting with '#' are
 * comments. Never throws on content: every unusable line is in `errors` with its number.
 * For a file, readPowerTraceFile streams it instead of holding it as one string.
 */
export function parsePowerTrace(text: string, opts: ParsePowerTraceOptions = {}): ParsedPowerTrace {
  const reader = new PowerTraceReader(opts);
  forEachLine(text, (line, lineNumber) => reader.line(line, lineNumber), (lineNumber) => reader.tooLong(lineNumber));
  return reader.finish();
}

/**
 * parsePowerTrace for a file, read as a stream line by line: memory grows with the samples (kept
 * in typed arrays until the end), not with the file's text. Rejects only when the file cannot be read.
 */
export async function readPowerTraceFile(path: string, opts: ParsePowerTraceOptions = {}): Promise<ParsedPowerTrace> {
  const reader = new PowerTraceReader(opts);
  await forEachLineOfFile(path, (line, lineNumber) => reader.line(line, lineNumber), (lineNumber) => reader.tooLong(lineNumber));
  return reader.finish();
}

/** Reads a trace line by line (header first) and assembles the samples at the end. */
class PowerTraceReader {
  private readonly errors = new TraceErrorLog();
  private readonly rows = new TraceRows();
  private parser: TraceFormatParser | undefined;
  private format: TraceFormat | 'unknown' = 'unknown';
  private headerSeen = false;

  constructor(private readonly opts: ParsePowerTraceOptions) {}

  line(line: string, lineNumber: number): void {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */ || line.trim().length === 0) return;
    if (!this.headerSeen) {
      this.headerSeen = true;
      this.header(line, lineNumber);
      return;
    }
    if (!this.parser) {
      this.errors.add(lineNumber, 'not read: the header was not recognised', 'not read: the header was not recognised');
      return;
    }
    const parsed = this.parser.parseLine(line, lineNumber);
    if (parsed === 'skip') return;
    if (typeof parsed === 'string') this.errors.add(lineNumber, parsed);
    else if ('refused' in parsed) this.rows.pushMark(lineNumber, parsed); // its error is added in assemble, once its GPU is known
    else this.rows.push(parsed);
  }

  /** A line longer than MAX_LINE_CHARS: a bad line like any other (never held, so it cannot exhaust memory). */
  tooLong(lineNumber: number): void {
    const header = !this.headerSeen;
    this.headerSeen = true;
    this.errors.add(lineNumber, `${header ? 'header ' : ''}line longer than ${MAX_LINE_CHARS} characters: not a trace line`, `line longer than ${MAX_LINE_CHARS} characters`);
  }

  finish(): ParsedPowerTrace {
    const errors = this.errors;
    if (!this.headerSeen) errors.add(1, 'empty trace: no header line', 'empty trace');
    const { samples, gpus, notes: assembled } = assemble(this.rows, errors);
    const notes = [
      ...(this.opts.fileName ? [`trace ${this.opts.fileName}`] : []),
      ...(this.parser ? this.parser.notes() : []),
      ...assembled,
    ];
    return { samples, errors: errors.kept(), errorCount: errors.count, errorsByReason: errors.byReason(), format: this.format, gpus, notes };
  }

  private header(line: string, lineNumber: number): void {
    const { fields } = leadingFields(line, Number.MAX_SAFE_INTEGER);
    const names = fields.map((f) => f.toLowerCase());
    if (names.includes('timestamp_ms')) {
      const plain = PlainTraceParser.create(names, line);
      if (typeof plain === 'string') this.errors.add(lineNumber, plain, 'header: unusable plain trace header');
      else [this.parser, this.format] = [plain, 'plain'];
    } else if (names.includes('timestamp') && names.some((n) => n.startsWith('power.draw') || n.startsWith('gpu.power.draw'))) {
      const smi = NvidiaSmiTraceParser.create(fields, line, this.opts.nvidiaSmiUtcOffsetMinutes ?? 0);
      if (typeof smi === 'string') this.errors.add(lineNumber, smi, 'header: unusable nvidia-smi header');
      else [this.parser, this.format] = [smi, 'nvidia-smi'];
    } else {
      this.errors.add(lineNumber, 'unrecognised header: expected "timestamp_ms,gpu,power_w,energy_j" or nvidia-smi --query-gpu CSV (timestamp, index or uuid, power.draw...)', 'unrecognised header');
    }
  }
}

/** Format an error as "file:line: message". */
export function formatTraceError(fileName: string, error: Pick<TraceError, 'line' | 'message'>): string {
  return `${fileName}:${error.line}: ${error.message}`;
}

/**
 * Bad lines: every one counted (in all and by reason), the first MAX_KEPT_TRACE_ERRORS by line
 * number kept. Memory stays bounded however many lines are bad: the kept list is cut back to the
 * first ones whenever it doubles (problems found while assembling come after the parse errors and
 * not always in line order).
 */
export class TraceErrorLog {
  count = 0;
  private list: TraceError[] = [];
  private readonly reasons = new Map<string, number>();
  /** `list` holds exactly MAX_KEPT_TRACE_ERRORS sorted entries, then maybe more appended since. */
  private sortedFull = false;

  add(line: number, message: string, reason: string = reasonOf(message)): void {
    this.count++;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
    // Once full, a line after the last kept one can never be among the first.
    if (this.list.length >= MAX_KEPT_TRACE_ERRORS && this.sortedFull && line > (this.list[MAX_KEPT_TRACE_ERRORS - 1] as TraceError).line) return;
    this.list.push({ line, message, reason });
    if (this.list.length >= 2 * MAX_KEPT_TRACE_ERRORS) this.cut();
  }

  /** The first MAX_KEPT_TRACE_ERRORS errors by line number (stable: file order breaks ties). */
  kept(): TraceError[] {
    this.cut();
    return [...this.list];
  }

  byReason(): { reason: string; count: number }[] {
    return [...this.reasons].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
  }

  private cut(): void {
    this.list.sort((a, b) => a.line - b.line);
    if (this.list.length > MAX_KEPT_TRACE_ERRORS) this.list.length = MAX_KEPT_TRACE_ERRORS;
    this.sortedFull = this.list.length === MAX_KEPT_TRACE_ERRORS;
  }
}

/**
 * A parser's message without the line's own values: what comes before a parenthesis or a semicolon,
 * numbers as N and quoted text as "…" ("expected 5 fields, got 3" → "expected N fields, got N").
 */
function reasonOf(message: string): string {
  let end = message.length;
  for (const stop of [' (', '; ']) {
    const at = message.indexOf(stop);
    if (at >= 0 && at < end) end = at;
  }
  const reason = message.slice(0, end).replace(/"[^"]*"/g, '"…"').replace(/[0-9][0-9.eE+-]*/g, 'N').trim();
  return reason.length > 80 ? `${reason.slice(0, 80)}…` : reason;
}


/** Good rows in file order, column by column: a day-long trace has millions, and objects cost ~10x. */
class TraceRows {
  length = 0;
  timestampMs = new Float64Array(1024);
  /** NaN: no value. */
  powerW = new Float64Array(1024);
  /** NaN: no value. */
  energyJ = new Float64Array(1024);
  line = new Uint32Array(1024);
  /** Into `identities`. */
  identity = new Uint32Array(1024);
  /** SAMPLE_* bits (model/power-sample-columns.ts). */
  flags = new Uint8Array(1024);
  /** Each distinct (uuid, index) a row names, as the first row that named it (its name, power limit, MIG mode). */
  readonly identities: TraceRow[] = [];
  /** Bad lines that mark counter_run_start, each after the `rows` good rows before it in the file. */
  readonly marks: (RefusedMark & { readonly line: number; readonly after: number })[] = [];
  private readonly identityOf = new Map<string, number>();

  pushMark(line: number, mark: RefusedMark): void {
    this.marks.push({ ...mark, line, after: this.length });
  }

  push(row: TraceRow): void {
    if (this.length === this.line.length) this.grow();
    const i = this.length++;
    this.timestampMs[i] = row.timestampMs;
    this.powerW[i] = row.powerW ?? Number.NaN;
    this.energyJ[i] = row.energyJ ?? Number.NaN;
    this.line[i] = row.line;
    const key = `${row.gpuUuid ?? ''}\u0000${row.gpuIndex ?? ''}`;
    let identity = this.identityOf.get(key);
    if (identity === undefined) {
      identity = this.identities.length;
      this.identities.push(row);
      this.identityOf.set(key, identity);
    }
    this.identity[i] = identity;
    this.flags[i] = (row.powerAveraged !== undefined ? SAMPLE_AVERAGED_KNOWN : 0) | (row.powerAveraged === true ? SAMPLE_AVERAGED : 0) | (row.simulated ? SAMPLE_SIMULATED : 0)
      | (row.counterRunStart ? SAMPLE_COUNTER_RUN_START : 0);
  }

  private grow(): void {
    const size = this.line.length * 2;
    const grown = <T extends Float64Array | Uint32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const next = make(size);
      next.set(old);
      return next;
    };
    this.timestampMs = grown(this.timestampMs, (n) => new Float64Array(n));
    this.powerW = grown(this.powerW, (n) => new Float64Array(n));
    this.energyJ = grown(this.energyJ, (n) => new Float64Array(n));
    this.line = grown(this.line, (n) => new Uint32Array(n));
    this.identity = grown(this.identity, (n) => new Uint32Array(n));
    this.flags = grown(this.flags, (n) => new Uint8Array(n));
  }
}

/** Said of a refused line that marks counter_run_start when its GPU's next accepted line takes the mark. */
const MARK_CARRIED = '; its counter_run_start mark passes to the GPU\'s next line';

/** Beyond this many blocks of lines out of time order, a GPU's lines are not considered for re-ordering. */
const MAX_BLOCKS = 1000;

/** A stretch of one GPU's lines, in file order, whose timestamps do not go back. */
interface Block {
  /** Row position of its first line; it ends where the GPU's next block starts. */
  readonly start: number;
  end: number;
  readonly firstMs: number;
  lastMs: number;
  readonly firstJ: number;
  lastJ: number;
  /** Its first line starts a new counter run: the counter cannot confirm that it follows another block. */
  readonly firstRunStart: boolean;
}

/**
 * Give every GPU a UUID and an index (a trace may name GPUs by either), build the inventory, and
 * take each GPU's lines in time order without ever integrating across a step back in time:
 * - a line earlier than its GPU's previous line is an error naming the step (a clock stepped back,
 *   or a capture across a DST fall-back, whose two hours would otherwise be interleaved into one);
 * - the one exception is whole blocks of lines that do not overlap in time and whose energy counter
 *   continues from one to the next once they are in time order (captures concatenated in the wrong
 *   order): those are put in order, and a note says so. Without a counter nothing confirms that
 *   order (a DST shift of under an hour also gives blocks that do not overlap), so they are errors;
 * - a second sample of a GPU at one instant, and a counter step no board can draw (counterUnitProblem:
 *   millijoules), are errors; a climb straight back after a drop (and any repeats of it), to the
 *   reading before the drop or at most 1% under it, is judged from that reading (the drop was a
 *   glitch: judgeCounterReading in model/energy-timeline.ts).
 * Lines of different GPUs may come in any order: samples are merged by time, then GPU index.
 */
/**
 * At most this many distinct GPUs are read from one trace (indices run 0..1023). More is not a node:
 * a column of host names or request ids read as UUIDs, say; and analysis costs grow with GPUs x periods.
 */
export const MAX_TRACE_GPUS = 1024;

/** The UUID a GPU named only by its index N is given: `GPU-index-N`. */
const STAND_IN_UUID_PREFIX = 'GPU-index-';

/**
 * The GPU a row names. A row naming only the stand-in UUID of index N (a trace written from one
 * without UUIDs, say, joined to the original), or the stand-in of its own index, names GPU N as a row
 * naming only index N does: otherwise the two would be two GPUs under one UUID, and a sample of one
 * would escape the other's checks (a second sample at one instant, a line back in time).
 */
function named(row: Pick<TraceRow, 'gpuUuid' | 'gpuIndex'>): { gpuUuid: string | null; gpuIndex: number | null } {
  const uuid = row.gpuUuid;
  if (uuid !== null && uuid.startsWith(STAND_IN_UUID_PREFIX)) {
    const digits = uuid.slice(STAND_IN_UUID_PREFIX.length);
    const index = Number(digits);
    if (Number.isSafeInteger(index) && String(index) === digits && (row.gpuIndex === null || row.gpuIndex === index)) return { gpuUuid: null, gpuIndex: index };
  }
  return { gpuUuid: uuid, gpuIndex: row.gpuIndex };
}

/** Why the rows of an identity are refused. */
interface Refusal {
  readonly message: string;
  readonly reason: string;
}

interface Inventory {
  readonly gpus: GpuInfo[];
  /** Each identity's GPU (position in `gpus`), or -1 when its rows are refused. */
  readonly gpuOfIdentity: number[];
  /** Why, for the identities whose GPU is -1. */
  readonly refused: (Refusal | undefined)[];
}

/**
 * The GPUs the rows name, the same whatever the order of the lines. First, the rows that give both
 * a UUID and an index bind that index to that UUID; then a row giving only an index (or a stand-in
 * UUID, as nvidia-smi's "[Unknown Error]" gives) names the GPU bound to it, and one giving only a
 * UUID takes the index bound to it (else a free one). An index given two UUIDs, a UUID given two
 * indices, and UUIDs that differ only in case (one GPU or two?) are never merged or split: the rows
 * of the identity seen later are refused, each naming the line of the one seen first.
 */
function inventory(identities: readonly TraceRow[]): Inventory {
  const names = identities.map(named);
  const uuidAtIndex = new Map<number, { uuid: string; line: number }>();
  const indexOfUuid = new Map<string, { index: number; line: number }>();
  const spelling = new Map<string, { uuid: string; line: number }>();
  const refused: (Refusal | undefined)[] = identities.map(() => undefined);
  identities.forEach((row, k) => {
    const { gpuUuid: uuid, gpuIndex: index } = names[k] as ReturnType<typeof named>;
    if (uuid === null) return;
    const first = spelling.get(uuid.toLowerCase());
    if (first === undefined) spelling.set(uuid.toLowerCase(), { uuid, line: row.line });
    else if (first.uuid !== uuid) {
      refused[k] = { message: `gpu: ${uuid} differs only in case from ${first.uuid} on line ${first.line}: one GPU or two? (write each UUID one way)`, reason: 'gpu: UUIDs that differ only in case' };
      return;
    }
    if (index === null) return;
    const atIndex = uuidAtIndex.get(index);
    const ofUuid = indexOfUuid.get(uuid);
    if (ofUuid !== undefined && ofUuid.index !== index) {
      refused[k] = { message: `gpu: ${uuid} at index ${index}, but at index ${ofUuid.index} on line ${ofUuid.line}: one GPU cannot have two indices`, reason: 'gpu: one UUID at two indices' };
    } else if (atIndex !== undefined && atIndex.uuid !== uuid) {
      refused[k] = { message: `gpu: ${uuid} at index ${index}, but index ${index} is ${atIndex.uuid} on line ${atIndex.line}: one index cannot be two GPUs (captures of two machines or boots joined?)`, reason: 'gpu: two UUIDs at one index' };
    } else if (atIndex === undefined) {
      uuidAtIndex.set(index, { uuid, line: row.line });
      indexOfUuid.set(uuid, { index, line: row.line });
    }
  });

  const usedIndices = new Set(names.map((n) => n.gpuIndex).filter((i): i is number => i !== null));
  let nextFree = 0;
  const gpus: GpuInfo[] = [];
  const ordinalOf = new Map<string, number>();
  const gpuOfIdentity = identities.map((row, k) => {
    if (refused[k] !== undefined) return -1;
    const { gpuUuid, gpuIndex } = names[k] as ReturnType<typeof named>;
    let uuid = gpuUuid ?? (gpuIndex !== null ? uuidAtIndex.get(gpuIndex)?.uuid : undefined);
    let index = gpuIndex ?? (gpuUuid !== null ? indexOfUuid.get(gpuUuid)?.index : undefined);
    if (uuid !== undefined) {
      const known = ordinalOf.get(uuid);
      if (known !== undefined) return known;
    }
    if (index === undefined || index === null) {
      while (usedIndices.has(nextFree)) nextFree++;
      index = nextFree;
      usedIndices.add(index);
    }
    uuid ??= `${STAND_IN_UUID_PREFIX}${index}`; // the trace gives no UUID for this index: a stable stand-in
    const known = ordinalOf.get(uuid);
    if (known !== undefined) return known;
    if (gpus.length >= MAX_TRACE_GPUS) {
      refused[k] = {
        message: `gpu: ${gpuUuid ?? String(gpuIndex)} would be GPU number ${MAX_TRACE_GPUS + 1} of the trace; at most ${MAX_TRACE_GPUS} distinct GPUs are read (is the gpu column an index or a GPU UUID?)`,
        reason: `gpu: more than ${MAX_TRACE_GPUS} distinct GPUs`,
      };
      return -1;
    }
    gpus.push({
      uuid,
      index,
      name: row.gpuName ?? `GPU ${index} (from trace)`,
      ...(row.powerLimitW !== undefined && { powerLimitW: watts(row.powerLimitW) }),
      ...(row.migEnabled !== undefined && { migEnabled: row.migEnabled }),
    });
    ordinalOf.set(uuid, gpus.length - 1);
    return gpus.length - 1;
  });
  return { gpus, gpuOfIdentity, refused };
}

function assemble(rows: TraceRows, problems: TraceErrorLog): { samples: PowerSampleColumns; gpus: GpuInfo[]; notes: string[] } {
  // GPUs in order of first appearance (a GPU first seen under a refused identity comes where it is first accepted).
  const { gpus: gpuList, gpuOfIdentity, refused } = inventory(rows.identities);
  const n = rows.length;
  const { timestampMs: ts, energyJ, powerW, line, identity, flags } = rows;
  const gpuAt = (i: number): number => gpuOfIdentity[identity[i] as number] as number;
  const runStartAt = (i: number): boolean => ((flags[i] as number) & SAMPLE_COUNTER_RUN_START) !== 0;

  // Each GPU's blocks of lines in file order (a new block where its time goes back).
  const blocks: Block[][] = gpuList.map(() => []);
  for (let i = 0; i < n; i++) {
    const g = gpuAt(i);
    if (g < 0) continue; // refused (inventory)
    const list = blocks[g] as Block[];
    const t = ts[i] as number;
    const e = energyJ[i] as number;
    const last = list[list.length - 1];
    if (last !== undefined && t >= last.lastMs) {
      last.lastMs = t;
      last.lastJ = e;
      last.end = i + 1;
    } else if (list.length <= MAX_BLOCKS) {
      list.push({ start: i, end: i + 1, firstMs: t, lastMs: t, firstJ: e, lastJ: e, firstRunStart: runStartAt(i) });
    }
  }
  // The GPU of each bad line's counter_run_start mark, -1 when no GPU of the trace is the one it names.
  const byUuid = new Map(gpuList.map((gpu, g) => [gpu.uuid, g]));
  const byIndex = new Map(gpuList.map((gpu, g) => [gpu.index, g]));
  const markGpu = rows.marks.map((mark) => {
    const { gpuUuid, gpuIndex } = named(mark);
    const g = gpuUuid !== null ? byUuid.get(gpuUuid) : gpuIndex !== null ? byIndex.get(gpuIndex) : undefined;
    return g === undefined || (gpuIndex !== null && (gpuList[g] as GpuInfo).index !== gpuIndex) ? -1 : g;
  });
  const markedGpus = new Set(markGpu);
  // Per GPU: the blocks in the order to read them, when out-of-order blocks can be put in order honestly.
  const reordered = blocks.map((list, g) => {
    if (list.length < 2 || list.length > MAX_BLOCKS) return undefined;
    // A bad line's mark: a new run began between lines of the file, so its counter cannot confirm an order either.
    if (markedGpus.has(g)) return undefined;
    const sorted = [...list].sort((a, b) => a.firstMs - b.firstMs);
    for (let k = 1; k < sorted.length; k++) {
      const [prev, next] = [sorted[k - 1] as Block, sorted[k] as Block];
      // Overlap, or no counter that confirms the order (NaN fails; so does a new counter run).
      if (!(prev.lastMs < next.firstMs && prev.lastJ <= next.firstJ) || next.firstRunStart) return undefined;
    }
    return sorted;
  });

  const accepted = new Uint8Array(n);
  const lastMs = new Float64Array(gpuList.length).fill(-Infinity);
  const lastLine = new Uint32Array(gpuList.length);
  const lastCounter: (CounterReading | undefined)[] = gpuList.map(() => undefined);
  // The reading before the last one when the last one dropped below it: a glitch if the next climbs straight back.
  const beforeDrop: (CounterReading | undefined)[] = gpuList.map(() => undefined);
  // A refused line's counter_run_start: the new run began there, so the GPU's next accepted line is in it.
  const runStartOwed = new Uint8Array(gpuList.length);
  const take = (i: number, g: number): void => {
    const t = ts[i] as number;
    const at = line[i] as number;
    const gpu = gpuList[g] as GpuInfo;
    const carried = runStartAt(i) ? MARK_CARRIED : '';
    if (t < (lastMs[g] as number)) {
      problems.add(
        at,
        `timestamp goes back ${seconds((lastMs[g] as number) - t)} for GPU ${gpu.index}: ${iso(t)} after ${iso(lastMs[g] as number)} on line ${lastLine[g]}; ` +
          `not integrated across (a clock step, or a capture across a DST fall-back: give the right UTC offset, or put the captures in time order)${carried}`,
        'timestamp goes back for its GPU',
      );
      if (carried) runStartOwed[g] = 1;
      return;
    }
    if (t === lastMs[g]) {
      problems.add(at, `second sample of GPU ${gpu.index} at ${iso(t)} (first on line ${lastLine[g]})${carried}`, 'second sample of a GPU at one instant');
      if (carried) runStartOwed[g] = 1;
      return;
    }
    if (runStartOwed[g] === 1) {
      flags[i] = (flags[i] as number) | SAMPLE_COUNTER_RUN_START;
      runStartOwed[g] = 0;
    }
    if (runStartAt(i)) {
      // A new counter run: its readings are not steps from the run before.
      lastCounter[g] = undefined;
      beforeDrop[g] = undefined;
    }
    const e = energyJ[i] as number;
    if (!Number.isNaN(e)) {
      const p = powerW[i] as number;
      const reading: CounterReading = { line: at, timestampMs: t, energyJ: e, powerW: Number.isNaN(p) ? null : p };
      const prev = lastCounter[g];
      const problem = prev === undefined ? undefined : counterUnitProblem(prev, reading);
      // A rise from a drop that climbs straight back to where the counter was, or just under it (a
      // glitch there: judgeCounterReading): the drop was a glitch, and this rise is judged from the reading before it.
      const mark = beforeDrop[g];
      const glitchBefore = problem !== undefined && mark !== undefined && e >= mark.energyJ * (1 - COUNTER_GLITCH_SHARE) && counterUnitProblem(mark, reading) === undefined;
      if (problem !== undefined && !glitchBefore) {
        problems.add(at, problem, 'energy_j: counter rises faster than any board draws');
        return;
      }
      // A repeat of the drop keeps the reading before it: the timeline judges a drop by the next reading that differs.
      beforeDrop[g] = prev === undefined ? undefined : e < prev.energyJ ? prev : e === prev.energyJ ? beforeDrop[g] : undefined;
      lastCounter[g] = reading;
    }
    accepted[i] = 1;
    lastMs[g] = t;
    lastLine[g] = at;
  };
  // A bad line's mark is owed to its GPU from where the line is in the file (GPUs carrying one are read in file order).
  let nextMark = 0;
  const oweMarksBefore = (i: number): void => {
    for (; nextMark < rows.marks.length && (rows.marks[nextMark] as (typeof rows.marks)[number]).after <= i; nextMark++) {
      const mark = rows.marks[nextMark] as (typeof rows.marks)[number];
      const g = markGpu[nextMark] as number;
      if (g >= 0) runStartOwed[g] = 1;
      const gpuName = mark.gpuUuid ?? String(mark.gpuIndex);
      problems.add(mark.line, mark.refused + (g >= 0 ? MARK_CARRIED : `; its counter_run_start mark is lost: no line of GPU ${gpuName} is read`));
    }
  };
  for (let i = 0; i < n; i++) {
    oweMarksBefore(i);
    const g = gpuAt(i);
    if (g < 0) {
      const why = refused[identity[i] as number] as Refusal;
      problems.add(line[i] as number, why.message, why.reason);
    } else if (reordered[g] === undefined) take(i, g);
  }
  oweMarksBefore(n); // after each GPU's last line: nothing of the new run was read
  const reorderNotes: string[] = [];
  reordered.forEach((sorted, g) => {
    if (sorted === undefined) return;
    for (const block of sorted) for (let i = block.start; i < block.end; i++) if (gpuAt(i) === g) take(i, g);
    const firstLate = (blocks[g] as Block[])[1] as Block;
    reorderNotes.push(`GPU ${(gpuList[g] as GpuInfo).index}: ${sorted.length} blocks from line ${line[firstLate.start]}`);
  });

  // Accepted rows, merged by time then GPU index (file order breaks ties); sorted only when needed.
  let count = 0;
  for (let i = 0; i < n; i++) count += accepted[i] as number;
  const order = new Uint32Array(count);
  for (let i = 0, k = 0; i < n; i++) if (accepted[i]) order[k++] = i;
  const before = (a: number, b: number): number => (ts[a] as number) - (ts[b] as number) || (gpuList[gpuAt(a)] as GpuInfo).index - (gpuList[gpuAt(b)] as GpuInfo).index || a - b;
  for (let k = 1; k < count; k++) {
    if (before(order[k - 1] as number, order[k] as number) > 0) {
      order.sort(before);
      break;
    }
  }
  // Counted before sampleColumns, which may turn the identity column into the GPU column in place.
  const singleNotes: string[] = [];
  const perGpu = new Uint32Array(gpuList.length);
  for (let k = 0; k < count; k++) {
    const g = gpuAt(order[k] as number);
    perGpu[g] = (perGpu[g] as number) + 1;
  }
  const single = gpuList.filter((_, g) => perGpu[g] === 1);
  if (single.length > 0) {
    const listed = single.slice(0, 10).map((g) => `${g.index} (${g.uuid})`).join(', ');
    singleNotes.push(`${single.length} GPU(s) with a single sample: no energy is measured from one sample (GPU ${listed}${single.length > 10 ? ', ...' : ''})`);
  }
  const samples = sampleColumns(rows, order, gpuList, gpuAt);
  const notes = reorderNotes.length === 0 ? [] : [
    `blocks of lines out of time order were put in time order (${reorderNotes.join('; ')}): they do not overlap in time and each GPU's energy counter continues across them (concatenated captures)`,
  ];
  notes.push(...singleNotes);
  const gpus = [...gpuList].sort((a, b) => a.index - b.index);
  return { samples, gpus, notes };
}

/**
 * The accepted rows in `order` as columns. When that is every row in file order (a trace in time
 * order with no bad line, the common case), the row arrays are used as they are, not copied: at
 * millions of samples the copy would double what the trace holds.
 */
function sampleColumns(rows: TraceRows, order: Uint32Array, gpuList: readonly GpuInfo[], gpuAt: (row: number) => number): PowerSampleColumns {
  const count = order.length;
  const gpus = gpuList.map((g) => ({ uuid: g.uuid, index: g.index }));
  let inFileOrder = count === rows.length;
  for (let k = 0; inFileOrder && k < count; k++) inFileOrder = order[k] === k;
  if (inFileOrder) {
    // The identity column becomes the GPU column in place (each row's identity read before it is overwritten).
    const gpu = rows.identity;
    for (let i = 0; i < count; i++) gpu[i] = gpuAt(i);
    return new PowerSampleColumns({
      timestampMs: rows.timestampMs.subarray(0, count),
      powerW: rows.powerW.subarray(0, count),
      energyJ: rows.energyJ.subarray(0, count),
      gpu: gpu.subarray(0, count),
      flags: rows.flags.subarray(0, count),
      gpus,
    });
  }
  const timestampMs = new Float64Array(count);
  const powerW = new Float64Array(count);
  const energyJ = new Float64Array(count);
  const gpu = new Uint32Array(count);
  const flags = new Uint8Array(count);
  for (let k = 0; k < count; k++) {
    const i = order[k] as number;
    timestampMs[k] = rows.timestampMs[i] as number;
    powerW[k] = rows.powerW[i] as number;
    energyJ[k] = rows.energyJ[i] as number;
    gpu[k] = gpuAt(i);
    flags[k] = rows.flags[i] as number;
  }
  return new PowerSampleColumns({ timestampMs, powerW, energyJ, gpu, flags, gpus });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A time step for a message: seconds, up to ms precision. */
function seconds(ms: number): string {
  return `${Math.round(ms) / 1000} s`;
}
