import { CarbonInputError } from './carbon-input-error.js';
import type { GridIntensityFactor } from './grid-intensity-factor.js';

/**
 * Canonical form of a region name: providers written as "aws us-east-1", "AWS/us-east-1" or
 * "aws:us-east-1" all mean the same row; country codes are case-insensitive.
 */
export function normalizeRegionId(region: string): string {
  const trimmed = region.trim().toLowerCase().replace(/\s+/g, ' ');
  const provider = /^(aws|gcp|azure|egrid)[ /:](.+)$/.exec(trimmed);
  if (provider) return `${provider[1]}:${(provider[2] ?? '').trim()}`;
  return trimmed;
}

/** Find a region's factor, or fail naming the closest rows (never fall back silently). */
export function findRegionFactor(table: readonly GridIntensityFactor[], region: string, field = 'carbon.region'): GridIntensityFactor {
  const wanted = normalizeRegionId(region);
  const byId = new Map(table.map((f) => [normalizeRegionId(f.id), f]));
  const found = byId.get(wanted) ?? byId.get(`egrid:${wanted}`);
  if (found) return found;
  const suggestions = closestIds(table, wanted);
  const hint = suggestions.length > 0 ? `; did you mean ${suggestions.map((s) => `"${s}"`).join(', ')}?` : '';
  throw new CarbonInputError(
    field,
    `unknown region "${region}"${hint} The shipped table has ${table.length} regions ` +
      '(ISO country codes such as "FR", eGRID subregions such as "egrid:CAMX", cloud regions such as "aws:us-east-1"); ' +
      'for any other grid set carbon.intensityGPerKwh with its source, or carbon.intensityFile',
  );
}

function closestIds(table: readonly GridIntensityFactor[], wanted: string): string[] {
  const scored = table.map((f) => {
    const id = normalizeRegionId(f.id);
    const tail = id.includes(':') ? id.slice(id.indexOf(':') + 1) : id;
    const distance = Math.min(editDistance(id, wanted), editDistance(tail, wanted));
    return { id: f.id, distance };
  });
  return scored
    .filter((s) => s.distance <= Math.max(2, Math.floor(wanted.length / 4)))
    .sort((a, b) => a.distance - b.distance || a.id.localeCompare(b.id))
    .slice(0, 3)
    .map((s) => s.id);
}

/** Levenshtein distance, bounded inputs (region names are short). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    let diagonal = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j += 1) {
      const above = row[j] ?? 0;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(above + 1, (row[j - 1] ?? 0) + 1, diagonal + cost);
      diagonal = above;
    }
  }
  return row[b.length] ?? 0;
}
