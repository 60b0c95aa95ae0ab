import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { withStreamUsage } from '../../collectors/proxy/request-body.js';

const MEMBER = '"stream_options":{"include_usage":true}';

test('a body without stream_options gets the member spliced in after its brace; every other byte is the client\'s', () => {
  const raw = Buffer.from('  {"model":"m","seed":12345678901234567890,"x":"\\u00e9","stream":true}\n');
  const out = withStreamUsage(raw, JSON.parse(raw.toString()) as Record<string, unknown>);
  assert.equal(out.toString(), `  {${MEMBER},"model":"m","seed":12345678901234567890,"x":"\\u00e9","stream":true}\n`);
  assert.equal(withStreamUsage(Buffer.from('{}'), {}).toString(), `{${MEMBER}}`);
  assert.equal(withStreamUsage(Buffer.from('{ \n }'), {}).toString(), `{${MEMBER} \n }`);
});

test('client stream_options are kept with include_usage set (re-serialized, as before)', () => {
  const body = { model: 'm', stream: true, stream_options: { include_usage: false, continuous_usage_stats: true } };
  const out = JSON.parse(withStreamUsage(Buffer.from(JSON.stringify(body)), structuredClone(body)).toString());
  assert.deepEqual(out, { model: 'm', stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
  const odd = JSON.parse(withStreamUsage(Buffer.from('{"stream_options":null}'), { stream_options: null }).toString());
  assert.deepEqual(odd, { stream_options: { include_usage: true } });
});

const whitespace = fc.stringMatching(/^[ \t\r\n]{0,3}$/);

test('property: the upstream reads the client\'s body plus include_usage, and nothing else changes', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'stream_options'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }), whitespace, whitespace, (body, before, after) => {
      const text = JSON.stringify(body);
      const raw = Buffer.from(`${before}${text}${after}`);
      const parsed = JSON.parse(raw.toString()) as Record<string, unknown>;
      const out = withStreamUsage(raw, parsed);
      assert.deepEqual(JSON.parse(out.toString()), { ...parsed, stream_options: { include_usage: true } });
      // Take the member (and its comma) out again: the client's bytes come back.
      const spliced = out.toString().replace(`${MEMBER},`, '').replace(MEMBER, '');
      assert.equal(spliced, raw.toString());
    }),
    { numRuns: 300 },
  );
});
