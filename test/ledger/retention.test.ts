import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SettlementCommit } from '../../agent/ledger-types.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { T0, never, request, tempLedger } from './temp-ledger.js';

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

  const pruned = ledger.prune(epochMs(now));
  assert.deepEqual(pruned, { samples: 2, requests: 1, periods: 2, rollups: 5, unsettledKept: 1 });
  assert.deepEqual(ledger.loadSamples('GPU-1', epochMs(0), epochMs(now)).map((s) => (now - s.timestampMs) / HOUR_MS), [47]);
  assert.deepEqual(ledger.readRequests(...ALL).map((r) => r.record.requestId).sort(), ['old-open', 'recent']);
  assert.deepEqual(ledger.readTasks(...ALL).map((r) => r.taskId), ['last-week', 'this-week']);
  assert.equal(ledger.readHourlyUsage(...ALL).length, 2);
  assert.equal(ledger.readHourlyEnergy(...ALL).length, 2);
  assert.equal(ledger.readHourlyHost(...ALL).length, 2);
  assert.equal(ledger.readHourlyQuality(...ALL).length, 2);
  assert.equal(ledger.counterTotals().gpus[0]?.measuredJ, 3, 'counters keep the pruned rollups (lifetime totals)');

  assert.deepEqual(ledger.prune(epochMs(now)), { samples: 0, requests: 0, periods: 0, rollups: 0, unsettledKept: 1 }, 'idempotent');
});
