import { conflictReason, differingFacts } from '../model/request-facts.js';
import { parseRequestRecord, type RequestRecord } from '../model/request-record.js';
import { forEachLine } from './trace-file-lines.js';

/** One reason one line of a request file was refused. Lines are numbered from 1. */
export interface RequestFileError {
  readonly line: number;
  readonly requestId?: string;
  /** Wire name of the field at fault, "(record)" for the record as a whole, "(line)" for bad JSON. */
  readonly field: string;
  readonly reason: string;
}

export interface ParsedRequestFile {
  /** Valid records in file order; `source` is "file" unless the line named one. */
  readonly records: RequestRecord[];
  readonly errors: RequestFileError[];
  /**
   * Lines restating an earlier line's record: acknowledged, not counted twice (like ingest). A line
   * that reuses an earlier request_id for a different record is an error instead.
   */
  readonly duplicates: { readonly line: number; readonly requestId: string; readonly firstLine: number }[];
  /** The line each kept record came from, by request_id (for errors found later, e.g. an unknown GPU). */
  readonly lineOf: ReadonlyMap<string, number>;
}

/**
 * Parse an NDJSON request file (one request record per line, the ingest wire schema). Blank lines
 * are allowed. Every bad line yields errors naming its line, the field and the reason; good lines
 * are kept. Never throws on content.
 */
export function parseRequestFile(text: string): ParsedRequestFile {
  const records: RequestRecord[] = [];
  const errors: RequestFileError[] = [];
  const duplicates: { line: number; requestId: string; firstLine: number }[] = [];
  const firstLineOf = new Map<string, number>();
  const firstRecordOf = new Map<string, RequestRecord>();
  forEachLine(text, (line, lineNumber) => {
    if (line.trim().length === 0) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      errors.push({ line: lineNumber, field: '(line)', reason: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` });
      return;
    }
    const parsed = parseRequestRecord(value, lineNumber - 1);
    if (!parsed.ok) {
      for (const e of parsed.errors) {
        errors.push(e.requestId === undefined ? { line: lineNumber, field: e.field, reason: e.reason } : { line: lineNumber, requestId: e.requestId, field: e.field, reason: e.reason });
      }
      return;
    }
    const record = parsed.record;
    const first = firstLineOf.get(record.requestId);
    if (first !== undefined) {
      const differing = differingFacts(firstRecordOf.get(record.requestId) as RequestRecord, record);
      if (differing.length === 0) duplicates.push({ line: lineNumber, requestId: record.requestId, firstLine: first });
      else errors.push({ line: lineNumber, requestId: record.requestId, field: 'request_id', reason: conflictReason(differing, `line ${first}`) });
      return;
    }
    firstLineOf.set(record.requestId, lineNumber);
    firstRecordOf.set(record.requestId, record);
    const namedSource = typeof value === 'object' && value !== null && 'source' in value;
    records.push(namedSource ? record : { ...record, source: 'file' });
  });
  return { records, errors, duplicates, lineOf: firstLineOf };
}
