import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestFile } from '../../collectors/request-file.js';

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
  assert.deepEqual(byLine(5).map((e) => [e.field, e.reason]), [['(record)', 'must be a JSON object']]);
  assert.deepEqual(byLine(6).map((e) => [e.field, e.reason]), [['end', 'end precedes start']]);
  assert.deepEqual([...new Set(parsed.errors.map((e) => e.line))], [2, 4, 5, 6]);
});

test('a line restating an earlier record is acknowledged as a duplicate, not counted twice', () => {
  const parsed = parseRequestFile([line(), line({ request_id: 'r2' }), line({ source: 'proxy' })].join('\n'));
  assert.deepEqual(parsed.records.map((r) => [r.requestId, r.source]), [['r1', 'file'], ['r2', 'file']]);
  assert.deepEqual(parsed.duplicates, [{ line: 3, requestId: 'r1', firstLine: 1 }]);
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

test('an empty file has nothing and no errors', () => {
  assert.deepEqual(parseRequestFile(''), { records: [], errors: [], duplicates: [], lineOf: new Map() });
});
