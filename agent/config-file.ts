import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, extname } from 'node:path';
import type { Document } from 'yaml';

const requireModule = createRequire(import.meta.url);

/** The yaml module, loaded with the first config file: an agent configured by flags never holds it. */
function yaml(): typeof import('yaml') {
  return requireModule('yaml') as typeof import('yaml');
}

/** A config file read and parsed, able to say on which line a key path sits. */
export interface ConfigFile {
  /** Short name used in messages (the file's base name). */
  readonly name: string;
  readonly data: Record<string, unknown>;
  /** 1-based line of the value at `path` (or of the key itself with `key`), when known. */
  lineOf(path: readonly PropertyKey[], key?: string): number | undefined;
}

const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Read a YAML or JSON config file. `.json` files must be strict JSON; anything else is YAML 1.2
 * (a superset of JSON). Returns every syntax error found, each with its line.
 */
export function readConfigFile(path: string): { ok: true; file: ConfigFile } | { ok: false; errors: string[] } {
  const name = basename(path);
  let source: string;
  try {
    // Looked at before it is read: a FIFO would block the start, a device would be read without end.
    const stats = statSync(path);
    if (!stats.isFile()) return { ok: false, errors: [`${path}: not a regular file; is this a config file?`] };
    if (stats.size > MAX_CONFIG_BYTES) return { ok: false, errors: [`${path}: larger than ${MAX_CONFIG_BYTES} bytes; is this a config file?`] };
    source = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, errors: [`${path}: cannot read the config file (${code ?? (error as Error).message})`] };
  }
  if (Buffer.byteLength(source) > MAX_CONFIG_BYTES) return { ok: false, errors: [`${path}: larger than ${MAX_CONFIG_BYTES} bytes; is this a config file?`] };

  if (extname(path).toLowerCase() === '.json') {
    try {
      JSON.parse(source);
    } catch (error) {
      return { ok: false, errors: [`${name}: invalid JSON: ${(error as Error).message}`] };
    }
  }
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  // merge: YAML 1.1 merge keys (`<<: *defaults`), as Kubernetes and Helm users write them.
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  if (doc.errors.length > 0) {
    return { ok: false, errors: doc.errors.map((e) => `${name}:${lineAt(e.pos[0])}: ${e.message.split('\n')[0]}`) };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias expanded past the limit (a "billion laughs" file) throws here, not in doc.errors.
    return { ok: false, errors: [`${name}: ${(error as Error).message}`] };
  }
  if (data === null || data === undefined) return { ok: true, file: { name, data: {}, lineOf: () => undefined } };
  if (typeof data !== 'object' || Array.isArray(data)) {
    return { ok: false, errors: [`${name}: the top level must be a mapping of keys (port: 9477, ...), got ${Array.isArray(data) ? 'a list' : typeof data}`] };
  }
  const lineOf = (p: readonly PropertyKey[], key?: string): number | undefined => lineOfPath(doc, p, key, lineAt);
  const prototypeKeys = prototypeKeyPaths(data);
  if (prototypeKeys.length > 0) {
    return {
      ok: false,
      errors: prototypeKeys.map((p) => {
        const line = lineOf(p, '__proto__');
        return `${name}${line === undefined ? '' : `:${line}`}: ${[...p, '__proto__'].join('.')}: "__proto__" is not a usable key (JavaScript would read it as the object's prototype, so its value would be lost)`;
      }),
    };
  }
  return { ok: true, file: { name, data: data as Record<string, unknown>, lineOf } };
}

/** Paths of the mappings that hold a `__proto__` key: zod's records drop it without a word. */
function prototypeKeyPaths(value: unknown, path: (string | number)[] = [], into: (string | number)[][] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return into;
  if (Array.isArray(value)) {
    value.forEach((item, i) => prototypeKeyPaths(item, [...path, i], into));
    return into;
  }
  if (Object.prototype.hasOwnProperty.call(value, '__proto__')) into.push(path);
  for (const [key, item] of Object.entries(value)) prototypeKeyPaths(item, [...path, key], into);
  return into;
}

function lineOfPath(doc: Document, path: readonly PropertyKey[], key: string | undefined, lineAt: (offset: number) => number): number | undefined {
  const { isMap, isNode } = yaml();
  const keys = path.map((p) => (typeof p === 'number' ? p : String(p)));
  const node: unknown = keys.length === 0 ? doc.contents : doc.getIn(keys, true);
  if (key !== undefined && isMap(node)) {
    const pair = node.items.find((item) => isNode(item.key) && String((item.key as { value?: unknown }).value) === key);
    const range = pair && isNode(pair.key) ? pair.key.range : undefined;
    return range ? lineAt(range[0]) : undefined;
  }
  return isNode(node) && node.range ? lineAt(node.range[0]) : undefined;
}
