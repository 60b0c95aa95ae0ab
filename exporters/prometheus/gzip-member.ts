import { constants, crc32, deflateRaw, deflateRawSync } from 'node:zlib';

/**
 * One gzip member (RFC 1952) built from pieces compressed separately, so that text which does not
 * change need not be compressed again:
 *
 *   header | deflate(piece 1, sync flush) | ... | deflate(piece n, sync flush) | deflate(last, final) | CRC-32 | ISIZE
 *
 * A sync flush ends a piece's deflate data on a byte boundary with no final block, and each piece
 * is compressed from a fresh state (no back-reference reaches into the piece before it), so the
 * concatenation is one valid deflate stream. The member's CRC-32 is combined from the pieces'
 * CRCs. This is a single member, not several concatenated ones: every gzip reader accepts it.
 */

/** Gzip header: deflate, no flags, no mtime, OS unix (what zlib writes). */
export const GZIP_HEADER: Buffer = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);

const SYNC_FLUSH = { finishFlush: constants.Z_SYNC_FLUSH };

/** Raw deflate of `bytes` ending in a sync flush (no final block), on the libuv threadpool. */
export function deflatePiece(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    deflateRaw(bytes, SYNC_FLUSH, (error, out) => (error ? reject(error) : resolve(out)));
  });
}

/**
 * Finish a member: `prefix` is GZIP_HEADER and the sync-flushed pieces of a text of `length`
 * bytes whose CRC-32 is `crc`, as one buffer or as the pieces themselves; `last` is appended
 * (compressed here, on the calling thread: it is meant to be small) and the member closed.
 * Returns the member as chunks whose concatenation is the member: the pieces are not copied
 * (a scrape writes them out as they are).
 */
export function finishGzipMember(prefix: Buffer | readonly Buffer[], crc: number, length: number, last: Buffer): Buffer[] {
  const tail = deflateRawSync(last);
  const trailer = Buffer.allocUnsafe(8);
  // zlib.crc32 of an empty buffer is 0 whatever the starting value (zlib reads a NULL buffer as a reset).
  trailer.writeUInt32LE(last.length === 0 ? crc >>> 0 : crc32(last, crc), 0);
  trailer.writeUInt32LE((length + last.length) % 2 ** 32, 4);
  return Buffer.isBuffer(prefix) ? [prefix, tail, trailer] : [...prefix, tail, trailer];
}

// --- CRC-32 combination (zlib's crc32_combine, in GF(2) polynomial arithmetic) ------------------

const POLY = 0xedb88320;

/** a(x) * b(x) modulo the CRC-32 polynomial (reflected bit order). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, for k = 0..31. */
const X2N: number[] = (() => {
  const table: number[] = [];
  let p = 0x40000000; // x^1
  table.push(p);
  for (let k = 1; k < 32; k += 1) table.push((p = multModP(p, p)));
  return table;
})();

/** x^(n * 2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31] ?? 0, p);
    n = Math.floor(n / 2);
    k += 1;
  }
  return p;
}

/** CRC-32 of A followed by B, from crc(A), crc(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB === 0) return crcA >>> 0;
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}

// --- Accept-Encoding ------------------------------------------------------------------------------

/**
 * Whether an Accept-Encoding header allows gzip (RFC 9110 section 12.5.3): `gzip` or `x-gzip` with
 * a non-zero q, or else `*` with a non-zero q. Prometheus sends `Accept-Encoding: gzip`.
 */
export function acceptsGzip(header: string | readonly string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = typeof header === 'string' ? header : header.join(',');
  let gzip: number | undefined;
  let any: number | undefined;
  for (const part of value.split(',')) {
    const [coding = '', ...params] = part.split(';');
    let q = 1;
    for (const param of params) {
      const m = /^\s*q\s*=\s*(.*?)\s*$/i.exec(param);
      if (m) q = /^[0-9.]+$/.test(m[1] ?? '') ? Number(m[1]) : NaN;
    }
    if (!(q > 0)) q = 0; // a malformed weight refuses
    const name = coding.trim().toLowerCase();
    if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (name === '*') any = q;
  }
  return gzip !== undefined ? gzip > 0 : any !== undefined && any > 0;
}
