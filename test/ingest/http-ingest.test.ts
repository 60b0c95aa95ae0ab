import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { BackpressureError } from '../../collectors/request-sink.js';
import { parseRequestRecord, requestRecordWireSchema, type RecordError } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import { T0 } from '../ledger/temp-ledger.js';
import { send } from './http-client.js';
import { startIngestServer } from './ingest-server.js';

const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

function wire(i: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    request_id: `r-${i}`, model: 'llama-8b', gpus: [0], start: T0 + i * 1000, end: T0 + i * 1000 + 800,
    prompt_tokens: 100, completion_tokens: 20, ...overrides,
  };
}

const JSON_TYPE = { 'content-type': 'application/json' };
const NDJSON_TYPE = { 'content-type': 'application/x-ndjson' };

test('a JSON object, a JSON array and NDJSON (blank lines, CRLF) are all accepted with 202 and counts', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const one = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify(wire(1)) });
  assert.deepEqual([one.status, one.json], [202, { accepted: 1, duplicates: 0, late: 0, rejected: 0 }]);
  const array = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify([wire(2), wire(3)]) });
  assert.deepEqual(array.json, { accepted: 2, duplicates: 0, late: 0, rejected: 0 });
  const nd = `${JSON.stringify(wire(4))}\r\n\n   \n${JSON.stringify(wire(5))}\n`;
  const ndjson = await send(s.port, { headers: NDJSON_TYPE, body: nd });
  assert.deepEqual([ndjson.status, ndjson.json?.accepted], [202, 2]);
  // Without a content type the body is sniffed: one JSON value, else NDJSON.
  const sniffed = await send(s.port, { body: `${JSON.stringify(wire(6))}\n${JSON.stringify(wire(7))}` });
  assert.deepEqual([sniffed.status, sniffed.json?.accepted], [202, 2]);
  const again = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify([wire(1), wire(8)]) });
  assert.deepEqual(again.json, { accepted: 1, duplicates: 1, late: 0, rejected: 0 });
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-1', 'r-2', 'r-3', 'r-4', 'r-5', 'r-6', 'r-7', 'r-8']);
});

test('a request_id reused for a different call is refused by index and named (400); an exact resend is a duplicate (202)', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  await send(s.port, { headers: JSON_TYPE, body: JSON.stringify(wire(1)) });
  const resend = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify(wire(1)) });
  assert.deepEqual([resend.status, resend.json], [202, { accepted: 0, duplicates: 1, late: 0, rejected: 0 }]);
  const reused = await send(s.port, { headers: NDJSON_TYPE, body: [wire(2), wire(1, { end: T0 + 1900 })].map((r) => JSON.stringify(r)).join('\n') });
  assert.equal(reused.status, 400);
  assert.deepEqual({ ...reused.json, errors: undefined }, { accepted: 1, duplicates: 0, late: 0, rejected: 1, errors: undefined });
  const errors = reused.json?.errors as { index: number; line: number; request_id: string; field: string; reason: string }[];
  assert.deepEqual(errors.map((e) => [e.index, e.line, e.request_id, e.field]), [[1, 2, 'r-1', 'request_id']]);
  assert.match(errors[0]?.reason ?? '', /^already used by the stored record with a different end: that record is kept/);
  assert.equal(s.ledger.readRequests(...ALL).find((r) => r.record.requestId === 'r-1')?.record.endMs, T0 + 1800);
  assert.equal(s.rejected.get('request_id'), 1);
});

test('a mixed batch: good records are committed, each bad one named by index, field and reason (400)', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const body = [
    wire(0),
    wire(1, { prompt_tokens: -5 }),
    wire(2, { prompt_token: 3 }),
    'not an object',
    wire(4, { gpus: [7] }), // valid on the wire, unknown GPU on this node
    wire(5),
  ];
  const reply = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify(body) });
  assert.equal(reply.status, 400);
  assert.deepEqual({ ...reply.json, errors: undefined }, { accepted: 2, duplicates: 0, late: 0, rejected: 4, errors: undefined });
  const errors = reply.json?.errors as { index: number; request_id: string | null; field: string; reason: string }[];
  assert.deepEqual(errors.map((e) => [e.index, e.request_id, e.field]), [
    [1, 'r-1', 'prompt_tokens'], [2, 'r-2', 'prompt_token'], [3, null, '(record)'], [4, 'r-4', 'gpus'],
  ]);
  assert.match(errors[0]?.reason ?? '', />= 0/);
  assert.equal(errors[1]?.reason, 'unknown field');
  assert.match(errors[3]?.reason ?? '', /no such GPU on this node: 7/);
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-0', 'r-5']);
  assert.deepEqual(Object.fromEntries(s.rejected), { prompt_tokens: 1, unknown_field: 1, record: 1, gpus: 1 });
});

test('NDJSON: a line that is not JSON is named by record index and line number; the others are kept', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const body = [JSON.stringify(wire(0)), '', '{"request_id": "r-1", ', JSON.stringify(wire(2)), '[1,2]'].join('\n');
  const reply = await send(s.port, { headers: NDJSON_TYPE, body });
  assert.equal(reply.status, 400);
  assert.equal(reply.json?.accepted, 2);
  const errors = reply.json?.errors as { index: number; line: number; field: string; reason: string }[];
  assert.deepEqual(errors.map((e) => [e.index, e.line, e.field]), [[1, 3, '(record)'], [3, 5, '(record)']]);
  assert.match(errors[0]?.reason ?? '', /^line 3 is not valid JSON/);
  assert.equal(errors[1]?.reason, 'must be a JSON object');
  assert.deepEqual(Object.fromEntries(s.rejected), { parse: 1, record: 1 });
});

test('application/json-seq (RFC 7464): records after record separators, across lines; a bad one named by the line it starts on', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const RS = '\u001e';
  const body = `${RS}${JSON.stringify(wire(0))}\n${RS}${JSON.stringify(wire(1), null, 2)}\n${RS}{"request_id": "r-2",\n${RS}${JSON.stringify(wire(3))}\n`;
  const reply = await send(s.port, { headers: { 'content-type': 'application/json-seq' }, body });
  assert.equal(reply.status, 400, reply.text);
  assert.equal(reply.json?.accepted, 3);
  const errors = reply.json?.errors as { index: number; line: number; field: string; reason: string }[];
  const prettyLines = JSON.stringify(wire(1), null, 2).split('\n').length;
  assert.deepEqual(errors.map((e) => [e.index, e.line, e.field]), [[2, 2 + prettyLines, '(record)']]);
  assert.match(errors[0]?.reason ?? '', new RegExp(`^the record starting on line ${2 + prettyLines} is not valid JSON`));
  // Without separators it is not a JSON text sequence, and the answer says what to send instead.
  const plain = await send(s.port, { headers: { 'content-type': 'application/json-seq' }, body: JSON.stringify(wire(9)) });
  assert.equal(plain.status, 400);
  assert.match(JSON.stringify(plain.json?.errors), /does not start with a record separator \(0x1E\)/);
});

test('a body that is not JSON at all, an empty body, and a JSON scalar are refused as a whole', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const broken = await send(s.port, { headers: JSON_TYPE, body: '{"request_id": ' });
  assert.equal(broken.status, 400);
  assert.deepEqual((broken.json?.errors as { field: string }[]).map((e) => e.field), ['(body)']);
  assert.match(JSON.stringify(broken.json), /not valid JSON/);
  const empty = await send(s.port, { headers: JSON_TYPE, body: '' });
  assert.match(JSON.stringify(empty.json), /empty body/);
  const scalar = await send(s.port, { headers: JSON_TYPE, body: '42' });
  assert.equal(scalar.status, 400);
  assert.match(JSON.stringify(scalar.json), /must be a JSON object, an array of objects, or NDJSON/);
});

test('over the body limit: 413 from Content-Length, mid-stream for chunked bodies, and after gzip expansion', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 2000 });
  t.after(s.stop);
  const big = JSON.stringify(Array.from({ length: 40 }, (_, i) => wire(i)));
  const declared = await send(s.port, { headers: JSON_TYPE, body: big });
  assert.equal(declared.status, 413);
  assert.equal(declared.headers.connection, 'close');

  // Chunked: no length up front, so the limit trips while reading and the rest is not read.
  const chunked = await new Promise<string>((resolve, reject) => {
    const socket = connect(s.port, '127.0.0.1', () => {
      socket.write('POST /v1/requests HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
      const piece = Buffer.from('x'.repeat(1000));
      for (let i = 0; i < 3; i += 1) socket.write(`${piece.length.toString(16)}\r\n${piece.toString()}\r\n`);
      // Deliberately never sends the terminating chunk: the server must answer anyway.
    });
    let text = '';
    socket.on('data', (d) => { text += d.toString(); });
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(chunked, /^HTTP\/1\.1 413 /);

  const bomb = gzipSync(Buffer.from(' '.repeat(100_000)));
  assert.ok(bomb.length < 2000);
  const inflated = await send(s.port, { headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: bomb });
  assert.equal(inflated.status, 413);
  const zipped = await send(s.port, { headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(wire(1))) });
  assert.deepEqual([zipped.status, zipped.json?.accepted], [202, 1]);
  const notZip = await send(s.port, { headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: 'plain' });
  assert.equal(notZip.status, 400);
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-1']);
});

test('unsupported media types, charsets and encodings get 415', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const body = JSON.stringify(wire(1));
  for (const headers of [
    { 'content-type': 'text/csv' },
    { 'content-type': 'application/x-www-form-urlencoded' },
    { 'content-type': 'application/json; charset=latin1' },
    { 'content-type': 'application/json', 'content-encoding': 'br' },
  ]) {
    const reply = await send(s.port, { headers, body });
    assert.equal(reply.status, 415, JSON.stringify(headers));
    assert.match(String(reply.json?.error), /not supported/);
  }
  assert.equal((await send(s.port, { headers: { 'content-type': 'application/json; charset=UTF-8' }, body })).status, 202);
});

test('bearer token: missing or wrong gets 401 with WWW-Authenticate; the right one is accepted', async (t) => {
  const s = await startIngestServer({ bearerToken: 's3cret-token' });
  t.after(s.stop);
  const body = JSON.stringify(wire(1));
  const none = await send(s.port, { headers: JSON_TYPE, body });
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="tokenwatt"');
  const wrong = await send(s.port, { headers: { ...JSON_TYPE, authorization: 'Bearer s3cret-tokeN' }, body });
  assert.equal(wrong.status, 401);
  assert.match(String(wrong.headers['www-authenticate']), /error="invalid_token"/);
  const prefix = await send(s.port, { headers: { ...JSON_TYPE, authorization: 'Bearer s3cret' }, body });
  assert.equal(prefix.status, 401);
  const basic = await send(s.port, { headers: { ...JSON_TYPE, authorization: 'Basic czNjcmV0LXRva2Vu' }, body });
  assert.equal(basic.status, 401);
  assert.deepEqual(s.ledger.readRequests(...ALL), []);
  const right = await send(s.port, { headers: { ...JSON_TYPE, authorization: 'bearer s3cret-token' }, body });
  assert.deepEqual([right.status, right.json?.accepted], [202, 1]);
});

test('a full write queue answers 429 with Retry-After; every 202 is stored, no 429 is', async (t) => {
  const s = await startIngestServer({ queueLimit: 1 });
  t.after(s.stop);
  const clients = 12;
  // Open every connection first, then write all the requests at once and hold the event loop
  // so that the server reads them in the same turn: they all reach the queue before its first
  // flush, deterministically.
  const sockets = await Promise.all(Array.from({ length: clients }, () => new Promise<Socket>((resolve, reject) => {
    const socket = connect(s.port, '127.0.0.1', () => resolve(socket));
    socket.on('error', reject);
  })));
  await new Promise((r) => setTimeout(r, 50)); // let the server accept them all
  const replies = await new Promise<string[]>((resolve) => {
    const texts: string[] = sockets.map(() => '');
    let open = clients;
    sockets.forEach((socket, i) => {
      socket.on('data', (d) => { texts[i] += d.toString(); });
      socket.on('close', () => { open -= 1; if (open === 0) resolve(texts); });
      const body = JSON.stringify([wire(i * 2), wire(i * 2 + 1)]);
      socket.write(`POST /v1/requests HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  });
  const statuses = replies.map((r) => Number(/^HTTP\/1\.1 (\d+)/.exec(r)?.[1]));
  assert.ok(statuses.every((st) => st === 202 || st === 429), statuses.join(','));
  assert.ok(statuses.includes(429), `expected some 429, got ${statuses.join(',')}`);
  assert.ok(statuses.includes(202));
  for (const r of replies.filter((x) => x.startsWith('HTTP/1.1 429'))) assert.match(r, /retry-after: 1\r\n/i);
  const stored = new Set(s.ledger.readRequests(...ALL).map((r) => r.record.requestId));
  statuses.forEach((st, i) => {
    assert.equal(stored.has(`r-${i * 2}`), st === 202, `client ${i}: ${st}`);
    assert.equal(stored.has(`r-${i * 2 + 1}`), st === 202);
  });
  assert.equal(s.rejected.size, 0, 'a 429 counts no record as rejected');
});

test('a sink that cannot store answers 503 and the handler reports nothing as accepted', async (t) => {
  const closed = await startIngestServer();
  t.after(closed.stop);
  closed.service.close();
  const reply = await send(closed.port, { headers: JSON_TYPE, body: JSON.stringify(wire(1)) });
  assert.equal(reply.status, 503);
  assert.match(String(reply.json?.error), /records not stored: ingest is shutting down/);

  const busy = await startIngestServer({ sink: () => ({ submit: () => Promise.reject(new BackpressureError(7)) }) });
  t.after(busy.stop);
  const limited = await send(busy.port, { headers: JSON_TYPE, body: JSON.stringify(wire(1)) });
  assert.deepEqual([limited.status, limited.headers['retry-after']], [429, '7']);
});

test('a commit that fails (503) counts no refusal, so the client\'s retry counts each refused record once', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  // A trigger makes the first commit fail, as a full disk would.
  const db = (s.ledger as unknown as { db: { exec(sql: string): void } }).db;
  db.exec(`CREATE TRIGGER fail_once BEFORE INSERT ON requests WHEN (SELECT count(*) FROM agent_state WHERE key = 'test:fail') > 0
    BEGIN SELECT RAISE(ABORT, 'disk full'); END; INSERT INTO agent_state (key, value) VALUES ('test:fail', '1')`);
  const body = [JSON.stringify(wire(0)), JSON.stringify(wire(1, { gpus: [7] })), '{oops'].join('\n');
  const failed = await send(s.port, { headers: NDJSON_TYPE, body });
  assert.equal(failed.status, 503, failed.text);
  assert.deepEqual(Object.fromEntries(s.rejected), {});
  db.exec(`DELETE FROM agent_state WHERE key = 'test:fail'`);
  const retried = await send(s.port, { headers: NDJSON_TYPE, body });
  assert.equal(retried.status, 400, retried.text);
  assert.equal(retried.json?.accepted, 1);
  assert.deepEqual(Object.fromEntries(s.rejected), { gpus: 1, parse: 1 });
});

test('past the listed errors, refused records are counted by reason without the schema; the answer is as the full check gives it', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  // Records through the whole wire schema: the costly check (about 30 us and 6 errors for `{}`).
  let schemaRuns = 0;
  const safeParse = requestRecordWireSchema.safeParse;
  requestRecordWireSchema.safeParse = ((input: unknown) => {
    schemaRuns += 1;
    return safeParse(input);
  }) as typeof safeParse;
  t.after(() => {
    requestRecordWireSchema.safeParse = safeParse;
  });
  const body: unknown[] = [
    wire(0), ...Array.from({ length: 3000 }, () => ({})), wire(3001, { prompt_tokens: -1 }), 'x', { request_id: 'r-3003' }, wire(3004), wire(3005, { gpus: [7] }),
  ];
  const reply = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify(body) });
  const ingestSchemaRuns = schemaRuns;
  assert.equal(reply.status, 400);
  assert.deepEqual({ ...reply.json, errors: undefined }, { accepted: 2, duplicates: 0, late: 0, rejected: 3004, errors: undefined, errors_truncated: true });
  // The listed errors are the first 1000 that checking every record in full gives, in body order.
  const full = body.flatMap((value, index) => {
    const parsed = parseRequestRecord(value, index);
    return parsed.ok ? [] : parsed.errors;
  });
  const asWire = (e: RecordError) => ({ index: e.index, request_id: e.requestId ?? null, field: e.field, reason: e.reason });
  assert.deepEqual(reply.json?.errors, full.slice(0, 1000).map(asWire));
  assert.deepEqual(Object.fromEntries(s.rejected), { request_id: 3000, prompt_tokens: 1, record: 1, model: 1, gpus: 1 });
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-0', 'r-3004']);
  // Only the records whose errors are listed went through the schema (1000 errors, 6 per `{}`).
  const listedRecords = new Set(full.slice(0, 1000).map((e) => e.index)).size;
  assert.ok(ingestSchemaRuns <= listedRecords, `${ingestSchemaRuns} runs of the schema for ${listedRecords} listed records`);
});

test('a body of more candidate records than one per 64 bytes of the body limit gets 413 and stores nothing', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 64_000 }); // at most 1000 records
  t.after(s.stop);
  const fragments = (n: number) => Array.from({ length: n }, () => '1');
  const json = await send(s.port, { headers: JSON_TYPE, body: `[${JSON.stringify(wire(0))},${fragments(1000).join(',')}]` });
  assert.equal(json.status, 413);
  assert.match(String(json.json?.error), /^body holds more than 1000 records .*: split it into smaller batches$/);
  const ndjson = await send(s.port, { headers: NDJSON_TYPE, body: [JSON.stringify(wire(1)), ...fragments(1000)].join('\n') });
  assert.equal(ndjson.status, 413);
  const seq = await send(s.port, { headers: { 'content-type': 'application/json-seq' }, body: [JSON.stringify(wire(2)), ...fragments(1000)].map((r) => `\u001e${r}\n`).join('') });
  assert.equal(seq.status, 413);
  assert.equal(s.ledger.readRequests(...ALL).length, 0);
  assert.deepEqual(Object.fromEntries(s.rejected), {});
  // At the limit, the body is read record by record.
  const atLimit = await send(s.port, { headers: NDJSON_TYPE, body: [JSON.stringify(wire(3)), ...fragments(999)].join('\n') });
  assert.deepEqual({ status: atLimit.status, accepted: atLimit.json?.accepted, rejected: atLimit.json?.rejected }, { status: 400, accepted: 1, rejected: 999 });
});

test('late records are accepted and counted as late', async (t) => {
  const s = await startIngestServer({ settledUntil: epochMs(T0 + 2500) });
  t.after(s.stop);
  // r-1 lies wholly before the settled edge, r-2 straddles it (late for its settled part), r-3 is on time.
  const reply = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify([wire(1), wire(2), wire(3)]) });
  assert.deepEqual(reply.json, { accepted: 3, duplicates: 0, late: 2, rejected: 0 });
});

test('property: no body, however malformed, crashes the server or yields a 5xx', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 4000 });
  t.after(s.stop);
  const bodies = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.json({ maxDepth: 3 }),
    fc.array(fc.oneof(fc.json({ maxDepth: 2 }), fc.constant(JSON.stringify(wire(1)))), { maxLength: 5 }).map((lines) => lines.join('\n')),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  const types = fc.constantFrom(undefined, 'application/json', 'application/x-ndjson', 'text/plain');
  await fc.assert(
    fc.asyncProperty(bodies, types, async (body, type) => {
      const reply = await send(s.port, { headers: type === undefined ? {} : { 'content-type': type }, body });
      assert.ok([202, 400, 413].includes(reply.status), `${reply.status} for ${JSON.stringify(body).slice(0, 80)}`);
      assert.ok(reply.json !== undefined);
    }),
    { numRuns: 60 },
  );
});

test('a body that is not valid gzip is refused in the same shape as any other bad body', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const reply = await send(s.port, { headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: Buffer.from('this is not gzip') });
  assert.equal(reply.status, 400);
  assert.equal(reply.json?.accepted, 0);
  assert.equal(reply.json?.rejected, 1);
  const errors = reply.json?.errors as { index: number; field: string; reason: string }[];
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.field, '(body)');
  assert.match(errors[0]?.reason ?? '', /not valid gzip/);
});

type WireErrors = { index: number; request_id: string | null; field: string; reason: string }[];

test('a record of 100,000 unknown keys is refused naming the first five and counting the rest: the answer stays small', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 8 * 1024 * 1024 });
  t.after(s.stop);
  const unknown = JSON.stringify(wire(1)).slice(0, -1) + Array.from({ length: 100_000 }, (_, i) => `,"k${i}":1`).join('') + '}';
  const longKeys = wire(2, { ['x'.repeat(100_000)]: 1, labels: { ['y'.repeat(100_000)]: 'v' } });
  const body = `${JSON.stringify(wire(0))}\n${unknown}\n${JSON.stringify(longKeys)}`;
  const reply = await send(s.port, { headers: NDJSON_TYPE, body });
  assert.equal(reply.status, 400);
  assert.ok(reply.text.length < 2048, `${reply.text.length} bytes of answer`);
  assert.deepEqual({ ...reply.json, errors: undefined }, { accepted: 1, duplicates: 0, late: 0, rejected: 2, errors: undefined });
  const errors = reply.json?.errors as WireErrors;
  assert.deepEqual(errors.map((e) => [e.index, e.request_id, e.field, e.reason]), [
    [1, 'r-1', 'k0,k1,k2,k3,k4', 'unknown field (and 99995 more unknown fields, not named)'],
    [2, 'r-2', `labels.${'y'.repeat(61)}...`, 'a label name must match [a-zA-Z_][a-zA-Z0-9_]* and be at most 64 characters'],
    [2, 'r-2', `${'x'.repeat(61)}...`, 'unknown field'],
  ]);
  assert.deepEqual(Object.fromEntries(s.rejected), { unknown_field: 1, labels: 1 });
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-0']);
});

test('a record with every field wrong lists its first 7 errors and counts the rest; each error stays small', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const id = 'r'.repeat(256);
  const badGpu = { ['g'.repeat(1000)]: 'h'.repeat(1000) };
  const labels = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`${'-'.repeat(1000)}${i}`, 'v'.repeat(1000)]));
  const record = {
    request_id: id, task_id: 5, attempt: 'x', model: 5, tier: 5, gpus: Array.from({ length: 64 }, () => badGpu), start: 's'.repeat(1000),
    first_token: 'f', end: 'e', prompt_tokens: 'p', cached_tokens: 'c', completion_tokens: 'c', reasoning_tokens: 'r', batch_size: 'b',
    status: 's'.repeat(1000), labels, tokens_estimated: 'g', granularity: 'h', source: 'i', ['z'.repeat(1000)]: 1,
  };
  const full = parseRequestRecord(record, 0);
  assert.ok(!full.ok && full.errors.length > 100, 'the record must have many errors');
  const reply = await send(s.port, { headers: JSON_TYPE, body: JSON.stringify([record, wire(1)]) });
  assert.equal(reply.status, 400);
  assert.ok(reply.text.length < 4096, `${reply.text.length} bytes of answer for one record`);
  const errors = reply.json?.errors as WireErrors;
  assert.deepEqual(errors.slice(0, 7).map((e) => e.field), ['task_id', 'attempt', 'model', 'tier', 'gpus.0', 'gpus.1', 'gpus.2']);
  assert.deepEqual(errors[7], { index: 0, request_id: id, field: '(record)', reason: `${full.ok ? 0 : full.errors.length - 7} more errors in this record, not listed` });
  assert.equal(errors.length, 8);
  assert.deepEqual({ ...reply.json, errors: undefined }, { accepted: 1, duplicates: 0, late: 0, rejected: 1, errors: undefined });
});

test('a whole batch of records with long errors gets an answer of about 256 KiB at most; every refusal is still counted', async (t) => {
  const s = await startIngestServer({ bodyLimitBytes: 32 * 1024 * 1024 });
  t.after(s.stop);
  const keys = Array.from({ length: 5 }, (_, k) => `${String(k).repeat(2000)}`);
  const bad = (i: number) => ({ ...wire(i, { request_id: `${i}-`.padEnd(256, 'r') }), ...Object.fromEntries(keys.map((k) => [k, 1])) });
  const body = Array.from({ length: 2000 }, (_, i) => JSON.stringify(bad(i))).join('\n');
  const reply = await send(s.port, { headers: NDJSON_TYPE, body });
  assert.equal(reply.status, 400);
  assert.ok(reply.text.length < 260 * 1024, `${reply.text.length} bytes of answer`);
  assert.deepEqual({ ...reply.json, errors: undefined }, { accepted: 0, duplicates: 0, late: 0, rejected: 2000, errors: undefined, errors_truncated: true });
  const errors = reply.json?.errors as WireErrors;
  // The first records' errors, in body order, each naming its record.
  assert.ok(errors.length > 100, `only ${errors.length} errors listed`);
  errors.forEach((e, i) => assert.deepEqual([e.index, e.request_id?.slice(0, String(i).length + 1), e.reason], [i, `${i}-`, 'unknown field']));
  assert.equal(s.rejected.get('unknown_field'), 2000);
});

test('a record that gives a key twice is refused naming the key, in every body form; the others are stored', async (t) => {
  const s = await startIngestServer();
  t.after(s.stop);
  const twice = (i: number) => JSON.stringify(wire(i)).replace(/}$/, ',"completion_tokens":500}'); // 20, then 500
  const labelTwice = (i: number) => JSON.stringify(wire(i, { labels: { team: 'a' } })).replace('"team":"a"', '"team":"a", "team" : "b"');
  const forms: [string, Record<string, string>, string, number[]][] = [
    ['ndjson', NDJSON_TYPE, [JSON.stringify(wire(0)), twice(1), labelTwice(2)].join('\n'), [1, 2]],
    ['json array', JSON_TYPE, `[${JSON.stringify(wire(10))}, ${twice(11)},${labelTwice(12)}]`, [1, 2]],
    ['json object', JSON_TYPE, twice(21), [0]],
    ['json-seq', { 'content-type': 'application/json-seq' }, `\u001e${twice(31)}\n\u001e${JSON.stringify(wire(32))}\n`, [0]],
  ];
  for (const [form, headers, body, refused] of forms) {
    const reply = await send(s.port, { headers, body });
    assert.equal(reply.status, 400, form);
    const errors = reply.json?.errors as WireErrors;
    assert.deepEqual(errors.map((e) => e.index), refused, form);
    for (const e of errors) {
      assert.equal(e.field, e.request_id?.endsWith('1') ? 'completion_tokens' : 'labels.team', `${form}: ${JSON.stringify(e)}`);
      assert.match(e.reason, /^given more than once in one object/);
    }
  }
  assert.deepEqual(s.ledger.readRequests(...ALL).map((r) => r.record.requestId), ['r-0', 'r-10', 'r-32']);
  assert.deepEqual(Object.fromEntries(s.rejected), { duplicate_key: 6 });
  // The same records with RFC 3339 times and ':' in their strings, written once each, are stored.
  const clean = [wire(40, { start: '2026-11-01T10:00:40Z', end: '2026-11-01T10:00:41Z', labels: { team: 'a:b' } }), wire(41, { model: 'llama-8b', labels: { team: 'x' } })];
  const ok = await send(s.port, { headers: NDJSON_TYPE, body: clean.map((r) => JSON.stringify(r, null, 1).replace(/\n/g, '')).join('\n') });
  assert.deepEqual([ok.status, ok.json?.accepted], [202, 2], ok.text);
});
