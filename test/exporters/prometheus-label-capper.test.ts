import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LabelCapper, OTHER_LABEL_VALUE, TokenwattMetrics, type FinalizedRequestMetrics } from '../../exporters/prometheus/index.js';
import { reservedReportKeyReason } from '../../model/report-keys.js';
import { parseExposition, sumOf } from './prometheus-exposition.js';

test('first N distinct values keep their name, the rest fold into OTHER_LABEL_VALUE; absent is ""', () => {
  const capper = new LabelCapper(2);
  assert.equal(capper.value('team', 'a'), 'a');
  assert.equal(capper.value('team', undefined), '');
  assert.equal(capper.value('team', ''), '');
  assert.equal(capper.value('team', OTHER_LABEL_VALUE), OTHER_LABEL_VALUE, 'the fold takes no slot');
  assert.equal(capper.value('team', 'b'), 'b');
  assert.equal(capper.value('team', 'c'), OTHER_LABEL_VALUE);
  assert.equal(capper.value('team', 'a'), 'a', 'an admitted value stays admitted');
  assert.equal(capper.value('feature', 'c'), 'c', 'each label has its own cap');
  assert.deepEqual(capper.keptValues('team'), ['a', 'b']);
  assert.equal(capper.folded('team'), 1);
});

test('over-long values fold (they are ids or payloads, not categories)', () => {
  const capper = new LabelCapper(10, 8);
  assert.equal(capper.value('team', 'x'.repeat(9)), OTHER_LABEL_VALUE);
  assert.equal(capper.value('team', 'x'.repeat(8)), 'x'.repeat(8));
});

test('preload admits known values first, so a restart keeps the same names', () => {
  const capper = new LabelCapper(2);
  capper.preload('team', ['search', 'ads', 'infra']);
  assert.equal(capper.value('team', 'newcomer'), OTHER_LABEL_VALUE);
  assert.equal(capper.value('team', 'ads'), 'ads');
  assert.throws(() => new LabelCapper(-1), /cap must be an integer >= 0/);
});

test('property: bounded memory, outputs are the value, "" or the fold, and decisions never change', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 5 }), fc.array(fc.option(fc.string({ maxLength: 4 }), { nil: undefined }), { maxLength: 60 }), (cap, values) => {
      const capper = new LabelCapper(cap);
      const decided = new Map<string | undefined, string>();
      for (const value of values) {
        const out = capper.value('team', value);
        assert.ok(out === (value ?? '') || out === OTHER_LABEL_VALUE, `${String(value)} -> ${out}`);
        const before = decided.get(value);
        if (before !== undefined) assert.equal(out, before, `decision for ${String(value)} changed`);
        decided.set(value, out);
        assert.ok(capper.keptValues('team').length <= cap);
      }
      const distinct = new Set(values.filter((v) => v !== undefined && v !== '' && v !== OTHER_LABEL_VALUE));
      assert.equal(capper.keptValues('team').length, Math.min(cap, distinct.size));
    }),
    { numRuns: 200 },
  );
});

test('a label value literally "other" keeps a series of its own, apart from the values folded past the cap', async () => {
  const metrics = new TokenwattMetrics({ labelCap: 1, now: () => 0 });
  const request = (team: string): FinalizedRequestMetrics => ({
    model: 'm', tier: 't', status: 'ok', cacheBucket: 'miss', batchBucket: '1', labels: { team, feature: '' },
    staticJ: 1, dynamicJ: 1, joules: 2, promptTokens: 1, cachedTokens: 0, completionTokens: 1, reasoningTokens: 0,
  });
  // Team "other" comes first and takes the one slot; "b" and "c" are past the cap.
  metrics.requestsFinalized(['other', 'b', 'c'].map(request));
  const families = parseExposition(await metrics.metrics());
  const requests = (team: string): number => sumOf(families, 'tokenwatt_requests_total', { team });
  assert.equal(requests('other'), 1, 'the team named "other" is not merged with the fold');
  assert.equal(requests(OTHER_LABEL_VALUE), 2, 'b and c fold together');
  assert.notEqual(OTHER_LABEL_VALUE, 'other');
  assert.equal(reservedReportKeyReason(OTHER_LABEL_VALUE) !== null, true, 'ingest refuses the fold value as a team, feature, model or tier');
});
