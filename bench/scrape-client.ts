/**
 * The scraper for bench/scrape.ts, run as a separate process as Prometheus is: the bytes it reads
 * are allocated in its own heap, not in the agent's (in one process, 2.66 MB of received buffers
 * per scrape drove the server's GC and showed in its p99). Driven over IPC by its parent:
 *  - `{ kind: 'scrape', gzip, path? }`: one GET of /metrics (or `path`) on a kept-alive
 *    connection, timed from the request to the last byte; answers `{ ms }`. It only counts bytes (Prometheus decompresses on
 *    its side), and fails on a wrong status, a short body or the wrong encoding.
 *  - `{ kind: 'compare' }`: GET the plain and the gzip body and check the gzip one is the same
 *    text; answers `{ bytes, gzipBytes }`.
 * Any failure answers `{ error }`.
 * Usage (by bench/scrape.ts): fork with `--import tsx`, argument PORT.
 */
import { Agent, get } from 'node:http';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';

export type ScrapeRequest = { readonly kind: 'scrape'; readonly gzip: boolean; readonly path?: string } | { readonly kind: 'compare' };
export type ScrapeReply = { readonly ms: number } | { readonly bytes: number; readonly gzipBytes: number } | { readonly error: string };

const port = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

/** GET /metrics; keeps the body only when asked (a timed scrape just counts bytes, like a streaming reader). */
function httpGet(gzip: boolean, keep: boolean, path = '/metrics'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const headers = gzip ? { 'accept-encoding': 'gzip' } : {};
    get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (keep) chunks.push(chunk);
      });
      res.on('end', () => {
        const length = res.headers['content-length'];
        if (res.statusCode !== 200 || (length !== undefined && bytes !== Number(length))) reject(new Error(`status ${res.statusCode}, ${bytes} bytes of ${length}`));
        else if (gzip !== (res.headers['content-encoding'] === 'gzip')) reject(new Error(`asked gzip=${gzip}, got ${res.headers['content-encoding'] ?? 'identity'}`));
        else resolve(Buffer.concat(chunks));
      });
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function answer(request: ScrapeRequest): Promise<ScrapeReply> {
  if (request.kind === 'compare') {
    const plain = await httpGet(false, true);
    const gzip = await httpGet(true, true);
    if (!gunzipSync(gzip).equals(plain)) throw new Error('the gzip body is not the plain text');
    return { bytes: plain.length, gzipBytes: gzip.length };
  }
  const start = performance.now();
  await httpGet(request.gzip, false, request.path);
  return { ms: performance.now() - start };
}

process.on('message', (request: ScrapeRequest) => {
  answer(request).then(
    (reply) => process.send?.(reply),
    (error: unknown) => process.send?.({ error: error instanceof Error ? error.message : String(error) }),
  );
});
process.on('disconnect', () => agent.destroy());
