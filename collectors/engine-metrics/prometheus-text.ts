/**
 * A small, tolerant parser for the Prometheus text exposition format (0.0.4), the format vLLM
 * and SGLang serve on /metrics through prometheus_client. prom-client only writes this format,
 * it does not read it.
 *
 * Handled: `# HELP` / `# TYPE` lines (HELP escapes `\\` and `\n`), other comments, label sets
 * with escaped values (`\\`, `\"`, `\n`) and a trailing comma, `+Inf`/`-Inf`/`NaN` values, an
 * optional timestamp, CRLF line ends, and OpenMetrics' `# EOF`. A line that cannot be read is
 * reported with its number and the reason and the rest of the text is still read: one odd line
 * must not hide every counter.
 */

/** One sample line: `name{labels} value [timestamp]`. */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestampMs: number | null;
  /** 1-based line number in the text. */
  readonly line: number;
}

export interface PromParseError {
  readonly line: number;
  readonly reason: string;
  /**
   * For a sample line: the metric name it starts with, or null when even that is unreadable.
   * Absent for a comment line (`# TYPE` / `# HELP`), which hides no sample.
   */
  readonly name?: string | null;
}

export interface PromText {
  readonly samples: readonly PromSample[];
  /** `# TYPE` declarations by family name (counter, gauge, histogram, summary, untyped, ...). */
  readonly types: ReadonlyMap<string, string>;
  readonly help: ReadonlyMap<string, string>;
  readonly errors: readonly PromParseError[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
/** Unreadable lines kept in `errors`; beyond this, more lines may be unreadable than are listed. */
export const MAX_PARSE_ERRORS = 100;

/** Parse exposition text. Never throws; unreadable lines land in `errors` (at most 100 kept). */
export function parsePrometheusText(text: string): PromText {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const errors: PromParseError[] = [];
  const fail = (line: number, reason: string, name?: string | null): void => {
    if (errors.length < MAX_PARSE_ERRORS) errors.push(name === undefined ? { line, reason } : { line, reason, name });
  };

  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = (lines[i] ?? '').trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      readComment(line, lineNo, types, help, fail);
      continue;
    }
    const sample = readSample(line, lineNo);
    if (typeof sample === 'string') fail(lineNo, sample, METRIC_NAME.exec(line)?.[0] ?? null);
    else samples.push(sample);
  }
  return { samples, types, help, errors };
}

function readComment(
  line: string,
  lineNo: number,
  types: Map<string, string>,
  help: Map<string, string>,
  fail: (line: number, reason: string) => void,
): void {
  const match = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
  if (!match) return; // a plain comment, or OpenMetrics' "# EOF"
  const [, keyword, name = '', rest = ''] = match;
  if (!METRIC_NAME.test(name) || METRIC_NAME.exec(name)?.[0] !== name) {
    fail(lineNo, `# ${keyword} names an invalid metric ${JSON.stringify(name.slice(0, 80))}`);
    return;
  }
  if (keyword === 'TYPE') types.set(name, rest.trim().toLowerCase());
  else help.set(name, unescapeHelp(rest));
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** Returns the sample, or the reason the line is not one. */
function readSample(line: string, lineNo: number): PromSample | string {
  const nameMatch = METRIC_NAME.exec(line);
  if (!nameMatch) return `expected a metric name at the start of ${JSON.stringify(line.slice(0, 80))}`;
  const name = nameMatch[0];
  let pos = name.length;
  let labels: Record<string, string> = {};
  if (line[pos] === '{') {
    const parsed = readLabels(line, pos + 1);
    if (typeof parsed === 'string') return `${name}: ${parsed}`;
    labels = parsed.labels;
    pos = parsed.end;
  }
  const rest = line.slice(pos).trim().split(/\s+/);
  if (rest.length === 0 || rest[0] === '') return `${name}: missing value`;
  if (rest.length > 2) return `${name}: unexpected text after the value and timestamp`;
  const value = readValue(rest[0] ?? '');
  if (value === null) return `${name}: value ${JSON.stringify((rest[0] ?? '').slice(0, 40))} is not a number`;
  let timestampMs: number | null = null;
  if (rest[1] !== undefined) {
    const ts = Number(rest[1]);
    if (!Number.isFinite(ts)) return `${name}: timestamp ${JSON.stringify(rest[1].slice(0, 40))} is not a number`;
    timestampMs = ts;
  }
  return { name, labels, value, timestampMs, line: lineNo };
}

function readValue(text: string): number | null {
  switch (text) {
    case '+Inf':
    case 'Inf':
      return Number.POSITIVE_INFINITY;
    case '-Inf':
      return Number.NEGATIVE_INFINITY;
    case 'NaN':
      return Number.NaN;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return null;
  return Number(text);
}

/** Read `a="x",b="y"}` starting just after `{`. Returns the labels and the index after `}`. */
function readLabels(line: string, start: number): { labels: Record<string, string>; end: number } | string {
  const labels: Record<string, string> = Object.create(null) as Record<string, string>;
  let pos = start;
  for (;;) {
    while (line[pos] === ' ' || line[pos] === '\t') pos++;
    if (line[pos] === '}') return { labels: { ...labels }, end: pos + 1 };
    const nameMatch = LABEL_NAME.exec(line.slice(pos));
    if (!nameMatch) return `invalid label name at column ${pos + 1}`;
    const labelName = nameMatch[0];
    pos += labelName.length;
    while (line[pos] === ' ') pos++;
    if (line[pos] !== '=') return `expected '=' after label ${labelName}`;
    pos++;
    while (line[pos] === ' ') pos++;
    if (line[pos] !== '"') return `label ${labelName}: value must be a quoted string`;
    pos++;
    let value = '';
    let closed = false;
    while (pos < line.length) {
      const c = line[pos];
      if (c === '\\') {
        const next = line[pos + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else return `label ${labelName}: invalid escape \\${next ?? ''}`;
        pos += 2;
        continue;
      }
      if (c === '"') {
        closed = true;
        pos++;
        break;
      }
      value += c;
      pos++;
    }
    if (!closed) return `label ${labelName}: unterminated value`;
    if (labelName in labels) return `label ${labelName} repeated`;
    labels[labelName] = value;
    while (line[pos] === ' ') pos++;
    if (line[pos] === ',') {
      pos++;
      continue;
    }
    if (line[pos] === '}') return { labels: { ...labels }, end: pos + 1 };
    return `expected ',' or '}' after label ${labelName}`;
  }
}
