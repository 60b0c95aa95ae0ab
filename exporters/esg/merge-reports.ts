import { sciPerUnit } from '../../model/carbon/sci.js';
import { JOULES_PER_KWH } from '../../model/units.js';
import { checkContentSha256, contentSha256 } from './canonical-json.js';
import { MergeError } from './esg-errors.js';
import { ESG_REPORT_SCHEMA_ID, OFFSET_ROLE } from './esg-report.js';
import type { EsgBreakdownRow, EsgCoverage, EsgCrossRow, EsgFactor, EsgQuality, EsgReport, EsgTasks, EsgTaskTotals, EsgTotals } from './esg-report.js';
import { methodology } from './methodology.js';
import { HOUR } from './report-period.js';
import { ratio, round } from './report-numbers.js';

/** A node report and the name it was given on the command line (for messages and coverage). */
export interface NamedReport {
  readonly name: string;
  readonly report: EsgReport;
}

const J = JOULES_PER_KWH;

/**
 * Build a fleet report from node reports. Each must carry a valid content hash; a report given
 * twice (same hash) is counted once and listed as ignored; the same node in two different
 * reports, or reports of different periods, are refused (either would double count or mix).
 */
export function mergeEsgReports(inputs: readonly NamedReport[], options: { toolVersion: string; generatedAt: string }): EsgReport {
  if (inputs.length === 0) throw new MergeError('--merge needs at least one report');
  for (const { name, report } of inputs) {
    const hash = checkContentSha256(report);
    if (!hash.ok) throw new MergeError(`${name}: content hash mismatch (stored ${hash.stored.slice(0, 12)}..., computed ${hash.computed.slice(0, 12)}...): the report was changed after it was written`);
  }
  const used: NamedReport[] = [];
  const duplicates: { name: string; content_sha256: string; duplicate_of: string }[] = [];
  const byHash = new Map<string, string>();
  for (const input of inputs) {
    const first = byHash.get(input.report.content_sha256);
    if (first !== undefined) {
      duplicates.push({ name: input.name, content_sha256: input.report.content_sha256, duplicate_of: first });
      continue;
    }
    byHash.set(input.report.content_sha256, input.name);
    used.push(input);
  }
  const first = used[0];
  if (!first) throw new MergeError('--merge: no reports');
  const period = first.report.period;
  const nodeSource = new Map<string, string>();
  for (const { name, report } of used) {
    if (report.period.from !== period.from || report.period.to !== period.to) {
      throw new MergeError(`${name} covers ${report.period.from} to ${report.period.to}, but ${first.name} covers ${period.from} to ${period.to}: merge reports of one period`);
    }
    for (const node of report.nodes) {
      const other = nodeSource.get(node);
      if (other !== undefined) {
        throw new MergeError(`node ${node} is in both ${other} and ${name} (different contents): merging them would count it twice`);
      }
      nodeSource.set(node, name);
    }
  }
  const reports = used.map((u) => u.report);
  const nodes = [...nodeSource.keys()].sort();
  const factors = mergeFactors(reports.map((r) => r.factors));
  // An offset configured alike on several nodes (a shared config: one purchase) is one factor of the
  // merge, and counts once in its total, as in its factor list.
  const offsetsKg = sum(factors.filter((f) => f.role === OFFSET_ROLE).map((f) => f.value ?? 0));
  const totals = mergeTotals(reports.map((r) => r.totals), offsetsKg);
  const successfulTasks = sum(reports.map((r) => r.tasks.succeeded));
  const operationalG = sum(reports.map((r) => r.sci.operational_gco2e));
  const embodiedG = sum(reports.map((r) => r.sci.embodied_gco2e));
  const simulated = reports.some((r) => r.simulated);
  const configs: Record<string, unknown> = {};
  for (const r of reports) {
    for (const node of r.nodes) configs[node] = r.inputs.carbon_configs_by_node?.[node] ?? r.inputs.carbon_config;
  }
  const withoutHash: Omit<EsgReport, 'content_sha256'> = {
    schema: ESG_REPORT_SCHEMA_ID,
    title: `${simulated ? 'SIMULATED DATA (not a measurement): ' : ''}tokenwatt fleet ESG report ${period.label} (${nodes.length} node${nodes.length === 1 ? '' : 's'})`,
    simulated,
    data_source: 'merge',
    period,
    nodes,
    totals,
    sci: {
      ...first.report.sci,
      operational_gco2e: round(operationalG),
      embodied_gco2e: round(embodiedG),
      output_tokens: totals.completion_tokens,
      successful_tasks: successfulTasks,
      per_token_gco2e: nullableRound(sciPerUnit({ operationalGCo2e: operationalG, embodiedGCo2e: embodiedG, functionalUnits: totals.completion_tokens })),
      per_1k_tokens_gco2e: nullableRound(sciPerUnit({ operationalGCo2e: operationalG, embodiedGCo2e: embodiedG, functionalUnits: totals.completion_tokens / 1000 })),
      per_task_gco2e: nullableRound(sciPerUnit({ operationalGCo2e: operationalG, embodiedGCo2e: embodiedG, functionalUnits: successfulTasks })),
    },
    breakdowns: mergeBreakdowns(reports.flatMap((r) => r.breakdowns)),
    cross: mergeCross(reports.flatMap((r) => r.cross)),
    series: {
      daily_by_tier: mergeKeyed(
        reports.flatMap((r) => r.series.daily_by_tier),
        (d) => `${d.day}\u0001${d.tier}`,
        (a, b) => ({ ...a, attributed_energy_kwh: round(a.attributed_energy_kwh + b.attributed_energy_kwh) }),
      ),
      daily_overhead: mergeKeyed(
        reports.flatMap((r) => r.series.daily_overhead),
        (d) => d.day,
        (a, b) => ({
          day: a.day,
          idle_energy_kwh: round(a.idle_energy_kwh + b.idle_energy_kwh),
          unattributed_energy_kwh: round(a.unattributed_energy_kwh + b.unattributed_energy_kwh),
          host_energy_kwh: round(a.host_energy_kwh + b.host_energy_kwh),
        }),
      ),
    },
    tasks: mergeTasks(reports.map((r) => r.tasks)),
    quality: mergeQuality(reports, period.hours, Date.parse(period.from)),
    coverage: mergeCoverage(used, duplicates),
    factors,
    methodology: methodology('merge'),
    inputs: { carbon_config: null, carbon_configs_by_node: configs, data: `merge of ${used.length} report(s): ${used.map((u) => u.name).join(', ')}` },
    tool: { name: 'tokenwatt', version: options.toolVersion },
    generated_at: options.generatedAt,
  };
  return { ...withoutHash, content_sha256: contentSha256(withoutHash) };
}

const sum = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0);
const nullableRound = (x: number | null): number | null => (x === null ? null : round(x));
/** Sum of nullable figures: unknown (null) as soon as one part is unknown. */
const sumOrNull = (xs: readonly (number | null)[]): number | null => (xs.some((x) => x === null) ? null : round(sum(xs as number[])));

/** The nodes' totals added up; offsets are the merged offset factors' (`offsetsKg`), not a sum per node. */
function mergeTotals(all: readonly EsgTotals[], offsetsKg: number): EsgTotals {
  const add = (pick: (t: EsgTotals) => number): number => round(sum(all.map(pick)));
  const it = add((t) => t.it_energy_kwh);
  const facility = add((t) => t.facility_energy_kwh);
  const completion = add((t) => t.completion_tokens);
  const attributed = add((t) => t.attributed_energy_kwh);
  return {
    gpu_energy_kwh: add((t) => t.gpu_energy_kwh),
    idle_energy_kwh: add((t) => t.idle_energy_kwh),
    attributed_energy_kwh: attributed,
    static_energy_kwh: add((t) => t.static_energy_kwh),
    dynamic_energy_kwh: add((t) => t.dynamic_energy_kwh),
    unattributed_energy_kwh: add((t) => t.unattributed_energy_kwh),
    host_energy_kwh: add((t) => t.host_energy_kwh),
    it_energy_kwh: it,
    pue: it > 0 ? round(facility / it) : round(all[0]?.pue ?? 1),
    facility_energy_kwh: facility,
    unallocated_facility_energy_kwh: add((t) => t.unallocated_facility_energy_kwh),
    emissions_location_kgco2e: add((t) => t.emissions_location_kgco2e),
    emissions_market_kgco2e: add((t) => t.emissions_market_kgco2e),
    embodied_kgco2e: add((t) => t.embodied_kgco2e),
    embodied_gpu_kgco2e: add((t) => t.embodied_gpu_kgco2e),
    embodied_host_kgco2e: add((t) => t.embodied_host_kgco2e),
    offsets_kgco2e: round(offsetsKg),
    gpu_count: add((t) => t.gpu_count),
    reserved_gpu_hours: add((t) => t.reserved_gpu_hours),
    reserved_host_hours: add((t) => t.reserved_host_hours),
    requests: add((t) => t.requests),
    prompt_tokens: add((t) => t.prompt_tokens),
    cached_tokens: add((t) => t.cached_tokens),
    completion_tokens: completion,
    reasoning_tokens: add((t) => t.reasoning_tokens),
    j_per_output_token: ratio(attributed * J, completion),
    j_per_output_token_fully_loaded: ratio(facility * J, completion),
  };
}

function mergeKeyed<T>(rows: readonly T[], keyOf: (row: T) => string, merge: (a: T, b: T) => T): T[] {
  const out = new Map<string, T>();
  for (const row of rows) {
    const key = keyOf(row);
    const prior = out.get(key);
    out.set(key, prior === undefined ? row : merge(prior, row));
  }
  return [...out.keys()].sort().map((k) => out.get(k) as T);
}

function mergeBreakdowns(rows: readonly EsgBreakdownRow[]): EsgBreakdownRow[] {
  const merged = mergeKeyed(
    rows,
    (r) => `${r.by}\u0001${r.key}`,
    (a, b) => ({
      by: a.by,
      key: a.key,
      requests: sumOrNull([a.requests, b.requests]),
      prompt_tokens: sumOrNull([a.prompt_tokens, b.prompt_tokens]),
      cached_tokens: sumOrNull([a.cached_tokens, b.cached_tokens]),
      completion_tokens: sumOrNull([a.completion_tokens, b.completion_tokens]),
      attributed_energy_kwh: round(a.attributed_energy_kwh + b.attributed_energy_kwh),
      fully_loaded_energy_kwh: round(a.fully_loaded_energy_kwh + b.fully_loaded_energy_kwh),
      j_per_output_token: null,
      j_per_output_token_fully_loaded: null,
      emissions_location_kgco2e: round(a.emissions_location_kgco2e + b.emissions_location_kgco2e),
      emissions_market_kgco2e: round(a.emissions_market_kgco2e + b.emissions_market_kgco2e),
      simulated_energy_kwh: round(a.simulated_energy_kwh + b.simulated_energy_kwh),
    }),
  );
  const order = ['tier', 'model', 'team', 'feature', 'cache_bucket', 'batch_bucket', 'month'];
  return merged
    .map((r) => ({
      ...r,
      j_per_output_token: r.completion_tokens === null ? null : ratio(r.attributed_energy_kwh * J, r.completion_tokens),
      j_per_output_token_fully_loaded: r.completion_tokens === null ? null : ratio(r.fully_loaded_energy_kwh * J, r.completion_tokens),
    }))
    .sort((a, b) => order.indexOf(a.by) - order.indexOf(b.by) || a.key.localeCompare(b.key));
}

function mergeCross(rows: readonly EsgCrossRow[]): EsgCrossRow[] {
  return mergeKeyed(
    rows,
    (r) => `${r.tier}\u0001${r.batch_bucket}\u0001${r.cache_bucket}`,
    (a, b) => ({
      ...a,
      completion_tokens: sumOrNull([a.completion_tokens, b.completion_tokens]),
      attributed_energy_kwh: round(a.attributed_energy_kwh + b.attributed_energy_kwh),
    }),
  ).map((r) => ({ ...r, j_per_output_token: r.completion_tokens === null ? null : ratio(r.attributed_energy_kwh * J, r.completion_tokens) }));
}

function mergeTaskTotals(all: readonly EsgTaskTotals[]): EsgTaskTotals {
  const count = sum(all.map((t) => t.count));
  const succeeded = sum(all.map((t) => t.succeeded));
  const energy = sumOrNull(all.map((t) => t.energy_kwh));
  const waste = sumOrNull(all.map((t) => t.waste_energy_kwh));
  return {
    count,
    succeeded,
    success_rate: ratio(succeeded, count),
    energy_kwh: energy,
    waste_energy_kwh: waste,
    waste_share: energy === null || waste === null ? null : ratio(waste, energy),
    j_per_successful_task: energy === null ? null : ratio(energy * J, succeeded),
  };
}

function mergeTasks(all: readonly EsgTasks[]): EsgTasks {
  const tiers = new Map<string, EsgTaskTotals[]>();
  for (const t of all) for (const row of t.by_tier) tiers.set(row.tier, [...(tiers.get(row.tier) ?? []), row]);
  return {
    ...mergeTaskTotals(all),
    definition: all[0]?.definition ?? '',
    by_tier: [...tiers.keys()].sort().map((tier) => ({ tier, ...mergeTaskTotals(tiers.get(tier) ?? []) })),
  };
}

function mergeQuality(reports: readonly EsgReport[], hoursInPeriod: number, fromMs: number): EsgQuality {
  const qs = reports.map((r) => r.quality);
  // An hour has fleet data when at least one node has data in it.
  const missingEverywhere = new Map<number, number>();
  let nodeCount = 0;
  for (const r of reports) {
    for (const node of r.coverage.nodes) {
      nodeCount += 1;
      for (const gap of node.missing_hours) {
        for (let h = Date.parse(gap.from); h < Date.parse(gap.to); h += HOUR) missingEverywhere.set(h, (missingEverywhere.get(h) ?? 0) + 1);
      }
    }
  }
  let hoursWithoutData = 0;
  for (let h = fromMs, i = 0; i < hoursInPeriod; h += HOUR, i += 1) if ((missingEverywhere.get(h) ?? 0) >= nodeCount) hoursWithoutData += 1;
  const gpu = sum(reports.map((r) => r.totals.gpu_energy_kwh));
  const attributed = sum(reports.map((r) => r.totals.attributed_energy_kwh));
  const host = sum(reports.map((r) => r.totals.host_energy_kwh));
  const expected = sum(qs.map((q) => q.expected_gpu_hours));
  const covered = sumOrNull(qs.map((q) => q.covered_gpu_hours));
  const estimated = sumOrNull(qs.map((q) => q.estimated_energy_kwh));
  const simulatedKwh = round(sum(qs.map((q) => q.simulated_energy_kwh)));
  const hostEstimated = round(sum(qs.map((q) => q.host_estimated_energy_kwh)));
  const intOrNull = (xs: readonly (number | null)[]): number | null => sumOrNull(xs);
  const notes: string[] = [];
  for (const r of reports) for (const note of r.quality.notes) notes.push(`${r.nodes.join(', ')}: ${note}`);
  const sources = new Set(reports.map((r) => r.data_source));
  if (sources.has('ledger') && sources.has('prometheus')) {
    // A ledger names its node; Prometheus names the scraped instance. The same machine under both names would be counted twice.
    notes.push(
      'reports from node ledgers and from Prometheus are merged: a machine is refused when two reports name it alike, ' +
        'but a ledger node name and a Prometheus instance label of the same machine cannot be matched, so check that no machine is in both',
    );
  }
  const nodesWithTasks = reports.filter((r) => r.tasks.count > 0).flatMap((r) => r.nodes);
  if (nodesWithTasks.length > 1) {
    // Node reports carry task counts, not task ids, so a task that ran on several nodes cannot be joined here.
    notes.push(
      `tasks are counted per node (${nodesWithTasks.join(', ')}): a task whose requests ran on more than one of these nodes counts once on each, ` +
        'and each node judges its success by its own last request, so the fleet task count may overstate distinct tasks and SCI per task understate it',
    );
  }
  return {
    hours_in_period: hoursInPeriod,
    hours_with_data: hoursInPeriod - hoursWithoutData,
    expected_gpu_hours: expected,
    covered_gpu_hours: covered,
    sample_coverage: covered === null ? null : ratio(covered, expected),
    estimated_energy_kwh: estimated,
    estimated_share: estimated === null ? null : ratio(estimated, gpu),
    estimated_intervals: intOrNull(qs.map((q) => q.estimated_intervals)),
    counter_resets: intOrNull(qs.map((q) => q.counter_resets)),
    late_records: intOrNull(qs.map((q) => q.late_records)),
    rejected_records: intOrNull(qs.map((q) => q.rejected_records)),
    sample_errors: intOrNull(qs.map((q) => q.sample_errors)),
    host_estimated_energy_kwh: hostEstimated,
    host_estimated_share: ratio(hostEstimated, host),
    simulated_energy_kwh: simulatedKwh,
    simulated_share: ratio(simulatedKwh, Math.max(gpu, attributed)) ?? 0,
    intensity_filled_hours: sum(qs.map((q) => q.intensity_filled_hours)),
    notes,
  };
}

function mergeCoverage(used: readonly NamedReport[], duplicates: EsgCoverage['duplicates_ignored']): EsgCoverage {
  return {
    nodes: used.flatMap((u) => u.report.coverage.nodes).sort((a, b) => a.node.localeCompare(b.node)),
    sources: used.map((u) => ({ name: u.name, content_sha256: u.report.content_sha256, nodes: [...u.report.nodes] })),
    duplicates_ignored: [...duplicates, ...used.flatMap((u) => u.report.coverage.duplicates_ignored)],
  };
}

/**
 * The factors of all reports, each once, with the nodes it applies to. An offset is matched by its
 * content, not its id (reports before content ids named it by its position in the config's list):
 * the n-th offset of a given content in one report is the n-th of that content in another.
 */
function mergeFactors(perReport: readonly (readonly EsgFactor[])[]): EsgFactor[] {
  const out = new Map<string, EsgFactor>();
  for (const factors of perReport) {
    const occurrences = new Map<string, number>();
    for (const f of factors) {
      let key: string;
      if (f.role === OFFSET_ROLE) {
        const content = JSON.stringify([f.role, f.value, f.unit, f.source, f.year, f.basis, f.note]);
        const n = (occurrences.get(content) ?? 0) + 1;
        occurrences.set(content, n);
        key = `${content}#${n}`;
      } else {
        key = JSON.stringify([f.role, f.id, f.value, f.unit, f.source, f.year, f.basis, f.note]);
      }
      const prior = out.get(key);
      out.set(key, prior ? { ...prior, nodes: [...new Set([...prior.nodes, ...f.nodes])].sort() } : f);
    }
  }
  return [...out.values()];
}

