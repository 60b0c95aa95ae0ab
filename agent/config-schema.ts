import { hostname } from 'node:os';
import { z } from 'zod';
import { userLabelNameProblems } from '../exporters/prometheus/label-names.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../model/attribution-config.js';
import { refuseReservedReportKey } from '../model/report-keys.js';
import { recordLabelName } from '../model/request-record.js';
import { carbonSection, engineMetricsSection, hostPowerSection, otlpSection, proxySection } from './config-sections.js';

/**
 * The agent's whole configuration as one zod schema: types, defaults and per-key validation.
 * Every key has a default, so any layer (file, environment, flags) can be validated on its own;
 * checks that span keys live in config-checks.ts. Surface names (flags, env vars) are in
 * config-options.ts.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const POWER_KINDS = ['auto', 'nvml', 'nvidia-smi', 'simulated'] as const;
/** Where GPU power comes from: `--power auto|nvml|nvidia-smi|simulated|replay:FILE`. */
export type PowerSetting = { readonly kind: (typeof POWER_KINDS)[number] } | { readonly kind: 'replay'; readonly file: string };

/** Parse the `--power` value; null when it is none of the accepted forms. */
export function parsePowerSetting(value: string): PowerSetting | null {
  if (value.startsWith('replay:')) {
    const file = value.slice('replay:'.length).trim();
    return file === '' ? null : { kind: 'replay', file };
  }
  const kind = POWER_KINDS.find((k) => k === value);
  return kind === undefined ? null : { kind };
}

const intIn = (min: number, max: number, unit = '') => {
  const error = `must be an integer ${min}..${max}${unit}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};
/** A positive number up to max (NaN and infinities are refused by z.number). */
const positive = (max: number, unit: string) => {
  const error = `must be a number > 0 and <= ${max}${unit}`;
  return z.number({ error }).gt(0, { error }).max(max, { error });
};
const nonNegative = (max: number, unit: string) => {
  const error = `must be a number 0..${max}${unit}`;
  return z.number({ error }).min(0, { error }).max(max, { error });
};
const text = (what: string, max = 256) =>
  z
    .string({ error: (issue) => (issue.input === undefined ? 'required' : `expected a string (${what})`) })
    .trim()
    .min(1, { error: `must not be empty (${what})` })
    .max(max, { error: `must be at most ${max} characters` });

const powerSetting = z.string({ error: "must be auto, nvml, nvidia-smi, simulated or replay:FILE" }).transform((value, ctx) => {
  const parsed = parsePowerSetting(value.trim());
  if (parsed === null) {
    ctx.addIssue({ code: 'custom', message: 'must be auto, nvml, nvidia-smi, simulated or replay:FILE' });
    return z.NEVER;
  }
  return parsed;
});

const httpUrl = z.string({ error: 'must be an http(s) URL' }).refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}, { error: 'must be an http(s) URL such as http://127.0.0.1:8000' });

/** A GPU named by index or UUID (or MIG instance UUID); kept as a string, the form RecordContext resolves. */
const gpuRef = z
  .union([intIn(0, 1023), text('a GPU index or UUID', 128)], { error: 'must be a GPU index (0..1023) or UUID' })
  .transform(String);

const headerName = z
  .string({ error: 'must be an HTTP header name' })
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { error: 'must be an HTTP header name (token characters only)' })
  .transform((h) => h.toLowerCase());

/** A tier: the ESG report's own row keys are not tier names. */
const tierName = text('a tier name', 64).superRefine(refuseReservedReportKey);

const replica = z.strictObject({
  model: text('a model name'),
  gpus: z.array(gpuRef, { error: 'must be a list of GPU indices or UUIDs' }).min(1, { error: 'must name at least one GPU' }).max(64),
  tier: tierName.optional(),
});

export const configSchema = z.strictObject({
  /** Bind address. 0.0.0.0: in a DaemonSet Prometheus and the serving pods reach the agent on the pod IP, as with node-exporter and dcgm-exporter. */
  host: text('a bind address (IP or host name)').default('0.0.0.0'),
  /** 0 asks the OS for a free port (tests, benchmarks); the bound port is logged. */
  port: intIn(0, 65535).default(9477),
  db: text('a file path', 4096).default('./tokenwatt.db'),
  power: powerSetting.prefault('auto'),
  /** replay:FILE emits the trace's own timestamps (paced in real time) instead of moving them to now. */
  replayKeepTimestamps: z.boolean({ error: 'must be true or false' }).default(false),
  /** replay:FILE starts over at the end of the trace (timestamps and energy counters go on rising) instead of stopping. */
  replayLoop: z.boolean({ error: 'must be true or false' }).default(false),
  /**
   * replay:FILE of an nvidia-smi capture: its timestamps are the capture machine's local time with
   * no zone, read as UTC plus this many minutes east of UTC (as `analyze --nvidia-smi-utc-offset`).
   * Plain traces carry epoch ms and ignore it.
   */
  replayNvidiaSmiUtcOffset: intIn(-18 * 60, 18 * 60, ' minutes east of UTC').default(0),
  nvmlLibrary: text('a file path', 4096).optional(),
  /** nvidia-smi executable for `--power nvidia-smi` (and auto's fallback); default "nvidia-smi" on PATH. */
  nvidiaSmi: text('a file path', 4096).optional(),
  proxyPort: intIn(1, 65535).optional(),
  upstream: httpUrl.optional(),
  /** Seconds a period waits for late records before it is settled. */
  settleLateness: nonNegative(86_400, ' seconds').default(120),
  /** Length of one settlement period; divides an hour so periods never straddle an hourly rollup. */
  settlePeriod: intIn(1, 3600, ' seconds').refine((s) => 3600 % s === 0, { error: 'must divide 3600 (periods align with hourly rollups): 1, 2, 5, 10, 15, 30, 60, ...' }).default(10),
  sampleRateHz: positive(100, ' Hz').default(10),
  ingestToken: text('a non-empty token', 4096).optional(),
  bodyLimitBytes: intIn(1024, 1024 ** 3, ' bytes').default(8 * 1024 * 1024),
  /** Records waiting for the ledger write; beyond it ingest answers 429/503 instead of buffering without bound. */
  queueLimit: intIn(1, 10_000_000, ' records').default(100_000),
  retention: z
    .strictObject({
      samplesHours: positive(24 * 366, ' hours').default(48),
      requestsDays: positive(3660, ' days').default(7),
      rollupsDays: positive(36_600, ' days').default(400),
    })
    .prefault({}),
  /** Node name in the ledger and reports; in Kubernetes set TOKENWATT_NODE from spec.nodeName. */
  node: text('a node name').default(() => hostname()),
  tiers: z.record(text('a model name'), tierName, { error: 'must map model names to tier names' }).default({}),
  replicas: z.array(replica, { error: 'must be a list of {model, gpus, tier?}' }).max(256).default([]),
  /** Defaults, and the reasons for them, are the model's (model/attribution-config.ts). */
  attribution: z
    .strictObject({
      wPrefill: nonNegative(1e6, '').default(DEFAULT_ATTRIBUTION_CONFIG.wPrefill),
      wCached: nonNegative(1e6, '').default(DEFAULT_ATTRIBUTION_CONFIG.wCached),
      wDecode: nonNegative(1e6, '').default(DEFAULT_ATTRIBUTION_CONFIG.wDecode),
      maxAttributableGapSeconds: positive(3600, ' seconds').default(DEFAULT_ATTRIBUTION_CONFIG.maxAttributableGapMs / 1000),
      idleBaselineW: z.record(text('a GPU index or UUID', 128), nonNegative(5000, ' W'), { error: 'must map GPU index or UUID to watts' }).default({}),
    })
    .prefault({}),
  labels: z
    .strictObject({
      cap: intIn(1, 10_000, ' values').default(50),
      user: z
        .array(z.string({ error: 'must be a label name' }), { error: 'must be a list of label names' })
        .superRefine((names, ctx) => {
          for (const { index, reason } of userLabelNameProblems(names)) {
            ctx.addIssue({ code: 'custom', message: reason, path: index === null ? [] : [index], input: index === null ? names : names[index] });
          }
        })
        .default(['team', 'feature']),
      headers: z
        // The proxy carries each of these labels into its records: they are held to a record's rules.
        .record(recordLabelName, headerName, { error: (issue) => (issue.code === 'invalid_type' ? 'must map label names to HTTP header names' : undefined) })
        .default({ task_id: 'x-task-id', attempt: 'x-attempt', team: 'x-team', feature: 'x-feature' }),
    })
    .prefault({}),
  logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  // Sections owned by other parts of tokenwatt (see config-sections.ts).
  carbon: carbonSection,
  hostPower: hostPowerSection,
  proxy: proxySection,
  engineMetrics: engineMetricsSection,
  otlp: otlpSection,
});

/** The validated configuration, defaults applied. */
export type TokenwattConfig = z.output<typeof configSchema>;
/** What a config file (or a layer of flags/env) may contain before defaults. */
export type TokenwattConfigInput = z.input<typeof configSchema>;
