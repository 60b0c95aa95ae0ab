import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { METRIC_CATALOG } from '../../exporters/prometheus/metric-catalog.js';

/** The metrics README › What it exports lists in its table, each with the labels written after it. */
function readmeTable(): Map<string, string[]> {
  const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
  const section = readme.slice(readme.indexOf('\n## What it exports\n'), readme.indexOf('\n## ', readme.indexOf('\n## What it exports\n') + 1));
  const rows = section.split('\n').filter((line) => line.startsWith('| `tokenwatt_'));
  const listed = new Map<string, string[]>();
  for (const row of rows) {
    const cell = row.split(' | ')[0] ?? '';
    for (const m of cell.matchAll(/`(tokenwatt_[a-z0-9_]+)(?:\{([a-z_,]*)\})?`/g)) {
      assert.ok(!listed.has(m[1] as string), `${m[1]} is listed once`);
      listed.set(m[1] as string, m[2] === undefined ? [] : m[2].split(','));
    }
  }
  return listed;
}

test('README\'s metric table lists every metric of the catalog, with its labels, and no other', () => {
  const listed = readmeTable();
  // The table writes the default user labels (labels.user: team, feature).
  const expected = new Map<string, string[]>(Object.values(METRIC_CATALOG).map((spec) => [spec.name, [...spec.labels, ...('userLabels' in spec && spec.userLabels ? ['team', 'feature'] : [])].sort()]));
  assert.deepEqual([...listed.keys()].filter((name) => !expected.has(name)), [], 'listed but not exported');
  assert.deepEqual([...expected.keys()].filter((name) => !listed.has(name)), [], 'exported but not listed');
  for (const [name, labels] of expected) assert.deepEqual([...(listed.get(name) ?? [])].sort(), labels, `${name}: labels`);
});
