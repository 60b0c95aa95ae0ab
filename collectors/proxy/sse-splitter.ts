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

  /** Feed bytes; returns the events they complete, each with its terminating blank line. */
  push(chunk: Buffer): Buffer[] {
    const events: Buffer[] = [];
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
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.parts.push(rest);
      this.pendingLength += rest.length;
    }
    return events;
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
    const out = this.parts.length === 0 ? tail : Buffer.concat([...this.parts, tail]);
    this.parts = [];
    this.pendingLength = 0;
    return out;
  }
}

/** The fields of one event that the proxy reads. */
export interface SseFields {
  /** `event:` name, or null (a plain `message`). */
  readonly event: string | null;
  /** `data:` lines joined with LF, or null when the event has none (comments, keep-alives). */
  readonly data: string | null;
}

/** Read the `event` and `data` fields of one raw event (comments and unknown fields are ignored). */
export function parseSseEvent(raw: Buffer): SseFields {
  let event: string | null = null;
  let data: string[] | null = null;
  for (const line of raw.toString('utf8').split(/\r\n|\r|\n/)) {
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
