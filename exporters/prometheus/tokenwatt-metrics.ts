import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { finishGzipMember } from './gzip-member.js';
import { IncrementalExposition, type ExpositionSnapshot } from './incremental-exposition.js';
import { LabelCapper, OTHER_LABEL_VALUE } from './label-capper.js';
import { userLabelNameProblems } from './label-names.js';
import { METRIC_CATALOG, type MetricSpec } from './metric-catalog.js';
import { taskCloseIncrements, type TaskClose } from '../../model/task-counters.js';

/** A request whose energy is final, as the settler hands it over (structural: model/request-result fits). */
export interface FinalizedRequestMetrics {
  readonly model: string;
  readonly tier: string;
  readonly status: string;
  readonly cacheBucket: string;
  readonly batchBucket: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly staticJ: number;
  readonly dynamicJ: number;
  /** staticJ + dynamicJ. */
  readonly joules: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
}

/** A task that is closed (no more requests expected): the settler's close, as model/task-counters.ts defines it. */
export type FinalizedTaskMetrics = TaskClose;

/** What /metrics shows about the power source (structural: PowerSourceQuality fits). */
export interface PowerSourceInfo {
  readonly kind: string;
  readonly energyCounter: boolean;
  readonly powerAveraged: boolean;
  readonly simulated: boolean;
}

/** Ledger totals to start the counters from after a restart (structural: the ledger's CounterTotals fits). */
/** How far above the ledger's sums joule counters are seeded (see {@link TokenwattMetrics.seed}). */
export const SEED_JOULES_MARGIN = 1e-9;

export interface MetricsSeed {
  readonly gpus: readonly {
    readonly gpuUuid: string;
    readonly gpuIndex: number | null;
    readonly measuredJ: number;
    readonly idleJ: number;
    readonly unattributedJ: number;
    readonly estimatedJ: number;
    /** Sample-covered time of the settled periods (tokenwatt_gpu_covered_seconds_total). */
    readonly coveredMs?: number;
    readonly simulated: boolean;
  }[];
  /** Host energy by kind: RAPL (measured) and a configured overhead (estimated). */
  readonly hostByKind?: { readonly measuredJ: number; readonly estimatedJ: number };
  /** The part of hostByKind counted while the GPU power source was simulated (absent: none). */
  readonly hostSimulated?: { readonly measuredJ: number; readonly estimatedJ: number };
  readonly usage: readonly {
    readonly model: string;
    readonly tier: string;
    readonly cacheBucket: string;
    readonly batchBucket: string;
    readonly status: string;
    /** The ledger keeps team and feature; other user labels come from `labels` when given. */
    readonly team: string;
    readonly feature: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly requests: number;
    readonly promptTokens: number;
    readonly cachedTokens: number;
    readonly completionTokens: number;
    readonly reasoningTokens: number;
    readonly staticJ: number;
    readonly dynamicJ: number;
    readonly simulated: boolean;
  }[];
  /**
   * Records counted so far: late ones, settled and still waiting (the metric counts them at
   * ingest), those stored in time and duplicates acknowledged.
   */
  readonly quality?: { readonly lateRecords: number; readonly acceptedRecords?: number; readonly duplicateRecords?: number };
  /** tokenwatt_tasks_total by series, as counted (tier as exported: already capped). */
  readonly taskSeries?: readonly { readonly tier: string; readonly succeeded: boolean; readonly simulated: boolean; readonly count: number }[];
  /** tokenwatt_waste_energy_joules_total by series, as counted (tier and reason as exported). */
  readonly wasteSeries?: readonly { readonly tier: string; readonly reason: string; readonly simulated: boolean; readonly joules: number }[];
}

export interface TokenwattMetricsOptions {
  /** Request labels copied onto tokenwatt_energy_joules_total (default team, feature). */
  readonly userLabels?: readonly string[];
  /** Distinct values kept per label before folding into "(other)" (default 50). */
  readonly labelCap?: number;
  /** Share one capper with the ledger rollups so both fold the same values (overrides labelCap). */
  readonly capper?: LabelCapper;
  /** The power source is simulated: every energy and power series says simulated="true". */
  readonly simulated?: boolean;
  /**
   * Label sets of tokenwatt_energy_joules_total (each is two series, static and dynamic) before
   * new user-label combinations fold into "(other)". Keeps a scrape fast whatever the traffic.
   */
  readonly maxEnergyLabelSets?: number;
  /** Also export Node.js process metrics (process_*, nodejs_*) from this registry. */
  readonly processMetrics?: boolean;
  /** Sample lines per segment of the settled text (re-encoded and re-compressed on a change; default 256). */
  readonly segmentLines?: number;
  /** The wall clock in ms, read at scrape time for tokenwatt_settle_lag_seconds (default Date.now). */
  readonly now?: () => number;
}

/** A /metrics response body: `chunks` concatenated, `byteLength` bytes, gzip-encoded or not. */
export interface MetricsBody {
  readonly encoding: 'gzip' | 'identity';
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
}

const DEFAULT_USER_LABELS = ['team', 'feature'] as const;
const DEFAULT_LABEL_CAP = 50;
const DEFAULT_MAX_ENERGY_LABEL_SETS = 5000;
const bool = (b: boolean): 'true' | 'false' => (b ? 'true' : 'false');

/**
 * tokenwatt's Prometheus metrics, in registries of their own (never prom-client's global one, so
 * tests and embedders get a clean set). The settler and ingest push figures in through the methods
 * below; a scrape only serialises what is held, it never touches hardware or the ledger.
 *
 * Scrape cost: the settled figures (energy, tokens, requests, tasks, histograms: nearly all the
 * series, up to the label caps) change only when a period is settled, so their exposition is
 * rendered once after each change, off the scrape path, and a scrape serves that text plus the
 * few live series (power, samples, records). A scrape therefore costs about the same at 50 or
 * 10,000 series, and it always shows whole settlements, never half of one. The render itself is
 * incremental (only the series a settlement changed are formatted again; see
 * incremental-exposition.ts), and the settled text is also kept gzip-compressed, compressed on the
 * libuv threadpool as it changes, so a gzip scrape (Prometheus asks for one) sends ~30x fewer bytes
 * and compresses only the few live series itself.
 */
export class TokenwattMetrics {
  /** Live series, rendered on every scrape; other components may register their own metrics here. */
  readonly registry = new Registry();
  /** Series that change only when a period is settled; rendered once per change. */
  private readonly settledRegistry = new Registry();
  private readonly settledExposition: IncrementalExposition;
  private settledSnapshot: ExpositionSnapshot | null = null;
  private settledDirty = true;
  private renderScheduled = false;
  private rendering: Promise<ExpositionSnapshot> | null = null;
  private readonly capper: LabelCapper;
  private readonly userLabels: readonly string[];
  private readonly simulated: 'true' | 'false';
  private readonly maxEnergyLabelSets: number;
  private readonly energyLabelSets = new Set<string>();
  /** Counters of the settled registry: changing one makes the settled text stale. */
  private readonly settledMetrics = new Set<Counter<string>>();
  private observed = false;
  private seeded = false;
  /** seed() is adding the ledger's totals, and whether any of them was above 0. */
  private seeding = false;
  private seededNonZero = false;
  /** End of the latest settlement, for the lag computed at each scrape (null: none yet). */
  private settledUntilMs: number | null = null;

  private readonly gpuPower: Gauge<string>;
  private readonly gpuEnergy: Counter<string>;
  private readonly idleEnergy: Counter<string>;
  private readonly energy: Counter<string>;
  private readonly tokens: Counter<string>;
  private readonly requests: Counter<string>;
  private readonly requestEnergy: Histogram<string>;
  private readonly taskEnergy: Histogram<string>;
  private readonly tasks: Counter<string>;
  private readonly waste: Counter<string>;
  private readonly unattributed: Counter<string>;
  private readonly estimated: Counter<string>;
  private readonly coveredTime: Counter<string>;
  private readonly hostEnergy: Counter<string>;
  private readonly samples: Counter<string>;
  private readonly sampleErrors: Counter<string>;
  private readonly captureErrors: Counter<string>;
  private readonly labelValuesLeftOut: Counter<string>;
  private readonly pueGauge: Gauge<string>;
  private readonly gridIntensity: Gauge<string>;
  private readonly records: Counter<string>;
  private readonly recordsRejectedCounter: Counter<string>;
  private readonly lateRecords: Counter<string>;
  private readonly settleLag: Gauge<string>;
  private readonly countersStart: Gauge<string>;
  /** When the counters started (construction), Unix seconds. */
  private readonly countersStartS: number;
  private readonly settledUntil: Gauge<string>;
  private readonly residual: Gauge<string>;
  private readonly pendingAttributed: Gauge<string>;
  private readonly residualTotal: Counter<string>;
  private readonly powerSourceInfo: Gauge<string>;
  private readonly buildInfo: Gauge<string>;
  private readonly labelValuesFolded: Counter<string>;
  private readonly invalidValues: Counter<string>;

  constructor(options: TokenwattMetricsOptions = {}) {
    this.userLabels = [...(options.userLabels ?? DEFAULT_USER_LABELS)];
    const problems = userLabelNameProblems(this.userLabels);
    if (problems.length > 0) {
      throw new Error(`TokenwattMetrics: bad user labels: ${problems.map((p) => (p.index === null ? p.reason : `'${this.userLabels[p.index]}' ${p.reason}`)).join('; ')}`);
    }
    this.capper = options.capper ?? new LabelCapper(options.labelCap ?? DEFAULT_LABEL_CAP);
    this.simulated = bool(options.simulated ?? false);
    this.maxEnergyLabelSets = options.maxEnergyLabelSets ?? DEFAULT_MAX_ENERGY_LABEL_SETS;
    this.settledExposition = new IncrementalExposition(this.settledRegistry, options.segmentLines === undefined ? {} : { segmentLines: options.segmentLines });

    const c = METRIC_CATALOG;
    const live = this.registry;
    const settled = this.settledRegistry;
    this.gpuPower = this.gauge(c.gpuPower, live);
    this.samples = this.counter(c.samples, live);
    this.sampleErrors = this.counter(c.sampleErrors, live);
    this.captureErrors = this.counter(c.captureErrors, live);
    this.labelValuesLeftOut = this.counter(c.labelValuesLeftOut, live);
    this.pueGauge = this.gauge(c.pue, live);
    this.gridIntensity = this.gauge(c.gridIntensity, live);
    this.records = this.counter(c.records, live);
    this.recordsRejectedCounter = this.counter(c.recordsRejected, live);
    this.lateRecords = this.counter(c.lateRecords, live);
    this.powerSourceInfo = this.gauge(c.powerSourceInfo, live);
    this.buildInfo = this.gauge(c.buildInfo, live);
    this.labelValuesFolded = this.counter(c.labelValuesFolded, live);
    this.invalidValues = this.counter(c.invalidValues, live);
    const now = options.now ?? Date.now;
    // From 0 until seed() says otherwise, before anything is served: the ESG export takes the
    // first values of a process that says it started from 0 as new counts.
    this.countersStart = this.gauge(c.countersStart, live);
    this.countersStartS = now() / 1000;
    this.countersStart.set({ seeded: 'false' }, this.countersStartS);
    // The lag is read against the clock at each scrape, so it keeps growing when settlement
    // stalls; a value set only after each settlement would freeze at its last healthy figure.
    const lastSettled = (): number | null => this.settledUntilMs;
    this.settleLag = new Gauge({
      name: c.settleLag.name, help: c.settleLag.help, labelNames: [], registers: [live],
      collect(): void {
        const until = lastSettled();
        if (until === null) return;
        this.set(Math.max(0, (now() - until) / 1000));
      },
    });
    this.gpuEnergy = this.counter(c.gpuEnergy, settled);
    this.idleEnergy = this.counter(c.idleEnergy, settled);
    this.energy = this.counter(c.energy, settled);
    this.tokens = this.counter(c.tokens, settled);
    this.requests = this.counter(c.requests, settled);
    this.requestEnergy = this.histogram(c.requestEnergy, settled);
    this.taskEnergy = this.histogram(c.taskEnergy, settled);
    this.tasks = this.counter(c.tasks, settled);
    this.waste = this.counter(c.waste, settled);
    this.unattributed = this.counter(c.unattributed, settled);
    this.estimated = this.counter(c.estimated, settled);
    this.coveredTime = this.counter(c.coveredTime, settled);
    this.hostEnergy = this.counter(c.hostEnergy, settled);
    this.settledUntil = this.gauge(c.settledUntil, settled);
    this.residual = this.gauge(c.residual, settled);
    this.pendingAttributed = this.gauge(c.pendingAttributed, settled);
    this.residualTotal = this.counter(c.residualTotal, settled);
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Content-Type of the exposition (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for GET /metrics: the settled text (re-rendered first if stale) and the live series. */
  async metrics(): Promise<string> {
    const settled = await this.currentSettled();
    return settled.text() + (await this.registry.metrics());
  }

  /**
   * The body of a scrape: the same text as metrics(), as buffers, gzip-encoded when `gzip` is set
   * (the client accepts it). The settled part's compression runs on the threadpool as soon as it
   * is rendered; a scrape that lands before it is done waits for it (the event loop stays free),
   * and falls back to plain text only if compression failed. The live series are compressed here.
   */
  async scrape(options: { readonly gzip?: boolean } = {}): Promise<MetricsBody> {
    const settled = await this.currentSettled();
    const prefix = options.gzip === true ? await settled.gzipPrefix().catch(() => null) : null;
    const live = Buffer.from(await this.registry.metrics());
    if (prefix !== null) {
      const chunks = finishGzipMember(prefix, settled.crc, settled.byteLength, live);
      let byteLength = 0;
      for (const chunk of chunks) byteLength += chunk.length;
      return { encoding: 'gzip', chunks, byteLength };
    }
    return { encoding: 'identity', chunks: [...settled.chunks, live], byteLength: settled.byteLength + live.length };
  }

  /** Resolves once the settled text shows every change made so far (renders it now if stale). */
  async rendered(): Promise<void> {
    await this.currentSettled();
  }

  // --- GPU power and measured energy -------------------------------------------------------

  setGpuPower(index: number, uuid: string, watts: number): void {
    if (!this.valid('tokenwatt_gpu_power_watts', watts)) return;
    this.gpuPower.set({ gpu: String(index), uuid, simulated: this.simulated }, watts);
  }

  /** A GPU with no recent sample: its power series goes, rather than show the last reading forever. */
  clearGpuPower(index: number, uuid: string): void {
    this.gpuPower.remove({ gpu: String(index), uuid, simulated: this.simulated });
  }

  addMeasuredEnergy(index: number, uuid: string, joules: number): void {
    this.add(this.gpuEnergy, { gpu: String(index), uuid, simulated: this.simulated }, joules);
  }

  addIdleEnergy(index: number, joules: number): void {
    this.add(this.idleEnergy, { gpu: String(index), simulated: this.simulated }, joules);
  }

  addUnattributedEnergy(index: number, joules: number): void {
    this.add(this.unattributed, { gpu: String(index), simulated: this.simulated }, joules);
  }

  addEstimatedEnergy(index: number, joules: number): void {
    this.add(this.estimated, { gpu: String(index), simulated: this.simulated }, joules);
  }

  /** Time of a settled period covered by the GPU's samples. */
  addCoveredTime(index: number, uuid: string, ms: number): void {
    this.add(this.coveredTime, { gpu: String(index), uuid }, ms / 1000);
  }

  /** Host energy (RAPL or a configured overhead, which is `estimated`). */
  addHostEnergy(source: string, joules: number, estimated: boolean): void {
    this.add(this.hostEnergy, { source: this.label('source', source), estimated: bool(estimated), simulated: this.simulated }, joules);
  }

  // --- Attribution results -----------------------------------------------------------------

  requestFinalized(r: FinalizedRequestMetrics): void {
    this.requestsFinalized([r]);
  }

  /**
   * The requests finalized by one settlement. Requests with the same labels are summed first, so
   * each counter moves once per label set rather than once per request (prom-client hashes and
   * validates the labels on every increment); the histogram still sees every request.
   */
  requestsFinalized(results: readonly FinalizedRequestMetrics[]): void {
    type Group = { first: FinalizedRequestMetrics; requests: number; staticJ: number; dynamicJ: number; promptTokens: number; cachedTokens: number; completionTokens: number; reasoningTokens: number };
    const groups = new Map<string, Group>();
    for (const r of results) {
      let key = `${r.model}\u0000${r.tier}\u0000${r.status}\u0000${r.cacheBucket}\u0000${r.batchBucket}`;
      for (const name of this.userLabels) key += `\u0000${r.labels[name] ?? ''}`;
      let g = groups.get(key);
      if (!g) {
        g = { first: r, requests: 0, staticJ: 0, dynamicJ: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0, reasoningTokens: 0 };
        groups.set(key, g);
      }
      g.requests += 1;
      g.staticJ += r.staticJ;
      g.dynamicJ += r.dynamicJ;
      g.promptTokens += r.promptTokens;
      g.cachedTokens += r.cachedTokens;
      g.completionTokens += r.completionTokens;
      g.reasoningTokens += r.reasoningTokens;
      this.observe(this.requestEnergy, { tier: this.label('tier', r.tier), simulated: this.simulated }, r.joules);
    }
    for (const g of groups.values()) {
      const { first, requests, ...sums } = g;
      this.addUsage({ ...first, ...sums }, requests, this.simulated);
    }
  }

  /** A closed task: its energy histogram, its count, and the energy that produced no result. */
  taskFinalized(t: FinalizedTaskMetrics): void {
    // The increments the settler also writes to the ledger with the settlement that closed the task.
    const inc = taskCloseIncrements(t, (name, value) => this.label(name, value), this.simulated === 'true');
    const succeeded = bool(t.succeeded);
    if (inc.task !== null) this.add(this.tasks, { tier: inc.tier, succeeded, simulated: this.simulated }, inc.task.count);
    if (!t.continued || t.joules > 0) this.observe(this.taskEnergy, { tier: inc.tier, succeeded, simulated: this.simulated }, t.joules);
    for (const w of inc.waste) this.add(this.waste, { tier: w.tier, reason: w.reason, simulated: this.simulated }, w.joules);
  }

  // --- Agent health ------------------------------------------------------------------------

  sampleTaken(gpuIndex: number, n: number): void {
    this.add(this.samples, { gpu: String(gpuIndex) }, n);
  }

  sampleError(reason: string): void {
    this.add(this.sampleErrors, { reason: this.label('sample_error_reason', reason) }, 1);
  }

  /** Carbon factors in force: PUE always, grid intensity when known (null clears it). */
  setCarbonFactors(site: string, pue: number, intensity: { gPerKwh: number; factor: string } | null): void {
    this.pueGauge.reset();
    this.pueGauge.set({ site }, pue);
    this.gridIntensity.reset();
    // Base units: grams per joule (1 kWh = 3.6e6 J).
    if (intensity) this.gridIntensity.set({ basis: 'location', factor: intensity.factor }, intensity.gPerKwh / 3.6e6);
  }

  /** A request-capture problem (proxy, engine-metrics, otlp). */
  captureError(source: string): void {
    this.add(this.captureErrors, { source: this.label('source', source) }, 1);
  }

  /** A task or label value a capture source left out of a record it kept (proxy, otlp), by record field. */
  labelValueLeftOut(source: string, field: string): void {
    // Field names come from the config (the labels mapped to headers or attributes), so are bounded; capped all the same.
    this.add(this.labelValuesLeftOut, { source: this.label('source', source), label: this.label('left_out_label', field) }, 1);
  }

  /** Records stored in time (late ones are counted by {@link recordsLate} only). */
  recordsAccepted(n: number): void {
    this.add(this.records, { result: 'accepted' }, n);
  }

  recordsDuplicate(n: number): void {
    this.add(this.records, { result: 'duplicate' }, n);
  }

  /** Records kept although their period was already settled. */
  recordsLate(n: number): void {
    this.add(this.records, { result: 'late' }, n);
    this.add(this.lateRecords, {}, n);
  }

  recordsRejected(reason: string, n: number): void {
    this.add(this.recordsRejectedCounter, { reason: this.label('rejected_reason', reason) }, n);
  }

  /**
   * After a settlement: how far it trails the clock, and the conservation self-check. `residualJ`
   * is the residual of each GPU in the period (or the largest one, as a single number).
   */
  settled(settledUntilMs: number, residualJ: number | readonly number[]): void {
    this.settledChanged();
    this.settledUntil.set(settledUntilMs / 1000);
    this.settledUntilMs = settledUntilMs;
    const residuals = (typeof residualJ === 'number' ? [residualJ] : residualJ).map(Math.abs);
    if (!residuals.every(Number.isFinite)) {
      this.invalidValues.inc({ metric: 'tokenwatt_conservation_residual_joules' });
      return;
    }
    // None given (the edge moved without a settlement here): the last period's gauge stands.
    if (residuals.length > 0) this.residual.set(residuals.reduce((a, b) => Math.max(a, b), 0));
    this.add(this.residualTotal, {}, residuals.reduce((a, b) => a + b, 0));
  }

  /** Energy attributed so far to requests that are not final yet (set after each settlement). */
  setPendingAttributedEnergy(joules: number): void {
    if (!(Number.isFinite(joules) && joules >= 0)) {
      this.invalidValues.inc({ metric: 'tokenwatt_pending_attributed_energy_joules' });
      return;
    }
    this.settledChanged();
    this.pendingAttributed.set({ simulated: this.simulated }, joules);
  }

  setPowerSourceInfo(info: PowerSourceInfo): void {
    this.powerSourceInfo.reset();
    this.powerSourceInfo.set(
      { kind: info.kind, energy_counter: bool(info.energyCounter), power_averaged: bool(info.powerAveraged), simulated: bool(info.simulated) },
      1,
    );
  }

  setBuildInfo(version: string, nodeVersion: string): void {
    this.buildInfo.reset();
    this.buildInfo.set({ version, node_version: nodeVersion }, 1);
  }

  /**
   * Start the counters from the ledger's totals, so a restart does not look like a counter reset
   * for the energy already settled. Histograms cannot be rebuilt from totals and start empty.
   * Call once, before anything is counted: seeding later would count twice. Once a total above 0
   * is seeded, tokenwatt_counters_start_timestamp_seconds says seeded="true".
   */
  seed(totals: MetricsSeed): void {
    if (this.seeded || this.observed) throw new Error('TokenwattMetrics.seed: call it once, before anything is counted');
    this.seeded = true;
    // The previous process added the same joules request by request; the ledger's sums add them
    // in another order, which can come out a few units in the last place lower, and Prometheus
    // reads any decrease as a counter reset (a spike in rate()). So joules are seeded a hair above
    // the ledger's sum: 1e-9 of it, far below any measurement's precision. Counts are exact.
    const above = (joules: number): number => joules + Math.abs(joules) * SEED_JOULES_MARGIN;
    this.seeding = true;
    try {
      this.seedCounters(totals, above);
    } finally {
      this.seeding = false;
    }
    if (this.seededNonZero) {
      this.countersStart.reset();
      this.countersStart.set({ seeded: 'true' }, this.countersStartS);
    }
  }

  private seedCounters(totals: MetricsSeed, above: (joules: number) => number): void {
    for (const g of totals.gpus) {
      const gpu = g.gpuIndex === null ? '' : String(g.gpuIndex);
      const simulated = bool(g.simulated);
      this.add(this.gpuEnergy, { gpu, uuid: g.gpuUuid, simulated }, above(g.measuredJ));
      this.add(this.idleEnergy, { gpu, simulated }, above(g.idleJ));
      if (g.unattributedJ > 0) this.add(this.unattributed, { gpu, simulated }, above(g.unattributedJ));
      if (g.estimatedJ > 0) this.add(this.estimated, { gpu, simulated }, above(g.estimatedJ));
      if (g.coveredMs !== undefined && g.coveredMs > 0) this.add(this.coveredTime, { gpu, uuid: g.gpuUuid }, above(g.coveredMs / 1000));
    }
    // The ledger keeps whether host energy was estimated, which is which source gave it: RAPL
    // measures, a configured overhead estimates; and which part was counted while the GPUs were
    // simulated. Each series goes on from what was counted under its own labels, so measured
    // energy after a simulated run on the same ledger is never labelled simulated, nor the reverse.
    const host = totals.hostByKind;
    if (host) {
      const sim = totals.hostSimulated ?? { measuredJ: 0, estimatedJ: 0 };
      const hostSeed = (source: string, estimated: 'true' | 'false', totalJ: number, simulatedJ: number): void => {
        const label = this.label('source', source);
        if (totalJ - simulatedJ > 0) this.add(this.hostEnergy, { source: label, estimated, simulated: 'false' }, above(totalJ - simulatedJ));
        if (simulatedJ > 0) this.add(this.hostEnergy, { source: label, estimated, simulated: 'true' }, above(simulatedJ));
      };
      hostSeed('rapl', 'false', host.measuredJ, sim.measuredJ);
      hostSeed('configured', 'true', host.estimatedJ, sim.estimatedJ);
    }
    for (const row of totals.usage) {
      const labels: Record<string, string> = { team: row.team, feature: row.feature, ...row.labels };
      this.addUsage({ ...row, staticJ: above(row.staticJ), dynamicJ: above(row.dynamicJ), labels }, row.requests, bool(row.simulated));
    }
    // Stored as exported: the values go back as they are, not through the cap again, which would
    // take a slot for a reason ("attempt") or fold a tier that kept its name when it was counted.
    for (const t of totals.taskSeries ?? []) this.add(this.tasks, { tier: t.tier, succeeded: bool(t.succeeded), simulated: bool(t.simulated) }, t.count);
    for (const w of totals.wasteSeries ?? []) this.add(this.waste, { tier: w.tier, reason: w.reason, simulated: bool(w.simulated) }, above(w.joules));
    const quality = totals.quality;
    if (quality) {
      if (quality.lateRecords > 0) this.recordsLate(quality.lateRecords);
      if ((quality.acceptedRecords ?? 0) > 0) this.recordsAccepted(quality.acceptedRecords ?? 0);
      if ((quality.duplicateRecords ?? 0) > 0) this.recordsDuplicate(quality.duplicateRecords ?? 0);
    }
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * Mark the settled text stale and render it once the current synchronous work (a whole
   * settlement) is done. The Immediate is unref'd: it never keeps the process alive.
   */
  private settledChanged(): void {
    this.settledDirty = true;
    this.scheduleRender();
  }

  private scheduleRender(): void {
    if (this.renderScheduled || this.rendering) return;
    this.renderScheduled = true;
    setImmediate(() => {
      this.renderScheduled = false;
      if (this.settledDirty) this.renderSettled().catch(() => undefined);
    }).unref();
  }

  /** The settled snapshot, up to date: a render in flight may predate the latest change, so after it, render again if stale. */
  private async currentSettled(): Promise<ExpositionSnapshot> {
    if (this.rendering) await this.rendering.catch(() => undefined);
    if (this.settledDirty || this.settledSnapshot === null) return this.renderSettled();
    return this.settledSnapshot;
  }

  /**
   * Render the settled registry (incrementally). Its values are read in one synchronous pass, so
   * the render shows one consistent state. A change during the render (it yields to the event
   * loop between bounded turns of work) leaves the text dirty and schedules the next render.
   */
  private renderSettled(): Promise<ExpositionSnapshot> {
    if (this.rendering) return this.rendering;
    this.settledDirty = false;
    this.rendering = this.settledExposition
      .render()
      .then(
        (snapshot) => {
          this.rendering = null;
          this.settledSnapshot = snapshot;
          if (this.settledDirty) this.scheduleRender();
          return snapshot;
        },
        (error: unknown) => {
          // Left stale and dirty: the next scrape renders again and reports it.
          this.rendering = null;
          this.settledDirty = true;
          throw error;
        },
      );
    return this.rendering;
  }

  /**
   * Label objects are built with literals or Object.assign, never `{ ...base, extra }`: on Node 20
   * (V8 11.3), an object literal that opens with a spread of a fresh object and then adds
   * properties gets a hidden class of its own. prom-client keeps each series' labels object, so at the label cap that was
   * about 12,000 hidden classes (6 MB of the heap, marked on every full collection).
   */
  private addUsage(r: Omit<FinalizedRequestMetrics, 'joules'>, requests: number, simulated: 'true' | 'false'): void {
    const model = this.label('model', r.model);
    const tier = this.label('tier', r.tier);
    const base = { model, tier, cache_bucket: r.cacheBucket, batch_bucket: r.batchBucket, status: r.status, simulated };
    const user = this.userLabelValues(base, r.labels);
    const energyLabels = (mode: 'static' | 'dynamic'): Record<string, string> => Object.assign({}, base, user, { mode });
    this.add(this.energy, energyLabels('static'), r.staticJ);
    this.add(this.energy, energyLabels('dynamic'), r.dynamicJ);
    const tokenLabels = (kind: string): Record<string, string> => ({ model, tier, cache_bucket: r.cacheBucket, batch_bucket: r.batchBucket, simulated, kind });
    this.add(this.tokens, tokenLabels('prompt'), r.promptTokens);
    this.add(this.tokens, tokenLabels('cached'), r.cachedTokens);
    this.add(this.tokens, tokenLabels('completion'), r.completionTokens);
    this.add(this.tokens, tokenLabels('reasoning'), r.reasoningTokens);
    this.add(this.requests, { model, tier, status: r.status, simulated, ...user }, requests);
  }

  /** Capped user label values; past the series budget, new combinations fold into "(other)". */
  private userLabelValues(base: Record<string, string>, labels: Readonly<Record<string, string>>): Record<string, string> {
    const user: Record<string, string> = {};
    for (const name of this.userLabels) user[name] = this.label(name, labels[name]);
    const key = JSON.stringify([base, user]);
    if (this.energyLabelSets.has(key)) return user;
    if (this.energyLabelSets.size < this.maxEnergyLabelSets) {
      this.energyLabelSets.add(key);
      return user;
    }
    // Budget spent: fold the user labels. The folded set itself is bounded by the capped base
    // labels, so it is admitted even past the budget rather than dropping the energy.
    for (const name of this.userLabels) {
      if (user[name] !== '' && user[name] !== OTHER_LABEL_VALUE) this.labelValuesFolded.inc({ label: name, reason: 'series_cap' });
      user[name] = user[name] === '' ? '' : OTHER_LABEL_VALUE;
    }
    return user;
  }

  /**
   * A label value through the cap. `name` is the capper's key: the three `reason` labels have a
   * key each, so rejection reasons (which name record fields) cannot crowd out sample errors.
   */
  private label(name: string, value: string | undefined): string {
    const folded = this.capper.folded(name);
    const out = this.capper.value(name, value);
    if (this.capper.folded(name) > folded) this.labelValuesFolded.inc({ label: name, reason: 'value_cap' });
    return out;
  }

  private valid(metric: string, value: number): boolean {
    if (Number.isFinite(value) && value >= 0) return true;
    this.invalidValues.inc({ metric });
    return false;
  }

  /** Counters only go up: a negative or non-finite increment is refused and counted, never thrown. */
  private add(counter: Counter<string>, labels: Record<string, string>, value: number): void {
    if (!this.valid(metricName(counter), value)) return;
    this.observed = true;
    if (this.seeding && value > 0) this.seededNonZero = true;
    if (this.settledMetrics.has(counter)) this.settledChanged();
    counter.inc(labels, value);
  }

  private observe(histogram: Histogram<string>, labels: Record<string, string>, value: number): void {
    if (!this.valid(metricName(histogram), value)) return;
    this.observed = true;
    this.settledChanged();
    histogram.observe(labels, value);
  }

  private labelNames(spec: MetricSpec): string[] {
    return spec.userLabels ? [...spec.labels, ...this.userLabels] : [...spec.labels];
  }

  private counter(spec: MetricSpec, registry: Registry): Counter<string> {
    const counter = new Counter({ name: spec.name, help: spec.help, labelNames: this.labelNames(spec), registers: [registry] });
    if (registry === this.settledRegistry) this.settledMetrics.add(counter);
    return counter;
  }

  private gauge(spec: MetricSpec, registry: Registry): Gauge<string> {
    return new Gauge({ name: spec.name, help: spec.help, labelNames: this.labelNames(spec), registers: [registry] });
  }

  private histogram(spec: MetricSpec, registry: Registry): Histogram<string> {
    return new Histogram({ name: spec.name, help: spec.help, labelNames: this.labelNames(spec), buckets: [...(spec.buckets ?? [])], registers: [registry] });
  }
}

function metricName(metric: Counter<string> | Histogram<string>): string {
  return (metric as unknown as { name: string }).name;
}
