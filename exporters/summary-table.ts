/**
 * The live text summary the agent and the demo print: energy per tier, batch bucket and cache
 * bucket, marginal and fully loaded J/token, idle energy, the conservation residual and a data
 * quality line. Pure: a snapshot in, a string out (no clock, no I/O). Also the small fixed-width
 * table and number formatting that analyze-table.ts shares.
 */

/** Printed first whenever the figures come from the simulator. */
export const SIMULATED_BANNER = 'SIMULATED GPU NODE — figures are simulated, not measured';

/** One row of a breakdown (a tier, a batch bucket or a cache bucket). */
export interface SummaryGroupRow {
  readonly key: string;
  readonly requests: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly completionTokens: number;
  /** Attributed (static + dynamic) joules: the marginal figure. */
  readonly joules: number;
}

/** What the summary shows: plain data, built by the agent from the ledger or the settler. */
export interface SummarySnapshot {
  readonly node: string;
  readonly source: { readonly kind: string; readonly simulated: boolean; readonly energyCounter: boolean; readonly powerAveraged: boolean };
  /** The settled window the figures cover (epoch ms); null before the first settlement. */
  readonly windowStartMs: number | null;
  readonly settledUntilMs: number | null;
  readonly totals: {
    readonly measuredJ: number;
    readonly idleJ: number;
    /** static + dynamic. */
    readonly attributedJ: number;
    readonly unattributedJ: number;
    /** Part of measuredJ that is estimated (gaps, counter resets). */
    readonly estimatedJ: number;
    /** measured - (attributed + idle + unattributed): the conservation self-check, ~0. */
    readonly residualJ: number;
    readonly hostJ: number;
    /** (attributed + idle + unattributed + host) / attributed (model/fully-loaded.ts); null when nothing was attributed. */
    readonly fullyLoadedFactor: number | null;
  };
  readonly byTier: readonly SummaryGroupRow[];
  readonly byBatchBucket: readonly SummaryGroupRow[];
  readonly byCacheBucket: readonly SummaryGroupRow[];
  /** Host (CPU + DRAM) energy source: rapl (measured), configured (estimated) or none. */
  readonly host?: { readonly kind: 'rapl' | 'configured' | 'none'; readonly estimated: boolean };
  /** Closed tasks (no request for the task idle time) and their figures; `open` tasks are only counted. */
  readonly tasks?: { readonly closed: number; readonly open?: number; readonly succeeded: number; readonly joules: number; readonly wasteJ: number };
  readonly quality: {
    /** Share of GPU time covered by samples, 0..1; null when unknown. */
    readonly sampleCoverage: number | null;
    readonly counterResets: number;
    readonly gaps: number;
    readonly lateRecords: number;
    readonly rejectedRecords: number;
    readonly sampleErrors: number;
  };
}

export type Align = 'left' | 'right';

/** A fixed-width table: columns as wide as their widest cell, numbers right-aligned. */
export function textTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[]): string {
  // Not Math.max(...rows): an analysis can have more rows (models, tasks) than a call takes arguments.
  const widths = headers.map((h, i) => rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), h.length));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (align[i] === 'right' ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Joules with an SI prefix and 3 significant digits: 0.0123 J, 12.3 J, 4.56 kJ, 7.89 MJ. */
export function formatJoules(j: number): string {
  if (!Number.isFinite(j)) return 'n/a';
  const abs = Math.abs(j);
  if (abs === 0) return '0 J';
  if (abs < 1e-3) return `${j.toExponential(2)} J`;
  for (const [scale, unit] of [[1e9, 'GJ'], [1e6, 'MJ'], [1e3, 'kJ']] as const) {
    if (abs >= scale) return `${trim((j / scale).toPrecision(3))} ${unit}`;
  }
  return `${trim(j.toPrecision(3))} J`;
}

/** A ratio such as J/token with 3 significant digits, or '-' when there is none. */
export function formatRatio(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
  return trim(value.toPrecision(3));
}

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatPercent(share: number | null): string {
  return share === null || !Number.isFinite(share) ? '-' : `${(share * 100).toFixed(1)}%`;
}

/** "12.30" -> "12.3", "1.00" -> "1" (toPrecision pads with zeros). */
function trim(text: string): string {
  return text.includes('.') && !text.includes('e') ? text.replace(/\.?0+$/, '') : text;
}

const perToken = (joules: number, tokens: number): number | null => (tokens > 0 ? joules / tokens : null);

function groupTable(title: string, rows: readonly SummaryGroupRow[], factor: number | null): string {
  const body = rows.map((r) => {
    const marginal = perToken(r.joules, r.completionTokens);
    return [
      r.key === '' ? '(none)' : r.key,
      formatCount(r.requests),
      formatCount(r.promptTokens),
      formatPercent(r.promptTokens > 0 ? r.cachedTokens / r.promptTokens : null),
      formatCount(r.completionTokens),
      formatJoules(r.joules),
      formatRatio(marginal),
      formatRatio(marginal === null || factor === null ? null : marginal * factor),
    ];
  });
  return textTable(
    [title, 'requests', 'prompt tok', 'cached', 'output tok', 'energy', 'J/out-tok', 'J/out-tok loaded'],
    body,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

function iso(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** The summary as fixed-width text (ends without a newline). */
export function renderSummaryTable(s: SummarySnapshot): string {
  const { totals, quality } = s;
  const lines: string[] = [];
  if (s.source.simulated) lines.push(SIMULATED_BANNER, '');
  const sourceNotes = [s.source.energyCounter ? 'energy counter' : 'integrated power', ...(s.source.powerAveraged ? ['averaged power'] : []), ...(s.source.simulated ? ['SIMULATED'] : [])];
  lines.push(`tokenwatt  node ${s.node}  source ${s.source.kind} (${sourceNotes.join(', ')})  settled ${iso(s.windowStartMs)} .. ${iso(s.settledUntilMs)}`);
  lines.push('');
  for (const [title, rows] of [['tier', s.byTier], ['batch size', s.byBatchBucket], ['prefix cache', s.byCacheBucket]] as const) {
    lines.push(rows.length === 0 ? `${title}: no settled requests yet` : groupTable(title, rows, totals.fullyLoadedFactor), '');
  }
  const share = (part: number): string => formatPercent(totals.measuredJ > 0 ? part / totals.measuredJ : null);
  lines.push(
    `energy    measured ${formatJoules(totals.measuredJ)} = attributed ${formatJoules(totals.attributedJ)} + idle ${formatJoules(totals.idleJ)} (${share(totals.idleJ)})` +
      ` + unattributed ${formatJoules(totals.unattributedJ)}; residual ${formatJoules(totals.residualJ)}` +
      `; fully loaded factor ${formatRatio(totals.fullyLoadedFactor)}`,
  );
  const host = s.host ?? { kind: totals.hostJ > 0 ? 'rapl' : 'none', estimated: false };
  lines.push(
    host.kind === 'none'
      ? 'host      not measured (no readable RAPL; set hostPower.overheadW for an estimate)'
      : `host      ${formatJoules(totals.hostJ)} CPU + DRAM (${host.kind === 'rapl' ? 'RAPL, measured' : 'configured overhead, ESTIMATED'}); in the fully loaded figures`,
  );
  if (s.tasks && (s.tasks.closed > 0 || (s.tasks.open ?? 0) > 0)) {
    const t = s.tasks;
    const open = t.open ? `, ${formatCount(t.open)} still open` : '';
    if (t.closed === 0) lines.push(`tasks     none closed yet${open} (a task closes once it has had no request for the task idle time)`);
    else lines.push(
      `tasks     ${formatCount(t.closed)} closed${open}; of the closed, ${formatCount(t.succeeded)} succeeded; ${t.succeeded > 0 ? formatJoules(t.joules / t.succeeded) : '-'} per successful task;` +
        ` waste ${formatJoules(t.wasteJ)} (${formatPercent(t.joules > 0 ? t.wasteJ / t.joules : null)})`,
    );
  }
  lines.push(
    `quality   sample coverage ${formatPercent(quality.sampleCoverage)}; estimated ${formatJoules(totals.estimatedJ)} (${share(totals.estimatedJ)});` +
      ` ${quality.gaps} gaps; ${quality.counterResets} counter resets; ${quality.lateRecords} late records; ${quality.rejectedRecords} rejected; ${quality.sampleErrors} sample errors`,
  );
  return lines.join('\n');
}
