import { createReadStream } from 'node:fs';

/**
 * Line and field scanning for power trace files: no regular expressions on the hot path and no
 * split of the whole text, so multi-million-line traces parse in linear time with little garbage.
 * Files are read as a stream (forEachLineOfFile): a day of an 8-GPU node at 10 Hz is ~600 MB,
 * more than one JavaScript string can hold.
 */

/** A line longer than this is refused: a trace line is ~100 characters; this is some other file. */
export const MAX_LINE_CHARS = 1 << 20;

/** Told of a line longer than MAX_LINE_CHARS (its number) instead of being given the line. */
export type TooLong = (lineNumber: number) => void;

/**
 * Call `visit(line, lineNumber)` for every line (1-based numbers; "\r\n" and a leading BOM handled).
 * With `tooLong`, a line longer than MAX_LINE_CHARS goes to it instead (as LineSplitter does).
 */
export function forEachLine(text: string, visit: (line: string, lineNumber: number) => void, tooLong?: TooLong): void {
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let lineNumber = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNumber++;
    const stop = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    if (tooLong !== undefined && stop - start > MAX_LINE_CHARS) tooLong(lineNumber);
    else if (!(end === text.length && stop === start)) visit(text.slice(start, stop), lineNumber); // no phantom line after a final newline
    start = end + 1;
  }
}

/**
 * Text fed in pieces, visited line by line with exactly forEachLine's numbering and rules (leading
 * BOM, "\r\n", no phantom line after a final newline). A piece may end mid-line. A line longer than
 * MAX_LINE_CHARS goes to `tooLong` (without it, push throws naming the line) and is dropped as it
 * comes, never held: the limit is the line's length, wherever the pieces are cut.
 */
export class LineSplitter {
  private rest = '';
  private lineNumber = 0;
  private started = false;
  /** Inside a line already reported as too long: drop text up to the next newline. */
  private dropping = false;

  constructor(
    private readonly visit: (line: string, lineNumber: number) => void,
    private readonly tooLong: TooLong = (lineNumber) => {
      throw new Error(`line ${lineNumber} is longer than ${MAX_LINE_CHARS} characters: not a CSV trace`);
    },
  ) {}

  push(piece: string): void {
    let text = this.rest.length > 0 ? this.rest + piece : piece;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    if (this.dropping) {
      const end = text.indexOf('\n');
      if (end < 0) return;
      this.dropping = false;
      start = end + 1;
    }
    for (;;) {
      const end = text.indexOf('\n', start);
      if (end < 0) break;
      this.emit(text, start, end);
      start = end + 1;
    }
    this.rest = start === 0 ? text : text.slice(start);
    // Past MAX_LINE_CHARS + 1 (room for a "\r" before the newline), the line is too long whatever follows.
    if (this.rest.length > MAX_LINE_CHARS + 1) {
      this.rest = '';
      this.dropping = true;
      this.tooLong(++this.lineNumber);
    }
  }

  end(): void {
    const rest = this.rest;
    this.rest = '';
    if (rest.length > 0 && rest !== '\r') this.emit(rest, 0, rest.length);
  }

  private emit(text: string, start: number, end: number): void {
    this.lineNumber++;
    const stop = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    if (stop - start > MAX_LINE_CHARS) this.tooLong(this.lineNumber);
    else this.visit(text.slice(start, stop), this.lineNumber);
  }
}

/** Bytes read from a file at a time by forEachLineOfFile. */
export const READ_CHUNK_BYTES = 1 << 20;

/**
 * Call `visit(line, lineNumber)` for every line of a UTF-8 file, read as a stream (`chunkBytes`
 * at a time, READ_CHUNK_BYTES unless a test asks for smaller pieces), with forEachLine's rules.
 * Rejects when the file cannot be read.
 */
export async function forEachLineOfFile(path: string, visit: (line: string, lineNumber: number) => void, tooLong?: TooLong, chunkBytes = READ_CHUNK_BYTES): Promise<void> {
  const splitter = new LineSplitter(visit, tooLong);
  // encoding: the stream decodes with a StringDecoder, so a character split across chunks stays whole.
  for await (const piece of createReadStream(path, { encoding: 'utf8', highWaterMark: chunkBytes })) splitter.push(piece as string);
  splitter.end();
}

/** The first `count` comma-separated fields of a line, trimmed, plus how many fields the line has in all. */
export function leadingFields(line: string, count: number): { fields: string[]; total: number } {
  const fields: string[] = [];
  let start = 0;
  let total = 0;
  for (;;) {
    const comma = line.indexOf(',', start);
    const end = comma < 0 ? line.length : comma;
    if (total < count) fields.push(unquote(line.slice(start, end).trim()));
    total++;
    if (comma < 0) return { fields, total };
    start = comma + 1;
  }
}

/** Strip one pair of surrounding double quotes (spreadsheet exports quote strings). */
function unquote(field: string): string {
  return field.length >= 2 && field.charCodeAt(0) === 34 && field.charCodeAt(field.length - 1) === 34 ? field.slice(1, -1) : field;
}

/** A decimal number, or undefined when the text is not exactly one (Number('') is 0, '0x10' is 16: refused). */
export function decimal(text: string): number | undefined {
  if (text.length === 0 || text.length > 40) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // digits . - + e E only
    if (!((c >= 48 && c <= 57) || c === 46 || c === 45 || c === 43 || c === 101 || c === 69)) return undefined;
  }
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/** Short, printable excerpt of a bad value for an error message. */
export function excerpt(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}
