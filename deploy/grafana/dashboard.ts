/**
 * The tokenwatt Grafana dashboard, as data. deploy/scripts/generate.ts writes it to
 * deploy/grafana/tokenwatt.json; test/deploy/grafana-dashboard.test.ts checks that the file is
 * current and that every query names a recording rule of deploy/prometheus/tokenwatt.rules.yaml or
 * a metric the agent exports.
 *
 * Panels are laid out in rows, left to right, 24 grid columns wide.
 */

/** Grafana's datasource reference, templated so the dashboard works with any Prometheus. */
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' } as const;

type PanelType = 'timeseries' | 'stat' | 'table';

/** One query of a panel. */
interface Query {
  readonly expr: string;
  readonly legend?: string;
  /** Table panels read the latest value of each series. */
  readonly instant?: boolean;
}

/** What a panel shows; its id and position are assigned by the layout. */
interface PanelSpec {
  readonly type: PanelType;
  readonly title: string;
  readonly description: string;
  readonly queries: readonly Query[];
  /** A Grafana unit id, or "suffix:TEXT". */
  readonly unit?: string;
  readonly width: number;
  readonly height?: number;
  readonly stacked?: boolean;
  readonly decimals?: number;
  /** Extra field config (value mappings, thresholds) for stat panels. */
  readonly fieldDefaults?: Record<string, unknown>;
}

interface RowSpec {
  readonly title: string;
  readonly panels: readonly PanelSpec[];
}

const J_PER_TOKEN = 'suffix: J/token';
const TIER = '{tier=~"$tier"}';

const ts = (
  title: string,
  description: string,
  queries: readonly Query[],
  unit: string,
  width = 12,
  extra: Partial<PanelSpec> = {},
): PanelSpec => ({ type: 'timeseries', title, description, queries, unit, width, ...extra });

const stat = (title: string, description: string, expr: string, unit: string, extra: Partial<PanelSpec> = {}): PanelSpec => ({
  type: 'stat',
  title,
  description,
  queries: [{ expr }],
  unit,
  width: 4,
  height: 4,
  ...extra,
});

export const ROWS: readonly RowSpec[] = [
  {
    title: 'Overview',
    panels: [
      stat(
        'Power data',
        'MEASURED when every agent reads real GPU power; SIMULATED when any agent runs a simulated power source (demo or power=simulated). Simulated figures are not measurements.',
        'max(tokenwatt_power_source_info{simulated="true"}) or vector(0)',
        'none',
        {
          fieldDefaults: {
            mappings: [
              { type: 'value', options: { '0': { text: 'MEASURED', color: 'green', index: 0 }, '1': { text: 'SIMULATED', color: 'red', index: 1 } } },
            ],
            color: { mode: 'thresholds' },
            thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] },
          },
        },
      ),
      stat('J per output token (marginal)', 'Attributed GPU energy over output tokens, all tiers, last 5 minutes. Idle energy excluded.', ':tokenwatt_joules_per_output_token:ratio_rate5m', J_PER_TOKEN, { decimals: 3 }),
      stat('J per output token (fully loaded)', 'GPU energy including idle, plus host energy, times PUE, over output tokens, last 5 minutes.', ':tokenwatt_joules_per_output_token_fully_loaded:ratio_rate5m', J_PER_TOKEN, { decimals: 3 }),
      stat('Idle share', 'Share of measured GPU energy drawn while no request was active.', ':tokenwatt_idle_energy_share:ratio_rate5m', 'percentunit'),
      stat('Waste share', 'Share of attributed energy spent on failed, cancelled and retried attempts, last hour.', ':tokenwatt_waste_energy_share:ratio_rate1h', 'percentunit'),
      stat('gCO2e per 1,000 output tokens', 'Facility energy times grid intensity, per 1,000 output tokens, last 5 minutes.', ':tokenwatt_gco2e_per_1k_output_tokens:ratio_rate5m', 'suffix: gCO2e', { decimals: 3 }),
    ],
  },
  {
    title: 'Power and energy',
    panels: [
      ts('GPU power', 'Power of each GPU as sampled by the agents.', [{ expr: 'tokenwatt_gpu_power_watts{instance=~"$instance"}', legend: '{{instance}} GPU {{gpu}}' }], 'watt'),
      ts(
        'Where the energy goes',
        'Measured GPU energy split into attributed (to requests), idle and unattributed (gaps), plus host energy (RAPL or a configured overhead), as power.',
        [
          { expr: 'sum(tier:tokenwatt_energy_joules:rate5m)', legend: 'attributed' },
          { expr: 'sum(instance:tokenwatt_idle_energy_joules:rate5m)', legend: 'idle' },
          { expr: 'sum(rate(tokenwatt_unattributed_energy_joules_total[5m]))', legend: 'unattributed' },
          { expr: 'sum(rate(tokenwatt_host_energy_joules_total[5m]))', legend: 'host (RAPL)' },
        ],
        'watt',
        12,
        { stacked: true },
      ),
      ts('Attributed power by tier', 'Energy attributed to requests per second, by model tier.', [{ expr: `tier:tokenwatt_energy_joules:rate5m${TIER}`, legend: '{{tier}}' }], 'watt'),
      ts('Idle share by node', 'Share of each node\'s measured GPU energy drawn with no request active.', [{ expr: 'instance:tokenwatt_idle_energy_share:ratio_rate5m{instance=~"$instance"}', legend: '{{instance}}' }], 'percentunit'),
    ],
  },
  {
    title: 'Energy per token',
    panels: [
      ts('J per output token by tier', 'Attributed energy over output tokens, by model tier (marginal: idle excluded).', [{ expr: `tier:tokenwatt_joules_per_output_token:ratio_rate5m${TIER}`, legend: '{{tier}}' }], J_PER_TOKEN),
      ts(
        'J per output token: marginal and fully loaded',
        'Fleet-wide. Fully loaded adds idle GPU energy, host energy and PUE.',
        [
          { expr: ':tokenwatt_joules_per_output_token:ratio_rate5m', legend: 'marginal' },
          { expr: ':tokenwatt_joules_per_output_token_fully_loaded:ratio_rate5m', legend: 'fully loaded' },
        ],
        J_PER_TOKEN,
      ),
      ts('J per output token by batch size', 'Within each tier, by the batch-size bucket the request ran in.', [{ expr: `tier_batch_bucket:tokenwatt_joules_per_output_token:ratio_rate5m${TIER}`, legend: '{{tier}} batch {{batch_bucket}}' }], J_PER_TOKEN),
      ts('J per output token by prefix-cache state', 'Within each tier, by prefix-cache bucket (miss, partial, hit).', [{ expr: `tier_cache_bucket:tokenwatt_joules_per_output_token:ratio_rate5m${TIER}`, legend: '{{tier}} {{cache_bucket}}' }], J_PER_TOKEN),
    ],
  },
  {
    title: 'Tasks and waste',
    panels: [
      ts('J per successful task', 'Energy of all tasks (failed and cancelled included) over successful tasks, last hour, by tier.', [{ expr: `tier:tokenwatt_joules_per_successful_task:ratio_rate1h${TIER}`, legend: '{{tier}}' }], 'joule'),
      ts(
        'Energy of a successful task (p50, p95)',
        'Distribution of the energy of successful tasks, retries included, last hour.',
        [
          { expr: `tier:tokenwatt_successful_task_energy_joules:p50_rate1h${TIER}`, legend: '{{tier}} p50' },
          { expr: `tier:tokenwatt_successful_task_energy_joules:p95_rate1h${TIER}`, legend: '{{tier}} p95' },
        ],
        'joule',
      ),
      ts('Waste share by tier', 'Share of attributed energy spent on failed, cancelled and retried attempts, last hour.', [{ expr: `tier:tokenwatt_waste_energy_share:ratio_rate1h${TIER}`, legend: '{{tier}}' }], 'percentunit'),
      ts('Waste by reason', 'Wasted energy per second by reason, last hour.', [{ expr: 'sum by (reason) (rate(tokenwatt_waste_energy_joules_total[1h]))', legend: '{{reason}}' }], 'watt', 12, { stacked: true }),
    ],
  },
  {
    title: 'Emissions',
    panels: [
      ts('gCO2e per 1,000 output tokens', 'Facility energy (GPU incl. idle, host, PUE) times grid intensity, per 1,000 output tokens.', [{ expr: ':tokenwatt_gco2e_per_1k_output_tokens:ratio_rate5m', legend: 'fleet' }], 'suffix: gCO2e', 8),
      ts('Emissions by node', 'Emissions rate of each node, per hour.', [{ expr: '3600 * instance:tokenwatt_emissions_gco2e:rate5m{instance=~"$instance"}', legend: '{{instance}}' }], 'suffix: gCO2e/h', 8, { stacked: true }),
      ts(
        'Grid intensity and PUE',
        'The factors each agent applies: grid intensity (gCO2e/kWh, left) and PUE (right).',
        [
          { expr: '3.6e6 * tokenwatt_grid_intensity_grams_per_joule{instance=~"$instance"}', legend: '{{instance}} gCO2e/kWh' },
          { expr: 'tokenwatt_pue_ratio{instance=~"$instance"}', legend: '{{instance}} PUE' },
        ],
        'none',
        8,
      ),
    ],
  },
  {
    title: 'Tenants',
    panels: [
      ts(
        'J per request by team',
        'Energy per request of each team (last hour) against its own 7-day norm: a jump far above the norm is the token-amplification signature.',
        [
          { expr: 'team:tokenwatt_joules_per_request:ratio_rate1h', legend: '{{team}}' },
          { expr: 'team:tokenwatt_joules_per_request:avg_over_time_7d', legend: '{{team}} 7-day norm' },
        ],
        'joule',
        24,
      ),
    ],
  },
  {
    title: 'Data quality',
    panels: [
      ts(
        'Unattributed and estimated energy',
        'Shares of measured GPU energy: unattributed (gaps too long to give to requests) and estimated (gaps, counter resets, missing readings).',
        [
          { expr: ':tokenwatt_unattributed_energy_share:ratio_rate5m', legend: 'unattributed' },
          { expr: ':tokenwatt_estimated_energy_share:ratio_rate5m', legend: 'estimated' },
        ],
        'percentunit',
        8,
      ),
      ts('Sample errors', 'Failed power readings per second, by reason.', [{ expr: 'reason:tokenwatt_sample_errors:rate5m', legend: '{{reason}}' }], 'reqps', 8),
      ts('Rejected records', 'Request records refused at ingest per second, by reason.', [{ expr: 'reason:tokenwatt_records_rejected:rate5m', legend: '{{reason}}' }], 'reqps', 8),
      ts('Late records', 'Records that arrived after their period was settled (counted, not attributed).', [{ expr: 'instance:tokenwatt_late_records:rate5m{instance=~"$instance"}', legend: '{{instance}}' }], 'reqps', 8),
      ts('Conservation residual', 'Measured minus (attributed + idle + unattributed) energy in settled periods: must stay ~0.', [{ expr: 'tokenwatt_conservation_residual_joules{instance=~"$instance"}', legend: '{{instance}}' }], 'joule', 8),
      ts(
        'Settlement lag',
        'How far settlement trails the clock: the configured lateness plus processing.',
        [
          { expr: 'tokenwatt_settle_lag_seconds{instance=~"$instance"}', legend: '{{instance}} lag' },
          { expr: 'time() - (tokenwatt_settled_until_timestamp_seconds{instance=~"$instance"} > 0)', legend: '{{instance}} since settled' },
        ],
        's',
        8,
      ),
    ],
  },
  {
    title: 'Agent health',
    panels: [
      ts('Agents up', 'Scrape status of each agent (1 = up).', [{ expr: 'up{job="tokenwatt",instance=~"$instance"}', legend: '{{instance}}' }], 'none', 8),
      ts('Power samples per second', 'Samples taken per second by each agent, all GPUs.', [{ expr: 'instance:tokenwatt_samples:rate5m{instance=~"$instance"}', legend: '{{instance}}' }], 'none', 8),
      {
        type: 'table',
        title: 'Power sources',
        description: 'What each agent measures with: kind, whether it has an energy counter, whether power is averaged, and whether it is simulated.',
        queries: [{ expr: 'tokenwatt_power_source_info{instance=~"$instance"}', instant: true }],
        width: 8,
      },
      {
        type: 'table',
        title: 'Agent versions',
        description: 'Build information of each agent.',
        queries: [{ expr: 'tokenwatt_build_info{instance=~"$instance"}', instant: true }],
        width: 24,
        height: 6,
      },
    ],
  },
];

/** One dashboard variable fed by label values of a series. */
function labelVariable(name: string, label: string, query: string): Record<string, unknown> {
  return {
    name,
    label,
    type: 'query',
    datasource: DATASOURCE,
    query: { query, refId: `${name}-values` },
    definition: query,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    refresh: 2,
    sort: 1,
    hide: 0,
  };
}

function panelJson(spec: PanelSpec, id: number, x: number, y: number): Record<string, unknown> {
  const refIds = 'ABCDEFGHIJ';
  const targets = spec.queries.map((q, i) => ({
    refId: refIds[i] ?? `Q${i}`,
    datasource: DATASOURCE,
    expr: q.expr,
    ...(q.legend === undefined ? {} : { legendFormat: q.legend }),
    ...(q.instant ? { instant: true, range: false, format: 'table' } : { range: true }),
  }));
  const defaults: Record<string, unknown> = {
    ...(spec.unit === undefined ? {} : { unit: spec.unit }),
    ...(spec.decimals === undefined ? {} : { decimals: spec.decimals }),
    ...(spec.type === 'timeseries' ? { custom: { fillOpacity: spec.stacked ? 30 : 0, stacking: { mode: spec.stacked ? 'normal' : 'none', group: 'A' } } } : {}),
    ...spec.fieldDefaults,
  };
  const options: Record<string, unknown> =
    spec.type === 'stat'
      ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'auto' }
      : spec.type === 'timeseries'
        ? { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } }
        : { showHeader: true };
  return {
    id,
    type: spec.type,
    title: spec.title,
    description: spec.description,
    datasource: DATASOURCE,
    gridPos: { x, y, w: spec.width, h: spec.height ?? 8 },
    targets,
    fieldConfig: { defaults, overrides: [] },
    options,
    ...(spec.type === 'table' ? { transformations: [{ id: 'labelsToFields', options: {} }] } : {}),
  };
}

/** Lays the rows out on Grafana's 24-column grid and returns the dashboard model. */
export function buildDashboard(rows: readonly RowSpec[] = ROWS): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { x: 0, y, w: 24, h: 1 }, panels: [] });
    y += 1;
    let x = 0;
    let lineHeight = 0;
    for (const spec of row.panels) {
      if (x + spec.width > 24) {
        y += lineHeight;
        x = 0;
        lineHeight = 0;
      }
      panels.push(panelJson(spec, id++, x, y));
      x += spec.width;
      lineHeight = Math.max(lineHeight, spec.height ?? 8);
    }
    y += lineHeight;
  }
  return {
    uid: 'tokenwatt',
    title: 'tokenwatt: energy per token',
    description: 'Joules per token and per task by model tier, batch size and prefix-cache state; idle, waste, emissions and data quality. Built on the tokenwatt recording rules.',
    tags: ['tokenwatt', 'gpu', 'energy', 'llm'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-6h', to: 'now' },
    refresh: '1m',
    timezone: 'browser',
    links: [],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        {
          name: 'Simulated power',
          datasource: DATASOURCE,
          enable: true,
          iconColor: 'red',
          expr: 'max by (instance) (tokenwatt_power_source_info{simulated="true"}) == 1',
          step: '1m',
          titleFormat: 'SIMULATED',
          textFormat: 'Agent {{instance}} runs a simulated power source: its figures are not measurements.',
          tagKeys: 'instance',
          useValueForTime: false,
        },
      ],
    },
    templating: {
      list: [
        { name: 'datasource', label: 'Prometheus', type: 'datasource', query: 'prometheus', current: {}, hide: 0, refresh: 1, regex: '' },
        labelVariable('tier', 'Tier', 'label_values(tier:tokenwatt_joules_per_output_token:ratio_rate5m, tier)'),
        labelVariable('instance', 'Agent', 'label_values(up{job="tokenwatt"}, instance)'),
      ],
    },
    panels,
  };
}

/** The dashboard file's exact text: two-space JSON with a trailing newline. */
export function dashboardText(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}
