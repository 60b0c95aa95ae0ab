import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { RequestRecord, RequestStatus } from '../../model/request-record.js';
import type { RequestSink, RequestSource } from '../request-sink.js';
import { BodyTooLargeError, forwardableHeaders, readBodyThen, sendProxyError, UpstreamTimeoutError } from './http-forwarding.js';
import { recordedEndpoint } from './openai-endpoint.js';
import type { OpenAiEndpoint } from './openai-endpoint.js';
import type { TokenUsage } from './openai-usage.js';
import type { ProxyConfig, ReplicaConfig } from './proxy-config.js';
import { buildProxyRecord, labelsFromHeaders } from './proxy-record.js';
import type { CallLabels } from './proxy-record.js';
import { RecordDelivery } from './record-delivery.js';
import type { DeliveryStats, SourceLog } from './record-delivery.js';
import { withStreamUsage } from './request-body.js';
import { jsonOutcome, streamOutcome } from './call-outcome.js';
import type { Answer } from './call-outcome.js';
import { SseSplitter } from './sse-splitter.js';
import { StreamObserver } from './stream-observer.js';
import { estimateCompletionTokens, estimatePromptTokens, tokensFromChars } from './token-estimate.js';
import { UpstreamWatchdog } from './upstream-watchdog.js';
import { WatchedRequest } from './upstream-watchdog.js';

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

/**
 * One recorded call, from the client's request to its record. A class, so that every call has
 * the same shape (the hot path stays monomorphic) and is also the watchdog's entry for its
 * upstream request.
 */
class RecordedCall extends WatchedRequest {
  requestModel: string | null = null;
  promptEstimate = 0;
  stream = false;
  /** The proxy added stream_options.include_usage: usage chunks must not reach the client. */
  injectedUsage = false;
  upstreamReq: http.ClientRequest | null = null;
  readonly answer: Answer = { id: null, model: null, usage: null, firstContentMs: null, completionEstimate: 0, reasoningEstimate: 0, problem: null, refused: false };
  /** Brings `answer` up to date with what a stream said so far (set while a stream is read). */
  settle: (() => void) | null = null;
  /** A body byte has been written to the client (so its headers went with it). */
  wroteBody = false;
  done = false;
  clientGone = false;

  constructor(
    readonly endpoint: OpenAiEndpoint,
    readonly url: string,
    readonly startMs: number,
    readonly labels: CallLabels,
  ) {
    super();
  }

  onTimeout(error: UpstreamTimeoutError): void {
    this.upstreamReq?.destroy(error);
  }
}

/** The watchdog's entry for a passed-through request. */
class PassThroughWatch extends WatchedRequest {
  constructor(private readonly upstreamReq: http.ClientRequest) {
    super();
  }
  onTimeout(error: UpstreamTimeoutError): void {
    this.upstreamReq.destroy(error);
  }
}

/** How the body of one upstream answer is relayed and judged. */
interface BodyRelay {
  readonly onData: (chunk: Buffer) => void;
  /** Called at the clean end of the body: the call's status. */
  readonly onEnd: () => RequestStatus;
}

/** A finished call, waiting for its record to be built (off the response path, in batches). */
interface Finished {
  readonly call: RecordedCall;
  readonly status: RequestStatus;
  readonly endMs: number;
  readonly usage: TokenUsage | null;
  readonly upstreamId: string | null;
  readonly model: string;
  readonly firstTokenMs: number | null;
  readonly completionEstimate: number;
  readonly reasoningEstimate: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
/** An SSE event larger than this without its blank line is not SSE: passed on unparsed. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const NO_TOKENS: TokenUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, reasoningTokens: 0 };
/** Request headers not forwarded on a recorded call: the proxy sets Host and Content-Length, and asks for no encoding (it must read the answer). */
const RECORDED_REQUEST_DROP: ReadonlySet<string> = new Set(['host', 'content-length', 'accept-encoding']);
const PASS_THROUGH_DROP: ReadonlySet<string> = new Set(['host']);
const NOTHING: ReadonlySet<string> = new Set();
const CONTENT_LENGTH: ReadonlySet<string> = new Set(['content-length']);

/** SSE headers go out at once if no body byte followed them within the same read (see relay). */
function flushHeadersIfIdle(call: RecordedCall, res: ServerResponse): void {
  if (!call.wroteBody && !res.destroyed && !res.writableEnded) res.flushHeaders();
}

/**
 * OpenAI-compatible reverse proxy. POSTs to /v1/chat/completions, /v1/completions and
 * /v1/responses are forwarded and recorded (one request record per call, source "proxy"); every
 * other request is passed through untouched. Streams stay streams: each chunk is written to the
 * client as it arrives (only a usage chunk the client did not ask for is held back and dropped).
 * A client that disconnects aborts the upstream call, recorded as cancelled with the tokens
 * generated so far. An unreachable, slow or broken upstream gets the client a clean 502/504 (or
 * the upstream's own error) and an "error" record, never an "ok" one.
 *
 * The hot path is kept lean, since every call pays it: keep-alive upstream connections with
 * Nagle off on both sides, the request body forwarded as the client sent it (usage options are
 * spliced in, not re-serialized), one pass over the headers, timeouts kept by one sweep
 * (UpstreamWatchdog) rather than timers per request, stream events read without copies or
 * per-event allocations, and records built and validated in batches after the response is out.
 */
export class OpenAiProxy implements RequestSource {
  private server: Server | null = null;
  private delivery: RecordDelivery | null = null;
  private readonly upstream: URL;
  /** Parts of `upstream`, read once (URL getters build a new string on every read). */
  private readonly upstreamHost: string;
  private readonly upstreamHostname: string;
  private readonly upstreamPort: string;
  private readonly upstreamProtocol: string;
  private readonly basePath: string;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly watchdog: UpstreamWatchdog;
  private readonly now: () => number;
  private inFlight = 0;
  private readonly sockets = new Set<Socket>();
  private readonly warned = new Set<string>();
  private finished: Finished[] = [];
  private buildScheduled = false;
  private boundPort = 0;

  constructor(private readonly options: OpenAiProxyOptions) {
    this.now = options.now ?? Date.now;
    this.upstream = new URL(options.config.upstream);
    this.upstreamHost = this.upstream.host;
    this.upstreamHostname = this.upstream.hostname;
    this.upstreamPort = this.upstream.port;
    this.upstreamProtocol = this.upstream.protocol;
    // Users often paste their client base URL (…/v1); the proxy forwards /v1/... paths itself.
    const path = this.upstream.pathname.replace(/\/+$/, '');
    this.basePath = path.endsWith('/v1') ? path.slice(0, -3) : path;
    this.transport = this.upstream.protocol === 'https:' ? https : http;
    // Keep-alive: a call reuses an idle connection (the most recently used first) instead of a new
    // TCP handshake. noDelay: each write goes out at once, not held back by Nagle's algorithm.
    this.agent = new this.transport.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', noDelay: true });
    this.watchdog = new UpstreamWatchdog(options.config.requestTimeoutMs, options.config.idleTimeoutMs);
  }

  /** The bound port (useful when configured as 0). */
  get port(): number {
    return this.boundPort;
  }

  async start(sink: RequestSink): Promise<void> {
    const { config, log } = this.options;
    this.delivery = new RecordDelivery(sink, { log, source: 'proxy', onError: this.options.onError });
    const server = http.createServer({ maxHeaderSize: config.maxHeaderBytes, noDelay: true }, (req, res) => this.handle(req, res));
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
      while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      for (const socket of this.sockets) socket.destroy();
      await new Promise((r) => setImmediate(r)); // let cut calls record themselves as cancelled
    }
    this.watchdog.close();
    this.agent.destroy();
    this.buildRecords();
    await this.delivery?.flush();
    this.delivery?.close();
  }

  stats(): { readonly inFlight: number; readonly delivery: DeliveryStats | null } {
    return { inFlight: this.inFlight, delivery: this.delivery?.stats() ?? null };
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
    try {
      this.recordCall(req, res, url, endpoint);
    } catch (err) {
      this.internalError(res, url, err);
    }
  }

  /** A call to record: read its body, then forward it (forwardCall). */
  private recordCall(req: IncomingMessage, res: ServerResponse, url: string, endpoint: OpenAiEndpoint): void {
    const { config } = this.options;
    const call = new RecordedCall(
      endpoint,
      url,
      this.now(),
      labelsFromHeaders(req.headers, config.headers, (header, reason) => this.warnOnce(`header:${header}:${reason}`, `proxy: header ${header} ignored: ${reason}`)),
    );
    this.inFlight++;
    res.on('close', () => {
      this.inFlight--;
      // The client went away before its answer was complete: stop the generation, record what it cost.
      if (call.upstreamReq === null || call.done || res.writableFinished) return;
      call.clientGone = true;
      call.upstreamReq.destroy();
      this.finish(call, 'cancelled');
    });
    readBodyThen(req, config.maxRequestBodyBytes, (err, raw) => {
      if (err) {
        if (err instanceof BodyTooLargeError) {
          res.on('finish', () => req.destroy());
          sendProxyError(res, 413, 'request_too_large', `request body exceeds maxRequestBodyBytes (${err.limit} bytes)`);
        }
        return; // otherwise the client went away while sending: nothing reached the upstream
      }
      try {
        this.forwardCall(req, res, call, raw as Buffer);
      } catch (error) {
        this.internalError(res, url, error);
      }
    });
  }

  private internalError(res: ServerResponse, url: string, err: unknown): void {
    this.fail(`proxy: internal error on ${url}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    sendProxyError(res, 500, 'proxy_internal_error', 'internal error; see the agent log');
  }

  /** Any other path: method, headers and body forwarded as they are, the answer relayed as it is. */
  private passThrough(req: IncomingMessage, res: ServerResponse, url: string): void {
    res.sendDate = false; // the upstream's own Date header (if any) is relayed instead
    const upstreamReq = this.upstreamRequest(req.method ?? 'GET', url, forwardableHeaders(req.rawHeaders, PASS_THROUGH_DROP, ['Host', this.upstreamHost]));
    const watch = new PassThroughWatch(upstreamReq);
    watch.sentAt = this.watchdog.now();
    this.watchdog.watch(watch);
    upstreamReq.on('close', () => this.watchdog.unwatch(watch));
    upstreamReq.on('response', (up) => {
      watch.responded = true;
      watch.activity++; // the idle clock starts with the answer
      res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardableHeaders(up.rawHeaders));
      up.on('data', () => watch.activity++);
      up.on('error', () => res.destroy());
      up.pipe(res);
    });
    upstreamReq.on('error', (err) => this.upstreamFailed(res, err, url));
    req.on('data', () => watch.activity++); // an upload in progress is not a silent upstream
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.on('error', () => upstreamReq.destroy());
    req.pipe(upstreamReq);
  }

  /** A recorded call's body has arrived: read what the proxy needs from it and send it upstream. */
  private forwardCall(req: IncomingMessage, res: ServerResponse, call: RecordedCall, raw: Buffer): void {
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
    const { config } = this.options;
    call.stream = body.stream === true;
    const asked = isObject(body.stream_options) && body.stream_options.include_usage === true;
    call.injectedUsage = call.stream && call.endpoint !== 'responses' && !asked && config.injectStreamUsage;
    call.requestModel = str(body.model);
    call.promptEstimate = estimatePromptTokens(body, call.endpoint);
    const out = call.injectedUsage ? withStreamUsage(raw, body) : raw;

    // No accept-encoding: the proxy must read the answer (usage) and rewrite stream events.
    const headers = forwardableHeaders(req.rawHeaders, RECORDED_REQUEST_DROP, ['Host', this.upstreamHost]);
    headers.push('Content-Length', String(out.length));
    const upstreamReq = this.upstreamRequest('POST', call.url, headers);
    call.upstreamReq = upstreamReq;
    call.sentAt = this.watchdog.now();
    this.watchdog.watch(call);
    upstreamReq.on('error', (err) => {
      if (call.clientGone || call.done) return;
      call.answer.problem = err.message;
      call.answer.refused = !(err instanceof UpstreamTimeoutError);
      this.upstreamFailed(res, err, call.url);
      this.finish(call, 'error');
    });
    upstreamReq.on('response', (up) => {
      call.responded = true;
      call.activity++; // the idle clock starts with the answer
      try {
        this.relay(up, res, call);
      } catch (err) {
        call.answer.problem = `relaying the answer failed: ${err instanceof Error ? err.message : String(err)}`;
        this.fail(`proxy: ${call.answer.problem}`);
        upstreamReq.destroy();
        sendProxyError(res, 502, 'proxy_relay_failed', call.answer.problem);
        this.finish(call, 'error');
      }
    });
    upstreamReq.end(out);
  }

  private relay(up: IncomingMessage, res: ServerResponse, call: RecordedCall): void {
    const status = up.statusCode ?? 502;
    const ok = status >= 200 && status < 300;
    // What up.headers would say of these two (the first content-type; content-encodings joined),
    // read from the raw list without building the headers object.
    const raw = up.rawHeaders;
    let type: string | null = null;
    let coding: string | null = null;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name.length === 12 && type === null && name.toLowerCase() === 'content-type') type = raw[i + 1] as string;
      else if (name.length === 16 && name.toLowerCase() === 'content-encoding') coding = coding === null ? (raw[i + 1] as string) : `${coding}, ${raw[i + 1]}`;
    }
    const encoding = (coding ?? 'identity').toLowerCase();
    const readable = encoding === 'identity' || encoding === '';
    const sse = ok && readable && type !== null && type.includes('text/event-stream');
    const strip = sse && call.injectedUsage;
    res.writeHead(status, up.statusMessage, forwardableHeaders(raw, strip ? CONTENT_LENGTH : NOTHING));
    if (!readable) this.warnOnce(`encoding:${encoding}`, `proxy: upstream answered with content-encoding ${encoding}; token counts of such calls are estimated`);

    const write = (chunk: Buffer): void => {
      call.wroteBody = true;
      if (!res.write(chunk)) {
        up.pause();
        res.once('drain', () => up.resume());
      }
    };
    const body = !ok ? this.errorBody(status, call, write) : sse ? this.streamBody(call, strip, write) : this.jsonBody(call, readable, write);

    // A bug in reading one answer must cost that call, not the agent: no throw escapes an event handler.
    const failed = (err: unknown): void => {
      call.answer.problem = `reading the answer failed: ${err instanceof Error ? err.message : String(err)}`;
      this.fail(`proxy: ${call.answer.problem}`);
      up.destroy();
      res.destroy();
      this.finish(call, 'error');
    };
    up.on('data', (chunk: Buffer) => {
      call.activity++;
      try {
        body.onData(chunk);
      } catch (err) {
        failed(err);
      }
    });
    up.on('end', () => {
      try {
        if (res.destroyed) return;
        const outcome = body.onEnd();
        res.end();
        this.finish(call, outcome);
      } catch (err) {
        failed(err);
      }
    });
    const broken = (): void => {
      if (up.complete) return;
      call.answer.problem ??= 'the upstream closed the connection in the middle of its answer';
      res.destroy(); // the client must see a cut stream, not a clean end
      this.finish(call, 'error');
    };
    up.on('error', broken);
    up.on('close', broken);
    // The client must see a stream open before its first token. Body bytes that came in the same
    // read as the headers are written (with the headers, in one packet) before this runs.
    if (sse) process.nextTick(flushHeadersIfIdle, call, res);
  }

  /** A non-2xx answer: the upstream's own error goes to the client as it is; the call is an error. */
  private errorBody(status: number, call: RecordedCall, write: (chunk: Buffer) => void): BodyRelay {
    call.answer.problem = `the upstream answered ${status}`;
    call.answer.refused = true;
    return { onData: write, onEnd: () => 'error' };
  }

  /**
   * A stream: chunks pass on as they come. Only while usage must be stripped are they held, and
   * then only until the events they complete are read (what one chunk completes goes out in one write).
   */
  private streamBody(call: RecordedCall, strip: boolean, write: (chunk: Buffer) => void): BodyRelay {
    const splitter = new SseSplitter();
    const observer = new StreamObserver(call.endpoint, strip, this.now);
    const answer = call.answer;
    call.settle = () => {
      const f = observer.facts;
      answer.id = f.id;
      answer.model = f.model;
      answer.firstContentMs = f.firstContentMs;
      answer.completionEstimate = estimateCompletionTokens(f.contentChars + f.reasoningChars, f.contentEvents);
      answer.reasoningEstimate = tokensFromChars(f.reasoningChars);
    };
    const relay = (events: Buffer[]): void => {
      if (!strip) {
        for (let i = 0; i < events.length; i++) observer.observe(events[i] as Buffer);
        return;
      }
      let single: Buffer | null = null;
      let several: Buffer[] | null = null;
      for (let i = 0; i < events.length; i++) {
        const forward = observer.observe(events[i] as Buffer);
        if (forward === null) continue;
        if (single === null) single = forward;
        else (several ??= [single]).push(forward);
      }
      if (several !== null) write(Buffer.concat(several));
      else if (single !== null) write(single);
    };
    return {
      onData: (chunk) => {
        if (!strip) write(chunk); // passed on at once, parsed alongside
        const events = splitter.push(chunk);
        if (events.length > 0) relay(events);
        if (splitter.pendingBytes > MAX_EVENT_BYTES) {
          const oversized = splitter.takePending();
          observer.noteMalformed(`an event exceeded ${MAX_EVENT_BYTES} bytes without ending`);
          if (strip) write(oversized);
        }
      },
      onEnd: () => {
        const rest = splitter.takePending();
        if (rest.length > 0) relay([rest]);
        call.settle?.();
        return streamOutcome(observer.facts, answer);
      },
    };
  }

  /** A JSON answer: passed on as it comes, and a copy kept (up to a limit) to read its usage. */
  private jsonBody(call: RecordedCall, readable: boolean, write: (chunk: Buffer) => void): BodyRelay {
    const captured: Buffer[] = [];
    let size = 0;
    let overflow = !readable;
    const limit = this.options.config.maxResponseCaptureBytes;
    return {
      onData: (chunk) => {
        write(chunk);
        if (overflow) return;
        size += chunk.length;
        if (size > limit) {
          overflow = true;
          captured.length = 0;
        } else captured.push(chunk);
      },
      onEnd: () => {
        if (overflow) this.warnOnce('uncaptured', 'proxy: a response was too large or encoded to read its usage; its tokens are estimated');
        const body = overflow ? null : captured.length === 1 ? (captured[0] as Buffer) : Buffer.concat(captured, size);
        return jsonOutcome(call.endpoint, call.answer, body);
      },
    };
  }

  /** The call is over: note how it ended now; its record is built after the response has gone out. */
  private finish(call: RecordedCall, status: RequestStatus): void {
    if (call.done) return;
    call.done = true;
    this.watchdog.unwatch(call);
    call.settle?.();
    // What the record needs is in `answer` now; let the request's objects go with the request.
    call.settle = null;
    call.upstreamReq = null;
    const answer = call.answer;
    const model = answer.model ?? call.requestModel ?? 'unknown';
    if (status === 'error' && answer.problem !== null) {
      this.options.log.warn({ endpoint: call.endpoint, model, problem: answer.problem }, `proxy: ${call.endpoint} call recorded as error: ${answer.problem}`);
    }
    this.finished.push({
      call,
      status,
      endMs: this.now(),
      usage: answer.refused ? NO_TOKENS : answer.usage,
      upstreamId: answer.id,
      model,
      firstTokenMs: call.stream ? answer.firstContentMs : null,
      completionEstimate: answer.completionEstimate,
      reasoningEstimate: answer.reasoningEstimate,
    });
    if (!this.buildScheduled) {
      this.buildScheduled = true;
      setImmediate(() => this.buildRecords());
    }
  }

  /** Build and check the records of the calls finished since the last batch, and queue them for the sink. */
  private buildRecords(): void {
    this.buildScheduled = false;
    const finished = this.finished;
    if (finished.length === 0) return;
    this.finished = [];
    const records: RequestRecord[] = [];
    for (const { call, status, endMs, usage, upstreamId, model, firstTokenMs, completionEstimate, reasoningEstimate } of finished) {
      const replica: ReplicaConfig | undefined = this.options.config.models?.[model] ?? this.options.config.replica;
      const built = buildProxyRecord({
        requestId: this.uniqueId(upstreamId),
        endpoint: call.endpoint,
        model,
        startMs: call.startMs,
        firstTokenMs,
        endMs,
        status,
        usage,
        estimate: { promptTokens: call.promptEstimate, completionTokens: completionEstimate, reasoningTokens: reasoningEstimate },
        call: call.labels,
        replica,
      });
      if (built.ok) records.push(built.record);
      else {
        const reasons = built.errors.map((e) => `${e.field}: ${e.reason}`).join('; ');
        this.fail(`proxy: could not build the record of a ${call.endpoint} call (${model}): ${reasons}`);
      }
    }
    if (records.length > 0) this.delivery?.push(records);
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
      protocol: this.upstreamProtocol,
      hostname: this.upstreamHostname,
      port: this.upstreamPort,
      method,
      path: this.basePath + url,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      agent: this.agent,
    });
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
