import { formatCount, formatJoules, formatPercent, formatRatio, SIMULATED_BANNER, textTable } from './summary-table.js';

/**
 * `tokenwatt analyze` without --json: the report as text tables. The input type names only what
 * is rendered, in DESIGN's `analyze --json` shape (snake_case), so model/analysis.ts's
 * AnalyzeReport is assignable to it and fields added there never break this renderer.
 */
export interface AnalyzeReportView {
  readonly totals: {
    readonly measured_j: number;
    readonly idle_j: number;
    readonly attributed_j: number;
    readonly unattributed_j: number;
    readonly residual_j: number;
    readonly estimated_j?: number;
    readonly host_j?: number;
    readonly fully_loaded_factor?: number | null;
  };
  readonly groups: readonly {
    readonly by: string;
    readonly key: string;
    readonly requests: number;
    readonly prompt_tokens: number;
    readonly cached_tokens: number;
    readonly completion_tokens: number;
    readonly joules: number;
    readonly j_per_output_token: number | null;
    readonly j_per_output_token_fully_loaded: number | null;
  }[];
  readonly tasks: readonly {
    readonly task_id: string;
    readonly requests: number;
    readonly succeeded: boolean;
    readonly joules: number;
    readonly waste_j?: number;
  }[];
  readonly j_per_successful_task?: number | null;
  /** Rendered key by key; `simulated: true` puts the banner on top. */
  readonly quality: { readonly simulated?: boolean };
  /** What `analyze` adds about its input files: its scalars on one line, then each note. */
  readonly input?: { readonly notes?: readonly string[] };
  readonly requests?: readonly {
    readonly request_id: string;
    readonly joules: number;
    readonly static_j: number;
    readonly dynamic_j: number;
    readonly batch_size: number;
    readonly cache_bucket: string;
    readonly estimated?: boolean;
  }[];
}

export interface AnalyzeTableOptions {
  /** Tasks listed individually (by energy, largest first); the rest are summed in one line. Default 20. */
  readonly maxTasks?: number;
}

const GROUP_ORDER = ['tier', 'model', 'batch_bucket', 'cache_bucket', 'gpu'];
const RIGHT = 'right' as const;
const LEFT = 'left' as const;

function groupTables(report: AnalyzeReportView): string[] {
  const kinds = [...new Set(report.groups.map((g) => g.by))].sort((a, b) => rank(a) - rank(b));
  return kinds.map((by) => {
    const rows = report.groups
      .filter((g) => g.by === by)
      .map((g) => [
        g.key === '' ? '(none)' : g.key,
        formatCount(g.requests),
        formatCount(g.prompt_tokens),
        formatPercent(g.prompt_tokens > 0 ? g.cached_tokens / g.prompt_tokens : null),
        formatCount(g.completion_tokens),
        formatJoules(g.joules),
        formatRatio(g.j_per_output_token),
        formatRatio(g.j_per_output_token_fully_loaded),
      ]);
    return textTable([by, 'requests', 'prompt tok', 'cached', 'output tok', 'energy', 'J/out-tok', 'J/out-tok loaded'], rows, [LEFT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT]);
  });
}

function rank(by: string): number {
  const i = GROUP_ORDER.indexOf(by);
  return i < 0 ? GROUP_ORDER.length : i;
}

function taskSection(report: AnalyzeReportView, maxTasks: number): string[] {
  const { tasks } = report;
  if (tasks.length === 0) return ['tasks: none (no record carried a task_id)'];
  const succeeded = tasks.filter((t) => t.succeeded).length;
  const total = tasks.reduce((sum, t) => sum + t.joules, 0);
  const waste = tasks.reduce((sum, t) => sum + (t.waste_j ?? 0), 0);
  const perSuccess = report.j_per_successful_task !== undefined ? report.j_per_successful_task : succeeded > 0 ? total / succeeded : null;
  const head =
    `tasks: ${formatCount(tasks.length)}, ${formatCount(succeeded)} succeeded; ` +
    `${perSuccess === null ? '-' : formatJoules(perSuccess)} per successful task (all task energy, waste included)` +
    (tasks.some((t) => t.waste_j !== undefined) ? `; waste ${formatJoules(waste)} (${formatPercent(total > 0 ? waste / total : null)})` : '');
  const largest = [...tasks].sort((a, b) => b.joules - a.joules || (a.task_id < b.task_id ? -1 : 1));
  const shown = largest.slice(0, maxTasks);
  const table = textTable(
    ['task_id', 'requests', 'succeeded', 'energy', 'waste'],
    shown.map((t) => [t.task_id, formatCount(t.requests), t.succeeded ? 'yes' : 'no', formatJoules(t.joules), t.waste_j === undefined ? '-' : formatJoules(t.waste_j)]),
    [LEFT, RIGHT, RIGHT, RIGHT, RIGHT],
  );
  const rest = largest.slice(maxTasks);
  const more = rest.length > 0 ? [`... and ${formatCount(rest.length)} more tasks, ${formatJoules(rest.reduce((s, t) => s + t.joules, 0))} together`] : [];
  return [head, table, ...more];
}

const EPOCH_2000_MS = 946_684_800_000;

/** A quality field as `name value`; a `_ms` timestamp is shown as a date, so its name loses the unit. */
function qualityField(key: string, value: number | boolean | null): string {
  if (typeof value !== 'number') return `${key} ${String(value)}`;
  if (key.endsWith('_ms') && value >= EPOCH_2000_MS) return `${key.slice(0, -'_ms'.length)} ${new Date(value).toISOString()}`;
  if (key.endsWith('_j')) return `${key} ${formatJoules(value)}`;
  if (key === 'coverage') return `${key} ${formatPercent(value)}`;
  return `${key} ${Number.isInteger(value) ? formatCount(value) : formatRatio(value)}`;
}

/** Every scalar of `quality` (or `input`), so fields the model adds show up without a change here. */
function qualityLine(quality: object, title = 'quality'): string {
  const parts = Object.entries(quality)
    .filter((entry): entry is [string, number | boolean | null] => ['number', 'boolean'].includes(typeof entry[1]) || entry[1] === null)
    .map(([k, v]) => qualityField(k, v));
  return `${title}: ${parts.join('; ')}`;
}

/** `input`: its numbers on one line, then how the files were read (time zone assumed, lines re-ordered, ...). */
function inputSection(input: NonNullable<AnalyzeReportView['input']>): string[] {
  return [qualityLine(input, 'input'), ...(input.notes ?? []).map((note) => `  note: ${note}`)];
}

function requestTable(requests: NonNullable<AnalyzeReportView['requests']>): string {
  const table = textTable(
    ['request_id', 'energy', 'static', 'dynamic', 'batch', 'cache'],
    requests.map((r) => [
      r.estimated ? `${r.request_id} *` : r.request_id,
      formatJoules(r.joules),
      formatJoules(r.static_j),
      formatJoules(r.dynamic_j),
      formatRatio(r.batch_size),
      r.cache_bucket,
    ]),
    [LEFT, RIGHT, RIGHT, RIGHT, RIGHT, LEFT],
  );
  return requests.some((r) => r.estimated) ? `${table}\n* some of this request's energy is estimated (sampling gap, counter reset or missing readings)` : table;
}

/** The analyze report as fixed-width text (ends without a newline). */
export function renderAnalyzeTables(report: AnalyzeReportView, options: AnalyzeTableOptions = {}): string {
  const t = report.totals;
  const lines: string[] = [];
  if (report.quality.simulated === true) lines.push(SIMULATED_BANNER, '');
  const share = (part: number): string => formatPercent(t.measured_j > 0 ? part / t.measured_j : null);
  lines.push(
    `energy: measured ${formatJoules(t.measured_j)} = attributed ${formatJoules(t.attributed_j)} (${share(t.attributed_j)}) + idle ${formatJoules(t.idle_j)} (${share(t.idle_j)})` +
      ` + unattributed ${formatJoules(t.unattributed_j)} (${share(t.unattributed_j)}); residual ${formatJoules(t.residual_j)}` +
      (t.estimated_j !== undefined ? `; estimated ${formatJoules(t.estimated_j)} (${share(t.estimated_j)})` : '') +
      (t.host_j ? `; host ${formatJoules(t.host_j)}` : '') +
      (t.fully_loaded_factor !== undefined ? `; fully loaded factor ${formatRatio(t.fully_loaded_factor)}` : ''),
    '',
  );
  for (const table of groupTables(report)) lines.push(table, '');
  lines.push(...taskSection(report, options.maxTasks ?? 20), '');
  lines.push(qualityLine(report.quality));
  if (report.input !== undefined) lines.push(...inputSection(report.input));
  if (report.requests !== undefined) lines.push('', requestTable(report.requests));
  return lines.join('\n');
}
