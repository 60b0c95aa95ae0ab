import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RequestJsonText } from '../../agent/ledger-rows.js';

test('RequestJsonText: every answer is JSON.stringify\'s, over runs of repeated, changed and reused lists and labels (property)', () => {
  const gpu = fc.constantFrom('GPU-0', 'GPU-1', 'MIG-2', '3');
  const labels = fc.dictionary(fc.constantFrom('team', 'feature', 'env', '1', '0'), fc.constantFrom('', 'a', 'b', 'search'), { maxKeys: 4 });
  const step = fc.oneof(
    fc.record({ kind: fc.constant('gpus' as const), list: fc.array(gpu, { maxLength: 3 }) }),
    fc.record({ kind: fc.constant('sent' as const), list: fc.array(gpu, { maxLength: 3 }) }), // gpusSent, between resolved lists
    fc.record({ kind: fc.constant('labels' as const), labels }),
    fc.record({ kind: fc.constant('again' as const) }), // the previous list or labels object, changed in place
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
      const json = new RequestJsonText();
      const list: string[] = [];
      const sent: string[] = [];
      const held: Record<string, string> = {};
      for (const s of steps) {
        if (s.kind === 'gpus') {
          list.splice(0, list.length, ...s.list);
          assert.equal(json.gpus(list), JSON.stringify(list));
        } else if (s.kind === 'sent') {
          sent.splice(0, sent.length, ...s.list);
          assert.equal(json.gpusSent(sent), JSON.stringify(sent));
          assert.equal(json.gpus(list), JSON.stringify(list), 'the resolved list\'s text is not the one sent');
        } else if (s.kind === 'labels') {
          for (const k of Object.keys(held)) delete held[k];
          Object.assign(held, s.labels);
          assert.equal(json.labels(held), JSON.stringify(held));
        } else {
          list.push('GPU-9');
          sent.push('7');
          held.changed = 'yes';
          assert.equal(json.gpus(list), JSON.stringify(list));
          assert.equal(json.gpusSent(sent), JSON.stringify(sent));
          assert.equal(json.labels(held), JSON.stringify(held));
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('RequestJsonText: labels equal to the last ones only through an inherited key are not taken for them', () => {
  const json = new RequestJsonText();
  assert.equal(json.labels({ team: 'a' }), '{"team":"a"}');
  const inherits = Object.create({ team: 'a' }) as Record<string, string>;
  assert.equal(json.labels(inherits), '{}', 'JSON.stringify skips the inherited key, and so must the repeat check');
  assert.equal(json.labels({}), '{}');
  assert.equal(json.labels({ team: 'a' }), '{"team":"a"}');
  assert.equal(json.gpus([]), '[]');
  assert.equal(json.gpus(['GPU-0']), '["GPU-0"]');
  assert.equal(json.gpus(['GPU-0']), '["GPU-0"]');
  assert.equal(json.gpus(['GPU-0', 'GPU-1']), '["GPU-0","GPU-1"]');
});

test('RequestJsonText: one-GPU lists that alternate, and more distinct GPUs than it keeps texts for, still give JSON.stringify\'s', () => {
  const json = new RequestJsonText();
  for (let i = 0; i < 3000; i++) {
    // Alternating replicas, then GPU names past the texts kept (the map is cleared and refilled).
    const list = i < 100 ? [`GPU-${i % 2}`] : [`GPU-${i}`];
    assert.equal(json.gpus(list), JSON.stringify(list));
    if (i % 7 === 0) assert.equal(json.gpus(['GPU-0', `GPU-${i}`]), JSON.stringify(['GPU-0', `GPU-${i}`]));
  }
  const held = ['GPU-0'];
  assert.equal(json.gpus(held), '["GPU-0"]');
  held[0] = 'GPU-1'; // the same array changed in place is looked up by its new GPU
  assert.equal(json.gpus(held), '["GPU-1"]');
});
