import { conflictReason, differingFacts } from '../model/request-facts.js';
import { parseRequestRecord, type RequestRecord } from '../model/request-record.js';
import { REPEATED_KEY_REASON, repeatedRecordKey } from './json-repeated-keys.js';
import { SharedValues } from './shared-values.js';
import { forEachLine, forEachLineOfFile, MAX_LINE_CHARS, READ_CHUNK_BYTES } from './trace-file-lines.js';

/** One reason one line of a request file was refused. Lines are numbered from 1. */
export interface RequestFileError {
  readonly line: number;
  readonly requestId?: string;
  /** Wire name of the field at fault, "(record)" for the record as a whole, "(line)" for bad JSON. */
  readonly field: string;
  readonly reason: string;
}

/** A line restating an earlier line's record. */
export interface RequestFileDuplicate {
  readonly line: number;
  readonly requestId: string;
  readonly firstLine: number;
}

/**
 * Errors and duplicate lines kept with their details: the first this many (by line number). The
 * rest are only counted (`errorCount`, `duplicateCount`), as for a trace's bad lines: a file whose
 * every line is refused must not cost more memory than a good one.
 */
export const MAX_KEPT_REQUEST_FILE_ERRORS = 100;

export interface ParsedRequestFile {
  /**
   * Valid records in file order, each held once; `source` is "file" unless the line named one. A
   * plain array the caller may consume (analyze replaces each record by its resolved form in place).
   */
  readonly records: RequestRecord[];
  /** The line each record came from: `lines[i]` for `records[i]` (for errors found later, e.g. an unknown GPU). */
  readonly lines: readonly number[];
  /** The first MAX_KEPT_REQUEST_FILE_ERRORS errors, in line order. */
  readonly errors: RequestFileError[];
  /** How many errors in all (a line may have several); `errors` holds the first of them. */
  readonly errorCount: number;
  /**
   * Lines restating an earlier line's record: acknowledged, not counted twice (like ingest). A line
   * that reuses an earlier request_id for a different record is an error instead. The first
   * MAX_KEPT_REQUEST_FILE_ERRORS, in line order.
   */
  readonly duplicates: RequestFileDuplicate[];
  /** How many duplicate lines in all. */
  readonly duplicateCount: number;
}

/**
 * Parse an NDJSON request file (one request record per line, the ingest wire schema). Blank lines
 * are allowed. Every bad line yields errors naming its line, the field and the reason; good lines
 * are kept. Never throws on content. For a file, readRequestFile streams it instead.
 */
export function parseRequestFile(text: string): ParsedRequestFile {
  const reader = new RequestFileReader();
  forEachLine(text, (line, lineNumber) => reader.line(line, lineNumber), (lineNumber) => reader.tooLong(lineNumber));
  return reader.finish();
}

export interface ReadRequestFileOptions {
  /** Bytes read at a time (default READ_CHUNK_BYTES); tests make it small to cut lines and characters across reads. */
  readonly chunkBytes?: number;
}

/**
 * parseRequestFile for a file, read as a stream line by line: the file's text is never held as one
 * string (a day of requests at 25/s is ~600 MB, more than a JavaScript string can hold), and memory
 * grows with the records kept. Rejects only when the file cannot be read.
 */
export async function readRequestFile(path: string, opts: ReadRequestFileOptions = {}): Promise<ParsedRequestFile> {
  const reader = new RequestFileReader();
  await forEachLineOfFile(path, (line, lineNumber) => reader.line(line, lineNumber), (lineNumber) => reader.tooLong(lineNumber), opts.chunkBytes ?? READ_CHUNK_BYTES);
  return reader.finish();
}

/**
 * Why a JSON array is refused: it cannot be read line by line (streamed), and a day of requests is
 * more than one string can hold. jq makes it a file this reader takes.
 */
const NOT_AN_ARRAY = 'a request file has one record per line (NDJSON), not a JSON array (jq -c ".[]" turns an array into lines)';

/** Takes a request file line by line. */
class RequestFileReader {
  private readonly records: RequestRecord[] = [];
  private readonly lines: number[] = [];
  /** The index in `records` of the record kept for each request_id: the first, which a repeat is compared with. */
  private readonly indexOf = new Map<string, number>();
  private readonly errors: RequestFileError[] = [];
  private errorCount = 0;
  private readonly duplicates: RequestFileDuplicate[] = [];
  private duplicateCount = 0;
  private readonly shared = new SharedValues();

  line(line: string, lineNumber: number): void {
    if (line.trim().length === 0) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      const message = `not valid JSON: ${error instanceof Error ? error.message : String(error)}`;
      // The first line of a pretty-printed array ("[") or of an array split over lines.
      this.error({ line: lineNumber, field: '(line)', reason: line.trimStart().startsWith('[') ? `${message}; ${NOT_AN_ARRAY}` : message });
      return;
    }
    if (Array.isArray(value)) {
      this.error({ line: lineNumber, field: '(record)', reason: `must be a JSON object: ${NOT_AN_ARRAY}` });
      return;
    }
    const repeated = repeatedRecordKey(line, value);
    if (repeated !== undefined) {
      const requestId = (value as { request_id?: unknown } | null)?.request_id;
      this.error(typeof requestId === 'string' ? { line: lineNumber, requestId, field: repeated, reason: REPEATED_KEY_REASON } : { line: lineNumber, field: repeated, reason: REPEATED_KEY_REASON });
      return;
    }
    const parsed = parseRequestRecord(value, lineNumber - 1);
    if (!parsed.ok) {
      for (const e of parsed.errors) {
        this.error(e.requestId === undefined ? { line: lineNumber, field: e.field, reason: e.reason } : { line: lineNumber, requestId: e.requestId, field: e.field, reason: e.reason });
      }
      return;
    }
    const record = parsed.record;
    const first = this.indexOf.get(record.requestId);
    if (first !== undefined) {
      const firstLine = this.lines[first] as number;
      const differing = differingFacts(this.records[first] as RequestRecord, record);
      if (differing.length > 0) this.error({ line: lineNumber, requestId: record.requestId, field: 'request_id', reason: conflictReason(differing, `line ${firstLine}`) });
      else if (this.duplicateCount++ < MAX_KEPT_REQUEST_FILE_ERRORS) this.duplicates.push({ line: lineNumber, requestId: record.requestId, firstLine });
      return;
    }
    const namedSource = typeof value === 'object' && value !== null && 'source' in value;
    this.indexOf.set(record.requestId, this.records.length);
    // Repeated values (a few models, tiers, label sets, GPU lists) are held once for all records.
    const { shared } = this;
    this.records.push({
      ...record,
      model: shared.string(record.model),
      tier: record.tier === null ? null : shared.string(record.tier),
      gpus: record.gpus === null ? null : shared.list(record.gpus),
      labels: shared.labels(record.labels),
      source: namedSource ? shared.string(record.source) : 'file',
    });
    this.lines.push(lineNumber);
  }

  /** A line longer than MAX_LINE_CHARS: a bad line like any other, dropped as it is read (never held). */
  tooLong(lineNumber: number): void {
    this.error({ line: lineNumber, field: '(line)', reason: `longer than ${MAX_LINE_CHARS} characters: a request file has one JSON record per line (NDJSON)` });
  }

  finish(): ParsedRequestFile {
    return { records: this.records, lines: this.lines, errors: this.errors, errorCount: this.errorCount, duplicates: this.duplicates, duplicateCount: this.duplicateCount };
  }

  private error(error: RequestFileError): void {
    if (this.errorCount++ < MAX_KEPT_REQUEST_FILE_ERRORS) this.errors.push(error);
  }
}
