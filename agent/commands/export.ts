import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import Database from '../sqlite-driver.js';
import type { Database as SqlDatabase } from 'better-sqlite3';
import { Command, Option } from 'commander';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { CarbonConfig } from '../../model/carbon/carbon-config.js';
import { parseHourlyIntensityCsv } from '../../model/carbon/hourly-intensity-csv.js';
import { writeFileAtomic } from '../../exporters/esg/atomic-write.js';
import { buildEsgReport, prepareEsgReport } from '../../exporters/esg/build-esg-report.js';
import type { EsgReportInput } from '../../exporters/esg/build-esg-report.js';
import { checkContentSha256 } from '../../exporters/esg/canonical-json.js';
import { NoDataError, VerificationError } from '../../exporters/esg/esg-errors.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { mergeEsgReports } from '../../exporters/esg/merge-reports.js';
import { readPrometheusRollups } from '../../exporters/esg/prometheus-source.js';
import { REPORT_FORMATS, renderReport } from '../../exporters/esg/render-report.js';
import type { ReportFormat } from '../../exporters/esg/render-report.js';
import { diffReports } from '../../exporters/esg/report-diff.js';
import { PeriodError, quarterPeriod, rangePeriod } from '../../exporters/esg/report-period.js';
import type { ReportPeriod } from '../../exporters/esg/report-period.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { rollupsOf } from '../../exporters/esg/rollup-source.js';
import { aggregateUsageInParts, aggregateUsageInWorkers } from '../../exporters/esg/parallel-usage-aggregate.js';
import { aggregateTasksInSqlite, usageTotalsInSqlite } from '../../exporters/esg/sqlite-usage-aggregate.js';
import type { UsageAggregate } from '../../exporters/esg/usage-breakdowns.js';
import { epochMs } from '../../model/units.js';
import { addConfigOptions, loadConfig } from '../config.js';
import { Ledger } from '../ledger.js';
import { UsageError } from '../usage-error.js';
import { VERSION } from '../version.js';

/** Flags of `tokenwatt export` (commander's camelCase keys). */
export interface ExportOptions {
  readonly quarter?: string;
  readonly from?: string;
  readonly to?: string;
  readonly format?: string;
  readonly out?: string;
  readonly db?: string;
  readonly config?: string;
  readonly verify?: string;
  readonly merge?: readonly string[];
  readonly prometheus?: string;
  readonly prometheusNodeLabel?: string;
  readonly prometheusHeader?: readonly string[];
}

/** Where the command writes its messages and reads its environment and clock (tests inject them). */
export interface ExportIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly now: () => Date;
}

const MAX_INPUT_BYTES = 256 * 1024 * 1024;

/** `tokenwatt export`: the ESG report of a period from the ledger, from Prometheus, or merged from node reports. */
export function exportCommand(): Command {
  const command = new Command('export')
    .description(
      'ESG report of a period: energy (GPU, idle, host, facility), emissions location- and market-based, embodied, SCI, ' +
        'breakdowns, tasks and data quality. Reads the ledger (--db), Prometheus (--prometheus) or node reports (--merge).',
    )
    .option('--quarter <YYYY-Qn>', 'calendar quarter in UTC, e.g. 2026-Q3')
    .option('--from <time>', 'period start: YYYY-MM-DD or RFC 3339 on a whole hour (UTC)')
    .option('--to <time>', 'period end (exclusive)')
    .addOption(new Option('--format <format>', 'output format (default: from the --out extension, else json)').choices([...REPORT_FORMATS]))
    .option('--out <file>', 'write the report here, atomically (default: standard output)')
    .option('--verify <file>', 'recompute a JSON report from the ledger and say whether it still matches (exit 1 when not)')
    .option('--merge <files...>', 'fleet report from node reports (JSON); a report given twice is counted once')
    .option('--prometheus <url>', 'compute from the agents\' counters through the Prometheus HTTP API (Prometheus, Thanos, Mimir)')
    .option('--prometheus-node-label <label>', 'label that names the node in Prometheus (default: node when the series carry it, else instance)')
    .option('--prometheus-header <header...>', 'extra HTTP header for Prometheus, "Name: value" (e.g. X-Scope-OrgID for Mimir)')
    .addHelpText(
      'after',
      '\nExit status: 0 written (--verify: the report still matches); 1 bad or missing data (a ledger, report, intensity file or ' +
        'Prometheus that cannot be read or has no data for the period; --verify: it no longer matches); 2 invalid configuration or option value.',
    );
  addConfigOptions(command, ['db']);
  command.action(async (flags: ExportOptions) => {
    await runExport(flags, {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
      env: process.env,
      now: () => new Date(),
    });
  });
  return command;
}

/** The export itself. Throws (with a message naming the input at fault) on bad input; writes nothing then. */
export async function runExport(flags: ExportOptions, io: ExportIo): Promise<void> {
  const modes = [flags.verify !== undefined, flags.merge !== undefined, flags.prometheus !== undefined].filter(Boolean).length;
  if (modes > 1) throw new UsageError('use one of --verify, --merge and --prometheus at a time');
  const generatedAt = io.now().toISOString();

  if (flags.verify !== undefined) {
    await verifyReport(flags, io);
    return;
  }
  if (flags.merge !== undefined) {
    const reports = flags.merge.map((path) => ({ name: path, report: readReport(path) }));
    const merged = mergeEsgReports(reports, { toolVersion: VERSION, generatedAt });
    if (flags.quarter !== undefined || flags.from !== undefined || flags.to !== undefined) {
      // Both ends: a month's reports must not pass as the quarter asked for.
      const period = periodOf(flags);
      const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
      if (merged.period.from !== iso(period.fromMs) || merged.period.to !== iso(period.toMs)) {
        throw new PeriodError(`the reports cover ${merged.period.from} to ${merged.period.to} (${merged.period.label}), not the period asked for (${period.label})`);
      }
    }
    emit(merged, flags, io);
    return;
  }
  const period = periodOf(flags);
  const settings = loadSettings(flags, io);
  if (flags.prometheus !== undefined) {
    const rollups = await readPrometheusRollups(period, {
      url: flags.prometheus,
      ...(flags.prometheusNodeLabel !== undefined ? { nodeLabel: flags.prometheusNodeLabel } : {}),
      headers: parseHeaders(flags.prometheusHeader ?? []),
    });
    const report = buildEsgReport({
      energy: rollups.energy,
      host: rollups.host,
      quality: rollups.quality,
      usage: rollups.usage,
      tasks: [],
      taskAggregates: rollups.taskAggregates,
      tokenCounts: rollups.tokenCounts,
      coverageKnown: false,
      coveredTimeKnown: rollups.coveredTimeKnown,
      sourceNotes: rollups.notes,
      dataSource: 'prometheus',
      ...carbonInputs(settings.carbon, settings.configDir),
      period,
      toolVersion: VERSION,
      generatedAt,
    });
    emit(report, flags, io);
    return;
  }
  const report = await withLedger(settings.db, (store) => buildFromLedger(store, period, settings.carbon, settings.configDir, { toolVersion: VERSION, generatedAt }, io));
  emit(report, flags, io);
}

/** The period the options ask for; a missing or bad one is a usage error (exit 2). */
function periodOf(flags: ExportOptions): ReportPeriod {
  try {
    if (flags.quarter !== undefined) {
      if (flags.from !== undefined || flags.to !== undefined) throw new PeriodError('use either --quarter or --from/--to, not both');
      return quarterPeriod(flags.quarter);
    }
    if (flags.from !== undefined && flags.to !== undefined) return rangePeriod(flags.from, flags.to);
    throw new PeriodError('say which period: --quarter YYYY-Qn, or --from and --to');
  } catch (error) {
    throw error instanceof PeriodError ? new UsageError(error.message) : error;
  }
}

interface Settings {
  readonly db: string;
  readonly carbon: CarbonConfig;
  /** Directory relative paths in the config (the intensity file) are resolved against. */
  readonly configDir: string;
}

function loadSettings(flags: ExportOptions, io: ExportIo): Settings {
  const configFile = flags.config ?? (io.env.TOKENWATT_CONFIG?.trim() || undefined);
  const loaded = loadConfig({
    flags: flags.db !== undefined ? { db: flags.db } : {},
    env: io.env,
    forRun: false,
    ...(configFile !== undefined ? { configFile } : {}),
  });
  if (!loaded.ok) throw new UsageError(`invalid configuration:\n${loaded.errors.map((e) => `  - ${e}`).join('\n')}`);
  const carbon = parseCarbonConfig((loaded.config as { carbon?: unknown }).carbon);
  if (!carbon.ok) throw new UsageError(`invalid carbon configuration:\n${carbon.errors.map((e) => `  - ${e}`).join('\n')}`);
  return { db: loaded.config.db, carbon: carbon.config, configDir: configFile !== undefined ? dirname(resolve(configFile)) : process.cwd() };
}

/** The carbon config with its intensity file (if any) read, hashed and parsed. */
function carbonInputs(carbon: CarbonConfig, configDir: string): Pick<EsgReportInput, 'carbon' | 'intensityFile'> {
  if (carbon.intensityFile === undefined) return { carbon };
  const path = isAbsolute(carbon.intensityFile) ? carbon.intensityFile : resolve(configDir, carbon.intensityFile);
  const bytes = readInput(path, 'carbon.intensityFile');
  const series = parseHourlyIntensityCsv(bytes.toString('utf8'), { source: path, ...(carbon.intensityFileColumn ? { column: carbon.intensityFileColumn } : {}) });
  // The report records the absolute path, so --verify finds the same file from anywhere.
  return {
    carbon: { ...carbon, intensityFile: path },
    intensityFile: { series, name: path, sha256: createHash('sha256').update(bytes).digest('hex') },
  };
}

async function buildFromLedger(
  store: LedgerStore,
  period: ReportPeriod,
  carbon: CarbonConfig,
  configDir: string,
  meta: { toolVersion: string; generatedAt: string },
  io: ExportIo,
): Promise<EsgReport> {
  const prepared = prepareEsgReport({
    ...rollupsOf(store.ledger, period),
    tasks: [],
    taskAggregates: aggregateTasksInSqlite(store.sql, period),
    usageTotals: usageTotalsInSqlite(store.sql, period),
    usageByDrawnHourFromMs: store.ledger.usageByDrawnHourFrom(),
    ...carbonInputs(carbon, configDir),
    period,
    dataSource: 'ledger',
    ...meta,
  });
  // Busy quarters hold millions of usage rows: sum them inside SQLite, in worker threads
  // (rows are streamed only as a fallback, when some usage has no measured hour).
  let usage: UsageAggregate | null;
  try {
    usage = await aggregateUsageInWorkers(store.sql, store.path, period, prepared.factors);
  } catch (error) {
    io.stderr(`note: worker threads unavailable (${(error as Error).message}); summing usage on one thread\n`);
    usage = aggregateUsageInParts(store.sql, period, prepared.factors);
  }
  try {
    return prepared.finish(usage);
  } catch (error) {
    if (error instanceof NoDataError) throw new NoDataError(`${error.message}; ${ledgerExtent(store.ledger)}`);
    throw error;
  }
}

/** "the ledger holds hourly data from A to B" (for the no-data message). */
function ledgerExtent(ledger: Ledger): string {
  const rows = ledger.readHourlyEnergy(epochMs(0), epochMs(8.64e15));
  if (rows.length === 0) return 'the ledger holds no settled hours yet';
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const r of rows) {
    first = Math.min(first, r.hourStartMs);
    last = Math.max(last, r.hourStartMs);
  }
  return `the ledger holds hourly data from ${new Date(first).toISOString()} to ${new Date(last + 3_600_000).toISOString()}`;
}

/** The ledger's readers, and a read-only SQL connection to the same file for the aggregates. */
interface LedgerStore {
  readonly path: string;
  readonly ledger: Ledger;
  readonly sql: SqlDatabase;
}

async function withLedger<T>(path: string, use: (store: LedgerStore) => Promise<T>): Promise<T> {
  let ledger: Ledger;
  try {
    ledger = Ledger.openReadOnly(path);
  } catch (error) {
    throw new Error(`cannot open the ledger ${path}: ${(error as Error).message} (set --db or TOKENWATT_DB)`);
  }
  let sql: SqlDatabase | null = null;
  try {
    sql = new Database(path, { readonly: true, fileMustExist: true });
    sql.pragma('temp_store = MEMORY');
    return await use({ path, ledger, sql });
  } finally {
    sql?.close();
    ledger.close();
  }
}

async function verifyReport(flags: ExportOptions, io: ExportIo): Promise<void> {
  const path = flags.verify ?? '';
  const stored = readReport(path, { checkHash: false });
  const hash = checkContentSha256(stored);
  if (!hash.ok) {
    throw new VerificationError(`${path}: TAMPERED: the content hash does not match (stored ${hash.stored}, computed ${hash.computed}); the report was changed after it was written`, []);
  }
  if (stored.data_source !== 'ledger') {
    io.stdout(
      `${path}: content hash verified (${stored.content_sha256}). It was built from ${stored.data_source === 'merge' ? 'node reports' : 'Prometheus'}, ` +
        `so it cannot be recomputed from one ledger${stored.data_source === 'merge' ? '; verify each node report against its ledger' : ''}.\n`,
    );
    return;
  }
  const carbon = parseCarbonConfig(stored.inputs.carbon_config);
  if (!carbon.ok) throw new VerificationError(`${path}: the carbon configuration recorded in the report is not valid any more`, carbon.errors);
  const settings = loadSettings(flags, io);
  const period = { fromMs: Date.parse(stored.period.from), toMs: Date.parse(stored.period.to), label: stored.period.label };
  const recomputed = await withLedger(settings.db, (store) =>
    buildFromLedger(store, period, carbon.config, process.cwd(), { toolVersion: stored.tool.version, generatedAt: stored.generated_at }, io),
  );
  const differences = diffReports(stored, recomputed, { stored: 'report', recomputed: 'ledger now' });
  if (differences.length > 0) {
    throw new VerificationError(`${path} does NOT match the ledger ${settings.db} any more (${differences.length} difference(s)):`, differences);
  }
  const note = stored.tool.version !== VERSION ? ` (report written by tokenwatt ${stored.tool.version}, checked with ${VERSION})` : '';
  io.stdout(`${path}: verified: recomputed from ${settings.db}, it matches (content_sha256 ${stored.content_sha256})${note}\n`);
}

/** Read and check a JSON report: parseable, of the published schema, and (by default) with an intact hash. */
function readReport(path: string, options: { checkHash?: boolean } = {}): EsgReport {
  const text = readInput(path, 'report').toString('utf8');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: not JSON (${(error as Error).message}); --verify and --merge take reports written with --format json`);
  }
  const problems = esgReportSchemaProblems(data);
  if (problems.length > 0) throw new VerificationError(`${path}: not a tokenwatt ESG report (schemas/esg-report.schema.json):`, problems.slice(0, 10));
  const report = data as EsgReport;
  if (options.checkHash !== false) {
    const hash = checkContentSha256(report);
    if (!hash.ok) throw new VerificationError(`${path}: TAMPERED: the content hash does not match; the report was changed after it was written`, []);
  }
  return report;
}

function readInput(path: string, what: string): Buffer {
  try {
    const size = statSync(path).size;
    if (size > MAX_INPUT_BYTES) throw new Error(`larger than ${MAX_INPUT_BYTES} bytes`);
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${what} ${path}: cannot read it (${code ?? (error as Error).message})`);
  }
}

function parseHeaders(headers: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers) {
    const i = h.indexOf(':');
    if (i <= 0) throw new UsageError(`--prometheus-header: expected "Name: value", got "${h}"`);
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

function formatOf(flags: ExportOptions): ReportFormat {
  if (flags.format !== undefined) return flags.format as ReportFormat;
  const ext = flags.out !== undefined ? extname(flags.out).toLowerCase() : '';
  if (ext === '.csv') return 'csv';
  if (ext === '.html' || ext === '.htm') return 'html';
  if (ext === '.yaml' || ext === '.yml') return 'impact';
  return 'json';
}

/** Render (schema-checked) and write: to --out atomically, else to standard output. */
function emit(report: EsgReport, flags: ExportOptions, io: ExportIo): void {
  const format = formatOf(flags);
  const content = renderReport(report, format);
  if (flags.out === undefined) {
    io.stdout(content);
    return;
  }
  const written = writeFileAtomic(flags.out, content);
  const simulated = report.simulated ? ' [SIMULATED DATA]' : '';
  const through = written === flags.out ? '' : ` through the link to ${written}`;
  io.stderr(`wrote ${flags.out}${through} (${format}, ${Buffer.byteLength(content)} bytes, ${report.period.label}, content_sha256 ${report.content_sha256})${simulated}\n`);
}
