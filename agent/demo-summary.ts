import { fullyLoadedFactor } from '../model/fully-loaded.js';
import { epochMs } from '../model/units.js';
import type { HourlyUsageRow } from '../model/rollup-types.js';
import { renderSummaryTable, SIMULATED_BANNER, type SummaryGroupRow, type SummarySnapshot } from '../exporters/summary-table.js';
import type { DemoWorkload } from './demo-workload.js';
import { Ledger } from './ledger.js';

export interface DemoSummaryOptions {
  readonly dbPath: string;
  readonly node: string;
  readonly startedAtMs: number;
  /** Where the agent is reached from this machine (127.0.0.1 when it listens on every interface). */
  readonly address: string;
  readonly port: number;
  readonly workload: DemoWorkload;
  /** Agent-side counters that the ledger does not hold. */
  readonly health: () => { sampleErrors: number; rejectedRecords: number; settledUntilMs: number | null };
  /** A task closes once no request of it has ended for this long before the settled edge (the agent's rule). */
  readonly taskIdleMs: number;
  /**
   * How often a table is printed (0: never) and when its first figures can come (settle lateness +
   * period), in seconds; and the settle lateness, to say what it leaves late.
   */
  readonly tables?: { readonly everyS: number; readonly figuresAfterS: number; readonly latenessS?: number };
}

/** About the longest request of the demo's workload, in seconds (up to about 350 s in 10-minute runs of seeds 1-3). */
export const DEMO_LONGEST_REQUEST_S = 400;

/**
 * The demo's periodic table. It reads the ledger (read-only, beside the agent, through WAL), so
 * what it prints is exactly what was settled and committed — the same numbers /metrics and the
 * ESG export show.
 */
export class DemoSummaryPrinter {
  private readonly ledger: Ledger;

  constructor(private readonly options: DemoSummaryOptions) {
    this.ledger = Ledger.openReadOnly(options.dbPath);
  }

  banner(): string {
    const host = this.options.address.includes(':') ? `[${this.options.address}]` : this.options.address;
    const url = `http://${host}:${this.options.port}`;
    return [
      '',
      `*** ${SIMULATED_BANNER} ***`,
      'tokenwatt demo: 8 simulated H100s serving three model tiers (small: Llama-3.1-8B on GPU 0,',
      'medium: Llama-3.1-70B FP8 on GPUs 1-2, large: Qwen3-235B-A22B FP8 on GPUs 3-6, GPU 7 a warm spare).',
      `Metrics: curl ${url}/metrics | grep tokenwatt_     Ready: ${url}/readyz     Ledger: ${this.options.dbPath}`,
      // Tables are printed from the start: the ones before the first settled period say so.
      this.tablesLine(),
      ...this.latenessLines(),
      '',
    ].join('\n');
  }

  /**
   * The demo's lateness is short so that figures come quickly; its longest reasoning requests run
   * longer (minutes on the loaded large tier), arrive late and leave the settled part of their
   * energy idle. Said up front, so the agent's warning about it is expected, not alarming.
   */
  private latenessLines(): string[] {
    const latenessS = this.options.tables?.latenessS;
    if (latenessS === undefined || latenessS >= DEMO_LONGEST_REQUEST_S) return [];
    return [
      `Settle lateness ${latenessS} s, short for quick figures: the longest reasoning requests (a few %, minutes long) end later,`,
      `so they count as late and their settled part's energy stays idle (the agent warns of it). --settle-lateness ${DEMO_LONGEST_REQUEST_S} avoids it.`,
    ];
  }

  private tablesLine(): string {
    const tables = this.options.tables;
    if (tables === undefined) return 'The tables show figures once the first periods are settled (settle lateness + period). Ctrl-C stops.';
    if (tables.everyS === 0) return 'No tables (--summary-every 0). Ctrl-C stops.';
    return `A table every ${tables.everyS} s; its figures start once the first periods are settled, about ${tables.figuresAfterS} s in (settle lateness + period). Ctrl-C stops.`;
  }

  snapshot(): SummarySnapshot {
    // This run only. The hourly rows are read from the hour the run started in: the demo refuses a
    // ledger that already holds samples, so those rows hold nothing from before this run.
    const startedAt = epochMs(this.options.startedAtMs);
    const hourStart = epochMs(Math.floor(this.options.startedAtMs / 3_600_000) * 3_600_000);
    const to = epochMs(Date.now() + 3_600_000);
    const energy = this.ledger.readHourlyEnergy(hourStart, to);
    const usage = this.ledger.readHourlyUsage(hourStart, to);
    const quality = this.ledger.readHourlyQuality(hourStart, to);
    const tasks = this.ledger.readTasks(startedAt, to);
    const hostJ = this.ledger.readHourlyHost(hourStart, to).reduce((a, r) => a + r.hostJ, 0);
    const health = this.options.health();
    const sum = <T>(rows: readonly T[], f: (r: T) => number): number => rows.reduce((acc, r) => acc + f(r), 0);
    const measuredJ = sum(energy, (r) => r.measuredJ);
    const idleJ = sum(energy, (r) => r.idleJ);
    const attributedJ = sum(energy, (r) => r.staticJ + r.dynamicJ);
    const unattributedJ = sum(energy, (r) => r.unattributedJ);
    const coveredMs = sum(energy, (r) => r.coveredMs);
    const gpuHours = new Set(energy.map((r) => `${r.gpuUuid}@${r.hourStartMs}`)).size;
    const settled = health.settledUntilMs;
    const windowMs = settled === null ? 0 : Math.max(0, settled - this.options.startedAtMs);
    const gpus = new Set(energy.map((r) => r.gpuUuid)).size;
    // Closed as the agent closes them for tokenwatt_tasks_total: a task still running, or whose
    // retry may still come, is neither a success nor a failure yet.
    const closed = settled === null ? [] : tasks.filter((t) => t.lastEndMs + this.options.taskIdleMs <= settled);
    return {
      node: this.options.node,
      source: { kind: 'simulated', simulated: true, energyCounter: true, powerAveraged: false },
      host: { kind: 'configured', estimated: true },
      windowStartMs: energy.length > 0 ? this.options.startedAtMs : null,
      settledUntilMs: settled,
      totals: {
        measuredJ,
        idleJ,
        attributedJ,
        unattributedJ,
        estimatedJ: sum(energy, (r) => r.estimatedJ),
        residualJ: measuredJ - (attributedJ + idleJ + unattributedJ),
        hostJ,
        fullyLoadedFactor: fullyLoadedFactor({ attributedJ, idleJ, unattributedJ, hostJ }),
      },
      byTier: groupRows(usage, (r) => r.tier),
      byBatchBucket: groupRows(usage, (r) => r.batchBucket),
      byCacheBucket: groupRows(usage, (r) => r.cacheBucket),
      tasks: {
        closed: closed.length,
        open: tasks.length - closed.length,
        succeeded: closed.filter((t) => t.succeeded).length,
        joules: sum(closed, (t) => t.joules),
        wasteJ: sum(closed, (t) => t.wasteJ),
      },
      quality: {
        sampleCoverage: gpus > 0 && windowMs > 0 && gpuHours > 0 ? Math.min(1, coveredMs / (gpus * windowMs)) : null,
        counterResets: sum(energy, (r) => r.counterResets),
        gaps: sum(energy, (r) => r.gaps),
        lateRecords: sum(quality, (r) => r.lateRecords),
        rejectedRecords: health.rejectedRecords,
        sampleErrors: health.sampleErrors,
      },
    };
  }

  render(): string {
    const stats = this.options.workload.stats();
    const workload = `workload so far: ${stats.tasksStarted} tasks, ${stats.requestsSubmitted} requests, ${stats.retries} retries, ${stats.cancelled} cancelled, ${stats.errored} errors, ${stats.bursts} batch jobs${stats.skippedMs > 0 ? `; ${Math.round(stats.skippedMs / 1000)} s of traffic skipped while the clock jumped ahead` : ''}`;
    return `\n${renderSummaryTable(this.snapshot())}\n${workload}\n`;
  }

  close(): void {
    this.ledger.close();
  }
}

function groupRows(usage: readonly HourlyUsageRow[], keyOf: (r: HourlyUsageRow) => string): SummaryGroupRow[] {
  const groups = new Map<string, { key: string; requests: number; promptTokens: number; cachedTokens: number; completionTokens: number; joules: number }>();
  for (const r of usage) {
    const key = keyOf(r);
    const g = groups.get(key) ?? { key, requests: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0, joules: 0 };
    g.requests += r.requests;
    g.promptTokens += r.promptTokens;
    g.cachedTokens += r.cachedTokens;
    g.completionTokens += r.completionTokens;
    g.joules += r.staticJ + r.dynamicJ;
    groups.set(key, g);
  }
  return [...groups.values()].sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
}
