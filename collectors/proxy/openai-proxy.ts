import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { RequestRecord, RequestStatus } from '../../model/request-record.js';
import type { RequestSink, RequestSource } from '../request-sink.js';
import { isLoopbackHost } from '../loopback-host.js';
import { BodyTooLargeError, forwardableHeaders, rawHeader, readBodyThen, relayHead, sendProxyError, UpstreamTimeoutError } from './http-forwarding.js';
import { recordedEndpoint } from './openai-endpoint.js';
import type { OpenAiEndpoint } from './openai-endpoint.js';
import type { TokenUsage } from './openai-usage.js';
import type { ProxyConfig, ReplicaConfig } from './proxy-config.js';
import { boundedModel, buildProxyRecord, labelsFromHeaders, MAX_MODEL } from './proxy-record.js';
import type { CallLabels } from './proxy-record.js';
import { RecordDelivery } from './record-delivery.js';
import type { DeliveryStats, SourceLog } from './record-delivery.js';
import { hasBom, withStreamUsage } from './request-body.js';
import { jsonOutcome, scannedJsonOutcome, streamOutcome } from './call-outcome.js';
import { JsonAnswerScanner } from './json-scan.js';
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
  /**
   * A task or label header value left out of its call's record (the record is kept without it),
   * by the record field it would have filled: counted on every call, while the log says it once.
   */
  readonly onLabelLeftOut?: (field: string) => void;
  /** Wall clock, injectable for tests. */
  readonly now?: () => number;
  /** How long shutdown lets calls in flight finish before cutting them (they are then recorded as cancelled). */
  readonly shutdownGraceMs?: number;
  /** How long an idle upstream keep-alive connection is kept (default FREE_SOCKET_TIMEOUT_MS; tests shorten it). */
  readonly freeSocketTimeoutMs?: number;
}

/**
 * One recorded call, from the client's request to its record. A class, so that every call has
 * the same shape (the hot path stays monomorphic) and is also the watchdog's entry for its
 * upstream request.
 */
class RecordedCall extends WatchedRequest {
  requestModel: string | null = null;
  promptEstimate = 0;
  /** The client asked for a stream (as the upstream reads `stream`). */
  stream = false;
  /** The proxy added stream_options.include_usage: usage chunks must not reach the client. */
  injectedUsage = false;
  upstreamReq: http.ClientRequest | null = null;
  readonly answer: Answer = {
    id: null,
    model: null,
    usage: null,
    firstContentMs: null,
    completionEstimate: 0,
    reasoningEstimate: 0,
    problem: null,
    refused: false,
    usageIgnored: null,
    unread: false,
  };
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
  /** The request in flight (a retry replaces the first). */
  upstreamReq: http.ClientRequest | null = null;
  onTimeout(error: UpstreamTimeoutError): void {
    this.upstreamReq?.destroy(error);
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
/** Strings pydantic (vLLM's and SGLang's request models, lax mode) reads as true; it also takes the number 1. */
const TRUE_WORDS: ReadonlySet<string> = new Set(['true', '1', 'yes', 'on', 't', 'y']);
/**
 * Upstream keep-alive connections idle this long are closed by the proxy. Below the idle timeout
 * of common servers (uvicorn, which vLLM runs on, closes after 5 s without saying so in a
 * Keep-Alive header), so that a call is rarely sent on a connection the upstream is closing.
 */
const FREE_SOCKET_TIMEOUT_MS = 4000;
/** Error codes of a connection to the upstream that was never made (TLS handshake failures are matched by name below). */
const NOT_CONNECTED: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);
const TLS_HANDSHAKE = /CERT|TLS|SSL|SIGNATURE|ISSUER/;
/** How much of a 400 answer to a call with injected usage is read for the field it names. */
const MAX_ERROR_HEAD_BYTES = 8 * 1024;
/** An SSE event larger than this without its blank line is not SSE: passed on unparsed. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const NO_TOKENS: TokenUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0, reasoningTokens: 0 };
/** Request headers not forwarded on a recorded call: the proxy sets Host and Content-Length, and asks for identity (it must read the answer). */
/**
 * `expect` is dropped because node's server has already answered `100 Continue` to the client
 * (no checkContinue listener): passing it on would only let an upstream that does not support it
 * answer 417 to a client that was told to go on.
 */
const RECORDED_REQUEST_DROP: ReadonlySet<string> = new Set(['host', 'content-length', 'accept-encoding', 'expect']);
/** The same for a body the proxy decoded: it goes on as identity. */
const RECORDED_DECODED_REQUEST_DROP: ReadonlySet<string> = new Set([...RECORDED_REQUEST_DROP, 'content-encoding']);
const PASS_THROUGH_DROP: ReadonlySet<string> = new Set(['host', 'expect']);
const NOTHING: ReadonlySet<string> = new Set();
const CONTENT_LENGTH: ReadonlySet<string> = new Set(['content-length']);
/** Headers of an answer the proxy decodes for the client: its length and coding are no longer the body's. */
const DECODED: ReadonlySet<string> = new Set(['content-length', 'content-encoding']);

/** SSE headers go out at once if no body byte followed them within the same read (see relay). */
function flushHeadersIfIdle(call: RecordedCall, res: ServerResponse): void {
  if (!call.wroteBody && !res.destroyed && !res.writableEnded) res.flushHeaders();
}

/** `stream` as the upstream reads it: pydantic takes true, 1 and "true" (and the like) alike. */
function streamRequested(value: unknown): boolean {
  return value === true || value === 1 || (typeof value === 'string' && TRUE_WORDS.has(value.toLowerCase()));
}

/** The connection to the upstream was never made (refused, no such host, TLS handshake failed): it saw nothing of the call. */
function neverConnected(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code !== undefined && (NOT_CONNECTED.has(code) || TLS_HANDSHAKE.test(code));
}

/**
 * The call went out on a pooled connection that the upstream had closed (idle) meanwhile: nothing
 * was answered, so it may be sent again on a new connection (node's documented pattern for `reusedSocket`).
 */
function staleConnection(upstreamReq: http.ClientRequest, err: Error, responded: boolean): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return !responded && upstreamReq.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE');
}

/**
 * How soon after a recorded call was written a reset of its pooled connection is still the
 * idle-connection race, and the call is sent again. That race fails within one round trip of the
 * write: the upstream's FIN was already on its way, or it answers the data with a RST. A round
 * trip to an upstream in the same region is well under 100 ms; 250 ms leaves room for a loaded
 * host. A reset later than that is an upstream (an engine worker, a balancer's backend) that died
 * while it had the call, maybe after a long prefill or generation: sending the call again would
 * run it twice (tool side effects included) behind the client's back and hide the lost work, so
 * the client gets a 502 (SDKs retry that themselves) and the call an error record.
 */
const STALE_RETRY_WINDOW_MS = 250;

/** A node:zlib decoder for a content coding (lower case), or null for one it cannot read. */
function decoderFor(coding: string): Transform | null {
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

/**
 * The client's buffer is full: read no more from `source` until it drains. Meanwhile the watchdog
 * knows that the upstream's silence is the client's doing.
 */
function waitForClient(source: Readable, res: ServerResponse, watch: WatchedRequest): void {
  if (watch.waitingForClient) return;
  watch.waitingForClient = true;
  source.pause();
  res.once('drain', () => {
    watch.waitingForClient = false;
    source.resume();
  });
}

/**
 * The upstream will read no more of a passed-through body (it failed, or closed after answering
 * early): the rest is read and dropped, so that the client is not stalled mid-upload, and the
 * answer says Connection: close, since the connection may never reach the next request boundary.
 */
function abandonBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete || req.destroyed) return;
  req.unpipe();
  req.resume();
  if (!res.headersSent) res.setHeader('Connection', 'close');
}

/** The status line and headers of an upstream answer, for a connection the proxy writes itself (an upgrade); hop-by-hop headers are kept only on a 101. */
function rawHead(up: IncomingMessage, extra: readonly string[]): string {
  const switching = up.statusCode === 101;
  const headers = switching ? up.rawHeaders : forwardableHeaders(up.rawHeaders);
  let head = `HTTP/1.1 ${up.statusCode ?? 502} ${up.statusMessage ?? ''}\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  for (let i = 0; i + 1 < extra.length; i += 2) head += `${extra[i]}: ${extra[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** The upstream closed a request without a response or an error (node does so for a 101 answer no one asked for). */
const NO_ANSWER = 'the upstream closed the connection without an answer';

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
  /** Calls sent upstream and not yet over: shutdown records those it must cut. */
  private readonly calls = new Set<RecordedCall>();
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
    // timeout: an idle connection is closed by the proxy before the upstream closes it under a call
    // (node's agent acts on it for idle connections only; calls in flight have the watchdog).
    this.agent = new this.transport.Agent({
      keepAlive: true,
      maxFreeSockets: 256,
      scheduling: 'lifo',
      noDelay: true,
      timeout: options.freeSocketTimeoutMs ?? FREE_SOCKET_TIMEOUT_MS,
    });
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
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.tunnel(req, socket, head));
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
    // The proxy checks no credentials (it passes Authorization on): beyond loopback it is an open
    // door to the LLM server for whoever reaches the port.
    if (!isLoopbackHost(config.host)) {
      log.warn(
        { host: config.host, port: this.boundPort, upstream: this.upstream.origin + this.basePath },
        `proxy: listening on ${config.host} without authentication: anyone who can reach port ${this.boundPort} there can send calls through it to the LLM server at ` +
          `${this.upstream.origin}${this.basePath} (the proxy passes their Authorization header on and checks none itself). To restrict it, set proxy.host (or --host) 127.0.0.1 ` +
          'when the clients run on this host, or limit who reaches the port (a Kubernetes NetworkPolicy, a firewall rule)',
      );
    }
  }

  async shutdown(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      server.close();
      const deadline = Date.now() + (this.options.shutdownGraceMs ?? 10_000);
      while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      // Calls still running are recorded as cancelled (with what they generated so far) before
      // anything is cut: cutting first would let the upstream's side close first and blame it,
      // and records that came after this resolved would miss the agent's ledger.
      const cut: http.ClientRequest[] = [];
      for (const call of this.calls) {
        if (call.upstreamReq !== null) cut.push(call.upstreamReq);
        call.clientGone = true;
        this.finish(call, 'cancelled');
      }
      for (const socket of this.sockets) socket.destroy();
      for (const upstreamReq of cut) upstreamReq.destroy(); // a retry on a fresh connection is not in the agent
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
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 0x2f) url = this.originForm(url);
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

  /**
   * The path and query of an absolute-form request target (`POST http://host/v1/chat/completions`),
   * which a client sends when it takes the proxy for a forward proxy (HTTP_PROXY): the call is
   * matched and forwarded by its path, so it is recorded like any other. Other targets ("*") stay as they are.
   */
  private originForm(target: string): string {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return target;
    }
    this.warnOnce('absolute-form', `proxy: clients send full URLs (${url.origin}), as to a forward proxy; they go to ${this.upstream.origin} by their path`);
    return url.pathname + url.search;
  }

  /** A call to record: read its body, then forward it (forwardCall). */
  private recordCall(req: IncomingMessage, res: ServerResponse, url: string, endpoint: OpenAiEndpoint): void {
    const { config } = this.options;
    const call = new RecordedCall(
      endpoint,
      url,
      this.now(),
      labelsFromHeaders(req.rawHeaders, config.headers, (header, reason, field) => {
        this.warnOnce(`header:${header}:${reason}`, `proxy: header ${header} ignored: ${reason}`);
        this.options.onLabelLeftOut?.(field);
      }),
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
          // The rest of the body is not read, so the connection cannot carry another request: say so.
          res.setHeader('Connection', 'close');
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
    const method = req.method ?? 'GET';
    const headers = forwardableHeaders(req.rawHeaders, PASS_THROUGH_DROP, ['Host', this.upstreamHost]);
    // Without a body (GET /v1/models...) the request can be sent again if its pooled connection was stale.
    const length = rawHeader(req.rawHeaders, 'content-length');
    const bodyless = (length === undefined || length === '0') && rawHeader(req.rawHeaders, 'transfer-encoding') === undefined;
    const watch = new PassThroughWatch();
    watch.sentAt = this.watchdog.now();
    this.watchdog.watch(watch);
    const send = (fresh: boolean): void => {
      const upstreamReq = this.upstreamRequest(method, url, headers, fresh);
      watch.upstreamReq = upstreamReq;
      upstreamReq.on('response', (up) => this.relayPassThrough(req, up, res, watch, url));
      upstreamReq.on('error', (err) => {
        if (watch.upstreamReq !== upstreamReq) return;
        if (bodyless && !fresh && staleConnection(upstreamReq, err, watch.responded)) send(true);
        else {
          abandonBody(req, res);
          this.upstreamFailed(res, err, url, watch.responded);
        }
      });
      upstreamReq.on('close', () => {
        if (watch.upstreamReq !== upstreamReq) return;
        this.watchdog.unwatch(watch);
        abandonBody(req, res);
        if (!watch.responded && !res.headersSent && !res.destroyed) this.upstreamFailed(res, new Error(NO_ANSWER), url, false);
      });
      if (bodyless) upstreamReq.end();
      else req.pipe(upstreamReq);
    };
    req.on('data', () => watch.activity++); // an upload in progress is not a silent upstream
    res.on('close', () => {
      if (!res.writableFinished) watch.upstreamReq?.destroy();
    });
    req.on('error', () => watch.upstreamReq?.destroy());
    send(false);
  }

  private relayPassThrough(req: IncomingMessage, up: IncomingMessage, res: ServerResponse, watch: PassThroughWatch, url: string): void {
    watch.responded = true;
    watch.activity++; // the idle clock starts with the answer
    const headers = forwardableHeaders(up.rawHeaders);
    // An answer before the client's whole body (an upstream that refuses without reading it): the
    // connection may not come back to the request boundary, so the client must not reuse it.
    if (!req.complete) headers.push('Connection', 'close');
    const problem = relayHead(res, up.statusCode ?? 0, headers);
    if (problem !== null) {
      up.destroy();
      this.warnOnce(`bad-answer:${problem}`, `proxy: ${url}: ${problem}`);
      sendProxyError(res, 502, 'upstream_bad_answer', problem);
      return;
    }
    up.on('data', (chunk: Buffer) => {
      watch.activity++;
      if (!res.write(chunk)) waitForClient(up, res, watch);
    });
    up.on('end', () => res.end());
    // The client must see a cut answer, not a clean end.
    up.on('error', () => res.destroy());
    up.on('close', () => {
      if (!up.complete) res.destroy();
    });
  }

  /**
   * A WebSocket upgrade (vLLM's /v1/realtime): passed to the upstream with its Upgrade and
   * Connection headers and, once the upstream switches protocols, the two connections are joined
   * byte for byte. Not recorded, like any pass-through. Node's server hands every Upgrade request
   * here once this listener exists: any other (h2c, from curl --http2) is read as the plain
   * HTTP/1.1 request it also is, as uvicorn does, so that a call stays recorded.
   */
  private tunnel(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const upgrade = rawHeader(req.rawHeaders, 'upgrade') ?? '';
    if (!/(^|,)\s*websocket\s*(,|$)/i.test(upgrade)) {
      this.replayAsPlain(req, socket, head);
      return;
    }
    socket.on('error', () => socket.destroy());
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 0x2f) url = this.originForm(url);
    const headers = forwardableHeaders(req.rawHeaders, PASS_THROUGH_DROP, ['Host', this.upstreamHost]);
    headers.push('Connection', 'Upgrade', 'Upgrade', upgrade); // hop-by-hop, but the upgrade is asked of the upstream
    let upstreamReq: http.ClientRequest;
    try {
      upstreamReq = this.upstreamRequest(req.method ?? 'GET', url, headers, true); // a connection of its own: it will not come back to the pool
    } catch (err) {
      this.tunnelFailed(socket, url, 502, 'proxy_forward_failed', `cannot forward the request: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    let joined = false;
    const { requestTimeoutMs } = this.options.config;
    upstreamReq.setTimeout(requestTimeoutMs, () => upstreamReq.destroy(new UpstreamTimeoutError('headers', requestTimeoutMs)));
    socket.on('close', () => upstreamReq.destroy());
    upstreamReq.on('upgrade', (up: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      joined = true;
      upSocket.on('error', () => upSocket.destroy());
      upSocket.setTimeout(0); // a session may be idle as long as it likes
      if (socket.destroyed) {
        upSocket.destroy();
        return;
      }
      socket.write(rawHead(up, []));
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      upSocket.on('close', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
    });
    upstreamReq.on('response', (up) => {
      // Refused (400, 426...): its answer as it is; the connection then ends, as it has left HTTP framing here.
      joined = true;
      socket.write(rawHead(up, ['Connection', 'close']));
      up.pipe(socket);
      up.on('error', () => socket.destroy());
      up.on('close', () => {
        if (!up.complete) socket.destroy();
      });
    });
    upstreamReq.on('error', (err) => {
      if (joined || socket.destroyed) return;
      const timeout = err instanceof UpstreamTimeoutError;
      const message = timeout ? err.message : `upstream ${this.upstream.origin} unreachable or failed: ${err.message}`;
      this.warnOnce(`upstream:${timeout ? 'timeout' : (err as NodeJS.ErrnoException).code ?? err.message}`, `proxy: ${url}: ${message}`);
      this.options.onError?.(new Error(`proxy: ${url}: ${message}`));
      this.tunnelFailed(socket, url, timeout ? 504 : 502, timeout ? 'upstream_timeout' : 'upstream_unavailable', message);
    });
    upstreamReq.end();
  }

  /**
   * Give an upgrade request back to the HTTP server as a plain request: its head is written again
   * without the upgrade (Upgrade, HTTP2-Settings and their Connection tokens), put back in front of
   * what followed it, and the socket handed to the server as a new connection.
   */
  private replayAsPlain(req: IncomingMessage, socket: Socket, head: Buffer): void {
    let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      let value = raw[i + 1] as string;
      if (name === 'upgrade' || name === 'http2-settings') continue;
      if (name === 'connection') {
        value = value
          .split(',')
          .map((t) => t.trim())
          .filter((t) => t !== '' && !/^(upgrade|http2-settings)$/i.test(t))
          .join(', ');
        if (value === '') continue;
      }
      text += `${raw[i]}: ${value}\r\n`;
    }
    const server = this.server;
    if (server === null) {
      socket.destroy(); // shutting down
      return;
    }
    socket.unshift(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), head]));
    server.emit('connection', socket);
  }

  /** An upgrade that could not be passed on: the client hears why, as from sendProxyError, and the connection ends. */
  private tunnelFailed(socket: Socket, url: string, status: number, code: string, message: string): void {
    this.options.log.debug({ url }, `proxy: upgrade request failed: ${message}`);
    const body = JSON.stringify({ error: { message: `tokenwatt proxy: ${message}`, type: 'proxy_error', code } });
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  /** A recorded call's body has arrived: read what the proxy needs from it and send it upstream. */
  private forwardCall(req: IncomingMessage, res: ServerResponse, call: RecordedCall, sent: Buffer): void {
    // A compressed body (a gateway's, an SDK's option) is decoded: the proxy must read it, and may add to it.
    const decoded = decodeRequestBody(req.headers['content-encoding'], sent, this.options.config.maxRequestBodyBytes);
    if (!decoded.ok) {
      sendProxyError(res, decoded.status, decoded.code, decoded.message);
      return;
    }
    const raw = decoded.body;
    let body: unknown;
    try {
      // A UTF-8 byte-order mark (.NET, PowerShell) is skipped, as vLLM's json.loads does; the body goes upstream as sent.
      body = JSON.parse(raw.toString('utf8', hasBom(raw) ? 3 : 0));
    } catch (err) {
      sendProxyError(res, 400, 'invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
      return;
    }
    if (!isObject(body)) {
      sendProxyError(res, 400, 'invalid_request', 'request body must be a JSON object');
      return;
    }
    const { config } = this.options;
    call.stream = streamRequested(body.stream);
    // Read as the upstream's pydantic reads it ("true", 1...): a client that asked keeps its usage chunk.
    const asked = isObject(body.stream_options) && streamRequested(body.stream_options.include_usage);
    call.injectedUsage = call.stream && call.endpoint !== 'responses' && !asked && config.injectStreamUsage;
    call.requestModel = str(body.model);
    call.promptEstimate = estimatePromptTokens(body, call.endpoint);
    const out = call.injectedUsage ? withStreamUsage(raw, body) : raw;

    // Accept-Encoding: identity: the proxy must read the answer (usage) and may rewrite stream events.
    // (Without the header any coding would do, RFC 9110 §12.5.3.)
    const headers = forwardableHeaders(req.rawHeaders, decoded.decoded ? RECORDED_DECODED_REQUEST_DROP : RECORDED_REQUEST_DROP, ['Host', this.upstreamHost, 'Accept-Encoding', 'identity']);
    headers.push('Content-Length', String(out.length));
    call.sentAt = this.watchdog.now();
    this.watchdog.watch(call);
    this.calls.add(call);
    this.sendCall(res, call, headers, out, false);
  }

  /** Send a recorded call upstream: on a pooled connection, or (`fresh`, the one retry) on a new one. */
  private sendCall(res: ServerResponse, call: RecordedCall, headers: string[], out: Buffer, fresh: boolean): void {
    const upstreamReq = this.upstreamRequest('POST', call.url, headers, fresh);
    call.upstreamReq = upstreamReq;
    let writtenAt: number | null = null; // the call handed whole to the connection
    if (!fresh) upstreamReq.once('finish', () => (writtenAt = performance.now()));
    upstreamReq.on('error', (err) => {
      if (call.upstreamReq !== upstreamReq || call.clientGone || call.done) return;
      const raced = writtenAt === null || performance.now() - writtenAt <= STALE_RETRY_WINDOW_MS;
      if (!fresh && raced && staleConnection(upstreamReq, err, call.responded)) this.sendCall(res, call, headers, out, true);
      else this.callFailed(res, call, err);
    });
    upstreamReq.on('close', () => {
      if (call.upstreamReq === upstreamReq && !call.responded && !call.done && !call.clientGone) this.callFailed(res, call, new Error(NO_ANSWER));
    });
    upstreamReq.on('response', (up) => {
      call.responded = true;
      call.activity++; // the idle clock starts with the answer
      let problem: string | null;
      let code = 'upstream_bad_answer';
      try {
        problem = this.relay(up, res, call);
      } catch (err) {
        problem = `relaying the answer failed: ${err instanceof Error ? err.message : String(err)}`;
        code = 'proxy_relay_failed';
        this.fail(`proxy: ${problem}`);
      }
      if (problem === null) return;
      call.answer.problem = problem;
      call.answer.unread = code === 'upstream_bad_answer'; // a relay that failed was counted by fail()
      upstreamReq.destroy();
      sendProxyError(res, 502, code, problem);
      this.finish(call, 'error');
    });
    upstreamReq.end(out);
  }

  /** The upstream request failed (or timed out) before the call was over. */
  private callFailed(res: ServerResponse, call: RecordedCall, err: Error): void {
    const midAnswer = call.responded && !(err instanceof UpstreamTimeoutError);
    call.answer.problem = midAnswer ? `the upstream connection failed in the middle of its answer (${err.message})` : err.message;
    // Only a call that never reached the upstream cost nothing; any other keeps its estimates.
    call.answer.refused = !call.responded && neverConnected(err);
    this.upstreamFailed(res, err, call.url, call.responded);
    this.finish(call, 'error');
  }

  /** Relay the upstream's answer to the client and judge it; returns why it cannot be relayed (null: it is under way). */
  private relay(up: IncomingMessage, res: ServerResponse, call: RecordedCall): string | null {
    const status = up.statusCode ?? 0;
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
    const encoding = coding === null ? 'identity' : coding.trim().toLowerCase();
    const identity = encoding === 'identity' || encoding === '';
    // The proxy asked for identity; an answer encoded all the same is decoded for the client, if node:zlib can.
    const decoder = identity ? null : decoderFor(encoding);
    const readable = identity || decoder !== null;
    if (!identity) {
      this.warnOnce(
        `encoding:${encoding}`,
        readable
          ? `proxy: the upstream answered with content-encoding ${encoding} although asked for identity; such answers are decoded for the client`
          : `proxy: the upstream answered with content-encoding ${encoding}, which the proxy cannot read; token counts of such calls are estimated`,
      );
    }
    // The usage the proxy asked for could not be taken out again: the client must not get it.
    if (!readable && ok && call.injectedUsage) return `the upstream answered in content-encoding ${encoding} (asked for identity), which the proxy cannot read`;
    // Media types are case-insensitive. A stream call's answer is read as a stream unless it says it
    // is JSON: some servers send SSE under another content type, or none.
    const media = type === null ? null : type.toLowerCase();
    const sse = ok && readable && (media === null ? call.stream : media.includes('text/event-stream') || (call.stream && !media.includes('json')));
    const strip = sse && call.injectedUsage;
    const problem = relayHead(res, status, forwardableHeaders(raw, decoder !== null ? DECODED : strip ? CONTENT_LENGTH : NOTHING));
    if (problem !== null) {
      decoder?.destroy();
      return problem;
    }
    const source: Readable = decoder === null ? up : up.pipe(decoder);

    const write = (chunk: Buffer): void => {
      call.wroteBody = true;
      if (!res.write(chunk)) waitForClient(source, res, call);
    };
    const body = !ok ? this.errorBody(status, call, write) : sse ? this.streamBody(call, strip, write) : this.jsonBody(call, readable, write);

    // A bug in reading one answer must cost that call, not the agent: no throw escapes an event handler.
    const failed = (err: unknown): void => {
      call.answer.problem = `reading the answer failed: ${err instanceof Error ? err.message : String(err)}`;
      this.fail(`proxy: ${call.answer.problem}`);
      up.destroy();
      decoder?.destroy();
      res.destroy();
      this.finish(call, 'error');
    };
    source.on('data', (chunk: Buffer) => {
      call.activity++;
      try {
        body.onData(chunk);
      } catch (err) {
        failed(err);
      }
    });
    source.on('end', () => {
      try {
        if (res.destroyed) return;
        const outcome = body.onEnd();
        res.end();
        this.finish(call, outcome);
      } catch (err) {
        failed(err);
      }
    });
    decoder?.on('error', failed); // a corrupt encoded body
    const broken = (): void => {
      if (up.complete) return;
      decoder?.destroy();
      call.answer.problem ??= 'the upstream closed the connection in the middle of its answer';
      call.answer.unread = true;
      res.destroy(); // the client must see a cut stream, not a clean end
      this.finish(call, 'error');
    };
    up.on('error', broken);
    up.on('close', broken);
    // The client must see a stream open before its first token. Body bytes that came in the same
    // read as the headers are written (with the headers, in one packet) before this runs.
    if (sse) process.nextTick(flushHeadersIfIdle, call, res);
    return null;
  }

  /**
   * A non-2xx answer: the upstream's own error goes to the client as it is; the call is an error.
   * A 4xx refused the call: nothing was generated, zero tokens. A 5xx may come after the work (a
   * gateway's 502/504 after its read timeout, the engine failing mid-generation): the call keeps its
   * prompt estimate, flagged estimated, as a call the proxy itself times out does.
   */
  private errorBody(status: number, call: RecordedCall, write: (chunk: Buffer) => void): BodyRelay {
    call.answer.problem = `the upstream answered ${status}`;
    call.answer.refused = status < 500;
    if (status !== 400 || !call.injectedUsage) return { onData: write, onEnd: () => 'error' };
    // An upstream that refuses the stream_options the proxy added would refuse every streamed call.
    const head: Buffer[] = [];
    let kept = 0;
    return {
      onData: (chunk) => {
        write(chunk);
        if (kept < MAX_ERROR_HEAD_BYTES) {
          head.push(chunk.subarray(0, MAX_ERROR_HEAD_BYTES - kept));
          kept += chunk.length;
        }
      },
      onEnd: () => {
        if (/stream_options|include_usage/.test(Buffer.concat(head).toString('utf8'))) {
          this.warnOnce(
            'inject-stream-usage',
            'proxy: the upstream refused a streamed call (400) over the stream_options.include_usage the proxy adds to read its usage (an older server, or a gateway that allows no unknown fields); set proxy.injectStreamUsage: false to send streamed calls as the client sent them (their tokens are then estimated unless the client asks for usage)',
          );
        }
        return 'error';
      },
    };
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
      // Usage that came before the end (a client that left after the usage chunk) is exact: kept.
      if (f.usageRefused === null) answer.usage = f.usage;
      answer.id = f.id;
      answer.model = f.model;
      answer.firstContentMs = f.firstContentMs;
      answer.completionEstimate = estimateCompletionTokens(f.contentChars + f.reasoningChars, f.contentEvents);
      answer.reasoningEstimate = tokensFromChars(f.reasoningChars);
    };
    let droppedLast = false;
    const relay = (events: Buffer[]): void => {
      if (!strip) {
        for (let i = 0; i < events.length; i++) observer.observe(events[i] as Buffer);
        return;
      }
      let single: Buffer | null = null;
      let several: Buffer[] | null = null;
      for (let i = 0; i < events.length; i++) {
        const event = events[i] as Buffer;
        // The LF of a CRLF split from its event by the chunking goes where that event went.
        let forward: Buffer | null;
        if (splitter.endsPrevious(event)) forward = droppedLast ? null : event;
        else {
          forward = observer.observe(event);
          droppedLast = forward === null;
        }
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

  /**
   * A JSON answer: passed on as it comes, and a copy kept (up to a limit) to read its usage. Past
   * the limit the copy is scanned and dropped, and the scan goes on over the rest as it passes: the
   * usage is still read, without holding the answer.
   */
  private jsonBody(call: RecordedCall, readable: boolean, write: (chunk: Buffer) => void): BodyRelay {
    const captured: Buffer[] = [];
    let size = 0;
    let scanner: JsonAnswerScanner | null = null;
    const limit = this.options.config.maxResponseCaptureBytes;
    return {
      onData: (chunk) => {
        write(chunk);
        if (!readable) return;
        if (scanner !== null) {
          scanner.push(chunk);
          return;
        }
        size += chunk.length;
        if (size <= limit) {
          captured.push(chunk);
          return;
        }
        scanner = new JsonAnswerScanner();
        for (const part of captured) scanner.push(part);
        captured.length = 0;
        scanner.push(chunk);
      },
      onEnd: () => {
        if (!readable) {
          this.warnOnce('uncaptured', 'proxy: a response was encoded in a way the proxy cannot read; its tokens are estimated');
          return jsonOutcome(call.endpoint, call.answer, null);
        }
        if (scanner !== null) return scannedJsonOutcome(call.endpoint, call.answer, scanner.result());
        return jsonOutcome(call.endpoint, call.answer, captured.length === 1 ? (captured[0] as Buffer) : Buffer.concat(captured, size));
      },
    };
  }

  /** The call is over: note how it ended now; its record is built after the response has gone out. */
  private finish(call: RecordedCall, status: RequestStatus): void {
    if (call.done) return;
    call.done = true;
    this.watchdog.unwatch(call);
    this.calls.delete(call);
    call.settle?.();
    // What the record needs is in `answer` now; let the request's objects go with the request.
    call.settle = null;
    call.upstreamReq = null;
    const answer = call.answer;
    const model = this.recordModel(answer.model ?? call.requestModel ?? 'unknown');
    if (status === 'error' && answer.problem !== null) {
      this.options.log.warn({ endpoint: call.endpoint, model, problem: answer.problem }, `proxy: ${call.endpoint} call recorded as error: ${answer.problem}`);
    }
    // Counted once per call: a failure that came through callFailed or fail() was counted there.
    if (status === 'error' && answer.unread) this.options.onError?.(new Error(`proxy: ${call.url}: ${answer.problem ?? 'the answer could not be read'}`));
    if (answer.usage === null && answer.usageIgnored !== null) {
      this.warnOnce('usage-incomplete', `proxy: the upstream sent usage without the counts a record needs (${answer.usageIgnored}); token counts of such calls are estimated`);
    }
    this.finished.push({
      call,
      status,
      endMs: this.now(),
      usage: answer.refused ? NO_TOKENS : answer.usage,
      upstreamId: answer.id,
      model,
      firstTokenMs: answer.firstContentMs, // set only when the answer was read as a stream
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
        this.delivery?.noteDropped(1);
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

  /** The model as its record takes it: cut to the ledger's bound (with a warning) rather than losing the record. */
  private recordModel(model: string): string {
    const bounded = boundedModel(model);
    if (bounded !== model) {
      this.warnOnce('model-length', `proxy: a model name of ${model.length} characters was cut to ${MAX_MODEL} in its record (${JSON.stringify(model.slice(0, 40))}...)`);
    }
    return bounded;
  }

  /** A request to the upstream: on a pooled connection, or (`fresh`) on a new one that is not kept. */
  private upstreamRequest(method: string, url: string, headers: string[], fresh = false): http.ClientRequest {
    const upstreamReq = this.transport.request({
      protocol: this.upstreamProtocol,
      hostname: this.upstreamHostname,
      port: this.upstreamPort,
      method,
      path: this.basePath + url,
      headers: headers as unknown as http.OutgoingHttpHeaders,
      agent: fresh ? false : this.agent,
    });
    if (fresh) upstreamReq.setNoDelay(true);
    return upstreamReq;
  }

  /** The client hears why its call failed: 504 for a timeout, 502 otherwise (a cut answer once one had begun). */
  private upstreamFailed(res: ServerResponse, err: Error, url: string, responded: boolean): void {
    const timeout = err instanceof UpstreamTimeoutError;
    const message = timeout
      ? err.message
      : responded
        ? `the upstream connection failed in the middle of its answer: ${err.message}`
        : `upstream ${this.upstream.origin} unreachable or failed: ${err.message}`;
    this.warnOnce(`upstream:${timeout ? 'timeout' : (err as NodeJS.ErrnoException).code ?? err.message}`, `proxy: ${url}: ${message}`);
    this.options.onError?.(new Error(`proxy: ${url}: ${message}`)); // every failure counts; the log line is once per kind
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

type DecodedBody = { ok: true; body: Buffer; decoded: boolean } | { ok: false; status: number; code: string; message: string };

/**
 * A recorded call's body as the proxy reads it: as sent when it has no Content-Encoding (or
 * identity), decoded from gzip, deflate or br up to `limit` bytes, refused (415) in any other coding.
 */
function decodeRequestBody(encoding: string | undefined, body: Buffer, limit: number): DecodedBody {
  const coding = (encoding ?? '').trim().toLowerCase();
  if (coding === '' || coding === 'identity') return { ok: true, body, decoded: false };
  const options = { maxOutputLength: limit };
  let decode: ((buffer: Buffer) => Buffer) | null = null;
  if (coding === 'gzip' || coding === 'x-gzip') decode = (b) => zlib.gunzipSync(b, options);
  else if (coding === 'deflate') decode = (b) => zlib.inflateSync(b, options);
  else if (coding === 'br') decode = (b) => zlib.brotliDecompressSync(b, options);
  if (decode === null) {
    return { ok: false, status: 415, code: 'unsupported_encoding', message: `request Content-Encoding ${JSON.stringify(coding.slice(0, 40))} is not supported on recorded calls (use gzip, deflate, br or none)` };
  }
  try {
    return { ok: true, body: decode(body), decoded: true };
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      return { ok: false, status: 413, code: 'request_too_large', message: `request body exceeds maxRequestBodyBytes (${limit} bytes) once decoded` };
    }
    return { ok: false, status: 400, code: 'invalid_encoding', message: `request body is not valid ${coding}: ${(err as Error).message}` };
  }
}
