const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const USAGE_OPTION = Buffer.from('"stream_options":{"include_usage":true}');
const USAGE_OPTION_COMMA = Buffer.from('"stream_options":{"include_usage":true},');
const STREAM_OPTIONS = Buffer.from('stream_options');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The body starts with a UTF-8 byte-order mark (EF BB BF). */
export const hasBom = (raw: Buffer): boolean => raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf;

/** JSON whitespace (RFC 8259): space, tab, LF, CR. */
const isJsonSpace = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/**
 * The request body with `stream_options.include_usage: true` added, for an upstream asked to
 * report usage on a stream. `raw` is the body as the client sent it and `body` its parse (a JSON
 * object). The client's bytes go upstream untouched but for that one member: no re-serialization,
 * so numbers (a seed above 2^53), escapes and key order stay exactly as sent. When the client sent
 * no `stream_options` (the usual case) the member is spliced in after the opening brace;
 * otherwise the value of its `stream_options` is replaced in place by its options with
 * include_usage set (not added as a second member: some servers refuse duplicate keys).
 */
export function withStreamUsage(raw: Buffer, body: Record<string, unknown>): Buffer {
  // The body parsed as an object, so its first byte that is not whitespace (after a byte-order mark) is the opening brace.
  let open = hasBom(raw) ? 3 : 0; // the mark stays where it is
  while (isJsonSpace(raw[open])) open++;
  if (body.stream_options === undefined) {
    let next = open + 1;
    while (isJsonSpace(raw[next])) next++;
    const member = raw[next] === 0x7d ? USAGE_OPTION : USAGE_OPTION_COMMA; // {} has no member to separate
    return Buffer.concat([raw.subarray(0, open + 1), member, raw.subarray(open + 1)], raw.length + member.length);
  }
  const options = { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true };
  const span = lastMemberValue(raw, open, STREAM_OPTIONS);
  if (span === null) return Buffer.from(JSON.stringify({ ...body, stream_options: options })); // not reached: the member is there
  return Buffer.concat([raw.subarray(0, span.start), Buffer.from(JSON.stringify(options)), raw.subarray(span.end)]);
}

/**
 * Where the value of the object's last top-level member called `name` lies (the one JSON.parse
 * keeps), in `raw`, valid JSON whose object opens at `open`. Strings are skipped whole, so a
 * `"stream_options"` inside a message is not taken for the member.
 */
function lastMemberValue(raw: Buffer, open: number, name: Buffer): { start: number; end: number } | null {
  let found: { start: number; end: number } | null = null;
  let i = open + 1;
  for (;;) {
    while (isJsonSpace(raw[i])) i++;
    if (raw[i] !== QUOTE) return found; // the closing brace
    const keyEnd = stringEnd(raw, i);
    const key = raw.subarray(i + 1, keyEnd - 1);
    i = keyEnd;
    while (isJsonSpace(raw[i]) || raw[i] === 0x3a) i++; // whitespace and the colon
    const start = i;
    i = valueEnd(raw, i);
    if (key.equals(name) || (key.includes(BACKSLASH) && JSON.parse(`"${key.toString('utf8')}"`) === name.toString())) found = { start, end: i };
    while (isJsonSpace(raw[i])) i++;
    if (raw[i] === 0x2c) i++; // the comma before the next member
  }
}

/** Just past the string that opens at `i`. */
function stringEnd(raw: Buffer, i: number): number {
  for (let j = i + 1; j < raw.length; j++) {
    if (raw[j] === BACKSLASH) j++;
    else if (raw[j] === QUOTE) return j + 1;
  }
  return raw.length;
}

/** Just past the value that starts at `i`: a string, an object or array (nesting and strings inside skipped), or a number or literal. */
function valueEnd(raw: Buffer, i: number): number {
  if (raw[i] === QUOTE) return stringEnd(raw, i);
  if (raw[i] === 0x7b || raw[i] === 0x5b) {
    let depth = 0;
    for (let j = i; j < raw.length; j++) {
      const byte = raw[j];
      if (byte === QUOTE) j = stringEnd(raw, j) - 1;
      else if (byte === 0x7b || byte === 0x5b) depth++;
      else if ((byte === 0x7d || byte === 0x5d) && --depth === 0) return j + 1;
    }
    return raw.length;
  }
  let j = i;
  while (j < raw.length && raw[j] !== 0x2c && raw[j] !== 0x7d && raw[j] !== 0x5d && !isJsonSpace(raw[j])) j++;
  return j;
}
