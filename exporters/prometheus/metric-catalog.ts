import { REQUEST_ENERGY_BUCKETS, TASK_ENERGY_BUCKETS } from './energy-buckets.js';

/**
 * Every metric tokenwatt exports: name, type, labels and help, in one table. The names are a
 * contract (DESIGN "Surfaces"): dashboards, alert rules and users' queries rely on them. Base
 * units, counters end in _total, and no label carries a request, task or user id.
 */
export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
  /** The configured user labels (team, feature, ...) are appended to `labels`. */
  readonly userLabels?: boolean;
  readonly buckets?: readonly number[];
}

const SIMULATED_NOTE = ' simulated="true" marks figures from the simulator, never measured.';

export const METRIC_CATALOG = {
  gpuPower: {
    name: 'tokenwatt_gpu_power_watts', type: 'gauge', labels: ['gpu', 'uuid', 'simulated'],
    help: `Latest GPU power reading in watts (a ~1 s average on GPUs whose driver averages; see tokenwatt_power_source_info).${SIMULATED_NOTE}`,
  },
  gpuEnergy: {
    name: 'tokenwatt_gpu_energy_joules_total', type: 'counter', labels: ['gpu', 'uuid', 'simulated'],
    help: `Energy measured on each GPU over settled periods, in joules (energy counter deltas, else integrated power).${SIMULATED_NOTE}`,
  },
  idleEnergy: {
    name: 'tokenwatt_idle_energy_joules_total', type: 'counter', labels: ['gpu', 'simulated'],
    help: `Energy of GPU time with no request active, in joules: the cost of keeping capacity warm.${SIMULATED_NOTE}`,
  },
  energy: {
    name: 'tokenwatt_energy_joules_total', type: 'counter', userLabels: true,
    labels: ['model', 'tier', 'cache_bucket', 'batch_bucket', 'status', 'mode', 'simulated'],
    help: `Energy attributed to requests, in joules. mode="static": share of the idle baseline while active; mode="dynamic": share of the power above it, by work.${SIMULATED_NOTE}`,
  },
  tokens: {
    name: 'tokenwatt_tokens_total', type: 'counter', labels: ['model', 'tier', 'cache_bucket', 'batch_bucket', 'kind', 'simulated'],
    help: 'Tokens of settled requests. kind: prompt (all prompt tokens), cached (prefix-cache hits among them), completion (including reasoning), reasoning. The bucket labels match tokenwatt_energy_joules_total, so J/token divides by bucket.',
  },
  requests: {
    name: 'tokenwatt_requests_total', type: 'counter', userLabels: true, labels: ['model', 'tier', 'status', 'simulated'],
    help: 'Requests whose energy is settled, by final status (ok, error, cancelled), with the capped user labels (per-tenant energy per request).',
  },
  requestEnergy: {
    name: 'tokenwatt_request_energy_joules', type: 'histogram', labels: ['tier', 'simulated'], buckets: REQUEST_ENERGY_BUCKETS,
    help: `Energy of one settled request (static + dynamic), in joules.${SIMULATED_NOTE}`,
  },
  taskEnergy: {
    name: 'tokenwatt_task_energy_joules', type: 'histogram', labels: ['tier', 'succeeded', 'simulated'], buckets: TASK_ENERGY_BUCKETS,
    help: `Energy of one closed task (all its requests: retries, errors and cancellations included), in joules. A task that gets requests after it closed adds one more observation, of the energy it added, when it closes again: _sum is the tasks' energy, _count counts closings (tokenwatt_tasks_total counts tasks).${SIMULATED_NOTE}`,
  },
  tasks: {
    name: 'tokenwatt_tasks_total', type: 'counter', labels: ['tier', 'succeeded', 'simulated'],
    help: 'Closed tasks (requests sharing a task_id), by whether their last attempt succeeded. Each task is counted once, at its first close (no request ending for a while); a task that continues after that is not counted again (its further energy and waste go under the tier and outcome it had when it last closed).',
  },
  waste: {
    name: 'tokenwatt_waste_energy_joules_total', type: 'counter', labels: ['tier', 'reason', 'simulated'],
    help: `Task energy that produced no result, in joules. reason="attempt": failed, cancelled or superseded attempts; reason="task_failed": the rest of a task that never succeeded.${SIMULATED_NOTE}`,
  },
  unattributed: {
    name: 'tokenwatt_unattributed_energy_joules_total', type: 'counter', labels: ['gpu', 'simulated'],
    help: `Measured energy not given to requests (sampling gaps too long to attribute), in joules.${SIMULATED_NOTE}`,
  },
  estimated: {
    name: 'tokenwatt_estimated_energy_joules_total', type: 'counter', labels: ['gpu', 'simulated'],
    help: `Part of the measured energy that is estimated (gaps, counter resets, missing readings), in joules.${SIMULATED_NOTE}`,
  },
  coveredTime: {
    name: 'tokenwatt_gpu_covered_seconds_total', type: 'counter', labels: ['gpu', 'uuid'],
    help: 'Time of the settled periods covered by power samples, per GPU, in seconds: the time the GPU was observed (the ESG export reserves embodied emissions by it).',
  },
  hostEnergy: {
    name: 'tokenwatt_host_energy_joules_total', type: 'counter', labels: ['source', 'estimated', 'simulated'],
    help: `Energy of the host around the GPUs (CPU, DRAM), in joules. estimated="true": a configured overhead, not a reading.${SIMULATED_NOTE}`,
  },
  samples: {
    name: 'tokenwatt_samples_total', type: 'counter', labels: ['gpu'],
    help: 'Power samples taken per GPU.',
  },
  sampleErrors: {
    name: 'tokenwatt_sample_errors_total', type: 'counter', labels: ['reason'],
    help: 'Problems met while sampling GPU power, by reason.',
  },
  pue: {
    name: 'tokenwatt_pue_ratio', type: 'gauge', labels: ['site'],
    help: 'Power usage effectiveness applied to this node (configured carbon.pue, else the documented default 1.58).',
  },
  gridIntensity: {
    name: 'tokenwatt_grid_intensity_grams_per_joule', type: 'gauge', labels: ['basis', 'factor'],
    help: 'Location-based grid carbon intensity in force for this node, in grams CO2e per joule (base units: gCO2e/kWh / 3.6e6), from the region table, a configured constant or an hourly file. Absent when none is configured.',
  },
  captureErrors: {
    name: 'tokenwatt_capture_errors_total', type: 'counter', labels: ['source'],
    help: 'Problems met by request capture, by source: proxy calls whose upstream was unreachable, timed out, or whose answer was cut or could not be read (an error the upstream answered is recorded, not counted here), engine scrape failures, OTLP sink errors.',
  },
  labelValuesLeftOut: {
    name: 'tokenwatt_label_values_left_out_total', type: 'counter', labels: ['source', 'label'],
    help: 'Task and label values that request capture left out of a record it kept, because a record refuses them (too long, attempt not an integer 1..10000, a reserved value such as "(none)"), by source (proxy: per call; otlp: per span acknowledged, again if the exporter sends it again) and record field (task_id, attempt, or the label\'s name). The log names the header or attribute once.',
  },
  records: {
    name: 'tokenwatt_records_total', type: 'counter', labels: ['result'],
    help: 'Request records taken in, each under one result: accepted (stored in time), late (stored after its period was settled; kept and reported), duplicate (request_id seen before; acknowledged, not counted twice). The ingest answer\'s accepted also counts its late records.',
  },
  recordsRejected: {
    name: 'tokenwatt_records_rejected_total', type: 'counter', labels: ['reason'],
    help: 'Request records refused, by reason.',
  },
  lateRecords: {
    name: 'tokenwatt_late_records_total', type: 'counter', labels: [],
    help: 'Request records that arrived after their period was settled (raise --settle-lateness if this grows).',
  },
  countersStart: {
    name: 'tokenwatt_counters_start_timestamp_seconds', type: 'gauge', labels: ['seeded'],
    help: 'When this process started its counters, Unix time in seconds. seeded="false": every counter started from 0 (the ledger held no totals); seeded="true": the series the ledger holds totals for started from them (counted by earlier processes), and a series that appears later starts from 0. The ESG export reads it to tell which first values of new series are new counts.',
  },
  settleLag: {
    name: 'tokenwatt_settle_lag_seconds', type: 'gauge', labels: [],
    help: 'How far settlement trails the wall clock, in seconds (about the configured lateness when healthy).',
  },
  settledUntil: {
    name: 'tokenwatt_settled_until_timestamp_seconds', type: 'gauge', labels: [],
    help: 'End of the latest settled period, Unix time in seconds.',
  },
  pendingAttributed: {
    name: 'tokenwatt_pending_attributed_energy_joules', type: 'gauge', labels: ['simulated'],
    help: `Energy already attributed to requests that are not final yet (still running, or their last period unsettled); it moves into tokenwatt_energy_joules_total when they are. measured = attributed + pending + idle + unattributed.${SIMULATED_NOTE}`,
  },
  residual: {
    name: 'tokenwatt_conservation_residual_joules', type: 'gauge', labels: [],
    help: 'Self-check: largest |measured - (idle + static + dynamic + unattributed)| over GPUs in the last settled period, in joules (floating point noise only).',
  },
  residualTotal: {
    name: 'tokenwatt_conservation_residual_joules_total', type: 'counter', labels: [],
    help: 'Self-check: sum of |conservation residual| over settled periods and GPUs, in joules.',
  },
  powerSourceInfo: {
    name: 'tokenwatt_power_source_info', type: 'gauge', labels: ['kind', 'energy_counter', 'power_averaged', 'simulated'],
    help: 'The GPU power source in use (value 1): kind, whether it has an energy counter, whether power readings are averaged, whether it is simulated.',
  },
  buildInfo: {
    name: 'tokenwatt_build_info', type: 'gauge', labels: ['version', 'node_version'],
    help: 'tokenwatt build (value 1).',
  },
  labelValuesFolded: {
    name: 'tokenwatt_label_values_folded_total', type: 'counter', labels: ['label', 'reason'],
    help: 'Observations whose label value was exported as "(other)" (reserved: ingest refuses it as a value). reason="value_cap": past the distinct-value cap; reason="series_cap": the energy metric reached its series budget.',
  },
  invalidValues: {
    name: 'tokenwatt_metric_invalid_values_total', type: 'counter', labels: ['metric'],
    help: 'Values refused by a metric (negative or not finite): a bug upstream, counted rather than hidden.',
  },
} as const satisfies Record<string, MetricSpec>;

export type MetricKey = keyof typeof METRIC_CATALOG;
