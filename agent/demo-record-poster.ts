import http from 'node:http';
import { MIN_RECORD_BYTES } from '../collectors/http-ingest.js';
import { RecordDelivery, type SourceLog } from '../collectors/proxy/record-delivery.js';
import { BackpressureError, type IngestResult, type RequestSink } from '../collectors/request-sink.js';
import { toWire, type RecordError, type RequestRecord } from '../model/request-record.js';

export interface DemoRecordPosterOptions {
  readonly host: string;
  readonly port: number;
  readonly token?: string | undefined;
  /** The agent's `bodyLimitBytes`: no body posted is larger, and none holds more records than the agent takes in one. */
  readonly bodyLimitBytes: number;
  readonly log: SourceLog;
  /** How long finished records gather before a post; default 250 ms. */
  readonly flushDelayMs?: number;
}

/**
 * The demo's "serving stack": finished simulated requests are posted to the agent's own
 * /v1/requests as NDJSON, so the demo exercises the real ingest path. Delivery is the proxy's
 * (RecordDelivery): records are kept in order until the agent has answered for them, after a 429
 * retried once its Retry-After has passed, after a 5xx or a connection error with a growing
 * backoff, and posted in bodies within the agent's limits however many wait after an outage.
 */
export class DemoRecordPoster {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private readonly delivery: RecordDelivery;
  /** The NDJSON line of each waiting record, made once to measure it and again used to post it. */
  private readonly lines = new WeakMap<RequestRecord, string>();

  constructor(private readonly options: DemoRecordPosterOptions) {
    const sink: RequestSink = { submit: (records) => this.post(records) };
    this.delivery = new RecordDelivery(sink, {
      log: options.log,
      source: 'demo',
      flushDelayMs: options.flushDelayMs ?? 250,
      maxBatch: Math.floor(options.bodyLimitBytes / MIN_RECORD_BYTES),
      maxBatchBytes: options.bodyLimitBytes,
      recordBytes: (record) => Buffer.byteLength(this.lineOf(record)) + 1,
      // The demo keeps every record its node finishes, however long the agent refuses them.
      maxPending: Number.POSITIVE_INFINITY,
    });
  }

  add(record: RequestRecord): void {
    this.delivery.push([record]);
  }

  /** Post what is waiting (for at most `timeoutMs`), then close the connection. */
  async stop(timeoutMs = 5000): Promise<void> {
    await this.delivery.flush(timeoutMs);
    this.delivery.close();
    this.agent.destroy();
  }

  private lineOf(record: RequestRecord): string {
    let line = this.lines.get(record);
    if (line === undefined) {
      line = JSON.stringify(toWire(record));
      this.lines.set(record, line);
    }
    return line;
  }

  /** One POST; the answer as the sink's, or thrown as RecordDelivery retries it. */
  private async post(records: readonly RequestRecord[]): Promise<IngestResult> {
    const { status, retryAfter, text } = await this.request(records.map((r) => this.lineOf(r)).join('\n'));
    if (status === 202 || status === 400) return resultOf(text, records);
    if (status === 429) throw new BackpressureError(retryAfterSeconds(retryAfter));
    if (status === 413 && records.length > 1) {
      // The agent takes less than this poster was told: halves, until they fit.
      const half = Math.ceil(records.length / 2);
      const first = await this.post(records.slice(0, half));
      const second = await this.post(records.slice(half));
      return {
        accepted: first.accepted + second.accepted,
        duplicates: first.duplicates + second.duplicates,
        late: first.late + second.late,
        errors: [...first.errors, ...second.errors.map((e) => ({ ...e, index: e.index + half }))],
      };
    }
    if (status === 413) {
      const record = records[0] as RequestRecord;
      return { accepted: 0, duplicates: 0, late: 0, errors: [{ index: 0, requestId: record.requestId, field: '(record)', reason: `larger on its own than the agent's body limit: ${text.slice(0, 200)}` }] };
    }
    throw new Error(`ingest answered ${status}: ${text.slice(0, 500)}`);
  }

  private request(body: string): Promise<{ status: number; retryAfter: string | undefined; text: string }> {
    const { host, port, token } = this.options;
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          host,
          port,
          path: '/v1/requests',
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/x-ndjson', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        },
        (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'], text }));
          response.on('error', reject);
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date); 1 when absent or unreadable. */
export function retryAfterSeconds(header: string | undefined, nowMs = Date.now()): number {
  if (header === undefined) return 1;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - nowMs) / 1000)) : 1;
}

/** A 202's or 400's counts and errors as the sink's result (indices are within the post). */
function resultOf(text: string, records: readonly RequestRecord[]): IngestResult {
  const answer = JSON.parse(text) as { accepted: number; duplicates: number; late: number; errors?: { index: number; request_id: string | null; field: string; reason: string }[] };
  const errors = (answer.errors ?? []).map((e): RecordError => {
    const requestId = e.request_id ?? records[e.index]?.requestId;
    return requestId === undefined ? { index: e.index, field: e.field, reason: e.reason } : { index: e.index, requestId, field: e.field, reason: e.reason };
  });
  return { accepted: answer.accepted, duplicates: answer.duplicates, late: answer.late, errors };
}
