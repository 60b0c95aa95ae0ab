import { Worker } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';
import { utcDaySlices } from './report-period.js';
import type { ReportPeriod } from './report-period.js';
import { aggregateUsageInSqlite } from './sqlite-usage-aggregate.js';
import { addSums, emptySums } from './usage-breakdowns.js';
import type { HourFactors, UsageAggregate } from './usage-breakdowns.js';

/** What one worker sums: a day range of the ledger file. */
export interface UsageWorkerJob {
  readonly path: string;
  readonly range: ReportPeriod;
  readonly factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>;
}

/**
 * The period is always cut into this many day-aligned parts, whatever the number of cores, and
 * the parts are added in order: the floating-point sums, hence the report and its hash, do not
 * depend on how many ran at once (--verify recomputes the same bytes). Two parts keep the peak
 * memory (one SQLite connection and one V8 isolate per part) within the export's budget.
 */
export const USAGE_PARTS = 2;

/** Parts of a period cut at UTC midnights, in order: no UTC day is split between two parts. */
export function usageParts(period: ReportPeriod, parts = USAGE_PARTS): ReportPeriod[] {
  const days = utcDaySlices(period);
  const out: ReportPeriod[] = [];
  for (let i = 0; i < parts; i += 1) {
    const first = days[Math.floor((days.length * i) / parts)];
    const last = days[Math.floor((days.length * (i + 1)) / parts) - 1];
    if (first === undefined || last === undefined || last[1] <= first[0]) continue;
    out.push({ fromMs: first[0], toMs: last[1], label: `${period.label} part ${i + 1}` });
  }
  return out;
}

/** Add part results in order; null (some usage without measured factors) wins. */
export function mergeUsageParts(parts: readonly (UsageAggregate | null)[]): UsageAggregate | null {
  if (parts.some((p) => p === null)) return null;
  const merged: UsageAggregate = { combos: new Map(), dailyByTier: new Map(), months: new Map() };
  for (const part of parts as UsageAggregate[]) {
    for (const [key, combo] of part.combos) {
      const into = merged.combos.get(key);
      if (into) addSums(into, combo);
      else merged.combos.set(key, { ...combo });
    }
    for (const [day, tiers] of part.dailyByTier) {
      // Parts never share a day (usageParts), but adding keeps a shared day whole if they did.
      const into = merged.dailyByTier.get(day);
      if (!into) merged.dailyByTier.set(day, new Map(tiers));
      else for (const [tier, j] of tiers) into.set(tier, (into.get(tier) ?? 0) + j);
    }
    for (const [month, sums] of part.months) {
      let into = merged.months.get(month);
      if (!into) merged.months.set(month, (into = emptySums()));
      addSums(into, sums);
    }
  }
  return merged;
}

/** The parts summed one after the other on one connection (same result as the workers). */
export function aggregateUsageInParts(db: Database, period: ReportPeriod, factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>): UsageAggregate | null {
  return mergeUsageParts(usageParts(period).map((range) => aggregateUsageInSqlite(db, range, factors)));
}

/**
 * The parts summed in parallel: the first on this thread's connection, the others in worker
 * threads, each on its own read-only connection to the ledger file (one V8 isolate fewer than a
 * worker per part). Rejects if a worker cannot start or fails; the caller may then sum in parts
 * on this thread.
 */
export async function aggregateUsageInWorkers(
  db: Database,
  path: string,
  period: ReportPeriod,
  factors: ReadonlyMap<string, ReadonlyMap<number, HourFactors>>,
): Promise<UsageAggregate | null> {
  const [first, ...rest] = usageParts(period);
  if (!first) return mergeUsageParts([]);
  const others = rest.map((range) => runWorker({ path, range, factors }));
  // Let the workers' rejections be handled by Promise.all below, not reported as unhandled.
  for (const p of others) p.catch(() => undefined);
  const here = aggregateUsageInSqlite(db, first, factors);
  return mergeUsageParts([here, ...(await Promise.all(others))]);
}

function runWorker(job: UsageWorkerJob): Promise<UsageAggregate | null> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(job);
    let settled = false;
    worker.once('message', (result: UsageAggregate | null) => {
      settled = true;
      resolve(result);
    });
    worker.once('error', (error) => {
      settled = true;
      reject(error);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`usage worker exited with code ${code} before answering`));
    });
  });
}

function startWorker(job: UsageWorkerJob): Worker {
  const compiled = new URL('./sqlite-usage-worker.js', import.meta.url);
  if (!import.meta.url.endsWith('.ts')) return new Worker(compiled, { workerData: job });
  // From source (tsx): the worker thread does not inherit the TypeScript loader, so register it first.
  const source = new URL('./sqlite-usage-worker.ts', import.meta.url).href;
  const loader = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(loader)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: job });
}
