import { otlpTypes } from './otlp-trace-proto.js';

/** An attribute value as OTLP carries it (ints as bigint: int64 does not fit a double). */
export type AttributeValue = string | boolean | number | bigint | Uint8Array | AttributeValue[] | { readonly [key: string]: AttributeValue } | null;

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
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
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
    return JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
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
        if (isObject(span)) spans.push(readSpan(span, path, resourceAttributes));
        else {
          unreadableSpans++;
          problems.push({ path, reason: 'must be an object' });
        }
      }
    }
  }
  return { spans, problems, unreadableSpans };
}

function readSpan(span: Record<string, unknown>, path: string, resourceAttributes: ReadonlyMap<string, AttributeValue>): OtlpSpan {
  const status = pick(span, 'status');
  const code = isObject(status) ? Number(pick(status, 'code') ?? 0) : 0;
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
    statusCode: Number.isInteger(code) ? code : 0,
    statusMessage: typeof message === 'string' ? message : '',
  };
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

function attributesOf(list: unknown): Map<string, AttributeValue> {
  const out = new Map<string, AttributeValue>();
  if (!Array.isArray(list)) return out;
  for (const kv of list) {
    if (!isObject(kv) || typeof kv.key !== 'string') continue;
    out.set(kv.key, anyValue(kv.value, 0));
  }
  return out;
}

function anyValue(value: unknown, depth: number): AttributeValue {
  if (!isObject(value) || depth > 8) return null;
  const v = value as Record<string, unknown>;
  const s = pick(v, 'stringValue', 'string_value');
  if (typeof s === 'string') return s;
  const b = pick(v, 'boolValue', 'bool_value');
  if (typeof b === 'boolean') return b;
  const i = pick(v, 'intValue', 'int_value');
  if (i !== undefined) return intOf(i);
  const d = pick(v, 'doubleValue', 'double_value');
  if (d !== undefined) return typeof d === 'number' ? d : typeof d === 'string' ? Number(d) : null;
  const arr = pick(v, 'arrayValue', 'array_value');
  if (isObject(arr)) return Array.isArray(arr.values) ? arr.values.map((x) => anyValue(x, depth + 1)) : [];
  const kvl = pick(v, 'kvlistValue', 'kvlist_value');
  if (isObject(kvl)) return Object.fromEntries(attributesOf(kvl.values));
  const bytes = pick(v, 'bytesValue', 'bytes_value');
  if (bytes instanceof Uint8Array) return bytes;
  if (typeof bytes === 'string') return Buffer.from(bytes, 'base64');
  return null;
}

function intOf(value: unknown): bigint | null {
  try {
    if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) return BigInt(value);
    if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  } catch {
    return null;
  }
  return null;
}
