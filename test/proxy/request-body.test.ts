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

test('client stream_options are kept with include_usage set', () => {
  const body = { model: 'm', stream: true, stream_options: { include_usage: false, continuous_usage_stats: true } };
  const out = JSON.parse(withStreamUsage(Buffer.from(JSON.stringify(body)), structuredClone(body)).toString());
  assert.deepEqual(out, { model: 'm', stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
  const odd = JSON.parse(withStreamUsage(Buffer.from('{"stream_options":null}'), { stream_options: null }).toString());
  assert.deepEqual(odd, { stream_options: { include_usage: true } });
});

test("client stream_options are replaced in place: every other byte is the client's (a seed above 2^53 stays exact)", () => {
  const text = '{"model":"m","stream":true,"stream_options": {"include_usage":false} ,"seed":9007199254740993,"temperature":1.0,"x":"caf\\u00e9"}';
  const out = withStreamUsage(Buffer.from(text), JSON.parse(text) as Record<string, unknown>).toString();
  assert.equal(out, text.replace('{"include_usage":false}', '{"include_usage":true}'));
  const nul = '{"stream_options":null,"n":1.0}';
  assert.equal(withStreamUsage(Buffer.from(nul), JSON.parse(nul) as Record<string, unknown>).toString(), '{"stream_options":{"include_usage":true},"n":1.0}');
});

test('the member replaced is the top-level one JSON.parse keeps: the last of duplicates, an escaped name; not one inside a value', () => {
  const splice = (text: string) => withStreamUsage(Buffer.from(text), JSON.parse(text) as Record<string, unknown>).toString();
  assert.equal(
    splice('{"stream_options":{"a":1},"stream_options":{"include_usage":false}}'),
    '{"stream_options":{"a":1},"stream_options":{"include_usage":true}}',
  );
  assert.equal(splice('{"stream\\u005foptions":[],"k":2}'), '{"stream\\u005foptions":{"include_usage":true},"k":2}');
  assert.equal(
    splice('{"messages":[{"content":"\\"stream_options\\":1","stream_options":{}}],"stream_options":false}'),
    '{"messages":[{"content":"\\"stream_options\\":1","stream_options":{}}],"stream_options":{"include_usage":true}}',
  );
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

test("property: with the client's own stream_options, the upstream reads its body with include_usage set, and no other byte changes", () => {
  const member = '"stream_options":';
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'stream_options'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
      fc.jsonValue({ maxDepth: 2 }),
      fc.nat(5),
      whitespace,
      (others, options, position, space) => {
        const entries = Object.entries(others);
        entries.splice(Math.min(position, entries.length), 0, ['stream_options', options]);
        const text = `${space}{${entries.map(([k, v]) => `${JSON.stringify(k)}:${space}${JSON.stringify(v)}`).join(',')}}`;
        fc.pre(text.indexOf(member) === text.lastIndexOf(member)); // no nested member of that name
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const out = withStreamUsage(Buffer.from(text), parsed).toString();
        const merged = { ...(options !== null && typeof options === 'object' && !Array.isArray(options) ? options : {}), include_usage: true };
        // (the options object alone is serialized anew: JSON.parse of it, e.g. -0 written as 0)
        assert.deepEqual(JSON.parse(out), { ...parsed, stream_options: JSON.parse(JSON.stringify(merged)) });
        const at = text.indexOf(member) + member.length + space.length;
        assert.equal(out, text.slice(0, at) + JSON.stringify(merged) + text.slice(at + JSON.stringify(options).length));
      },
    ),
    { numRuns: 300 },
  );
});
