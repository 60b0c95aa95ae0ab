import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./analysis-memory-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('analyze holds per-request results only as a few numbers: 300,000 one-request tasks fit in a 256 MB heap', { timeout: 180_000 }, () => {
  // The records themselves and the report's 300,000 task entries need ~180 MB here. Holding every
  // request's result object and grouping them into task lists at the end needed ~380 MB: the
  // child ran out of heap (exit 134) under this limit.
  const child = spawnSync(process.execPath, ['--max-old-space-size=256', '--import', 'tsx', CHILD, '300000'], { cwd: ROOT, encoding: 'utf8', timeout: 170_000 });
  assert.equal(child.status, 0, `exit ${child.status} ${child.signal ?? ''}: ${child.stderr.slice(-600)}`);
  assert.deepEqual(JSON.parse(child.stdout), { records: 300_000, tasks: 300_000, measuredJ: 6000 });
});
