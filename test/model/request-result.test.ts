import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestPeriodShare } from '../../model/attribution-types.js';
import {
  addShares,
  emptyAccumulator,
  finalizeRequest,
  isFinalAfter,
  toEnergyDelta,
  toFinalizedRequest,
} from '../../model/request-result.js';
import { epochMs, joules } from '../../model/units.js';
import { request, T0 } from './helpers.js';

function share(gpuUuid: string, staticJ: number, dynamicJ: number, activeMs: number, concurrencyMs: number, estimated = false): RequestPeriodShare {
  return {
    requestId: 'r',
    gpuUuid,
    staticJ: joules(staticJ),
    dynamicJ: joules(dynamicJ),
    prefillJ: joules(staticJ),
    decodeJ: joules(dynamicJ),
    activeMs,
    concurrencyMs,
    estimated,
  };
}

test('shares add up across periods and GPUs, per GPU too, without touching the input', () => {
  const empty = emptyAccumulator();
  const acc = addShares(addShares(empty, [share('g0', 1, 2, 100, 300)]), [share('g0', 3, 4, 100, 100), share('g1', 5, 6, 200, 400, true)]);
  assert.deepEqual(acc, {
    staticJ: 9, dynamicJ: 12, prefillJ: 9, decodeJ: 12, activeMs: 400, concurrencyMs: 800, estimated: true,
    perGpuJ: { g0: 10, g1: 11 }, beforeEndHourJ: {},
  });
  assert.deepEqual(empty, emptyAccumulator());
});

test('an energy delta carries the sums of the shares, split by GPU', () => {
  const shares = [share('g0', 1, 2, 100, 300), share('g1', 3, 4, 100, 100)];
  const delta = toEnergyDelta('r', shares);
  assert.equal(delta.requestId, 'r');
  assert.deepEqual(delta.perGpuJ, { g0: 3, g1: 7 });
  const { requestId: _id, ...sums } = delta;
  const { beforeEndHourJ: _hours, ...accumulated } = addShares(emptyAccumulator(), shares);
  assert.deepEqual(sums, accumulated);
  assert.deepEqual(toEnergyDelta('r', shares, { g0: 10 }).perGpuJTotal, { g0: 10 }, 'running totals ride along when given');
});

test('finalize: totals, J/token, observed batch size and buckets', () => {
  const record = request({ requestId: 'r', startMs: T0, endMs: T0 + 1000, promptTokens: 100, cachedTokens: 95, completionTokens: 20, gpus: ['g0', 'g1'] });
  const acc = addShares(emptyAccumulator(), [share('g1', 10, 30, 1000, 3500), share('g0', 10, 30, 1000, 2500)]);
  const result = finalizeRequest(record, acc, { late: false });
  assert.equal(result.joules, 80);
  assert.equal(result.jPerOutputToken, 4);
  assert.equal(result.observedBatchSize, 3); // (3500 + 2500) / 2000
  assert.equal(result.batchSizeSource, 'observed');
  assert.equal(result.batchBucket, '2-4');
  assert.equal(result.cacheBucket, 'hit');
  assert.deepEqual(Object.keys(result.perGpuJ), ['g0', 'g1']);
  assert.equal(result.late, false);
  const finalized = toFinalizedRequest(result, epochMs(T0 + 5000));
  assert.equal(finalized.joules, 80);
  assert.equal(finalized.settledAtMs, T0 + 5000);
});

test('finalize: the engine batch size wins; no completion tokens => no J/token; zero length => batch 1', () => {
  const engine = finalizeRequest(request({ requestId: 'e', startMs: T0, endMs: T0 + 10, batchSize: 40, completionTokens: 0 }), addShares(emptyAccumulator(), [share('g', 1, 1, 10, 10)]), { late: true });
  assert.equal(engine.observedBatchSize, 40);
  assert.equal(engine.batchSizeSource, 'engine');
  assert.equal(engine.batchBucket, '17-64');
  assert.equal(engine.jPerOutputToken, null);
  assert.equal(engine.late, true);
  const point = finalizeRequest(request({ requestId: 'p', startMs: T0, endMs: T0, completionTokens: 3 }), emptyAccumulator(), { late: false });
  assert.equal(point.observedBatchSize, 1);
  assert.equal(point.joules, 0);
});

test('a request is final once the period holding its end (or its instant) is settled', () => {
  const r = { startMs: epochMs(T0), endMs: epochMs(T0 + 1000) };
  assert.equal(isFinalAfter(r, T0 + 999), false);
  assert.equal(isFinalAfter(r, T0 + 1000), true); // a point at its end belongs to (a, end]
  const point = { startMs: epochMs(T0 + 1000), endMs: epochMs(T0 + 1000) };
  assert.equal(isFinalAfter(point, T0 + 1000), false); // [T0+1000, ...) holds it
  assert.equal(isFinalAfter(point, T0 + 1001), true);
});
