import type { GpuPeriodTotals } from '../model/attribution-types.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow } from '../model/rollup-types.js';
import type { EpochMs } from '../model/units.js';

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

/** A task's increment from requests finalized in one settlement. "Latest request wins" decides success. */
export interface TaskDelta {
  readonly taskId: string;
  readonly requests: number;
  readonly joules: number;
  readonly wasteJ: number;
  readonly completionTokens: number;
  readonly firstStartMs: EpochMs;
  readonly lastEndMs: EpochMs;
  /** Status of the request that ends last among this delta's requests. */
  readonly lastStatus: string;
  readonly tier: string;
  readonly team: string;
  readonly feature: string;
}

/**
 * Everything one settlement writes. The ledger applies it in ONE transaction, so a crash leaves
 * either all of it or none of it, and settledUntilMs moves only with it.
 */
export interface SettlementCommit {
  readonly periodStartMs: EpochMs;
  readonly periodEndMs: EpochMs;
  readonly gpuTotals: readonly GpuPeriodTotals[];
  readonly requestDeltas: readonly RequestEnergyDelta[];
  readonly finalized: readonly FinalizedRequest[];
  /** Additive: the ledger adds these to existing rows of the same key. */
  readonly usageRows: readonly HourlyUsageRow[];
  readonly energyRows: readonly HourlyEnergyRow[];
  readonly hostRows: readonly HourlyHostEnergyRow[];
  readonly qualityRows: readonly HourlyQualityRow[];
  readonly taskDeltas: readonly TaskDelta[];
  readonly settledUntilMs: EpochMs;
}

/** Retention per table (DESIGN defaults: samples 48 h, requests 7 d, rollups 400 d). */
export interface RetentionPolicy {
  readonly samplesHours: number;
  readonly requestsDays: number;
  readonly rollupsDays: number;
}
