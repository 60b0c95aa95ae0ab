import type { IncomingMessage, ServerResponse } from 'node:http';
import { acceptsGzip } from './gzip-member.js';
import type { MetricsBody } from './tokenwatt-metrics.js';

/** What serveMetrics needs (TokenwattMetrics fits). */
export interface ScrapeSource {
  readonly contentType: string;
  scrape(options: { readonly gzip?: boolean }): Promise<MetricsBody>;
}

/**
 * Answer GET /metrics: gzip when the request's Accept-Encoding allows it (Prometheus sends
 * `Accept-Encoding: gzip`), plain text otherwise, always with Content-Length (the connection stays
 * reusable) and `Vary: Accept-Encoding`. The body is written in one go, from buffers prepared off
 * the scrape path: no string is built or encoded here.
 */
export async function serveMetrics(source: ScrapeSource, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await source.scrape({ gzip: acceptsGzip(req.headers['accept-encoding']) });
  res.writeHead(200, {
    'content-type': source.contentType,
    'content-length': body.byteLength,
    vary: 'Accept-Encoding',
    ...(body.encoding === 'gzip' ? { 'content-encoding': 'gzip' } : {}),
  });
  writeBody(res, body.chunks);
}

/** Write buffers as one body: a single end(), or several writes gathered into one writev. */
function writeBody(res: ServerResponse, chunks: readonly Buffer[]): void {
  if (chunks.length === 1) {
    res.end(chunks[0]);
    return;
  }
  res.cork();
  for (const chunk of chunks) res.write(chunk);
  res.end(); // end() uncorks
}
