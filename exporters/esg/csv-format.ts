import type { EsgReport } from './esg-report.js';

/** Columns of the tidy CSV: one row per measure and breakdown key. */
export const CSV_COLUMNS = ['section', 'measure', 'by', 'key', 'value', 'unit', 'note'] as const;

type Cell = string | number | boolean | null;

/** Unit of a measure, from its name (the report's naming convention). */
export function unitOf(measure: string): string {
  if (measure.endsWith('_kwh')) return 'kWh';
  if (measure.endsWith('_kgco2e')) return 'kgCO2e';
  // Intensities name their denominator: an auditor reads the unit column, not the measure name.
  if (measure === 'per_token_gco2e') return 'gCO2e/output token';
  if (measure === 'per_1k_tokens_gco2e') return 'gCO2e/1k output tokens';
  if (measure === 'per_task_gco2e') return 'gCO2e/successful task';
  if (measure.endsWith('_gco2e')) return 'gCO2e';
  if (measure.startsWith('j_per_output_token')) return 'J/output token';
  if (measure === 'j_per_successful_task') return 'J/task';
  if (measure.endsWith('_share') || measure.endsWith('_rate') || measure === 'sample_coverage') return 'ratio';
  if (measure.endsWith('_hours')) return 'hours';
  if (measure === 'pue') return 'ratio';
  if (measure.endsWith('tokens') || measure === 'requests') return 'count';
  return '';
}

/**
 * Render a report as tidy CSV (RFC 4180): section, measure, by, key, value, unit, note. Text
 * cells that a spreadsheet would run as a formula are prefixed with an apostrophe.
 */
export function renderEsgCsv(report: EsgReport): string {
  const rows: Cell[][] = [[...CSV_COLUMNS]];
  const add = (section: string, measure: string, by: string, key: string, value: Cell, note: Cell = null): void => {
    rows.push([section, measure, by, key, value, unitOf(measure), note]);
  };
  add('report', 'title', '', '', report.title);
  add('report', 'simulated', '', '', report.simulated, report.simulated ? 'contains simulated energy: not a measurement' : null);
  add('report', 'data_source', '', '', report.data_source);
  add('report', 'period_from', '', '', report.period.from);
  add('report', 'period_to', '', '', report.period.to, 'exclusive');
  add('report', 'period_label', '', '', report.period.label);
  add('report', 'nodes', '', '', report.nodes.join(' '));
  add('report', 'tool_version', '', '', report.tool.version);
  add('report', 'generated_at', '', '', report.generated_at);
  add('report', 'content_sha256', '', '', report.content_sha256);
  for (const [measure, value] of Object.entries(report.totals)) add('totals', measure, '', '', value);
  for (const [measure, value] of Object.entries(report.sci)) add('sci', measure, '', '', value);
  for (const row of report.breakdowns) {
    const { by, key, ...measures } = row;
    for (const [measure, value] of Object.entries(measures)) add('breakdown', measure, by, key, value);
  }
  for (const row of report.cross) {
    const key = `${row.tier}|${row.batch_bucket}|${row.cache_bucket}`;
    add('cross', 'completion_tokens', 'tier|batch_bucket|cache_bucket', key, row.completion_tokens);
    add('cross', 'attributed_energy_kwh', 'tier|batch_bucket|cache_bucket', key, row.attributed_energy_kwh);
    add('cross', 'j_per_output_token', 'tier|batch_bucket|cache_bucket', key, row.j_per_output_token);
  }
  for (const row of report.series.daily_by_tier) add('series', 'attributed_energy_kwh', 'day|tier', `${row.day}|${row.tier}`, row.attributed_energy_kwh);
  for (const row of report.series.daily_overhead) {
    add('series', 'idle_energy_kwh', 'day', row.day, row.idle_energy_kwh);
    add('series', 'unattributed_energy_kwh', 'day', row.day, row.unattributed_energy_kwh);
    add('series', 'host_energy_kwh', 'day', row.day, row.host_energy_kwh);
  }
  const { definition, by_tier: byTier, ...taskTotals } = report.tasks;
  for (const [measure, value] of Object.entries(taskTotals)) add('tasks', measure, '', '', value, measure === 'count' ? definition : null);
  for (const row of byTier) {
    const { tier, ...measures } = row;
    for (const [measure, value] of Object.entries(measures)) add('tasks', measure, 'tier', tier, value);
  }
  const { notes, ...quality } = report.quality;
  for (const [measure, value] of Object.entries(quality)) add('quality', measure, '', '', value);
  for (const note of notes) add('quality', 'note', '', '', null, note);
  for (const node of report.coverage.nodes) {
    add('coverage', 'gpus', 'node', node.node, node.gpus);
    add('coverage', 'hours_with_data', 'node', node.node, node.hours_with_data);
    for (const gap of node.missing_hours) add('coverage', 'missing_hours', 'node', node.node, gap.hours, `${gap.from} to ${gap.to}`);
  }
  for (const source of report.coverage.sources) add('coverage', 'source_report', 'name', source.name, source.content_sha256, source.nodes.join(' '));
  for (const dup of report.coverage.duplicates_ignored) add('coverage', 'duplicate_ignored', 'name', dup.name, dup.content_sha256, `same as ${dup.duplicate_of}`);
  for (const f of report.factors) {
    const note = [f.source, f.year !== null ? `year ${f.year}` : '', f.basis ? `basis ${f.basis}` : '', f.note ?? '', f.nodes.length ? `nodes ${f.nodes.join(' ')}` : '']
      .filter((s) => s !== '')
      .join('; ');
    rows.push(['factor', f.role, 'id', f.id, f.value, f.unit, note]);
  }
  return `${rows.map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
}

function csvCell(value: Cell): string {
  if (value === null) return '';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
