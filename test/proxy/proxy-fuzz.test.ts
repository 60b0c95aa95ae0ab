import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { OpenAiProxy } from '../../collectors/proxy/openai-proxy.js';
import { proxyConfigSchema } from '../../collectors/proxy/proxy-config.js';
import { RecordingSink } from './recording-sink.js';
import { captureLog } from './capture-log.js';
import { rawRequest } from './raw-http.js';

/** An upstream that answers every call with the bytes the test chose, in the chunks it chose. */
async function scriptedUpstream() {
  let script: { contentType: string; chunks: Buffer[] } = { contentType: 'text/event-stream', chunks: [] };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': script.contentType });
      const chunks = [...script.chunks];
      const next = () => {
        const chunk = chunks.shift();
        if (chunk === undefined) return void res.end();
        res.write(chunk);
        setImmediate(next);
      };
      next();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    set: (s: typeof script) => (script = s),
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** The proxy in front of a scripted upstream, both closed when the test ends. */
async function proxyOverScriptedUpstream(t: { after(fn: () => Promise<void>): void }) {
  const upstream = await scriptedUpstream();
  const { log } = captureLog();
  const sink = new RecordingSink();
  const proxy = new OpenAiProxy({ config: proxyConfigSchema.parse({ port: 0, host: '127.0.0.1', upstream: upstream.url, replica: { gpus: [0] } }), log });
  await proxy.start(sink);
  t.after(async () => {
    await proxy.shutdown();
    await upstream.close();
  });
  return { upstream, sink, proxy };
}

const sseLike = fc.array(
  fc.oneof(
    fc.constant('data: [DONE]\n\n'),
    fc.constant('data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'),
    fc.json().map((j) => `data: ${j}\n\n`),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('\r\n', '\n\n', '\r', ': ping\n\n', 'event: error\ndata: {"message":"x"}\n\n'),
  ),
  { maxLength: 12 },
);

test('property: whatever bytes an upstream streams, the proxy neither crashes nor loses a call; without stripping it relays them exactly', async (t) => {
  const { upstream, sink, proxy } = await proxyOverScriptedUpstream(t);
  let calls = 0;
  await fc.assert(
    fc.asyncProperty(sseLike, fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 20 }), fc.boolean(), fc.boolean(), async (parts, cuts, asksUsage, sse) => {
      const bytes = Buffer.from(parts.join(''), 'latin1');
      const chunks: Buffer[] = [];
      let pos = 0;
      for (const cut of cuts) {
        if (pos >= bytes.length) break;
        chunks.push(bytes.subarray(pos, pos + cut));
        pos += cut;
      }
      if (pos < bytes.length) chunks.push(bytes.subarray(pos));
      upstream.set({ contentType: sse ? 'text/event-stream' : 'application/json', chunks });
      const res = await rawRequest(`http://127.0.0.1:${proxy.port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [], stream: true, ...(asksUsage ? { stream_options: { include_usage: true } } : {}) }),
      });
      calls++;
      assert.equal(res.status, 200);
      if (asksUsage || !sse) assert.ok(res.body.equals(bytes), 'relayed byte for byte');
      await sink.waitFor(calls);
      const record = sink.records[calls - 1];
      assert.ok(record && ['ok', 'error'].includes(record.status));
    }),
    { numRuns: 40 },
  );
  assert.equal(proxy.stats().delivery?.refused, 0);
});

test('a CRLF stream split anywhere: the client that did not ask for usage gets every byte but the usage event, line ends whole', async (t) => {
  const { upstream, sink, proxy } = await proxyOverScriptedUpstream(t);
  // sse-starlette (llama-cpp-python's server, among others) ends lines with CRLF.
  const content = 'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hé"}}]}\r\n\r\n';
  const usage = 'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}\r\n\r\n';
  const done = 'data: [DONE]\r\n\r\n';
  const bytes = Buffer.from(content + usage + done);
  const expected = Buffer.from(content + done);
  // Every cut on a line end of the content and usage events: where a CRLF's CR and LF part.
  const cuts = [...bytes.entries()].filter(([, b]) => b === 0x0d || b === 0x0a).map(([i]) => i + 1).filter((i) => i < bytes.length);
  let calls = 0;
  for (const cut of cuts) {
    upstream.set({ contentType: 'text/event-stream', chunks: [bytes.subarray(0, cut), bytes.subarray(cut)] });
    const res = await rawRequest(`http://127.0.0.1:${proxy.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [], stream: true }),
    });
    calls++;
    assert.equal(res.status, 200);
    assert.equal(res.body.toString('latin1'), expected.toString('latin1'), `cut at byte ${cut}`);
    await sink.waitFor(calls);
    const record = sink.records[calls - 1];
    assert.deepEqual([record?.status, record?.promptTokens, record?.completionTokens], ['ok', 5, 1], `cut at byte ${cut}`);
  }
  assert.equal(calls, 11, "every line end but the last");
});
