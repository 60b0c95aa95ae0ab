import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export interface RawUpstreamRequest {
  /** The request line and headers, as sent. */
  readonly head: string;
  readonly body: Buffer;
  /** Requests seen on this connection before this one. */
  readonly index: number;
}

export interface RawUpstream {
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections that are still open. */
  readonly open: number;
  close(): Promise<void>;
}

/**
 * An upstream at the TCP level, for answers node's HTTP server cannot be made to give (a bad
 * status line, a 101, a reset in mid-stream, a keep-alive connection dropped under a request):
 * the handler gets each request (Content-Length bodies) and writes whatever bytes it likes.
 */
export async function startRawUpstream(handler: (request: RawUpstreamRequest, socket: Socket) => void): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let index = 0;
    socket.on('data', (data: Buffer) => {
      buffered = Buffer.concat([buffered, data]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        const body = buffered.subarray(end + 4, end + 4 + length);
        buffered = buffered.subarray(end + 4 + length);
        handler({ head, body, index: index++ }, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get connections() {
      return connections;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A complete HTTP/1.1 answer with a Content-Length body. */
export function httpAnswer(statusLine: string, headers: Record<string, string>, body: string | Buffer = ''): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = Object.entries({ ...headers, 'Content-Length': String(bytes.length) }).map(([k, v]) => `${k}: ${v}\r\n`);
  return Buffer.concat([Buffer.from(`${statusLine}\r\n${lines.join('')}\r\n`, 'latin1'), bytes]);
}

/** One chunk of a chunked body (an empty text is the last chunk). */
export function chunk(text: string): string {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
}
