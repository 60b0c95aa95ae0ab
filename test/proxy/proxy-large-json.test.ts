/**
 * Non-streamed answers larger than maxResponseCaptureBytes (logprobs, prompt_logprobs): the copy
 * is not kept, but the answer is scanned as it passes, so its record still has the exact usage,
 * wherever the upstream put it, or estimates from its generated text when it has none.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { JsonAnswerScanner } from '../../collectors/proxy/json-scan.js';
import { startProxyFor } from './proxy-harness.js';
import type { ProxyUnderTest } from './proxy-harness.js';
import { startScriptedUpstream } from './scripted-upstream.js';
import type { ScriptedUpstream } from './scripted-upstream.js';
import { tryRequest } from './raw-http.js';

const CONTENT = `${'The answer, token by token. '.repeat(300)}🙂 "quoted" \\ done`;
const REASONING = 'thinking '.repeat(50);
/** One chat logprobs entry per token, as vLLM writes them with top_logprobs: 5 (~0.5 KB each). */
const logprobs = (n: number) => ({
  content: Array.from({ length: n }, (_, i) => ({
    token: `t${i}`,
    logprob: -0.25,
    bytes: [116, 48],
    top_logprobs: Array.from({ length: 5 }, (_, k) => ({ token: `alt${k}`, logprob: -1.5 - k, bytes: [97] })),
  })),
});
const USAGE = { prompt_tokens: 12, total_tokens: 2012, completion_tokens: 2000, prompt_tokens_details: { cached_tokens: 4 } };
/** vLLM's member order: usage, then prompt_logprobs (large too), after the choices. */
const answer = (usage: boolean) =>
  JSON.stringify({
    id: 'chatcmpl-big',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'served-model',
    choices: [{ index: 0, message: { role: 'assistant', content: CONTENT, reasoning_content: REASONING }, logprobs: logprobs(2000), finish_reason: 'length' }],
    ...(usage ? { usage: USAGE } : {}),
    prompt_logprobs: Array.from({ length: 1500 }, (_, i) => (i === 0 ? null : { [String(i)]: { logprob: -2.5, rank: 1, decoded_token: 'content' } })),
  });

const ANSWERS: Record<string, string> = {
  'big-usage': answer(true),
  'big-no-usage': answer(false),
  'big-error': JSON.stringify({ object: 'error', message: 'x'.repeat(5000), code: 500 }),
  'big-cut': answer(true).slice(0, 200_000),
};

let upstream: ScriptedUpstream;
let p: ProxyUnderTest;
before(async () => {
  upstream = await startScriptedUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(ANSWERS[String(req.headers['x-task-id'])]);
  });
  p = await startProxyFor(upstream.url, { maxResponseCaptureBytes: 1024 });
});
after(async () => {
  await p.close();
  await upstream.close();
});

const call = (task: string) =>
  tryRequest(`${p.proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-task-id': task },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello world' }], logprobs: true, top_logprobs: 5 }),
  });

test('an answer past maxResponseCaptureBytes, usage before prompt_logprobs: the client gets every byte, the record the exact usage, id and model', async () => {
  const res = await call('big-usage');
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(Buffer.from(ANSWERS['big-usage'] as string)), 'relayed byte for byte');
  assert.ok(res.body.length > 500 * 1024, `${res.body.length} bytes`);
  const r = await p.sink.recordOfTask('big-usage');
  assert.deepEqual(
    [r.status, r.model, r.promptTokens, r.cachedTokens, r.completionTokens, r.tokensEstimated],
    ['ok', 'served-model', 12, 4, 2000, false],
  );
  assert.match(r.requestId, /^chatcmpl-big\//);
});

test('an answer past the limit without usage: estimated from its generated text (not 0), and marked estimated', async () => {
  await call('big-no-usage');
  const r = await p.sink.recordOfTask('big-no-usage');
  const text = CONTENT.length + REASONING.length;
  assert.deepEqual(
    [r.status, r.promptTokens, r.completionTokens, r.reasoningTokens, r.tokensEstimated],
    ['ok', Math.ceil('hello world'.length / 4), Math.ceil(text / 4), Math.ceil(REASONING.length / 4), true],
  );
});

test('an answer past the limit that is an error object, or JSON cut short: an error record', async () => {
  await call('big-error');
  await call('big-cut');
  const error = await p.sink.recordOfTask('big-error');
  const cut = await p.sink.recordOfTask('big-cut');
  assert.deepEqual([error.status, cut.status], ['error', 'error']);
});

/** Generated characters as the parsed path counts them: strings under content/text/arguments, and apart, reasoning. */
function reference(value: unknown, key: string | null = null): { chars: number; reasoning: number } {
  if (typeof value === 'string') {
    if (key === 'reasoning_content' || key === 'reasoning') return { chars: 0, reasoning: value.length };
    return { chars: key === 'content' || key === 'text' || key === 'arguments' ? value.length : 0, reasoning: 0 };
  }
  const sum = { chars: 0, reasoning: 0 };
  const add = (v: unknown, k: string | null) => {
    const s = reference(v, k);
    sum.chars += s.chars;
    sum.reasoning += s.reasoning;
  };
  if (Array.isArray(value)) for (const v of value) add(v, null);
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) add(v, k);
  return sum;
}

test('property: however an object is chunked and spaced, the scan keeps its top-level members and counts its text as a parse does', () => {
  const keys = fc.constantFrom('id', 'model', 'usage', 'object', 'status', 'error', 'content', 'text', 'arguments', 'reasoning', 'choices', 'x', 'u\\"sage');
  const value = fc.letrec((tie) => ({
    leaf: fc.oneof(fc.string({ unit: 'binary' }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)),
    node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(keys, tie('node'), { maxKeys: 4 })),
  })).node;
  fc.assert(
    fc.property(fc.dictionary(keys, value, { maxKeys: 8 }), fc.constantFrom(undefined, 1, '\t', ' \r\n'), fc.array(fc.nat(), { maxLength: 8 }), (object, space, cuts) => {
      const bytes = Buffer.from(JSON.stringify(object, null, space));
      const scanner = new JsonAnswerScanner();
      const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const cut of [...at, bytes.length]) {
        scanner.push(bytes.subarray(from, cut));
        from = cut;
      }
      const result = scanner.result();
      const expected = reference(object);
      assert.equal(result.complete, true);
      const kept = Object.fromEntries(Object.entries(object).filter(([k]) => ['id', 'model', 'usage', 'object', 'status', 'error'].includes(k)));
      assert.deepEqual(result.members, JSON.parse(JSON.stringify(kept)));
      assert.equal(result.chars, expected.chars);
      assert.equal(result.reasoningChars, expected.reasoning);
    }),
    { numRuns: 300 },
  );
});

test('a body that is not one JSON object is not complete', () => {
  for (const text of ['[1,2]', '"x"', '{"a":1} {"b":2}', '{"a":[1}', '{"a":1', 'null', '{"a":1}]']) {
    const scanner = new JsonAnswerScanner();
    scanner.push(Buffer.from(text));
    assert.equal(scanner.result().complete, false, text);
  }
});
