import { STATUS_CODES, createServer } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';

export type Log = Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;

/** A route handler. It owns the response; if it throws before answering, the client gets a 500. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

export interface HttpServerOptions {
  /** Address to bind (the agent's config; tests use 127.0.0.1). */
  readonly host: string;
  /** Port to bind; 0 for an ephemeral one. */
  readonly port: number;
  readonly log: Log;
  /** Time allowed to receive the request headers (default 10 s): a slow-loris guard. */
  readonly headersTimeoutMs?: number;
  /** Time allowed to receive a whole request (default 60 s). */
  readonly requestTimeoutMs?: number;
  /** Idle time before a keep-alive connection is closed (default 5 s). */
  readonly keepAliveTimeoutMs?: number;
  /** Largest request header block in bytes (default 16 KiB); larger gets 431. */
  readonly maxHeaderBytes?: number;
  /** Time close() waits for requests in flight before cutting their connections (default 5 s). */
  readonly closeGraceMs?: number;
}

/** Write a JSON response with its length (keeps the connection reusable). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

/**
 * The agent's HTTP server (ingest, /metrics, /healthz, /readyz) on node:http: exact-path routes,
 * keep-alive, JSON 404/405/500, header and request timeouts, and a close() that does not hang on
 * idle keep-alive sockets. No input can crash it: handler errors become 500s and are logged.
 */
export class HttpServer {
  private readonly routes = new Map<string, Map<string, RouteHandler>>();
  private readonly server: Server;

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer(
      {
        keepAlive: true,
        maxHeaderSize: options.maxHeaderBytes ?? 16 * 1024,
        requestTimeout: options.requestTimeoutMs ?? 60_000,
        headersTimeout: options.headersTimeoutMs ?? 10_000,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? 5_000,
        // Node checks the two timeouts above only this often (30 s by default), so a slow-loris
        // client would otherwise hold a connection three times longer than headersTimeout says.
        connectionsCheckingInterval: Math.min(1_000, options.headersTimeoutMs ?? 10_000),
      },
      (req, res) => {
        this.dispatch(req, res).catch((error: unknown) => this.options.log.error({ err: error }, 'HTTP dispatch failed'));
      },
    );
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => this.onClientError(error, socket));
  }

  /** Register a handler for one method and exact path (query strings are ignored for matching). */
  route(method: string, path: string, handler: RouteHandler): this {
    let byMethod = this.routes.get(path);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.routes.set(path, byMethod);
    }
    byMethod.set(method.toUpperCase(), handler);
    return this;
  }

  /** Bind and start serving. Resolves with the bound port (useful with port 0). */
  listen(): Promise<{ port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        this.server.on('error', (error) => this.options.log.error({ err: error }, 'HTTP server error'));
        resolve({ port: (this.server.address() as AddressInfo).port });
      });
    });
  }

  /**
   * Stop accepting connections, close idle keep-alive sockets at once, and give requests in
   * flight closeGraceMs to finish before their connections are cut.
   */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      const grace = setTimeout(() => this.server.closeAllConnections(), this.options.closeGraceMs ?? 5_000);
      grace.unref();
      this.server.close(() => {
        clearTimeout(grace);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = pathOf(req.url);
    const byMethod = this.routes.get(path);
    if (byMethod === undefined) {
      sendJson(res, 404, { error: 'not found', path });
      return;
    }
    // HEAD is GET without the body (RFC 9110 §9.3.2; node drops the body); uptime checkers use it.
    const handler = byMethod.get(method) ?? (method === 'HEAD' ? byMethod.get('GET') : undefined);
    if (handler === undefined) {
      const methods = [...byMethod.keys()];
      if (methods.includes('GET')) methods.push('HEAD');
      const allow = methods.join(', ');
      if (method === 'OPTIONS') {
        res.writeHead(204, { allow }).end();
        return;
      }
      sendJson(res, 405, { error: `method ${method} not allowed`, allow: methods }, { allow });
      return;
    }
    try {
      await handler(req, res);
    } catch (error) {
      this.options.log.error({ err: error, method, path }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' }, { connection: 'close' });
      else res.destroy();
    }
  }

  /** Malformed requests, oversized headers and timeouts: answer if the socket still can, then close it. */
  private onClientError(error: NodeJS.ErrnoException, socket: Socket): void {
    this.options.log.debug({ code: error.code, message: error.message }, 'HTTP client error');
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const text = STATUS_CODES[status] ?? 'Error';
    const body = JSON.stringify({ error: text.toLowerCase() });
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
}
