import type { EpochMs } from './units.js';

/**
 * Hourly rollups: what the ledger keeps for 400 days and what the ESG export reads.
 * Energy rows are per GPU per hour (measured side); usage rows are per label combination
 * per hour (attributed side). All energies in joules.
 */
export interface HourlyEnergyRow {
  readonly hourStartMs: EpochMs;
  readonly node: string;
  readonly gpuUuid: string;
  readonly measuredJ: number;
  readonly idleJ: number;
  readonly staticJ: number;
  readonly dynamicJ: number;
  readonly unattributedJ: number;
  readonly estimatedJ: number;
  /** Milliseconds of the hour covered by samples (coverage = coveredMs / 3.6e6). */
  readonly coveredMs: number;
  readonly counterResets: number;
  readonly gaps: number;
  /** True if the energy came from the simulator. */
  readonly simulated: boolean;
}

export interface HourlyHostEnergyRow {
  readonly hourStartMs: EpochMs;
  readonly node: string;
  readonly hostJ: number;
  /** True when host energy is a configured overhead (no RAPL). */
  readonly estimated: boolean;
  /** Counted while the GPU power source was simulated (labelled so in the metrics); absent: not. */
  readonly simulated?: boolean;
}

/**
 * Energy is booked in the hours it was drawn (since ledger schema 7; before, whole in the hour the
 * request ended), and tokens with it, in proportion (rows written before that keep them in the end
 * hour); a request counts in the hour it ended. A row may hold energy and tokens and no requests.
 */
export interface HourlyUsageRow {
  readonly hourStartMs: EpochMs;
  readonly node: string;
  readonly model: string;
  readonly tier: string;
  readonly cacheBucket: string;
  readonly batchBucket: string;
  readonly status: string;
  /** Capped user label values ("" when absent, "(other)" past the cap). */
  readonly team: string;
  readonly feature: string;
  readonly requests: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
  readonly staticJ: number;
  readonly dynamicJ: number;
  readonly prefillJ: number;
  readonly decodeJ: number;
  readonly simulated: boolean;
}

/** One task (requests sharing a task_id), as the ledger keeps it. */
export interface TaskRow {
  readonly taskId: string;
  readonly node: string;
  readonly firstStartMs: EpochMs;
  readonly lastEndMs: EpochMs;
  readonly requests: number;
  /** A task succeeded when its latest attempt of its last step ended ok (see model/tasks.ts). */
  readonly succeeded: boolean;
  readonly joules: number;
  /** Energy of failed, cancelled and superseded (retried) attempts. */
  readonly wasteJ: number;
  readonly completionTokens: number;
  readonly tier: string;
  readonly team: string;
  readonly feature: string;
}

/** Data-quality counters per hour. */
export interface HourlyQualityRow {
  readonly hourStartMs: EpochMs;
  readonly node: string;
  readonly lateRecords: number;
  readonly rejectedRecords: number;
  readonly sampleErrors: number;
}
