import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatJoules, formatRatio, renderSummaryTable, SIMULATED_BANNER, textTable, type SummarySnapshot } from '../../exporters/summary-table.js';

const snapshot = (simulated: boolean): SummarySnapshot => ({
  node: 'gpu-node-1',
  source: { kind: simulated ? 'simulated' : 'nvml', simulated, energyCounter: true, powerAveraged: false },
  windowStartMs: Date.UTC(2026, 0, 5, 10, 0, 0),
  settledUntilMs: Date.UTC(2026, 0, 5, 10, 5, 0),
  totals: { measuredJ: 90_000, idleJ: 30_000, attributedJ: 59_000, unattributedJ: 1_000, estimatedJ: 500, residualJ: 1e-9, hostJ: 0, fullyLoadedFactor: 90_000 / 59_000 },
  byTier: [
    { key: 'small', requests: 120, promptTokens: 60_000, cachedTokens: 30_000, completionTokens: 24_000, joules: 9_000 },
    { key: 'large', requests: 30, promptTokens: 20_000, cachedTokens: 0, completionTokens: 10_000, joules: 50_000 },
  ],
  byBatchBucket: [{ key: '5-16', requests: 150, promptTokens: 80_000, cachedTokens: 30_000, completionTokens: 34_000, joules: 59_000 }],
  byCacheBucket: [{ key: 'miss', requests: 150, promptTokens: 80_000, cachedTokens: 30_000, completionTokens: 0, joules: 59_000 }],
  tasks: { closed: 40, succeeded: 36, joules: 50_000, wasteJ: 4_000 },
  quality: { sampleCoverage: 0.998, counterResets: 1, gaps: 2, lateRecords: 3, rejectedRecords: 4, sampleErrors: 5 },
});

/** The cells of the table row that starts with `key`. */
function row(text: string, key: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  assert.ok(line, `a row for ${key}`);
  return line.trim().split(/\s{2,}/);
}

test('simulated figures carry the banner first; measured ones never do', () => {
  const simulated = renderSummaryTable(snapshot(true));
  assert.equal(simulated.split('\n')[0], SIMULATED_BANNER);
  assert.match(simulated, /source simulated \(energy counter, SIMULATED\)/);
  const measured = renderSummaryTable(snapshot(false));
  assert.ok(!measured.includes('SIMULATED'), measured);
  assert.match(measured.split('\n')[0] ?? '', /^tokenwatt {2}node gpu-node-1 {2}source nvml/);
});

test('per-tier rows: marginal J/token = energy / output tokens; fully loaded = marginal x factor', () => {
  const s = snapshot(false);
  const text = renderSummaryTable(s);
  for (const tier of s.byTier) {
    const [key, requests, , cached, output, energy, marginal, loaded] = row(text, tier.key);
    assert.equal(key, tier.key);
    assert.equal(requests, tier.requests.toLocaleString('en-US'));
    assert.equal(output, tier.completionTokens.toLocaleString('en-US'));
    assert.equal(cached, `${((tier.cachedTokens / tier.promptTokens) * 100).toFixed(1)}%`);
    assert.equal(energy, formatJoules(tier.joules));
    const jPerToken = tier.joules / tier.completionTokens;
    assert.equal(marginal, formatRatio(jPerToken));
    assert.equal(loaded, formatRatio(jPerToken * (s.totals.fullyLoadedFactor ?? NaN)));
    assert.ok(Number(loaded) > Number(marginal), 'idle energy makes the fully loaded figure larger');
  }
  // No output tokens: no J/token rather than Infinity.
  const [, , , , , , marginal, loaded] = row(text, 'miss');
  assert.equal(marginal, '-');
  assert.equal(loaded, '-');
});

test('energy, task and data-quality lines show idle, residual, estimated and every quality counter', () => {
  const text = renderSummaryTable(snapshot(false));
  assert.match(text, /measured 90 kJ = attributed 59 kJ \+ idle 30 kJ \(33\.3%\) \+ unattributed 1 kJ; residual 1\.00e-9 J/);
  assert.match(text, /40 closed; of the closed, 36 succeeded; 1\.39 kJ per successful task; waste 4 kJ \(8\.0%\)/);
  const withOpen = renderSummaryTable({ ...snapshot(false), tasks: { closed: 40, open: 7, succeeded: 36, joules: 50_000, wasteJ: 4_000 } });
  assert.match(withOpen, /40 closed, 7 still open; of the closed, 36 succeeded/);
  const noneClosed = renderSummaryTable({ ...snapshot(false), tasks: { closed: 0, open: 7, succeeded: 0, joules: 0, wasteJ: 0 } });
  assert.match(noneClosed, /tasks {5}none closed yet, 7 still open \(a task closes/);
  assert.match(text, /sample coverage 99\.8%; estimated 500 J \(0\.6%\); 2 gaps; 1 counter resets; 3 late records; 4 rejected; 5 sample errors/);
});

test('before anything is settled the summary says so instead of printing empty tables', () => {
  const empty: SummarySnapshot = { ...snapshot(true), byTier: [], byBatchBucket: [], byCacheBucket: [], windowStartMs: null, settledUntilMs: null };
  const text = renderSummaryTable(empty);
  assert.match(text, /tier: no settled requests yet/);
  assert.match(text, /settled - \.\. -/);
});

test('textTable: fixed width, numbers right-aligned', () => {
  const text = textTable(['name', 'J'], [['a', '1'], ['longer', '1000']], ['left', 'right']);
  const lines = text.split('\n');
  assert.deepEqual(lines, ['name       J', '------  ----', 'a          1', 'longer  1000']);
});

test('formatJoules picks the SI prefix and keeps 3 significant digits', () => {
  const cases: [number, string][] = [[0, '0 J'], [0.0123, '0.0123 J'], [12.34, '12.3 J'], [4560, '4.56 kJ'], [7.891e6, '7.89 MJ'], [2e9, '2 GJ'], [-1500, '-1.5 kJ'], [3e-7, '3.00e-7 J']];
  for (const [value, text] of cases) assert.equal(formatJoules(value), text, String(value));
});

test('textTable: more rows than a call takes arguments (an analysis of many models) still get their widths', () => {
  const rows = Array.from({ length: 200_000 }, (_, i) => [`model-${i}`, String(i)]);
  const lines = textTable(['model', 'n'], rows, ['left', 'right']).split('\n');
  assert.equal(lines.length, rows.length + 2); // header and rule
  assert.equal(lines.at(-1), 'model-199999  199999');
});
