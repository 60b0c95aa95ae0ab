/**
 * Line and field scanning for power trace files: no regular expressions on the hot path and no
 * split of the whole text, so multi-million-line traces parse in linear time with little garbage.
 */

/** Call `visit(line, lineNumber)` for every line (1-based numbers; "\r\n" and a leading BOM handled). */
export function forEachLine(text: string, visit: (line: string, lineNumber: number) => void): void {
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let lineNumber = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNumber++;
    const line = end > start && text.charCodeAt(end - 1) === 13 ? text.slice(start, end - 1) : text.slice(start, end);
    if (!(end === text.length && line.length === 0)) visit(line, lineNumber); // no phantom line after a final newline
    start = end + 1;
  }
}

/** The first `count` comma-separated fields of a line, trimmed, plus how many fields the line has in all. */
export function leadingFields(line: string, count: number): { fields: string[]; total: number } {
  const fields: string[] = [];
  let start = 0;
  let total = 0;
  for (;;) {
    const comma = line.indexOf(',', start);
    const end = comma < 0 ? line.length : comma;
    if (total < count) fields.push(unquote(line.slice(start, end).trim()));
    total++;
    if (comma < 0) return { fields, total };
    start = comma + 1;
  }
}

/** Strip one pair of surrounding double quotes (spreadsheet exports quote strings). */
function unquote(field: string): string {
  return field.length >= 2 && field.charCodeAt(0) === 34 && field.charCodeAt(field.length - 1) === 34 ? field.slice(1, -1) : field;
}

/** A decimal number, or undefined when the text is not exactly one (Number('') is 0, '0x10' is 16: refused). */
export function decimal(text: string): number | undefined {
  if (text.length === 0 || text.length > 40) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // digits . - + e E only
    if (!((c >= 48 && c <= 57) || c === 46 || c === 45 || c === 43 || c === 101 || c === 69)) return undefined;
  }
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/** Short, printable excerpt of a bad value for an error message. */
export function excerpt(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}
