/** Fields that legitimately differ between two computations of the same report. */
const IGNORED = new Set(['generated_at', 'content_sha256']);
const MAX_DIFFERENCES = 1000;
/** Headline sections first, so the figures a reader cares about lead the list. */
const ORDER = ['period', 'nodes', 'totals', 'sci', 'tasks', 'quality', 'factors', 'inputs', 'coverage', 'breakdowns', 'cross', 'series'];

/**
 * Differences between a stored report and a recomputed one, as JSON paths with both values
 * ("totals.gpu_energy_kwh: report 12.5, ledger 12.75"). Empty when they match.
 */
export function diffReports(stored: unknown, recomputed: unknown, labels: { stored: string; recomputed: string } = { stored: 'report', recomputed: 'recomputed' }): string[] {
  const out: string[] = [];
  walk(stored, recomputed, '', out, labels);
  return out.slice(0, MAX_DIFFERENCES);
}

function walk(a: unknown, b: unknown, path: string, out: string[], labels: { stored: string; recomputed: string }): void {
  if (out.length >= MAX_DIFFERENCES) return;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) out.push(`${path || '/'}: ${labels.stored} has ${a.length} entries, ${labels.recomputed} ${b.length}`);
    for (let i = 0; i < Math.min(a.length, b.length); i += 1) walk(a[i], b[i], `${path}[${i}]`, out, labels);
    return;
  }
  if (isObject(a) && isObject(b)) {
    const rank = (k: string): number => (path === '' && ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length);
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort((x, y) => rank(x) - rank(y) || x.localeCompare(y));
    for (const key of keys) {
      if (path === '' && IGNORED.has(key)) continue;
      walk(a[key], b[key], path ? `${path}.${key}` : key, out, labels);
    }
    return;
  }
  if (!Object.is(a, b)) out.push(`${path || '/'}: ${labels.stored} ${show(a)}, ${labels.recomputed} ${show(b)}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function show(v: unknown): string {
  const text = v === undefined ? '(absent)' : JSON.stringify(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
