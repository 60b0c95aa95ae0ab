/**
 * The text of JSON.stringify(value, null, indent), in pieces: a report with a million tasks is
 * ~200 MB of text, which as one string (and its copy as bytes for stdout) would double the peak
 * memory of the run that made it. Arrays and plain objects of the first STREAMED_DEPTH levels are
 * written element by element; anything deeper (or not a plain array or object) is one
 * JSON.stringify, re-indented. For plain data the pieces join to exactly JSON.stringify's text; a
 * toJSON method deeper down is called with '' as its key, not its property name.
 */
export function* jsonTextPieces(value: unknown, indent = 2): Generator<string, void, undefined> {
  let pending = '';
  // JSON.stringify's own rule for a number of spaces: whole, 0 to 10.
  const step = ' '.repeat(Math.min(10, Math.max(0, Math.trunc(indent))));
  for (const piece of pieces(value, '', step, 0)) {
    pending += piece;
    if (pending.length >= PIECE_CHARS) {
      yield pending;
      pending = '';
    }
  }
  if (pending.length > 0) yield pending;
}

const PIECE_CHARS = 1 << 16;
/** The report's own fields and the elements of its arrays (tasks, requests) are written one by one. */
const STREAMED_DEPTH = 2;

function isPlainContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  if (Array.isArray(value)) return true;
  if (value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** `value`'s text at indentation `at`, or nothing when JSON.stringify would leave it out (undefined, a function). */
function* pieces(value: unknown, at: string, step: string, depth: number): Generator<string, void, undefined> {
  if (depth >= STREAMED_DEPTH || !isPlainContainer(value)) {
    const text = JSON.stringify(value, null, step) as string | undefined;
    if (text !== undefined) yield step === '' ? text : text.replaceAll('\n', `\n${at}`);
    return;
  }
  const inner = at + step;
  const open = step === '' ? '' : `\n${inner}`;
  if (Array.isArray(value)) {
    if (value.length === 0) {
      yield '[]';
      return;
    }
    yield '[';
    for (let i = 0; i < value.length; i++) {
      yield i === 0 ? open : `,${open}`;
      let wrote = false;
      for (const piece of pieces(value[i], inner, step, depth + 1)) {
        wrote = true;
        yield piece;
      }
      if (!wrote) yield 'null';
    }
    yield step === '' ? ']' : `\n${at}]`;
    return;
  }
  let first = true;
  for (const key of Object.keys(value)) {
    let head: string | null = `${first ? '{' : ','}${open}${JSON.stringify(key)}:${step === '' ? '' : ' '}`;
    for (const piece of pieces(value[key], inner, step, depth + 1)) {
      if (head !== null) {
        yield head;
        head = null;
        first = false;
      }
      yield piece;
    }
  }
  yield first ? '{}' : step === '' ? '}' : `\n${at}}`;
}
