import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOtlpTracesHandler } from '../../collectors/otlp/otlp-traces-handler.js';
import type { OtlpTracesHandlerOptions } from '../../collectors/otlp/otlp-traces-handler.js';
import { RecordingSink } from '../proxy/recording-sink.js';
import { captureLog } from '../proxy/capture-log.js';

/** A real HTTP server on 127.0.0.1 with the OTLP handler at POST /v1/traces, as the agent mounts it. */
export async function startOtlpServer(options: Partial<Omit<OtlpTracesHandlerOptions, 'log'>> = {}) {
  const sink = new RecordingSink(); // used unless the test brings its own
  const log = captureLog();
  const handler = createOtlpTracesHandler({ log: log.log, ...options, sink: options.sink ?? sink });
  const answers: Answer[] = [];
  const server = createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    keepAnswer(req.headers['content-type'], res, answers);
    handler(req, res).catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  return {
    url,
    sink,
    log,
    /** What the handler answered, in order (also when an SDK exporter was the client). */
    answers,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One answer of the handler: HTTP status, the request's encoding and the body as written. */
export interface Answer {
  readonly status: number;
  readonly encoding: 'json' | 'protobuf';
  readonly body: Buffer;
}

function keepAnswer(contentType: string | undefined, res: ServerResponse, answers: Answer[]): void {
  const encoding = /protobuf/.test(contentType ?? '') ? 'protobuf' : 'json';
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.end = ((...args: unknown[]) => {
    const chunk = args[0];
    const body = typeof chunk === 'string' || chunk instanceof Uint8Array ? Buffer.from(chunk) : Buffer.alloc(0);
    answers.push({ status: res.statusCode, encoding, body });
    return end(...args);
  }) as ServerResponse['end'];
}

/**
 * The partial_success of an ExportTraceServiceResponse, JSON or protobuf (read by field number,
 * independently of our encoder); null for a full success.
 */
export function partialSuccessOf(answer: Answer): { rejectedSpans: number; errorMessage: string } | null {
  if (answer.encoding === 'json') {
    const partial = (JSON.parse(answer.body.toString()) as { partialSuccess?: { rejectedSpans: string; errorMessage: string } }).partialSuccess;
    return partial ? { rejectedSpans: Number(partial.rejectedSpans), errorMessage: partial.errorMessage } : null;
  }
  const partial = protoFields(answer.body).get(1)?.[0];
  if (!(partial instanceof Uint8Array)) return null;
  const fields = protoFields(partial);
  const message = fields.get(2)?.[0];
  return { rejectedSpans: Number(fields.get(1)?.[0] ?? 0n), errorMessage: message instanceof Uint8Array ? Buffer.from(message).toString() : '' };
}

/** Read a protobuf message's top-level fields by number, without any schema (an independent check of our encoding). */
export function protoFields(bytes: Uint8Array): Map<number, (bigint | Uint8Array)[]> {
  const out = new Map<number, (bigint | Uint8Array)[]>();
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error('truncated varint');
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < bytes.length) {
    const tag = Number(varint());
    const field = tag >> 3;
    const wire = tag & 7;
    let value: bigint | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = Number(varint());
      value = bytes.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`unexpected wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}
