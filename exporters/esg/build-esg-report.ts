import { createHash } from 'node:crypto';
import { REGION_INTENSITY_TABLE } from '../../collectors/carbon-data/region-intensity-table.js';
import { CarbonInputError } from '../../model/carbon/carbon-input-error.js';
import type { CarbonConfig } from '../../model/carbon/carbon-config.js';
import { DEFAULT_EMBODIED, embodiedKgCo2e } from '../../model/carbon/embodied.js';
import type { FactorProvenance, GridIntensityFactor } from '../../model/carbon/grid-intensity-factor.js';
import type { HourlyIntensitySeries } from '../../model/carbon/hourly-intensity-csv.js';
import { resolveLocationIntensity } from '../../model/carbon/location-intensity.js';
import type { LocationIntensitySpec } from '../../model/carbon/location-intensity.js';
import { resolveMarketIntensity } from '../../model/carbon/market-intensity.js';
import { NO_LABEL_KEY, UNALLOCATED_KEY } from '../../model/report-keys.js';
import { checkPue, DEFAULT_PUE, DEFAULT_PUE_SOURCE } from '../../model/carbon/pue.js';
import { sciPerUnit } from '../../model/carbon/sci.js';
import type { HourlyEnergyRow, HourlyHostEnergyRow, HourlyQualityRow, HourlyUsageRow, TaskRow } from '../../model/rollup-types.js';
import { JOULES_PER_KWH } from '../../model/units.js';
import { canonicalJson, contentSha256 } from './canonical-json.js';
import { NoDataError } from './esg-errors.js';
import { DEFAULT_FACTOR_NOTE, ESG_REPORT_SCHEMA_ID, OFFSET_ROLE } from './esg-report.js';
import type { BreakdownDimension, EsgBreakdownRow, EsgCoverage, EsgCrossRow, EsgFactor, EsgQuality, EsgReport, EsgSeries, EsgTotals } from './esg-report.js';
import { methodology } from './methodology.js';
import { collectNodeHours } from './node-hours.js';
import type { NodeHour } from './node-hours.js';
import type { ReportPeriod } from './report-period.js';
import { HOUR, periodHours } from './report-period.js';
import { dayOf, isoHour, kg, kwh, labelKey, monthOf, ratio, round } from './report-numbers.js';
import { sumTasks, tasksSection } from './task-summary.js';
import type { TaskAggregateRow } from './task-summary.js';
import { addSums, aggregateUsage, emptySums } from './usage-breakdowns.js';
import type { HourFactors, UsageAggregate, UsageNodeHourTotal, UsageSums } from './usage-breakdowns.js';

/** Token and request counts per model and tier (the Prometheus path: tokens carry no other labels). */
export interface TokenCountRow {
  readonly hourStartMs: number;
  readonly node: string;
  readonly model: string;
  readonly tier: string;
  readonly requests: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
}

/** Label of the breakdown row that holds, in each label dimension, the facility energy no usage row took. */
export { UNALLOCATED_KEY };

export interface EsgReportInput {
  /**
   * Rows are read in this order: energy, host, quality, usage, tasks (so they may stream). Usage is
   * read twice (once for its node-hour totals) unless `usageTotals` is given.
   */
  readonly energy: Iterable<HourlyEnergyRow>;
  readonly host: Iterable<HourlyHostEnergyRow>;
  readonly quality: Iterable<HourlyQualityRow>;
  readonly usage: Iterable<HourlyUsageRow>;
  readonly tasks: Iterable<TaskRow>;
  readonly carbon: CarbonConfig;
  /** The parsed file when carbon.intensityFile is set (the caller reads it: this module does no file I/O). */
  readonly intensityFile?: { readonly series: HourlyIntensitySeries; readonly name: string; readonly sha256: string };
  readonly regionTable?: readonly GridIntensityFactor[];
  readonly period: ReportPeriod;
  readonly toolVersion: string;
  readonly generatedAt: string;
  readonly dataSource?: 'ledger' | 'prometheus';
  /** When given, token and request counts come from here, by model and tier only; usage rows then carry energy only. */
  readonly tokenCounts?: Iterable<TokenCountRow>;
  /** Task counts per tier and hour, for sources without one row per task (Prometheus). */
  readonly taskAggregates?: Iterable<TaskAggregateRow>;
  /** False when the source has no gap or reset counters (Prometheus). */
  readonly coverageKnown?: boolean;
  /**
   * False when the source's sample-covered time is not known for every GPU-hour (Prometheus with
   * agents older than tokenwatt_gpu_covered_seconds_total); default: coverageKnown.
   */
  readonly coveredTimeKnown?: boolean;
  /** False when the source counts tasks but not their energy. */
  readonly taskEnergyKnown?: boolean;
  /**
   * Sums usage inside the store instead of streaming `usage` (the export command's SQLite
   * aggregate), given every measured node-hour's factors; returns null to stream instead.
   */
  readonly usageAggregator?: (factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>) => UsageAggregate | null;
  /** The usage rows' attributed energy per node-hour, summed by the store (else summed from `usage`). */
  readonly usageTotals?: Iterable<UsageNodeHourTotal>;
  /**
   * Usage rows of hours from this time on book energy in the hours it was drawn; earlier ones (a
   * ledger written before schema 7) book each request whole in the hour it ended (said in a note).
   */
  readonly usageByDrawnHourFromMs?: number;
  /** Notes of the data source (how it named nodes, ...), added to the quality notes. */
  readonly sourceNotes?: readonly string[];
}

const TOKEN_DIMENSIONS_OF_TOKEN_COUNTS: readonly BreakdownDimension[] = ['tier', 'model', 'month'];

/**
 * Build the ESG report for one period from hourly rollups. Pure apart from hashing: the caller
 * reads the ledger (or Prometheus) and files. Throws NoDataError for a period without data and
 * CarbonInputError(s) for a bad region, PUE or intensity file.
 */
export function buildEsgReport(input: EsgReportInput): EsgReport {
  const prepared = prepareEsgReport(input);
  return prepared.finish(input.usageAggregator?.(prepared.factors) ?? null);
}

/** A report whose measured side is done, waiting for its usage sums (computed here or elsewhere). */
export interface PreparedEsgReport {
  /** Factors of every measured node-hour: what a usage aggregator outside this module needs. */
  readonly factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>;
  /** Finish with usage summed elsewhere, or with null to stream `input.usage`. */
  finish(usage: UsageAggregate | null): EsgReport;
}

/**
 * First half of {@link buildEsgReport}: reads the measured side (energy, host, quality),
 * resolves the grid intensities and the hourly factors. Lets a caller sum usage asynchronously
 * (in worker threads) before finishing the report.
 */
export function prepareEsgReport(input: EsgReportInput): PreparedEsgReport {
  const { period, carbon } = input;
  const table = input.regionTable ?? REGION_INTENSITY_TABLE;
  const pue = checkPue(carbon.pue ?? DEFAULT_PUE);
  const dataSource = input.dataSource ?? 'ledger';
  const coverageKnown = input.coverageKnown ?? true;
  const coveredTimeKnown = input.coveredTimeKnown ?? coverageKnown;

  const { byNode, gpuHours, coveredByGpu } = collectNodeHours(period, input.energy, input.host, input.quality);
  const neededHours = new Set<number>();
  for (const hours of byNode.values()) for (const [hour, h] of hours) if (hasData(h)) neededHours.add(hour);

  const location = resolveLocationIntensity(locationSpecOf(carbon, input.intensityFile), table, [...neededHours].sort((a, b) => a - b));
  const market = resolveMarketIntensity(carbon.market, period);
  // Each node-hour's facility energy goes to the usage rows booked in that hour, in proportion to
  // their attributed energy: the denominator is theirs, not the energy rows' (a request may draw
  // energy in one hour and be booked in another), so the rows of every breakdown dimension add up
  // to the facility energy of their hours. With no attributed usage the hour is unallocated; usage
  // in an hour without measured energy gets none (its energy is counted where it was measured).
  const usageJ = usageByNodeHour(period, input.usageTotals ?? usageTotalsOf(input.usage));
  const factorsCache = new Map<string, Map<number, HourFactors>>();
  const setFactors = (node: string, hour: number, f: HourFactors): HourFactors => {
    let perNode = factorsCache.get(node);
    if (!perNode) factorsCache.set(node, (perNode = new Map()));
    perNode.set(hour, f);
    return f;
  };
  const NO_ENERGY: HourFactors = { fullyLoadedPerJ: 0, locationGPerJ: 0, marketGPerJ: 0 };
  let usageOutsideMeasuredHours = 0;
  for (const [node, hours] of usageJ) {
    for (const hour of hours.keys()) {
      const h = byNode.get(node)?.get(hour);
      if (h && hasData(h)) continue;
      usageOutsideMeasuredHours += 1;
      setFactors(node, hour, NO_ENERGY);
    }
  }
  const factorsOf = (node: string, hour: number): HourFactors => {
    const cached = factorsCache.get(node)?.get(hour);
    if (cached) return cached;
    // Only reached for usage missing from `usageTotals` (a store that changed between the reads).
    usageOutsideMeasuredHours += 1;
    return setFactors(node, hour, NO_ENERGY);
  };

  // Totals, months, days and node coverage from the measured side.
  const t = { measured: 0, idle: 0, static: 0, dynamic: 0, unattributed: 0, host: 0, unallocated: 0, unallocatedLocG: 0, unallocatedMktG: 0, locG: 0, mktG: 0 };
  const q = { estimated: 0, covered: 0, resets: 0, gaps: 0, late: 0, rejected: 0, sampleErrors: 0, hostEstimated: 0, simulated: 0 };
  const monthFacility = new Map<string, { facilityJ: number; locG: number; mktG: number }>();
  const dailyOverhead = new Map<string, { idle: number; unattributed: number; host: number }>();
  const hoursWithData = new Set<number>();
  for (const [node, hours] of byNode) {
    for (const [hour, h] of hours) {
      t.measured += h.measuredJ;
      t.idle += h.idleJ;
      t.static += h.staticJ;
      t.dynamic += h.dynamicJ;
      t.unattributed += h.unattributedJ;
      t.host += h.hostJ;
      q.estimated += h.estimatedJ;
      q.covered += h.coveredMs;
      q.resets += h.counterResets;
      q.gaps += h.gaps;
      q.late += h.lateRecords;
      q.rejected += h.rejectedRecords;
      q.sampleErrors += h.sampleErrors;
      q.hostEstimated += h.hostEstimatedJ;
      q.simulated += h.simulatedJ;
      if (!hasData(h)) continue;
      hoursWithData.add(hour);
      const facility = (h.measuredJ + h.hostJ) * pue;
      const loc = location.gPerKwhAt(hour);
      const locationGPerJ = loc / JOULES_PER_KWH;
      const marketGPerJ = market.gPerKwhAt(hour, loc) / JOULES_PER_KWH;
      const attributed = usageJ.get(node)?.get(hour) ?? 0;
      setFactors(node, hour, { fullyLoadedPerJ: attributed > 0 ? facility / attributed : 0, locationGPerJ, marketGPerJ });
      const locG = facility * locationGPerJ;
      const mktG = facility * marketGPerJ;
      t.locG += locG;
      t.mktG += mktG;
      if (attributed <= 0) {
        t.unallocated += facility;
        t.unallocatedLocG += locG;
        t.unallocatedMktG += mktG;
      }
      const m = monthFacility.get(monthOf(hour)) ?? { facilityJ: 0, locG: 0, mktG: 0 };
      m.facilityJ += facility;
      m.locG += locG;
      m.mktG += mktG;
      monthFacility.set(monthOf(hour), m);
      const d = dailyOverhead.get(dayOf(hour)) ?? { idle: 0, unattributed: 0, host: 0 };
      d.idle += h.idleJ;
      d.unattributed += h.unattributedJ;
      d.host += h.hostJ;
      dailyOverhead.set(dayOf(hour), d);
    }
  }

  return { factors: factorsCache, finish: (summed) => finishReport(summed ?? aggregateUsage(period, input.usage, factorsOf)) };

  function finishReport(usage: UsageAggregate): EsgReport {
    const tasks = sumTasks(period, input.tasks, input.taskAggregates);
    const tokenCounts = input.tokenCounts ? sumTokenCounts(period, input.tokenCounts) : null;

    const allUsage = emptySums();
    for (const c of usage.combos.values()) addSums(allUsage, c);
    if (tokenCounts) copyTokens(allUsage, tokenCounts.all);
    if (hoursWithData.size === 0) {
      const why = usage.combos.size > 0 ? 'attributed usage but no measured energy' : 'nothing to report';
      throw new NoDataError(`no data between ${isoHour(period.fromMs)} and ${isoHour(period.toMs)} (${period.label}): ${why}`);
    }

    const nodes = [...new Set([...byNode.keys()])].sort();
    const facilityJ = (t.measured + t.host) * pue;
    const embodied = embodiedOf(carbon, byNode, coveredByGpu);
    const offsetsKg = carbon.offsets.reduce((s, o) => s + o.kgCo2e, 0);
    const simulatedAttributedJ = allUsage.simulatedJ;
    const simulated = q.simulated > 0 || simulatedAttributedJ > 0;

    const totals: EsgTotals = {
      gpu_energy_kwh: kwh(t.measured),
      idle_energy_kwh: kwh(t.idle),
      attributed_energy_kwh: kwh(t.static + t.dynamic),
      static_energy_kwh: kwh(t.static),
      dynamic_energy_kwh: kwh(t.dynamic),
      unattributed_energy_kwh: kwh(t.unattributed),
      host_energy_kwh: kwh(t.host),
      it_energy_kwh: kwh(t.measured + t.host),
      pue: round(pue),
      facility_energy_kwh: kwh(facilityJ),
      unallocated_facility_energy_kwh: kwh(t.unallocated),
      emissions_location_kgco2e: kg(t.locG),
      emissions_market_kgco2e: kg(t.mktG),
      embodied_kgco2e: round(embodied.gpuKg + embodied.hostKg),
      embodied_gpu_kgco2e: round(embodied.gpuKg),
      embodied_host_kgco2e: round(embodied.hostKg),
      offsets_kgco2e: round(offsetsKg),
      gpu_count: embodied.gpuCount,
      reserved_gpu_hours: round(embodied.gpuHours),
      reserved_host_hours: round(embodied.hostHours),
      requests: Math.round(allUsage.requests),
      prompt_tokens: Math.round(allUsage.promptTokens),
      cached_tokens: Math.round(allUsage.cachedTokens),
      completion_tokens: Math.round(allUsage.completionTokens),
      reasoning_tokens: Math.round(allUsage.reasoningTokens),
      j_per_output_token: ratio(t.static + t.dynamic, allUsage.completionTokens),
      j_per_output_token_fully_loaded: ratio(facilityJ, allUsage.completionTokens),
    };

    const embodiedG = (embodied.gpuKg + embodied.hostKg) * 1000;
    const successfulTasks = Math.round(tasks.all.succeeded);
    const sci = {
      functional_unit_token: 'output token (completion tokens, reasoning included)',
      functional_unit_task: 'successful task (energy of all its attempts counted)',
      operational_gco2e: round(t.locG),
      embodied_gco2e: round(embodiedG),
      output_tokens: Math.round(allUsage.completionTokens),
      successful_tasks: successfulTasks,
      per_token_gco2e: nullableRound(sciPerUnit({ operationalGCo2e: t.locG, embodiedGCo2e: embodiedG, functionalUnits: allUsage.completionTokens })),
      per_1k_tokens_gco2e: nullableRound(
        sciPerUnit({ operationalGCo2e: t.locG, embodiedGCo2e: embodiedG, functionalUnits: allUsage.completionTokens / 1000 }),
      ),
      per_task_gco2e: nullableRound(sciPerUnit({ operationalGCo2e: t.locG, embodiedGCo2e: embodiedG, functionalUnits: successfulTasks })),
    };

    const tokenDims = tokenCounts ? TOKEN_DIMENSIONS_OF_TOKEN_COUNTS : null;
    const unallocated = { fullyLoadedJ: t.unallocated, locationG: t.unallocatedLocG, marketG: t.unallocatedMktG };
    const breakdowns = breakdownRows(usage, monthFacility, unallocated, tokenCounts, tokenDims, monthsOf(period));
    const cross = crossRows(usage, tokenCounts !== null);
    const series = seriesOf(usage.dailyByTier, dailyOverhead);

    const notes: string[] = [...(input.sourceNotes ?? [])];
    if (simulated) {
      notes.push(
        `SIMULATED: ${kwh(q.simulated)} kWh of measured GPU energy and ${kwh(simulatedAttributedJ)} kWh of attributed energy come from the simulator; they are not measurements.`,
      );
    }
    if (q.estimated > 0) {
      notes.push(
        `${kwh(q.estimated)} kWh (${percent(q.estimated, t.measured)} of the GPU energy) is estimated, not measured: ` +
          'integrated or carried over gaps between samples, counter resets and missing readings.',
      );
    }
    if (q.hostEstimated > 0) notes.push(`${kwh(q.hostEstimated)} kWh of host energy is a configured overhead estimate (no RAPL reading).`);
    if (location.filledHours > 0) notes.push(`${location.filledHours} hour(s) of grid intensity were filled by policy "${carbon.intensityFill}".`);
    if (market.remainder === 'location-average' && market.coveredShare.min < 1) {
      notes.push('Market-based: no supplier rate or residual mix configured; the uncovered share uses the location-based grid average (disclosed in factors).');
    }
    if (usageOutsideMeasuredHours > 0) {
      notes.push(
        `${usageOutsideMeasuredHours} node-hour(s) have attributed usage but no measured energy rows; their attributed energy is in the breakdowns ` +
          'but not in measured totals, with no fully loaded energy or emissions (those are counted in the hours the energy was measured).',
      );
    }
    const drawnFrom = input.usageByDrawnHourFromMs ?? Number.NEGATIVE_INFINITY;
    if ([...usageJ.values()].some((hours) => [...hours.keys()].some((hour) => hour < drawnFrom))) {
      const since = Number.isFinite(drawnFrom) ? `before ${isoHour(drawnFrom)} ` : '';
      notes.push(
        `Usage ${since}was written by a tokenwatt agent before ledger schema 7, which booked each request's energy whole in the hour it ended: ` +
          'the fully loaded share of a request that ran across an hour boundary comes from the hour it ended, and the earlier hour\'s share of its energy is unallocated.',
      );
    }
    notes.push(...reservedValueNotes(usage));
    if (!coverageKnown) {
      notes.push(`${coveredTimeKnown ? 'Gap' : 'Sample coverage, gap'} and counter-reset counts are not available from this data source.`);
    }
    if (input.taskEnergyKnown === false) notes.push('Task energy is not available from this data source: task counts only.');

    const hoursInPeriod = periodHours(period);
    const expectedGpuHours = embodied.gpuCount * hoursInPeriod;
    const quality: EsgQuality = {
      hours_in_period: hoursInPeriod,
      hours_with_data: hoursWithData.size,
      expected_gpu_hours: expectedGpuHours,
      covered_gpu_hours: coveredTimeKnown ? round(q.covered / HOUR) : null,
      sample_coverage: coveredTimeKnown ? ratio(q.covered / HOUR, expectedGpuHours) : null,
      estimated_energy_kwh: kwh(q.estimated),
      estimated_share: ratio(q.estimated, t.measured),
      estimated_intervals: coverageKnown ? q.gaps : null,
      counter_resets: coverageKnown ? q.resets : null,
      late_records: Math.round(q.late),
      rejected_records: Math.round(q.rejected),
      sample_errors: Math.round(q.sampleErrors),
      host_estimated_energy_kwh: kwh(q.hostEstimated),
      host_estimated_share: ratio(q.hostEstimated, t.host),
      simulated_energy_kwh: kwh(Math.max(q.simulated, simulatedAttributedJ)),
      simulated_share: ratio(Math.max(q.simulated, simulatedAttributedJ), Math.max(t.measured, t.static + t.dynamic)) ?? 0,
      intensity_filled_hours: location.filledHours,
      notes,
    };

    const factors: EsgFactor[] = [
      location.provenance,
      ...market.provenance,
      pueFactor(carbon, pue),
      embodiedFactor('embodied-gpu', carbon.embodied.gpuKgCo2e, 'kgCO2e per GPU', carbon),
      embodiedFactor('embodied-host', carbon.embodied.hostKgCo2e, 'kgCO2e per host (without GPUs)', carbon),
      ...offsetIds(carbon.offsets).map<FactorProvenance>(({ offset: o, id }) => ({
        role: OFFSET_ROLE,
        id,
        value: o.kgCo2e,
        unit: 'kgCO2e',
        source: o.source,
        year: null,
        basis: null,
        note: o.description,
      })),
    ].map((f) => ({ ...f, nodes }));

    const label = period.label;
    const title = `${simulated ? 'SIMULATED DATA (not a measurement): ' : ''}tokenwatt ESG report ${label}${carbon.site ? `, ${carbon.site}` : ''} (${nodes.length === 1 ? `node ${nodes[0]}` : `${nodes.length} nodes`})`;
    const withoutHash: Omit<EsgReport, 'content_sha256'> = {
      schema: ESG_REPORT_SCHEMA_ID,
      title,
      simulated,
      data_source: dataSource,
      period: { from: isoHour(period.fromMs), to: isoHour(period.toMs), label, hours: hoursInPeriod },
      nodes,
      totals,
      sci,
      breakdowns,
      cross,
      series,
      tasks: tasksSection(tasks.all, tasks.byTier, input.taskEnergyKnown ?? true),
      quality,
      coverage: coverageOf(period, byNode, gpuHours),
      factors,
      methodology: methodology(dataSource),
      inputs: { carbon_config: carbon, data: dataSource === 'ledger' ? 'tokenwatt ledger hourly rollups' : 'Prometheus HTTP API (query_range, increase over 1 h steps)' },
      tool: { name: 'tokenwatt', version: input.toolVersion },
      generated_at: input.generatedAt,
    };
    return { ...withoutHash, content_sha256: contentSha256(withoutHash) };
  }
}

const hasData = (h: NodeHour): boolean => h.hasGpuData || h.hasHostData;
const nullableRound = (x: number | null): number | null => (x === null ? null : round(x));

function locationSpecOf(carbon: CarbonConfig, file: EsgReportInput['intensityFile']): LocationIntensitySpec {
  if (carbon.region !== undefined) return { kind: 'region', region: carbon.region };
  if (carbon.intensityGPerKwh !== undefined) {
    return { kind: 'constant', gCo2ePerKwh: carbon.intensityGPerKwh, source: carbon.intensitySource ?? 'configured', year: carbon.intensityYear ?? null };
  }
  if (carbon.intensityFile !== undefined) {
    if (!file) throw new CarbonInputError('carbon.intensityFile', `${carbon.intensityFile} was not loaded`);
    return { kind: 'hourly', series: file.series, fill: carbon.intensityFill, fileName: file.name, fileSha256: file.sha256 };
  }
  throw new CarbonInputError(
    'carbon',
    'no grid intensity configured: set carbon.region (e.g. "FR", "egrid:CAMX", "aws:us-east-1"), ' +
      'carbon.intensityGPerKwh with carbon.intensitySource, or carbon.intensityFile',
  );
}

/**
 * SCI embodied emissions with the time each piece of hardware was observed as its time reserved:
 * a GPU's sample-covered time (at most the hour in each hour), a host's the most covered of its
 * GPUs in each hour (a whole hour when it reported host energy and no GPU). An agent running for
 * part of an hour reserves that part, not the hour.
 */
function embodiedOf(
  carbon: CarbonConfig,
  byNode: ReadonlyMap<string, ReadonlyMap<number, NodeHour>>,
  coveredByGpu: ReadonlyMap<string, ReadonlyMap<number, number>>,
): { gpuKg: number; hostKg: number; gpuCount: number; gpuHours: number; hostHours: number } {
  const e = carbon.embodied;
  let gpuKg = 0;
  let hostKg = 0;
  let allGpuHours = 0;
  let hostHours = 0;
  // GPUs by UUID, whatever node name they were reported under.
  for (const hours of coveredByGpu.values()) {
    let ms = 0;
    for (const covered of hours.values()) ms += Math.min(HOUR, covered);
    allGpuHours += ms / HOUR;
    gpuKg += embodiedKgCo2e({ totalKgCo2e: e.gpuKgCo2e, reservedHours: ms / HOUR, lifespanYears: e.lifespanYears, reservedShare: e.reservedShare });
  }
  const gpuCount = coveredByGpu.size;
  for (const hours of byNode.values()) {
    let ms = 0;
    for (const h of hours.values()) if (hasData(h)) ms += h.hasGpuData ? Math.min(HOUR, h.maxGpuCoveredMs) : HOUR;
    hostHours += ms / HOUR;
    hostKg += embodiedKgCo2e({ totalKgCo2e: e.hostKgCo2e, reservedHours: ms / HOUR, lifespanYears: e.lifespanYears, reservedShare: e.reservedShare });
  }
  return { gpuKg, hostKg, gpuCount, gpuHours: allGpuHours, hostHours };
}

function pueFactor(carbon: CarbonConfig, pue: number): FactorProvenance {
  const isDefault = carbon.pueSource === undefined && pue === DEFAULT_PUE;
  return {
    role: 'pue',
    id: carbon.site ?? 'site',
    value: pue,
    unit: 'facility energy / IT energy',
    source: carbon.pueSource ?? (isDefault ? DEFAULT_PUE_SOURCE : 'configured by the operator (carbon.pue)'),
    year: null,
    basis: null,
    note: isDefault ? `${DEFAULT_FACTOR_NOTE}, not a measurement of this site` : null,
  };
}

function embodiedFactor(role: string, value: number, unit: string, carbon: CarbonConfig): FactorProvenance {
  const e = carbon.embodied;
  const isDefault = e.source === DEFAULT_EMBODIED.source;
  return {
    role,
    id: role,
    value,
    unit,
    source: e.source,
    year: null,
    basis: null,
    note:
      `${isDefault ? `${DEFAULT_FACTOR_NOTE} (literature estimate, not this hardware's own figure); ` : ''}` +
      `lifespan ${e.lifespanYears} years, reserved share ${e.reservedShare}; M = TE x (hours observed / lifespan hours) x share`,
  };
}

/** "12.5%" of a whole, for notes. */
const percent = (part: number, whole: number): string => `${round(whole > 0 ? (part / whole) * 100 : 0)}%`;

interface TokenSums {
  all: UsageSums;
  byTier: Map<string, UsageSums>;
  byModel: Map<string, UsageSums>;
  byMonth: Map<string, UsageSums>;
}

function sumTokenCounts(period: ReportPeriod, rows: Iterable<TokenCountRow>): TokenSums {
  const s: TokenSums = { all: emptySums(), byTier: new Map(), byModel: new Map(), byMonth: new Map() };
  const into = (map: Map<string, UsageSums>, key: string): UsageSums => {
    let v = map.get(key);
    if (!v) map.set(key, (v = emptySums()));
    return v;
  };
  for (const r of rows) {
    if (r.hourStartMs < period.fromMs || r.hourStartMs >= period.toMs) continue;
    for (const target of [s.all, into(s.byTier, r.tier), into(s.byModel, r.model), into(s.byMonth, monthOf(r.hourStartMs))]) {
      target.requests += r.requests;
      target.promptTokens += r.promptTokens;
      target.cachedTokens += r.cachedTokens;
      target.completionTokens += r.completionTokens;
      target.reasoningTokens += r.reasoningTokens;
    }
  }
  return s;
}

function copyTokens(into: UsageSums, from: UsageSums | undefined): void {
  into.requests = from?.requests ?? 0;
  into.promptTokens = from?.promptTokens ?? 0;
  into.cachedTokens = from?.cachedTokens ?? 0;
  into.completionTokens = from?.completionTokens ?? 0;
  into.reasoningTokens = from?.reasoningTokens ?? 0;
}

const COMBO_DIMENSIONS: readonly (readonly [BreakdownDimension, (c: { model: string; tier: string; cacheBucket: string; batchBucket: string; team: string; feature: string }) => string])[] = [
  ['tier', (c) => c.tier],
  ['model', (c) => c.model],
  ['team', (c) => labelKey(c.team)],
  ['feature', (c) => labelKey(c.feature)],
  ['cache_bucket', (c) => c.cacheBucket],
  ['batch_bucket', (c) => c.batchBucket],
];

function breakdownRows(
  usage: ReturnType<typeof aggregateUsage>,
  monthFacility: ReadonlyMap<string, { facilityJ: number; locG: number; mktG: number }>,
  unallocated: Pick<UsageSums, 'fullyLoadedJ' | 'locationG' | 'marketG'>,
  tokenCounts: TokenSums | null,
  tokenDims: readonly BreakdownDimension[] | null,
  periodMonths: readonly string[],
): EsgBreakdownRow[] {
  const rows: EsgBreakdownRow[] = [];
  for (const [by, keyOf] of COMBO_DIMENSIONS) {
    const groups = new Map<string, UsageSums>();
    for (const c of usage.combos.values()) {
      const key = keyOf(c);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = emptySums()));
      addSums(g, c);
    }
    if (tokenCounts && by === 'tier') for (const [k, v] of groups) copyTokens(v, tokenCounts.byTier.get(k));
    if (tokenCounts && by === 'model') for (const [k, v] of groups) copyTokens(v, tokenCounts.byModel.get(k));
    const tokensKnown = tokenDims === null || tokenDims.includes(by);
    for (const key of [...groups.keys()].sort()) rows.push(breakdownRow(by, key, groups.get(key) ?? emptySums(), tokensKnown));
    // The facility energy of hours without attributed usage, so that each dimension adds up to the totals.
    if (unallocated.fullyLoadedJ > 0) rows.push(breakdownRow(by, UNALLOCATED_KEY, { ...emptySums(), ...unallocated }, tokensKnown));
  }
  // Every month of the period gets a row, zero where there was no data (a gap is visible, not absent).
  const months = new Set([...periodMonths, ...usage.months.keys(), ...monthFacility.keys()]);
  for (const month of [...months].sort()) {
    const sums = { ...(usage.months.get(month) ?? emptySums()) };
    if (tokenCounts) copyTokens(sums, tokenCounts.byMonth.get(month));
    // A month's fully loaded energy is all facility energy in it, unallocated hours included,
    // so the month rows add up to the totals.
    const facility = monthFacility.get(month) ?? { facilityJ: 0, locG: 0, mktG: 0 };
    sums.fullyLoadedJ = facility.facilityJ;
    sums.locationG = facility.locG;
    sums.marketG = facility.mktG;
    rows.push(breakdownRow('month', month, sums, true));
  }
  return rows;
}

/** YYYY-MM of every month the period overlaps. */
function monthsOf(period: ReportPeriod): string[] {
  const out: string[] = [];
  const start = new Date(period.fromMs);
  for (let y = start.getUTCFullYear(), m = start.getUTCMonth(); Date.UTC(y, m, 1) < period.toMs; m += 1) {
    if (m === 12) {
      m = 0;
      y += 1;
    }
    out.push(monthOf(Date.UTC(y, m, 1)));
  }
  return out;
}

function breakdownRow(by: BreakdownDimension, key: string, s: UsageSums, tokensKnown: boolean): EsgBreakdownRow {
  return {
    by,
    key,
    requests: tokensKnown ? Math.round(s.requests) : null,
    prompt_tokens: tokensKnown ? Math.round(s.promptTokens) : null,
    cached_tokens: tokensKnown ? Math.round(s.cachedTokens) : null,
    completion_tokens: tokensKnown ? Math.round(s.completionTokens) : null,
    attributed_energy_kwh: kwh(s.attributedJ),
    fully_loaded_energy_kwh: kwh(s.fullyLoadedJ),
    j_per_output_token: tokensKnown ? ratio(s.attributedJ, s.completionTokens) : null,
    j_per_output_token_fully_loaded: tokensKnown ? ratio(s.fullyLoadedJ, s.completionTokens) : null,
    emissions_location_kgco2e: kg(s.locationG),
    emissions_market_kgco2e: kg(s.marketG),
    simulated_energy_kwh: kwh(s.simulatedJ),
  };
}

function crossRows(usage: ReturnType<typeof aggregateUsage>, tokensUnknown: boolean): EsgCrossRow[] {
  const groups = new Map<string, { tier: string; batch: string; cache: string; tokens: number; j: number }>();
  for (const c of usage.combos.values()) {
    const key = `${c.tier}\u0001${c.batchBucket}\u0001${c.cacheBucket}`;
    const g = groups.get(key) ?? { tier: c.tier, batch: c.batchBucket, cache: c.cacheBucket, tokens: 0, j: 0 };
    g.tokens += c.completionTokens;
    g.j += c.attributedJ;
    groups.set(key, g);
  }
  return [...groups.values()]
    .sort((a, b) => a.tier.localeCompare(b.tier) || a.batch.localeCompare(b.batch) || a.cache.localeCompare(b.cache))
    .map((g) => ({
      tier: g.tier,
      batch_bucket: g.batch,
      cache_bucket: g.cache,
      completion_tokens: tokensUnknown ? null : Math.round(g.tokens),
      attributed_energy_kwh: kwh(g.j),
      j_per_output_token: tokensUnknown ? null : ratio(g.j, g.tokens),
    }));
}

function seriesOf(
  dailyByTier: ReadonlyMap<string, ReadonlyMap<string, number>>,
  overhead: ReadonlyMap<string, { idle: number; unattributed: number; host: number }>,
): EsgSeries {
  const byTier: { day: string; tier: string; attributed_energy_kwh: number }[] = [];
  for (const day of [...dailyByTier.keys()].sort()) {
    const tiers = dailyByTier.get(day) ?? new Map<string, number>();
    for (const tier of [...tiers.keys()].sort()) byTier.push({ day, tier, attributed_energy_kwh: kwh(tiers.get(tier) ?? 0) });
  }
  return {
    daily_by_tier: byTier,
    daily_overhead: [...overhead.keys()].sort().map((day) => {
      const o = overhead.get(day) ?? { idle: 0, unattributed: 0, host: 0 };
      return { day, idle_energy_kwh: kwh(o.idle), unattributed_energy_kwh: kwh(o.unattributed), host_energy_kwh: kwh(o.host) };
    }),
  };
}

function coverageOf(
  period: ReportPeriod,
  byNode: ReadonlyMap<string, ReadonlyMap<number, NodeHour>>,
  gpuHours: ReadonlyMap<string, ReadonlyMap<string, number>>,
): EsgCoverage {
  const nodes = [...byNode.keys()].sort().map((node) => {
    const hours = byNode.get(node) ?? new Map<number, NodeHour>();
    const missing: { from: string; to: string; hours: number }[] = [];
    let runStart: number | null = null;
    let withData = 0;
    for (let hour = period.fromMs; hour <= period.toMs; hour += HOUR) {
      const h = hour < period.toMs ? hours.get(hour) : undefined;
      const present = hour < period.toMs && h !== undefined && hasData(h);
      if (present) withData += 1;
      if (!present && hour < period.toMs && runStart === null) runStart = hour;
      if ((present || hour === period.toMs) && runStart !== null) {
        missing.push({ from: isoHour(runStart), to: isoHour(hour), hours: (hour - runStart) / HOUR });
        runStart = null;
      }
    }
    return { node, gpus: gpuHours.get(node)?.size ?? 0, hours_with_data: withData, missing_hours: missing };
  });
  return { nodes, sources: [], duplicates_ignored: [] };
}

/**
 * Usage whose model, tier, team or feature is one of the report's own row keys: refused at ingest
 * and in the config now, but a ledger (or an agent's series) from before may hold it. Said, so a
 * reader does not take such a row for the report's own.
 */
function reservedValueNotes(usage: UsageAggregate): string[] {
  const found = new Set<string>();
  for (const c of usage.combos.values()) {
    for (const [by, value] of [['model', c.model], ['tier', c.tier], ['team', c.team], ['feature', c.feature]] as const) {
      if (value === UNALLOCATED_KEY || (value === NO_LABEL_KEY && (by === 'team' || by === 'feature'))) found.add(`${by}\u0001${value}`);
    }
  }
  return [...found].sort().map((key) => {
    const [by, value] = key.split('\u0001') as [string, string];
    const where =
      value === UNALLOCATED_KEY
        ? `its row has the key of the report's row of unallocated facility energy (the one with attributed energy is the ${by})`
        : `it is counted in the row of requests without a ${by}`;
    return `Usage recorded before tokenwatt refused the value has ${by} ${JSON.stringify(value)}: ${where}.`;
  });
}

/** Usage rows as node-hour totals of their attributed energy. */
function* usageTotalsOf(usage: Iterable<HourlyUsageRow>): Generator<UsageNodeHourTotal> {
  for (const r of usage) yield { hourStartMs: r.hourStartMs, node: r.node, attributedJ: r.staticJ + r.dynamicJ };
}

/** Node -> hour -> attributed joules of the usage in the period. */
function usageByNodeHour(period: ReportPeriod, totals: Iterable<UsageNodeHourTotal>): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const u of totals) {
    if (u.hourStartMs < period.fromMs || u.hourStartMs >= period.toMs) continue;
    let hours = out.get(u.node);
    if (!hours) out.set(u.node, (hours = new Map()));
    hours.set(u.hourStartMs, (hours.get(u.hourStartMs) ?? 0) + u.attributedJ);
  }
  return out;
}

/**
 * Offsets with ids from their content (a short hash of amount, source and description; "#2", "#3"
 * for the same purchase listed again), so that a fleet report matches them across nodes whatever
 * their positions in each node's list.
 */
function offsetIds(offsets: CarbonConfig['offsets']): { offset: CarbonConfig['offsets'][number]; id: string }[] {
  const seen = new Map<string, number>();
  return offsets.map((offset) => {
    const hash = createHash('sha256').update(canonicalJson([offset.kgCo2e, offset.source, offset.description])).digest('hex').slice(0, 12);
    const n = (seen.get(hash) ?? 0) + 1;
    seen.set(hash, n);
    return { offset, id: `offset:${hash}${n > 1 ? `#${n}` : ''}` };
  });
}
