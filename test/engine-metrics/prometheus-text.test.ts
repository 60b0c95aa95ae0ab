import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { fixture } from './fixtures.js';

const FIXTURES = [
  'sglang-docs-production-metrics.prom',
  'sglang-cached-tokens-rendered.prom',
  'vllm-v1-docs-design-metrics.prom',
  'vllm-docs-usage-metrics.prom',
  'vllm-0.10-v1-rendered.prom',
  'vllm-v1-deprecated-prefix-names-rendered.prom',
  'vllm-v0-engine-rendered.prom',
];

test('every engine fixture parses without an error line, samples and TYPE lines agree', () => {
  for (const name of FIXTURES) {
    const text = fixture(name);
    const parsed = parsePrometheusText(text);
    assert.deepEqual(parsed.errors, [], name);
    const sampleLines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).length;
    assert.equal(parsed.samples.length, sampleLines, name);
    const typeLines = text.split('\n').filter((l) => l.startsWith('# TYPE ')).length;
    assert.equal(parsed.types.size, typeLines, name);
  }
});

test('the SGLang docs page: counters in exponent notation, +Inf buckets, HELP and TYPE', () => {
  const parsed = parsePrometheusText(fixture('sglang-docs-production-metrics.prom'));
  const prompt = parsed.samples.find((s) => s.name === 'sglang:prompt_tokens_total');
  assert.equal(prompt?.value, 8_128_902);
  assert.deepEqual(prompt?.labels, { model_name: 'meta-llama/Llama-3.1-8B-Instruct' });
  const inf = parsed.samples.find((s) => s.name === 'sglang:time_to_first_token_seconds_bucket' && s.labels.le === '+Inf');
  assert.equal(inf?.value, 11008);
  assert.equal(parsed.types.get('sglang:cache_hit_rate'), 'gauge');
  assert.equal(parsed.types.get('sglang:prompt_tokens_total'), 'counter');
  assert.equal(parsed.help.get('sglang:num_running_reqs'), 'The number of running requests');
});

test('escapes in label values and HELP, trailing commas, timestamps, special values, CRLF', () => {
  const text = [
    '# HELP odd_metric A help line with a \\\\ backslash and a \\n newline',
    '# TYPE odd_metric gauge',
    'odd_metric{path="C:\\\\models\\\\x",quote="say \\"hi\\"",nl="a\\nb",} 1.5e3 1700000000000',
    'odd_metric{kind="inf"} +Inf',
    'odd_metric{kind="neg"} -Inf',
    'odd_metric{kind="nan"} NaN',
    'bare_metric 42',
    '# EOF',
  ].join('\r\n');
  const parsed = parsePrometheusText(text);
  assert.deepEqual(parsed.errors, []);
  assert.equal(parsed.help.get('odd_metric'), 'A help line with a \\ backslash and a \n newline');
  const [first, inf, neg, nan, bare] = parsed.samples;
  assert.deepEqual(first?.labels, { path: 'C:\\models\\x', quote: 'say "hi"', nl: 'a\nb' });
  assert.equal(first?.value, 1500);
  assert.equal(first?.timestampMs, 1_700_000_000_000);
  assert.equal(inf?.value, Number.POSITIVE_INFINITY);
  assert.equal(neg?.value, Number.NEGATIVE_INFINITY);
  assert.ok(Number.isNaN(nan?.value));
  assert.deepEqual(bare, { name: 'bare_metric', labels: {}, value: 42, timestampMs: null, line: 7 });
});

test('unreadable lines are reported with their number and reason; the rest is still read', () => {
  const text = [
    'good_total 1',
    'bad{model="x} 2',
    'also_bad{model=x} 3',
    'no_value{a="b"}',
    'words_value 12abc',
    '{"utf8.name"} 4',
    'good_total{engine="1"} 5',
  ].join('\n');
  const parsed = parsePrometheusText(text);
  assert.deepEqual(parsed.samples.map((s) => s.value), [1, 5]);
  assert.deepEqual(parsed.errors.map((e) => e.line), [2, 3, 4, 5, 6]);
  assert.match(parsed.errors[0]?.reason ?? '', /unterminated/);
  assert.match(parsed.errors[1]?.reason ?? '', /quoted/);
  assert.match(parsed.errors[2]?.reason ?? '', /missing value/);
  assert.match(parsed.errors[3]?.reason ?? '', /not a number/);
});

/** An independent writer of the exposition format, used to check the parser round trip. */
function render(samples: { name: string; labels: Record<string, string>; value: number }[]): string {
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return samples
    .map((s) => {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escape(v)}"`);
      return `${s.name}${labels.length > 0 ? `{${labels.join(',')}}` : ''} ${s.value}`;
    })
    .join('\n');
}

test('property: whatever a conforming writer renders, the parser reads back exactly', () => {
  const name = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,30}$/);
  const labelName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,15}$/);
  const sample = fc.record({
    name,
    labels: fc.dictionary(labelName, fc.string({ maxLength: 20 }), { maxKeys: 4 }),
    value: fc.double({ noNaN: true, noDefaultInfinity: true }),
  });
  fc.assert(
    fc.property(fc.array(sample, { maxLength: 20 }), (samples) => {
      const parsed = parsePrometheusText(render(samples));
      assert.deepEqual(parsed.errors, []);
      assert.deepEqual(
        parsed.samples.map((s) => ({ name: s.name, labels: s.labels, value: s.value })),
        samples.map((s) => ({ name: s.name, labels: { ...s.labels }, value: s.value === 0 ? 0 : s.value })), // String(-0) is "0"
      );
    }),
    { numRuns: 200 },
  );
});

test('property: arbitrary text never throws and every error names a real line', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 400 }), (text) => {
      const parsed = parsePrometheusText(text);
      const lines = text.split(/\r?\n/).length;
      for (const e of parsed.errors) assert.ok(e.line >= 1 && e.line <= lines);
    }),
    { numRuns: 500 },
  );
});
