import { createHash, timingSafeEqual } from 'node:crypto';

/** Why a request was refused: the message for its body and the WWW-Authenticate challenge (RFC 6750). */
export interface BearerRefusal {
  readonly message: string;
  readonly challenge: string;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * The ingest token check shared by every write endpoint on the agent's port (POST /v1/requests,
 * POST /v1/traces): null when `Authorization: Bearer <token>` matches. Compared as SHA-256
 * digests in constant time, so neither the token's length nor its prefix leaks through timing.
 */
export function bearerChecker(token: string): (authorization: string | undefined) => BearerRefusal | null {
  const expected = sha256(token);
  return (header) => {
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (match === null) return { message: 'bearer token required', challenge: 'Bearer realm="tokenwatt"' };
    if (!timingSafeEqual(sha256(match[1] ?? ''), expected)) {
      return { message: 'invalid bearer token', challenge: 'Bearer realm="tokenwatt", error="invalid_token"' };
    }
    return null;
  };
}
