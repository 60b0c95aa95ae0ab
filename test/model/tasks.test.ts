import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addShares, emptyAccumulator, finalizeRequest, type RequestResult } from '../../model/request-result.js';
import type { RequestStatus } from '../../model/request-record.js';
import { aggregateTasks, jPerSuccessfulTask, supersededRequests, taskDeltas } from '../../model/tasks.js';
import { joules } from '../../model/units.js';
import { request, T0 } from './helpers.js';

function result(id: string, taskId: string | null, startS: number, endS: number, j: number, status: RequestStatus = 'ok', attempt: number | null = null, extra: { tier?: string; labels?: Record<string, string> } = {}): RequestResult {
  const record = request({ requestId: id, taskId, attempt, status, startMs: T0 + startS * 1000, endMs: T0 + endS * 1000, completionTokens: 10, ...extra });
  const acc = addShares(emptyAccumulator(), [{ requestId: id, gpuUuid: 'g', staticJ: joules(0), dynamicJ: joules(j), prefillJ: joules(0), decodeJ: joules(j), activeMs: 1, concurrencyMs: 1, estimated: false }]);
  return finalizeRequest(record, acc, { late: false });
}

test('a retried step: the failed attempt is waste, the task succeeds on the last attempt', () => {
  const [t] = aggregateTasks([
    result('s1', 't', 0, 1, 10, 'ok', 1),
    result('s2a1', 't', 2, 3, 20, 'error', 1),
    result('s2a2', 't', 4, 5, 30, 'ok', 2),
  ]);
  assert.ok(t);
  assert.equal(t.requests, 3);
  assert.equal(t.succeeded, true);
  assert.equal(t.joules, 60);
  assert.equal(t.wasteJ, 20);
  assert.equal(t.wasteShare, 20 / 60);
  assert.equal(t.completionTokens, 30);
  assert.equal(t.firstStartMs, T0);
  assert.equal(t.lastEndMs, T0 + 5000);
});

test('an ok attempt superseded by a retry is waste; the first step is not', () => {
  const rs = [result('a', 't', 0, 1, 10, 'ok'), result('b1', 't', 2, 3, 20, 'ok', 1), result('b2', 't', 4, 5, 30, 'ok', 2), result('b3', 't', 6, 7, 40, 'ok', 3)];
  assert.deepEqual([...supersededRequests(rs)].sort(), ['b1', 'b2']);
  assert.equal(aggregateTasks(rs)[0]?.wasteJ, 50);
});

test('the last request to end decides success; cancellations are waste', () => {
  const [t] = aggregateTasks([result('a', 't', 0, 5, 10, 'ok'), result('b', 't', 1, 6, 5, 'cancelled')]);
  assert.equal(t?.succeeded, false);
  assert.equal(t?.lastStatus, 'cancelled');
  assert.equal(t?.wasteJ, 5);
});

test('requests without a task are not tasks; the tier is the one with most energy', () => {
  const tasks = aggregateTasks([
    result('x', null, 0, 1, 100),
    result('a', 't', 0, 1, 10, 'ok', null, { tier: 'small' }),
    result('b', 't', 1, 2, 11, 'ok', null, { tier: 'large' }),
    result('c', 'u', 0, 1, 1),
  ]);
  assert.deepEqual(tasks.map((t) => [t.taskId, t.tier]), [['t', 'large'], ['u', 'default']]);
});

test('J per successful task counts every task\'s energy over the successes', () => {
  const tasks = aggregateTasks([result('a', 't1', 0, 1, 10), result('b', 't2', 0, 1, 30, 'error'), result('c', 't3', 0, 1, 20)]);
  assert.equal(jPerSuccessfulTask(tasks), 60 / 2);
  assert.equal(jPerSuccessfulTask([]), null);
  assert.equal(jPerSuccessfulTask(aggregateTasks([result('b', 't2', 0, 1, 30, 'error')])), null);
});

test('task deltas carry capped team/feature labels and the last status', () => {
  const seen: [string, string | undefined][] = [];
  const deltas = taskDeltas(
    [result('a', 't', 0, 1, 10, 'ok', null, { labels: { team: 'search' } }), result('b', 't', 1, 2, 5, 'error', null, { labels: { team: 'ads' } })],
    (name, value) => {
      seen.push([name, value]);
      return value === undefined ? '' : value.toUpperCase();
    },
  );
  assert.equal(deltas.length, 1);
  assert.equal(deltas[0]?.team, 'SEARCH'); // the first request's label
  assert.equal(deltas[0]?.feature, '');
  assert.equal(deltas[0]?.lastStatus, 'error');
  assert.equal(deltas[0]?.wasteJ, 5);
  assert.deepEqual(seen, [['team', 'search'], ['feature', undefined]]);
});
