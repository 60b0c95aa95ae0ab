import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LabelCapper } from '../../exporters/prometheus/index.js';

test('first N distinct values keep their name, the rest fold into "other"; absent is ""', () => {
  const capper = new LabelCapper(2);
  assert.equal(capper.value('team', 'a'), 'a');
  assert.equal(capper.value('team', undefined), '');
  assert.equal(capper.value('team', ''), '');
  assert.equal(capper.value('team', 'other'), 'other');
  assert.equal(capper.value('team', 'b'), 'b');
  assert.equal(capper.value('team', 'c'), 'other');
  assert.equal(capper.value('team', 'a'), 'a', 'an admitted value stays admitted');
  assert.equal(capper.value('feature', 'c'), 'c', 'each label has its own cap');
  assert.deepEqual(capper.keptValues('team'), ['a', 'b']);
  assert.equal(capper.folded('team'), 1);
});

test('over-long values fold (they are ids or payloads, not categories)', () => {
  const capper = new LabelCapper(10, 8);
  assert.equal(capper.value('team', 'x'.repeat(9)), 'other');
  assert.equal(capper.value('team', 'x'.repeat(8)), 'x'.repeat(8));
});

test('preload admits known values first, so a restart keeps the same names', () => {
  const capper = new LabelCapper(2);
  capper.preload('team', ['search', 'ads', 'infra']);
  assert.equal(capper.value('team', 'newcomer'), 'other');
  assert.equal(capper.value('team', 'ads'), 'ads');
  assert.throws(() => new LabelCapper(-1), /cap must be an integer >= 0/);
});

test('property: bounded memory, outputs are the value, "" or "other", and decisions never change', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 5 }), fc.array(fc.option(fc.string({ maxLength: 4 }), { nil: undefined }), { maxLength: 60 }), (cap, values) => {
      const capper = new LabelCapper(cap);
      const decided = new Map<string | undefined, string>();
      for (const value of values) {
        const out = capper.value('team', value);
        assert.ok(out === (value ?? '') || out === 'other', `${String(value)} -> ${out}`);
        const before = decided.get(value);
        if (before !== undefined) assert.equal(out, before, `decision for ${String(value)} changed`);
        decided.set(value, out);
        assert.ok(capper.keptValues('team').length <= cap);
      }
      const distinct = new Set(values.filter((v) => v !== undefined && v !== '' && v !== 'other'));
      assert.equal(capper.keptValues('team').length, Math.min(cap, distinct.size));
    }),
    { numRuns: 200 },
  );
});
