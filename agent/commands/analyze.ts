import { once } from 'node:events';
import { Command, InvalidArgumentError, Option } from 'commander';
import { formatTraceError, readPowerTraceFile, type ParsedPowerTrace } from '../../collectors/trace-file.js';
import { readRequestFile, type ParsedRequestFile } from '../../collectors/request-file.js';
import { SharedValues } from '../../collectors/shared-values.js';
import { renderAnalyzeTables } from '../../exporters/analyze-table.js';
import { jsonTextPieces } from '../../exporters/json-text.js';
import { analyzeRun } from '../../model/analysis.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { AttributionConfig } from '../../model/attribution-types.js';
import { resolveRecord, type RecordContext, type RequestRecord, type ResolvedRequest } from '../../model/request-record.js';
import type { PowerSampleColumns } from '../../model/power-sample-columns.js';
import { loadConfig } from '../config.js';
import { NodeRecordContext } from '../record-context.js';

/** At most this many problems are printed one per line; the rest are counted. */
const MAX_LISTED = 20;

/** `tokenwatt analyze`: offline, deterministic attribution of a recorded run. */
export function analyzeCommand(): Command {
  return new Command('analyze')
    .description('Attribute a recorded run offline: a power trace (nvidia-smi CSV or timestamp_ms,gpu,power_w,energy_j) and an NDJSON request file. Deterministic: the same files give the same answer.')
    .requiredOption('--power <file>', 'power trace: nvidia-smi --query-gpu ... --format=csv output, or CSV with header timestamp_ms,gpu,power_w,energy_j')
    .requiredOption('--requests <file>', 'request records, one JSON object per line (the /v1/requests schema)')
    .option('--json', 'print the report as JSON (its fields: the AnalyzeReport type in model/analysis.ts, and input, what was read, from agent/commands/analyze.ts)')
    .option('--per-request', 'include one entry per request')
    .option('--config <file>', 'config file: tiers, replicas and attribution weights (YAML or JSON)')
    .option('--skip-bad-lines', 'report bad trace lines and refused records, then analyse the rest (default: stop with exit 1)')
    // Whole seconds: the model cuts intervals on a 1 s grid, so any whole-second period gives the same figures.
    .addOption(new Option('--period <seconds>', 'settlement period used for the analysis').default(60).argParser(periodSeconds))
    .addOption(new Option('--nvidia-smi-utc-offset <minutes>', 'nvidia-smi timestamps are local time of the capture machine: minutes east of UTC').default(0).argParser(utcOffsetMinutes))
    .addHelpText('after', '\nExit status: 0 analysed; 1 bad input (each problem listed with its line); 2 invalid configuration or option value.')
    .action(async (flags: { power: string; requests: string; json?: boolean; perRequest?: boolean; config?: string; skipBadLines?: boolean; period: number; nvidiaSmiUtcOffset: number }) => {
      const exitCode = await analyze(flags);
      process.exitCode = exitCode;
    });
}

async function analyze(flags: { power: string; requests: string; json?: boolean; perRequest?: boolean; config?: string; skipBadLines?: boolean; period: number; nvidiaSmiUtcOffset: number }): Promise<number> {
  const loaded = loadConfig({ flags: {}, env: {}, forRun: false, ...(flags.config ? { configFile: flags.config } : {}) });
  if (!loaded.ok) {
    for (const error of loaded.errors) process.stderr.write(`tokenwatt analyze: ${error}\n`);
    return 2;
  }
  const periodS = flags.period;
  const offset = flags.nvidiaSmiUtcOffset;

  // Both files are streamed (a day of an 8-GPU node at 10 Hz is ~600 MB of trace, a day of requests
  // at 25/s ~600 MB of NDJSON: more than one string holds).
  const trace = await readTraceOrNull(flags.power, offset);
  const requests = await readRequestsOrNull(flags.requests);
  if (trace === null || requests === null) return 1;

  // Every problem is counted; only the first MAX_LISTED are formatted (a file may have millions of bad lines).
  const problems = new InputProblems();
  problems.addCounted(trace.errorCount, trace.errors.map((e) => () => formatTraceError(flags.power, e)));
  problems.addCounted(requests.errorCount, requests.errors.map((e) => () => `${flags.requests}:${e.line}: ${e.field}: ${e.reason}`));
  if (trace.samples.length === 0) problems.add(() => `${flags.power}: no usable power samples`);

  const context = new NodeRecordContext({
    gpus: trace.gpus,
    replicas: loaded.config.replicas,
    tiers: loaded.config.tiers,
    retainedWindowMs: Number.MAX_SAFE_INTEGER / 2,
    futureSkewMs: Number.MAX_SAFE_INTEGER / 2,
  }).at(Date.UTC(2100, 0, 1));
  const resolved = resolveInPlace(requests, context, (line, e) => problems.add(() => `${flags.requests}:${line}: ${e.field}: ${e.reason}`));

  if (problems.count > 0) {
    for (const p of problems.listed) process.stderr.write(`${p}\n`);
    if (problems.count > problems.listed.length) process.stderr.write(`... and ${problems.count - problems.listed.length} more\n`);
    if (trace.errorCount > problems.listed.length) {
      process.stderr.write(`${flags.power}: ${trace.errorCount} bad line(s): ${trace.errorsByReason.slice(0, 10).map((r) => `${r.count} ${r.reason}`).join('; ')}${trace.errorsByReason.length > 10 ? '; ...' : ''}\n`);
    }
    if (!flags.skipBadLines || trace.samples.length === 0) {
      process.stderr.write(`tokenwatt analyze: ${problems.count} problem(s) in the input; nothing analysed${flags.skipBadLines ? '' : ' (use --skip-bad-lines to analyse the rest)'}\n`);
      return 1;
    }
    process.stderr.write(`tokenwatt analyze: ${problems.count} problem(s) skipped as asked; they are counted in input.input_problems\n`);
  }

  const a = loaded.config.attribution;
  const idle: Record<string, number> = {};
  for (const [ref, w] of Object.entries(a.idleBaselineW)) {
    const uuid = context.resolveGpu(ref);
    if (uuid === undefined) {
      process.stderr.write(`tokenwatt analyze: invalid configuration: attribution.idleBaselineW: no GPU ${ref} in the trace\n`);
      return 2;
    }
    idle[uuid] = w;
  }
  const config: AttributionConfig = {
    ...DEFAULT_ATTRIBUTION_CONFIG,
    wPrefill: a.wPrefill,
    wCached: a.wCached,
    wDecode: a.wDecode,
    samplePeriodMs: medianSpacingMs(trace.samples) ?? DEFAULT_ATTRIBUTION_CONFIG.samplePeriodMs,
    maxAttributableGapMs: a.maxAttributableGapSeconds * 1000,
    idleBaselineW: idle,
  };
  const report = analyzeRun({
    samples: trace.samples,
    requests: resolved,
    gpus: trace.gpus.map((g) => ({ uuid: g.uuid, index: g.index })),
    config,
    periodMs: periodS * 1000,
    perRequest: flags.perRequest === true,
  });
  const output = {
    ...report,
    // Repeated request_ids are removed while the file is read (as ingest does); count them here.
    quality: { ...report.quality, duplicate_records: report.quality.duplicate_records + requests.duplicateCount },
    input: {
      power_file: flags.power,
      power_format: trace.format,
      requests_file: flags.requests,
      notes: trace.notes,
      input_problems: problems.count,
      trace_bad_lines: trace.errorCount,
      trace_bad_lines_by_reason: Object.fromEntries(trace.errorsByReason.map((r) => [r.reason, r.count])),
      duplicate_request_lines: requests.duplicateCount,
    },
  };
  if (flags.json) {
    // In pieces: with a million tasks the text is ~200 MB, which as one string would double the peak.
    await writePieces(process.stdout, jsonTextPieces(output, 2));
    process.stdout.write('\n');
  } else {
    process.stdout.write(`${renderAnalyzeTables(output)}\n`); // the same object as --json
  }
  return 0;
}

/** Write `pieces` one by one, waiting for the stream to drain when it asks to. */
async function writePieces(out: NodeJS.WritableStream, pieces: Iterable<string>): Promise<void> {
  for (const piece of pieces) if (!out.write(piece)) await once(out, 'drain');
}

/** Input problems: every one counted, the first MAX_LISTED formatted (only those are printed). */
class InputProblems {
  count = 0;
  readonly listed: string[] = [];

  add(format: () => string): void {
    this.count++;
    if (this.listed.length < MAX_LISTED) this.listed.push(format());
  }

  /** `count` problems, of which `first` are the first ones (in order). */
  addCounted(count: number, first: readonly (() => string)[]): void {
    for (const format of first.slice(0, MAX_LISTED - this.listed.length)) this.listed.push(format());
    this.count += count;
  }
}

/**
 * The sampling period of a trace: the median of the first 10,000 spacings of consecutive samples of
 * a GPU, taking GPUs in the order they first appear.
 */
function medianSpacingMs(samples: PowerSampleColumns): number | null {
  const MAX = 10_000;
  // Each GPU's first spacings, in one pass; then as many as needed, GPU after GPU.
  const byGpu = new Map<string, { last: number; spacings: number[] }>();
  for (let i = 0; i < samples.length; i++) {
    const uuid = (samples.gpus[samples.gpuAt(i)] as { uuid: string }).uuid;
    const t = samples.timestampAt(i);
    const gpu = byGpu.get(uuid);
    if (gpu === undefined) byGpu.set(uuid, { last: t, spacings: [] });
    else {
      if (gpu.spacings.length < MAX) gpu.spacings.push(t - gpu.last);
      gpu.last = t;
    }
  }
  const spacings: number[] = [];
  for (const gpu of byGpu.values()) for (const d of gpu.spacings) if (spacings.length < MAX) spacings.push(d);
  if (spacings.length === 0) return null;
  spacings.sort((x, y) => x - y);
  const median = spacings[Math.floor(spacings.length / 2)] as number;
  return median > 0 ? median : null;
}

/**
 * Resolve the file's records (tier, GPU UUIDs) in place: each record takes its resolved form's
 * fields and refused ones are dropped, so a million records are held once, not twice. The parsed
 * object is updated rather than replaced: the parsed ones are long-lived by then, and a million
 * replaced ones would leave ~200 MB of freed but still resident heap. `refused` is told of each
 * problem with the record's line.
 */
function resolveInPlace(requests: ParsedRequestFile, context: RecordContext, refused: (line: number, e: { field: string; reason: string }) => void): ResolvedRequest[] {
  const records = requests.records;
  const shared = new SharedValues(); // the resolved GPU lists repeat, as the given ones did
  let kept = 0;
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as RequestRecord;
    const result = resolveRecord(record, i, context);
    // The reader's records are this caller's to consume (ParsedRequestFile.records).
    if (result.ok) records[kept++] = Object.assign(record, result.record, { gpus: shared.list(result.record.gpus) });
    else for (const e of result.errors) refused(requests.lines[i] as number, e);
  }
  records.length = kept;
  return records as ResolvedRequest[]; // every record before `kept` now has its resolved form's fields
}

async function readRequestsOrNull(path: string): Promise<ParsedRequestFile | null> {
  try {
    return await readRequestFile(path);
  } catch (error) {
    return cannotRead(path, '--requests', error);
  }
}

async function readTraceOrNull(path: string, utcOffsetMinutes: number): Promise<ParsedPowerTrace | null> {
  try {
    return await readPowerTraceFile(path, { fileName: path, nvidiaSmiUtcOffsetMinutes: utcOffsetMinutes });
  } catch (error) {
    return cannotRead(path, '--power', error);
  }
}

function cannotRead(path: string, flag: string, error: unknown): null {
  process.stderr.write(`tokenwatt analyze: ${flag} ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}\n`);
  return null;
}

/** --period: a whole number of seconds >= 1; anything else is a usage error (exit 2). */
function periodSeconds(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < 1) throw new InvalidArgumentError('must be a whole number of seconds >= 1.');
  return value;
}

/** --nvidia-smi-utc-offset: minutes east of UTC, within the zones that exist (-14 h .. +14 h). */
function utcOffsetMinutes(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || Math.abs(value) > 14 * 60) throw new InvalidArgumentError('must be minutes east of UTC, from -840 to 840.');
  return value;
}
