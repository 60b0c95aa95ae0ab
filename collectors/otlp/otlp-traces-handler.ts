import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { gunzip, inflate } from 'node:zlib';
import type { RequestRecord } from '../../model/request-record.js';
import { bearerChecker } from '../bearer-token.js';
import { BackpressureError } from '../request-sink.js';
import type { IngestResult, RequestSink } from '../request-sink.js';
import { BodyTooLargeError, readBody } from '../proxy/http-forwarding.js';
import type { SourceLog } from '../proxy/record-delivery.js';
import { otlpConfigSchema } from './otlp-config.js';
import type { OtlpConfigInput } from './otlp-config.js';
import { genAiSpanToRecord, judgeSighting, rejectingOnError } from './genai-span.js';
import { collectSpans, decodeJsonRequest, decodeProtobufRequest, OtlpDecodeError } from './otlp-spans.js';
import type { OtlpSpan } from './otlp-spans.js';
import { otlpTypes } from './otlp-trace-proto.js';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

export interface OtlpTracesHandlerOptions {
  readonly sink: RequestSink;
  /** Largest body accepted, compressed and decompressed alike (default 16 MiB). */
  readonly bodyLimitBytes?: number;
  readonly log: SourceLog;
  /** Attribute keys for task/team/feature, replica GPUs/tier (the `otlp` config section). */
  readonly config?: OtlpConfigInput;
  /** Failures worth counting (sink errors), for the agent's health metrics. */
  readonly onError?: (error: Error) => void;
  /**
   * A task or label value left out of a record the sink acknowledged (the record kept without it),
   * by record field: a batch answered 429 or a record refused is not counted; a span the exporter
   * sends again after it was acknowledged is counted again (the sink does not say which were repeats).
   */
  readonly onLabelLeftOut?: (field: string) => void;
  /** When set (the agent's ingest token), exports must carry `Authorization: Bearer <token>`. */
  readonly bearerToken?: string;
}

type Encoding = 'json' | 'protobuf';

/** google.rpc.Status codes used in error bodies. */
const INVALID_ARGUMENT = 3;
const RESOURCE_EXHAUSTED = 8;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;
const MAX_NAMED_REJECTIONS = 5;

/**
 * OTLP/HTTP trace receiver for POST /v1/traces (mounted by the agent on its own port). Accepts
 * `application/x-protobuf` and `application/json`, optionally gzip-compressed. Spans with GenAI
 * token usage become request records; other spans are accepted and ignored. Answers as the
 * OTLP/HTTP spec asks: 200 with an ExportTraceServiceResponse in the request's encoding,
 * carrying partial_success (rejected_spans, and an error message naming span and attribute) when
 * some spans were refused (or, with none refused, warnings naming values left out); 400 with a
 * google.rpc.Status for a body that cannot be decoded; 500 with one for a failure of our own; 413
 * for one over the limit; 415 for an unsupported type or encoding; 401 with WWW-Authenticate
 * without the bearer token (when one is set; exporters do not retry it); 429 with Retry-After when
 * the ingest queue is full and 503 when the sink fails (both retryable by exporters).
 */
export function createOtlpTracesHandler(options: OtlpTracesHandlerOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const config = otlpConfigSchema.parse({ ...options.config, ...(options.bodyLimitBytes !== undefined ? { bodyLimitBytes: options.bodyLimitBytes } : {}) });
  const limit = config.bodyLimitBytes;
  const { log, sink } = options;
  const reportBug = (error: Error, what: string) => {
    log.error({ err: error }, `otlp: ${what} failed unexpectedly: ${error.message}`);
    options.onError?.(error);
  };
  const checkBearer = options.bearerToken === undefined ? null : bearerChecker(options.bearerToken);
  // Spans that started before this agent did may have been stored by an earlier version, under its key.
  const startedAtMs = Date.now();
  const convert = rejectingOnError(
    (span) => genAiSpanToRecord(span, config),
    (error, span) => reportBug(error, `converting ${describeSpan(span)}`),
  );

  return async (req, res) => {
    if (req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'POST');
      return reply(res, 405, 'json', status(INVALID_ARGUMENT, `method ${req.method} not allowed; OTLP/HTTP export is POST /v1/traces`));
    }
    const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    const encoding: Encoding | null = type === 'application/x-protobuf' ? 'protobuf' : type === 'application/json' ? 'json' : null;
    // Before anything about the body: a client without the token learns nothing else.
    const refusal = checkBearer?.(req.headers.authorization) ?? null;
    if (refusal !== null) {
      req.resume();
      res.setHeader('WWW-Authenticate', refusal.challenge);
      return reply(res, 401, encoding ?? 'json', status(UNAUTHENTICATED, refusal.message));
    }
    if (encoding === null) {
      req.resume();
      return reply(res, 415, 'json', status(INVALID_ARGUMENT, `unsupported content-type ${JSON.stringify(type ?? '')}; use application/x-protobuf or application/json`));
    }
    const named = String(req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    const compression = named === 'x-gzip' ? 'gzip' : named;
    if (compression !== 'identity' && compression !== '' && compression !== 'gzip' && compression !== 'deflate') {
      req.resume();
      // 415 with Accept-Encoding is what HTTP asks for an unsupported content coding (RFC 9110
      // 15.5.16, RFC 7694). zstd: Node 20's zlib has none.
      res.setHeader('Accept-Encoding', 'gzip, deflate');
      const hint = compression === 'zstd' ? ' (this agent runs on a Node.js without zstd; configure the exporter with compression gzip)' : '';
      return reply(res, 415, encoding, status(INVALID_ARGUMENT, `unsupported content-encoding ${JSON.stringify(named)}${hint}; use gzip, deflate or none`));
    }
    const compressed = compression === 'gzip' || compression === 'deflate';

    let body: Buffer;
    try {
      body = await readBody(req, limit);
      if (compression === 'gzip') body = await gunzipAsync(body, { maxOutputLength: limit });
      else if (compression === 'deflate') body = await inflateAsync(body, { maxOutputLength: limit }); // zlib-wrapped, as HTTP's deflate is
    } catch (err) {
      if (err instanceof BodyTooLargeError || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        res.on('finish', () => req.destroy());
        return reply(res, 413, encoding, status(INVALID_ARGUMENT, `request body exceeds bodyLimitBytes (${limit} bytes${compressed ? ' after decompression' : ''})`));
      }
      if (compressed && (err as NodeJS.ErrnoException).code?.startsWith('Z_')) {
        sink.noteRejected?.('parse', 1); // a body refused whole counts once, as HTTP ingest counts it
        return reply(res, 400, encoding, status(INVALID_ARGUMENT, `content-encoding ${compression}, but the body is not valid ${compression}: ${(err as Error).message}`));
      }
      log.debug({ err }, 'otlp: the client went away while sending');
      return;
    }

    let spans: OtlpSpan[];
    let structural: string[];
    let unreadable: number;
    try {
      const decoded = encoding === 'protobuf' ? decodeProtobufRequest(body) : decodeJsonRequest(body);
      const collected = collectSpans(decoded);
      spans = collected.spans;
      structural = collected.problems.map((p) => `${p.path}: ${p.reason}`);
      unreadable = collected.unreadableSpans;
    } catch (err) {
      if (err instanceof OtlpDecodeError) {
        sink.noteRejected?.('parse', 1);
        return reply(res, 400, encoding, status(INVALID_ARGUMENT, err.message));
      }
      // Ours, not the sender's: still an OTLP answer in its encoding, not the server's generic 500.
      const error = err instanceof Error ? err : new Error(String(err));
      reportBug(error, 'reading the spans');
      return reply(res, 500, encoding, status(INTERNAL, `reading the spans failed: ${error.message}`));
    }

    const records: RequestRecord[] = [];
    const recordSpans: OtlpSpan[] = [];
    const alternateIds: (string | null)[] = [];
    const legacyIds: (string | null)[] = [];
    /** Per record: the fields left out of it. */
    const leftOut: string[][] = [];
    const rejections: string[] = [];
    const warnings: string[] = [];
    let rejected = unreadable;
    // Spans refused here never reach the sink: counted as HTTP ingest counts refused records, once answered.
    const refusedBy = new Map<string, number>(unreadable > 0 ? [['parse', unreadable]] : []);
    for (const span of spans) {
      const verdict = convert(span);
      for (const w of verdict.warnings) warnings.push(`${describeSpan(span)}: ${w.field}: ${w.reason}`);
      if (verdict.kind === 'record') {
        records.push(verdict.record);
        recordSpans.push(span);
        alternateIds.push(verdict.alternateId);
        legacyIds.push(verdict.record.startMs < startedAtMs ? verdict.legacyId : null);
        leftOut.push(verdict.warnings.flatMap((w) => (w.leftOut === undefined ? [] : [w.leftOut])));
      } else if (verdict.kind === 'rejected') {
        rejected++;
        refusedBy.set(verdict.counted, (refusedBy.get(verdict.counted) ?? 0) + 1);
        rejections.push(`${describeSpan(span)}: ${verdict.field}: ${verdict.reason}`);
      }
    }

    let result: IngestResult | null = null;
    if (records.length > 0) {
      try {
        // One call seen by the app and by vLLM is one request_id: the second sighting is a duplicate.
        const legacy = (index: number): readonly string[] => {
          const id = legacyIds[index];
          return id === null || id === undefined ? [] : [id];
        };
        result = await sink.submit(records, 0, { sightings: { judge: judgeSighting, alternateId: (index) => alternateIds[index] ?? null, legacyIds: legacy } });
      } catch (err) {
        if (err instanceof BackpressureError) {
          res.setHeader('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterSeconds))));
          return reply(res, 429, encoding, status(RESOURCE_EXHAUSTED, `ingest queue full; retry after ${err.retryAfterSeconds}s`));
        }
        const error = err instanceof Error ? err : new Error(String(err));
        log.error({ err: error }, `otlp: storing ${records.length} span record(s) failed: ${error.message}`);
        options.onError?.(error);
        return reply(res, 503, encoding, status(UNAVAILABLE, `storing the records failed: ${error.message}`));
      }
      for (const e of result.errors) {
        const span = recordSpans[e.index];
        rejections.push(`${span ? describeSpan(span) : `record ${e.index}`}: ${e.field}: ${e.reason}`);
      }
      const refusedRecords = new Set(result.errors.map((e) => e.index));
      rejected += refusedRecords.size; // a record may fail on several fields
      // A record the sink refused is counted as rejected; its left-out labels with it, not here.
      leftOut.forEach((fields, index) => {
        if (!refusedRecords.has(index)) for (const field of fields) options.onLabelLeftOut?.(field);
      });
      for (const n of result.notes ?? []) {
        const span = recordSpans[n.index];
        warnings.push(`${span ? describeSpan(span) : `record ${n.index}`}: ${n.requestId ?? n.field}: ${n.reason}`);
      }
    }
    for (const [reason, n] of refusedBy) sink.noteRejected?.(reason, n);
    const messages = [...structural, ...rejections, ...warnings];
    if (rejected > 0 || messages.length > 0) {
      log.warn({ rejected, accepted: result?.accepted ?? 0, first: messages[0] }, `otlp: ${rejected} span(s) rejected; first: ${messages[0]}`);
    }
    const partial =
      messages.length > 0
        ? {
            rejectedSpans: rejected,
            errorMessage: messages.slice(0, MAX_NAMED_REJECTIONS).join('; ') + (messages.length > MAX_NAMED_REJECTIONS ? `; and ${messages.length - MAX_NAMED_REJECTIONS} more` : ''),
          }
        : null;
    reply(res, 200, encoding, { response: partial });
  };
}

function describeSpan(span: OtlpSpan): string {
  return `span ${span.spanId || '(no id)'} "${span.name.slice(0, 80)}" (${span.path})`;
}

type Body = { readonly status: { code: number; message: string } } | { readonly response: { rejectedSpans: number; errorMessage: string } | null };

function status(code: number, message: string): Body {
  return { status: { code, message } };
}

/** Write an OTLP answer in the request's encoding: an ExportTraceServiceResponse or a google.rpc.Status. */
function reply(res: ServerResponse, httpStatus: number, encoding: Encoding, body: Body): void {
  let payload: Buffer;
  if ('status' in body) {
    if (encoding === 'json') {
      payload = Buffer.from(JSON.stringify(body.status));
    } else {
      const { rpcStatus } = otlpTypes();
      payload = Buffer.from(rpcStatus.encode(rpcStatus.fromObject(body.status)).finish());
    }
  } else {
    const partial = body.response;
    if (encoding === 'json') {
      // int64 as a decimal string, as the proto3 JSON mapping writes it.
      payload = Buffer.from(JSON.stringify(partial ? { partialSuccess: { rejectedSpans: String(partial.rejectedSpans), errorMessage: partial.errorMessage } } : {}));
    } else {
      const { response } = otlpTypes();
      payload = Buffer.from(response.encode(response.fromObject(partial ? { partialSuccess: partial } : {})).finish());
    }
  }
  res.writeHead(httpStatus, {
    'Content-Type': encoding === 'json' ? 'application/json' : 'application/x-protobuf',
    'Content-Length': payload.length,
  });
  res.end(payload);
}
