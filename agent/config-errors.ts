import type { z } from 'zod';

/**
 * Turning zod issues into one readable line each: what is wrong, the value that was given, and
 * for a misspelt key the nearest valid one.
 */

/** Keys whose values never appear in a message. */
const SECRET_KEYS: ReadonlySet<string> = new Set(['ingestToken']);

/** Per-parse error map: short reasons for zod's generic messages (key-specific messages win). */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === 'invalid_type') return issue.input === undefined ? 'required' : `expected ${issue.expected}`;
  if (issue.code === 'invalid_union') return 'matches none of the accepted forms';
  // A map's key: say what the key must be, not zod's "Invalid key in record".
  if (issue.code === 'invalid_key') return issue.issues[0]?.message;
  return undefined;
};

/** 'replicas[1].gpus[0]' from ['replicas', 1, 'gpus', 0]. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out === '' ? String(part) : `${out}.${String(part)}`), '');
}

/** The value at a path, for "got ..." (undefined when absent). */
export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

/** ", got 'abc'" for the value an issue is about; empty when there is nothing useful to show. */
export function describeGot(issue: z.core.$ZodIssue, value: unknown): string {
  // invalid_key: the path names the key at fault; its value is not what is wrong.
  if (issue.code === 'unrecognized_keys' || issue.code === 'invalid_key' || value === undefined) return '';
  if (issue.path.some((p) => typeof p === 'string' && SECRET_KEYS.has(p))) return ', got (redacted)';
  if (typeof value === 'string') return `, got '${value.length > 60 ? `${value.slice(0, 57)}...` : value}'`;
  const json = JSON.stringify(value) ?? String(value);
  return `, got ${json.length > 60 ? `${json.slice(0, 57)}...` : json}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    let diagonal = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j += 1) {
      const above = row[j] ?? 0;
      row[j] = Math.min(above + 1, (row[j - 1] ?? 0) + 1, diagonal + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] ?? Math.max(a.length, b.length);
}

/** The candidate nearest to `word` when it is close enough to be a likely typo. */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

/** "unknown key 'prot' (did you mean 'port'?)". */
export function unknownKeyReason(key: string, known: readonly string[]): string {
  const suggestion = nearest(key, known);
  return suggestion === undefined ? `unknown key '${key}' (known: ${known.join(', ')})` : `unknown key '${key}' (did you mean '${suggestion}'?)`;
}
