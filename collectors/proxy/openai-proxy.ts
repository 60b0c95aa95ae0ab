import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { RequestStatus } from '../../model/request-record.js';
import type { RequestSink, RequestSource } from '../request-sink.js';
import {
  BodyTooLargeError,
  readBody,
  sendProxyError,
  upstreamRequestHeaders,
  forwardableHeaders,
  UpstreamTimeoutError,
} from './http-forwarding.js';
import { recordedEndpoint } from './openai-endpoint.js';
import type { OpenAiEndpoint } from './openai-endpoint.js';
import type { TokenUsage } from './openai-usage.js';
import type { ProxyConfig, ReplicaConfig } from './proxy-config.js';
import { buildProxyRecord, labelsFromHeaders } from './proxy-record.js';
import type { CallLabels } from './proxy-record.js';
import { RecordDelivery } from './record-delivery.js';
import type { DeliveryStats, SourceLog } from './record-delivery.js';
import { jsonOutcome, streamOutcome } from './call-outcome.js';
import type { Answer } from './call-outcome.js';
import { SseSplitter } from './sse-splitter.js';
import { StreamObserver } from './stream-observer.js';
import { estimateCompletionTokens, estimatePromptTokens, tokensFromChars } from './token-estimate.js';

export interface OpenAiProxyOptions {
  readonly config: ProxyConfig;
  readonly log: SourceLog;
  /** Every failure worth counting (upstream down, refused records), for the agent's health metrics. */
  readonly onError?: (error: Error) => void;
  /** Wall clock, injectable for tests. */
  readonly now?: () => number;
  /** How long shutdown lets calls in flight finish before cutting them (they are then recorded as cancelled). */
  readonly shutdownGraceMs?: number;
}

/** One recorded call while it is in flight. */
interface Call {
  readonly endpoint: OpenAiEndpoint;
  readonly startMs: number;
  readonly call: CallLabels;
  readonly requestModel: string | null;
  readonly promptEstimate: number;
  readonly stream: boolean;
  /** The proxy added stream_options.include_usage: usage chunks must not reach the client. */
  readonly injectedUsage: boolean;
}

/** How the body of one upstream answer is relayed and judged. */
interface BodyRelay {
  readonly onData: (chunk: Buffer) => void;
  /** Called at the clean end of the body: the call's status. */
  readonly onEnd: () => RequestStatus;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
/** An SSE event larger than this without its blank line is not SSE: passed on unparsed. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const NO_TOKENS: TokenUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, reasoningTokens: 0 };

/**
 * OpenAI-compatible reverse proxy. POSTs to /v1/chat/completions, /v1/completions and
 * /v1/responses are forwarded and recorded (one request record per call, source "proxy"); every
 * other request is passed through untouched. Streams stay streams: each chunk is written to the
 * client as it arrives (only a usage chunk the client did not ask for is held back and dropped).
 * A client that disconnects aborts the upstream call, recorded as cancelled with the tokens
 * generated so far. An unreachable, slow or broken upstream gets the client a clean 502/504 (or
 * the upstream's own error) and an "error" record, never an "ok" one.
 */
export class OpenAiProxy implements RequestSource {
  private server: Server | null = null;
  private delivery: RecordDelivery | null = null;
  private readonly upstream: URL;
  private readonly basePath: string;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly now: () => number;
  private readonly inFlight = new Set<ServerResponse>();
  private readonly sockets = new Set<Socket>();
  private readonly warned = new Set<string>();
  private boundPort = 0;

  constructor(private readonly options: OpenAiProxyOptions) {
    this.now = options.now ?? Date.now;
    this.upstream = new URL(options.config.upstream);
    // Users often paste their client base URL (…/v1); the proxy forwards /v1/... paths itself.
    const path = this.upstream.pathname.replace(/\/+$/, '');
    this.basePath = path.endsWith('/v1') ? path.slice(0, -3) : path;
    this.transport = this.upstream.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  }

  /** The bound port (useful when configured as 0). */
  get port(): number {
    return this.boundPort;
  }

  async start(sink: RequestSink): Promise<void> {
    const { config, log } = this.options;
    this.delivery = new RecordDelivery(sink, { log, source: 'proxy', onError: this.options.onError });
    const server = http.createServer({ maxHeaderSize: config.maxHeaderBytes }, (req, res) => this.handle(req, res));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.fail(`proxy server error: ${err.message}`));
    this.server = server;
    this.boundPort = (server.address() as AddressInfo).port;
    log.info(
      { port: this.boundPort, host: config.host, upstream: this.upstream.origin + this.basePath },
      `proxy: listening on ${config.host}:${this.boundPort}, forwarding to ${this.upstream.origin}${this.basePath}`,
    );
  }

  async shutdown(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      server.close();
      const deadline = Date.now() + (this.options.shutdownGraceMs ?? 10_000);
      while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      for (const socket of this.sockets) socket.destroy();
      await new Promise((r) => setImmediate(r)); // let cut calls record themselves as cancelled
    }
    this.agent.destroy();
    await this.delivery?.flush();
    this.delivery?.close();
  }

  stats(): { readonly inFlight: number; readonly delivery: DeliveryStats | null } {
    return { inFlight: this.inFlight.size, delivery: this.delivery?.stats() ?? null };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const endpoint = recordedEndpoint(req.method, query === -1 ? url : url.slice(0, query));
    if (endpoint === null) {
      try {
        this.passThrough(req, res, url);
      } catch (err) {
        // e.g. a header node's client refuses to send: the client hears why, the agent goes on
        this.fail(`proxy: cannot forward ${req.method} ${url}: ${err instanceof Error ? err.message : String(err)}`);
        sendProxyError(res, 502, 'proxy_forward_failed', `cannot forward the request: ${err instanceof Error ? err.message : String(err)}`);
      }
      return;
    }
    this.inFlight.add(res);
    res.on('close', () => this.inFlight.delete(res));
    this.recordCall(req, res, url, endpoint).catch((err: unknown) => {
      this.fail(`proxy: internal error on ${url}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      sendProxyError(res, 500, 'proxy_internal_error', 'internal error; see the agent log');
    });
  }

  /** Any other path: method, headers and body forwarded as they are, the answer relayed as it is. */
  private passThrough(req: IncomingMessage, res: ServerResponse, url: string): void {
    res.sendDate = false; // the upstream's own Date header (if any) is relayed instead
    const upstreamReq = this.upstreamRequest(req.method ?? 'GET', url, upstreamRequestHeaders(req.rawHeaders, this.upstream.host));
    const timers = this.timeouts(upstreamReq);
    upstreamReq.on('response', (up) => {
      timers.responded();
      res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardableHeaders(up.rawHeaders));
      up.on('error', () => res.destroy());
      up.pipe(res);
    });
    upstreamReq.on('error', (err) => this.upstreamFailed(res, err, url));
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.on('error', () => upstreamReq.destroy());
    req.pipe(upstreamReq);
  }

  private async recordCall(req: IncomingMessage, res: ServerResponse, url: string, endpoint: OpenAiEndpoint): Promise<void> {
    const { config } = this.options;
    const startMs = this.now();
    const call = labelsFromHeaders(req.headers, config.headers, (header, reason) =>
      this.warnOnce(`header:${header}:${reason}`, `proxy: header ${header} ignored: ${reason}`),
    );
    let raw: Buffer;
    try {
      raw = await readBody(req, config.maxRequestBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        res.on('finish', () => req.destroy());
        sendProxyError(res, 413, 'request_too_large', `request body exceeds maxRequestBodyBytes (${err.limit} bytes)`);
      }
      return; // otherwise the client went away while sending: nothing reached the upstream
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      sendProxyError(res, 400, 'invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
      return;
    }
    if (!isObject(body)) {
      sendProxyError(res, 400, 'invalid_request', 'request body must be a JSON object');
      return;
    }
    const stream = body.stream === true;
    const asked = isObject(body.stream_options) && body.stream_options.include_usage === true;
    const injectedUsage = stream && endpoint !== 'responses' && !asked && config.injectStreamUsage;
    if (injectedUsage) body.stream_options = { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true };
    const out = injectedUsage ? Buffer.from(JSON.stringify(body)) : raw;
    const context: Call = {
      endpoint,
      startMs,
      call,
      requestModel: str(body.model),
      promptEstimate: estimatePromptTokens(body, endpoint),
      stream,
      injectedUsage,
    };
    this.forwardCall(req, res, url, out, context);
  }

  private forwardCall(req: IncomingMessage, res: ServerResponse, url: string, body: Buffer, call: Call): void {
    // No accept-encoding: the proxy must read the answer (usage) and rewrite stream events.
    const headers = upstreamRequestHeaders(req.rawHeaders, this.upstream.host, ['content-length', 'accept-encoding']);
    headers.push('Content-Length', String(body.length));
    const upstreamReq = this.upstreamRequest('POST', url, headers);
    const timers = this.timeouts(upstreamReq);
    const answer: Answer = { id: null, model: null, usage: null, firstContentMs: null, completionEstimate: 0, reasoningEstimate: 0, problem: null, refused: false };
    let done = false;
    let clientGone = false;
    const finish = (status: RequestStatus): void => {
      if (done) return;
      done = true;
      timers.responded();
      this.record(call, answer, status);
    };

    res.on('close', () => {
      if (done || res.writableFinished) return;
      clientGone = true;
      upstreamReq.destroy();
      finish('cancelled');
    });
    upstreamReq.on('error', (err) => {
      if (clientGone || done) return;
      answer.problem = err.message;
      answer.refused = !(err instanceof UpstreamTimeoutError);
      this.upstreamFailed(res, err, url);
      finish('error');
    });
    upstreamReq.on('response', (up) => {
      timers.responded();
      try {
        this.relay(up, res, call, answer, finish);
      } catch (err) {
        answer.problem = `relaying the answer failed: ${err instanceof Error ? err.message : String(err)}`;
        this.fail(`proxy: ${answer.problem}`);
        upstreamReq.destroy();
        sendProxyError(res, 502, 'proxy_relay_failed', answer.problem);
        finish('error');
      }
    });
    upstreamReq.end(body);
  }

  private relay(up: IncomingMessage, res: ServerResponse, call: Call, answer: Answer, finish: (status: RequestStatus) => void): void {
    const status = up.statusCode ?? 502;
    const ok = status >= 200 && status < 300;
    const encoding = String(up.headers['content-encoding'] ?? 'identity').toLowerCase();
    const readable = encoding === 'identity' || encoding === '';
    const sse = ok && readable && String(up.headers['content-type'] ?? '').includes('text/event-stream');
    const strip = sse && call.injectedUsage;
    res.writeHead(status, up.statusMessage, forwardableHeaders(up.rawHeaders, strip ? new Set(['content-length']) : undefined));
    if (sse) res.flushHeaders(); // the client sees the stream open before the first token
    if (!readable) this.warnOnce(`encoding:${encoding}`, `proxy: upstream answered with content-encoding ${encoding}; token counts of such calls are estimated`);

    const write = (chunk: Buffer): void => {
      if (!res.write(chunk)) {
        up.pause();
        res.once('drain', () => up.resume());
      }
    };
    const body = !ok
      ? this.errorBody(status, answer, write)
      : sse
        ? this.streamBody(call, answer, strip, write)
        : this.jsonBody(call, answer, readable, write);

    // A bug in reading one answer must cost that call, not the agent: no throw escapes an event handler.
    const guarded = (step: () => void): void => {
      try {
        step();
      } catch (err) {
        answer.problem = `reading the answer failed: ${err instanceof Error ? err.message : String(err)}`;
        this.fail(`proxy: ${answer.problem}`);
        up.destroy();
        res.destroy();
        finish('error');
      }
    };
    up.on('data', (chunk: Buffer) => guarded(() => body.onData(chunk)));
    up.on('end', () =>
      guarded(() => {
        if (res.destroyed) return;
        const outcome = body.onEnd();
        res.end();
        finish(outcome);
      }),
    );
    const broken = (): void => {
      if (up.complete) return;
      answer.problem ??= 'the upstream closed the connection in the middle of its answer';
      res.destroy(); // the client must see a cut stream, not a clean end
      finish('error');
    };
    up.on('error', broken);
    up.on('close', broken);
  }

  /** A non-2xx answer: the upstream's own error goes to the client as it is; the call is an error. */
  private errorBody(status: number, answer: Answer, write: (chunk: Buffer) => void): BodyRelay {
    answer.problem = `the upstream answered ${status}`;
    answer.refused = true;
    return { onData: write, onEnd: () => 'error' };
  }

  /**
   * A stream: chunks pass on as they come. Only while usage must be stripped are they held, and
   * then only until the events they complete are read (what one chunk completes goes out in one write).
   */
  private streamBody(call: Call, answer: Answer, strip: boolean, write: (chunk: Buffer) => void): BodyRelay {
    const splitter = new SseSplitter();
    const observer = new StreamObserver(call.endpoint, strip, this.now);
    const sync = (): void => {
      const f = observer.facts;
      answer.id = f.id;
      answer.model = f.model;
      answer.firstContentMs = f.firstContentMs;
      answer.completionEstimate = estimateCompletionTokens(f.contentChars + f.reasoningChars, f.contentEvents);
      answer.reasoningEstimate = tokensFromChars(f.reasoningChars);
    };
    const relay = (events: Buffer[]): void => {
      const out: Buffer[] = [];
      for (const event of events) {
        const forward = observer.observe(event);
        if (forward) out.push(forward);
      }
      if (!strip || out.length === 0) return;
      write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
    };
    return {
      onData: (chunk) => {
        if (!strip) write(chunk); // passed on at once, parsed alongside
        relay(splitter.push(chunk));
        if (splitter.pendingBytes > MAX_EVENT_BYTES) {
          const oversized = splitter.takePending();
          observer.noteMalformed(`an event exceeded ${MAX_EVENT_BYTES} bytes without ending`);
          if (strip) write(oversized);
        }
        sync();
      },
      onEnd: () => {
        const rest = splitter.takePending();
        if (rest.length > 0) relay([rest]);
        sync();
        return streamOutcome(observer.facts, answer);
      },
    };
  }

  /** A JSON answer: passed on as it comes, and a copy kept (up to a limit) to read its usage. */
  private jsonBody(call: Call, answer: Answer, readable: boolean, write: (chunk: Buffer) => void): BodyRelay {
    const captured: Buffer[] = [];
    let size = 0;
    let overflow = !readable;
    return {
      onData: (chunk) => {
        write(chunk);
        if (overflow) return;
        size += chunk.length;
        if (size > this.options.config.maxResponseCaptureBytes) {
          overflow = true;
          captured.length = 0;
        } else captured.push(chunk);
      },
      onEnd: () => {
        if (overflow) this.warnOnce('uncaptured', 'proxy: a response was too large or encoded to read its usage; its tokens are estimated');
        return jsonOutcome(call.endpoint, answer, overflow ? null : Buffer.concat(captured));
      },
    };
  }

  private record(call: Call, answer: Answer, status: RequestStatus): void {
    const model = answer.model ?? call.requestModel ?? 'unknown';
    const replica: ReplicaConfig | undefined = this.options.config.models?.[model] ?? this.options.config.replica;
    const endMs = this.now();
    const built = buildProxyRecord({
      requestId: this.uniqueId(answer.id),
      endpoint: call.endpoint,
      model,
      startMs: call.startMs,
      firstTokenMs: call.stream ? answer.firstContentMs : null,
      endMs,
      status,
      usage: answer.refused ? NO_TOKENS : answer.usage,
      estimate: { promptTokens: call.promptEstimate, completionTokens: answer.completionEstimate, reasoningTokens: answer.reasoningEstimate },
      call: call.call,
      replica,
    });
    if (status === 'error' && answer.problem !== null) {
      this.options.log.warn({ endpoint: call.endpoint, model, problem: answer.problem }, `proxy: ${call.endpoint} call recorded as error: ${answer.problem}`);
    }
    if (!built.ok) {
      const reasons = built.errors.map((e) => `${e.field}: ${e.reason}`).join('; ');
      this.fail(`proxy: could not build the record of a ${call.endpoint} call (${model}): ${reasons}`);
      return;
    }
    this.delivery?.push([built.record]);
  }

  /**
   * Every proxied call is its own request, so its id is unique per call: the upstream's response id
   * (for correlating with the engine's logs) plus a fresh UUID. Upstream ids alone are not unique
   * enough: some servers reuse them, and counters restart with the engine, which would turn later
   * calls into silent duplicates in the ledger.
   */
  private uniqueId(upstreamId: string | null): string {
    const uuid = randomUUID();
    return upstreamId !== null && upstreamId.length <= 200 ? `${upstreamId}/${uuid}` : `proxy-${uuid}`;
  }

  private upstreamRequest(method: string, url: string, headers: string[]): http.ClientRequest {
    return this.transport.request({
      protocol: this.upstream.protocol,
      hostname: this.upstream.hostname,
      port: this.upstream.port,
      method,
      path: this.basePath + url,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      agent: this.agent,
    });
  }

  /** Header timeout (answer started?) and idle timeout (silence on the socket) for one upstream request. */
  private timeouts(upstreamReq: http.ClientRequest): { responded: () => void } {
    const { requestTimeoutMs, idleTimeoutMs } = this.options.config;
    const headerTimer = setTimeout(() => upstreamReq.destroy(new UpstreamTimeoutError('headers', requestTimeoutMs)), requestTimeoutMs);
    headerTimer.unref();
    upstreamReq.setTimeout(idleTimeoutMs, () => upstreamReq.destroy(new UpstreamTimeoutError('idle', idleTimeoutMs)));
    return { responded: () => clearTimeout(headerTimer) };
  }

  private upstreamFailed(res: ServerResponse, err: Error, url: string): void {
    const timeout = err instanceof UpstreamTimeoutError;
    const message = timeout ? err.message : `upstream ${this.upstream.origin} unreachable or failed: ${err.message}`;
    this.warnOnce(`upstream:${timeout ? 'timeout' : (err as NodeJS.ErrnoException).code ?? err.message}`, `proxy: ${url}: ${message}`);
    sendProxyError(res, timeout ? 504 : 502, timeout ? 'upstream_timeout' : 'upstream_unavailable', message);
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const reason =
      status === 431 ? `request headers exceed ${this.options.config.maxHeaderBytes} bytes (maxHeaderBytes)` : `malformed HTTP request (${err.code ?? err.message})`;
    this.options.log.debug({ code: err.code }, `proxy: refused a request: ${reason}`);
    const body = JSON.stringify({ error: { message: `tokenwatt proxy: ${reason}`, type: 'proxy_error', code: status === 431 ? 'headers_too_large' : 'bad_request' } });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size > 1000) this.warned.clear();
    this.warned.add(key);
    this.options.log.warn(message);
  }

  private fail(message: string): void {
    this.options.log.error(message);
    this.options.onError?.(new Error(message));
  }
}
