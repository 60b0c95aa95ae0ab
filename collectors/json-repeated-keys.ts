/**
 * JSON.parse keeps the last of a key given twice in one object: {"completion_tokens": 5,
 * "completion_tokens": 500} reads 500, and another reader may read 5. Ingest refuses such a record
 * instead of storing one of the two silently.
 *
 * Scanning every record's text for repeats cost about 7% of batch ingest's CPU, so it is scanned
 * only when a count says it may repeat a key. Every key is followed by one ':' outside strings,
 * and a key given twice is one key fewer in the parsed value: so a text holding no more ':' than
 * its parsed value has keys repeats none. Times in RFC 3339 hold ':' in strings; without escapes
 * in the text, each of those is also in a parsed string, and is counted there.
 */

import { shownKey } from '../model/request-record.js';

/**
 * Whether the record in text[from, to) (or the array of records), which JSON.parse read as `value`, may give a key twice
 * in an object (false: it does not). The keys counted are the record's and those of its objects
 * named in `objectFields`: counting fewer keys than there are can only send a record to the scan,
 * and reading every value to find the nested objects would cost as much as the count saves.
 */
export function mayRepeatKeys(text: string, from: number, to: number, value: unknown, objectFields: readonly string[]): boolean {
  let colons = 0;
  for (let at = text.indexOf(':', from); at !== -1 && at < to; at = text.indexOf(':', at + 1)) colons++;
  const keys = recordKeyCount(value, objectFields);
  if (colons === keys) return false;
  // An escape (\u003a) puts a ':' in a parsed string that the text does not hold.
  if (text.slice(from, to).includes('\\')) return true;
  return colons !== keys + colonsInStrings(value);
}

/** Keys of a record (or of an array's records) and of their objects named in `objectFields`. */
function recordKeyCount(value: unknown, objectFields: readonly string[]): number {
  if (value === null || typeof value !== 'object') return 0;
  if (Array.isArray(value)) {
    let n = 0;
    for (let i = 0; i < value.length; i++) n += recordKeyCount(value[i], objectFields);
    return n;
  }
  let n = keysOf(value);
  for (const field of objectFields) {
    const nested = (value as Record<string, unknown>)[field];
    if (nested !== null && typeof nested === 'object' && !Array.isArray(nested)) n += keysOf(nested);
  }
  return n;
}

function keysOf(o: object): number {
  let n = 0;
  for (const _key in o) n++;
  return n;
}

function colonsIn(s: string): number {
  let n = 0;
  for (let at = s.indexOf(':'); at !== -1; at = s.indexOf(':', at + 1)) n++;
  return n;
}

/** ':' in the strings of a parsed JSON value, its keys included. */
function colonsInStrings(value: unknown): number {
  if (typeof value === 'string') return colonsIn(value);
  if (value === null || typeof value !== 'object') return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) n += colonsInStrings(value[i]);
    return n;
  }
  for (const key in value) n += colonsIn(key) + colonsInStrings((value as Record<string, unknown>)[key]);
  return n;
}

/** The reason given for a record that repeats a key. */
export const REPEATED_KEY_REASON = 'given more than once in one object: JSON readers differ on which value counts';

/** The request record's object fields: their keys are counted with the record's. */
export const RECORD_OBJECT_FIELDS: readonly string[] = ['labels'];

/** The first key the one request record in `text` (parsed as `value`) gives twice, as a path; undefined if none. */
export function repeatedRecordKey(text: string, value: unknown): string | undefined {
  if (!mayRepeatKeys(text, 0, text.length, value, RECORD_OBJECT_FIELDS)) return undefined;
  return repeatedKeys(text, false).get(0);
}

interface Frame {
  /** Keys seen so far, for an object; null for an array. */
  readonly keys: Set<string> | null;
  /** For an array, the index of its current element. */
  index: number;
  /** The key or index this container sits under in its parent (null at the top). */
  readonly name: string | number | null;
}

/**
 * The first key given twice in each record of a JSON text that JSON.parse accepted, as a path
 * ("labels.team"). The text is one record (its repeat under 0), or, with `elements`, an array
 * of records (each one's under its index). Iterative: nesting as deep as JSON.parse takes.
 */
export function repeatedKeys(text: string, elements: boolean): Map<number, string> {
  const found = new Map<number, string>();
  const stack: Frame[] = [];
  let expectKey = false;
  let lastKey = '';
  const record = (): number => (elements ? (stack[0]?.index ?? 0) : 0);
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const top = stack.at(-1);
      const name = top === undefined ? null : top.keys === null ? top.index : lastKey;
      stack.push({ keys: c === 0x7b ? new Set() : null, index: 0, name });
      expectKey = c === 0x7b;
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
      i++;
    } else if (c === 0x2c /* , */) {
      const top = stack.at(-1);
      if (top?.keys === null) top.index++;
      else expectKey = true;
      i++;
    } else if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      if (expectKey) {
        const raw = text.slice(i + 1, end - 1);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, end)) as string) : raw;
        const keys = stack.at(-1)?.keys;
        if (keys?.has(key) && !found.has(record())) found.set(record(), pathOf(stack, key, elements));
        keys?.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = end;
    } else i++;
  }
  return found;
}

/** Index just past the closing quote of the string opening at `open`. */
function stringEnd(text: string, open: number): number {
  for (let from = open + 1; ; ) {
    const quote = text.indexOf('"', from);
    if (quote === -1) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** "labels.team": the names of the open containers (not the records' array) and the key. */
function pathOf(stack: readonly Frame[], key: string, elements: boolean): string {
  const parts: string[] = [];
  for (let depth = elements ? 2 : 1; depth < stack.length; depth++) parts.push(shownKey(String((stack[depth] as Frame).name)));
  parts.push(shownKey(key));
  return parts.join('.');
}
