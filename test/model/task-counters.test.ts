import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeOfTask, taskCloseIncrements, type CountedTask, type TaskNow } from '../../model/task-counters.js';

const label = (_name: string, value: string | undefined): string => value ?? '';

/** What the waste counter gets from a sequence of closes of one task, and what it then has of it. */
function wasteOver(closes: readonly TaskNow[]): { wasteJ: number; counted: CountedTask | null } {
  let counted: CountedTask | null = null;
  let wasteJ = 0;
  for (const now of closes) {
    const { close, after } = closeOfTask(now, counted);
    if (close !== null) for (const w of taskCloseIncrements(close, label, false).waste) wasteJ += w.joules;
    counted = after;
  }
  return { wasteJ, counted };
}

test('closes of a task whose outcome flips failed, ok, failed count its waste once', () => {
  const { wasteJ, counted } = wasteOver([
    { tier: 'gold', succeeded: false, joules: 10, wasteJ: 4 }, // 4 attempt + 6 task_failed
    { tier: 'gold', succeeded: true, joules: 15, wasteJ: 4 },
    { tier: 'gold', succeeded: false, joules: 20, wasteJ: 9 }, // 5 more attempt, task_failed 11: 5 more
  ]);
  assert.equal(wasteJ, 20);
  assert.deepEqual(counted, { tier: 'gold', succeeded: false, joules: 20, wasteJ: 9, failedJ: 11 });
});

test('energy counted as task_failed that a later retry makes attempt waste is not counted again', () => {
  // The 6 J ok step of the failed task becomes a superseded attempt after a 3 J ok retry.
  const { wasteJ, counted } = wasteOver([
    { tier: 'gold', succeeded: false, joules: 10, wasteJ: 4 },
    { tier: 'gold', succeeded: true, joules: 13, wasteJ: 10 },
  ]);
  // Its whole waste is now 10 J (4 + 6 attempt), all counted at the first close (4 attempt + 6 task_failed).
  assert.equal(wasteJ, 10);
  assert.deepEqual(counted, { tier: 'gold', succeeded: true, joules: 13, wasteJ: 4, failedJ: 6 });
});

test('a close after nothing was added counts nothing', () => {
  const now = { tier: 'gold', succeeded: false, joules: 10, wasteJ: 4 };
  const first = closeOfTask(now, null);
  assert.deepEqual(closeOfTask(now, first.after), { close: null, after: first.after });
});
