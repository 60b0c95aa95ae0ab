import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addShares, emptyAccumulator, finalizeRequest, type RequestResult } from '../../model/request-result.js';
import type { RequestStatus } from '../../model/request-record.js';
import { aggregateTasks, jPerSuccessfulTask, supersededRequests, taskDeltas, taskUpdates } from '../../model/tasks.js';
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

test('parallel steps: a retry supersedes the earlier attempt of its own step, not an ok request of another step', () => {
  const rs = [
    result('A1', 't', 0, 10, 100, 'error', 1), // step A fails
    result('B1', 't', 1, 3, 50, 'ok', 1), // step B, in flight beside A, never retried
    result('A2', 't', 11, 20, 100, 'ok', 2), // the retry of A1
  ];
  assert.deepEqual([...supersededRequests(rs)], ['A1']);
  const [t] = aggregateTasks(rs);
  assert.equal(t?.wasteJ, 100);
  assert.equal(t?.wasteShare, 100 / 250);
});

test('retry matching: the candidate that ended last by the retry\'s start; a hedged retry takes the latest started; no candidate falls back to the previous request', () => {
  // B1 (ok) ended after A2 started: A2 retries A1, which had ended.
  assert.deepEqual([...supersededRequests([result('A1', 't', 0, 4, 1, 'error', 1), result('B1', 't', 1, 9, 1, 'ok', 1), result('A2', 't', 5, 8, 1, 'ok', 2)])], ['A1']);
  // Nothing ended yet when the retry started: the latest started candidate.
  assert.deepEqual([...supersededRequests([result('A1', 't', 0, 9, 1, 'ok', 1), result('B1', 't', 1, 9, 1, 'ok', 1), result('B2', 't', 2, 8, 1, 'ok', 2)])], ['B1']);
  // Each attempt is superseded once: two retries of attempt 1 take two different requests.
  assert.deepEqual([...supersededRequests([result('A1', 't', 0, 1, 1, 'error', 1), result('B1', 't', 0, 2, 1, 'error', 1), result('A2', 't', 3, 4, 1, 'ok', 2), result('B2', 't', 3, 5, 1, 'ok', 2)])].sort(), ['A1', 'B1']);
  // Attempt 3 with no attempt 2 (a skipped number): the request just before it.
  assert.deepEqual([...supersededRequests([result('a', 't', 0, 1, 1, 'ok'), result('b', 't', 2, 3, 1, 'error', null), result('c', 't', 4, 5, 1, 'ok', 3)])], ['b']);
});

test('task updates over earlier requests: waste of an attempt settled before its retry, the whole task\'s tier and success', () => {
  const label = (_n: string, v: string | undefined): string => v ?? '';
  const first = [result('a1', 't', 0, 1, 10, 'ok', 1, { tier: 'large' })];
  const later = [result('a2', 't', 2, 3, 4, 'ok', 2, { tier: 'small' }), result('b', 't', 4, 5, 1, 'error', null, { tier: 'small' })];
  const [u] = taskUpdates(later, first, label);
  assert.ok(u);
  assert.equal(u.delta.requests, 2);
  assert.equal(u.delta.joules, 5);
  assert.equal(u.delta.wasteJ, 10 + 1, 'a1 became waste; b failed');
  assert.equal(u.delta.tier, 'large', 'the tier of most of the task\'s energy');
  assert.equal(u.delta.lastStatus, 'error');
  assert.equal(u.delta.firstStartMs, T0);
  assert.deepEqual(u.previous && [u.previous.joules, u.previous.wasteJ, u.previous.succeeded], [10, 0, true]);
  assert.deepEqual(aggregateTasks([...first, ...later])[0], u.summary);
  assert.deepEqual(taskDeltas(later, label, first), [u.delta]);
});
