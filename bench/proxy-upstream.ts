/**
 * The fast fake OpenAI-compatible upstream of bench/proxy.ts, run as its own process (so that it
 * can be pinned to a core). It answers /v1/chat/completions at once: a small JSON completion, or
 * a stream of STREAM_EVENTS content events (plus a usage chunk when asked for), each event in its
 * own write as vLLM and SGLang send them. Talks to its parent over IPC: sends {port} when
 * listening; answers 'cpu' with its CPU time so far (µs) and the number of calls served; exits on 'stop'.
 *
 * Usage (from bench/proxy.ts): node --import tsx bench/proxy-upstream.ts STREAM_EVENTS
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const N = Number(process.argv[2] ?? 16);
let n = 0;

const server = http.createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString()) as { stream?: boolean; stream_options?: { include_usage?: boolean } };
    const id = `chatcmpl-${++n}`;
    if (!body.stream) {
      const out = JSON.stringify({
        id,
        object: 'chat.completion',
        created: 1,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 },
      });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) }).end(out);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    let i = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (i < N) {
        res.write(`data: {"id":"${id}","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"t${i++} "},"finish_reason":null}]}\n\n`);
        setImmediate(next);
        return;
      }
      if (body.stream_options?.include_usage) {
        res.write(`data: {"id":"${id}","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":${N},"total_tokens":${12 + N}}}\n\n`);
      }
      res.end('data: [DONE]\n\n');
    };
    next();
  });
});

server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('message', (msg) => {
  if (msg === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpuUs: u.user + u.system, calls: n });
    return;
  }
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
