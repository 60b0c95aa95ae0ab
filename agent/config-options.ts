import { Option, type Command } from 'commander';
import { configSchema, LOG_LEVELS, type TokenwattConfig } from './config-schema.js';

/**
 * The surface of every config key: its CLI flag, its environment variable, its help text and how
 * a string from either is turned into a value for the schema. Flags and env vars are derived from
 * the key path (retention.samplesHours -> --retention-samples-hours / TOKENWATT_RETENTION_SAMPLES_HOURS)
 * so users can guess them; defaults come from the schema, so they are written once.
 */

/** Result of turning one flag or env string into a candidate value (the schema judges the value). */
export type RawParse = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly reason: string };

export interface ConfigOption {
  /** Key path in the config: 'port', 'retention.samplesHours'. */
  readonly key: string;
  /** Long CLI flag: '--retention-samples-hours'. */
  readonly flag: string;
  /** Placeholder shown in help: '<hours>'. */
  readonly valueName: string;
  /** Attribute under which commander stores the flag in `command.opts()`. */
  readonly flagKey: string;
  readonly env: string;
  readonly description: string;
  /** Default after validation (undefined when the key is optional). */
  readonly default: unknown;
  /** The default as help text shows it. */
  readonly defaultText: string;
  /** Flag or env string to a candidate value. */
  readonly parse: (raw: string) => RawParse;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** A number when it looks like one; otherwise the string, which the schema then refuses by name. */
const parseNumber = (raw: string): RawParse => ({ ok: true, value: NUMBER.test(raw.trim()) ? Number(raw.trim()) : raw });
const parseString = (raw: string): RawParse => ({ ok: true, value: raw });
const parseBoolean = (raw: string): RawParse => {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return { ok: true, value: true };
  if (['false', '0', 'no', 'off'].includes(v)) return { ok: true, value: false };
  return { ok: false, reason: `'${raw}' is not a boolean (true/false, 1/0, yes/no, on/off)` };
};

function parseJson(raw: string, shape: 'object' | 'array'): RawParse {
  try {
    const value: unknown = JSON.parse(raw);
    const isArray = Array.isArray(value);
    if (shape === 'array' ? isArray : value !== null && typeof value === 'object' && !isArray) return { ok: true, value };
    return { ok: false, reason: `JSON must be ${shape === 'array' ? 'an array' : 'an object'}` };
  } catch (error) {
    return { ok: false, reason: `invalid JSON: ${(error as Error).message}` };
  }
}

const splitList = (raw: string): string[] => raw.split(',').map((s) => s.trim()).filter((s) => s !== '');

/** 'a,b,c' or a JSON array. */
const parseList = (raw: string): RawParse => (raw.trim().startsWith('[') ? parseJson(raw, 'array') : { ok: true, value: splitList(raw) });

/** 'key=value,key=value' or a JSON object; numeric values become numbers when `numbers` is set. */
const parseMap = (numbers: boolean) => (raw: string): RawParse => {
  if (raw.trim().startsWith('{')) return parseJson(raw, 'object');
  const map: Record<string, unknown> = {};
  for (const entry of splitList(raw)) {
    const eq = entry.lastIndexOf('=');
    if (eq <= 0) return { ok: false, reason: `'${entry}' is not key=value (expected e.g. a=1,b=2 or a JSON object)` };
    const key = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    map[key] = numbers ? (parseNumber(value) as { value: unknown }).value : value;
  }
  return { ok: true, value: map };
};

/** 'model=gpu+gpu[@tier],...' (e.g. llama-70b=0+1@large,llama-8b=2) or a JSON array of {model, gpus, tier?}. */
const parseReplicas = (raw: string): RawParse => {
  if (raw.trim().startsWith('[')) return parseJson(raw, 'array');
  const replicas: Record<string, unknown>[] = [];
  for (const entry of splitList(raw)) {
    const eq = entry.lastIndexOf('=');
    if (eq <= 0) return { ok: false, reason: `'${entry}' is not model=gpu+gpu[@tier] (e.g. llama-70b=0+1@large)` };
    const model = entry.slice(0, eq).trim();
    const [gpuList = '', tier] = entry.slice(eq + 1).split('@');
    const gpus = gpuList.split('+').map((g) => g.trim()).filter((g) => g !== '').map((g) => (/^\d+$/.test(g) ? Number(g) : g));
    replicas.push(tier === undefined ? { model, gpus } : { model, gpus, tier: tier.trim() });
  }
  return { ok: true, value: replicas };
};

const kebab = (s: string): string => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Defaults as the schema produces them from nothing (node name: this host's name). */
export const CONFIG_DEFAULTS: TokenwattConfig = configSchema.parse({});

/** Read a dotted key path out of a nested object. */
export function getPath(object: unknown, key: string): unknown {
  let current: unknown = object;
  for (const part of key.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function showDefault(value: unknown): string {
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return 'none';
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(',');
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0) return 'none';
    if ('kind' in value && entries.length === 1) return String(value.kind);
    return entries.map(([k, v]) => `${k}=${String(v)}`).join(',');
  }
  return JSON.stringify(value);
}

interface OptionSpec {
  readonly valueName: string;
  readonly description: string;
  readonly parse: (raw: string) => RawParse;
  readonly defaultText?: string;
  /** Flag and env name in place of the one derived from the key path (kebab case, no dashes). */
  readonly name?: string;
}

function option(key: string, spec: OptionSpec): ConfigOption {
  const name = spec.name ?? key.split('.').map(kebab).join('-');
  const value = getPath(CONFIG_DEFAULTS, key);
  return {
    key,
    flag: `--${name}`,
    flagKey: camel(name),
    env: `TOKENWATT_${name.replace(/-/g, '_').toUpperCase()}`,
    valueName: spec.valueName,
    description: spec.description,
    default: value,
    defaultText: spec.defaultText ?? showDefault(value),
    parse: spec.parse,
  };
}

/** Every config key that can be set by flag and environment, in help order. */
export const CONFIG_OPTIONS: readonly ConfigOption[] = [
  option('host', { valueName: '<address>', parse: parseString, description: 'address to bind the HTTP server to (ingest, /metrics, /healthz, /readyz), and the recording proxy unless the config file sets proxy.host; 0.0.0.0 so Prometheus can reach the pod, 127.0.0.1 for local use' }),
  option('port', { valueName: '<port>', parse: parseNumber, description: 'HTTP port for ingest, /metrics, /healthz and /readyz' }),
  option('db', { valueName: '<file>', parse: parseString, description: 'SQLite ledger file' }),
  option('power', { valueName: '<source>', parse: parseString, description: 'GPU power source: auto, nvml, nvidia-smi, simulated or replay:FILE' }),
  option('replayKeepTimestamps', { valueName: '<bool>', parse: parseBoolean, description: 'replay:FILE keeps the trace\'s own timestamps instead of starting it now; the trace must start within --settle-lateness of now (a recorded run: tokenwatt analyze)' }),
  option('replayLoop', { valueName: '<bool>', parse: parseBoolean, description: 'replay:FILE starts over when the trace ends, its timestamps and energy counters going on from the last loop, instead of stopping (which leaves the agent without samples)' }),
  option('replayNvidiaSmiUtcOffset', { valueName: '<minutes>', parse: parseNumber, description: 'replay:FILE of an nvidia-smi capture: minutes east of UTC of the capture machine (its timestamps are local time with no zone), e.g. 120 for UTC+2; as analyze --nvidia-smi-utc-offset' }),
  option('nvmlLibrary', { valueName: '<file>', parse: parseString, defaultText: 'found by the system loader', description: 'path of libnvidia-ml.so' }),
  option('nvidiaSmi', { valueName: '<path>', parse: parseString, defaultText: 'nvidia-smi on PATH', description: 'nvidia-smi executable (--power nvidia-smi, and auto when NVML cannot be used)' }),
  // The one key of a file-only section with a flag and env var: a container mounts the host's tree
  // elsewhere, and doctor has always taken --powercap-root / TOKENWATT_POWERCAP_ROOT for it.
  option('hostPower.powercapRoot', { name: 'powercap-root', valueName: '<dir>', parse: parseString, defaultText: '/sys/class/powercap', description: 'where the RAPL powercap tree is (hostPower.powercapRoot; a container mounts the host\'s elsewhere)' }),
  option('proxyPort', { valueName: '<port>', parse: parseNumber, defaultText: 'proxy.port of the config file, 9478 when it has a proxy: section, else none', description: 'port of the OpenAI-compatible proxy that records every request (needs --upstream or proxy.upstream); it binds to --host unless the config file sets proxy.host' }),
  option('upstream', { valueName: '<url>', parse: parseString, defaultText: 'proxy.upstream of the config file, else none', description: 'serving endpoint the proxy forwards to, e.g. http://127.0.0.1:8000' }),
  option('settleLateness', { valueName: '<seconds>', parse: parseNumber, description: 'seconds a period waits for late request records before it is settled' }),
  option('settlePeriod', { valueName: '<seconds>', parse: parseNumber, description: 'length of one settlement period in seconds (divides 3600)' }),
  option('sampleRateHz', { valueName: '<hz>', parse: parseNumber, description: 'GPU power sampling rate' }),
  option('ingestToken', { valueName: '<token>', parse: parseString, description: 'bearer token required on POST /v1/requests and POST /v1/traces (OTLP) (prefer the environment variable: flags show in ps)' }),
  option('bodyLimitBytes', { valueName: '<bytes>', parse: parseNumber, description: 'largest ingest request body' }),
  option('queueLimit', { valueName: '<records>', parse: parseNumber, description: 'records waiting for the ledger before ingest pushes back' }),
  option('retention.samplesHours', { valueName: '<hours>', parse: parseNumber, description: 'hours of raw power samples kept' }),
  option('retention.requestsDays', { valueName: '<days>', parse: parseNumber, description: 'days of per-request records kept' }),
  option('retention.rollupsDays', { valueName: '<days>', parse: parseNumber, description: 'days of hourly rollups kept (the ESG export reads them)' }),
  option('node', { valueName: '<name>', parse: parseString, defaultText: 'the host name', description: 'node name in the ledger and reports (in Kubernetes: spec.nodeName)' }),
  option('tiers', { valueName: '<map>', parse: parseMap(false), description: 'model to tier map: model=tier,... or JSON' }),
  option('replicas', { valueName: '<list>', parse: parseReplicas, description: 'which GPUs serve which model: model=gpu+gpu[@tier],... or a JSON array of {model,gpus,tier}' }),
  option('attribution.wPrefill', { valueName: '<weight>', parse: parseNumber, description: 'work weight of an uncached prompt token' }),
  option('attribution.wCached', { valueName: '<weight>', parse: parseNumber, description: 'work weight of a prefix-cache-hit prompt token' }),
  option('attribution.wDecode', { valueName: '<weight>', parse: parseNumber, description: 'work weight of a completion token' }),
  option('attribution.maxAttributableGapSeconds', { valueName: '<seconds>', parse: parseNumber, description: 'sampling gaps longer than this are reported as unattributed energy' }),
  option('attribution.idleBaselineW', { valueName: '<map>', parse: parseMap(true), defaultText: 'learned from idle intervals', description: 'idle power per GPU: gpu=watts,... (index or UUID)' }),
  option('labels.cap', { valueName: '<n>', parse: parseNumber, description: 'distinct values kept per metric label; the rest fold into "(other)"' }),
  option('labels.user', { valueName: '<names>', parse: parseList, description: 'request labels copied onto energy metrics (comma-separated)' }),
  option('labels.headers', { valueName: '<map>', parse: parseMap(false), description: 'proxy header per label: label=header,...' }),
  option('logLevel', { valueName: '<level>', parse: parseString, description: `log level: ${LOG_LEVELS.join(', ')}` }),
];

/** Options by key path. */
export const CONFIG_OPTION_BY_KEY: ReadonlyMap<string, ConfigOption> = new Map(CONFIG_OPTIONS.map((o) => [o.key, o]));

/**
 * Add the config flags to a commander command, with help text that shows each default and env
 * var. Commander is deliberately not told about env vars or defaults: loadConfig applies them, so
 * a config file can sit between environment and defaults. Flags the command already has are left
 * alone. `keys` picks a subset (key paths); unknown keys throw, as they are a programming error.
 * `defaultTexts` replaces the shown default for commands that apply their own (the demo).
 */
export function addConfigOptions(command: Command, keys?: readonly string[], defaultTexts: Readonly<Record<string, string>> = {}): Command {
  const chosen = keys === undefined ? CONFIG_OPTIONS : keys.map((key) => {
    const found = CONFIG_OPTION_BY_KEY.get(key);
    if (found === undefined) throw new Error(`addConfigOptions: no config option '${key}'`);
    return found;
  });
  const existing = new Set(command.options.map((o) => o.long));
  if (!existing.has('--config')) {
    command.addOption(new Option('--config <file>', 'config file (YAML or JSON); flags win over environment, environment over file (env: TOKENWATT_CONFIG)'));
  }
  for (const o of chosen) {
    if (existing.has(o.flag)) continue;
    command.addOption(new Option(`${o.flag} ${o.valueName}`, `${o.description} (default: ${defaultTexts[o.key] ?? o.defaultText}, env: ${o.env})`));
  }
  return command;
}
