/**
 * The metric families the agent exports, from its own catalog (exporters/prometheus/metric-catalog.ts),
 * plus the few the rules need that the catalog does not list yet (PENDING_METRICS). Rules and the
 * dashboard may read only these and their own recording rules.
 */
import { METRIC_CATALOG, type MetricSpec } from '../../../exporters/prometheus/metric-catalog.js';

type Family = Pick<MetricSpec, 'name' | 'type' | 'labels' | 'userLabels'>;

/**
 * Gauges the emissions rules multiply by (the agent's carbon factors, per agent). Not in the
 * catalog yet: the config+metrics owner is asked to add them.
 */
export const PENDING_METRICS: readonly Family[] = [
  { name: 'tokenwatt_grid_intensity_grams_per_joule', type: 'gauge', labels: [] },
  { name: 'tokenwatt_pue_ratio', type: 'gauge', labels: [] },
];

/**
 * Labels the rules group by that the catalog does not give the metric yet: J/token by batch and
 * cache bucket needs output tokens by bucket, and the per-tenant anomaly needs requests by team.
 */
export const PENDING_LABELS: Readonly<Record<string, readonly string[]>> = {
  tokenwatt_tokens_total: ['cache_bucket', 'batch_bucket'],
  tokenwatt_requests_total: ['team'],
};

export function agentFamilies(): Family[] {
  const catalog: Family[] = Object.values(METRIC_CATALOG);
  const names = new Set(catalog.map((f) => f.name));
  return [...catalog, ...PENDING_METRICS.filter((p) => !names.has(p.name))];
}

/** Series names the families expose (histograms add _bucket, _sum and _count), and `up`. */
export function seriesNames(): Set<string> {
  const names = new Set<string>(['up']);
  for (const family of agentFamilies()) {
    names.add(family.name);
    if (family.type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(family.name + suffix);
  }
  return names;
}

/** What the rules need that the catalog does not have yet, e.g. "tokenwatt_pue_ratio", "tokenwatt_tokens_total{team}". */
export function stillPending(): string[] {
  const catalog = new Map<string, Family>(Object.values(METRIC_CATALOG).map((m) => [m.name, m]));
  const hasLabel = (name: string, label: string) => {
    const family = catalog.get(name);
    return family !== undefined && (family.labels.includes(label) || (family.userLabels === true && label === 'team'));
  };
  return [
    ...PENDING_METRICS.filter((p) => !catalog.has(p.name)).map((p) => p.name),
    ...Object.entries(PENDING_LABELS).flatMap(([name, labels]) => labels.filter((l) => !hasLabel(name, l)).map((l) => `${name}{${l}}`)),
  ];
}

