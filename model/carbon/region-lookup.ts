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
  const found = lookupRegion(table, region);
  if (found) return found;
  throw new CarbonInputError(field, `unknown region "${region}". ${unknownRegionHelp(table, region)}`);
}

/**
 * What to do about a region the table lacks: the closest rows, what the table holds and the
 * alternatives (the region itself is not repeated, so a caller can show it its own way).
 */
export function unknownRegionHelp(table: readonly GridIntensityFactor[], region: string): string {
  const suggestions = closestIds(table, normalizeRegionId(region));
  const hint = suggestions.length > 0 ? `Did you mean ${suggestions.map((s) => `"${s}"`).join(', ')}? ` : '';
  return (
    `${hint}The shipped table has ${table.length} regions ` +
    '(ISO country codes such as "FR", eGRID subregions such as "egrid:CAMX", cloud regions such as "aws:us-east-1"); ' +
    'for any other grid set carbon.intensityGPerKwh with its source, or carbon.intensityFile'
  );
}

/** Whether the table has a row for `region` (in any of the accepted spellings). */
export function hasRegion(table: readonly GridIntensityFactor[], region: string): boolean {
  return lookupRegion(table, region) !== undefined;
}

function lookupRegion(table: readonly GridIntensityFactor[], region: string): GridIntensityFactor | undefined {
  const wanted = normalizeRegionId(region);
  const byId = new Map(table.map((f) => [normalizeRegionId(f.id), f]));
  return byId.get(wanted) ?? byId.get(`egrid:${wanted}`);
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
