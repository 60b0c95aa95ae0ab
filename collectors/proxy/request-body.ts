const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const USAGE_OPTION = Buffer.from('"stream_options":{"include_usage":true}');
const USAGE_OPTION_COMMA = Buffer.from('"stream_options":{"include_usage":true},');

/** JSON whitespace (RFC 8259): space, tab, LF, CR. */
const isJsonSpace = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/**
 * The request body with `stream_options.include_usage: true` added, for an upstream asked to
 * report usage on a stream. `raw` is the body as the client sent it and `body` its parse (a JSON
 * object). When the client sent no `stream_options` at all (the usual case) the member is spliced
 * in after the opening brace, so the rest of the client's bytes go upstream untouched: no
 * re-serialization, and numbers, escapes and key order stay exactly as sent. Otherwise the
 * client's options are kept with include_usage set, and the body is re-serialized.
 */
export function withStreamUsage(raw: Buffer, body: Record<string, unknown>): Buffer {
  if (body.stream_options === undefined) {
    // The body parsed as an object, so its first byte that is not whitespace is the opening brace.
    let open = 0;
    while (isJsonSpace(raw[open])) open++;
    if (raw[open] === 0x7b) {
      let next = open + 1;
      while (isJsonSpace(raw[next])) next++;
      const member = raw[next] === 0x7d ? USAGE_OPTION : USAGE_OPTION_COMMA; // {} has no member to separate
      return Buffer.concat([raw.subarray(0, open + 1), member, raw.subarray(open + 1)], raw.length + member.length);
    }
  }
  const options = isObject(body.stream_options) ? body.stream_options : {};
  return Buffer.from(JSON.stringify({ ...body, stream_options: { ...options, include_usage: true } }));
}
