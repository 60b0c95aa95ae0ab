import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow } from '../../model/rollup-types.js';
import { epochMs } from '../../model/units.js';
import type { TokenCountRow } from './build-esg-report.js';
import type { ReportPeriod } from './report-period.js';
import { HOUR } from './report-period.js';
import type { TaskAggregateRow } from './task-summary.js';

/** What the agents' counters give, shaped as hourly rollups so the ledger's report builder can use them. */
export interface PrometheusRollups {
  readonly energy: HourlyEnergyRow[];
  readonly host: HourlyHostEnergyRow[];
  readonly quality: HourlyQualityRow[];
  /** Attributed energy per label set; token fields are zero (tokens come in tokenCounts). */
  readonly usage: HourlyUsageRow[];
  readonly tokenCounts: TokenCountRow[];
  readonly taskAggregates: TaskAggregateRow[];
  /** The PromQL queries run (reported in the methodology inputs). */
  readonly queries: readonly string[];
  /** The label that named the nodes (given, or found: see {@link PrometheusSourceOptions.nodeLabel}). */
  readonly nodeLabel: string;
  /** What the report's notes must say about how the figures were read. */
  readonly notes: readonly string[];
  /** Every GPU-hour's sample-covered time came from tokenwatt_gpu_covered_seconds_total (none counted whole for an older agent). */
  readonly coveredTimeKnown: boolean;
}

export interface PrometheusSourceOptions {
  /** Base URL of the Prometheus HTTP API (Prometheus, Thanos Query, Mimir's /prometheus prefix). */
  readonly url: string;
  /**
   * Label naming the node. Default: "node" when every GPU energy series carries it (the shipped
   * scrape config relabels the Kubernetes node name to it), else "instance", which names a pod and
   * changes when the pod is recreated (the report then says so).
   */
  readonly nodeLabel?: string;
  /** User labels on tokenwatt_energy_joules_total to break down by (default team, feature). */
  readonly userLabels?: readonly string[];
  /** Extra request headers, e.g. X-Scope-OrgID for Mimir, Authorization for a gateway. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** The Prometheus API refused a query or could not be reached. */
export class PrometheusQueryError extends Error {
  override readonly name = 'PrometheusQueryError';
}

interface MatrixSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly values: readonly (readonly [number, string])[];
}

/**
 * Read a period's hourly figures from Prometheus: for every counter, `sum by (node, labels)
 * (increase(metric[1h]))` over query_range with a 1 h step aligned on the period, so that each
 * point is one hour of the ledger's grid. increase() extrapolates to the window edges, so the
 * figures match the ledger within one scrape interval per series and hour.
 */
export async function readPrometheusRollups(period: ReportPeriod, options: PrometheusSourceOptions): Promise<PrometheusRollups> {
  const notes: string[] = [];
  const node = options.nodeLabel ?? (await nodeLabelOf(options, period, notes));
  const user = options.userLabels ?? ['team', 'feature'];
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(node)) throw new PrometheusQueryError(`--prometheus-node-label: "${node}" is not a label name`);
  const by = (labels: readonly string[]): string => [node, ...labels].join(', ');
  const q = (metric: string, labels: readonly string[]): string => hourlyIncrease(metric, by(labels));
  const queries = {
    gpu: q('tokenwatt_gpu_energy_joules_total', ['gpu', 'uuid', 'simulated']),
    idle: q('tokenwatt_idle_energy_joules_total', ['gpu']),
    unattributed: q('tokenwatt_unattributed_energy_joules_total', ['gpu']),
    estimated: q('tokenwatt_estimated_energy_joules_total', ['gpu']),
    covered: q('tokenwatt_gpu_covered_seconds_total', ['gpu', 'uuid']),
    attributed: q('tokenwatt_energy_joules_total', ['model', 'tier', 'cache_bucket', 'batch_bucket', 'status', 'mode', 'simulated', ...user]),
    tokens: q('tokenwatt_tokens_total', ['model', 'tier', 'kind']),
    requests: q('tokenwatt_requests_total', ['model', 'tier']),
    host: q('tokenwatt_host_energy_joules_total', ['estimated']),
    tasks: q('tokenwatt_tasks_total', ['tier', 'succeeded']),
    taskEnergy: q('tokenwatt_task_energy_joules_sum', ['tier']),
    waste: q('tokenwatt_waste_energy_joules_total', ['tier']),
    late: q('tokenwatt_late_records_total', []),
    rejected: q('tokenwatt_records_rejected_total', []),
    sampleErrors: q('tokenwatt_sample_errors_total', []),
  };
  const entries = Object.entries(queries) as [keyof typeof queries, string][];
  const [counterResults, withoutStart] = await Promise.all([
    Promise.all(entries.map(async ([key, query]) => [key, await queryRange(options, query, period)] as const)),
    queryRange(options, WITHOUT_COUNTERS_START, period),
  ]);
  const results = Object.fromEntries(counterResults) as Record<keyof typeof queries, MatrixSeries[]>;
  // Agents older than the counters-start gauge: whether their new series count from zero is inferred.
  const older = [...new Set(withoutStart.map((s) => s.metric.instance ?? s.metric.job ?? '?'))].sort();
  if (older.length > 0) {
    notes.push(
      `${older.length} agent(s) export no ${COUNTERS_START} (older tokenwatt: ${older.slice(0, 3).join(', ')}${older.length > 3 ? ', ...' : ''}): ` +
        'where one of them started and its first scrape was the only one in its hour, what it counted before that scrape is missing here (the ledger has it). ' +
        'Their new series count from zero when the agent was scraped in the hour before, or started in the hour with an empty history (inferred from its GPU energy).',
    );
  }

  const nodeOf = (s: MatrixSeries): string => s.metric[node] ?? '';
  const points = function* (s: MatrixSeries): Generator<[number, number]> {
    for (const [t, v] of s.values) {
      const value = Number(v);
      const hour = Math.round(t * 1000) - HOUR;
      if (Number.isFinite(value) && value > 0 && hour >= period.fromMs && hour < period.toMs) yield [hour, value];
    }
  };

  // Measured side, per node, hour and GPU.
  const gpuRows = new Map<string, { node: string; hour: number; uuid: string; measured: number; idle: number; unattributed: number; estimated: number; coveredMs: number; attributed: [number, number]; simulated: boolean }>();
  const uuidOf = new Map<string, string>();
  const gpuRow = (n: string, hour: number, uuid: string): NonNullable<ReturnType<typeof gpuRows.get>> => {
    const key = `${n}\u0001${hour}\u0001${uuid}`;
    let row = gpuRows.get(key);
    if (!row) gpuRows.set(key, (row = { node: n, hour, uuid, measured: 0, idle: 0, unattributed: 0, estimated: 0, coveredMs: 0, attributed: [0, 0], simulated: false }));
    return row;
  };
  // A GPU without a uuid label is named by its index on its node (an index alone is not unique in a fleet).
  const fallbackUuid = (s: MatrixSeries): string => `${nodeOf(s)}/gpu:${s.metric.gpu ?? '?'}`;
  for (const s of results.gpu) {
    const uuid = s.metric.uuid ?? fallbackUuid(s);
    uuidOf.set(`${nodeOf(s)}\u0001${s.metric.gpu ?? ''}`, uuid);
    for (const [hour, v] of points(s)) {
      const row = gpuRow(nodeOf(s), hour, uuid);
      row.measured += v;
      if (s.metric.simulated === 'true') row.simulated = true;
    }
  }
  const perGpu = (series: readonly MatrixSeries[], field: 'idle' | 'unattributed' | 'estimated'): void => {
    for (const s of series) {
      const uuid = uuidOf.get(`${nodeOf(s)}\u0001${s.metric.gpu ?? ''}`) ?? fallbackUuid(s);
      for (const [hour, v] of points(s)) gpuRow(nodeOf(s), hour, uuid)[field] += v;
    }
  };
  perGpu(results.idle, 'idle');
  perGpu(results.unattributed, 'unattributed');
  perGpu(results.estimated, 'estimated');
  // Sample-covered time (the embodied emissions' time reserved, as in the ledger). Agents older than
  // the counter have none: their GPU-hours count whole, as the notes say.
  const nodesWithCoverage = new Set<string>();
  for (const s of results.covered) {
    nodesWithCoverage.add(nodeOf(s));
    const uuid = s.metric.uuid ?? uuidOf.get(`${nodeOf(s)}\u0001${s.metric.gpu ?? ''}`) ?? fallbackUuid(s);
    for (const [hour, v] of points(s)) gpuRow(nodeOf(s), hour, uuid).coveredMs += v * 1000;
  }
  let wholeHours = 0;
  for (const row of gpuRows.values()) {
    if (nodesWithCoverage.has(row.node)) continue;
    row.coveredMs = HOUR;
    wholeHours += 1;
  }
  if (wholeHours > 0) {
    notes.push(
      `${wholeHours} GPU-hour(s) come from agents without tokenwatt_gpu_covered_seconds_total (older tokenwatt): ` +
        'each counts as a whole hour of embodied emissions, where the ledger counts the time covered by samples.',
    );
  }

  // Attributed side: usage rows, and the node-hour static/dynamic sums onto the measured rows.
  const usage: HourlyUsageRow[] = [];
  const attributedByNodeHour = new Map<string, [number, number]>();
  for (const s of results.attributed) {
    const m = s.metric;
    const isStatic = m.mode === 'static';
    for (const [hour, v] of points(s)) {
      usage.push({
        hourStartMs: epochMs(hour),
        node: nodeOf(s),
        model: m.model ?? '',
        tier: m.tier ?? '',
        cacheBucket: m.cache_bucket ?? '',
        batchBucket: m.batch_bucket ?? '',
        status: m.status ?? '',
        team: m.team ?? '',
        feature: m.feature ?? '',
        requests: 0,
        promptTokens: 0,
        cachedTokens: 0,
        completionTokens: 0,
        reasoningTokens: 0,
        staticJ: isStatic ? v : 0,
        dynamicJ: isStatic ? 0 : v,
        prefillJ: 0,
        decodeJ: 0,
        simulated: m.simulated === 'true',
      });
      const key = `${nodeOf(s)}\u0001${hour}`;
      const sums = attributedByNodeHour.get(key) ?? [0, 0];
      sums[isStatic ? 0 : 1] += v;
      attributedByNodeHour.set(key, sums);
    }
  }
  const firstGpuRow = new Map<string, NonNullable<ReturnType<typeof gpuRows.get>>>();
  for (const row of [...gpuRows.values()].sort((a, b) => a.uuid.localeCompare(b.uuid))) {
    const key = `${row.node}\u0001${row.hour}`;
    if (!firstGpuRow.has(key)) firstGpuRow.set(key, row);
  }
  for (const [key, sums] of attributedByNodeHour) {
    const row = firstGpuRow.get(key);
    if (row) row.attributed = sums;
  }
  const energy: HourlyEnergyRow[] = [...gpuRows.values()]
    .sort((a, b) => a.hour - b.hour || a.node.localeCompare(b.node) || a.uuid.localeCompare(b.uuid))
    .map((r) => ({
      hourStartMs: epochMs(r.hour),
      node: r.node,
      gpuUuid: r.uuid,
      measuredJ: r.measured,
      idleJ: r.idle,
      staticJ: r.attributed[0],
      dynamicJ: r.attributed[1],
      unattributedJ: r.unattributed,
      estimatedJ: r.estimated,
      coveredMs: r.coveredMs,
      counterResets: 0,
      gaps: 0,
      simulated: r.simulated,
    }));

  // Tokens and requests by model and tier.
  const tokens = new Map<string, { node: string; hour: number; model: string; tier: string; requests: number; prompt: number; cached: number; completion: number; reasoning: number }>();
  const tokenRow = (s: MatrixSeries, hour: number): NonNullable<ReturnType<typeof tokens.get>> => {
    const model = s.metric.model ?? '';
    const tier = s.metric.tier ?? '';
    const key = `${nodeOf(s)}\u0001${hour}\u0001${model}\u0001${tier}`;
    let row = tokens.get(key);
    if (!row) tokens.set(key, (row = { node: nodeOf(s), hour, model, tier, requests: 0, prompt: 0, cached: 0, completion: 0, reasoning: 0 }));
    return row;
  };
  for (const s of results.tokens) {
    const kind = s.metric.kind;
    for (const [hour, v] of points(s)) {
      const row = tokenRow(s, hour);
      if (kind === 'prompt') row.prompt += v;
      else if (kind === 'cached') row.cached += v;
      else if (kind === 'completion') row.completion += v;
      else if (kind === 'reasoning') row.reasoning += v;
    }
  }
  for (const s of results.requests) for (const [hour, v] of points(s)) tokenRow(s, hour).requests += v;
  const tokenCounts: TokenCountRow[] = [...tokens.values()].map((r) => ({
    hourStartMs: r.hour,
    node: r.node,
    model: r.model,
    tier: r.tier,
    requests: r.requests,
    promptTokens: r.prompt,
    cachedTokens: r.cached,
    completionTokens: r.completion,
    reasoningTokens: r.reasoning,
  }));

  const host: HourlyHostEnergyRow[] = [];
  for (const s of results.host) {
    for (const [hour, v] of points(s)) host.push({ hourStartMs: epochMs(hour), node: nodeOf(s), hostJ: v, estimated: s.metric.estimated === 'true' });
  }

  const quality = new Map<string, { node: string; hour: number; late: number; rejected: number; errors: number }>();
  const qualityAdd = (series: readonly MatrixSeries[], field: 'late' | 'rejected' | 'errors'): void => {
    for (const s of series) {
      for (const [hour, v] of points(s)) {
        const key = `${nodeOf(s)}\u0001${hour}`;
        const row = quality.get(key) ?? { node: nodeOf(s), hour, late: 0, rejected: 0, errors: 0 };
        row[field] += v;
        quality.set(key, row);
      }
    }
  };
  qualityAdd(results.late, 'late');
  qualityAdd(results.rejected, 'rejected');
  qualityAdd(results.sampleErrors, 'errors');

  const tasks = new Map<string, { node: string; hour: number; tier: string; count: number; succeeded: number; joules: number; waste: number }>();
  const taskRow = (s: MatrixSeries, hour: number): NonNullable<ReturnType<typeof tasks.get>> => {
    const tier = s.metric.tier ?? '';
    const key = `${nodeOf(s)}\u0001${hour}\u0001${tier}`;
    let row = tasks.get(key);
    if (!row) tasks.set(key, (row = { node: nodeOf(s), hour, tier, count: 0, succeeded: 0, joules: 0, waste: 0 }));
    return row;
  };
  for (const s of results.tasks) {
    for (const [hour, v] of points(s)) {
      const row = taskRow(s, hour);
      row.count += v;
      if (s.metric.succeeded === 'true') row.succeeded += v;
    }
  }
  for (const s of results.taskEnergy) for (const [hour, v] of points(s)) taskRow(s, hour).joules += v;
  for (const s of results.waste) for (const [hour, v] of points(s)) taskRow(s, hour).waste += v;

  return {
    energy,
    host,
    quality: [...quality.values()].map((r) => ({ hourStartMs: epochMs(r.hour), node: r.node, lateRecords: r.late, rejectedRecords: r.rejected, sampleErrors: r.errors })),
    usage,
    tokenCounts,
    taskAggregates: [...tasks.values()].map((r) => ({ hourStartMs: r.hour, node: r.node, tier: r.tier, count: r.count, succeeded: r.succeeded, joules: r.joules, wasteJ: r.waste })),
    queries: [...Object.values(queries), WITHOUT_COUNTERS_START],
    nodeLabel: node,
    notes,
    coveredTimeKnown: wholeHours === 0,
  };
}

/**
 * "node" when every GPU energy series of the period carries a node label, else "instance" (with a
 * note): an instance is a pod's address, so a recreated pod would count as another node.
 */
async function nodeLabelOf(options: PrometheusSourceOptions, period: ReportPeriod, notes: string[]): Promise<string> {
  const series = await queryRange(options, `count by (node) (last_over_time(${GPU_ENERGY}[1h]))`, period);
  const named = series.filter((s) => (s.metric.node ?? '') !== '').length;
  if (series.length > 0 && named === series.length) return 'node';
  if (series.length > 0) {
    notes.push(
      `Nodes are named by the Prometheus "instance" label: ${named === 0 ? 'the GPU energy series carry no "node" label' : 'some GPU energy series carry no "node" label'}. ` +
        'An instance is an agent pod\'s address, which changes when the pod is recreated: one machine may then appear as several nodes, with its host hours counted once per name. ' +
        'Relabel the Kubernetes node name to "node" (deploy/kubernetes does), or pass --prometheus-node-label.',
    );
  }
  return 'instance';
}

const GPU_ENERGY = 'tokenwatt_gpu_energy_joules_total';
/** When an agent's counters started, and whether from 0 or from its ledger's totals (seeded). */
const COUNTERS_START = 'tokenwatt_counters_start_timestamp_seconds';

/**
 * Agents (job, instance) on which a series with no sample in the hour before started from 0
 * since Prometheus last saw it, so that its first value is new:
 * - scraped in the hour before: the series was created since (an agent never removes a counter);
 * - started from 0 (seeded="false") less than two hours ago: the process cannot have been seen
 *   before the hour before, so none of its counts was; a lone first scrape counts by this;
 * - older agents, without the gauge: started in the hour with an empty history, inferred from
 *   their first GPU energy reading being no more than the hour's increase (two samples needed).
 * An agent restarted on an old ledger seeds its counters with the ledger's totals: not new.
 */
const COUNTING_FROM_ZERO =
  `count by (job, instance) (max_over_time(${GPU_ENERGY}[1h] offset 1h))` +
  ` or (max by (job, instance) (max_over_time(${COUNTERS_START}{seeded="false"}[1h])) > time() - 7200)` +
  ` or ((sum by (job, instance) (min_over_time(${GPU_ENERGY}[1h])) <= sum by (job, instance) (increase(${GPU_ENERGY}[1h])))` +
  ` unless on (job, instance) max_over_time(${COUNTERS_START}[1h]))`;

/** Agents (job, instance) scraped in the hour that do not export {@link COUNTERS_START}. */
const WITHOUT_COUNTERS_START = `count by (job, instance) (last_over_time(${GPU_ENERGY}[1h]) unless on (job, instance) last_over_time(${COUNTERS_START}[1h]))`;

/**
 * Per agent, the number of samples in the hour a series must have fewer than for its first value
 * to be new: any (Inf) on agents counting from zero; else, on agents with the gauge, the agent's
 * scrapes in the hour, so that a series that appeared after the agent's first scrape in the hour
 * counts (created since, from 0: a seeded agent seeds only the series its ledger holds).
 */
const NEW_BELOW_SAMPLES = `(${COUNTING_FROM_ZERO}) * 0 + Inf or sum by (job, instance) (count_over_time(${COUNTERS_START}[1h]))`;

/**
 * PromQL for a counter's increase in each hour, grouped by `by`. increase() cannot see the first
 * value of a series born inside the window (a label combination seen for the first time starts
 * at its first settled value, not at 0; a new agent's only scrape in an hour gives no increase),
 * so for series that had no sample in the hour before, whose first value is new counts (see
 * {@link NEW_BELOW_SAMPLES}), the first value (min_over_time) is added back.
 */
export function hourlyIncrease(metric: string, by: string): string {
  const increase = `sum by (${by}) (increase(${metric}[1h]))`;
  const born =
    `sum by (${by}) ((min_over_time(${metric}[1h]) unless max_over_time(${metric}[1h] offset 1h))` +
    ` and (count_over_time(${metric}[1h]) < on (job, instance) group_left () (${NEW_BELOW_SAMPLES})))`;
  return `${increase} + ${born} or ${increase} or ${born}`;
}

/** GET /api/v1/query_range with a 1 h step whose points end each hour of the period. */
async function queryRange(options: PrometheusSourceOptions, query: string, period: ReportPeriod): Promise<MatrixSeries[]> {
  const base = options.url.replace(/\/+$/, '');
  const params = new URLSearchParams({
    query,
    start: String((period.fromMs + HOUR) / 1000),
    end: String(period.toMs / 1000),
    step: '3600',
  });
  const url = `${base}/api/v1/query_range?${params.toString()}`;
  let response: Response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json', ...options.headers }, signal: AbortSignal.timeout(options.timeoutMs ?? 60_000) });
  } catch (error) {
    throw new PrometheusQueryError(`cannot reach Prometheus at ${base}: ${(error as Error).message}`);
  }
  const text = await response.text();
  let body: { status?: string; error?: string; errorType?: string; data?: { resultType?: string; result?: unknown } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new PrometheusQueryError(`${base}: HTTP ${response.status}, not a Prometheus API answer: ${text.slice(0, 200)}`);
  }
  if (!response.ok || body.status !== 'success') {
    throw new PrometheusQueryError(`${base}: query failed (HTTP ${response.status}, ${body.errorType ?? 'error'}: ${body.error ?? 'no message'}): ${query}`);
  }
  if (body.data?.resultType !== 'matrix' || !Array.isArray(body.data.result)) {
    throw new PrometheusQueryError(`${base}: expected a matrix result for ${query}, got ${body.data?.resultType ?? 'nothing'}`);
  }
  return body.data.result as MatrixSeries[];
}
