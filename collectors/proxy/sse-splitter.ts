const LF = 0x0a;
const CR = 0x0d;

/**
 * Splits a server-sent-events byte stream into events at blank lines (a line end followed by
 * another: LF, CRLF or CR, as the SSE spec allows), keeping every byte: concatenating what it
 * returns, plus {@link takePending}, gives back exactly the bytes pushed. Works on bytes, not
 * text, so a multi-byte character split across chunks is never re-encoded.
 */
export class SseSplitter {
  private parts: Buffer[] = [];
  private pendingLength = 0;
  /** Bytes on the current line so far. */
  private lineLength = 0;
  /** The previous byte was CR: a following LF belongs to the same line end. */
  private afterCR = false;
  /** The last event went out ending at a CR that ended its chunk: an LF next is its CRLF's. */
  private lfOwed = false;
  /** The last piece handed out that was such an LF (see {@link endsPrevious}). */
  private owedPiece: Buffer | null = null;

  /**
   * Feed bytes; returns the events they complete, each with its terminating blank line. The one
   * exception to "each with its terminator": the LF of a CRLF whose CR ended the previous event and
   * its chunk comes out as a piece of its own ({@link endsPrevious}), so that whatever is done with
   * the next event (dropped, rewritten) leaves it be, and it can go where its event went.
   */
  push(chunk: Buffer): Buffer[] {
    const events: Buffer[] = [];
    if (this.lfOwed && chunk.length > 0) {
      this.lfOwed = false;
      if (chunk[0] === LF) {
        this.owedPiece = chunk.subarray(0, 1);
        events.push(this.owedPiece);
        this.afterCR = false;
        chunk = chunk.subarray(1);
      }
    }
    const start = chunk.indexOf(CR) === -1 ? this.scanLf(chunk, events) : this.scanAny(chunk, events);
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.subarray(start);
      this.parts.push(rest);
      this.pendingLength += rest.length;
    }
    return events;
  }

  /**
   * The common case, a chunk without CR (servers end lines with LF): jumps from line end to line
   * end with indexOf (memchr) instead of looking at every byte. Returns where the unfinished event starts.
   */
  private scanLf(chunk: Buffer, events: Buffer[]): number {
    const n = chunk.length;
    if (n === 0) return 0;
    let i = 0;
    // The LF of a CRLF split across chunks belongs to the line end already counted.
    if (this.afterCR && chunk[0] === LF) i = 1;
    this.afterCR = false;
    let start = 0;
    while (i < n) {
      const j = chunk.indexOf(LF, i);
      if (j === -1) {
        this.lineLength += n - i;
        break;
      }
      if (j > i || this.lineLength > 0) {
        this.lineLength = 0; // the end of a line with something on it
      } else {
        // An empty line: the event ends here.
        events.push(this.take(start === 0 && j + 1 === n ? chunk : chunk.subarray(start, j + 1)));
        start = j + 1;
      }
      i = j + 1;
    }
    return start;
  }

  /** Any chunk (LF, CRLF or CR line ends), byte by byte. Returns where the unfinished event starts. */
  private scanAny(chunk: Buffer, events: Buffer[]): number {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === LF && this.afterCR) {
        this.afterCR = false;
        continue;
      }
      this.afterCR = byte === CR;
      if (byte !== LF && byte !== CR) {
        this.lineLength++;
        continue;
      }
      if (this.lineLength > 0) {
        this.lineLength = 0;
        continue;
      }
      // An empty line: the event ends here. (A CRLF's LF, if it comes, starts the next raw slice.)
      const end = byte === CR && chunk[i + 1] === LF ? i + 2 : i + 1;
      if (end === i + 2) {
        i++;
        this.afterCR = false;
      }
      events.push(this.take(chunk.subarray(start, end)));
      start = end;
      if (end === chunk.length && byte === CR) this.lfOwed = true;
    }
    return start;
  }

  /** The piece is the LF that ends the event handed out before it (its CR ended a chunk). */
  endsPrevious(piece: Buffer): boolean {
    return piece === this.owedPiece;
  }

  /** Bytes of an event not yet ended by a blank line. */
  get pendingBytes(): number {
    return this.pendingLength;
  }

  /** Hand out the unfinished event's bytes (at end of stream, or when it grows too large). */
  takePending(): Buffer {
    return this.take(Buffer.alloc(0));
  }

  private take(tail: Buffer): Buffer {
    if (this.parts.length === 0) return tail;
    const parts = this.parts;
    if (tail.length > 0) parts.push(tail);
    this.parts = [];
    this.pendingLength = 0;
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }
}

/** The fields of one event that the proxy reads. */
export interface SseFields {
  /** `event:` name, or null (a plain `message`). */
  readonly event: string | null;
  /** `data:` lines joined with LF, or null when the event has none (comments, keep-alives). */
  readonly data: string | null;
}

const LINE_BREAK = /\r\n|\r|\n/;

/** The bytes start with `data: `. */
function startsWithData(raw: Buffer): boolean {
  return raw[0] === 0x64 && raw[1] === 0x61 && raw[2] === 0x74 && raw[3] === 0x61 && raw[4] === 0x3a && raw[5] === 0x20;
}

/** Read the `event` and `data` fields of one raw event (comments and unknown fields are ignored). */
export function parseSseEvent(raw: Buffer): SseFields {
  // The common case, one `data: ...` line ended by LF LF: no split, no per-line work.
  const n = raw.length;
  if (n >= 8 && raw[n - 1] === LF && raw[n - 2] === LF && raw.indexOf(LF) === n - 2 && startsWithData(raw) && raw.indexOf(CR) === -1) {
    return { event: null, data: raw.toString('utf8', 6, n - 2) };
  }
  let event: string | null = null;
  let data: string[] | null = null;
  for (const line of raw.toString('utf8').split(LINE_BREAK)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (data ??= []).push(value);
    else if (field === 'event') event = value;
  }
  return { event, data: data === null ? null : data.join('\n') };
}

/** Splits text into lines with their ends kept: lines at even indexes, the ends at odd ones. */
const LINE_BREAK_KEPT = /(\r\n|\r|\n)/;
const BOM = '\ufeff';

/** The line is a `data` field (`data`, or `data:` and a value). */
function isDataLine(line: string): boolean {
  return line.startsWith('data') && (line.length === 4 || line.charCodeAt(4) === 0x3a);
}

/**
 * The event with its data replaced by `data`, on one `data:` line where its first data line was.
 * Every other line (`id:`, `event:`, `retry:`, comments) and every line end stays as it was, so a
 * client that resumes with Last-Event-ID or reads CRLF streams sees the event it would have seen.
 */
export function withDataLine(raw: Buffer, data: string): Buffer {
  const parts = raw.toString('utf8').split(LINE_BREAK_KEPT);
  let out = '';
  let replaced = false;
  for (let i = 0; i < parts.length; i += 2) {
    let line = parts[i] as string;
    const end = parts[i + 1] ?? '';
    // A stream's byte order mark rides on its first line; it stays in front of it.
    if (i === 0 && line.startsWith(BOM)) {
      out += BOM;
      line = line.slice(1);
    }
    if (!isDataLine(line)) out += line + end;
    else if (!replaced) {
      out += `data: ${data}${end}`;
      replaced = true;
    }
  }
  return Buffer.from(out, 'utf8');
}
