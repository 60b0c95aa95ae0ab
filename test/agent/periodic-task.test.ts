import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { PeriodicTask } from '../../agent/periodic-task.js';

test('a tick is skipped while the previous run is still in progress', async () => {
  let runs = 0;
  let release!: () => void;
  const task = new PeriodicTask({
    name: 'slow', intervalMs: 1000, timeoutMs: 10_000, onError: () => assert.fail('no error expected'),
    run: () => { runs += 1; if (runs === 1) return new Promise<void>((resolve) => { release = resolve; }); return undefined; },
  });
  const first = task.tick();
  const second = task.tick();
  await sleep(1); // the run starts on a microtask
  assert.equal(runs, 1);
  assert.equal(task.skippedTicks, 1);
  release();
  await Promise.all([first, second]);
  await task.tick();
  assert.equal(runs, 2);
});

test('errors and timeouts go to the handler, never out of the loop', async () => {
  const errors: string[] = [];
  const failing = new PeriodicTask({ name: 'boom', intervalMs: 1000, timeoutMs: 1000, onError: (e) => errors.push(e.message), run: () => { throw new Error('kaput'); } });
  await failing.tick();
  const hanging = new PeriodicTask({ name: 'hang', intervalMs: 1000, timeoutMs: 20, onError: (e) => errors.push(e.message), run: () => sleep(200) });
  await hanging.tick();
  assert.deepEqual(errors, ['kaput', 'hang: run exceeded 20 ms']);
});

test('a run past its timeout still holds the loop: later ticks are skipped and stop() waits for it to end', async () => {
  const errors: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let finished = 0;
  const task = new PeriodicTask({
    name: 'slow', intervalMs: 1000, timeoutMs: 20, onError: (e) => errors.push(e.message),
    run: async () => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await sleep(150);
      inFlight -= 1;
      finished += 1;
    },
  });
  await task.tick(); // returns at the timeout, with the run still going
  assert.deepEqual(errors, ['slow: run exceeded 20 ms']);
  assert.equal(finished, 0);
  const skipped = task.tick();
  assert.equal(task.skippedTicks, 1, 'no second run while the first is still going');
  await task.stop();
  assert.equal(finished, 1, 'stop() waited for the run in progress');
  await skipped;
  assert.equal(maxInFlight, 1);
});

test('start runs on the interval and stop ends it', async () => {
  let runs = 0;
  const task = new PeriodicTask({ name: 'fast', intervalMs: 10, timeoutMs: 100, onError: () => {}, run: () => { runs += 1; } });
  task.start();
  await sleep(80);
  await task.stop();
  const after = runs;
  assert.ok(after >= 2, `expected several runs, got ${after}`);
  await sleep(40);
  assert.equal(runs, after, 'no run after stop');
});

test('an error handler that throws is reported as a warning, not left as an unhandled rejection that ends the process', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.message); };
  process.on('warning', onWarning);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
  process.on('unhandledRejection', onUnhandled);
  try {
    const task = new PeriodicTask({ name: 'settle', intervalMs: 1000, timeoutMs: 1000, onError: () => { throw new Error('logger closed'); }, run: () => { throw new Error('disk full'); } });
    await task.tick();
    await sleep(10); // warnings and unhandled rejections are emitted on later ticks of the loop
    assert.deepEqual(unhandled, []);
    assert.deepEqual(warnings, ['settle: the error handler threw (logger closed) on: disk full']);
  } finally {
    process.off('warning', onWarning);
    process.off('unhandledRejection', onUnhandled);
  }
});
