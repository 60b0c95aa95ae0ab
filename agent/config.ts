import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { crossCheckConfig, keyName, type ConfigSource } from './config-checks.js';
import { configErrorMap, describeGot, formatPath, nearest, unknownKeyReason, valueAt } from './config-errors.js';
import { readConfigFile, type ConfigFile } from './config-file.js';
import { CONFIG_OPTIONS, getPath, type ConfigOption } from './config-options.js';
import { configSchema, type TokenwattConfig } from './config-schema.js';

export { addConfigOptions, CONFIG_DEFAULTS, CONFIG_OPTIONS, type ConfigOption } from './config-options.js';
export { configSchema, LOG_LEVELS, parsePowerSetting, type LogLevel, type PowerSetting, type TokenwattConfig, type TokenwattConfigInput } from './config-schema.js';
export type { ConfigSource } from './config-checks.js';

export interface LoadConfigInput {
  /** Parsed CLI flags, keyed as commander's `opts()` keys them (camelCase of the flag); key paths work too. */
  readonly flags?: Readonly<Record<string, unknown>>;
  /** Environment (process.env). Empty values count as unset. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** YAML or JSON file; when absent, flags.config then TOKENWATT_CONFIG name it. */
  readonly configFile?: string;
  /**
   * False for the commands that read the file without run's flags and environment (doctor,
   * analyze, export): the checks of how the agent would run are left to `run` (crossCheckConfig).
   * Default true.
   */
  readonly forRun?: boolean;
}

export type LoadConfigResult =
  | {
      readonly ok: true;
      readonly config: TokenwattConfig;
      /** Where each key's value came from (option key paths and file-only sections). */
      readonly sources: Readonly<Record<string, ConfigSource>>;
      /** Legal but noteworthy setups (log them at start-up). */
      readonly warnings: readonly string[];
    }
  | { readonly ok: false; readonly errors: readonly string[] };

type Layer = 'env' | 'flag';

/** Options whose key path is the longest prefix of an issue's path. */
function optionFor(path: readonly PropertyKey[]): { option: ConfigOption; rest: readonly PropertyKey[] } | undefined {
  for (let n = path.length; n > 0; n -= 1) {
    const key = path.slice(0, n).map(String).join('.');
    const option = CONFIG_OPTIONS.find((o) => o.key === key);
    if (option !== undefined) return { option, rest: path.slice(n) };
  }
  return undefined;
}

/** Keys a strict object in the schema accepts at `path` (for "did you mean"). */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: unknown = configSchema;
  const unwrap = (s: unknown): unknown => {
    let current = s as { _zod?: { def: { type: string; innerType?: unknown; element?: unknown } } };
    while (current._zod && ['default', 'prefault', 'optional', 'nullable'].includes(current._zod.def.type)) {
      current = current._zod.def.innerType as typeof current;
    }
    return current;
  };
  for (const part of path) {
    const current = unwrap(schema) as { _zod: { def: { type: string; element?: unknown } }; shape?: Record<string, unknown> };
    if (typeof part === 'number' && current._zod.def.type === 'array') schema = current._zod.def.element;
    else if (current.shape !== undefined) schema = current.shape[String(part)];
    else return [];
  }
  const target = unwrap(schema) as { shape?: Record<string, unknown> };
  return target.shape === undefined ? [] : Object.keys(target.shape);
}

/** One message per problem, with the file line where known (for sorting). */
function fileIssueMessages(issue: z.core.$ZodIssue, file: ConfigFile): { line: number; message: string }[] {
  const at = (path: readonly PropertyKey[], key?: string) => {
    const line = file.lineOf(path, key);
    return { line: line ?? 0, where: line === undefined ? file.name : `${file.name}:${line}` };
  };
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(issue.path);
    return issue.keys.map((key) => {
      const { line, where } = at(issue.path, key);
      return { line, message: `${where}: ${formatPath([...issue.path, key])}: ${unknownKeyReason(key, known)}` };
    });
  }
  const { line, where } = at(issue.path);
  const path = formatPath(issue.path) || '(top level)';
  return [{ line, message: `${where}: ${path}: ${issue.message}${describeGot(issue, valueAt(file.data, issue.path))}` }];
}

function layerIssueMessage(issue: z.core.$ZodIssue, layer: Layer, values: Record<string, unknown>): string {
  const found = optionFor(issue.path);
  if (found === undefined) return `${formatPath(issue.path)}: ${issue.message}`;
  const { option, rest } = found;
  const sub = rest.length > 0 ? `${formatPath(rest)}: ` : '';
  const from = layer === 'env' ? option.env : option.flag;
  return `${option.flag} / ${option.env}: ${sub}${issue.message}${describeGot(issue, valueAt(values, issue.path))} (from ${from})`;
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let current = target;
  for (const part of parts.slice(0, -1)) {
    const next = current[part];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) current[part] = {};
    current = current[part] as Record<string, unknown>;
  }
  current[parts[parts.length - 1] ?? key] = value;
}

/** The values one layer (environment or flags) sets, parsed from strings; errors for unparseable ones. */
function readLayer(layer: Layer, input: LoadConfigInput): { values: Record<string, unknown>; keys: Set<string>; failedKeys: string[]; errors: string[] } {
  const values: Record<string, unknown> = {};
  const keys = new Set<string>();
  const failedKeys: string[] = [];
  const errors: string[] = [];
  for (const option of CONFIG_OPTIONS) {
    let raw: unknown;
    if (layer === 'env') {
      const value = input.env?.[option.env];
      raw = value === undefined || value.trim() === '' ? undefined : value;
    } else {
      raw = input.flags?.[option.flagKey] ?? input.flags?.[option.key];
    }
    if (raw === undefined) continue;
    keys.add(option.key);
    if (typeof raw !== 'string') {
      // Programmatic overrides (e.g. the demo forcing the simulated source) may pass values directly.
      setPath(values, option.key, raw);
      continue;
    }
    const parsed = option.parse(raw);
    if (parsed.ok) setPath(values, option.key, parsed.value);
    else {
      errors.push(`${option.flag} / ${option.env}: ${parsed.reason} (from ${layer === 'env' ? option.env : option.flag})`);
      failedKeys.push(option.key);
    }
  }
  return { values, keys, failedKeys, errors };
}

function topOf(key: string): string {
  return key.split('.')[0] ?? key;
}

/** Note the top-level key an issue is about (or, for unknown keys at the top, those keys). */
function markInvalid(tops: Set<string>, issue: z.core.$ZodIssue): void {
  const [top] = issue.path;
  if (top !== undefined) tops.add(String(top));
  else if (issue.code === 'unrecognized_keys') for (const key of issue.keys) tops.add(key);
}

/**
 * The checks that span keys, run even though some values were refused, so that every mistake is
 * reported at once. The refused top-level keys fall back to their defaults for this, and a
 * message that names one of them is left out: it would be about a value the user did not give.
 */
function crossCheckDespite(merged: Record<string, unknown>, sources: Readonly<Record<string, ConfigSource>>, invalidTops: ReadonlySet<string>, forRun: boolean): string[] {
  const candidate = structuredClone(merged);
  const dropped = new Set(invalidTops);
  for (const top of dropped) delete candidate[top];
  // A merge can still be refused (values valid in each layer but not together): drop those keys too.
  for (let round = 0; round < 3; round += 1) {
    const parsed = configSchema.safeParse(candidate, { error: configErrorMap });
    if (parsed.success) {
      const names = [...dropped].flatMap((top) => [
        top,
        ...CONFIG_OPTIONS.filter((o) => o.key === top || o.key.startsWith(`${top}.`)).map((o) => keyName(o.key)),
      ]);
      return crossCheckConfig(parsed.data, sources, forRun).errors.filter((message) => !names.some((name) => mentions(message, name)));
    }
    const before = dropped.size;
    for (const issue of parsed.error.issues) markInvalid(dropped, issue);
    if (dropped.size === before) return [];
    for (const top of dropped) delete candidate[top];
  }
  return [];
}

/** `name` appears in `message` as a whole name, not inside a longer one (port is not proxyPort). */
function mentions(message: string, name: string): boolean {
  let from = message.indexOf(name);
  while (from >= 0) {
    const before = message[from - 1];
    const after = message[from + name.length];
    if ((before === undefined || !/[\w.-]/.test(before)) && (after === undefined || !/[\w-]/.test(after))) return true;
    from = message.indexOf(name, from + 1);
  }
  return false;
}

/**
 * Whether the file sets something under top-level `key` that no option covers (a section such as
 * carbon or hostPower.overheadW): such a key is marked as from the file as a whole.
 */
function fileOnlyUnder(fileData: Record<string, unknown>, key: string): boolean {
  if (CONFIG_OPTIONS.some((o) => o.key === key)) return false;
  const value = fileData[key];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return !CONFIG_OPTIONS.some((o) => o.key.startsWith(`${key}.`));
  return Object.keys(value).some((sub) => !CONFIG_OPTIONS.some((o) => o.key === `${key}.${sub}` || o.key.startsWith(`${key}.${sub}.`)));
}

/** TOKENWATT_* variables that are close to a setting's name but not one: likely typos. */
function envTypoWarnings(env: Readonly<Record<string, string | undefined>>): string[] {
  const known = new Set([...CONFIG_OPTIONS.map((o) => o.env), 'TOKENWATT_CONFIG']);
  return Object.keys(env)
    .filter((name) => name.startsWith('TOKENWATT_') && !known.has(name))
    .flatMap((name) => {
      const suggestion = nearest(name, known);
      return suggestion === undefined ? [] : [`${name}: not a tokenwatt setting (did you mean ${suggestion}?); ignored`];
    });
}

/**
 * Build the agent's configuration from defaults, a YAML/JSON file, the environment and flags
 * (flags > env > file > defaults). Each layer is validated on its own, so a mistake is reported
 * even where a higher layer overrides it, and every mistake is reported at once, each naming its
 * key, flag or env var (or file and line) and the reason.
 */
export function loadConfig(input: LoadConfigInput): LoadConfigResult {
  const errors: string[] = [];
  /** Top-level keys with a value refused on its own: checks that span keys skip them. */
  const invalidTops = new Set<string>();
  /** Without the file's values, a check that spans keys could blame one the file sets. */
  let fileUnread = false;
  const env = input.env ?? {};
  const flagFile = input.flags?.config;
  const envFile = env.TOKENWATT_CONFIG?.trim();
  const configPath = input.configFile ?? (typeof flagFile === 'string' ? flagFile : undefined) ?? (envFile === '' ? undefined : envFile);

  let fileData: Record<string, unknown> = {};
  if (configPath !== undefined) {
    const read = readConfigFile(configPath);
    if (!read.ok) {
      errors.push(...read.errors);
      fileUnread = true;
    }
    else {
      fileData = read.file.data;
      const checked = configSchema.safeParse(fileData, { error: configErrorMap });
      if (!checked.success) {
        const messages = checked.error.issues.flatMap((issue) => fileIssueMessages(issue, read.file));
        errors.push(...messages.sort((a, b) => a.line - b.line).map((m) => m.message));
        for (const issue of checked.error.issues) markInvalid(invalidTops, issue);
      }
    }
  }

  const layers = (['env', 'flag'] as const).map((layer) => {
    const read = readLayer(layer, input);
    errors.push(...read.errors);
    for (const key of read.failedKeys) invalidTops.add(topOf(key));
    const checked = configSchema.safeParse(read.values, { error: configErrorMap });
    if (!checked.success) {
      errors.push(...checked.error.issues.map((issue) => layerIssueMessage(issue, layer, read.values)));
      for (const issue of checked.error.issues) markInvalid(invalidTops, issue);
    }
    return { layer, ...read };
  });

  const merged = structuredClone(fileData);
  const sources: Record<string, ConfigSource> = {};
  for (const option of CONFIG_OPTIONS) sources[option.key] = getPath(fileData, option.key) === undefined ? 'default' : 'file';
  for (const key of Object.keys(fileData)) if (fileOnlyUnder(fileData, key)) sources[key] = 'file';
  for (const { layer, values, keys } of layers) {
    for (const key of keys) {
      setPath(merged, key, getPath(values, key));
      sources[key] = layer;
    }
  }
  if (configPath !== undefined) resolveFilePaths(merged, configPath);
  const forRun = input.forRun ?? true;
  if (errors.length > 0) return { ok: false, errors: fileUnread ? errors : [...errors, ...crossCheckDespite(merged, sources, invalidTops, forRun)] };
  const final = configSchema.safeParse(merged, { error: configErrorMap });
  if (!final.success) {
    return { ok: false, errors: final.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}${describeGot(issue, valueAt(merged, issue.path))}`) };
  }
  const checks = crossCheckConfig(final.data, sources, forRun);
  if (checks.errors.length > 0) return { ok: false, errors: checks.errors };
  return { ok: true, config: final.data, sources, warnings: [...checks.warnings, ...envTypoWarnings(env)] };
}

/** Relative file paths in the file-only sections are relative to the config file (carbon.intensityFile). */
function resolveFilePaths(merged: Record<string, unknown>, configPath: string): void {
  const carbon = merged.carbon;
  if (carbon === null || typeof carbon !== 'object' || Array.isArray(carbon)) return;
  const section = carbon as Record<string, unknown>;
  if (typeof section.intensityFile === 'string' && section.intensityFile !== '' && !isAbsolute(section.intensityFile)) {
    section.intensityFile = resolve(dirname(configPath), section.intensityFile);
  }
}

/** The config with secrets replaced, for logging the effective configuration. */
export function redactConfig(config: TokenwattConfig): TokenwattConfig {
  return config.ingestToken === undefined ? config : { ...config, ingestToken: '(redacted)' };
}
