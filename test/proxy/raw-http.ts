import { request } from 'node:http';
import type { Agent, IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: Buffer;
}

/** One HTTP request with node's own client (no SDK in between), body returned as bytes. */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface TriedResponse extends RawResponse {
  readonly statusMessage: string;
  /** The body ended cleanly (false: cut, or no answer at all, status 0). */
  readonly complete: boolean;
}

/**
 * One HTTP request that never rejects: an answer cut short, or none within `timeoutMs`, resolves
 * with what came (`complete` false). `path` overrides the request target (e.g. an absolute URL).
 */
export function tryRequest(
  url: string,
  options: {
    method?: string;
    /** An object, or a raw list (name, value, name, value...) to send a header twice (node adds no Host to a list). */
    headers?: Record<string, string> | string[];
    body?: Buffer | string;
    path?: string;
    timeoutMs?: number;
    onData?: (chunk: Buffer) => void;
    /** A keep-alive agent, to send on a connection the way clients do (default: a connection of its own). */
    agent?: Agent;
  } = {},
): Promise<TriedResponse> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let statusMessage = '';
    let headers: IncomingHttpHeaders = {};
    let rawHeaders: string[] = [];
    let settled = false;
    const settle = (complete: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, statusMessage, headers, rawHeaders, body: Buffer.concat(chunks), complete });
    };
    const target = new URL(url);
    const req = request(
      { host: target.hostname, port: target.port, path: options.path ?? target.pathname + target.search, method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false },
      (res) => {
        ({ statusCode: status = 0, statusMessage = '', headers, rawHeaders } = res);
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          options.onData?.(c);
        });
        res.on('end', () => settle(true));
        res.on('error', () => settle(false));
        res.on('close', () => settle(res.complete));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      settle(false);
    }, options.timeoutMs ?? 5000);
    req.on('error', () => settle(false));
    req.end(options.body);
  });
}
