import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heatmaps } from '../../exporters/esg/svg-charts.js';

/** The title of every drawn cell, in drawing order. */
function cellTitles(svg: string): string[] {
  return [...svg.matchAll(/<rect class="cell"[^>]*><title>([^<]*)<\/title>/g)].map((m) => m[1] ?? '');
}

test('heatmaps: every tier x batch x cache cell shows its own value, a missing one shows no data', () => {
  const cells = [
    { tier: 'small', row: '1', col: 'miss', value: 0.5 },
    { tier: 'small', row: '2-8', col: 'hit', value: 0.25 },
    { tier: 'large', row: '1', col: 'hit', value: 4 },
    { tier: 'large', row: '2-8', col: 'miss', value: null },
  ];
  const titles = cellTitles(heatmaps('t', cells, 'J/token'));
  // 2 tiers x 2 rows x 2 columns, drawn tier by tier, row by row, column by column, each axis in
  // its bucket order (svg-charts.ts bucketOrder: numbers by value, then miss, partial, hit, then names).
  assert.deepEqual(titles, [
    'large / batch 1 / cache miss: no data',
    'large / batch 1 / cache hit: 4 J/token',
    'large / batch 2-8 / cache miss: no data',
    'large / batch 2-8 / cache hit: no data',
    'small / batch 1 / cache miss: 0.50 J/token',
    'small / batch 1 / cache hit: no data',
    'small / batch 2-8 / cache miss: no data',
    'small / batch 2-8 / cache hit: 0.25 J/token',
  ]);
});

test('heatmaps: 8,000 cells (400 tiers) are each drawn once with their value, and the colour scale spans them', () => {
  const cells = [];
  for (let t = 0; t < 400; t++) {
    for (const row of ['1', '2-8', '9-32', '33-128', '129+']) {
      for (const col of ['0%', '1-50%', '51-99%', '100%']) cells.push({ tier: `tier-${String(t).padStart(3, '0')}`, row, col, value: 0.01 * (t + 1) });
    }
  }
  const svg = heatmaps('t', cells, 'J/token');
  const titles = cellTitles(svg);
  assert.equal(titles.length, 8000);
  assert.equal(titles[0], 'tier-000 / batch 1 / cache 0%: 0.010 J/token');
  assert.equal(titles[7999], 'tier-399 / batch 129+ / cache 100%: 4 J/token');
  // The lowest value gets the lightest fill and the highest the darkest: the scale saw every value.
  const fills = [...svg.matchAll(/<rect class="cell"[^>]*fill="([^"]+)"/g)].map((m) => m[1]);
  assert.notEqual(fills[0], fills[7999]);
});
