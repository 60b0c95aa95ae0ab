import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metricNames } from './support/promql-names.js';

describe('metricNames', () => {
  it('finds metrics and recording rules, not functions, keywords, labels, strings or numbers', () => {
    const expr = `sum by (tier, le) (rate(tokenwatt_task_energy_joules_bucket{succeeded="true",tier=~"$tier"}[1h] offset 1w))
      / on (instance) group_left (gpu) (tier:tokenwatt_output_tokens:rate5m > 0) * 3.6e6 + 1e-9
      and time() - tokenwatt_settled_until_timestamp_seconds > bool 900 or vector(0)`;
    assert.deepEqual(metricNames(expr).sort(), [
      'tier:tokenwatt_output_tokens:rate5m',
      'tokenwatt_settled_until_timestamp_seconds',
      'tokenwatt_task_energy_joules_bucket',
    ]);
  });

  it('reports a misspelt name as it is written', () => {
    assert.deepEqual(metricNames('rate(tokenwat_energy_joules_total[5m])'), ['tokenwat_energy_joules_total']);
  });

  it('finds names used without a matcher, inside aggregations and after offset', () => {
    assert.deepEqual(metricNames('max(tokenwatt_pue_ratio) * on (instance) up offset 5m'), ['tokenwatt_pue_ratio', 'up']);
  });
});
