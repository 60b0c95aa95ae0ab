import { gpuEnergyKind, isDefaultFactor } from './esg-report.js';
import type { EsgBreakdownRow, EsgReport } from './esg-report.js';
import { utcDayStart } from './report-period.js';
import { escapeXml as esc, fmt, GREY, heatmaps, PALETTE, shareBars, stackedBars, valueBars } from './svg-charts.js';

const MAX_ROWS_PER_BREAKDOWN = 25;
/** Above this many days the energy chart groups by ISO week so bars stay readable. */
const MAX_DAILY_BARS = 120;

/**
 * Render a report as ONE self-contained HTML file: inline CSS and SVG, no script, no external
 * resource (a Content-Security-Policy forbids any), so it opens offline and prints as is.
 */
export function renderEsgHtml(report: EsgReport): string {
  const t = report.totals;
  const tiers = [...new Set(report.series.daily_by_tier.map((d) => d.tier))].sort();
  const tierColor = new Map(tiers.map((tier, i) => [tier, PALETTE[i % PALETTE.length] ?? '#333']));
  const banner = report.simulated
    ? `<div class="banner" role="alert"><strong>SIMULATED DATA — not a measurement.</strong> ${esc(
        `${fmt(report.quality.simulated_share * 100)}% of the energy in this report comes from the simulator. Do not use it for disclosure.`,
      )}</div>`
    : '';
  // Defaults are said on the cards, not only in the factor table.
  const defaultPue = report.factors.some((f) => f.role === 'pue' && isDefaultFactor(f));
  const defaultEmbodied = report.factors.some((f) => f.role.startsWith('embodied') && isDefaultFactor(f));
  const cards: [string, string][] = [
    [`GPU energy (${gpuEnergyKind(report)})`, `${fmt(t.gpu_energy_kwh)} kWh`],
    ['Idle energy', `${fmt(t.idle_energy_kwh)} kWh (${pct(t.idle_energy_kwh, t.gpu_energy_kwh)})`],
    ['Facility energy', `${fmt(t.facility_energy_kwh)} kWh (PUE ${fmt(t.pue)}${defaultPue ? ', default' : ''})`],
    ['Emissions, location-based', `${fmt(t.emissions_location_kgco2e)} kgCO2e`],
    ['Emissions, market-based', `${fmt(t.emissions_market_kgco2e)} kgCO2e`],
    [`Embodied (SCI M${defaultEmbodied ? ', default factors' : ''})`, `${fmt(t.embodied_kgco2e)} kgCO2e`],
    ['SCI per 1,000 output tokens', `${fmt(report.sci.per_1k_tokens_gco2e)} gCO2e`],
    ['SCI per successful task', `${fmt(report.sci.per_task_gco2e)} gCO2e`],
    ['J per output token', `${fmt(t.j_per_output_token)} (fully loaded ${fmt(t.j_per_output_token_fully_loaded)})`],
    ['J per successful task', `${fmt(report.tasks.j_per_successful_task)}`],
  ];
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(report.title)}</title>
<style>${CSS}</style></head>
<body>
${banner}
<header><h1>${esc(report.title)}</h1>
<p class="meta">Period ${esc(report.period.from)} to ${esc(report.period.to)} (${report.period.hours} h) · nodes: ${esc(report.nodes.join(', '))} · source: ${esc(report.data_source)} · tokenwatt ${esc(report.tool.version)} · generated ${esc(report.generated_at)}</p>
<p class="meta">content_sha256 <code>${esc(report.content_sha256)}</code> (verify with <code>tokenwatt export --verify FILE.json</code>)</p></header>
<section class="cards">${cards.map(([k, v]) => `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div></div>`).join('')}</section>
<section><h2>Energy by tier over the period</h2>${energyChart(report, tiers, tierColor)}
<p class="note">Attributed GPU energy per tier, with the energy no request received (idle, unattributed, host) on top. Offsets are never netted.</p></section>
<section><h2>J per output token by tier, batch bucket and cache bucket</h2>${
    report.cross.length > 0
      ? heatmaps(
          'J per output token by tier x batch bucket x cache bucket',
          report.cross.map((c) => ({ tier: c.tier, row: c.batch_bucket, col: c.cache_bucket, value: c.j_per_output_token })),
          'J per output token (attributed)',
        )
      : '<p class="note">No attributed requests in this period.</p>'
  }</section>
<section><h2>Idle share</h2>${shareBars('Where the energy went', [
    {
      label: 'GPU energy',
      segments: [
        { name: 'dynamic (attributed)', value: t.dynamic_energy_kwh, color: PALETTE[0] ?? '#333' },
        { name: 'static (attributed)', value: t.static_energy_kwh, color: PALETTE[9] ?? '#333' },
        { name: 'idle', value: t.idle_energy_kwh, color: GREY.idle },
        { name: 'unattributed', value: Math.max(0, t.unattributed_energy_kwh), color: GREY.unattributed },
      ],
      note: `idle ${pct(t.idle_energy_kwh, t.gpu_energy_kwh)} of GPU energy`,
    },
    {
      label: 'Facility energy',
      segments: [
        { name: 'GPU', value: t.gpu_energy_kwh, color: PALETTE[0] ?? '#333' },
        { name: 'host', value: t.host_energy_kwh, color: GREY.host },
        { name: 'facility overhead (PUE)', value: Math.max(0, t.facility_energy_kwh - t.it_energy_kwh), color: '#d9b44a' },
      ],
      note: `PUE ${fmt(t.pue)}`,
    },
  ])}</section>
<section><h2>Waste share</h2>${shareBars(
    'Task energy: useful and wasted (failed, cancelled, retried attempts)',
    report.tasks.by_tier.map((row) => ({
      label: `tier ${row.tier}`,
      segments: [
        { name: 'useful', value: Math.max(0, (row.energy_kwh ?? 0) - (row.waste_energy_kwh ?? 0)), color: PALETTE[2] ?? '#333' },
        { name: 'waste', value: row.waste_energy_kwh ?? 0, color: PALETTE[3] ?? '#333' },
      ],
      note: `${row.count} tasks, success ${row.success_rate === null ? 'n/a' : `${fmt(row.success_rate * 100)}%`}, waste ${row.waste_share === null ? 'n/a' : `${fmt(row.waste_share * 100)}%`}`,
    })),
  )}${report.tasks.by_tier.length === 0 ? '<p class="note">No tasks in this period.</p>' : ''}
<p class="note">${esc(report.tasks.definition)}</p></section>
<section><h2>Emissions</h2>${valueBars(
    'Emissions, kgCO2e',
    [
      { name: 'location-based', value: t.emissions_location_kgco2e, color: PALETTE[3] ?? '#333' },
      { name: 'market-based', value: t.emissions_market_kgco2e, color: PALETTE[1] ?? '#333' },
      { name: 'embodied', value: t.embodied_kgco2e, color: PALETTE[5] ?? '#333' },
      { name: 'offsets (not netted)', value: t.offsets_kgco2e, color: '#777', hatched: true },
    ],
    'kgCO2e',
  )}
<p class="note">Location- and market-based per the GHG Protocol Scope 2 Guidance (dual reporting). SCI = (E × I + M) / R uses the location-based figure; market instruments and offsets never reduce it.</p></section>
<section><h2>Totals</h2>${keyValueTable(report.totals)}<h3>SCI</h3>${keyValueTable(report.sci)}</section>
<section><h2>Breakdowns</h2>${breakdownTables(report.breakdowns)}</section>
<section><h2>Tasks</h2>${tasksTable(report)}</section>
<section><h2>Data quality</h2>${keyValueTable(Object.fromEntries(Object.entries(report.quality).filter(([k]) => k !== 'notes')))}
${report.quality.notes.length > 0 ? `<ul>${report.quality.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}
<h3>Node coverage</h3>${coverageTable(report)}</section>
<section><h2>Factor provenance</h2>${factorsTable(report)}</section>
<section><h2>Methodology</h2><p>${esc(report.methodology.summary)}</p><ol>${report.methodology.steps.map((s) => `<li>${esc(s)}</li>`).join('')}</ol>
<p>Standards: ${report.methodology.standards.map(esc).join('; ')}</p></section>
<footer>tokenwatt ${esc(report.tool.version)} · ${esc(report.generated_at)}</footer>
</body></html>
`;
}

function energyChart(report: EsgReport, tiers: readonly string[], tierColor: ReadonlyMap<string, string>): string {
  // Every day of the period gets a slot, so days without data show as gaps, not as nothing.
  const days: string[] = [];
  // From the UTC midnight of the start, as the report's days are UTC dates.
  for (let ms = utcDayStart(Date.parse(report.period.from)); ms < Date.parse(report.period.to); ms += 86_400_000) days.push(new Date(ms).toISOString().slice(0, 10));
  if (report.series.daily_by_tier.length === 0 && report.series.daily_overhead.length === 0) return '<p class="note">No energy in this period.</p>';
  const weekly = days.length > MAX_DAILY_BARS;
  const bucketOf = (day: string): string => (weekly ? weekStart(day) : day);
  const categories = [...new Set(days.map(bucketOf))];
  const index = new Map(categories.map((c, i) => [c, i]));
  const zeros = (): number[] => categories.map(() => 0);
  const perTier = new Map(tiers.map((tier) => [tier, zeros()]));
  for (const d of report.series.daily_by_tier) {
    const i = index.get(bucketOf(d.day));
    const v = perTier.get(d.tier);
    if (v && i !== undefined) v[i] = (v[i] ?? 0) + d.attributed_energy_kwh;
  }
  const idle = zeros();
  const unattributed = zeros();
  const host = zeros();
  for (const d of report.series.daily_overhead) {
    const i = index.get(bucketOf(d.day));
    if (i === undefined) continue;
    idle[i] = (idle[i] ?? 0) + d.idle_energy_kwh;
    unattributed[i] = (unattributed[i] ?? 0) + Math.max(0, d.unattributed_energy_kwh);
    host[i] = (host[i] ?? 0) + d.host_energy_kwh;
  }
  return stackedBars(
    `Energy by tier per ${weekly ? 'week' : 'day'}, kWh`,
    categories.map((c) => c.slice(5)),
    [
      ...tiers.map((tier) => ({ name: `tier ${tier}`, color: tierColor.get(tier) ?? '#333', values: perTier.get(tier) ?? [] })),
      { name: 'idle', color: GREY.idle, values: idle },
      { name: 'unattributed', color: GREY.unattributed, values: unattributed },
      { name: 'host', color: GREY.host, values: host },
    ],
    'kWh',
  );
}

function weekStart(day: string): string {
  const ms = Date.parse(`${day}T00:00:00Z`);
  const weekday = (new Date(ms).getUTCDay() + 6) % 7; // Monday = 0
  return new Date(ms - weekday * 86_400_000).toISOString().slice(0, 10);
}

function keyValueTable(values: object): string {
  const rows = Object.entries(values)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(cell(v))}</td></tr>`)
    .join('');
  return `<table class="kv">${rows}</table>`;
}

function breakdownTables(rows: readonly EsgBreakdownRow[]): string {
  const dims = [...new Set(rows.map((r) => r.by))];
  return dims
    .map((by) => {
      const all = rows.filter((r) => r.by === by);
      const shown = by === 'month' ? all : [...all].sort((a, b) => b.fully_loaded_energy_kwh - a.fully_loaded_energy_kwh).slice(0, MAX_ROWS_PER_BREAKDOWN);
      const more = all.length - shown.length;
      const body = shown
        .map(
          (r) =>
            `<tr><td>${esc(r.key)}</td><td>${cell(r.requests)}</td><td>${cell(r.completion_tokens)}</td><td>${fmt(r.attributed_energy_kwh)}</td><td>${fmt(r.fully_loaded_energy_kwh)}</td><td>${fmt(r.j_per_output_token)}</td><td>${fmt(r.j_per_output_token_fully_loaded)}</td><td>${fmt(r.emissions_location_kgco2e)}</td><td>${fmt(r.emissions_market_kgco2e)}</td><td>${r.simulated_energy_kwh > 0 ? `<span class="sim">${fmt(r.simulated_energy_kwh)}</span>` : '0'}</td></tr>`,
        )
        .join('');
      return `<h3>By ${esc(by.replace('_', ' '))}</h3><table><thead><tr><th>${esc(by)}</th><th>requests</th><th>output tokens</th><th>attributed kWh</th><th>fully loaded kWh</th><th>J/token</th><th>J/token fully loaded</th><th>kgCO2e location</th><th>kgCO2e market</th><th>simulated kWh</th></tr></thead><tbody>${body}</tbody></table>${
        more > 0 ? `<p class="note">${more} more keys in the JSON and CSV exports.</p>` : ''
      }`;
    })
    .join('');
}

function tasksTable(report: EsgReport): string {
  const rows = [{ tier: 'all', ...report.tasks }, ...report.tasks.by_tier]
    .map(
      (r) =>
        `<tr><td>${esc(r.tier)}</td><td>${r.count}</td><td>${r.succeeded}</td><td>${fmt(r.success_rate)}</td><td>${fmt(r.energy_kwh)}</td><td>${fmt(r.waste_share)}</td><td>${fmt(r.j_per_successful_task)}</td></tr>`,
    )
    .join('');
  return `<table><thead><tr><th>tier</th><th>tasks</th><th>succeeded</th><th>success rate</th><th>energy kWh</th><th>waste share</th><th>J per successful task</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function coverageTable(report: EsgReport): string {
  const rows = report.coverage.nodes
    .map((n) => {
      const missing = n.missing_hours.slice(0, 5).map((m) => `${m.from} to ${m.to} (${m.hours} h)`);
      const more = n.missing_hours.length > 5 ? `, and ${n.missing_hours.length - 5} more ranges` : '';
      return `<tr><td>${esc(n.node)}</td><td>${n.gpus}</td><td>${n.hours_with_data} / ${report.period.hours}</td><td>${missing.length > 0 ? esc(missing.join('; ') + more) : 'none'}</td></tr>`;
    })
    .join('');
  const dups = report.coverage.duplicates_ignored.map((d) => `<li>${esc(`${d.name}: same content as ${d.duplicate_of}, counted once`)}</li>`).join('');
  return `<table><thead><tr><th>node</th><th>GPUs</th><th>hours with data</th><th>missing hours</th></tr></thead><tbody>${rows}</tbody></table>${dups ? `<ul>${dups}</ul>` : ''}`;
}

function factorsTable(report: EsgReport): string {
  const rows = report.factors
    .map(
      (f) =>
        `<tr><td>${esc(f.role)}</td><td>${esc(f.id)}</td><td>${f.value === null ? 'varies' : esc(String(f.value))}</td><td>${esc(f.unit)}</td><td>${esc(f.source)}</td><td>${f.year ?? ''}</td><td>${esc(f.basis ?? '')}</td><td>${esc(f.note ?? '')}</td></tr>`,
    )
    .join('');
  return `<table class="factors"><thead><tr><th>role</th><th>id</th><th>value</th><th>unit</th><th>source</th><th>year</th><th>basis</th><th>note</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return 'n/a';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

const pct = (part: number, whole: number): string => (whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : 'n/a');

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0 auto;max-width:980px;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}
.meta{color:#555;margin:2px 0;font-size:12px}code{font-size:11px;background:#f3f4f6;padding:1px 4px;border-radius:3px}
.banner{background:#b3261e;color:#fff;padding:10px 14px;border-radius:4px;margin:8px 0;font-size:15px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:8px;margin:12px 0}
.card{border:1px solid #dde1e6;border-radius:6px;padding:8px 10px}.card .k{font-size:11px;color:#555}.card .v{font-size:15px;font-weight:600;margin-top:2px}
table{border-collapse:collapse;width:100%;font-size:12px;margin:4px 0 8px}th,td{border-bottom:1px solid #eceef1;padding:3px 6px;text-align:left;vertical-align:top}
thead th{background:#f6f7f9}table.kv th{width:40%;font-weight:normal;color:#444}table.factors td{font-size:11px}
.note{color:#555;font-size:12px}.sim{color:#b3261e;font-weight:600}svg.chart{max-width:100%;height:auto;display:block;margin:6px 0}
footer{margin-top:32px;color:#777;font-size:11px}
@media print{body{max-width:none}.banner{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
`;
