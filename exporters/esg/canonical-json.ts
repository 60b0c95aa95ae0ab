import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted at every level, no whitespace, numbers as JSON.stringify
 * writes them (the shortest round-trip form, so the same double always prints the same).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** Fields outside the hash: when it was generated, and the hash itself. */
const UNHASHED = new Set(['generated_at', 'content_sha256']);

/** SHA-256 (hex) over the canonical serialisation of a report without generated_at and content_sha256. */
export function contentSha256(report: object): string {
  const hashed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(report)) if (!UNHASHED.has(key)) hashed[key] = value;
  return createHash('sha256').update(canonicalJson(hashed)).digest('hex');
}

/** Does the stored hash match the content? (A false means the file was edited after it was written.) */
export function checkContentSha256(report: { readonly content_sha256?: unknown }): { ok: boolean; stored: string; computed: string } {
  const computed = contentSha256(report);
  const stored = typeof report.content_sha256 === 'string' ? report.content_sha256 : '';
  return { ok: stored === computed, stored, computed };
}
