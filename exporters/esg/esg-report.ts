/**
 * The ESG report (JSON form; CSV, HTML and Impact Framework are renderings of it). Field names
 * are snake_case and fixed by schemas/esg-report.schema.json. Every ratio in it can be
 * recomputed from additive fields in it, which is what lets `--merge` build a fleet report
 * from node reports without re-reading any ledger.
 */

export const ESG_REPORT_SCHEMA_ID = 'tokenwatt.esg/1';
/** The role of an offset in a report's factors: reported beside the emissions, never netted from them. */
export const OFFSET_ROLE = 'offset (reported, never netted)';

/** How a factor's note starts when the value is a documented default, not the operator's own figure. */
export const DEFAULT_FACTOR_NOTE = 'documented default';

/** Is this factor a documented default (PUE, embodied) rather than a figure configured for the site? */
export const isDefaultFactor = (f: { readonly note: string | null }): boolean => f.note?.startsWith(DEFAULT_FACTOR_NOTE) ?? false;

/**
 * How the report's GPU energy was obtained, in words: "simulated", "estimated", "measured",
 * "measured, 12.5% estimated" (shares rounded to 0.1 %), or "measured or estimated" when the
 * estimated share is unknown. What the HTML cards and the Impact Framework category say.
 */
export function gpuEnergyKind(report: Pick<EsgReport, 'simulated' | 'quality'>): string {
  const pct = (share: number): string => `${Math.round(share * 1000) / 10}%`;
  const { simulated_share: simulated, estimated_share: estimated } = report.quality;
  if (report.simulated) return simulated >= 1 ? 'simulated' : `${pct(simulated)} simulated`;
  if (estimated === null) return 'measured or estimated';
  if (estimated >= 1) return 'estimated';
  return estimated > 0 ? `measured, ${pct(estimated)} estimated` : 'measured';
}

/** Dimensions of the breakdowns. `month` is YYYY-MM in UTC. */
export const BREAKDOWN_DIMENSIONS = ['tier', 'model', 'team', 'feature', 'cache_bucket', 'batch_bucket', 'month'] as const;
export type BreakdownDimension = (typeof BREAKDOWN_DIMENSIONS)[number];

export interface EsgReport {
  readonly schema: typeof ESG_REPORT_SCHEMA_ID;
  readonly title: string;
  /** True when any energy in the report came from the simulator: then the title says so too. */
  readonly simulated: boolean;
  readonly data_source: 'ledger' | 'prometheus' | 'merge';
  readonly period: EsgPeriod;
  readonly nodes: readonly string[];
  readonly totals: EsgTotals;
  readonly sci: EsgSci;
  readonly breakdowns: readonly EsgBreakdownRow[];
  /** J per output token by tier x batch bucket x cache bucket. */
  readonly cross: readonly EsgCrossRow[];
  readonly series: EsgSeries;
  readonly tasks: EsgTasks;
  readonly quality: EsgQuality;
  readonly coverage: EsgCoverage;
  readonly factors: readonly EsgFactor[];
  readonly methodology: EsgMethodology;
  readonly inputs: EsgInputs;
  readonly tool: { readonly name: 'tokenwatt'; readonly version: string };
  readonly generated_at: string;
  readonly content_sha256: string;
}

export interface EsgPeriod {
  /** Inclusive start, RFC 3339 UTC, on a whole hour. */
  readonly from: string;
  /** Exclusive end. */
  readonly to: string;
  readonly label: string;
  readonly hours: number;
}

export interface EsgTotals {
  /** Measured GPU energy (counters or integrated power), idle included. */
  readonly gpu_energy_kwh: number;
  readonly idle_energy_kwh: number;
  readonly attributed_energy_kwh: number;
  readonly static_energy_kwh: number;
  readonly dynamic_energy_kwh: number;
  readonly unattributed_energy_kwh: number;
  readonly host_energy_kwh: number;
  /** GPU + host. */
  readonly it_energy_kwh: number;
  /** Effective PUE (facility / IT); for one site the configured PUE. */
  readonly pue: number;
  readonly facility_energy_kwh: number;
  /**
   * Facility energy of node-hours whose usage rows hold no attributed energy (idle kept warm):
   * in totals, and in the "(unallocated)" row of each label dimension.
   */
  readonly unallocated_facility_energy_kwh: number;
  readonly emissions_location_kgco2e: number;
  readonly emissions_market_kgco2e: number;
  readonly embodied_kgco2e: number;
  readonly embodied_gpu_kgco2e: number;
  readonly embodied_host_kgco2e: number;
  /** Offsets retired, as configured: shown, never subtracted from any figure. */
  readonly offsets_kgco2e: number;
  readonly gpu_count: number;
  /** Time the GPUs were observed (covered by power samples), in hours: SCI's time reserved. */
  readonly reserved_gpu_hours: number;
  /** Time the hosts were observed (their most covered GPU in each hour), in hours. */
  readonly reserved_host_hours: number;
  readonly requests: number;
  readonly prompt_tokens: number;
  readonly cached_tokens: number;
  readonly completion_tokens: number;
  readonly reasoning_tokens: number;
  readonly j_per_output_token: number | null;
  readonly j_per_output_token_fully_loaded: number | null;
}

export interface EsgSci {
  readonly functional_unit_token: string;
  readonly functional_unit_task: string;
  /** E x I, location-based (the SCI specification excludes market instruments and offsets). */
  readonly operational_gco2e: number;
  readonly embodied_gco2e: number;
  readonly output_tokens: number;
  readonly successful_tasks: number;
  readonly per_token_gco2e: number | null;
  readonly per_1k_tokens_gco2e: number | null;
  readonly per_task_gco2e: number | null;
}

/** Token and request counts are null where the data source cannot split them by this dimension. */
export interface EsgBreakdownRow {
  readonly by: BreakdownDimension;
  readonly key: string;
  readonly requests: number | null;
  readonly prompt_tokens: number | null;
  readonly cached_tokens: number | null;
  readonly completion_tokens: number | null;
  /** Attributed GPU energy (marginal: static + dynamic). */
  readonly attributed_energy_kwh: number;
  /** Attributed plus its share of idle, unattributed and host energy, times PUE. */
  readonly fully_loaded_energy_kwh: number;
  readonly j_per_output_token: number | null;
  readonly j_per_output_token_fully_loaded: number | null;
  readonly emissions_location_kgco2e: number;
  readonly emissions_market_kgco2e: number;
  readonly simulated_energy_kwh: number;
}

export interface EsgCrossRow {
  readonly tier: string;
  readonly batch_bucket: string;
  readonly cache_bucket: string;
  readonly completion_tokens: number | null;
  readonly attributed_energy_kwh: number;
  readonly j_per_output_token: number | null;
}

export interface EsgSeries {
  /** Attributed GPU energy per UTC day and tier. */
  readonly daily_by_tier: readonly { readonly day: string; readonly tier: string; readonly attributed_energy_kwh: number }[];
  /** Energy that no request received, per UTC day. */
  readonly daily_overhead: readonly {
    readonly day: string;
    readonly idle_energy_kwh: number;
    readonly unattributed_energy_kwh: number;
    readonly host_energy_kwh: number;
  }[];
}

export interface EsgTaskTotals {
  readonly count: number;
  readonly succeeded: number;
  readonly success_rate: number | null;
  readonly energy_kwh: number | null;
  readonly waste_energy_kwh: number | null;
  /** Energy of failed, cancelled and retried attempts / all task energy. */
  readonly waste_share: number | null;
  /** All task energy (waste included) / successful tasks. */
  readonly j_per_successful_task: number | null;
}

export interface EsgTasks extends EsgTaskTotals {
  readonly definition: string;
  readonly by_tier: readonly (EsgTaskTotals & { readonly tier: string })[];
}

export interface EsgQuality {
  readonly hours_in_period: number;
  readonly hours_with_data: number;
  readonly expected_gpu_hours: number;
  /** Sample-covered GPU hours; null when the source does not record coverage. */
  readonly covered_gpu_hours: number | null;
  /** covered / expected GPU hours over the whole period. */
  readonly sample_coverage: number | null;
  readonly estimated_energy_kwh: number | null;
  readonly estimated_share: number | null;
  /** Gaps longer than 3 sampling periods (estimated intervals). */
  readonly estimated_intervals: number | null;
  readonly counter_resets: number | null;
  readonly late_records: number | null;
  readonly rejected_records: number | null;
  readonly sample_errors: number | null;
  readonly host_estimated_energy_kwh: number;
  readonly host_estimated_share: number | null;
  readonly simulated_energy_kwh: number;
  /** Simulated share of all energy in the report (GPU measured + host + attributed marks). */
  readonly simulated_share: number;
  readonly intensity_filled_hours: number;
  readonly notes: readonly string[];
}

export interface EsgCoverage {
  readonly nodes: readonly {
    readonly node: string;
    readonly gpus: number;
    readonly hours_with_data: number;
    /** Hours of the period without any data from this node, as [from, to) ranges. */
    readonly missing_hours: readonly { readonly from: string; readonly to: string; readonly hours: number }[];
  }[];
  /** For merged reports: the node reports used (by content hash) and those ignored as duplicates. */
  readonly sources: readonly { readonly name: string; readonly content_sha256: string; readonly nodes: readonly string[] }[];
  readonly duplicates_ignored: readonly { readonly name: string; readonly content_sha256: string; readonly duplicate_of: string }[];
}

export interface EsgFactor {
  readonly role: string;
  readonly id: string;
  readonly value: number | null;
  readonly unit: string;
  readonly source: string;
  readonly year: number | null;
  readonly basis: string | null;
  readonly note: string | null;
  /** Node(s) the factor applies to (fleet reports mix sites). */
  readonly nodes: readonly string[];
}

export interface EsgMethodology {
  readonly summary: string;
  readonly steps: readonly string[];
  readonly standards: readonly string[];
}

export interface EsgInputs {
  /** The validated carbon configuration the figures were computed with (what --verify reuses). */
  readonly carbon_config: unknown;
  /** For fleet reports: one per node report. */
  readonly carbon_configs_by_node?: Readonly<Record<string, unknown>>;
  readonly data: string;
}
