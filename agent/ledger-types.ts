import type { GpuPeriodTotals } from '../model/attribution-types.js';
import type { EnergyBeforeEndHour } from '../model/request-result.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow } from '../model/rollup-types.js';
import type { EpochMs } from '../model/units.js';
import type { CountedTask, TaskCountIncrement, WasteIncrement } from '../model/task-counters.js';

/** Energy a request received in one settled period, added to its running totals. */
export interface RequestEnergyDelta {
  readonly requestId: string;
  readonly staticJ: number;
  readonly dynamicJ: number;
  readonly prefillJ: number;
  readonly decodeJ: number;
  readonly activeMs: number;
  readonly concurrencyMs: number;
  readonly estimated: boolean;
  /** Joules by physical GPU UUID in this period. */
  readonly perGpuJ: Readonly<Record<string, number>>;
  /**
   * Joules by GPU over all periods settled so far, this one included, when the caller keeps them
   * (the settler does): the ledger then stores them as given instead of reading the row to add.
   */
  readonly perGpuJTotal?: Readonly<Record<string, number>>;
  /** The part of this period's energy drawn before the hour the request ends in (absent: none). */
  readonly beforeEndHourJ?: EnergyBeforeEndHour;
  /** The same over all periods settled so far, this one included, when the caller keeps it (as perGpuJTotal). */
  readonly beforeEndHourJTotal?: EnergyBeforeEndHour;
}

/** The final figures of a request whose last period has been settled. */
export interface FinalizedRequest {
  readonly requestId: string;
  readonly joules: number;
  readonly jPerOutputToken: number | null;
  readonly observedBatchSize: number;
  readonly batchBucket: string;
  readonly cacheBucket: string;
  readonly settledAtMs: EpochMs;
}

/**
 * A task's increment from requests finalized in one settlement (model/tasks.ts `taskUpdates`): the
 * sums of those requests, and waste as the change in the whole task's waste; times, last status,
 * tier and labels are the whole task's, so the row equals the task over all its requests.
 */
export interface TaskDelta {
  readonly taskId: string;
  readonly requests: number;
  readonly joules: number;
  readonly wasteJ: number;
  readonly completionTokens: number;
  readonly firstStartMs: EpochMs;
  readonly lastEndMs: EpochMs;
  /** Status of the task's request that ends last ("latest request wins" decides success). */
  readonly lastStatus: string;
  readonly tier: string;
  readonly team: string;
  readonly feature: string;
}

/**
 * Everything one settlement writes. The ledger applies it in ONE transaction, so a crash leaves
 * either all of it or none of it, and settledUntilMs moves only with it.
 */
/** Which period a settlement covers and where the settled time ends after it. */
export interface SettlementPeriod {
  readonly periodStartMs: EpochMs;
  readonly periodEndMs: EpochMs;
  readonly settledUntilMs: EpochMs;
  /**
   * Where the writer believes settled_until stands before this settlement (null: nothing settled).
   * When given, a ledger that stands elsewhere (another writer moved it) refuses the settlement
   * with a SettledUntilMismatchError and writes nothing.
   */
  readonly expectedSettledUntilMs?: EpochMs | null;
}

/** The additive rollup rows of one settlement: the ledger adds them to existing rows of the same key. */
export interface SettlementRollups {
  readonly usageRows: readonly HourlyUsageRow[];
  readonly energyRows: readonly HourlyEnergyRow[];
  readonly hostRows: readonly HourlyHostEnergyRow[];
  readonly qualityRows: readonly HourlyQualityRow[];
  readonly taskDeltas: readonly TaskDelta[];
}

/** A whole settlement given at once (see Ledger.settle for writing one request at a time). */
export interface SettlementCommit extends SettlementPeriod, SettlementRollups {
  readonly gpuTotals: readonly GpuPeriodTotals[];
  readonly requestDeltas: readonly RequestEnergyDelta[];
  readonly finalized: readonly FinalizedRequest[];
  /** What the tasks it closes add to the task and waste counters (absent: none close). */
  readonly taskCounters?: TaskCounterIncrements;
}

/** The writes of one settlement, inside its transaction (Ledger.settle). */
export interface SettlementWriter {
  /** The per-GPU totals of the period (one row per GPU in `periods`). */
  periodTotals(gpuTotals: readonly GpuPeriodTotals[]): void;
  /**
   * One request: the energy it received in this period (null if none) and, when this period
   * finalizes it, its final figures (null otherwise). A request the ledger does not hold, or one
   * already finalized, fails the settlement. `rowid`, when the caller read it with the row
   * (`PendingRequestRow` in ledger-rows.ts), reaches the row without the request_id index.
   */
  request(delta: RequestEnergyDelta | null, final: FinalizedRequest | null, rowid?: number): void;
  rollups(rollups: SettlementRollups): void;
  /**
   * GPUs whose energy is counted only up to a time before the end of this period (ms by GPU UUID;
   * the others are counted up to it): a stall left their tail owed to a later period. It replaces
   * what the previous settlement stored.
   */
  energyCountedUntil(byGpu: Readonly<Record<string, number>>): void;
  /** What a restart needs to go on with each GPU as this settler would (by GPU UUID). It replaces what was stored. */
  gpuCarriedState(byGpu: Readonly<Record<string, GpuCarriedState>>): void;
  /** The label values that keep their name, by label, in the order they were admitted. It replaces what was stored. */
  admittedLabelValues(byLabel: Readonly<Record<string, readonly string[]>>): void;
  /**
   * What the tasks this settlement closes add to the task and waste counters, in the order the
   * metrics add them: added to the ledger's lifetime sums of those series (never pruned).
   */
  taskCounters(counters: TaskCounterIncrements): void;
  /**
   * A task that closed before ledger schema 14 (its row keeps nothing counted) got requests in this
   * settlement: what the counters have of it (its figures at that close) goes on its row, written
   * by {@link rollups} before, so that a restart while it is open goes on from it. False when the
   * ledger holds no row of it (deleted by hand: nothing to write on; the settlement goes on, and
   * the settler says so).
   */
  taskReopened(taskId: string, counted: CountedTask): boolean;
  /**
   * A task closes in this settlement: what the counters then have of it goes on its row, so that
   * a reopen, or a restart that finds it open (a longer task idle time), counts only what it adds
   * after. False when the ledger holds no row of it (as for taskReopened).
   */
  taskClosed(taskId: string, counted: CountedTask): boolean;
  /** The task idle time this settlement closes tasks with, for a restart with another one (see Ledger.getTaskIdleMs). */
  taskIdleMs(ms: number): void;
}

/** Increments of tokenwatt_tasks_total and tokenwatt_waste_energy_joules_total (model/task-counters.ts). */
export interface TaskCounterIncrements {
  readonly tasks: readonly TaskCountIncrement[];
  readonly waste: readonly WasteIncrement[];
}

/**
 * The state of one GPU that a settler carries from one settlement to the next and that its stored
 * rows do not hold exactly: kept with each settlement so that a restart goes on as the stopped
 * settler would have.
 */
export interface GpuCarriedState {
  /** The energy counter's high-water mark over the GPU's samples before `fromMs` (energy-timeline.ts). */
  readonly counterHighWater: { readonly energyJ: number; readonly atMs: number; readonly missed?: true; readonly newRun?: true } | null;
  /** Time of the first sample the next window may start at; the mark covers the samples before it. */
  readonly fromMs: number;
  /** The learned idle baseline (model/idle-baseline.ts). */
  readonly idle: { readonly estimateW: number | null; readonly observedMs: number };
  /**
   * The GPU's last readings were judged without readings after them (none came): its next sample
   * after this time starts a new counter run (Settler.counterRunEndMs). Absent: none pending.
   */
  readonly counterRunEndMs?: number;
}

/** Retention per table (DESIGN defaults: samples 48 h, requests 7 d, rollups 400 d). */
export interface RetentionPolicy {
  readonly samplesHours: number;
  readonly requestsDays: number;
  readonly rollupsDays: number;
}
