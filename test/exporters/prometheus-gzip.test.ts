import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, get, type IncomingHttpHeaders } from 'node:http';
import { crc32, gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { HttpServer } from '../../agent/http-server.js';
import {
  acceptsGzip, crc32Combine, ExpositionSnapshot, finishGzipMember, GZIP_HEADER, serveMetrics, TokenwattMetrics, type FinalizedRequestMetrics, type MetricsBody,
} from '../../exporters/prometheus/index.js';
import { deflatePiece } from '../../exporters/prometheus/gzip-member.js';
import { parseExposition, sumOf } from './prometheus-exposition.js';

const SILENT = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

const request = (over: Partial<FinalizedRequestMetrics> = {}): FinalizedRequestMetrics => ({
  model: 'llama-8b', tier: 'small', status: 'ok', cacheBucket: 'miss', batchBucket: '5-16',
  labels: { team: 'search', feature: 'chat' },
  staticJ: 2, dynamicJ: 6, joules: 8, promptTokens: 100, cachedTokens: 20, completionTokens: 50, reasoningTokens: 10,
  ...over,
});

/** A few hundred settled series, so the text spans many segments. */
function busyMetrics(segmentLines = 16): TokenwattMetrics {
  const m = new TokenwattMetrics({ segmentLines, now: () => 1_700_000_130_000 }) // a fixed clock: the settle lag is read at each scrape;
  for (let i = 0; i < 60; i += 1) m.requestFinalized(request({ labels: { team: `team-${i % 12}`, feature: `f-${i % 5}` }, model: `m-${i % 3}` }));
  m.setGpuPower(0, 'GPU-a', 250);
  m.sampleTaken(0, 10);
  m.settled(1_700_000_000_000, 0.5);
  return m;
}

const text = (body: MetricsBody): string => {
  const bytes = Buffer.concat(body.chunks);
  assert.equal(bytes.length, body.byteLength, 'byteLength is the body length');
  return (body.encoding === 'gzip' ? gunzipSync(bytes) : bytes).toString('utf8');
};

test('crc32Combine(crc(A), crc(B), |B|) is crc(A + B)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
      assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])));
    }),
    { numRuns: 300 },
  );
  const big = Buffer.alloc(3_000_000, 'x');
  assert.equal(crc32Combine(crc32('head'), crc32(big), big.length), crc32(Buffer.concat([Buffer.from('head'), big])));
});

test('pieces deflated apart and a final piece make one gzip member every reader accepts', async () => {
  const pieces = ['# HELP a x\n', '', 'a{b="é"} 1\n'.repeat(5000), 'tail\n'].map((s) => Buffer.from(s));
  let crc = 0;
  let length = 0;
  for (const p of pieces) {
    crc = crc32Combine(crc, crc32(p), p.length);
    length += p.length;
  }
  const parts = [GZIP_HEADER, ...(await Promise.all(pieces.map(deflatePiece)))];
  for (const [last, prefix] of [[Buffer.from('live 1\n'), Buffer.concat(parts)], [Buffer.alloc(0), Buffer.concat(parts)], [Buffer.from('live 1\n'), parts]] as const) {
    const chunks = finishGzipMember(prefix, crc, length, last);
    if (!Buffer.isBuffer(prefix)) assert.ok(parts.every((p, i) => chunks[i] === p), 'pieces given apart are passed through, not copied');
    const member = Buffer.concat(chunks);
    assert.deepEqual(gunzipSync(member), Buffer.concat([...pieces, last]));
    assert.equal(member.readUInt32LE(member.length - 4), length + last.length, 'ISIZE');
  }
});

test('Accept-Encoding: gzip only when allowed, with q-values and wildcards', () => {
  const yes = ['gzip', 'gzip, deflate, br', 'deflate, GZIP;q=0.5', 'x-gzip', '*', 'br, *;q=0.1', 'gzip;q=1.0', ' gzip ; q = 0.3 '];
  const no = [undefined, '', 'identity', 'br, deflate', 'gzip;q=0', 'gzip;q=0.000', '*;q=0', 'gzip;q=0, *', 'gzip;q=abc'];
  for (const h of yes) assert.equal(acceptsGzip(h), true, String(h));
  for (const h of no) assert.equal(acceptsGzip(h), false, String(h));
  assert.equal(acceptsGzip(['br', 'gzip']), true, 'repeated headers');
});

test('a gzip scrape decompresses to exactly the plain text, which is exactly metrics()', async () => {
  const m = busyMetrics();
  const expected = await m.metrics();
  const gzip = await m.scrape({ gzip: true });
  const plain = await m.scrape();
  assert.equal(gzip.encoding, 'gzip');
  assert.equal(plain.encoding, 'identity');
  assert.equal(text(gzip), expected);
  assert.equal(text(plain), expected);
  assert.ok(gzip.byteLength * 5 < plain.byteLength, `compressed ${gzip.byteLength} of ${plain.byteLength} bytes`);
  parseExposition(expected);
});

test('a scrape while the compression is pending still gets a whole, up-to-date body', async () => {
  const m = busyMetrics();
  await m.rendered();
  for (let i = 1; i <= 20; i += 1) {
    m.requestFinalized(request({ labels: { team: `team-${i % 12}`, feature: 'f-1' } }));
    m.settled(1_700_000_000_000 + i * 1000, 0);
    // Right after the change: the render and its compression have not even started.
    const [gzip, plain] = await Promise.all([m.scrape({ gzip: true }), m.scrape()]);
    assert.equal(text(gzip), text(plain), `settlement ${i}: gzip and plain show the same state`);
    assert.equal(sumOf(parseExposition(text(gzip)), 'tokenwatt_requests_total'), 60 + i, `settlement ${i}: the change is in it`);
  }
});

test('concurrent scrapes and settlements: every body is a whole settlement and gzip matches plain', async () => {
  const m = busyMetrics(8);
  const bodies: Promise<[MetricsBody, MetricsBody]>[] = [];
  for (let i = 1; i <= 30; i += 1) {
    m.requestsFinalized([request({ labels: { team: `t${i}`, feature: 'x' } }), request({ labels: { team: `t${i}`, feature: 'y' } })]);
    if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
    bodies.push(Promise.all([m.scrape({ gzip: true }), m.scrape()]));
  }
  for (const [gzip, plain] of await Promise.all(bodies)) {
    const g = text(gzip);
    assert.equal(g, text(plain));
    const requests = sumOf(parseExposition(g), 'tokenwatt_requests_total');
    assert.equal((requests - 60) % 2, 0, 'both requests of a settlement, never one');
  }
});

test('if compression fails, the scrape is served plain', async (t) => {
  const m = busyMetrics();
  t.mock.method(ExpositionSnapshot.prototype, 'gzipPrefix', () => Promise.reject(new Error('zlib out of memory')));
  const body = await m.scrape({ gzip: true });
  assert.equal(body.encoding, 'identity');
  assert.equal(text(body), await m.metrics());
});

function httpGet(port: number, agent: Agent, headers: Record<string, string>): Promise<{ headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

test('GET /metrics over HTTP: gzip as Prometheus asks for it, plain otherwise, with Content-Length on one kept-alive connection', async (t) => {
  const m = busyMetrics();
  const server = new HttpServer({ host: '127.0.0.1', port: 0, log: SILENT });
  server.route('GET', '/metrics', (req, res) => serveMetrics(m, req, res));
  const { port } = await server.listen();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(async () => {
    agent.destroy();
    await server.close();
  });
  const sockets = new Set<unknown>();
  agent.on('free', (socket) => sockets.add(socket));

  const plain = await httpGet(port, agent, {});
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(Number(plain.headers['content-length']), plain.body.length);
  assert.equal(plain.headers['content-type'], m.contentType);
  assert.equal(plain.headers.vary, 'Accept-Encoding');

  const gzip = await httpGet(port, agent, { 'accept-encoding': 'gzip' });
  assert.equal(gzip.headers['content-encoding'], 'gzip');
  assert.equal(Number(gzip.headers['content-length']), gzip.body.length);
  assert.equal(gunzipSync(gzip.body).toString(), plain.body.toString(), 'same text, compressed');

  const refused = await httpGet(port, agent, { 'accept-encoding': 'gzip;q=0, identity' });
  assert.equal(refused.headers['content-encoding'], undefined);
  assert.equal(refused.body.toString(), plain.body.toString());
  assert.equal(sockets.size, 1, 'one connection for all three');

  // A change between scrapes shows in the next gzip scrape (its compression pending when it lands).
  m.requestFinalized(request({ labels: { team: 'new-team', feature: 'f' } }));
  const after = await httpGet(port, agent, { 'accept-encoding': 'gzip' });
  assert.equal(sumOf(parseExposition(gunzipSync(after.body).toString()), 'tokenwatt_requests_total', { team: 'new-team' }), 1);

  // fetch() asks for gzip itself and decompresses it.
  const fetched = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(fetched.headers.get('content-encoding'), 'gzip');
  assert.equal(await fetched.text(), (await httpGet(port, agent, {})).body.toString());
});
