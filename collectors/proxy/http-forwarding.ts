import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const NOTHING: ReadonlySet<string> = new Set();

/**
 * The first value of header `name` (lower case) in a raw header list, or undefined. Reads the
 * list node already has, where `req.headers` would build an object of every header, and keeps a
 * repeated header's first value, where `req.headers` joins them.
 */
export function rawHeader(rawHeaders: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const header = rawHeaders[i] as string;
    if (header.length === name.length && header.toLowerCase() === name) return rawHeaders[i + 1];
  }
  return undefined;
}

/**
 * Filter a raw header list (`[name, value, name, value, ...]`, names in their original case and
 * order) for the next hop: hop-by-hop headers, those the Connection header names, and `drop`.
 * Appends to `out` (given one) and returns it.
 */
export function forwardableHeaders(rawHeaders: readonly string[], drop: ReadonlySet<string> = NOTHING, out: string[] = []): string[] {
  let named: Set<string> | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      named ??= new Set();
      for (const token of (rawHeaders[i + 1] as string).split(',')) named.add(token.trim().toLowerCase());
    }
  }
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || drop.has(lower) || (named !== null && named.has(lower))) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

/** Request headers for the upstream: forwardable ones, with Host set to the upstream's. */
export function upstreamRequestHeaders(rawHeaders: readonly string[], upstreamHost: string, drop: readonly string[] = []): string[] {
  return forwardableHeaders(rawHeaders, new Set(['host', ...drop]), ['Host', upstreamHost]);
}

/** Thrown into an upstream request that took too long; answered with 504. */
export class UpstreamTimeoutError extends Error {
  constructor(readonly phase: 'headers' | 'idle', ms: number) {
    super(phase === 'headers' ? `the upstream sent no response within ${ms} ms` : `the upstream went silent for ${ms} ms`);
    this.name = 'UpstreamTimeoutError';
  }
}

/**
 * Answer with an OpenAI-style error body (`{"error": {message, type, code}}`), which the openai
 * clients surface as the exception message. If the response has already started, it can only be
 * cut off, which the client sees as a broken stream rather than a clean end.
 */
export function sendProxyError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.writableEnded || res.destroyed) return;
  const body = JSON.stringify({ error: { message: `tokenwatt proxy: ${message}`, type: 'proxy_error', code } });
  // The reason phrase is named: a relay that failed half-way may have left the upstream's on `res`.
  res.writeHead(status, STATUS_CODES[status] ?? 'Error', { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Start the client's response with the upstream's status code and headers; returns why it cannot
 * (null when it could). Node's client reads status lines that node's server will not write (a
 * code below 100, a control character in the reason phrase): such an answer must cost its call
 * a 502, not the agent an uncaught exception. The upstream's reason phrase is not relayed (it
 * means nothing to clients, HTTP/2 dropped it): node writes the standard one for the code.
 */
export function relayHead(res: ServerResponse, status: number, headers: readonly string[]): string | null {
  if (!Number.isInteger(status) || status < 100 || status > 999) return `the upstream answered with an invalid status code (${status})`;
  try {
    res.writeHead(status, headers as unknown as OutgoingHttpHeaders);
    return null;
  } catch (err) {
    return `the upstream's answer cannot be relayed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** Raised by {@link readBody} when the body exceeds its limit. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Read a request body up to `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => readBodyThen(req, limit, (err, body) => (err ? reject(err) : resolve(body as Buffer))));
}

/**
 * {@link readBody} with a callback, called once: (null, body) or (error) — BodyTooLargeError, or
 * the client went away before its body was complete. A body that came in one chunk is not copied.
 */
export function readBodyThen(req: IncomingMessage, limit: number, done: (err: Error | null, body?: Buffer) => void): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    done(new BodyTooLargeError(limit));
    return;
  }
  let first: Buffer | null = null;
  let chunks: Buffer[] | null = null;
  let size = 0;
  let failed = false;
  const fail = (err: Error): void => {
    if (failed) return;
    failed = true;
    first = null;
    chunks = null;
    done(err);
  };
  req.on('data', (chunk: Buffer) => {
    if (failed) return;
    size += chunk.length;
    if (size > limit) fail(new BodyTooLargeError(limit));
    else if (first === null) first = chunk;
    else (chunks ??= [first]).push(chunk);
  });
  req.on('end', () => {
    if (failed) return;
    failed = true; // settled
    done(null, chunks !== null ? Buffer.concat(chunks, size) : (first ?? Buffer.alloc(0)));
  });
  req.on('error', fail);
  req.on('aborted', () => fail(new Error('the client closed the request before its body was complete')));
}
