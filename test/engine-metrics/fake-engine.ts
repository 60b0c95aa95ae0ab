import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeEngine {
  readonly url: string;
  /** The /metrics text served from now on. */
  set(text: string): void;
  /** The status served from now on (200 serves the text). */
  status(code: number): void;
  readonly server: Server;
  close(): Promise<void>;
}

/** A stand-in engine on 127.0.0.1 (real HTTP): serves whatever /metrics text the test sets, or a chosen status. */
export async function fakeEngine(): Promise<FakeEngine> {
  let text = '';
  let code = 200;
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(code, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(code === 200 ? text : 'boom');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    set: (t) => (text = t),
    status: (c) => (code = c),
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets of the scraper's fetch would hold close() open
      }),
  };
}
