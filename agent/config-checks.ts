import { readFileSync } from 'node:fs';
import { CONFIG_OPTION_BY_KEY } from './config-options.js';
import type { TokenwattConfig } from './config-schema.js';
import { isLoopbackHost } from '../collectors/loopback-host.js';
import { MAX_HELD_SCRAPES } from '../collectors/engine-metrics/interval-records.js';
import { proxyHeadersOf } from '../collectors/proxy/proxy-config.js';
import { CarbonInputErrors } from '../model/carbon/carbon-input-error.js';
import { parseHourlyIntensityCsv } from '../model/carbon/hourly-intensity-csv.js';
import { MAX_RECORD_LABELS } from '../model/request-record.js';

/** Where a key's value came from. */
export type ConfigSource = 'default' | 'file' | 'env' | 'flag';

/** How a key is named in messages: its flag and env var when it has them, else its path. */
export function keyName(key: string): string {
  const option = CONFIG_OPTION_BY_KEY.get(key);
  return option === undefined ? key : `${option.flag} / ${option.env}`;
}

const QUARTER_DAYS = 92;
const MIN_TOKEN_LENGTH = 16;

/**
 * Checks that span several keys, run on the merged, validated config. Errors stop the agent;
 * warnings are legal setups worth a line in the log. With `forRun` false (doctor, analyze and
 * export, which read the file for other keys and without run's flags and environment), the checks
 * of how the agent itself would run are left out: a file that `run` completes with its flags or
 * environment (`--upstream` for a `proxy:` section) must not be refused there.
 */
export function crossCheckConfig(config: TokenwattConfig, sources: Readonly<Record<string, ConfigSource>>, forRun = true): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (forRun) checkRun(config, sources, errors, warnings);

  const { wPrefill, wCached, wDecode } = config.attribution;
  if (wPrefill === 0 && wCached === 0 && wDecode === 0) {
    errors.push(`${keyName('attribution.wPrefill')}, ${keyName('attribution.wCached')}, ${keyName('attribution.wDecode')}: all 0, so dynamic energy could not be shared by work`);
  }
  if (wCached > wPrefill) {
    warnings.push(`${keyName('attribution.wCached')}: a prefix-cache hit (${wCached}) weighs more than an uncached prompt token (${wPrefill})`);
  }
  checkReplicas(config, warnings);
  checkIntensityFile(config, errors);
  return { errors, warnings };
}

/** The agent as it runs: its proxy, sampling, retention against the lateness, and who can reach its ingest. */
function checkRun(config: TokenwattConfig, sources: Readonly<Record<string, ConfigSource>>, errors: string[], warnings: string[]): void {
  checkProxy(config, errors);

  const settleSeconds = config.settleLateness + 2 * config.settlePeriod;
  if (config.retention.samplesHours * 3600 < settleSeconds) {
    errors.push(`${keyName('retention.samplesHours')}: ${config.retention.samplesHours} h would delete samples before their period is settled (lateness ${config.settleLateness} s + 2 periods of ${config.settlePeriod} s)`);
  }
  if (config.retention.requestsDays * 86_400 < settleSeconds) {
    errors.push(`${keyName('retention.requestsDays')}: ${config.retention.requestsDays} d would delete requests before their period is settled`);
  } else if (config.retention.requestsDays * 24 < config.retention.samplesHours) {
    // Records are accepted as long as their samples are kept; their ids must be kept as long, or a
    // resend after the id was pruned would be stored and counted again.
    errors.push(
      `${keyName('retention.requestsDays')}: ${config.retention.requestsDays} d keeps request ids for less time than records are accepted ` +
        `(${keyName('retention.samplesHours')}: ${config.retention.samplesHours} h): a record resent after its id was pruned would be counted twice`,
    );
  }
  if (config.retention.rollupsDays < config.retention.requestsDays) {
    // A task's row goes with the rollups: pruned while its requests are kept, a task that goes on
    // would start a new row from its later requests alone, and its earlier attempts could no
    // longer become waste or be counted with it after a restart.
    errors.push(
      `${keyName('retention.rollupsDays')}: ${config.retention.rollupsDays} d keeps hourly rollups and task rows for less time than requests ` +
        `(${keyName('retention.requestsDays')}: ${config.retention.requestsDays} d): a task that goes on after its row was deleted would be split in two`,
    );
  } else if (config.retention.rollupsDays < QUARTER_DAYS) {
    warnings.push(`${keyName('retention.rollupsDays')}: ${config.retention.rollupsDays} d is shorter than a quarter; the quarterly ESG export will lack data`);
  }
  const samplePeriodS = 1 / config.sampleRateHz;
  if (config.attribution.maxAttributableGapSeconds < 3 * samplePeriodS) {
    errors.push(`${keyName('attribution.maxAttributableGapSeconds')}: ${config.attribution.maxAttributableGapSeconds} s is under 3 sampling periods (${(3 * samplePeriodS).toFixed(3)} s at ${config.sampleRateHz} Hz): ordinary intervals would go unattributed`);
  }

  if (config.engineMetrics !== undefined) {
    // An interval record arrives when its scrape ends, and one held for missing series spans up to
    // MAX_HELD_SCRAPES + 1 intervals: all of it must still be within the lateness window.
    const spanS = ((MAX_HELD_SCRAPES + 1) * config.engineMetrics.intervalMs) / 1000;
    if (spanS > config.settleLateness) {
      warnings.push(
        `${keyName('settleLateness')}: ${config.settleLateness} s is shorter than ${MAX_HELD_SCRAPES + 1} engine-metrics intervals (${spanS} s at engineMetrics.intervalMs ${config.engineMetrics.intervalMs}): ` +
          'an interval record held for a missing series would arrive partly late',
      );
    }
  }
  checkHeaders(config, errors, warnings);

  if (config.ingestToken !== undefined) {
    if (sources.ingestToken === 'flag') warnings.push(`${keyName('ingestToken')}: given as a flag, the token is visible in the process list; prefer the environment variable`);
    if (config.ingestToken.length < MIN_TOKEN_LENGTH) warnings.push(`${keyName('ingestToken')}: shorter than ${MIN_TOKEN_LENGTH} characters`);
  } else if (!isLoopbackHost(config.host)) {
    warnings.push(`${keyName('ingestToken')}: not set while listening on ${config.host}; anyone who reaches port ${config.port} can post request records and OTLP spans`);
  }
}

/**
 * The proxy as it will run: the top-level --proxy-port / --upstream win over the `proxy:`
 * section's port and upstream (the section's port defaults to 9478), as request-capture.ts reads them.
 */
function checkProxy(config: TokenwattConfig, errors: string[]): void {
  const section = config.proxy;
  const upstream = config.upstream ?? section?.upstream;
  const port = config.proxyPort ?? section?.port;
  const portName = config.proxyPort !== undefined || section === undefined ? keyName('proxyPort') : 'proxy.port';
  if (upstream === undefined) {
    if (config.proxyPort !== undefined) errors.push(`${keyName('proxyPort')}: the proxy needs ${keyName('upstream')} (where to forward requests)`);
    else if (section !== undefined) errors.push(`proxy: the section needs an upstream, proxy.upstream or ${keyName('upstream')} (where to forward requests)`);
    return;
  }
  if (port === undefined) {
    errors.push(`${keyName('upstream')}: set ${keyName('proxyPort')} too, or the proxy has no port to listen on`);
  } else if (port === config.port) {
    errors.push(`${portName}: ${port} is also ${keyName('port')}; they need different ports`);
  }
  // The proxy records each request it forwards; the same server's engine counters hold the same
  // tokens again. Both sources on one server count its work twice.
  const upstreamServer = serverOf(upstream);
  config.engineMetrics?.targets.forEach((target, i) => {
    if (serverOf(target.url) !== upstreamServer) return;
    errors.push(
      `engineMetrics.targets[${i}].url: ${target.url} is the server the proxy forwards to (${keyName('upstream')} ${upstream}): ` +
        'its requests would be counted twice, once as the proxy\'s records and once from its counters; capture each engine one way',
    );
  });
}

/** scheme://host:port of a URL, with the loopback names made one, to tell whether two URLs reach one server. */
function serverOf(url: string): string {
  const u = new URL(url);
  const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port;
  const host = u.hostname === 'localhost' || u.hostname === '[::1]' || /^127\./.test(u.hostname) ? 'loopback' : u.hostname.toLowerCase();
  return `${u.protocol}//${host}:${port}`;
}

/** The hourly intensity file must exist and parse now, not fail once the agent is starting. */
function checkIntensityFile(config: TokenwattConfig, errors: string[]): void {
  const file = config.carbon?.intensityFile;
  if (file === undefined) return;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    errors.push(`carbon.intensityFile: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    return;
  }
  try {
    parseHourlyIntensityCsv(text, { source: file, ...(config.carbon?.intensityFileColumn ? { column: config.carbon.intensityFileColumn } : {}) });
  } catch (error) {
    if (error instanceof CarbonInputErrors) {
      const shown = error.problems.slice(0, 3).map((p) => p.message).join('; ');
      const more = error.problems.length + error.omitted - 3;
      errors.push(`carbon.intensityFile: ${shown}${more > 0 ? `; and ${more} more` : ''}`);
    } else {
      errors.push(`carbon.intensityFile: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

function checkReplicas(config: TokenwattConfig, warnings: string[]): void {
  const modelsByGpu = new Map<string, Set<string>>();
  const replicasByModel = new Map<string, number>();
  config.replicas.forEach((replica, i) => {
    replicasByModel.set(replica.model, (replicasByModel.get(replica.model) ?? 0) + 1);
    for (const gpu of replica.gpus) {
      const key = gpu.toLowerCase();
      const models = modelsByGpu.get(key) ?? new Set<string>();
      models.add(replica.model);
      modelsByGpu.set(key, models);
    }
    const mapped = config.tiers[replica.model];
    if (replica.tier !== undefined && mapped !== undefined && mapped !== replica.tier) {
      warnings.push(`replicas[${i}].tier: '${replica.tier}' is overridden by tiers.${replica.model} = '${mapped}'`);
    }
  });
  for (const [gpu, models] of modelsByGpu) {
    if (models.size > 1) warnings.push(`replicas: GPU ${gpu} serves ${[...models].join(', ')}; allowed, their requests share its energy by work`);
  }
  for (const [model, count] of replicasByModel) {
    if (count > 1) warnings.push(`replicas: model '${model}' has ${count} replicas; records without gpus are attributed to the first one`);
  }
}

function checkHeaders(config: TokenwattConfig, errors: string[], warnings: string[]): void {
  const given = config.labels.headers;
  const exported = new Set(['task_id', 'attempt', ...config.labels.user]);
  for (const label of Object.keys(given)) {
    if (!exported.has(label)) warnings.push(`${keyName('labels.headers')}: '${label}' is kept with each request but is not a metric label (not in labels.user)`);
  }
  // The headers the proxy reads, the defaults of labels left out included: two labels on one
  // header would both take its value.
  const proxy = proxyHeadersOf(given);
  const labelByHeader = new Map<string, string>();
  for (const [label, header] of [['task_id', proxy.taskId], ['attempt', proxy.attempt], ...Object.entries(proxy.labels)] as const) {
    const other = labelByHeader.get(header);
    if (other === undefined) {
      labelByHeader.set(header, label);
      continue;
    }
    const byDefault = !Object.hasOwn(given, other);
    errors.push(
      `${keyName('labels.headers')}: header '${header}' would be read for both ${other}${byDefault ? ' (its default header)' : ''} and ${label}; give each label its own header` +
        (byDefault ? ` (map ${other} to another one to read ${header} as ${label})` : ''),
    );
  }
  // A record holds at most MAX_RECORD_LABELS labels: more would cost every proxied call its record.
  const carried = Object.keys(proxy.labels);
  if (carried.length > MAX_RECORD_LABELS) {
    errors.push(`${keyName('labels.headers')}: the proxy would carry ${carried.length} labels (${carried.join(', ')}) into each record; a record holds at most ${MAX_RECORD_LABELS}`);
  }
}
