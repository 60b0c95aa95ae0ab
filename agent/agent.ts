import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../model/attribution-config.js';
import type { AttributionConfig } from '../model/attribution-types.js';
import type { GpuInfo } from '../model/power-sample.js';
import type { ResolvedRequest } from '../model/request-record.js';
import { createIngestHandler } from '../collectors/http-ingest.js';
import type { PowerSource, PowerSourceError } from '../collectors/power-source.js';
import type { RequestSource } from '../collectors/request-sink.js';
import { createHostPowerSource } from '../collectors/host/host-power-config.js';
import type { HostPowerSource } from '../collectors/host/host-power-source.js';
import { LabelCapper, serveMetrics, TokenwattMetrics } from '../exporters/prometheus/index.js';
import type { TokenwattConfig } from './config.js';
import { HttpServer, sendJson } from './http-server.js';
import { IngestService } from './ingest-service.js';
import { Ledger, type LeaseHolder } from './ledger.js';
import type { Logger } from './logger.js';
import { PeriodicTask } from './periodic-task.js';
import { NodeRecordContext, RECORD_FUTURE_SKEW_MS } from './record-context.js';
import { Settler } from './settler.js';
import { carbonGauges, type CarbonGauges } from './carbon-gauges.js';
import { VERSION } from './version.js';
import { sqliteDriverDescription } from './sqlite-driver.js';

export interface AgentOptions {
  readonly config: TokenwattConfig;
  readonly powerSource: PowerSource;
  readonly log: Logger;
  /** Extra request sources (proxy, engine-metrics scraper) started with the agent. */
  readonly requestSources?: readonly RequestSource[];
  /** Extra HTTP routes (e.g. OTLP /v1/traces) mounted on the agent's port. */
  readonly routes?: readonly { method: string; path: string; handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> | void }[];
  /** Clock, injectable for tests. */
  readonly now?: () => number;
}

/** How often the settle loop runs; periods themselves are `settlePeriod` long. */
const SETTLE_TICK_MS = 1000;
const PRUNE_TICK_MS = 15 * 60_000;

/**
 * The running agent: init (ledger, power source, inventory), run (sampling, ingest, settling,
 * /metrics), shutdown (stop sources, flush, close) — Kepler's service lifecycle. Wiring only:
 * the logic lives in model/, collectors/ and exporters/.
 */
export class Agent {
  readonly metrics: TokenwattMetrics;
  /** One capper for metrics and ledger rollups, so both fold the same values into "(other)". */
  private readonly labelCapper: LabelCapper;
  private ledger!: Ledger;
  private settler!: Settler;
  private ingest!: IngestService;
  private server!: HttpServer;
  private gpus: readonly GpuInfo[] = [];
  private context!: NodeRecordContext;
  private readonly tasks: PeriodicTask[] = [];
  private readonly now: () => number;
  private readonly sourceErrors = new Map<string, { count: number; lastMessage: string; atMs: number }>();
  private hostSource: HostPowerSource | null = null;
  private hostKind = 'none';
  private hostNote = '';
  private carbon!: CarbonGauges;
  private boundPort = 0;
  private rejectedRecords = 0;
  private lastLongRequestWarnMs = 0;
  private started = false;
  /** The agent that took this one's writer lease over (this process stalled past the stale time), if any. */
  private leaseLostTo: LeaseHolder | null = null;

  constructor(private readonly options: AgentOptions) {
    this.now = options.now ?? Date.now;
    const { config } = options;
    this.labelCapper = new LabelCapper(config.labels.cap);
    this.metrics = new TokenwattMetrics({
      capper: this.labelCapper,
      userLabels: config.labels.user,
      simulated: options.powerSource.quality().simulated,
      now: this.now,
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get inventory(): readonly GpuInfo[] {
    return this.gpus;
  }

  /** Open the ledger, discover GPUs, resume settlement state. Throws with a clear message if the agent cannot run. */
  async init(): Promise<void> {
    const { config, log, powerSource } = this.options;
    this.ledger = Ledger.open(config.db, { node: config.node, retention: config.retention });
    const takenOver = this.ledger.leaseTakenOver;
    if (takenOver) {
      log.warn(
        { db: config.db, pid: takenOver.holder.pid, host: takenOver.holder.host, lastHeartbeat: new Date(takenOver.holder.heartbeatMs).toISOString() },
        `took over the ledger's writer lease from an agent that is no longer running (${takenOver.reason})`,
      );
    }
    // The label values admitted before the restart keep their names, in the same order, before
    // seeding admits the rest from the ledger's rollups (raw models and tiers, in the ledger's order).
    for (const [label, values] of this.ledger.getAdmittedLabelValues() ?? []) this.labelCapper.preload(label, values);
    // Counters continue from the ledger's totals; this must precede anything that counts.
    this.metrics.seed(this.ledger.counterTotals());
    this.gpus = await powerSource.init();
    if (this.gpus.length === 0) throw new Error(`power source ${powerSource.quality().kind} found no GPU`);
    const quality = powerSource.quality();
    this.metrics.setPowerSourceInfo(quality);
    this.metrics.setBuildInfo(VERSION, process.version);
    this.carbon = carbonGauges(config.carbon);
    this.metrics.setCarbonFactors(this.carbon.site, this.carbon.pue, this.carbon.intensityAt(this.now()));
    log.info({ gpus: this.gpus.map((g) => `${g.index}:${g.uuid}:${g.name}`), source: quality }, quality.simulated ? 'SIMULATED power source: figures are simulated, not measured' : 'power source ready');

    this.context = this.recordContext();
    for (const unknown of this.context.unknownReplicaGpus()) log.warn({ replica: unknown }, 'replica names a GPU this node does not have');

    // Host (CPU + DRAM) energy: RAPL when readable, else a configured overhead (estimated), else none.
    const host = await createHostPowerSource(config.hostPower ?? {}, log);
    this.hostSource = host.source;
    this.hostKind = host.kind;
    this.hostNote = host.raplProblem ? `RAPL unavailable (${host.raplProblem.reason})` : '';
    if (host.source) log.info({ host: host.source.quality() }, host.kind === 'configured' ? 'host energy: configured overhead (estimated)' : 'host energy: RAPL');
    else log.info('host energy: not measured (no readable RAPL and no hostPower.overheadW configured)');

    this.settler = new Settler({
      ledger: this.ledger,
      metrics: this.metrics,
      gpus: this.gpus,
      node: config.node,
      periodMs: config.settlePeriod * 1000,
      latenessMs: config.settleLateness * 1000,
      attribution: this.attributionConfig(),
      simulated: quality.simulated,
      labelValue: (name, value) => this.labelCapper.value(name, value),
      labelCap: this.labelCapper,
      taskIdleMs: this.taskIdleMs,
      hostSource: this.hostKind,
      startedAtMs: this.now(),
      counterRestartsWithProcess: powerSource.counterRestartsWithProcess,
      log,
    });
    const restored = this.settler.restore(this.now());
    if (restored.requests > 0 || restored.samples > 0) log.info(restored, 'resumed settlement from the ledger');
    const settledUntil = this.settler.settledUntil;
    // /metrics shows where settlement stands from the first scrape, not from the first settle tick.
    if (settledUntil !== null) this.metrics.settled(settledUntil, 0);

    this.ingest = new IngestService({
      ledger: this.ledger,
      context: () => this.context.at(this.now()),
      settledUntil: () => this.settler.lateEdge(),
      queueLimit: config.queueLimit,
      onAccepted: (records: ResolvedRequest[], late: number) => {
        // Nothing to hand over: each settlement reads the unsettled requests from the ledger.
        // Counted first: the warning below cannot take the count with it if it fails. Late ones
        // are counted by onLate: each record under one result.
        this.metrics.recordsAccepted(records.length - late);
        this.warnLongRequests(records);
      },
      onRejected: (reason: string, n: number) => this.countRejected(reason, n),
      onLate: (n: number) => this.metrics.recordsLate(n),
      onDuplicate: (n: number) => this.metrics.recordsDuplicate(n),
    });

    this.server = new HttpServer({ host: config.host, port: config.port, log });
    this.server.route('POST', '/v1/requests', createIngestHandler({
      sink: this.ingest,
      bodyLimitBytes: config.bodyLimitBytes,
      ...(config.ingestToken ? { bearerToken: config.ingestToken } : {}),
      onRejected: (reason: string, n: number) => this.countRejected(reason, n),
    }));
    this.server.route('GET', '/metrics', (req, res) => serveMetrics(this.metrics, req, res));
    this.server.route('GET', '/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', version: VERSION }));
    this.server.route('GET', '/readyz', (_req, res) => {
      const readiness = this.readiness();
      sendJson(res, readiness.ready ? 200 : 503, readiness);
    });
    for (const route of this.options.routes ?? []) this.server.route(route.method, route.path, route.handler);
  }

  /** How records are resolved against the GPUs known now. */
  private recordContext(): NodeRecordContext {
    const { config } = this.options;
    return new NodeRecordContext({
      gpus: this.gpus,
      replicas: config.replicas,
      tiers: config.tiers,
      retainedWindowMs: config.retention.samplesHours * 3_600_000,
      futureSkewMs: RECORD_FUTURE_SKEW_MS,
    });
  }

  /**
   * The power source learnt a GPU after start-up (one that hung at start-up, or one found later),
   * or described one anew: records naming it, its index or its MIG devices are taken from now on,
   * and it is settled and exported like the others.
   */
  private learnGpu(gpu: GpuInfo): void {
    const known = this.gpus.some((g) => g.uuid === gpu.uuid);
    this.gpus = (known ? this.gpus.map((g) => (g.uuid === gpu.uuid ? gpu : g)) : [...this.gpus, gpu]).sort((a, b) => a.index - b.index);
    this.context = this.recordContext();
    this.settler.addGpu(gpu, this.now(), this.configuredIdleOf(gpu.uuid));
    this.options.log.info({ gpu: `${gpu.index}:${gpu.uuid}:${gpu.name}`, migInstances: gpu.migInstances ?? [], added: !known }, known ? 'GPU described anew by the power source' : 'GPU added: the power source found it after start-up');
  }

  /** The idle baseline the config gives this GPU (by index or UUID), if any. */
  private configuredIdleOf(uuid: string): number | undefined {
    for (const [ref, w] of Object.entries(this.options.config.attribution.idleBaselineW)) {
      if (this.context.resolveGpu(ref) === uuid) return w;
    }
    return undefined;
  }

  private attributionConfig(): AttributionConfig {
    const a = this.options.config.attribution;
    const idle: Record<string, number> = {};
    for (const [ref, w] of Object.entries(a.idleBaselineW)) {
      const uuid = this.context.resolveGpu(ref);
      if (uuid) idle[uuid] = w;
      else this.options.log.warn({ gpu: ref }, 'idle baseline configured for a GPU this node does not have');
    }
    return {
      ...DEFAULT_ATTRIBUTION_CONFIG,
      wPrefill: a.wPrefill,
      wCached: a.wCached,
      wDecode: a.wDecode,
      samplePeriodMs: 1000 / this.options.config.sampleRateHz,
      maxAttributableGapMs: a.maxAttributableGapSeconds * 1000,
      idleBaselineW: idle,
    };
  }

  /** Start sampling, serving and settling. Resolves once the HTTP port is bound. */
  async start(): Promise<void> {
    const { powerSource, log } = this.options;
    powerSource.start(
      (samples) => this.settler.addSamples(samples),
      (error) => this.onSourceError(error),
      (gpu) => this.learnGpu(gpu),
    );
    let port: number;
    try {
      ({ port } = await this.server.listen());
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(`--port / TOKENWATT_PORT: cannot listen on ${this.options.config.host}:${this.options.config.port} (${code}${code === 'EADDRINUSE' ? ': another process uses this port' : ''})`);
    }
    this.boundPort = port;
    this.readHost(); // the first period then has a host reading at its start
    const onError = (error: Error, task: string): void => {
      log.error({ err: error, task }, 'periodic task failed');
    };
    this.tasks.push(
      new PeriodicTask({
        name: 'settle',
        intervalMs: SETTLE_TICK_MS,
        timeoutMs: 30_000,
        onError,
        run: () => {
          this.beatLease();
          this.metrics.setCarbonFactors(this.carbon.site, this.carbon.pue, this.carbon.intensityAt(this.now()));
          this.readHost();
          this.expireStalePower();
          this.settler.flushSamples();
          this.settler.flushQuality();
          this.settler.settleDue(this.now());
        },
      }),
      new PeriodicTask({
        name: 'prune',
        intervalMs: PRUNE_TICK_MS,
        timeoutMs: 60_000,
        onError,
        run: () => {
          const { settlePeriod, settleLateness } = this.options.config;
          const pruned = this.ledger.prune(this.now() as never, { periodMs: settlePeriod * 1000, latenessMs: settleLateness * 1000 });
          if (pruned.skipped !== undefined && this.settler.settledUntil !== null) log.warn({ reason: pruned.skipped }, 'retention not applied this time: nothing was pruned');
          else log.debug({ pruned }, 'retention applied');
        },
      }),
    );
    for (const task of this.tasks) task.start();
    // Sources read back the state they committed with their records in earlier runs (the
    // engine-metrics baseline), so a restart, even after kill -9, resumes where the ledger stands.
    const sourceState = { read: (key: string) => this.ledger.readSourceState(key) };
    for (const source of this.options.requestSources ?? []) await source.start(this.ingest, sourceState);
    this.started = true;
    const { node, settlePeriod, settleLateness } = this.options.config;
    log.info({ port, settlePeriodS: settlePeriod, settleLatenessS: settleLateness, node, nodeVersion: process.version, sqlite: sqliteDriverDescription() }, 'tokenwatt agent running');
  }

  /** Settle everything due now (used by tests and at shutdown). */
  settleNow(): number {
    this.settler.flushSamples();
    return this.settler.settleDue(this.now());
  }

  /** Refresh the writer lease; say so (once) if another agent has taken it over. */
  private beatLease(): void {
    const holder = this.ledger.heartbeat();
    if (holder !== null && this.leaseLostTo === null) {
      this.options.log.error(
        { db: this.options.config.db, pid: holder.pid, host: holder.host },
        'another agent has taken over this ledger (this one stalled past the lease time): its settlement is resynced from the ledger, but two agents must not share a ledger; stop one of them',
      );
    }
    this.leaseLostTo = holder;
  }

  /** One host energy reading; a failed read is reported like any source error and skipped. */
  private readHost(): void {
    if (!this.hostSource) return;
    try {
      const reading = this.hostSource.read();
      this.settler.addHostReading({ timestampMs: reading.timestampMs, energyJ: reading.energyJ, estimated: reading.estimated });
    } catch (error) {
      const reason = (error as { reason?: string }).reason ?? 'read';
      this.onSourceError({ reason: `host_${reason}`, message: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * Records arrive when requests end: a request that ran longer than the lateness window starts in
   * time already settled, so its first part was given to idle or to others and it counts as late.
   * Say so (once a minute) with the fix, rather than letting J/token drift quietly. Interval records
   * (engine metrics) are left out: theirs is the scrape interval, or an agent downtime the scraper
   * reports itself, and raising the lateness is not their fix.
   */
  private warnLongRequests(records: readonly ResolvedRequest[]): void {
    const now = this.now();
    if (now - this.lastLongRequestWarnMs < 60_000) return;
    const latenessMs = this.options.config.settleLateness * 1000;
    // A loop, not Math.max(...): a commit can hold more records than a call can take arguments.
    let long = 0;
    let longest = 0;
    for (const r of records) {
      const durationMs = r.endMs - r.startMs;
      if (r.granularity !== 'request' || durationMs <= latenessMs) continue;
      long += 1;
      if (durationMs > longest) longest = durationMs;
    }
    if (long === 0) return;
    this.lastLongRequestWarnMs = now;
    this.options.log.warn(
      { requests: long, longestS: Math.round(longest / 1000), settleLatenessS: this.options.config.settleLateness },
      'requests longer than --settle-lateness: their first part was settled before they arrived (counted as late). Raise --settle-lateness / TOKENWATT_SETTLE_LATENESS above your longest requests',
    );
  }

  private countRejected(reason: string, n: number): void {
    this.rejectedRecords += n;
    this.metrics.recordsRejected(reason, n);
    this.settler?.noteRejected(n, this.now());
  }

  /** A task closes (and counts in tokenwatt_tasks_total) once it has had no request for this long: the lateness, at least a minute. */
  get taskIdleMs(): number {
    return Math.max(this.options.config.settleLateness * 1000, 60_000);
  }

  /** Counters the ledger does not hold, for the live summary. */
  healthCounts(): { sampleErrors: number; rejectedRecords: number; settledUntilMs: number | null } {
    let sampleErrors = 0;
    for (const e of this.sourceErrors.values()) sampleErrors += e.count;
    return { sampleErrors, rejectedRecords: this.rejectedRecords, settledUntilMs: this.settler?.settledUntil ?? null };
  }

  private onSourceError(error: PowerSourceError): void {
    const entry = this.sourceErrors.get(error.reason) ?? { count: 0, lastMessage: '', atMs: 0 };
    entry.count += 1;
    entry.lastMessage = error.message;
    entry.atMs = this.now();
    this.sourceErrors.set(error.reason, entry);
    this.metrics.sampleError(error.reason);
    this.settler?.noteSampleError(this.now());
    this.options.log.warn({ reason: error.reason, gpu: error.gpuUuid }, error.message);
  }

  /** Ready when every GPU sampled recently and settlement keeps up. Reasons are listed when not. */
  readiness(): { ready: boolean; checks: Record<string, { ok: boolean; detail: string }> } {
    const now = this.now();
    const stale = this.staleGpus(now);
    const sampling = this.gpus.length - stale.length;
    // A GPU the source cannot name yet is still one of the node's: counted, and named as not sampled.
    const unidentified = this.options.powerSource.unidentifiedGpus?.() ?? [];
    // So is one it sees and does not sample (no power or energy to read, or not opened): its
    // energy is in no figure, and records naming it are refused (it is not one of the agent's GPUs).
    const unsampled = this.options.powerSource.unsampledGpus?.() ?? [];
    const total = this.gpus.length + unidentified.length + unsampled.length;
    const missing = [
      ...stale.map((g) => ({ index: g.index, text: String(g.index) })),
      ...unidentified.map((u) => ({ index: u.index, text: `${u.index} (not identified yet: ${u.reason})` })),
      ...unsampled.map((u) => ({
        index: u.index,
        text: `${u.index} (${u.uuid === undefined ? '' : `${u.uuid} `}not sampled: ${u.reason}; no energy is measured for it or attributed on it, and records naming it are refused${u.retried ? ' until it is sampled' : ''})`,
      })),
    ].sort((a, b) => a.index - b.index);
    const settledUntil = this.settler.settledUntil;
    const maxLagMs = (this.options.config.settleLateness + 3 * this.options.config.settlePeriod) * 1000 + 30_000;
    const lagMs = settledUntil === null ? null : now - settledUntil;
    const recentErrors = [...this.sourceErrors.entries()].filter(([, e]) => now - e.atMs < 60_000);
    const checks = {
      started: { ok: this.started, detail: this.started ? 'running' : 'starting' },
      ledger: {
        ok: this.leaseLostTo === null,
        detail: this.leaseLostTo === null ? 'writer lease held' : `writer lease taken over by pid ${this.leaseLostTo.pid} on ${this.leaseLostTo.host}`,
      },
      sampling: {
        ok: sampling > 0,
        detail:
          missing.length === 0
            ? `${total} GPU(s) sampling`
            : `${sampling} of ${total} GPU(s) sampling; no recent sample from GPU ${missing.map((m) => m.text).join(', ')}`,
      },
      settlement: {
        ok: lagMs === null || lagMs <= maxLagMs,
        detail: lagMs === null ? 'nothing settled yet' : `settled until ${Math.round(lagMs / 1000)} s ago`,
      },
      host_energy: {
        ok: true,
        detail: this.hostKind === 'rapl' ? 'RAPL (measured)' : this.hostKind === 'configured' ? `configured overhead (estimated)${this.hostNote ? `; ${this.hostNote}` : ''}` : `not measured${this.hostNote ? `: ${this.hostNote}` : ''}`,
      },
      source_errors: {
        ok: recentErrors.length === 0,
        detail: recentErrors.length === 0 ? 'none in the last minute' : recentErrors.map(([r, e]) => `${r} x${e.count}: ${e.lastMessage}`).join('; '),
      },
    };
    // Ready means the agent can take records and settle them. A lost GPU, or source errors, are
    // reported here and alerted on (TokenwattSamplingStalled) but do not make it unready: the
    // node-local ingest Service (and the proxy behind it) would otherwise drop the healthy GPUs' records.
    const ready = checks.started.ok && checks.ledger.ok && checks.sampling.ok && checks.settlement.ok;
    return { ready, checks };
  }

  /** GPUs with no sample for max(5 s, 5 sample periods). */
  private staleGpus(now: number): GpuInfo[] {
    const staleAfterMs = Math.max(5_000, 5 * this.options.powerSource.quality().samplePeriodMs);
    const lastTimes = this.settler.lastSampleTimes();
    return this.gpus.filter((g) => {
      const at = lastTimes.get(g.uuid);
      return at === undefined || now - at > staleAfterMs;
    });
  }

  /** A stale GPU's power gauge is removed; its next sample sets it again. */
  private expireStalePower(): void {
    for (const gpu of this.staleGpus(this.now())) this.metrics.clearGpuPower(gpu.index, gpu.uuid);
  }

  /** Stop everything in order: sources, loops, final flush, server, ledger. Idempotent. */
  async shutdown(): Promise<void> {
    const { powerSource, log } = this.options;
    for (const source of this.options.requestSources ?? []) await source.shutdown().catch((e: unknown) => log.warn({ err: e }, 'request source shutdown failed'));
    await powerSource.shutdown().catch((e: unknown) => log.warn({ err: e }, 'power source shutdown failed'));
    for (const task of this.tasks) await task.stop();
    if (this.server) await this.server.close();
    // After the server: records already queued are written before the ledger closes.
    if (this.ingest) this.ingest.close();
    if (this.ledger) {
      if (this.started) this.readHost(); // the host counter up to the stop, for the next run to settle
      try {
        this.settler?.flushSamples();
      } catch (error) {
        log.error({ err: error }, 'final sample flush failed');
      }
      try {
        // Rejected records and sample errors counted since the last tick: the ledger keeps them.
        this.settler?.flushQuality();
      } catch (error) {
        log.error({ err: error }, 'final data-quality flush failed');
      }
      this.ledger.close();
    }
    this.started = false;
  }
}
