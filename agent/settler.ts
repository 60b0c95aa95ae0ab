import type { GpuPeriodInput, GpuPeriodTotals, AttributionConfig, PeriodSettlement, RequestPeriodShare } from '../model/attribution-types.js';
import { settlePeriod } from '../model/attribution.js';
import { foldCounterHighWater, countableBeforeNextReading, WINDOW_TIMESTAMPS_AFTER_END, type CounterHighWater } from '../model/energy-timeline.js';
import { conservationResidual } from '../model/conservation.js';
import { currentIdleBaseline, initialIdleBaseline, observeIdle, observeIdleAll, type IdleBaselineState } from '../model/idle-baseline.js';
import type { GpuInfo, PowerSample } from '../model/power-sample.js';
import type { ResolvedRequest } from '../model/request-record.js';
import { addEnergyBeforeEndHour, addShares, finalizeRequest, isFinalAfter, toEnergyDelta, toFinalizedRequest, type RequestAccumulator, type RequestResult } from '../model/request-result.js';
import { energyBeforeEndHour, energyRowsFromTotals, usageRowsFromResults } from '../model/rollup.js';
import type { HourlyQualityRow } from '../model/rollup-types.js';
import { alignDown, countedUntilAfter, duePeriods } from '../model/settlement-schedule.js';
import { taskUpdates, type TaskUpdate } from '../model/tasks.js';
import { epochMs, watts, type EpochMs } from '../model/units.js';
import { SettledUntilMismatchError, type Ledger, type StoredHostReading } from './ledger.js';
import type { PendingRequestRow } from './ledger-rows.js';
import type { GpuCarriedState, RequestEnergyDelta, TaskCounterIncrements } from './ledger-types.js';
import { closeOfTask, failedRestJ, taskCloseIncrements, type CountedTask, type TaskClose, type TaskCountIncrement, type WasteIncrement } from '../model/task-counters.js';
import type { Logger } from './logger.js';

/** What the settler reports to metrics; a subset of TokenwattMetrics so tests can pass a recorder. */
export interface SettlementMetrics {
  setGpuPower(index: number, uuid: string, power: number): void;
  sampleTaken(gpuIndex: number, n: number): void;
  addMeasuredEnergy(index: number, uuid: string, joules: number): void;
  addIdleEnergy(index: number, joules: number): void;
  addUnattributedEnergy(index: number, joules: number): void;
  addEstimatedEnergy(index: number, joules: number): void;
  /** Time of a settled period covered by the GPU's samples (tokenwatt_gpu_covered_seconds_total). */
  addCoveredTime(index: number, uuid: string, ms: number): void;
  requestsFinalized(results: readonly RequestResult[]): void;
  /**
   * A task closed. `continued`: a task counted at an earlier close closed again after more
   * requests; joules, wasteJ (attempts) and failedJ (the rest of a failed task) are what its
   * whole-task figures added since, under the tier and outcome it had when it last closed.
   */
  taskFinalized(task: { tier: string; succeeded: boolean; joules: number; wasteJ: number; continued?: boolean; failedJ?: number }): void;
  /** The settled edge moved; `residualsJ`: the conservation residual of each GPU in the period settled (none when the edge moved without one). */
  settled(settledUntilMs: number, residualsJ: readonly number[]): void;
  setPendingAttributedEnergy(joules: number): void;
  addHostEnergy(source: string, joules: number, estimated: boolean): void;
  /** A sample that could not count, by reason (tokenwatt_sample_errors_total). */
  sampleError?(reason: string): void;
}

/** A cumulative host (CPU + DRAM) energy reading: RAPL, or a configured overhead (estimated). */
export interface HostEnergyReading {
  readonly timestampMs: number;
  /** Cumulative joules since the host source started. */
  readonly energyJ: number;
  readonly estimated: boolean;
  /**
   * The agent run the counter belongs to (it restarts with each run). The settler stamps the
   * readings it is given with its own run; readings read back from the ledger keep theirs.
   */
  readonly segment?: number;
}

export interface SettlerOptions {
  readonly ledger: Ledger;
  readonly metrics: SettlementMetrics;
  readonly gpus: readonly GpuInfo[];
  readonly node: string;
  readonly periodMs: number;
  readonly latenessMs: number;
  readonly attribution: AttributionConfig;
  readonly simulated: boolean;
  /** Maps a user label value to its capped form ("" when absent, "(other)" past the cap). */
  readonly labelValue: (name: string, value: string | undefined) => string;
  /**
   * The cap behind `labelValue` (the agent's LabelCapper). Its admitted values are stored, in the
   * order they were admitted, with each settlement after they changed, and a restart admits them
   * first: the rollups keep raw models and tiers, and admitted from those in the ledger's order, a
   * model past the cap could take the name of one admitted before it.
   */
  readonly labelCap?: { readonly revision: number; admitted(): Readonly<Record<string, readonly string[]>> };
  /**
   * A task with no request ending for this long is closed: it is counted in the task metrics. A
   * task that gets requests after it closed is not counted again (see {@link Settler}).
   */
  readonly taskIdleMs: number;
  /** Label of the host energy series: rapl or configured. */
  readonly hostSource?: string;
  /** When the agent started (wall clock): with no sample yet, records before it are late. */
  readonly startedAtMs?: number;
  /**
   * The power source's energy counter starts again with this process (PowerSource
   * counterRestartsWithProcess): each GPU's first sample taken into its buffer is marked as the
   * start of a new counter run, and stored so, so that it is not judged against the high-water
   * mark of the run before (carried in the ledger) or that run's stored samples. Each GPU's samples
   * must come in time order.
   */
  readonly counterRestartsWithProcess?: boolean;
  readonly log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

/** After an outage the settler catches up in bounded steps, so one tick never blocks ingest for long. */
const MAX_PERIODS_PER_CALL = 360;

/** The figures of a task that its metrics need. */
interface TaskOutcome {
  readonly tier: string;
  readonly succeeded: boolean;
  readonly joules: number;
  readonly wasteJ: number;
  readonly lastEndMs: number;
}

/** The open tasks after a settlement, and the closes it counts (see Settler.planTaskCloses). */
interface TaskClosePlan {
  readonly open: Map<string, OpenTask>;
  readonly closes: readonly TaskClose[];
  /** Tasks counted at an earlier close that this settlement opens again, with what was counted. */
  readonly reopened: readonly { readonly taskId: string; readonly counted: CountedTask }[];
  /** Every task that closes here (also one whose close adds nothing to the counters), with what the counters then have of it. */
  readonly closed: readonly { readonly taskId: string; readonly counted: CountedTask }[];
  /** Reopened tasks whose stored counted figures could not be read (why, by task). */
  readonly problems: readonly string[];
}

/** The ledger's share of the closes: the counter increments the metrics will add, in their order. */
function taskCounterIncrements(closes: readonly TaskClose[], label: (name: string, value: string | undefined) => string, simulated: boolean): TaskCounterIncrements {
  const tasks: TaskCountIncrement[] = [];
  const waste: WasteIncrement[] = [];
  for (const close of closes) {
    const inc = taskCloseIncrements(close, label, simulated);
    if (inc.task !== null) tasks.push(inc.task);
    waste.push(...inc.waste);
  }
  return { tasks, waste };
}

/** A task with requests not yet in the task metrics: the whole task now, and what was counted of it. */
interface OpenTask {
  now: TaskOutcome;
  /** What the metrics have of it from its earlier closes; null when it never closed. */
  readonly counted: CountedTask | null;
}

/**
 * Turns samples and request records into settled periods. It keeps per-GPU sample buffers in
 * memory (recoverable from the ledger) and reads the unsettled requests, which ingest has already
 * committed, from the ledger for each period. It settles every period
 * that is older than the lateness window with the pure model, and commits each period to the
 * ledger in ONE transaction before it touches any exported counter — so after a crash the
 * ledger is the truth and the settler resumes from `settledUntil`.
 *
 * Tasks. Each settlement rewrites the ledger row of every task it finalizes requests of from ALL
 * the task's finalized requests (model/tasks.ts `taskUpdates`), late ones included, so the row is
 * the whole-task figure however the requests fall into settlements, and after a restart. The task
 * metrics count a task once, when it closes (no request ending for `taskIdleMs`), with the same
 * whole-task figures. Counters cannot be taken back, so a task that gets requests after it closed
 * (a step after a long pause, a late record) is not counted again: at its next close the energy
 * and waste it added are reported as a continuation, under the tier and outcome it had when it
 * last closed (the ledger row has the final ones). What closed before is known from the ledger (a
 * task with earlier requests that is not open closed), and the settlements that close and reopen
 * a task store on its row what was counted of it, so this holds across restarts too, also for a
 * task open at the restart, or found open by a longer task idle time (only a task that closed
 * before ledger schema 14 and that a restart finds open is counted whole again).
 */
export class Settler {
  private readonly samplesByGpu = new Map<string, PowerSample[]>();
  /** Per GPU, the energy counter's high-water mark over the samples trimmed from its buffer. */
  private readonly counterHighWater = new Map<string, CounterHighWater | null>();
  /** Per GPU, where its buffer started after the last trim (the mark covers the samples before). */
  private readonly carriedFromMs = new Map<string, number>();
  private readonly unpersisted: PowerSample[] = [];
  private readonly idleBaselines = new Map<string, IdleBaselineState>();
  private openTasks = new Map<string, OpenTask>();
  private settledUntilMs: EpochMs | null;
  /**
   * Per GPU, the time from which its energy is not counted yet, when that is before `settledUntil`:
   * a period was settled before the sample closing its last interval arrived (a power source
   * stalled for longer than the lateness, or a lateness of 0), or before the readings that judge a
   * counter drop or glitch closing it (see windowOf). The first period settled after that
   * sample arrives counts the owed stretch, as unattributed and estimated energy with its gap
   * flagged (model/attribution.ts), so every joule lands in exactly one period. Absent: counted up
   * to `settledUntil`. Kept in the ledger with each settlement, so a restart owes the same.
   */
  private readonly countedUntilMs = new Map<string, EpochMs>();
  private firstDataMs: number | null = null;
  private lastSampleAtMs = new Map<string, number>();
  private lastResidualJ = 0;
  /** The label cap's revision the ledger holds (null: not written by this settler yet). */
  private storedLabelRevision: number | null = null;
  /** The task idle time the ledger says its settlements closed tasks with (null: not stored yet). */
  private storedTaskIdleMs: number | null = null;
  /**
   * Rejected records and sample errors by the hour they happened, not yet written: each goes into
   * the ledger's hourly quality row with the settlement that reaches its hour, so the ESG report
   * counts them (they never reach the ledger otherwise).
   */
  private readonly pendingQuality = new Map<number, { rejected: number; sampleErrors: number }>();
  private lastStaleWarnMs = 0;
  private lastHeldLogMs = 0;
  private lastOutOfOrderWarnMs = 0;
  private hostReadings: StoredHostReading[] = [];
  /** Host readings not yet written to the ledger (flushed with the samples). */
  private readonly unpersistedHost: StoredHostReading[] = [];
  /**
   * Host counter value already given to settled periods, and the run (segment) it belongs to
   * (null until the first reading is used).
   */
  private hostSettled: { segment: number; energyJ: number } | null = null;
  /** This run's host counter segment: after every segment stored in the ledger. */
  private hostSegment = Date.now();
  /** GPUs whose first sample of this process has been marked as a counter run start (see counterRestartsWithProcess). */
  private readonly counterRunStarted = new Set<string>();
  /**
   * Per GPU, the time of its last sample when a settlement judged its last readings without the
   * readings after them (see windowOf): its next sample after that time is marked as the start of
   * a new counter run, so that no later reading judges them otherwise (a glitch, say, counted
   * again as a counter delta from the highest reading). Kept in the ledger with each settlement.
   */
  private readonly counterRunEndMs = new Map<string, number>();
  /**
   * GPUs with a sample marked as a counter run start (by its source) that was not kept: stale, or
   * a repeat. The mark passes to the GPU's next sample kept, as trace parsing passes the mark of a
   * refused line on: dropped, the new run's readings would be judged against the old run's.
   */
  private readonly carriedRunStart = new Set<string>();
  /** The GPUs settled: those at start-up, and those the power source learnt since (addGpu). */
  private gpus: readonly GpuInfo[];
  /** Where settlement stood when this settler took its GPUs from the ledger: a GPU added later was settled up to there. */
  private readonly restoredUntilMs: EpochMs | null;
  /**
   * The owed edge and carried state the ledger holds for GPUs this settler does not settle (yet):
   * one hung at start-up keeps them until addGpu takes them. Each settlement rewrites both ledger
   * entries whole, so they are written back with it; otherwise the first settlement would erase
   * them, and the energy owed from the last run would never be counted.
   */
  private absentOwed = new Map<string, number>();
  /** Configured idle baselines by UUID: those of start-up, and those of GPUs learnt later (addGpu). */
  private readonly configuredIdleW: Map<string, number>;
  private absentCarried = new Map<string, GpuCarriedState>();

  constructor(private readonly options: SettlerOptions) {
    this.gpus = options.gpus;
    this.configuredIdleW = new Map(Object.entries(options.attribution.idleBaselineW));
    for (const gpu of options.gpus) {
      this.samplesByGpu.set(gpu.uuid, []);
      this.idleBaselines.set(gpu.uuid, initialIdleBaseline());
    }
    this.settledUntilMs = options.ledger.getSettledUntil();
    this.restoredUntilMs = this.settledUntilMs;
    this.loadCountedUntil();
  }

  /**
   * A GPU the power source learnt after start-up (a GPU that hung at start-up, or one found later),
   * or described anew. A new one is settled from here on like those at start-up: its samples and
   * carried state from earlier runs are taken from the ledger, and its energy since the last
   * settlement that included it (the last run's) is owed, so the stretch it was away is counted
   * once, as a gap, by the next period (as after a stall), not dropped.
   */
  addGpu(gpu: GpuInfo, nowMs: number, configuredIdleW?: number): void {
    // A baseline configured by a reference (an index) that only now resolves to this GPU.
    if (configuredIdleW !== undefined) this.configuredIdleW.set(gpu.uuid, configuredIdleW);
    if (this.samplesByGpu.has(gpu.uuid)) {
      this.gpus = this.gpus.map((g) => (g.uuid === gpu.uuid ? gpu : g));
      return;
    }
    this.gpus = [...this.gpus, gpu].sort((a, b) => a.index - b.index);
    this.samplesByGpu.set(gpu.uuid, []);
    this.idleBaselines.set(gpu.uuid, initialIdleBaseline());
    const { ledger } = this.options;
    const owedFrom = this.absentOwed.get(gpu.uuid) ?? this.restoredUntilMs;
    const edge = owedFrom === null || owedFrom === undefined ? null : Math.min(owedFrom, this.restoredUntilMs ?? owedFrom);
    if (this.settledUntilMs !== null && edge !== null && Number.isFinite(edge) && edge < this.settledUntilMs && ledger.earliestSampleMs(gpu.uuid) !== null) {
      this.countedUntilMs.set(gpu.uuid, epochMs(edge));
    }
    const from = Math.min((this.settledUntilMs ?? nowMs) - this.options.periodMs, this.countedUntilMs.get(gpu.uuid) ?? Number.POSITIVE_INFINITY);
    const carried = this.absentCarried;
    this.restoreGpu(gpu, from, carried, nowMs);
    const state = carried.get(gpu.uuid);
    if (state) this.idleBaselines.set(gpu.uuid, state.idle);
    this.absentOwed.delete(gpu.uuid);
    this.absentCarried.delete(gpu.uuid);
  }

  /** The GPUs whose energy the ledger's last settlement left owed before settled_until (see countedUntilMs). */
  private loadCountedUntil(): void {
    this.countedUntilMs.clear();
    this.absentOwed = new Map();
    this.absentCarried = new Map();
    if (this.settledUntilMs === null) return;
    for (const [uuid, ms] of Object.entries(this.options.ledger.getEnergyCountedUntil())) {
      if (!Number.isFinite(ms) || ms >= this.settledUntilMs) continue;
      if (this.samplesByGpu.has(uuid)) this.countedUntilMs.set(uuid, epochMs(ms));
      else this.absentOwed.set(uuid, ms);
    }
    for (const [uuid, state] of this.options.ledger.getGpuCarriedState()) {
      if (!this.samplesByGpu.has(uuid)) this.absentCarried.set(uuid, state);
    }
  }

  get settledUntil(): EpochMs | null {
    return this.settledUntilMs;
  }

  /**
   * The edge before which a record is late: the end of settled time, or, before anything is
   * settled, the start of the first measured period (time before the agent's first sample was
   * never measured, so a record there gets no energy and must not pass for on time).
   */
  lateEdge(): EpochMs | null {
    if (this.settledUntilMs !== null) return this.settledUntilMs;
    const from = this.firstDataMs ?? this.options.startedAtMs;
    return from === undefined ? null : alignDown(from, this.options.periodMs);
  }

  /** Requests stored and not yet finalized (they live in the ledger, not in memory). */
  get pendingRequests(): number {
    return this.options.ledger.countUnsettledRequests();
  }

  get lastConservationResidualJ(): number {
    return this.lastResidualJ;
  }

  /** Last time each GPU delivered a sample (wall clock ms), for readiness. */
  lastSampleTimes(): ReadonlyMap<string, number> {
    return this.lastSampleAtMs;
  }

  /**
   * Resume after a restart: samples persisted since shortly before `settledUntil` (or, for a GPU
   * whose energy is counted only up to an earlier time, since then) and every request not yet
   * finalized, with the energy it had already received. Before the first settlement, every
   * persisted sample is unsettled, so all of them come back: a restart within the lateness window
   * must not drop the first run's energy.
   */
  restore(nowMs: number): { samples: number; requests: number } {
    const { ledger } = this.options;
    let from = (this.settledUntilMs ?? nowMs) - this.options.periodMs;
    if (this.settledUntilMs === null) {
      for (const gpu of this.gpus) from = Math.min(from, ledger.earliestSampleMs(gpu.uuid) ?? from);
    }
    let samples = 0;
    // Each GPU's counter mark and learned idle baseline as the last settlement left them.
    const carried = this.settledUntilMs === null ? new Map<string, GpuCarriedState>() : ledger.getGpuCarriedState();
    for (const gpu of this.gpus) samples += this.restoreGpu(gpu, from, carried, nowMs);
    // Tasks not closed yet close (and count) from here: whole, or, for one counted at an earlier
    // close (it reopened, or a longer task idle time finds it open), what it added since (its row
    // keeps what was counted).
    if (this.settledUntilMs !== null) {
      // Tasks closed under the idle time the settlements used: a lowered one (a lowered settle
      // lateness) must still find those open at the stop, which then close at the next settlement.
      this.storedTaskIdleMs = ledger.getTaskIdleMs();
      const from = epochMs(this.settledUntilMs - Math.max(this.storedTaskIdleMs ?? 0, this.options.taskIdleMs) + 1);
      for (const { task, counted, problem } of ledger.readTasksWithCounted(from)) {
        // Unreadable (edited by hand): taken as never counted, so counted whole at its close, as
        // on a ledger of before schema 14; said so, not a refusal to start.
        if (problem !== null) this.options.log.warn({ taskId: task.taskId }, `${problem}: the task is counted whole at its next close`);
        if (!this.openTasks.has(task.taskId)) this.openTasks.set(task.taskId, { now: task, counted });
      }
    }
    // Unsettled requests need no restoring: every settlement reads them from the ledger. The
    // energy they already have is shown at once, or /metrics would break its identity (measured =
    // attributed + pending + idle + unattributed) until the first settlement of this run.
    if (this.settledUntilMs !== null) this.options.metrics.setPendingAttributedEnergy(ledger.pendingAttributedJ());
    this.restoreIdleBaselines(carried);
    this.restoreHost();
    return { samples, requests: ledger.countUnsettledRequests() };
  }

  /** One GPU's samples from `from` on (or from its counted edge, if earlier), after its carried state. Returns how many. */
  private restoreGpu(gpu: GpuInfo, from: number, carried: ReadonlyMap<string, GpuCarriedState>, nowMs: number): number {
    let loaded = this.options.ledger.loadSamples(gpu.uuid, epochMs(Math.min(from, this.countedUntilMs.get(gpu.uuid) ?? from)), epochMs(nowMs + 60_000));
    const state = carried.get(gpu.uuid);
    if (state) {
      // The mark covers the samples before fromMs: they are not folded again.
      loaded = loaded.filter((s) => s.timestampMs >= state.fromMs);
      this.counterHighWater.set(gpu.uuid, state.counterHighWater);
      this.carriedFromMs.set(gpu.uuid, state.fromMs);
      // A sample after the run's end was taken (and stored marked) before the stop: its mark is in the ledger.
      const runEndMs = state.counterRunEndMs;
      if (runEndMs !== undefined && !loaded.some((s) => s.timestampMs > runEndMs)) this.counterRunEndMs.set(gpu.uuid, runEndMs);
    }
    // Samples taken since (a GPU added while running) stay, after the stored ones.
    const live = this.samplesByGpu.get(gpu.uuid) ?? [];
    const firstLive = live[0]?.timestampMs ?? Number.POSITIVE_INFINITY;
    this.samplesByGpu.set(gpu.uuid, [...loaded.filter((s) => s.timestampMs < firstLive), ...live]);
    const first = loaded[0];
    if (first && (this.firstDataMs === null || first.timestampMs < this.firstDataMs)) this.firstDataMs = first.timestampMs;
    return loaded.length;
  }

  /** Called by the power source for each batch of samples. Cheap: buffering only. */
  addSamples(samples: readonly PowerSample[]): void {
    let stale = 0;
    let held = 0;
    let outOfOrder = 0;
    for (let sample of samples) {
      const buffer = this.samplesByGpu.get(sample.gpuUuid);
      if (!buffer) {
        // A source tells of a GPU (addGpu) before its samples: this one it never named. Counted, not dropped quietly.
        this.pendingQualityAt(sample.timestampMs).sampleErrors += 1;
        this.options.metrics.sampleError?.('unknown_gpu');
        continue;
      }
      if (this.settledUntilMs !== null && sample.timestampMs <= (this.countedUntilMs.get(sample.gpuUuid) ?? this.settledUntilMs) && sample.timestampMs < this.settledUntilMs) {
        const stored = this.storedReading(sample);
        if (stored !== undefined) {
          // A repeat of a stored reading (a replay with its own timestamps, restarted): nothing new, no
          // error. A mark the stored one lacks goes on to the next sample kept.
          if (sample.counterRunStart === true && stored.counterRunStart !== true) this.carriedRunStart.add(sample.gpuUuid);
          held += 1;
          continue;
        }
        if (sample.counterRunStart === true) this.carriedRunStart.add(sample.gpuUuid);
        // Stamped inside time already counted (the wall clock stepped back): its period is closed,
        // so it is stored but cannot count. Say so rather than lose it quietly. It stays out of the
        // buffer: as the start of the next interval it would change energy already given out.
        // (A sample inside settled but not yet counted time, after a stall, does count: below.)
        stale += 1;
        this.pendingQualityAt(sample.timestampMs).sampleErrors += 1;
        this.options.metrics.sampleError?.('stale_timestamp');
      } else {
        const last = buffer[buffer.length - 1];
        let at = buffer.length;
        if (last && sample.timestampMs <= last.timestampMs) {
          const t = sample.timestampMs;
          at = t === last.timestampMs ? buffer.length - 1 : buffer.findIndex((s) => s.timestampMs >= t);
          if (buffer[at]?.timestampMs === t) {
            // A repeat reading adds nothing but its mark, which goes on to the next sample kept.
            if (sample.counterRunStart === true && buffer[at]?.counterRunStart !== true) this.carriedRunStart.add(sample.gpuUuid);
            continue;
          }
          if (this.splitsCountedInterval(sample.gpuUuid, buffer[at - 1])) {
            // Between two samples whose interval was counted in part (up to the counted edge, in
            // proportion to time): split, the rest of it would be counted at the new sample's mean
            // powers, and the interval's energy counted more or less than once. Refused, and said so.
            outOfOrder += 1;
            this.pendingQualityAt(sample.timestampMs).sampleErrors += 1;
            this.options.metrics.sampleError?.('out_of_order');
            if (sample.counterRunStart === true) this.carriedRunStart.add(sample.gpuUuid);
            continue;
          }
        }
        if (this.carriedRunStart.delete(sample.gpuUuid)) sample = { ...sample, counterRunStart: true };
        if (this.options.counterRestartsWithProcess === true && !this.counterRunStarted.has(sample.gpuUuid)) {
          this.counterRunStarted.add(sample.gpuUuid);
          sample = { ...sample, counterRunStart: true };
        }
        const runEndMs = this.counterRunEndMs.get(sample.gpuUuid);
        if (runEndMs !== undefined && sample.timestampMs > runEndMs) {
          this.counterRunEndMs.delete(sample.gpuUuid);
          sample = { ...sample, counterRunStart: true };
        }
        if (at === buffer.length) buffer.push(sample);
        else buffer.splice(at, 0, sample);
      }
      this.unpersisted.push(sample);
      this.lastSampleAtMs.set(sample.gpuUuid, sample.timestampMs);
      if (this.firstDataMs === null || sample.timestampMs < this.firstDataMs) this.firstDataMs = sample.timestampMs;
      if (sample.powerW !== null) this.options.metrics.setGpuPower(sample.gpuIndex, sample.gpuUuid, sample.powerW);
      this.options.metrics.sampleTaken(sample.gpuIndex, 1);
    }
    if (stale > 0 && Date.now() - this.lastStaleWarnMs >= 60_000) {
      this.lastStaleWarnMs = Date.now();
      this.options.log.warn(
        { samples: stale, settledUntil: new Date(this.settledUntilMs ?? 0).toISOString() },
        'samples stamped before the end of settled time (did the clock step back?): stored, but their periods are closed, so they count as sample errors',
      );
    }
    if (outOfOrder > 0 && Date.now() - this.lastOutOfOrderWarnMs >= 60_000) {
      this.lastOutOfOrderWarnMs = Date.now();
      this.options.log.warn({ samples: outOfOrder }, 'samples out of time order inside an interval whose energy is counted in part: refused (they count as sample errors)');
    }
    if (held > 0 && Date.now() - this.lastHeldLogMs >= 60_000) {
      this.lastHeldLogMs = Date.now();
      this.options.log.info({ samples: held }, 'samples repeating readings the ledger already holds (a replay restarted with its own timestamps): skipped');
    }
  }

  /**
   * Whether a sample put after `before` (a GPU's buffered sample, the one before it in time) splits
   * an interval counted in part: one that starts before the GPU's counted edge. (One that starts at
   * the edge is not counted yet; with no sample after `before`, the tail after it is owed, not counted.)
   */
  private splitsCountedInterval(uuid: string, before: PowerSample | undefined): boolean {
    if (this.settledUntilMs === null || before === undefined) return false;
    return before.timestampMs < Math.min(this.countedUntilMs.get(uuid) ?? this.settledUntilMs, this.settledUntilMs);
  }

  /** The ledger's copy of this very reading (same GPU, timestamp, power and counter), if it holds one. */
  private storedReading(sample: PowerSample): PowerSample | undefined {
    const stored = this.options.ledger.loadSamples(sample.gpuUuid, sample.timestampMs, sample.timestampMs).find((s) => s.timestampMs === sample.timestampMs);
    return stored !== undefined && stored.powerW === sample.powerW && stored.energyJ === sample.energyJ ? stored : undefined;
  }

  /** Count records refused at ingest, for the hourly data-quality rollup. */
  noteRejected(count: number, atMs: number): void {
    this.pendingQualityAt(atMs).rejected += count;
  }

  /** Count a power-source error, for the hourly data-quality rollup. */
  noteSampleError(atMs: number): void {
    this.pendingQualityAt(atMs).sampleErrors += 1;
  }

  /**
   * Write the pending data-quality counts (rejected records, sample errors) to their hourly rows in
   * one transaction, whatever settlement has reached: the agent calls this on each settle tick and
   * at shutdown, so no count is lost when the process stops. Returns the number of hours written.
   */
  flushQuality(): number {
    const rows: HourlyQualityRow[] = [];
    for (const [hour, q] of this.pendingQuality) {
      if (q.rejected > 0 || q.sampleErrors > 0) rows.push({ hourStartMs: epochMs(hour), node: this.options.node, lateRecords: 0, rejectedRecords: q.rejected, sampleErrors: q.sampleErrors });
    }
    if (rows.length > 0) this.options.ledger.addQuality(rows); // throws: the counts stay pending for the next try
    this.pendingQuality.clear();
    return rows.length;
  }

  private pendingQualityAt(atMs: number): { rejected: number; sampleErrors: number } {
    const hour = Math.floor(atMs / 3_600_000) * 3_600_000;
    let counts = this.pendingQuality.get(hour);
    if (!counts) this.pendingQuality.set(hour, (counts = { rejected: 0, sampleErrors: 0 }));
    return counts;
  }

  /** Called by the host power sampler; readings must come in time order. */
  addHostReading(reading: HostEnergyReading): void {
    const last = this.hostReadings[this.hostReadings.length - 1];
    if (last && reading.timestampMs <= last.timestampMs) return;
    const stored: StoredHostReading = { timestampMs: reading.timestampMs, energyJ: reading.energyJ, estimated: reading.estimated, segment: reading.segment ?? this.hostSegment };
    this.hostReadings.push(stored);
    this.unpersistedHost.push(stored);
  }

  /**
   * Host energy of the period ending at `endMs`: for each counter segment (agent run) that reaches
   * into it, the interpolated counter at the end minus what earlier periods already took, so the
   * periods' host energies telescope to each counter's increase and nothing is lost when readings
   * arrive after a period settled. No energy is taken across two segments (the agent was down).
   * Also returns where the settled counter stands once this period is committed.
   */
  private hostEnergyUntil(endMs: number): { joules: number; estimated: boolean; settled: { segment: number; energyJ: number } } | null {
    const readings = this.hostReadings;
    if (readings.length === 0) return null;
    let settled = this.hostSettled;
    let i = 0;
    if (settled !== null) {
      const from = readings.findIndex((r) => r.segment === (settled as { segment: number }).segment);
      if (from >= 0) i = from;
      else settled = null; // its readings are gone: count each segment from its first reading
    }
    let total = 0;
    let estimated = (readings[i] as StoredHostReading).estimated;
    let next = settled ?? { segment: (readings[i] as StoredHostReading).segment, energyJ: (readings[i] as StoredHostReading).energyJ };
    while (i < readings.length) {
      const first = readings[i] as StoredHostReading;
      // A later segment that starts at or after the end takes no part in this period.
      if (first.segment !== next.segment && first.timestampMs >= endMs) break;
      let j = i + 1;
      while (j < readings.length && (readings[j] as StoredHostReading).segment === first.segment) j += 1;
      const at = counterAt(readings, i, j, endMs);
      const base = next.segment === first.segment ? next.energyJ : first.energyJ;
      total += Math.max(0, at.energyJ - base);
      estimated = at.estimated;
      next = { segment: first.segment, energyJ: Math.max(base, at.energyJ) };
      i = j;
    }
    return { joules: total, estimated, settled: next };
  }

  /**
   * After a restart: the host readings stored since the last one at or before `settledUntil`, and
   * the host counter already given to settled periods (interpolated at `settledUntil` in its run),
   * so the periods the last run left unsettled get their host energy from its stored readings.
   */
  private restoreHost(): void {
    const loaded = this.options.ledger.loadHostReadings(this.settledUntilMs);
    if (loaded.length === 0) return;
    const firstLive = this.hostReadings[0]?.timestampMs ?? Number.POSITIVE_INFINITY;
    this.hostReadings = [...loaded.filter((r) => r.timestampMs < firstLive), ...this.hostReadings];
    for (const r of loaded) if (r.segment >= this.hostSegment) this.hostSegment = r.segment + 1;
    this.rebaseHost(this.settledUntilMs);
  }

  /** Put the settled host counter at `settledUntilMs` (restart, or another writer settled further). */
  private rebaseHost(settledUntilMs: number | null): void {
    this.hostSettled = null;
    if (settledUntilMs === null) return;
    const before = this.hostReadings.filter((r) => r.timestampMs <= settledUntilMs).at(-1);
    if (before === undefined) return;
    const segment = this.hostReadings.filter((r) => r.segment === before.segment);
    this.hostSettled = { segment: before.segment, energyJ: counterAt(segment, 0, segment.length, settledUntilMs).energyJ };
    this.trimHostReadings(settledUntilMs);
  }

  /** Write buffered host readings to the ledger (one transaction); kept for the next try on failure. */
  private flushHostReadings(): void {
    if (this.unpersistedHost.length === 0) return;
    this.options.ledger.insertHostReadings(this.unpersistedHost); // throws: kept for the next try
    this.unpersistedHost.length = 0;
  }

  /**
   * Write buffered samples to the ledger (one transaction). On failure they stay buffered for the
   * next try, nothing is dropped: they are cleared only after the write (synchronous, so no sample
   * arrives during it), never taken out and put back, which an outage of hours would not survive.
   */
  flushSamples(): number {
    this.flushHostReadings();
    const n = this.unpersisted.length;
    if (n === 0) return 0;
    this.options.ledger.insertSamples(this.unpersisted);
    this.unpersisted.length = 0;
    return n;
  }

  /** Settle every due period. Returns how many periods were settled. */
  settleDue(nowMs: number): number {
    const periods = duePeriods(this.settledUntilMs, epochMs(nowMs), this.options.periodMs, this.options.latenessMs, this.firstDataMs === null ? null : epochMs(this.firstDataMs), MAX_PERIODS_PER_CALL);
    let settled = 0;
    for (const period of periods) {
      try {
        this.settleOne(period.startMs, period.endMs, nowMs);
      } catch (error) {
        if (!(error instanceof SettledUntilMismatchError)) throw error;
        this.resync(error);
        return settled;
      }
      settled += 1;
    }
    // Nothing due: the metrics are left alone. The settle lag is read against the clock at each
    // scrape, and settled() adds its residual to a counter: said again on every tick, the last
    // period's residual was counted once a second, and the settled metrics re-rendered for nothing.
    return settled;
  }

  private settleOne(startMs: EpochMs, endMs: EpochMs, nowMs: number): void {
    const { options } = this;
    const runEnds = new Map<string, number>();
    const gpuInputs: GpuPeriodInput[] = this.gpus.map((gpu) => {
      const countedUntilMs = epochMs(Math.min(this.countedUntilMs.get(gpu.uuid) ?? startMs, startMs));
      const buffer = this.samplesByGpu.get(gpu.uuid) ?? [];
      const lastMs = buffer[buffer.length - 1]?.timestampMs;
      // No reading for longer than a gap that can be attributed: the readings that would judge the
      // last ones are not coming (a GPU gone, a source stopped). Judged without them, as at the end
      // of a trace, so the interval into them is counted rather than owed for ever.
      const atEnd = this.counterRunEndMs.has(gpu.uuid) || (lastMs !== undefined && endMs - lastMs > options.attribution.maxAttributableGapMs);
      const { samples, counterHighWater, judgedAtEnd } = windowOf(buffer, countedUntilMs, endMs, this.counterHighWater.get(gpu.uuid) ?? null, atEnd);
      if (judgedAtEnd && lastMs !== undefined) runEnds.set(gpu.uuid, lastMs);
      return {
        gpuUuid: gpu.uuid,
        gpuIndex: gpu.index,
        samples,
        counterHighWater,
        idleBaselineW: this.idleBaselineFor(gpu.uuid),
        countedUntilMs,
      };
    });
    // How far each GPU's energy is counted once this period is settled (model/settlement-schedule.ts).
    const countedAfter = new Map<string, EpochMs>();
    const owed: Record<string, number> = Object.fromEntries(this.absentOwed);
    for (const input of gpuInputs) {
      const until = countedUntilAfter(input.samples, endMs, input.countedUntilMs ?? startMs);
      if (until >= endMs) continue;
      countedAfter.set(input.gpuUuid, until);
      owed[input.gpuUuid] = until;
    }
    // Unsettled requests are read from the ledger for each period rather than held in memory, so
    // memory does not grow with records/s x lateness. Those starting after this period have
    // received no energy yet and are not needed. Entries are dropped once written (below), so the
    // period's peak memory is not its rows plus its results.
    const pending: (PendingRequestRow | null)[] = options.ledger.loadUnsettledStartingBefore(endMs);
    const indexById = new Map<string, number>();
    const active: ResolvedRequest[] = [];
    for (let i = 0; i < pending.length; i += 1) {
      const record = (pending[i] as PendingRequestRow).record;
      indexById.set(record.requestId, i);
      if (record.startMs < endMs && (record.endMs > startMs || (record.endMs === startMs && record.startMs === startMs))) active.push(record);
    }
    const settlement: PeriodSettlement = settlePeriod({
      periodStartMs: startMs,
      periodEndMs: endMs,
      gpus: gpuInputs,
      requests: active,
      config: options.attribution,
    });
    active.length = 0;

    // Each request's shares as a linked list over the shares array (in their original order), so
    // that no per-request list is allocated.
    const shares = settlement.shares;
    const firstShare = new Int32Array(pending.length).fill(-1);
    const nextShare = new Int32Array(shares.length);
    for (let s = shares.length - 1; s >= 0; s -= 1) {
      const i = indexById.get((shares[s] as RequestPeriodShare).requestId);
      if (i === undefined) continue;
      nextShare[s] = firstShare[i] as number;
      firstShare[i] = s;
    }

    // Each request is computed and written in turn, inside the period's transaction: a period of
    // many requests never holds all their rows at once. The in-memory state and the counters move
    // only after the commit.
    const host = this.hostEnergyUntil(endMs);
    const settledAtMs = epochMs(nowMs);
    const finalizedResults: RequestResult[] = [];
    let countable: RequestResult[] = [];
    let tasks: TaskUpdate[] = [];
    let pendingJ = 0;
    let labelRevision: number | null = null;
    let taskPlan: TaskClosePlan | null = null;
    /** Tasks whose ledger row was gone when this settlement wrote what was counted of them. */
    const taskRowsMissing: string[] = [];
    const requestShares: RequestPeriodShare[] = [];
    // The tasks whose requests finalize here: their earlier finalized requests are read before this
    // settlement finalizes any, so the read holds only the rows it needs (none for a task seen whole).
    const finalizingTaskIds = new Set<string>();
    for (const p of pending) {
      const record = (p as PendingRequestRow).record;
      if (record.taskId !== null && isFinalAfter(record, endMs)) finalizingTaskIds.add(record.taskId);
    }
    // Each GPU's buffer trim and learned idle baseline after this settlement: stored with it, applied after its commit.
    const trim = this.trimPlan(endMs, countedAfter);
    const idleAfter = this.idleAfter(settlement.gpus);
    options.ledger.settle({ periodStartMs: startMs, periodEndMs: endMs, settledUntilMs: endMs, expectedSettledUntilMs: this.settledUntilMs }, (writer) => {
      const priorTaskRequests = finalizingTaskIds.size > 0 ? options.ledger.finalizedTaskRequests([...finalizingTaskIds]) : [];
      // Tasks with no earlier request left may have a row: retention deleted their requests (requestsDays)
      // before the task went on. The row stands for them, or the task would be counted anew.
      for (const r of priorTaskRequests) if (r.taskId !== null) finalizingTaskIds.delete(r.taskId);
      const storedTasks = finalizingTaskIds.size > 0 ? options.ledger.storedTasks([...finalizingTaskIds]) : undefined;
      finalizingTaskIds.clear();
      writer.periodTotals(settlement.gpus);
      writer.energyCountedUntil(owed);
      writer.gpuCarriedState(this.carriedState(trim, idleAfter, runEnds));
      for (let i = 0; i < pending.length; i += 1) {
        const p = pending[i] as PendingRequestRow;
        pending[i] = null;
        let acc: RequestAccumulator = p.soFar;
        let delta: RequestEnergyDelta | null = null;
        if (firstShare[i] !== -1) {
          requestShares.length = 0;
          for (let s = firstShare[i] as number; s !== -1; s = nextShare[s] as number) requestShares.push(shares[s] as RequestPeriodShare);
          acc = addShares(p.soFar, requestShares);
          // The running per-GPU totals go along, so the ledger writes them without reading the row back.
          delta = toEnergyDelta(p.record.requestId, requestShares, acc.perGpuJ);
          // Energy drawn before the hour the request ends in is booked in its own hour's usage rows.
          const before = energyBeforeEndHour(delta, startMs, endMs, p.record.endMs);
          if (before !== null) {
            acc = { ...acc, beforeEndHourJ: addEnergyBeforeEndHour(acc.beforeEndHourJ, before) };
            delta = { ...delta, beforeEndHourJ: before, beforeEndHourJTotal: acc.beforeEndHourJ };
          }
        }
        if (!isFinalAfter(p.record, endMs)) {
          pendingJ += acc.staticJ + acc.dynamicJ;
          writer.request(delta, null, p.rowid);
          continue;
        }
        const result = finalizeRequest(p.record, acc, { late: p.late });
        finalizedResults.push(result);
        writer.request(delta, toFinalizedRequest(result, settledAtMs), p.rowid);
      }
      // A request that arrived wholly late received no energy here: it is stored and counted as
      // late, but kept out of the usage rollups so it cannot lower J/token with energy-free tokens.
      // It still counts in its task (a late last attempt decides the task's success).
      countable = finalizedResults.filter((r) => !(r.late && r.joules === 0));
      tasks = finalizedResults.some((r) => r.taskId !== null) ? taskUpdates(finalizedResults, priorTaskRequests, options.labelValue, storedTasks) : [];
      const hourOf = (ms: number): EpochMs => epochMs(Math.floor(ms / 3_600_000) * 3_600_000);
      const lateCount = finalizedResults.filter((r) => r.late).length;
      const qualityRows: HourlyQualityRow[] = lateCount > 0 ? [{ hourStartMs: hourOf(startMs), node: options.node, lateRecords: lateCount, rejectedRecords: 0, sampleErrors: 0 }] : [];
      for (const [hour, q] of this.pendingQuality) {
        if (hour <= startMs) qualityRows.push({ hourStartMs: epochMs(hour), node: options.node, lateRecords: 0, rejectedRecords: q.rejected, sampleErrors: q.sampleErrors });
      }
      writer.rollups({
        usageRows: usageRowsFromResults(countable, options.node, options.simulated, options.labelValue),
        energyRows: energyRowsFromTotals(settlement.gpus, startMs, endMs, options.node, options.simulated),
        hostRows: host && host.joules > 0 ? [{ hourStartMs: hourOf(startMs), node: options.node, hostJ: host.joules, estimated: host.estimated, simulated: options.simulated }] : [],
        qualityRows,
        taskDeltas: tasks.map((u) => u.delta),
      });
      if (options.labelCap) {
        // The metrics admit these results' models and tiers after the commit, in this order
        // (requestsFinalized): admitted now, they are stored with the settlement that brings them.
        for (const r of countable) {
          options.labelValue('model', r.model);
          options.labelValue('tier', r.tier);
        }
      }
      // The tasks this settlement closes are decided here, not after the commit, so that what they
      // add to the task and waste counters is in the ledger exactly when the settlement is: a kill
      // can neither lose it nor count it twice. Their tiers are admitted after the requests', as
      // the metrics admit them.
      taskPlan = this.planTaskCloses(tasks, endMs, (ids) => options.ledger.countedTasks(ids));
      for (const { taskId, counted } of taskPlan.reopened) if (!writer.taskReopened(taskId, counted)) taskRowsMissing.push(taskId);
      for (const { taskId, counted } of taskPlan.closed) if (!writer.taskClosed(taskId, counted)) taskRowsMissing.push(taskId);
      if (this.storedTaskIdleMs !== options.taskIdleMs) writer.taskIdleMs(options.taskIdleMs);
      if (taskPlan.closes.length > 0) writer.taskCounters(taskCounterIncrements(taskPlan.closes, options.labelValue, options.simulated));
      if (options.labelCap) {
        labelRevision = options.labelCap.revision;
        if (labelRevision !== this.storedLabelRevision) writer.admittedLabelValues(options.labelCap.admitted());
      }
    });

    // Committed: now move the in-memory state and the exported counters.
    this.storedTaskIdleMs = options.taskIdleMs;
    for (const problem of (taskPlan as TaskClosePlan | null)?.problems ?? []) {
      this.options.log.warn({}, `${problem}: taken as counted at its close before this reopen, as its requests then were`);
    }
    if (taskRowsMissing.length > 0) {
      this.options.log.warn(
        { tasks: taskRowsMissing.slice(0, 10), count: taskRowsMissing.length },
        'tasks without a ledger row (deleted by hand?): what was counted of them is not stored, so a restart while they are open counts them whole again',
      );
    }
    this.settledUntilMs = endMs;
    if (labelRevision !== null) this.storedLabelRevision = labelRevision;
    this.countedUntilMs.clear();
    for (const [uuid, until] of countedAfter) this.countedUntilMs.set(uuid, until);
    for (const [uuid, at] of runEnds) this.counterRunEndMs.set(uuid, at);
    for (const hour of this.pendingQuality.keys()) if (hour <= startMs) this.pendingQuality.delete(hour);
    if (host) {
      this.hostSettled = host.settled;
      if (host.joules > 0) options.metrics.addHostEnergy(options.hostSource ?? 'host', host.joules, host.estimated);
      this.trimHostReadings(endMs);
    }
    this.applyToMetrics(settlement.gpus, countable, pendingJ);
    const plan = taskPlan as TaskClosePlan | null;
    if (plan !== null) this.openTasks = plan.open;
    for (const [uuid, state] of idleAfter) this.idleBaselines.set(uuid, state);
    this.applyTrim(trim);
    if (plan !== null) for (const close of plan.closes) options.metrics.taskFinalized(close);
  }

  private applyToMetrics(totals: readonly GpuPeriodTotals[], results: readonly RequestResult[], pendingJ: number): void {
    const { metrics } = this.options;
    // One residual per GPU: the gauge shows the largest, the counter adds them all (README).
    const residuals: number[] = [];
    for (const t of totals) {
      metrics.addMeasuredEnergy(t.gpuIndex, t.gpuUuid, t.measuredJ);
      metrics.addIdleEnergy(t.gpuIndex, t.idleJ);
      if (t.unattributedJ > 0) metrics.addUnattributedEnergy(t.gpuIndex, t.unattributedJ);
      if (t.estimatedJ > 0) metrics.addEstimatedEnergy(t.gpuIndex, t.estimatedJ);
      if (t.coveredMs > 0) metrics.addCoveredTime(t.gpuIndex, t.gpuUuid, t.coveredMs);
      residuals.push(Math.abs(conservationResidual(t).absoluteJ));
    }
    this.lastResidualJ = residuals.reduce((a, b) => Math.max(a, b), 0);
    metrics.setPendingAttributedEnergy(pendingJ);
    metrics.requestsFinalized(results);
    if (this.settledUntilMs !== null) metrics.settled(this.settledUntilMs, residuals);
  }

  /**
   * The open tasks once this settlement's task updates are in (a task changed here stays, or
   * becomes, open), less those that close at `settledUntilMs` (no request ending for taskIdleMs),
   * with what each close counts. Nothing here is changed: the settler applies it after the commit.
   */
  private planTaskCloses(
    updates: readonly TaskUpdate[],
    settledUntilMs: number,
    countedOf: (taskIds: readonly string[]) => Map<string, { counted: CountedTask | null; problem: string | null }>,
  ): TaskClosePlan {
    const open = new Map(this.openTasks);
    const reopened: { taskId: string; counted: CountedTask }[] = [];
    const problems: string[] = [];
    // Tasks not open but with earlier requests closed (and were counted) before: their rows keep
    // what was counted of them over all their closes (the task as it was before this settlement
    // cannot tell, e.g., the task_failed waste of a close before the last).
    const closedBefore = updates.filter((u) => u.previous !== null && !open.has(u.delta.taskId)).map((u) => u.delta.taskId);
    const stored = closedBefore.length > 0 ? countedOf(closedBefore) : new Map<string, { counted: CountedTask | null; problem: string | null }>();
    for (const u of updates) {
      const was = open.get(u.delta.taskId);
      let counted = was ? was.counted : null;
      if (was === undefined && u.previous !== null) {
        const row = stored.get(u.delta.taskId);
        counted = row?.counted ?? null;
        if (counted === null) {
          // Closed before ledger schema 14 (nothing kept), or kept figures unreadable: counted as it was then.
          if (row?.problem) problems.push(row.problem);
          const p = u.previous;
          counted = { tier: p.tier, succeeded: p.succeeded, joules: p.joules, wasteJ: p.wasteJ, failedJ: failedRestJ(p) };
          reopened.push({ taskId: u.delta.taskId, counted });
        }
      }
      open.set(u.delta.taskId, { now: u.summary, counted });
    }
    const closes: TaskClose[] = [];
    const closed: { taskId: string; counted: CountedTask }[] = [];
    for (const [taskId, task] of open) {
      if (task.now.lastEndMs + this.options.taskIdleMs > settledUntilMs) continue;
      open.delete(taskId);
      const { close, after } = closeOfTask(task.now, task.counted);
      closed.push({ taskId, counted: after });
      if (close !== null) closes.push(close);
    }
    return { open, closes, reopened, closed, problems };
  }

  /**
   * Learned idle baselines go on from where the last settlement left them, not from unknown: a
   * restart would otherwise count every active interval as dynamic until 10 s of idle time was
   * seen again (never, on a GPU that is always busy), and the same run would be split differently
   * with a restart than without. A ledger written before that state was kept has the idle
   * observations of its periods, folded here from the first (what a settler running since then
   * would have learned, configured baselines or not).
   */
  private restoreIdleBaselines(carried: ReadonlyMap<string, GpuCarriedState>): void {
    let observations: Map<string, { powerW: number; durationMs: number }[]> | undefined;
    for (const gpu of this.gpus) {
      const state = carried.get(gpu.uuid);
      if (state) {
        this.idleBaselines.set(gpu.uuid, state.idle);
        continue;
      }
      if (this.settledUntilMs === null) continue;
      observations ??= this.options.ledger.idleObservations();
      this.idleBaselines.set(gpu.uuid, observeIdleAll(initialIdleBaseline(), observations.get(gpu.uuid) ?? []));
    }
  }

  private idleBaselineFor(uuid: string) {
    const configured = this.configuredIdleW.get(uuid);
    if (configured !== undefined) return watts(configured);
    const state = this.idleBaselines.get(uuid);
    return state ? currentIdleBaseline(state) : null;
  }

  /** Each GPU's learned idle baseline once `totals` are observed (applied after the commit). */
  private idleAfter(totals: readonly GpuPeriodTotals[]): Map<string, IdleBaselineState> {
    const next = new Map(this.idleBaselines);
    for (const t of totals) {
      if (t.observedIdlePowerW === null || t.idleMs <= 0) continue;
      next.set(t.gpuUuid, observeIdle(next.get(t.gpuUuid) ?? initialIdleBaseline(), t.observedIdlePowerW, t.idleMs));
    }
    return next;
  }

  /** Keep the last reading at or before the settled edge in the settled counter's segment, and all later ones. */
  private trimHostReadings(settledUntilMs: number): void {
    let keepFrom = 0;
    for (let i = 0; i < this.hostReadings.length; i += 1) {
      const r = this.hostReadings[i] as StoredHostReading;
      if (r.timestampMs > settledUntilMs) break;
      if (this.hostSettled === null || r.segment === this.hostSettled.segment) keepFrom = i;
    }
    if (keepFrom > 0) this.hostReadings.splice(0, keepFrom);
  }

  /**
   * The ledger is settled elsewhere than this settler believed (another writer settled it): take
   * its settled_until, drop what is now settled from memory, and go on from there next tick
   * instead of failing every tick on periods that are already in the ledger.
   */
  private resync(error: SettledUntilMismatchError): void {
    this.options.log.warn(
      { ledgerSettledUntil: error.storedMs === null ? null : new Date(error.storedMs).toISOString(), believed: error.expectedMs === null ? null : new Date(error.expectedMs).toISOString() },
      'the ledger was settled by another writer: resuming from its settled_until',
    );
    this.settledUntilMs = error.storedMs;
    // The other writer's counted edges replace ours: energy it already counted is not owed here.
    this.loadCountedUntil();
    if (error.storedMs === null) return;
    this.trimBuffers(error.storedMs);
    this.rebaseHost(error.storedMs);
    // No period settled here: the edge moves, no residual is counted (the other writer's are its own).
    this.options.metrics.settled(error.storedMs, []);
  }

  /**
   * Keep the last sample at or before the GPU's counted edge (the settled edge, or the last sample
   * before a stall whose energy is still owed: the next interval starts there) and all later ones.
   * The counter readings of those dropped are folded into the GPU's high-water mark.
   */
  private trimBuffers(settledUntilMs: number): void {
    this.applyTrim(this.trimPlan(settledUntilMs, this.countedUntilMs));
  }

  /** What trimBuffers will do once settled to `settledUntilMs` with these counted edges, computed without doing it. */
  private trimPlan(settledUntilMs: number, countedUntil: ReadonlyMap<string, number>): Map<string, TrimPlan> {
    const plan = new Map<string, TrimPlan>();
    for (const [uuid, buffer] of this.samplesByGpu) {
      const edge = Math.min(countedUntil.get(uuid) ?? settledUntilMs, settledUntilMs);
      let keepFrom = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        if ((buffer[i] as PowerSample).timestampMs <= edge) keepFrom = i;
        else break;
      }
      const carried = this.counterHighWater.get(uuid) ?? null;
      plan.set(uuid, {
        keepFrom,
        highWater: keepFrom > 0 ? foldCounterHighWater(carried, buffer, keepFrom) : carried,
        fromMs: buffer[keepFrom]?.timestampMs ?? this.carriedFromMs.get(uuid) ?? edge,
      });
    }
    return plan;
  }

  private applyTrim(plan: ReadonlyMap<string, TrimPlan>): void {
    for (const [uuid, p] of plan) {
      this.counterHighWater.set(uuid, p.highWater);
      this.carriedFromMs.set(uuid, p.fromMs);
      if (p.keepFrom > 0) this.samplesByGpu.set(uuid, (this.samplesByGpu.get(uuid) as PowerSample[]).slice(p.keepFrom));
    }
  }

  /** Each GPU's state as a restart needs it once this settlement commits. */
  private carriedState(trim: ReadonlyMap<string, TrimPlan>, idle: ReadonlyMap<string, IdleBaselineState>, runEnds: ReadonlyMap<string, number>): Record<string, GpuCarriedState> {
    const out: Record<string, GpuCarriedState> = {};
    for (const [uuid, state] of this.absentCarried) out[uuid] = state;
    for (const gpu of this.gpus) {
      const t = trim.get(gpu.uuid);
      if (!t) continue;
      const runEndMs = runEnds.get(gpu.uuid) ?? this.counterRunEndMs.get(gpu.uuid);
      out[gpu.uuid] = { counterHighWater: t.highWater, fromMs: t.fromMs, idle: idle.get(gpu.uuid) ?? initialIdleBaseline(), ...(runEndMs !== undefined && { counterRunEndMs: runEndMs }) };
    }
    return out;
  }
}

/** How one GPU's sample buffer is trimmed after a settlement (Settler.trimPlan). */
interface TrimPlan {
  readonly keepFrom: number;
  readonly highWater: CounterHighWater | null;
  readonly fromMs: number;
}

/**
 * The host counter of one segment (readings[from..to), in time order) at `ms`: interpolated between
 * the readings around it, the first reading's value before them and the last one's after them.
 */
function counterAt(readings: readonly StoredHostReading[], from: number, to: number, ms: number): { energyJ: number; estimated: boolean } {
  const first = readings[from] as StoredHostReading;
  let energyJ = first.energyJ;
  let estimated = first.estimated;
  for (let k = from + 1; k < to; k += 1) {
    const a = readings[k - 1] as StoredHostReading;
    const b = readings[k] as StoredHostReading;
    if (b.timestampMs <= ms) {
      energyJ = b.energyJ;
      estimated = b.estimated;
      continue;
    }
    if (a.timestampMs < ms) energyJ = a.energyJ + ((b.energyJ - a.energyJ) * (ms - a.timestampMs)) / (b.timestampMs - a.timestampMs);
    break;
  }
  return { energyJ, estimated };
}

/**
 * Samples inside [start, end] plus the nearest one on each side, so boundary intervals can be split,
 * and the readings after the end that judge the ones before it, and the counter's high-water mark
 * before them (`highWater` is the mark before the buffer). A counter drop or glitch whose judging
 * readings are not in yet ends the window before it (countableBeforeNextReading).
 */
function windowOf(
  buffer: readonly PowerSample[],
  startMs: number,
  endMs: number,
  highWater: CounterHighWater | null,
  atEnd: boolean,
): { samples: PowerSample[]; counterHighWater: CounterHighWater | null; judgedAtEnd: boolean } {
  let from = 0;
  while (from + 1 < buffer.length && (buffer[from + 1] as PowerSample).timestampMs <= startMs) from += 1;
  let to = from;
  while (to < buffer.length && (buffer[to] as PowerSample).timestampMs < endMs) to += 1;
  // The first sample at or after the end, and the timestamps after it whose readings judge the
  // readings up to it (foldCounterReadings): their intervals lie after the end and count nothing here.
  let end = to;
  for (let groups = 0; groups < 1 + WINDOW_TIMESTAMPS_AFTER_END && end < buffer.length; groups += 1) {
    const t = (buffer[end] as PowerSample).timestampMs;
    while (end < buffer.length && (buffer[end] as PowerSample).timestampMs === t) end += 1;
  }
  const counterHighWater = foldCounterHighWater(highWater, buffer, from);
  const samples = buffer.slice(from, end);
  // A reading near the buffer's end that cannot be judged yet (a drop, a glitch): the interval into
  // it is owed, unless `atEnd` (no reading is coming): then it is judged as the last of its run.
  let judgedAtEnd = false;
  if (end === buffer.length) {
    const countable = countableBeforeNextReading(samples, counterHighWater, endMs);
    if (!atEnd) samples.length = countable;
    else judgedAtEnd = countable < samples.length;
  }
  return { samples, counterHighWater, judgedAtEnd };
}
