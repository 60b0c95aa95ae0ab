import { otlpTypes } from './otlp-trace-proto.js';

/**
 * A value that is present but cannot be read (an intValue that is not an integer, nesting deeper
 * than {@link MAX_NESTING}). It is kept rather than taken as absent, so that whoever reads the
 * attribute can name it instead of silently going without it.
 */
export class UnreadableValue {
  constructor(readonly reason: string) {}
}

/** An attribute value as OTLP carries it (ints as bigint: int64 does not fit a double). */
export type AttributeValue =
  | string
  | boolean
  | number
  | bigint
  | Uint8Array
  | AttributeValue[]
  | { readonly [key: string]: AttributeValue }
  | UnreadableValue
  | null;

/**
 * Deepest nesting of arrayValue/kvlistValue read, far beyond any GenAI attribute. OTLP/JSON
 * nesting is otherwise bounded only by the body size, and each level is a recursion.
 */
export const MAX_NESTING = 32;

/** One span, the same whether it came as OTLP/JSON or OTLP/protobuf. */
export interface OtlpSpan {
  /** Where it sits in the request, for error messages: resourceSpans[0].scopeSpans[1].spans[2]. */
  readonly path: string;
  /** Lowercase hex; empty when missing or malformed. */
  readonly traceId: string;
  readonly spanId: string;
  readonly name: string;
  /** Unix nanoseconds; null when missing or unreadable. */
  readonly startNs: bigint | null;
  readonly endNs: bigint | null;
  readonly attributes: ReadonlyMap<string, AttributeValue>;
  readonly resourceAttributes: ReadonlyMap<string, AttributeValue>;
  /** 0 unset, 1 ok, 2 error; unreadable when status.code is present but none of these. */
  readonly statusCode: number | UnreadableValue;
  readonly statusMessage: string;
}

/** A part of the request that is not a span and could not be read. */
export interface StructureProblem {
  readonly path: string;
  readonly reason: string;
}

export class OtlpDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OtlpDecodeError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/** Decode an ExportTraceServiceRequest in protobuf. Throws OtlpDecodeError on bytes that are not one. */
export function decodeProtobufRequest(body: Uint8Array): unknown {
  const { request } = otlpTypes();
  try {
    const message = request.decode(body);
    return request.toObject(message, { longs: String, enums: Number, defaults: false, arrays: true });
  } catch (err) {
    throw new OtlpDecodeError(`not an OTLP ExportTraceServiceRequest (protobuf): ${(err as Error).message}`);
  }
}

/** Parse an ExportTraceServiceRequest in OTLP/JSON. Throws OtlpDecodeError on text that is not JSON. */
export function decodeJsonRequest(body: Uint8Array): unknown {
  try {
    const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
    // A UTF-8 byte order mark (some Windows tools write one) is not JSON, but says nothing either.
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw new OtlpDecodeError(`not an OTLP ExportTraceServiceRequest (JSON): ${(err as Error).message}`);
  }
}

/**
 * Walk a decoded request (protobufjs object or OTLP/JSON) into spans. OTLP/JSON's lowerCamelCase
 * keys are read, and the proto field names too (some hand-written senders use them). A request
 * that is not an object, or whose resourceSpans is not a list, is refused as a whole; anything
 * malformed deeper down is reported by path and the rest is still read.
 */
export function collectSpans(request: unknown): { spans: OtlpSpan[]; problems: StructureProblem[]; unreadableSpans: number } {
  if (!isObject(request)) throw new OtlpDecodeError('the request body must be an ExportTraceServiceRequest object');
  const resourceSpans = pick(request, 'resourceSpans', 'resource_spans');
  if (resourceSpans !== undefined && !Array.isArray(resourceSpans)) throw new OtlpDecodeError('resourceSpans must be a list');
  const spans: OtlpSpan[] = [];
  const problems: StructureProblem[] = [];
  let unreadableSpans = 0;
  for (const [r, rs] of (resourceSpans ?? []).entries()) {
    const rPath = `resourceSpans[${r}]`;
    if (!isObject(rs)) {
      problems.push({ path: rPath, reason: 'must be an object' });
      continue;
    }
    const resource = pick(rs, 'resource');
    const resourceAttributes = attributesOf(isObject(resource) ? pick(resource, 'attributes') : undefined);
    for (const [key, value] of resourceAttributes) {
      if (value instanceof UnreadableValue) problems.push({ path: `${rPath}.resource.attributes[${JSON.stringify(key)}]`, reason: `${value.reason}, not read` });
    }
    const scopeSpans = pick(rs, 'scopeSpans', 'scope_spans') ?? [];
    if (!Array.isArray(scopeSpans)) {
      problems.push({ path: `${rPath}.scopeSpans`, reason: 'must be a list' });
      continue;
    }
    for (const [s, ss] of scopeSpans.entries()) {
      const sPath = `${rPath}.scopeSpans[${s}]`;
      if (!isObject(ss)) {
        problems.push({ path: sPath, reason: 'must be an object' });
        continue;
      }
      const list = pick(ss, 'spans') ?? [];
      if (!Array.isArray(list)) {
        problems.push({ path: `${sPath}.spans`, reason: 'must be a list' });
        continue;
      }
      for (const [i, span] of list.entries()) {
        const path = `${sPath}.spans[${i}]`;
        const read = isObject(span) ? readSpanGuarded(span, path, resourceAttributes) : 'must be an object';
        if (typeof read !== 'string') spans.push(read);
        else {
          unreadableSpans++;
          problems.push({ path, reason: read });
        }
      }
    }
  }
  return { spans, problems, unreadableSpans };
}

/**
 * Read one span; an unexpected error (a bug, or input nobody foresaw) refuses that span alone,
 * with the reason, rather than failing the whole export.
 */
function readSpanGuarded(span: Record<string, unknown>, path: string, resourceAttributes: ReadonlyMap<string, AttributeValue>): OtlpSpan | string {
  try {
    return readSpan(span, path, resourceAttributes);
  } catch (err) {
    return `could not be read: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
  }
}

function readSpan(span: Record<string, unknown>, path: string, resourceAttributes: ReadonlyMap<string, AttributeValue>): OtlpSpan {
  const status = pick(span, 'status');
  const message = isObject(status) ? pick(status, 'message') : undefined;
  const name = pick(span, 'name');
  return {
    path,
    traceId: idOf(pick(span, 'traceId', 'trace_id'), 16),
    spanId: idOf(pick(span, 'spanId', 'span_id'), 8),
    name: typeof name === 'string' ? name : '',
    startNs: nanosOf(pick(span, 'startTimeUnixNano', 'start_time_unix_nano')),
    endNs: nanosOf(pick(span, 'endTimeUnixNano', 'end_time_unix_nano')),
    attributes: attributesOf(pick(span, 'attributes')),
    resourceAttributes,
    statusCode: statusCodeOf(isObject(status) ? pick(status, 'code') : undefined),
    statusMessage: typeof message === 'string' ? message : '',
  };
}

/** Status.code names, which the proto3 JSON mapping allows in place of the numbers. */
const STATUS_CODE_NAMES: ReadonlyMap<string, number> = new Map([
  ['STATUS_CODE_UNSET', 0],
  ['STATUS_CODE_OK', 1],
  ['STATUS_CODE_ERROR', 2],
]);

/** Status.code as 0..2; checked before any coercion, since OTLP/JSON can put anything there. */
function statusCodeOf(code: unknown): number | UnreadableValue {
  if (code === undefined || code === null) return 0;
  if (code === 0 || code === 1 || code === 2) return code;
  if (typeof code === 'string') {
    const known = STATUS_CODE_NAMES.get(code) ?? (/^[012]$/.test(code) ? Number(code) : undefined);
    if (known !== undefined) return known;
  }
  return new UnreadableValue(`must be 0, 1, 2 or STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR (got ${describeRaw(code)})`);
}

/** A decoded JSON value for an error message, without coercing it (objects may not convert). */
function describeRaw(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return 'a list';
  return value === null ? 'null' : `an ${typeof value}`;
}

function pick(o: Record<string, unknown>, ...keys: string[]): unknown {
  for (const key of keys) if (o[key] !== undefined) return o[key];
  return undefined;
}

/** Trace/span ids: bytes (protobuf) or hex (OTLP/JSON); '' when absent or of the wrong size. */
function idOf(value: unknown, bytes: number): string {
  if (value instanceof Uint8Array) return value.length === bytes ? Buffer.from(value).toString('hex') : '';
  if (typeof value === 'string' && value.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(value)) return value.toLowerCase();
  return '';
}

/** fixed64 nanoseconds: decimal string, number, or the {low, high} pair some JSON senders write. */
function nanosOf(value: unknown): bigint | null {
  try {
    if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return BigInt(value);
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return BigInt(value);
    if (isObject(value) && typeof value.low === 'number' && typeof value.high === 'number') {
      return (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
    }
  } catch {
    return null;
  }
  return null;
}

/**
 * Top-level attributes, by key; a value that cannot be read is kept as an UnreadableValue. OTLP
 * keys MUST be unique, but nothing on the wire enforces it: a key repeated with another value is
 * unreadable (which one is meant cannot be told), an identical repeat is harmless.
 */
function attributesOf(list: unknown): Map<string, AttributeValue> {
  const out = new Map<string, AttributeValue>();
  if (!Array.isArray(list)) return out;
  for (const kv of list) {
    if (!isObject(kv) || typeof kv.key !== 'string') continue;
    const value = anyValue(kv.value, 0);
    const known = out.get(kv.key) ?? null;
    if (!out.has(kv.key)) out.set(kv.key, value);
    else if (known instanceof UnreadableValue) continue;
    else if (value instanceof UnreadableValue) out.set(kv.key, value);
    else if (canonical(known) !== canonical(value)) {
      out.set(kv.key, new UnreadableValue(`given more than once with different values (${shorten(canonical(known))} and ${shorten(canonical(value))})`));
    }
  }
  return out;
}

/** A value as text for comparing repeats: type-tagged so that "5" and 5 differ. */
function canonical(value: AttributeValue): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return { int: v.toString() };
    if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('base64') };
    if (typeof v === 'number') return { double: Number.isFinite(v) ? v : String(v) };
    return v;
  }) ?? 'null';
}

function shorten(text: string): string {
  const plain = text.replace(/^\{"(?:int|double)":"?([^"]*)"?\}$/, '$1');
  return plain.length <= 40 ? plain : `${plain.slice(0, 40)}…`;
}

/**
 * One AnyValue. `depth` counts every enclosing arrayValue and kvlistValue, so recursion stays
 * bounded whatever the nesting; a value with an unreadable part is unreadable as a whole.
 */
function anyValue(value: unknown, depth: number): AttributeValue {
  if (!isObject(value)) return null;
  if (depth > MAX_NESTING) return new UnreadableValue(`nested deeper than ${MAX_NESTING} levels`);
  const v = value as Record<string, unknown>;
  const s = pick(v, 'stringValue', 'string_value');
  if (typeof s === 'string') return s;
  const b = pick(v, 'boolValue', 'bool_value');
  if (typeof b === 'boolean') return b;
  const i = pick(v, 'intValue', 'int_value');
  if (i !== undefined && i !== null) return intOf(i); // null: unset, as proto3 JSON has it
  const d = pick(v, 'doubleValue', 'double_value');
  if (d !== undefined) return typeof d === 'number' ? d : typeof d === 'string' ? doubleOf(d) : null;
  const arr = pick(v, 'arrayValue', 'array_value');
  if (isObject(arr)) return listOf(arr.values, depth + 1);
  const kvl = pick(v, 'kvlistValue', 'kvlist_value');
  if (isObject(kvl)) return kvlistOf(kvl.values, depth + 1);
  const bytes = pick(v, 'bytesValue', 'bytes_value');
  if (bytes instanceof Uint8Array) return bytes;
  if (typeof bytes === 'string') return Buffer.from(bytes, 'base64');
  return null;
}

/** proto3 JSON writes a double as a number or as a decimal string (NaN, Infinity and -Infinity too). */
const PROTO3_DOUBLE = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^(?:NaN|-?Infinity)$/;

/** A doubleValue written as a string: proto3 JSON's forms only ("" and "0x1A" are not numbers there). */
function doubleOf(text: string): number | UnreadableValue {
  if (!PROTO3_DOUBLE.test(text)) return new UnreadableValue(`doubleValue ${JSON.stringify(text.slice(0, 40))} is not a number`);
  return Number(text);
}

function listOf(values: unknown, depth: number): AttributeValue {
  if (!Array.isArray(values)) return [];
  const out: AttributeValue[] = [];
  for (const x of values) {
    const item = anyValue(x, depth);
    if (item instanceof UnreadableValue) return item;
    out.push(item);
  }
  return out;
}

function kvlistOf(values: unknown, depth: number): AttributeValue {
  if (!Array.isArray(values)) return {};
  const entries: [string, AttributeValue][] = [];
  for (const kv of values) {
    if (!isObject(kv) || typeof kv.key !== 'string') continue;
    const item = anyValue(kv.value, depth);
    if (item instanceof UnreadableValue) return item;
    entries.push([kv.key, item]);
  }
  return Object.fromEntries(entries); // own keys, "__proto__" included
}

/** int64 as a decimal string or a JSON integer; anything else present is unreadable, not absent. */
function intOf(value: unknown): bigint | UnreadableValue {
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  return new UnreadableValue(`intValue ${describeRaw(value)} is not an integer`);
}
