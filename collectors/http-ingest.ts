import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { sendJson } from '../agent/http-server.js';
import { checkRequestRecord, parseRequestRecord, requestIdOf, requestRecordWireSchema } from '../model/request-record.js';
import type { RecordError, RequestRecord } from '../model/request-record.js';
import { bearerChecker } from './bearer-token.js';
import { mayRepeatKeys, RECORD_OBJECT_FIELDS, REPEATED_KEY_REASON, repeatedKeys } from './json-repeated-keys.js';
import { BackpressureError } from './request-sink.js';
import type { IngestResult, RequestSink } from './request-sink.js';

export interface IngestHandlerOptions {
  readonly sink: RequestSink;
  /** When set, requests must carry `Authorization: Bearer <token>`. */
  readonly bearerToken?: string;
  /** Largest body accepted, in bytes after decompression; larger gets 413. */
  readonly bodyLimitBytes: number;
  /** Records refused by validation here, by reason: a wire field name, 'parse', 'duplicate_key', 'record' or 'unknown_field'. */
  readonly onRejected?: (reason: string, n: number) => void;
  /** Most errors listed in a 400 answer (default 1000); `rejected` always counts them all. */
  readonly maxErrorsListed?: number;
}

/** One refused record as the client sees it (wire names). `line` is set for NDJSON bodies. */
interface WireError {
  index: number;
  line?: number;
  request_id: string | null;
  field: string;
  reason: string;
}

type BodyFormat = 'json' | 'ndjson' | 'json-seq' | 'auto';

const NDJSON_TYPES = new Set([
  'application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonl',
  'application/jsonlines', 'application/x-jsonlines',
]);
/** RFC 7464: each record is a record separator, a JSON text (which may span lines), a newline. */
const JSON_SEQ_TYPE = 'application/json-seq';
const RECORD_SEPARATOR = '\u001e';
const WIRE_FIELDS = new Set(Object.keys(requestRecordWireSchema.shape));
const utf8 = new TextDecoder('utf-8', { fatal: true });
/**
 * A body may hold one candidate record per this many bytes of the body limit. The smallest valid
 * record is about 105 bytes, so only a body of fragments (`[{},{},...]`, a line of `1` each)
 * reaches it, and the work spent on one body stays in proportion to the limit.
 */
export const MIN_RECORD_BYTES = 64;
/** Errors listed for one record: past them one more entry counts the rest, so one record's errors stay small. */
const MAX_ERRORS_PER_RECORD = 8;
/**
 * About this many bytes of errors are listed in one answer (each is at most about 1 KB: the model
 * clips the key names it shows); past them errors are only counted, as past `maxErrorsListed`.
 */
const MAX_LISTED_ERROR_BYTES = 256 * 1024;
/** splitBody's answer for a body past the record limit. */
const TOO_MANY = Symbol('too many records');

/**
 * The candidate records of a body: each one's parsed value, its NDJSON line, and why a line could
 * not be parsed. Kept as arrays, not an object per record, and the values are let go once checked:
 * what ingest holds while its batch waits for the commit is what the garbage collector copies.
 */
interface BodyCandidates {
  /** Parsed value of each candidate (undefined where it could not be parsed). */
  readonly values: unknown[];
  /** NDJSON line of each candidate; null for a JSON body. */
  readonly lines: readonly number[] | null;
  /** Why a candidate is refused before its fields are checked, by its index. */
  readonly refusals: ReadonlyMap<number, Refusal>;
}

/** A candidate refused as it is read: not JSON, or a key given twice. */
interface Refusal {
  readonly field: string;
  readonly reason: string;
  /** Its reason in tokenwatt_records_rejected_total. */
  readonly metric: 'parse' | 'duplicate_key';
}


/**
 * Handler for `POST /v1/requests`. The body is a JSON object, a JSON array of objects, or NDJSON
 * (one object per line, blank lines ignored). Good records are stored even when others in the
 * same body are refused: 202 when all were good, else 400 listing each refused record by index
 * (and line, for NDJSON), field and reason; at most `maxErrorsListed` errors, MAX_ERRORS_PER_RECORD
 * per record and about MAX_LISTED_ERROR_BYTES of them, in body order. 413
 * past the body limit, or past one candidate record per MIN_RECORD_BYTES of it; 415 for other media types,
 * 401 without the bearer token, 429 with Retry-After when the write queue is full, 503 when the
 * ledger cannot store. The answer comes only after the records are committed.
 */
export function createIngestHandler(options: IngestHandlerOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const checkBearer = options.bearerToken === undefined ? null : bearerChecker(options.bearerToken);
  const maxErrors = options.maxErrorsListed ?? 1000;
  const maxRecords = Math.floor(options.bodyLimitBytes / MIN_RECORD_BYTES);

  return async (req, res) => {
    if (checkBearer !== null) {
      const refusal = checkBearer(req.headers.authorization);
      if (refusal !== null) {
        sendJson(res, 401, { error: refusal.message }, { 'www-authenticate': refusal.challenge });
        return;
      }
    }
    const format = bodyFormat(req.headers['content-type']);
    if (typeof format === 'object') {
      sendJson(res, 415, { error: format.error });
      return;
    }
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') {
      sendJson(res, 415, { error: `content-encoding ${encoding} is not supported (use gzip or none)` });
      return;
    }
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (encoding === 'identity' && declared > options.bodyLimitBytes) {
      tooLarge(req, res, options.bodyLimitBytes);
      return;
    }
    const body = await readBody(req, options.bodyLimitBytes, encoding === 'gzip');
    if (body.kind === 'aborted') return; // the client is gone: nobody to answer
    if (body.kind === 'too-large') {
      tooLarge(req, res, options.bodyLimitBytes);
      return;
    }
    if (body.kind === 'bad-encoding') {
      // The same shape as every other refused body: one error naming the body and the reason.
      options.onRejected?.('parse', 1);
      const errors: WireError[] = [{ index: 0, request_id: null, field: '(body)', reason: `not valid gzip: ${body.reason}` }];
      sendJson(res, 400, { accepted: 0, duplicates: 0, late: 0, rejected: 1, errors });
      return;
    }

    const candidates = splitBody(body.bytes, format, maxRecords);
    if (candidates === TOO_MANY) {
      sendJson(res, 413, { error: `body holds more than ${maxRecords} records (one per ${MIN_RECORD_BYTES} bytes of the body limit; no real record is that small): split it into smaller batches` });
      return;
    }
    if ('error' in candidates) {
      const errors: WireError[] = [{ index: 0, request_id: null, field: '(body)', reason: candidates.error }];
      options.onRejected?.('parse', 1);
      sendJson(res, 400, { accepted: 0, duplicates: 0, late: 0, rejected: 1, errors });
      return;
    }

    const records: RequestRecord[] = [];
    const batchIndex: number[] = []; // position in `records` -> index in the body
    const { values, lines, refusals } = candidates;
    // An answer lists at most maxErrors errors, in body order: past them a refused record is only
    // counted, by reason, and checked without building its errors (a body can hold millions).
    const errors: RecordError[] = [];
    let errorsLeftOut = false;
    let refused = 0;
    const refusedBy = new Map<string, number>();
    const refuse = (reason: string): void => {
      refused += 1;
      refusedBy.set(reason, (refusedBy.get(reason) ?? 0) + 1);
    };
    for (let index = 0; index < values.length; index++) {
      const refusal = refusals.get(index);
      if (refusal !== undefined) {
        refuse(refusal.metric);
        const requestId = refusal.metric === 'duplicate_key' ? requestIdOf(values[index]) : undefined;
        const error = { index, field: refusal.field, reason: refusal.reason };
        if (errors.length < maxErrors) errors.push(requestId === undefined ? error : { ...error, requestId });
        else errorsLeftOut = true;
        continue;
      }
      if (errors.length < maxErrors) {
        const parsed = parseRequestRecord(values[index], index);
        if (parsed.ok) {
          records.push(parsed.record);
          batchIndex.push(index);
          continue;
        }
        refuse(reasonOf(parsed.errors[0]?.field ?? '(record)'));
        listOwnErrors(errors, parsed.errors);
        continue;
      }
      const checked = checkRequestRecord(values[index]);
      if (checked.ok) {
        records.push(checked.record);
        batchIndex.push(index);
        continue;
      }
      refuse(reasonOf(checked.field));
      errorsLeftOut = true;
    }
    values.length = 0; // checked: only the records go on to wait for the commit

    let result: IngestResult = { accepted: 0, duplicates: 0, late: 0, errors: [] };
    if (records.length > 0) {
      try {
        result = await options.sink.submit(records, 0);
      } catch (error) {
        if (error instanceof BackpressureError) {
          sendJson(res, 429, { error: error.message }, { 'retry-after': String(error.retryAfterSeconds) });
        } else {
          sendJson(res, 503, { error: `records not stored: ${error instanceof Error ? error.message : String(error)}` });
        }
        return;
      }
    }
    // Counted only once the batch was taken, so a 429'd body is not counted again when retried.
    if (options.onRejected) for (const [reason, n] of refusedBy) options.onRejected(reason, n);

    // The sink's errors and this handler's, merged in body order (`batchIndex` keeps it).
    let sinkErrors = result.errors;
    if (sinkErrors.some((e, i) => i > 0 && e.index < (sinkErrors[i - 1] as RecordError).index)) {
      sinkErrors = [...sinkErrors].sort((a, b) => a.index - b.index);
    }
    let sinkRefused = 0;
    for (let i = 0; i < sinkErrors.length; i++) if (i === 0 || sinkErrors[i]?.index !== sinkErrors[i - 1]?.index) sinkRefused += 1;
    const counts = { accepted: result.accepted, duplicates: result.duplicates, late: result.late, rejected: refused + sinkRefused };
    if (refused === 0 && sinkErrors.length === 0) {
      sendJson(res, 202, counts);
      return;
    }
    const listed: WireError[] = [];
    const wireError = (e: RecordError, index: number): WireError => {
      const line = lines?.[index];
      return { index, ...(line !== undefined && { line }), request_id: e.requestId ?? null, field: e.field, reason: e.reason };
    };
    let nextOwn = 0;
    let nextSink = 0;
    let listedBytes = 0;
    while (listed.length < maxErrors && listedBytes < MAX_LISTED_ERROR_BYTES && (nextOwn < errors.length || nextSink < sinkErrors.length)) {
      const own = errors[nextOwn];
      const sink = sinkErrors[nextSink];
      const sinkIndex = sink === undefined ? Infinity : (batchIndex[sink.index] ?? sink.index);
      let error: WireError;
      if (own !== undefined && own.index <= sinkIndex) {
        error = wireError(own, own.index);
        nextOwn += 1;
      } else if (sink !== undefined) {
        error = wireError(sink, sinkIndex);
        nextSink += 1;
      } else break;
      listed.push(error);
      listedBytes += 80 + error.field.length + error.reason.length + (error.request_id?.length ?? 0);
    }
    const truncated = errorsLeftOut || nextOwn < errors.length || nextSink < sinkErrors.length;
    sendJson(res, 400, { ...counts, errors: listed, ...(truncated && { errors_truncated: true }) });
  };
}

/** A refused record's errors into the answer's list: the first few, then a count of the rest. */
function listOwnErrors(into: RecordError[], recordErrors: readonly RecordError[]): void {
  if (recordErrors.length <= MAX_ERRORS_PER_RECORD) {
    for (const e of recordErrors) into.push(e);
    return;
  }
  for (let i = 0; i < MAX_ERRORS_PER_RECORD - 1; i++) into.push(recordErrors[i] as RecordError);
  const { index, requestId } = recordErrors[0] as RecordError;
  const rest = { index, field: '(record)', reason: `${recordErrors.length - (MAX_ERRORS_PER_RECORD - 1)} more errors in this record, not listed` };
  into.push(requestId === undefined ? rest : { ...rest, requestId });
}

/** JSON, NDJSON, or sniffed when the client sent no (or a text/plain) content type. */
function bodyFormat(contentType: string | undefined): BodyFormat | { error: string } {
  if (contentType === undefined || contentType.trim() === '') return 'auto';
  const [mediaType = '', ...params] = contentType.split(';').map((p) => p.trim().toLowerCase());
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/"/g, '');
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    return { error: `charset ${charset} is not supported (use utf-8)` };
  }
  if (mediaType === 'application/json') return 'json';
  if (NDJSON_TYPES.has(mediaType)) return 'ndjson';
  if (mediaType === JSON_SEQ_TYPE) return 'json-seq';
  if (mediaType === 'text/plain') return 'auto';
  return { error: `content-type ${mediaType} is not supported (use application/json or application/x-ndjson)` };
}

type Body =
  | { kind: 'ok'; bytes: Buffer }
  | { kind: 'too-large' }
  | { kind: 'bad-encoding'; reason: string }
  | { kind: 'aborted' };

/** Read the body up to `limit` bytes (decompressed), stopping as soon as it is exceeded. */
function readBody(req: IncomingMessage, limit: number, gzip: boolean): Promise<Body> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (body: Body): void => {
      if (done) return;
      done = true;
      resolve(body);
    };
    let source: Readable = req;
    let gunzip: ReturnType<typeof createGunzip> | null = null;
    if (gzip) {
      gunzip = createGunzip();
      gunzip.on('error', (error) => finish({ kind: 'bad-encoding', reason: error.message }));
      source = req.pipe(gunzip);
    }
    // Once the answer is known, stop inflating: what gzip already holds can be a thousand times its size.
    const stopInflating = (): void => {
      if (gunzip === null) return;
      req.unpipe(gunzip);
      gunzip.destroy();
    };
    source.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        stopInflating();
        req.pause();
        finish({ kind: 'too-large' });
        return;
      }
      chunks.push(chunk);
    });
    source.on('end', () => finish({ kind: 'ok', bytes: Buffer.concat(chunks, size) }));
    req.on('error', () => {
      stopInflating();
      finish({ kind: 'aborted' });
    });
    req.on('close', () => {
      if (req.complete) return;
      stopInflating();
      finish({ kind: 'aborted' });
    });
  });
}

/** Answer 413 and close the connection rather than read the rest of an oversized body. */
function tooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  res.on('finish', () => req.socket.destroy());
  sendJson(res, 413, { error: `body larger than ${limit} bytes: split it into smaller batches` }, { connection: 'close' });
}

/** Split a body into candidate records: a JSON object, a JSON array, or NDJSON lines. */
function splitBody(bytes: Buffer, format: BodyFormat, maxRecords: number): BodyCandidates | { error: string } | typeof TOO_MANY {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { error: 'body is not valid UTF-8' };
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // byte-order mark
  if (text.trim() === '') return { error: 'empty body: send a JSON object, a JSON array or NDJSON' };
  if (format === 'json-seq') return fromJsonSeq(text, maxRecords);
  if (format !== 'ndjson') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      if (format === 'json') {
        return { error: `not valid JSON: ${(error as Error).message} (for one record per line, send content-type application/x-ndjson)` };
      }
      return fromNdjson(text, maxRecords); // 'auto': a body that is not one JSON value is read as NDJSON
    }
    return fromJson(text, value, maxRecords);
  }
  return fromNdjson(text, maxRecords);
}

const NO_REFUSALS: ReadonlyMap<number, Refusal> = new Map();

/**
 * `into` with a refusal for each record in text[from, to) (parsed as `value`) that gives a key
 * twice: the one record at `index`, or with `elements` an array of records from index 0.
 */
function repeatRefusals(into: Map<number, Refusal> | null, text: string, from: number, to: number, value: unknown, index: number, elements = false): Map<number, Refusal> | null {
  if (!mayRepeatKeys(text, from, to, value, RECORD_OBJECT_FIELDS)) return into;
  const repeats = repeatedKeys(from === 0 && to === text.length ? text : text.slice(from, to), elements);
  for (const [element, field] of repeats) (into ??= new Map()).set(index + element, { field, reason: REPEATED_KEY_REASON, metric: 'duplicate_key' });
  return into;
}

function fromJson(text: string, value: unknown, maxRecords: number): BodyCandidates | { error: string } | typeof TOO_MANY {
  if (Array.isArray(value) && value.length > maxRecords) return TOO_MANY;
  const refusals = repeatRefusals(null, text, 0, text.length, value, 0, Array.isArray(value)) ?? NO_REFUSALS;
  if (Array.isArray(value)) return { values: value, lines: null, refusals };
  if (value !== null && typeof value === 'object') return { values: [value], lines: null, refusals };
  return { error: 'must be a JSON object, an array of objects, or NDJSON' };
}

function fromNdjson(text: string, maxRecords: number): BodyCandidates | typeof TOO_MANY {
  const values: unknown[] = [];
  const lines: number[] = [];
  let refusals: Map<number, Refusal> | null = null;
  let lineNumber = 0;
  for (let from = 0; from <= text.length; ) {
    let to = text.indexOf('\n', from);
    if (to === -1) to = text.length;
    lineNumber += 1;
    const start = from;
    const line = text.slice(from, to).trim();
    from = to + 1;
    if (line === '') continue;
    if (values.length === maxRecords) return TOO_MANY; // before parsing: the lines past it are not read
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      (refusals ??= new Map()).set(values.length, { field: '(record)', reason: `line ${lineNumber} is not valid JSON: ${(error as Error).message}`, metric: 'parse' });
    }
    if (value !== undefined) refusals = repeatRefusals(refusals, text, start, to, value, values.length);
    values.push(value);
    lines.push(lineNumber);
  }
  return { values, lines, refusals: refusals ?? NO_REFUSALS };
}

/** A JSON text sequence (RFC 7464): records start at a record separator; each is named by the line it starts on. */
function fromJsonSeq(text: string, maxRecords: number): BodyCandidates | typeof TOO_MANY {
  const values: unknown[] = [];
  const lines: number[] = [];
  let refusals: Map<number, Refusal> | null = null;
  let lineNumber = 1;
  let counted = 0; // text before this offset has its newlines in lineNumber
  const lineAt = (offset: number): number => {
    for (let i = text.indexOf('\n', counted); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) lineNumber += 1;
    counted = offset;
    return lineNumber;
  };
  const first = text.indexOf(RECORD_SEPARATOR);
  if (first === -1 || text.slice(0, first).trim() !== '') {
    const reason = 'line 1 does not start with a record separator (0x1E): not a JSON text sequence (RFC 7464); for one record per line, send content-type application/x-ndjson';
    return { values: [undefined], lines: [1], refusals: new Map([[0, { field: '(record)', reason, metric: 'parse' }]]) };
  }
  for (let from = first; from !== -1; ) {
    const next = text.indexOf(RECORD_SEPARATOR, from + 1);
    const start = from + 1;
    const end = next === -1 ? text.length : next;
    const record = text.slice(start, end).trim();
    const line = lineAt(from);
    from = next;
    if (record === '') continue;
    if (values.length === maxRecords) return TOO_MANY;
    let value: unknown;
    try {
      value = JSON.parse(record);
    } catch (error) {
      (refusals ??= new Map()).set(values.length, { field: '(record)', reason: `the record starting on line ${line} is not valid JSON: ${(error as Error).message}`, metric: 'parse' });
    }
    if (value !== undefined) refusals = repeatRefusals(refusals, text, start, end, value, values.length);
    values.push(value);
    lines.push(line);
  }
  return { values, lines, refusals: refusals ?? NO_REFUSALS };
}

/** A refused record's reason in the metrics: bounded (never a client-chosen string). */
function reasonOf(field: string): string {
  if (field === '(record)') return 'record';
  const head = field.split('.')[0] ?? field;
  return WIRE_FIELDS.has(head) ? head : 'unknown_field';
}
