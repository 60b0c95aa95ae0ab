import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseChatUsage, parseResponsesUsage } from '../../collectors/proxy/openai-usage.js';
import { estimateCompletionTokens, estimatePromptTokens } from '../../collectors/proxy/token-estimate.js';
import { labelsFromHeaders } from '../../collectors/proxy/proxy-record.js';
import { proxyConfigSchema } from '../../collectors/proxy/proxy-config.js';

test('chat usage with details, and missing/null details default to zero', () => {
  assert.deepEqual(
    parseChatUsage({ prompt_tokens: 100, completion_tokens: 40, total_tokens: 140, prompt_tokens_details: { cached_tokens: 64 }, completion_tokens_details: { reasoning_tokens: 12 } }),
    { ok: true, usage: { promptTokens: 100, completionTokens: 40, cachedTokens: 64, reasoningTokens: 12 } },
  );
  assert.deepEqual(parseChatUsage({ prompt_tokens: 3, completion_tokens: 1, prompt_tokens_details: null }), {
    ok: true,
    usage: { promptTokens: 3, completionTokens: 1, cachedTokens: 0, reasoningTokens: 0 },
  });
  assert.deepEqual(parseResponsesUsage({ input_tokens: 9, output_tokens: 4, input_tokens_details: { cached_tokens: 2 }, output_tokens_details: { reasoning_tokens: 4 } }), {
    ok: true,
    usage: { promptTokens: 9, completionTokens: 4, cachedTokens: 2, reasoningTokens: 4 },
  });
});

test('unbelievable usage is refused naming the field', () => {
  const reason = (u: unknown) => {
    const r = parseChatUsage(u);
    return r.ok ? 'accepted' : r.reason;
  };
  assert.match(reason({ prompt_tokens: 1e12, completion_tokens: 1 }), /usage\.prompt_tokens must be an integer 0\.\.100000000 \(got 1000000000000\)/);
  assert.match(reason({ prompt_tokens: -1, completion_tokens: 1 }), /prompt_tokens/);
  assert.match(reason({ prompt_tokens: 2.5, completion_tokens: 1 }), /prompt_tokens/);
  assert.match(reason({ prompt_tokens: '7', completion_tokens: 1 }), /prompt_tokens .*"7"/);
  assert.match(reason({ completion_tokens: 1 }), /usage\.prompt_tokens is missing/);
  assert.match(reason({ prompt_tokens: 4, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 5 } }), /cached_tokens \(5\) exceeds prompt_tokens \(4\)/);
  assert.match(reason({ prompt_tokens: 4, completion_tokens: 1, completion_tokens_details: { reasoning_tokens: 2 } }), /reasoning_tokens \(2\) exceeds completion_tokens \(1\)/);
  assert.match(reason([1]), /not an object/);
  const r = parseResponsesUsage({ input_tokens: 1, output_tokens: Number.NaN });
  assert.ok(!r.ok && /usage\.output_tokens/.test(r.reason));
});

test('property: every accepted usage is internally consistent', () => {
  fc.assert(
    fc.property(fc.anything(), fc.anything(), fc.anything(), fc.anything(), (p, c, k, r) => {
      const out = parseChatUsage({ prompt_tokens: p, completion_tokens: c, prompt_tokens_details: { cached_tokens: k }, completion_tokens_details: { reasoning_tokens: r } });
      if (!out.ok) return;
      const u = out.usage;
      assert.ok(Number.isInteger(u.promptTokens) && u.cachedTokens <= u.promptTokens && u.reasoningTokens <= u.completionTokens);
    }),
  );
});

test('estimates: chars/4 for text, exact for token-id prompts, at least one token per content event', () => {
  assert.equal(estimatePromptTokens({ messages: [{ role: 'system', content: 'abcd' }, { role: 'user', content: [{ type: 'text', text: 'efghij' }] }] }, 'chat'), 3);
  assert.equal(estimatePromptTokens({ prompt: [1, 2, 3, 4, 5] }, 'completions'), 5);
  assert.equal(estimatePromptTokens({ prompt: [[1, 2], [3]] }, 'completions'), 3);
  assert.equal(estimatePromptTokens({ prompt: 'abcdefgh' }, 'completions'), 2);
  assert.equal(estimatePromptTokens({ input: [{ role: 'user', content: [{ type: 'input_text', text: 'abcde' }] }], instructions: 'xyz' }, 'responses'), 2);
  assert.equal(estimatePromptTokens({}, 'chat'), 0);
  assert.equal(estimateCompletionTokens(40, 3), 10);
  assert.equal(estimateCompletionTokens(3, 9), 9);
});

test('labels from headers: configurable names; values the ledger would refuse are reported, not recorded', () => {
  const names = proxyConfigSchema.parse({ upstream: 'http://127.0.0.1:1', headers: { labels: { team: 'X-Org' } } }).headers;
  const refused: string[] = [];
  const labels = labelsFromHeaders(
    ['X-Task-Id', 't1', 'x-attempt', '3', 'X-ORG', ' infra ', 'x-feature', 'f'.repeat(300)],
    names,
    (h, reason) => refused.push(`${h}: ${reason}`),
  );
  assert.deepEqual(labels, { taskId: 't1', attempt: 3, labels: { team: 'infra' } });
  assert.deepEqual(refused, ['x-feature: longer than 256 characters']);
  const zero = labelsFromHeaders(['x-attempt', '0'], names, (h, reason) => refused.push(`${h}: ${reason}`));
  assert.equal(zero.attempt, null);
  assert.match(refused.at(-1) ?? '', /x-attempt: must be an integer 1\.\.10000 \(got "0"\)/);
});

test('labels from headers: a header sent twice counts with its first value, not both joined', () => {
  const names = proxyConfigSchema.parse({ upstream: 'http://127.0.0.1:1' }).headers;
  const labels = labelsFromHeaders(['X-Task-Id', 'task-A', 'X-Team', 'red', 'x-task-id', 'task-B', 'X-Team', 'blue'], names, () => {});
  assert.deepEqual(labels, { taskId: 'task-A', attempt: null, labels: { team: 'red' } });
});

test('labels from headers: values sent as UTF-8 bytes (node reads them as latin-1) are read as UTF-8; other bytes stay as they were', () => {
  const names = proxyConfigSchema.parse({ upstream: 'http://127.0.0.1:1' }).headers;
  const asNodeReadsIt = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
  const labels = labelsFromHeaders(['x-team', asNodeReadsIt('équipe-日本'), 'x-feature', 'caf\u00e9'], names, () => {});
  assert.deepEqual(labels.labels, { team: 'équipe-日本', feature: 'café' }, 'a lone latin-1 byte is no UTF-8: kept as latin-1');
});

test('partial usage (no prompt or completion count) is incomplete, not refused; a bad number is still refused', () => {
  const total = parseChatUsage({ total_tokens: 10 });
  assert.ok(!total.ok && total.incomplete && /usage\.prompt_tokens is missing/.test(total.reason));
  const onlyPrompt = parseResponsesUsage({ input_tokens: 4 });
  assert.ok(!onlyPrompt.ok && onlyPrompt.incomplete && /usage\.output_tokens is missing/.test(onlyPrompt.reason));
  const absurd = parseChatUsage({ prompt_tokens: 1e12 });
  assert.ok(!absurd.ok && !absurd.incomplete, 'an unbelievable number is refused even when another count is missing');
  const inconsistent = parseChatUsage({ prompt_tokens: 4, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 5 } });
  assert.ok(!inconsistent.ok && !inconsistent.incomplete);
});
