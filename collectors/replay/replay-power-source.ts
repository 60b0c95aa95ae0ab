import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import { SAMPLE_AVERAGED, SAMPLE_COUNTER_RUN_START, SAMPLE_SIMULATED, type PowerSampleColumns } from '../../model/power-sample-columns.js';
import { epochMs, joules } from '../../model/units.js';
import { foldCounterReadings, type CounterReadings } from '../../model/energy-timeline.js';
import type { PowerSource, PowerSourceError, PowerSourceQuality } from '../power-source.js';
import { formatTraceError, parsePowerTrace, readPowerTraceFile, type ParsedPowerTrace } from '../trace-file.js';

export interface ReplayPowerSourceOptions {
  /** The trace file (`--power replay:FILE`): plain CSV or nvidia-smi CSV. */
  readonly path: string;
  /** Start over when the trace ends (timestamps and energy counters keep increasing); default false. */
  readonly loop?: boolean;
  /** Emit the trace's own timestamps instead of moving its first sample to now; default false. */
  readonly keepTimestamps?: boolean;
  /**
   * With keepTimestamps, how far before and after now the trace's first sample may lie at init;
   * init refuses a trace outside it. A live agent settles a period once it is its lateness old, so
   * a trace that starts further back would deliver every sample after its period settled: no
   * record would get energy, and the late samples would be booked far from their time.
   * Default: no limit.
   */
  readonly keptTimestampsWindow?: { readonly beforeMs: number; readonly afterMs: number };
  /** How often due samples are emitted, ms; default 100. */
  readonly tickMs?: number;
  /** nvidia-smi traces: minutes east of UTC of the capture machine (its timestamps have no zone); default 0. */
  readonly nvidiaSmiUtcOffsetMinutes?: number;
  /** Called once when a non-looping replay has emitted its last sample. */
  readonly onEnd?: () => void;
  readonly clock?: { now(): number };
  /** Reads the file as one string (tests); default: the file is streamed line by line (readPowerTraceFile). */
  readonly readFile?: (path: string) => Promise<string>;
}

/** Parse errors sent to onError one by one; the rest are counted in one message. */
const MAX_REPORTED_ERRORS = 50;
/** Most samples in one batch: after a long stall a looping replay catches up over several ticks. */
const MAX_BATCH = 100_000;

/**
 * Replays a recorded power trace as if it were a live GPU source, in real time: the gap between
 * two emitted samples is the gap between them in the file. By default the first sample is
 * stamped "now" and the rest keep their offsets. GPUs are the ones the trace names. Bad lines of
 * the file go to onError (reason "parse") with their line numbers when the replay starts.
 */
export class ReplayPowerSource implements PowerSource {
  /**
   * Moved to now, a replay starts again at the trace's first reading in each process. With the
   * trace's own timestamps, a restarted replay gives each timestamp the reading it gave before.
   */
  readonly counterRestartsWithProcess: boolean;
  private readonly clock: { now(): number };
  private readonly tickMs: number;
  private trace: ParsedPowerTrace | undefined;
  private timer: NodeJS.Timeout | undefined;
  private onSamples: ((samples: readonly PowerSample[]) => void) | undefined;
  private startWallMs = 0;
  private cursor = 0;
  private loopIndex = 0;
  private ended = false;
  private periodMs = 1000;
  /** Trace time from the first sample of one loop to the first of the next. */
  private loopSpanMs = 0;
  /** Per GPU, what looping its counter needs: see loopOffsetJ. */
  private readonly counters = new Map<string, LoopedCounter>();
  /** Per trace position, 1 when the sample is at or after its GPU's first counter reset in the trace. */
  private afterReset = new Uint8Array(0);
  /** Per trace position, 1 for its GPU's first sample: where each loop after the first goes on from the one before. */
  private firstOfGpu = new Uint8Array(0);
  /** What the trace's samples carry, found once: a day-long trace has millions to look through. */
  private carries = { energyCounter: false, powerAveraged: false, simulated: false };

  constructor(private readonly options: ReplayPowerSourceOptions) {
    this.clock = options.clock ?? { now: () => Date.now() };
    this.counterRestartsWithProcess = options.keepTimestamps !== true;
    this.tickMs = options.tickMs ?? 100;
    if (!(this.tickMs >= 1)) throw new Error('replay: tickMs must be >= 1');
  }

  /** Reads and checks the trace; called again, returns the same GPUs (the agent calls it after createPowerSource). */
  async init(): Promise<readonly GpuInfo[]> {
    if (this.trace) return this.trace.gpus;
    const { path, readFile } = this.options;
    const opts = { fileName: path, nvidiaSmiUtcOffsetMinutes: this.options.nvidiaSmiUtcOffsetMinutes ?? 0 };
    let trace: ParsedPowerTrace;
    try {
      trace = readFile ? parsePowerTrace(await readFile(path), opts) : await readPowerTraceFile(path, opts);
    } catch (error) {
      throw new Error(`replay: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (trace.samples.length === 0) {
      const first = trace.errors[0];
      throw new Error(`replay: ${path} has no usable samples${first ? ` (${trace.errorCount} bad lines; first: ${formatTraceError(path, first)})` : ''}`);
    }
    this.checkKeptTimestamps(trace.samples.timestampAt(0));
    this.trace = trace;
    this.periodMs = medianPeriod(trace.samples);
    this.loopSpanMs = trace.samples.timestampAt(trace.samples.length - 1) - trace.samples.timestampAt(0) + this.periodMs;
    this.computeLoopEnergy(trace.samples);
    this.carries = { energyCounter: trace.samples.anyEnergy(), powerAveraged: trace.samples.anyFlagged(SAMPLE_AVERAGED), simulated: trace.samples.anyFlagged(SAMPLE_SIMULATED) };
    return trace.gpus;
  }

  private checkKeptTimestamps(firstMs: number): void {
    const window = this.options.keptTimestampsWindow;
    if (this.options.keepTimestamps !== true || window === undefined) return;
    const lagMs = this.clock.now() - firstMs;
    if (lagMs <= window.beforeMs && -lagMs <= window.afterMs) return;
    const why = lagMs > 0
      ? `${formatSpan(lagMs)} before now: replayed in real time at its own times, every sample would arrive after its period settled (--settle-lateness ${window.beforeMs / 1000} s), and no request would get its energy`
      : `${formatSpan(-lagMs)} after now, more than the ${window.afterMs / 1000} s a record may be ahead of the clock`;
    throw new Error(
      `replay: ${this.options.path} starts at ${new Date(firstMs).toISOString()}, ${why}. ` +
        '--replay-keep-timestamps true needs a trace that starts about now; attribute a recorded run with ' +
        '`tokenwatt analyze --power FILE --requests FILE`, or replay it from now without --replay-keep-timestamps',
    );
  }

  start(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void): void {
    const trace = this.trace;
    if (!trace) {
      onError({ reason: 'not_initialised', message: 'replay: start() before init()' });
      return;
    }
    if (this.timer || this.onSamples) return;
    this.onSamples = onSamples;
    trace.errors.slice(0, MAX_REPORTED_ERRORS).forEach((e) => onError({ reason: 'parse', message: formatTraceError(this.options.path, e) }));
    if (trace.errorCount > MAX_REPORTED_ERRORS) {
      const reasons = trace.errorsByReason.slice(0, 10).map((r) => `${r.count} ${r.reason}`).join('; ');
      onError({ reason: 'parse', message: `${this.options.path}: ${trace.errorCount - MAX_REPORTED_ERRORS} more bad lines not listed (${trace.errorCount} in all: ${reasons})` });
    }
    this.startWallMs = this.clock.now();
    this.pump();
    this.timer = setInterval(() => {
      try {
        this.pump();
      } catch (error) {
        onError({ reason: 'replay', message: `replay: ${error instanceof Error ? error.message : String(error)}` });
      }
    }, this.tickMs);
    this.timer.unref();
  }

  /** Emit every sample that is due by the clock now, as one batch. Returns how many. */
  pump(): number {
    const trace = this.trace;
    if (!trace || !this.onSamples || this.ended) return 0;
    const samples = trace.samples;
    const first = samples.timestampAt(0);
    const elapsed = this.clock.now() - this.startWallMs;
    const due: PowerSample[] = [];
    while (due.length < MAX_BATCH) {
      const s = samples.at(this.cursor);
      const offset = s.timestampMs - first + this.loopIndex * this.loopSpanMs;
      if (offset > elapsed) break;
      due.push(this.restamp(s, offset, this.cursor));
      this.cursor++;
      if (this.cursor < samples.length) continue;
      if (!this.options.loop) {
        this.ended = true;
        break;
      }
      this.cursor = 0;
      this.loopIndex++;
    }
    if (due.length > 0) this.onSamples(due);
    if (this.ended) {
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      this.options.onEnd?.();
    }
    return due.length;
  }

  async shutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  quality(): PowerSourceQuality {
    const trace = this.trace;
    const notes = [
      trace
        ? `replay of ${this.options.path} (${trace.format}): ${trace.samples.length} samples of ${trace.gpus.length} GPU(s) over ${(this.loopSpanMs / 1000).toFixed(1)} s`
        : `replay of ${this.options.path} (not loaded yet)`,
      this.options.keepTimestamps ? 'original timestamps kept' : 'timestamps moved so that the first sample is the replay start',
      this.options.loop ? 'loops at the end of the trace' : 'stops at the end of the trace',
      ...(trace?.notes ?? []),
    ];
    if (trace && trace.errorCount > 0) notes.push(`${trace.errorCount} bad line(s) skipped, each reported with its line number`);
    if (this.ended) notes.push('replay ended: no more samples');
    return {
      kind: 'replay',
      ...this.carries,
      samplePeriodMs: this.periodMs,
      notes,
    };
  }

  private restamp(s: PowerSample, offsetMs: number, position: number): PowerSample {
    const loops = this.loopIndex;
    const timestampMs = this.options.keepTimestamps ? s.timestampMs + loops * this.loopSpanMs : this.startWallMs + offsetMs;
    const energyJ = s.energyJ === null || loops === 0 || this.afterReset[position] === 1 ? s.energyJ : joules(s.energyJ + this.loopOffsetJ(s.gpuUuid, loops));
    if (loops > 0 && this.firstOfGpu[position] === 1 && s.counterRunStart === true) {
      // The loop's counter goes on from the last one's (loopOffsetJ): no new run at the seam.
      const { counterRunStart: _seam, ...rest } = s;
      return { ...rest, timestampMs: epochMs(timestampMs), energyJ };
    }
    return { ...s, timestampMs: epochMs(timestampMs), energyJ };
  }

  /**
   * What loop `loops` (>= 1) adds to a GPU's counter readings before its first reset, so that each
   * loop starts where the previous one ended plus the gap's energy: first + offset_n = last
   * emitted + gap. Without a reset in the trace the last emitted reading is last + offset_(n-1),
   * so offset_n = n x (last - first + gap). With one, the part after the reset is replayed as it
   * is (a reset the energy model flags, once per loop, as in the trace), so the last emitted
   * reading is the raw last one and offset_n = last - first + gap for every loop. Either way no
   * energy is invented at the seam (a plain sum of increments would add first - last there).
   */
  private loopOffsetJ(uuid: string, loops: number): number {
    const c = this.counters.get(uuid);
    if (!c) return 0;
    const step = c.lastJ - c.firstJ + c.gapJ;
    return c.reset ? step : loops * step;
  }

  /**
   * Per GPU: first and last counter readings, whether the counter resets within the trace, and the
   * energy of the gap between its last sample and its first one of the next loop, at its last power.
   * Readings are judged as the energy timeline judges them, with the reading after each
   * (foldCounterReadings): a drop that the next reading climbs straight back from is a glitch, so it
   * is replayed as one in every loop, not turned into a reset from the second loop on. A sample
   * that starts a new counter run (counter_run_start) is a reset there.
   */
  private computeLoopEnergy(samples: PowerSampleColumns): void {
    const positionsOf = new Map<string, number[]>();
    for (let i = 0; i < samples.length; i++) {
      const uuid = (samples.gpus[samples.gpuAt(i)] as { uuid: string }).uuid;
      const positions = positionsOf.get(uuid);
      if (positions) positions.push(i);
      else positionsOf.set(uuid, [i]);
    }
    this.afterReset = new Uint8Array(samples.length);
    this.firstOfGpu = new Uint8Array(samples.length);
    for (const [uuid, positions] of positionsOf) {
      const at = (k: number): number => positions[k] as number;
      this.firstOfGpu[at(0)] = 1;
      const runStartAt = (k: number): boolean => samples.flaggedAt(at(k), SAMPLE_COUNTER_RUN_START);
      const readings: CounterReadings = { count: positions.length, timeAt: (k) => samples.timestampAt(at(k)), energyAt: (k) => samples.energyAt(at(k)), runStartAt };
      let firstJ: number | null = null;
      // A run start after the GPU's first sample is a reset, with a reading or not (foldCounterReadings reports only readings).
      let firstReset = positions.length;
      for (let k = 1; k < positions.length && firstReset === positions.length; k++) if (runStartAt(k)) firstReset = k;
      const mark = foldCounterReadings(null, readings, 0, positions.length, (kind, energyJ, start) => {
        firstJ ??= energyJ;
        if (kind === 'reset' && start < firstReset) firstReset = start;
      });
      if (mark === null || firstJ === null) continue;
      for (let k = firstReset; k < positions.length; k++) this.afterReset[at(k)] = 1;
      const last = at(positions.length - 1);
      const gapMs = this.loopSpanMs - (samples.timestampAt(last) - samples.timestampAt(at(0)));
      this.counters.set(uuid, { firstJ, lastJ: mark.energyJ, gapJ: ((samples.powerAt(last) ?? 0) * gapMs) / 1000, reset: firstReset < positions.length });
    }
  }
}

/** A GPU's energy counter over one pass of the trace. */
interface LoopedCounter {
  readonly firstJ: number;
  /** The highest reading since the last reset (a glitch's reading does not count). */
  readonly lastJ: number;
  /** Energy of the gap from its last sample to its first of the next loop. */
  readonly gapJ: number;
  /** The counter resets somewhere in the trace. */
  readonly reset: boolean;
}

/** A time span for messages: seconds (as --settle-lateness is given) up to an hour, then hours, then days. */
function formatSpan(ms: number): string {
  const s = ms / 1000;
  if (s < 3600) return `${Math.round(s)} s`;
  return s < 172_800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86_400).toFixed(1)} d`;
}

/** Median gap between consecutive samples of one GPU, ms (1000 when the trace has one sample per GPU). */
function medianPeriod(samples: PowerSampleColumns): number {
  // By UUID, as everything else here.
  const { slotOfPosition, slotOf } = samples.uuidSlots();
  const last = new Float64Array(slotOf.size).fill(Number.NaN);
  const gaps = new Float64Array(samples.length);
  let n = 0;
  for (let i = 0; i < samples.length; i++) {
    const gpu = slotOfPosition[samples.gpuAt(i)] as number;
    const t = samples.timestampAt(i);
    const prev = last[gpu] as number;
    if (t > prev) gaps[n++] = t - prev; // false while prev is NaN (the GPU's first sample)
    last[gpu] = t;
  }
  if (n === 0) return 1000;
  const used = gaps.subarray(0, n).sort();
  return used[n >> 1] as number;
}
