import { HttpServer } from '../../agent/http-server.js';
import type { Log } from '../../agent/http-server.js';
import { IngestService } from '../../agent/ingest-service.js';
import { createIngestHandler } from '../../collectors/http-ingest.js';
import type { RequestSink } from '../../collectors/request-sink.js';
import type { EpochMs } from '../../model/units.js';
import { tempLedger } from '../ledger/temp-ledger.js';
import { fakeContext } from './fake-context.js';

export const quietLog: Log = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

export interface IngestServerOptions {
  bearerToken?: string;
  bodyLimitBytes?: number;
  queueLimit?: number;
  settledUntil?: EpochMs | null;
  /** Replaces the real IngestService (for failures the service cannot be made to produce). */
  sink?: (service: IngestService) => RequestSink;
}

/** The real stack: Ledger (temp file) + IngestService + HttpServer on 127.0.0.1:0 with POST /v1/requests. */
export async function startIngestServer(opts: IngestServerOptions = {}) {
  const { ledger, path, cleanup } = tempLedger();
  const rejected = new Map<string, number>();
  const count = (reason: string, n: number): void => {
    rejected.set(reason, (rejected.get(reason) ?? 0) + n);
  };
  const service = new IngestService({
    ledger,
    context: () => fakeContext(),
    settledUntil: () => opts.settledUntil ?? null,
    onAccepted: () => {},
    queueLimit: opts.queueLimit ?? 100_000,
    onRejected: count,
  });
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: quietLog });
  server.route('POST', '/v1/requests', createIngestHandler({
    sink: opts.sink ? opts.sink(service) : service,
    bodyLimitBytes: opts.bodyLimitBytes ?? 1_000_000,
    onRejected: count,
    ...(opts.bearerToken !== undefined && { bearerToken: opts.bearerToken }),
  }));
  const { port } = await server.listen();
  return {
    port,
    ledger,
    path,
    service,
    rejected,
    stop: async (): Promise<void> => {
      await server.close();
      service.close();
      cleanup();
    },
  };
}
