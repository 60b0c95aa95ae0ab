import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { MAX_KEPT_REQUEST_FILE_ERRORS, parseRequestFile, readRequestFile } from '../../collectors/request-file.js';
import { MAX_SHARED } from '../../collectors/shared-values.js';
import { MAX_LINE_CHARS } from '../../collectors/trace-file-lines.js';

const line = (over: Record<string, unknown> = {}): string =>
  JSON.stringify({ request_id: 'r1', model: 'm', start: 1793534400000, end: 1793534401000, prompt_tokens: 10, completion_tokens: 5, ...over });

test('good lines become records (source "file" unless named), blank lines are skipped, CRLF is fine', () => {
  const text = [line(), '', line({ request_id: 'r2', source: 'proxy', gpus: [0, 'GPU-x'] }), '   ', line({ request_id: 'r3', first_token: '2026-11-01T12:00:00.5Z', start: '2026-11-01T12:00:00Z', end: '2026-11-01T12:00:01Z' })].join('\r\n');
  const parsed = parseRequestFile(text);
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.records.map((r) => [r.requestId, r.source]), [['r1', 'file'], ['r2', 'proxy'], ['r3', 'file']]);
  assert.deepEqual(parsed.records[1]?.gpus, ['0', 'GPU-x']);
  assert.equal((parsed.records[2]?.firstTokenMs ?? 0) - (parsed.records[2]?.startMs ?? 0), 500);
});

test('each bad line is reported by its 1-based line number, field and reason; good lines around it are kept', () => {
  const text = [
    line({ request_id: 'ok1' }), // 1
    '{"request_id": "broken", ', // 2: not JSON
    '', // 3
    line({ request_id: 'bad', cached_tokens: 11, colour: 'red' }), // 4: two problems
    '[1, 2]', // 5: not an object
    line({ request_id: 'ok2', end: 1793534399000 }), // 6: end before start
    line({ request_id: 'ok3' }), // 7
  ].join('\n');
  const parsed = parseRequestFile(text);
  assert.deepEqual(parsed.records.map((r) => r.requestId), ['ok1', 'ok3']);
  const byLine = (n: number) => parsed.errors.filter((e) => e.line === n);
  assert.equal(byLine(2)[0]?.field, '(line)');
  assert.match(byLine(2)[0]?.reason ?? '', /^not valid JSON/);
  assert.deepEqual(byLine(4).map((e) => [e.field, e.reason, e.requestId]).sort(), [['cached_tokens', 'cached_tokens exceeds prompt_tokens', 'bad'], ['colour', 'unknown field', 'bad']]);
  assert.deepEqual(byLine(5).map((e) => [e.field, e.reason]), [['(record)', 'must be a JSON object: a request file has one record per line (NDJSON), not a JSON array (jq -c ".[]" turns an array into lines)']]);
  assert.deepEqual(byLine(6).map((e) => [e.field, e.reason]), [['end', 'end precedes start']]);
  assert.deepEqual([...new Set(parsed.errors.map((e) => e.line))], [2, 4, 5, 6]);
  assert.equal(parsed.errorCount, parsed.errors.length);
  assert.deepEqual(parsed.lines, [1, 7], 'the line of each kept record');
});

test('a line restating an earlier record is acknowledged as a duplicate, not counted twice', () => {
  const parsed = parseRequestFile([line(), line({ request_id: 'r2' }), line({ source: 'proxy' })].join('\n'));
  assert.deepEqual(parsed.records.map((r) => [r.requestId, r.source]), [['r1', 'file'], ['r2', 'file']]);
  assert.deepEqual(parsed.duplicates, [{ line: 3, requestId: 'r1', firstLine: 1 }]);
  assert.equal(parsed.duplicateCount, 1);
  assert.deepEqual(parsed.errors, []);
});

test('a line reusing an earlier request_id for a different record is an error naming both lines; the first record is kept', () => {
  const parsed = parseRequestFile([line(), line({ request_id: 'r2' }), line({ end: 1793534402000, labels: { team: 'a' } }), line()].join('\n'));
  assert.deepEqual(parsed.records.map((r) => [r.requestId, r.endMs]), [['r1', 1793534401000], ['r2', 1793534401000]]);
  assert.deepEqual(parsed.errors, [
    { line: 3, requestId: 'r1', field: 'request_id', reason: 'already used by line 1 with a different end, labels: that record is kept and this one is not stored (give each request its own id)' },
  ]);
  assert.deepEqual(parsed.duplicates, [{ line: 4, requestId: 'r1', firstLine: 1 }]);
});

test('a line giving a key twice is an error naming the key, not read last-wins; a colon in a time or label is no repeat', () => {
  const repeated = '{"request_id": "r2", "model": "m", "start": 1793534400000, "end": 1793534401000, "prompt_tokens": 10, "completion_tokens": 5, "completion_tokens": 500}';
  const inLabels = '{"request_id": "r3", "model": "m", "start": 1793534400000, "end": 1793534401000, "prompt_tokens": 10, "completion_tokens": 5, "labels": {"team": "a", "team": "b"}}';
  const colons = line({ request_id: 'r4', start: '2026-11-01T12:00:00Z', end: '2026-11-01T12:00:01Z', labels: { team: 'a:b', feature: 'x' } });
  const parsed = parseRequestFile([line(), repeated, inLabels, colons].join('\n'));
  assert.deepEqual(parsed.records.map((r) => [r.requestId, r.completionTokens]), [['r1', 5], ['r4', 5]]);
  assert.deepEqual(parsed.errors, [
    { line: 2, requestId: 'r2', field: 'completion_tokens', reason: 'given more than once in one object: JSON readers differ on which value counts' },
    { line: 3, requestId: 'r3', field: 'labels.team', reason: 'given more than once in one object: JSON readers differ on which value counts' },
  ]);
});

test('an empty file has nothing and no errors', () => {
  assert.deepEqual(parseRequestFile(''), { records: [], lines: [], errors: [], errorCount: 0, duplicates: [], duplicateCount: 0 });
});

test('errors and duplicate lines: the first 100 are kept with their lines, every one is counted', () => {
  const lines = [line()];
  for (let k = 0; k < 250; k++) lines.push('not json', line({ request_id: `c${k}`, cached_tokens: 11, colour: 'red' }), line());
  const parsed = parseRequestFile(lines.join('\n'));
  assert.equal(parsed.errorCount, 750, 'one error per bad JSON line, two per bad record');
  assert.equal(parsed.errors.length, MAX_KEPT_REQUEST_FILE_ERRORS);
  assert.deepEqual(parsed.errors.slice(0, 3).map((e) => [e.line, e.field]), [[2, '(line)'], [3, 'colour'], [3, 'cached_tokens']]);
  assert.ok(parsed.errors.every((e, i) => i === 0 || e.line >= (parsed.errors[i - 1] as { line: number }).line), 'in line order');
  assert.equal(parsed.duplicateCount, 250);
  assert.equal(parsed.duplicates.length, MAX_KEPT_REQUEST_FILE_ERRORS);
  assert.deepEqual(parsed.duplicates[99], { line: 4 + 99 * 3, requestId: 'r1', firstLine: 1 });
  assert.deepEqual(parsed.records.map((r) => r.requestId), ['r1']);
});

test('a JSON array is refused, saying the file must have one record per line: on one line or pretty-printed', () => {
  const oneLine = parseRequestFile(`[${line()},${line({ request_id: 'r2' })}]\n`);
  assert.deepEqual(oneLine.records, []);
  assert.deepEqual(oneLine.errors.map((e) => [e.line, e.field, e.reason]), [[1, '(record)', 'must be a JSON object: a request file has one record per line (NDJSON), not a JSON array (jq -c ".[]" turns an array into lines)']]);
  const pretty = parseRequestFile(JSON.stringify([JSON.parse(line())], null, 2));
  assert.equal(pretty.errors[0]?.line, 1);
  assert.match(pretty.errors[0]?.reason ?? '', /^not valid JSON: .*; a request file has one record per line \(NDJSON\), not a JSON array/);
  assert.ok(pretty.errors.slice(1).every((e) => !e.reason.includes('JSON array')), 'said once, on the line opening the array');
});

test('a line over 1 MiB is an error naming its line and the limit, dropped as read; the lines around it are kept', () => {
  const text = [line(), `{"request_id":"huge","model":"${'m'.repeat(MAX_LINE_CHARS)}"}`, line({ request_id: 'r3' })].join('\n');
  const parsed = parseRequestFile(text);
  assert.deepEqual(parsed.records.map((r) => r.requestId), ['r1', 'r3']);
  assert.deepEqual(parsed.lines, [1, 3]);
  assert.deepEqual(parsed.errors, [{ line: 2, field: '(line)', reason: `longer than ${MAX_LINE_CHARS} characters: a request file has one JSON record per line (NDJSON)` }]);
});

test('readRequestFile streams the file: read in pieces far smaller than a line, it gives what parseRequestFile gives for the whole text', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-request-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines = [
    line({ labels: { team: 'équipe-☃' } }), // multi-byte characters, cut across reads at 7 bytes a read
    '',
    line({ request_id: 'r2', source: 'proxy', gpus: [0, 'GPU-x'] }),
    'not json',
    line({ end: 1793534402000, labels: { team: 'équipe-☃' } }), // conflicts with line 1
    line({ labels: { team: 'équipe-☃' } }), // restates line 1
    `{"request_id":"huge","model":"${'m'.repeat(MAX_LINE_CHARS + 10)}"}`,
    line({ request_id: 'r3', model: '模型' }),
  ];
  const text = `\ufeff${lines.join('\r\n')}\r\n`;
  const path = join(dir, 'requests.ndjson');
  writeFileSync(path, text);
  const shortOnly = join(dir, 'short.ndjson');
  writeFileSync(shortOnly, text.replace(/\r\n\{"request_id":"huge"[^\r]*/, ''));
  const whole = parseRequestFile(text);
  assert.deepEqual(whole.records.map((r) => r.requestId), ['r1', 'r2', 'r3']);
  assert.deepEqual(whole.lines, [1, 3, 8]);
  assert.deepEqual(whole.errors.map((e) => [e.line, e.field]), [[4, '(line)'], [5, 'request_id'], [7, '(line)']]);
  assert.match(whole.errors[1]?.reason ?? '', /^already used by line 1 with a different end:/);
  assert.deepEqual(whole.duplicates, [{ line: 6, requestId: 'r1', firstLine: 1 }]);
  // 7 bytes a read cuts every line, "\r\n" and multi-byte character (the file without its 1 MiB line: LineSplitter
  // rescans a carried-over line on each piece); 64 KiB a read carries the 1 MiB line over 17 reads before it is dropped.
  for (const chunkBytes of [7, 1 << 16, undefined]) {
    const file = chunkBytes === 7 ? shortOnly : path;
    const expected = chunkBytes === 7 ? parseRequestFile(readFileSync(shortOnly, 'utf8')) : whole;
    assert.equal(expected.records.length, 3);
    assert.deepEqual(await readRequestFile(file, chunkBytes === undefined ? {} : { chunkBytes }), expected, `read ${chunkBytes ?? 'default'} bytes at a time`);
  }
  await assert.rejects(readRequestFile(join(dir, 'nope.ndjson')), /ENOENT/);
});

test('records share the values they repeat (model, label set, GPU list): one object for all, each record still as read', () => {
  const labels = { team: 'search', feature: 'chat' };
  const parsed = parseRequestFile(
    Array.from({ length: 5 }, (_, i) => line({ request_id: `r${i}`, model: 'llama', tier: 'small', gpus: [0, 1], labels: i === 4 ? { team: 'ads' } : labels })).join('\n'),
  );
  const [a, b, , , other] = parsed.records;
  assert.ok(a && b && other);
  assert.equal(a.labels, b.labels, 'one label object for the same labels');
  assert.equal(a.gpus, b.gpus, 'one GPU list for the same GPUs');
  assert.deepEqual(a.labels, labels);
  assert.deepEqual(a.gpus, ['0', '1']);
  assert.deepEqual(other.labels, { team: 'ads' });
  assert.notEqual(other.labels, a.labels);
  // Records without labels share one empty set.
  const plain = parseRequestFile([line({ request_id: 'p1' }), line({ request_id: 'p2' })].join('\n')).records;
  assert.equal(plain[0]?.labels, plain[1]?.labels);
  assert.deepEqual(plain[0]?.labels, {});
});

test('past MAX_SHARED distinct values a file\'s values are kept as read, not shared, and still right', () => {
  const n = MAX_SHARED + 50;
  const parsed = parseRequestFile(Array.from({ length: n }, (_, i) => line({ request_id: `r${i}`, model: `model-${i}`, labels: { user: `u${i}` } })).join('\n'));
  assert.equal(parsed.records.length, n);
  for (const i of [0, MAX_SHARED - 1, MAX_SHARED, n - 1]) {
    assert.equal(parsed.records[i]?.model, `model-${i}`);
    assert.deepEqual(parsed.records[i]?.labels, { user: `u${i}` });
  }
});
