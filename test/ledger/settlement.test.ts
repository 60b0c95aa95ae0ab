import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GpuPeriodTotals } from '../../model/attribution-types.js';
import type { HourlyUsageRow } from '../../model/rollup-types.js';
import { epochMs, joules, watts } from '../../model/units.js';
import type { SettlementCommit, TaskDelta } from '../../agent/ledger-types.js';
import { T0, dumpTables, never, request, tempLedger } from './temp-ledger.js';

const HOUR = Date.UTC(2026, 10, 1, 10);
const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

function gpuTotals(uuid: string, measured: number): GpuPeriodTotals {
  return {
    gpuUuid: uuid, gpuIndex: Number(uuid.slice(4)), measuredJ: joules(measured), idleJ: joules(measured * 0.2),
    staticJ: joules(measured * 0.3), dynamicJ: joules(measured * 0.5), unattributedJ: joules(0), residualJ: joules(0),
    estimatedJ: joules(0), coveredMs: 10_000, counterResets: 0, gaps: 0, samples: 100, idleBaselineW: watts(60),
    observedIdlePowerW: null, idleMs: 2000,
  };
}

function usage(overrides: Partial<HourlyUsageRow> = {}): HourlyUsageRow {
  return {
    hourStartMs: epochMs(HOUR), node: 'node-a', model: 'llama-8b', tier: 'small', cacheBucket: 'partial', batchBucket: '2-4',
    status: 'ok', team: 'search', feature: '', requests: 1, promptTokens: 100, cachedTokens: 10, completionTokens: 20,
    reasoningTokens: 5, staticJ: 3, dynamicJ: 5, prefillJ: 2, decodeJ: 6, simulated: false, ...overrides,
  };
}

function task(overrides: Partial<TaskDelta> = {}): TaskDelta {
  return {
    taskId: 'task-1', requests: 1, joules: 8, wasteJ: 0, completionTokens: 20, firstStartMs: epochMs(T0),
    lastEndMs: epochMs(T0 + 2000), lastStatus: 'ok', tier: 'small', team: 'search', feature: '', ...overrides,
  };
}

/** A commit for the 10 s period starting at T0 + offset, touching every table. */
function commit(offsetMs: number, overrides: Partial<SettlementCommit> = {}): SettlementCommit {
  const start = T0 + offsetMs;
  return {
    periodStartMs: epochMs(start),
    periodEndMs: epochMs(start + 10_000),
    gpuTotals: [gpuTotals('GPU-0', 100), gpuTotals('GPU-1', 50)],
    requestDeltas: [
      { requestId: 'req-1', staticJ: 1, dynamicJ: 2, prefillJ: 0.5, decodeJ: 2.5, activeMs: 1000, concurrencyMs: 2000, estimated: false, perGpuJ: { 'GPU-0': 3 } },
    ],
    finalized: [],
    usageRows: [usage()],
    energyRows: [{
      hourStartMs: epochMs(HOUR), node: 'node-a', gpuUuid: 'GPU-0', measuredJ: 100, idleJ: 20, staticJ: 30, dynamicJ: 50,
      unattributedJ: 0, estimatedJ: 1, coveredMs: 10_000, counterResets: 0, gaps: 1, simulated: false,
    }],
    hostRows: [{ hourStartMs: epochMs(HOUR), node: 'node-a', hostJ: 40, estimated: true }],
    qualityRows: [{ hourStartMs: epochMs(HOUR), node: 'node-a', lateRecords: 1, rejectedRecords: 2, sampleErrors: 0 }],
    taskDeltas: [],
    settledUntilMs: epochMs(start + 10_000),
    ...overrides,
  };
}

test('a settlement lands in every table it names, and settled_until moves with it', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1), request(2)], never);
  assert.equal(ledger.getSettledUntil(), null);
  ledger.commitSettlement(commit(0, {
    requestDeltas: [
      { requestId: 'req-1', staticJ: 1, dynamicJ: 2, prefillJ: 0.5, decodeJ: 2.5, activeMs: 1000, concurrencyMs: 2000, estimated: false, perGpuJ: { 'GPU-0': 3 } },
      { requestId: 'req-2', staticJ: 4, dynamicJ: 1, prefillJ: 1, decodeJ: 4, activeMs: 500, concurrencyMs: 500, estimated: true, perGpuJ: { 'GPU-1': 5 } },
    ],
    finalized: [{ requestId: 'req-1', joules: 3, jPerOutputToken: 0.15, observedBatchSize: 2, batchBucket: '2-4', cacheBucket: 'partial', settledAtMs: epochMs(T0 + 99) }],
    taskDeltas: [task()],
  }));
  assert.equal(ledger.getSettledUntil(), T0 + 10_000);

  const unsettled = ledger.loadUnsettledRequests();
  assert.deepEqual(unsettled.map((r) => r.record.requestId), ['req-2']);
  assert.deepEqual(unsettled[0]?.soFar, {
    requestId: 'req-2', staticJ: 4, dynamicJ: 1, prefillJ: 1, decodeJ: 4, activeMs: 500, concurrencyMs: 500, estimated: true, perGpuJ: { 'GPU-1': 5 },
  });
  const done = ledger.readRequests(...ALL).find((r) => r.record.requestId === 'req-1');
  assert.deepEqual(done?.final, { requestId: 'req-1', joules: 3, jPerOutputToken: 0.15, observedBatchSize: 2, batchBucket: '2-4', cacheBucket: 'partial', settledAtMs: T0 + 99 });

  const [energy] = ledger.readHourlyEnergy(...ALL);
  assert.equal(energy?.measuredJ, 100);
  assert.equal(ledger.readHourlyUsage(...ALL)[0]?.dynamicJ, 5);
  assert.deepEqual(ledger.readHourlyHost(...ALL), [{ hourStartMs: HOUR, node: 'node-a', hostJ: 40, estimated: true }]);
  assert.deepEqual(ledger.readHourlyQuality(...ALL), [{ hourStartMs: HOUR, node: 'node-a', lateRecords: 1, rejectedRecords: 2, sampleErrors: 0 }]);
  const [taskRow] = ledger.readTasks(...ALL);
  assert.equal(taskRow?.succeeded, true);
  assert.equal(taskRow?.node, 'node-a');

  const totals = ledger.counterTotals();
  assert.deepEqual(totals.gpus.map((g) => [g.gpuUuid, g.gpuIndex, g.measuredJ]), [['GPU-0', 0, 100]]);
  assert.equal(totals.usage[0]?.requests, 1);
  assert.equal(totals.hostJ, 40);
  assert.deepEqual(totals.tasks, { count: 1, succeeded: 1, joules: 8, wasteJ: 0 });
});

test('rollups and request running totals add up over settlements; flags stay set once set', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1)], never);
  ledger.commitSettlement(commit(0, {
    requestDeltas: [{ requestId: 'req-1', staticJ: 1, dynamicJ: 2, prefillJ: 3, decodeJ: 0, activeMs: 10, concurrencyMs: 20, estimated: true, perGpuJ: { 'GPU-0': 3 } }],
    usageRows: [usage({ simulated: true })],
  }));
  ledger.commitSettlement(commit(10_000, {
    requestDeltas: [{ requestId: 'req-1', staticJ: 10, dynamicJ: 20, prefillJ: 0, decodeJ: 30, activeMs: 100, concurrencyMs: 200, estimated: false, perGpuJ: { 'GPU-0': 7, 'GPU-1': 23 } }],
    usageRows: [usage({ requests: 2, dynamicJ: 7 }), usage({ team: 'ads' })],
  }));
  const soFar = ledger.requestEnergySoFar(['req-1', 'nope']);
  assert.deepEqual([...soFar.keys()], ['req-1']);
  assert.deepEqual(soFar.get('req-1'), {
    requestId: 'req-1', staticJ: 11, dynamicJ: 22, prefillJ: 3, decodeJ: 30, activeMs: 110, concurrencyMs: 220, estimated: true,
    perGpuJ: { 'GPU-0': 10, 'GPU-1': 23 },
  });
  const rows = ledger.readHourlyUsage(...ALL);
  assert.deepEqual(rows.map((r) => [r.team, r.requests, r.dynamicJ, r.simulated]), [['ads', 1, 5, false], ['search', 3, 12, true]]);
  const [energy] = ledger.readHourlyEnergy(...ALL);
  assert.deepEqual([energy?.measuredJ, energy?.gaps, energy?.coveredMs], [200, 2, 20_000]);
  assert.equal(ledger.readHourlyHost(...ALL)[0]?.hostJ, 80);
  assert.equal(ledger.readHourlyQuality(...ALL)[0]?.rejectedRecords, 4);
  assert.equal(ledger.counterTotals().gpus[0]?.measuredJ, 200);
});

test('tasks: sums add, first start is the earliest, and the latest-ending request decides success', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1)], never);
  const settle = (offset: number, delta: TaskDelta): void => ledger.commitSettlement(commit(offset, { requestDeltas: [], taskDeltas: [delta] }));
  settle(0, task({ lastEndMs: epochMs(T0 + 5000), lastStatus: 'error', joules: 4, wasteJ: 4, team: 'a' }));
  // Settled later but ended earlier: must not overwrite the status of the later attempt.
  settle(10_000, task({ firstStartMs: epochMs(T0 - 1000), lastEndMs: epochMs(T0 + 3000), lastStatus: 'ok', joules: 2, team: 'b' }));
  let [row] = ledger.readTasks(...ALL);
  assert.deepEqual([row?.requests, row?.joules, row?.wasteJ, row?.firstStartMs, row?.lastEndMs, row?.succeeded, row?.team],
    [2, 6, 4, T0 - 1000, T0 + 5000, false, 'a']);
  settle(20_000, task({ lastEndMs: epochMs(T0 + 9000), lastStatus: 'ok', joules: 1, team: 'c' }));
  [row] = ledger.readTasks(...ALL);
  assert.deepEqual([row?.requests, row?.joules, row?.lastEndMs, row?.succeeded, row?.team], [3, 7, T0 + 9000, true, 'c']);
  assert.deepEqual(ledger.readTasks(epochMs(T0), epochMs(T0 + 9000)), [], 'selected by last end, exclusive upper bound');
});

test('atomicity: a delta for a request the ledger lacks, late in the commit, leaves every table as it was', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1)], never);
  ledger.commitSettlement(commit(0));
  const before = dumpTables(path);
  assert.throws(
    () => ledger.commitSettlement(commit(10_000, {
      requestDeltas: [
        { requestId: 'req-1', staticJ: 1, dynamicJ: 1, prefillJ: 1, decodeJ: 1, activeMs: 1, concurrencyMs: 1, estimated: false, perGpuJ: { 'GPU-0': 2 } },
        { requestId: 'ghost', staticJ: 1, dynamicJ: 1, prefillJ: 1, decodeJ: 1, activeMs: 1, concurrencyMs: 1, estimated: false, perGpuJ: {} },
      ],
    })),
    /not applied: energy delta for request "ghost", which the ledger does not hold/,
  );
  assert.deepEqual(dumpTables(path), before);
  assert.equal(ledger.getSettledUntil(), T0 + 10_000);
});

test('atomicity: an exception thrown midway through the rollups rolls back the periods, deltas and everything else', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1), request(2)], never);
  const before = dumpTables(path);
  const usageRows: HourlyUsageRow[] = [usage()];
  Object.defineProperty(usageRows, 1, { enumerable: true, get: () => { throw new Error('injected failure'); } });
  assert.throws(
    () => ledger.commitSettlement(commit(0, {
      finalized: [{ requestId: 'req-2', joules: 1, jPerOutputToken: null, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0) }],
      usageRows,
      taskDeltas: [task()],
    })),
    /injected failure/,
  );
  assert.deepEqual(dumpTables(path), before);
  assert.equal(ledger.getSettledUntil(), null);
  assert.equal(ledger.loadUnsettledRequests().length, 2);
  // The ledger is still usable after the rollback.
  ledger.commitSettlement(commit(0));
  assert.equal(ledger.getSettledUntil(), T0 + 10_000);
});

test('a period settled twice, a request finalized twice and settled_until going backwards are refused whole', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1)], never);
  const fin = { requestId: 'req-1', joules: 1, jPerOutputToken: 0.05, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0) };
  ledger.commitSettlement(commit(0, { finalized: [fin] }));
  const before = dumpTables(path);
  assert.throws(() => ledger.commitSettlement(commit(0, { requestDeltas: [] })), /UNIQUE constraint failed: periods/);
  assert.throws(() => ledger.commitSettlement(commit(10_000, { requestDeltas: [], finalized: [fin] })), /cannot finalize request "req-1"/);
  assert.throws(
    () => ledger.commitSettlement(commit(20_000, { requestDeltas: [], settledUntilMs: epochMs(T0) })),
    /settled_until would move backwards/,
  );
  assert.deepEqual(dumpTables(path), before);
});

test('settle(): requests written one at a time commit with the period, and a failure of the writer callback mid-way rolls all of it back', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1), request(2)], never);
  const before = dumpTables(path);
  const period = { periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000) };
  const delta = (id: string) => ({ requestId: id, staticJ: 1, dynamicJ: 2, prefillJ: 1, decodeJ: 2, activeMs: 900, concurrencyMs: 900, estimated: false, perGpuJ: { 'GPU-0': 3 }, perGpuJTotal: { 'GPU-0': 3 } });
  const final = (id: string) => ({ requestId: id, joules: 3, jPerOutputToken: 0.15, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0) });
  const rollups = { usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [] };

  // The first request is written, then the caller's own computation throws: nothing of it stays.
  assert.throws(
    () => ledger.settle(period, (writer) => {
      writer.periodTotals([gpuTotals('GPU-0', 100)]);
      writer.request(delta('req-1'), final('req-1'));
      throw new Error('computing the next request failed');
    }),
    /settlement of \[\d+, \d+\) not applied: computing the next request failed/,
  );
  assert.deepEqual(dumpTables(path), before);
  assert.equal(ledger.getSettledUntil(), null);

  // Energy with the final figures of another request is refused, whole.
  assert.throws(() => ledger.settle(period, (writer) => writer.request(delta('req-1'), final('req-2'))), /written with the final figures of "req-2"/);
  assert.deepEqual(dumpTables(path), before);

  // The same writes, completed: one request finalized with its energy, the other given energy only.
  const returned = ledger.settle(period, (writer) => {
    writer.periodTotals([gpuTotals('GPU-0', 100)]);
    writer.request(delta('req-1'), final('req-1'));
    writer.request(delta('req-2'), null);
    writer.rollups(rollups);
    return 'done';
  });
  assert.equal(returned, 'done');
  assert.equal(ledger.getSettledUntil(), T0 + 10_000);
  const unsettled = ledger.loadUnsettledRequests();
  assert.deepEqual(unsettled.map((s) => s.record.requestId), ['req-2']);
  assert.equal(unsettled[0]?.soFar.staticJ, 1);
  assert.equal(ledger.readRequests(...ALL).find((s) => s.record.requestId === 'req-1')?.final?.joules, 3);
});

test('settle(): a request reached by the rowid read with it gets the same figures as one reached by its id, and a rowid of another request fails the settlement whole', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertRequests([request(1), request(2), request(3)], never);
  const pending = ledger.loadUnsettledStartingBefore(epochMs(Number.MAX_SAFE_INTEGER));
  const rowidOf = (id: string): number => {
    const row = pending.find((p) => p.record.requestId === id);
    assert.ok(row, id);
    return row.rowid;
  };
  assert.equal(new Set(pending.map((p) => p.rowid)).size, 3, 'each pending row carries its own rowid');
  const before = dumpTables(path);
  const period = { periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000) };
  const delta = (id: string) => ({ requestId: id, staticJ: 1, dynamicJ: 2, prefillJ: 1, decodeJ: 2, activeMs: 900, concurrencyMs: 900, estimated: false, perGpuJ: { 'GPU-0': 3 }, perGpuJTotal: { 'GPU-0': 3 } });
  const final = (id: string) => ({ requestId: id, joules: 3, jPerOutputToken: 0.15, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(T0) });

  // req-2's rowid with req-1's figures: no row matches both, so nothing is written.
  assert.throws(() => ledger.settle(period, (writer) => writer.request(delta('req-1'), final('req-1'), rowidOf('req-2'))), /cannot finalize request "req-1"/);
  assert.throws(() => ledger.settle(period, (writer) => writer.request(delta('req-1'), null, rowidOf('req-2'))), /energy delta for request "req-1"/);
  assert.throws(() => ledger.settle(period, (writer) => writer.request(null, final('req-1'), rowidOf('req-3'))), /cannot finalize request "req-1"/);
  assert.deepEqual(dumpTables(path), before);

  ledger.settle(period, (writer) => {
    writer.request(delta('req-1'), final('req-1'), rowidOf('req-1')); // energy and final figures, by rowid
    writer.request(delta('req-2'), final('req-2')); // the same, by id
    writer.request(delta('req-3'), null, rowidOf('req-3')); // energy only, by rowid
    writer.rollups({ usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [] });
  });
  const stored = new Map(ledger.readRequests(...ALL).map((s) => [s.record.requestId, s]));
  assert.deepEqual({ ...stored.get('req-1')?.final, requestId: 'x' }, { ...stored.get('req-2')?.final, requestId: 'x' });
  assert.deepEqual({ ...stored.get('req-1')?.soFar, requestId: 'x' }, { ...stored.get('req-2')?.soFar, requestId: 'x' });
  assert.equal(stored.get('req-1')?.soFar.staticJ, 1);
  assert.equal(stored.get('req-1')?.final?.joules, 3);
  assert.equal(stored.get('req-3')?.final, null);
  assert.deepEqual(ledger.loadUnsettledRequests().map((s) => [s.record.requestId, s.soFar.staticJ, s.soFar.perGpuJ]), [['req-3', 1, { 'GPU-0': 3 }]]);
  // A finalized row is not finalized again by rowid either.
  assert.throws(() => ledger.settle({ ...period, periodStartMs: epochMs(T0 + 10_000), periodEndMs: epochMs(T0 + 20_000), settledUntilMs: epochMs(T0 + 20_000) }, (writer) => writer.request(null, final('req-1'), rowidOf('req-1'))), /cannot finalize request "req-1"/);
});

test('loadUnsettledStartingBefore: each row as stored, its flags and its energy so far (read apart, only for rows that have some)', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  // Every combination of the three flags read as bits of one column.
  const records = [0, 1, 2, 3, 4, 5, 6, 7].map((bits) => request(bits + 1, { tokensEstimated: (bits & 1) !== 0, granularity: (bits & 2) !== 0 ? 'interval' : 'request' }));
  ledger.insertRequests(records, (r) => r.requestId === 'req-5' || r.requestId === 'req-8');
  const period = { periodStartMs: epochMs(T0), periodEndMs: epochMs(T0 + 10_000), settledUntilMs: epochMs(T0 + 10_000) };
  const none = { staticJ: 0, dynamicJ: 0, prefillJ: 0, decodeJ: 0, activeMs: 0, concurrencyMs: 0, estimated: false, perGpuJ: {} };
  const hour = T0 - 3_600_000;
  ledger.settle(period, (writer) => {
    writer.request({ ...none, requestId: 'req-2', staticJ: 1.25, dynamicJ: 2.5, prefillJ: 1, decodeJ: 1.5, activeMs: 900.5, concurrencyMs: 1800, perGpuJ: { 'GPU-0': 3.75 }, perGpuJTotal: { 'GPU-0': 3.75 } }, null);
    // Energy so far that is only a flag, only a before-end-hour part, or only active time: each one counts as some.
    writer.request({ ...none, requestId: 'req-3', estimated: true, perGpuJTotal: {} }, null);
    writer.request({ ...none, requestId: 'req-4', perGpuJTotal: {}, beforeEndHourJ: { [hour]: [0.5, 0.25, 0.5, 0.25] }, beforeEndHourJTotal: { [hour]: [0.5, 0.25, 0.5, 0.25] } }, null);
    writer.request({ ...none, requestId: 'req-8', activeMs: 10, perGpuJTotal: {} }, null);
    writer.rollups({ usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [] });
  });
  const pending = ledger.loadUnsettledStartingBefore(epochMs(Number.MAX_SAFE_INTEGER));
  assert.deepEqual(pending.map((p) => p.record), records, 'the records as stored');
  assert.deepEqual(pending.map((p) => p.late), [false, false, false, false, true, false, false, true], 'late as stored');
  const soFar = new Map(pending.map((p) => [p.record.requestId, p.soFar]));
  const empty = { ...none, beforeEndHourJ: {} };
  assert.deepEqual(soFar.get('req-1'), empty);
  assert.deepEqual(soFar.get('req-2'), { staticJ: 1.25, dynamicJ: 2.5, prefillJ: 1, decodeJ: 1.5, activeMs: 900.5, concurrencyMs: 1800, estimated: false, perGpuJ: { 'GPU-0': 3.75 }, beforeEndHourJ: {} });
  assert.deepEqual(soFar.get('req-3'), { ...empty, estimated: true });
  assert.deepEqual(soFar.get('req-4'), { ...empty, beforeEndHourJ: { [hour]: [0.5, 0.25, 0.5, 0.25] } });
  assert.deepEqual(soFar.get('req-8'), { ...empty, activeMs: 10 });
  for (const id of ['req-5', 'req-6', 'req-7']) assert.deepEqual(soFar.get(id), empty, id);
  // The same figures as the reader of whole rows.
  const whole = new Map(ledger.loadUnsettledRequests().map((s) => [s.record.requestId, s]));
  for (const p of pending) {
    const { requestId: _id, ...energy } = whole.get(p.record.requestId)?.soFar ?? { requestId: '' };
    const { beforeEndHourJ: _b, ...mine } = p.soFar;
    assert.deepEqual(mine, energy, p.record.requestId);
    assert.equal(p.late, whole.get(p.record.requestId)?.late, p.record.requestId);
  }
});
