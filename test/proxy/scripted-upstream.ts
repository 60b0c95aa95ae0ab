import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ScriptedCall {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  /** The body exactly as received. */
  readonly raw: string;
}

export interface ScriptedUpstream {
  readonly url: string;
  readonly calls: ScriptedCall[];
  close(): Promise<void>;
}

/** A node:http upstream whose every answer the test writes itself (the handler gets the request body as read). */
export async function startScriptedUpstream(answer: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<ScriptedUpstream> {
  const calls: ScriptedCall[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      calls.push({ path: req.url ?? '/', headers: req.headers, raw: body.toString('utf8') });
      answer(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
