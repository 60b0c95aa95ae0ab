import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness } from './proxy-harness.js';

const NO_AUTH = /^proxy: listening on (\S+) without authentication: anyone who can reach port \d+ there can send calls through it to the LLM server at http:\/\/127\.0\.0\.1:\d+/;

test('a proxy bound beyond loopback warns once at start-up that it relays to the LLM server without auth, and how to restrict it', async (t) => {
  const open = await startHarness({ host: '0.0.0.0' });
  t.after(() => open.close());
  const warnings = open.log.messages('warn').filter((m) => NO_AUTH.test(m));
  assert.equal(warnings.length, 1, open.log.messages().join('\n'));
  assert.match(warnings[0] ?? '', /^proxy: listening on 0\.0\.0\.0 without authentication/);
  assert.match(warnings[0] ?? '', /proxy\.host \(or --host\) 127\.0\.0\.1/);
  assert.match(warnings[0] ?? '', /NetworkPolicy/);
  // A call still goes through: the warning changes nothing else.
  const reply = await open.client.chat.completions.create({ model: 'llama-8b', messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(reply.id);
  assert.equal(open.log.messages('warn').filter((m) => NO_AUTH.test(m)).length, 1, 'once, at start-up, not per call');
});

test('a proxy bound to loopback does not warn about authentication', async (t) => {
  for (const host of ['127.0.0.1', 'localhost']) {
    const local = await startHarness({ host });
    t.after(() => local.close());
    assert.deepEqual(local.log.messages('warn'), [], host);
  }
});
