import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SettlementCommit } from '../../agent/ledger-types.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { T0, never, pruneAt, request, tempLedger } from './temp-ledger.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;

/** An empty settlement of [start, start + 1 s) with one row in every rollup table and one task, all at `start`. */
function settlementAt(start: number, taskId: string): SettlementCommit {
  const hour = epochMs(Math.floor(start / HOUR_MS) * HOUR_MS);
  return {
    periodStartMs: epochMs(start), periodEndMs: epochMs(start + 1000),
    gpuTotals: [{
      gpuUuid: 'GPU-0', gpuIndex: 0, measuredJ: joules(1), idleJ: joules(1), staticJ: joules(0), dynamicJ: joules(0),
      unattributedJ: joules(0), residualJ: joules(0), estimatedJ: joules(0), coveredMs: 1000, counterResets: 0, gaps: 0,
      samples: 2, idleBaselineW: null, observedIdlePowerW: watts(1), idleMs: 1000,
    }],
    requestDeltas: [], finalized: [],
    usageRows: [{
      hourStartMs: hour, node: 'n', model: 'm', tier: 't', cacheBucket: 'miss', batchBucket: '1', status: 'ok', team: '', feature: '',
      requests: 1, promptTokens: 1, cachedTokens: 0, completionTokens: 1, reasoningTokens: 0, staticJ: 0, dynamicJ: 1, prefillJ: 0, decodeJ: 1, simulated: false,
    }],
    energyRows: [{ hourStartMs: hour, node: 'n', gpuUuid: 'GPU-0', measuredJ: 1, idleJ: 1, staticJ: 0, dynamicJ: 0, unattributedJ: 0, estimatedJ: 0, coveredMs: 1000, counterResets: 0, gaps: 0, simulated: false }],
    hostRows: [{ hourStartMs: hour, node: 'n', hostJ: 1, estimated: false }],
    qualityRows: [{ hourStartMs: hour, node: 'n', lateRecords: 0, rejectedRecords: 0, sampleErrors: 1 }],
    taskDeltas: [{ taskId, requests: 1, joules: 1, wasteJ: 0, completionTokens: 1, firstStartMs: epochMs(start), lastEndMs: epochMs(start), lastStatus: 'ok', tier: 't', team: '', feature: '' }],
    settledUntilMs: epochMs(start + 1000),
  };
}

test('prune applies each retention to its own tables and never deletes an unfinalized request', (t) => {
  const { ledger, cleanup } = tempLedger({ retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(cleanup);
  const now = T0 + 500 * DAY_MS;
  // Samples 49 h and 47 h old, on two GPUs.
  ledger.insertSamples([49, 47].flatMap((h) => [0, 1].map((g) => ({
    timestampMs: epochMs(now - h * HOUR_MS), gpuUuid: `GPU-${g}`, gpuIndex: g, powerW: watts(1), energyJ: null,
  }))));
  // Requests ending 8 days ago (one finalized, one not) and 6 days ago (finalized).
  const old = now - 8 * DAY_MS;
  ledger.insertRequests([
    request(1, { requestId: 'old-final', endMs: epochMs(old), startMs: epochMs(old - 1000), firstTokenMs: null }),
    request(2, { requestId: 'old-open', endMs: epochMs(old), startMs: epochMs(old - 1000), firstTokenMs: null }),
    request(3, { requestId: 'recent', endMs: epochMs(now - 6 * DAY_MS), startMs: epochMs(now - 6 * DAY_MS - 1000), firstTokenMs: null }),
  ], never);
  // Rollups and periods 401, 8 and 6 days old: periods follow the request retention (7 d), rollups their own (400 d).
  const c401 = settlementAt(now - 401 * DAY_MS, 'ancient');
  const c8 = settlementAt(old, 'last-week');
  const c6 = settlementAt(now - 6 * DAY_MS, 'this-week');
  ledger.commitSettlement(c401);
  ledger.commitSettlement({ ...c8, finalized: [{ requestId: 'old-final', joules: 1, jPerOutputToken: 1, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(old) }] });
  ledger.commitSettlement({ ...c6, finalized: [{ requestId: 'recent', joules: 1, jPerOutputToken: 1, observedBatchSize: 1, batchBucket: '1', cacheBucket: 'miss', settledAtMs: epochMs(now) }] });

  const pruned = pruneAt(ledger, now);
  assert.deepEqual(pruned, { samples: 2, requests: 1, periods: 2, rollups: 5, unsettledKept: 1 });
  assert.deepEqual(ledger.loadSamples('GPU-1', epochMs(0), epochMs(now)).map((s) => (now - s.timestampMs) / HOUR_MS), [47]);
  assert.deepEqual(ledger.readRequests(...ALL).map((r) => r.record.requestId).sort(), ['old-open', 'recent']);
  assert.deepEqual(ledger.readTasks(...ALL).map((r) => r.taskId), ['last-week', 'this-week']);
  assert.equal(ledger.readHourlyUsage(...ALL).length, 2);
  assert.equal(ledger.readHourlyEnergy(...ALL).length, 2);
  assert.equal(ledger.readHourlyHost(...ALL).length, 2);
  assert.equal(ledger.readHourlyQuality(...ALL).length, 2);
  assert.equal(ledger.counterTotals().gpus[0]?.measuredJ, 3, 'counters keep the pruned rollups (lifetime totals)');

  assert.deepEqual(pruneAt(ledger, now), { samples: 0, requests: 0, periods: 0, rollups: 0, unsettledKept: 1 }, 'idempotent');
});

/** `n` samples of GPU-0, one every `stepMs` from `fromMs`. */
function samplesFrom(fromMs: number, stepMs: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({ timestampMs: epochMs(fromMs + i * stepMs), gpuUuid: 'GPU-0', gpuIndex: 0, powerW: watts(100), energyJ: null }));
}

test('prune never deletes samples that settlement still needs: those of unsettled time and of the period before settled_until', (t) => {
  // Settlement has stalled 2.5 h behind the clock; samples are kept for 1 h.
  const { ledger, cleanup } = tempLedger({ retention: { samplesHours: 1, requestsDays: 7, rollupsDays: 400 } });
  t.after(cleanup);
  const now = T0 + 10 * DAY_MS;
  const settled = now - 2.5 * HOUR_MS;
  ledger.commitSettlement({ ...settlementAt(settled - 1000, 'x'), settledUntilMs: epochMs(settled) });
  ledger.insertSamples(samplesFrom(now - 4 * HOUR_MS, 60_000, 4 * 60 + 1));
  const guard = { periodMs: 60_000, latenessMs: 2 * HOUR_MS };
  const pruned = ledger.prune(epochMs(now), guard);
  assert.equal(pruned.skipped, undefined);
  const left = ledger.loadSamples('GPU-0', epochMs(settled - 60_000), epochMs(now)).filter((s) => s.timestampMs >= settled - 60_000);
  assert.equal(left.length, 152, 'every sample from settled_until - one period to now is still there');
  assert.equal(left[0]?.timestampMs, settled - 60_000);
  assert.equal(ledger.earliestSampleMs('GPU-0'), settled - HOUR_MS, 'the 1 h retention counts back from settled_until, not from the clock');
  assert.equal(pruned.samples, 30);
});

test('prune is skipped while the clock is far ahead of settlement (a clock step forward): the ESG rollups survive', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  const now = T0 + 300 * DAY_MS;
  for (let d = 300; d >= 0; d -= 30) ledger.commitSettlement(settlementAt(now - d * DAY_MS - 10_000, `task-${d}`));
  ledger.insertSamples(samplesFrom(now - HOUR_MS, 60_000, 61));
  const hours = ledger.readHourlyEnergy(...ALL).length;
  const guard = { periodMs: 10_000, latenessMs: 120_000 };
  // The wall clock jumps a year ahead for one prune tick.
  const jumped = ledger.prune(epochMs(now + 366 * DAY_MS), guard);
  assert.match(jumped.skipped ?? '', /clock/);
  assert.equal(ledger.readHourlyEnergy(...ALL).length, hours, 'no rollup deleted');
  assert.equal(ledger.loadSamples('GPU-0', epochMs(0), epochMs(now)).length, 61, 'no sample deleted');
  assert.equal(ledger.readTasks(...ALL).length, 11);
  // At the right time the same prune applies: nothing here is past retention but the samples older than 48 h (none).
  const normal = ledger.prune(epochMs(now), guard);
  assert.equal(normal.skipped, undefined);
  assert.equal(ledger.readHourlyEnergy(...ALL).length, hours);
});

test('before the first settlement nothing is pruned: every stored sample is still unsettled', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  ledger.insertSamples(samplesFrom(T0 - 100 * HOUR_MS, HOUR_MS, 10));
  const pruned = ledger.prune(epochMs(T0), { periodMs: 10_000, latenessMs: 120_000 });
  assert.match(pruned.skipped ?? '', /nothing is settled/);
  assert.equal(ledger.loadSamples('GPU-0', epochMs(0), epochMs(T0)).length, 10);
});
