import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { RequestStatus, ResolvedRequest } from '../../model/request-record.js';
import type { RequestResult } from '../../model/request-result.js';
import { isLateRecord } from '../../model/settlement-schedule.js';
import { aggregateTasks } from '../../model/tasks.js';
import { epochMs } from '../../model/units.js';
import { close, request, steadySamples } from '../model/helpers.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;
const IDLE_MS = 60_000;

interface TaskObservation { tier: string; succeeded: boolean; joules: number; wasteJ: number; continued?: boolean; failedJ?: number }

class TaskMetrics extends NullSettlementMetrics {
  finalized: RequestResult[] = [];
  tasks: TaskObservation[] = [];
  override requestsFinalized(rs: readonly RequestResult[]): void { this.finalized.push(...rs); }
  override taskFinalized(t: TaskObservation): void { this.tasks.push(t); }
  /** What tokenwatt_tasks_total, the task histogram's _sum and the waste counter add up to. */
  totals() {
    const counted = this.tasks.filter((t) => !t.continued);
    return {
      tasks: counted.length,
      succeeded: counted.filter((t) => t.succeeded).length,
      joules: this.tasks.reduce((s, t) => s + t.joules, 0),
      attemptWasteJ: this.tasks.reduce((s, t) => s + t.wasteJ, 0),
      failedJ: this.tasks.reduce((s, t) => s + (t.continued ? (t.failedJ ?? 0) : t.succeeded ? 0 : t.joules - t.wasteJ), 0),
    };
  }
}

/** A ledger in a temp dir, one GPU at a steady 300 W, and a settler that can be restarted over it. */
function harness(t: { after(fn: () => void): void }, opts: { latenessMs?: number; periodMs?: number } = {}) {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-tasks-'));
  const ledger = Ledger.open(join(dir, 'l.db'), { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
  t.after(() => {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const metrics = new TaskMetrics();
  const gpus = [{ uuid: 'gpu-0', index: 0, name: 'H100' }];
  const samples = steadySamples('gpu-0', T0, T0 + 700_000, 100, 300);
  const start = (nowMs?: number): Settler => {
    const settler = new Settler({
      ledger, metrics, gpus, node: 'n', periodMs: opts.periodMs ?? 10_000, latenessMs: opts.latenessMs ?? 0, attribution: DEFAULT_ATTRIBUTION_CONFIG,
      simulated: false, labelValue: (_n, v) => v ?? '', taskIdleMs: IDLE_MS, log: { info() {}, warn() {}, error() {}, debug() {} },
    });
    if (nowMs !== undefined) settler.restore(nowMs);
    settler.addSamples(samples);
    return settler;
  };
  const h = {
    ledger, metrics,
    settler: start(),
    ingest(rs: ResolvedRequest[]) { return ledger.insertRequests(rs, (r) => isLateRecord(r, h.settler.lateEdge())); },
    restart(nowMs: number) { h.settler = start(nowMs); },
    task(id = 't') { return ledger.readTasks(...ALL).find((r) => r.taskId === id); },
    /** aggregateTasks over every stored request of the task: what the row must say. */
    expected(id = 't') { return aggregateTasks(ledger.finalizedTaskRequests([id]))[0]; },
  };
  return h;
}

const req = (id: string, attempt: number | null, status: RequestStatus, startS: number, endS: number, extra: Partial<ResolvedRequest> = {}) =>
  request({ requestId: id, taskId: 't', attempt, status, startMs: T0 + startS * 1000, endMs: T0 + endS * 1000, promptTokens: 100, completionTokens: 100, ...extra });

test('D2: an ok attempt finalized a settlement before its retry is waste in the ledger task row, as in the metrics', (t) => {
  const h = harness(t);
  h.ingest([req('a1', 1, 'ok', 1, 5), req('a2', 2, 'ok', 12, 16)]);
  h.settler.settleDue(T0 + 200_000);
  const row = h.task();
  assert.ok(row);
  assert.ok(close(row.joules, 2400, 1e-9), `joules ${row.joules}`);
  assert.ok(close(row.wasteJ, 1200, 1e-9), `wasteJ ${row.wasteJ}: a1 is superseded by a2`);
  assert.equal(h.metrics.tasks.length, 1);
  assert.ok(close(h.metrics.tasks[0]?.wasteJ ?? 0, row.wasteJ));
});

test('D3: a successful last attempt that arrives late counts in its task (success, requests), not in the usage rollups', (t) => {
  const h = harness(t);
  h.ingest([req('a1', 1, 'error', 1, 5, { completionTokens: 10 })]);
  h.settler.settleDue(T0 + 20_000);
  const late = req('a2', 2, 'ok', 12, 16);
  assert.ok(isLateRecord(late, h.settler.lateEdge()));
  h.ingest([late]);
  h.settler.settleDue(T0 + 200_000);
  const row = h.task();
  assert.deepEqual(row && [row.requests, row.succeeded, row.completionTokens], [2, true, 110]);
  assert.ok(close(row?.wasteJ ?? NaN, 1200, 1e-9), 'the failed attempt is the waste');
  assert.deepEqual(h.metrics.tasks.map((x) => x.succeeded), [true], 'one task, succeeded');
  assert.deepEqual(h.metrics.finalized.map((r) => r.requestId), ['a1'], 'the energy-free late record stays out of the usage metrics');
  const usage = h.ledger.readHourlyUsage(...ALL);
  assert.equal(usage.reduce((s, u) => s + u.requests, 0), 1, 'and out of the usage rollups');
  assert.deepEqual(h.ledger.readHourlyQuality(...ALL).map((q) => q.lateRecords), [1]);
});

test('D4: a task whose retry comes after a pause longer than the idle close is counted once; its later energy is a continuation', (t) => {
  const h = harness(t);
  h.ingest([req('a1', 1, 'error', 1, 5)]);
  for (let now = T0 + 10_000; now <= T0 + 94_000; now += 1000) h.settler.settleDue(now);
  assert.equal(h.metrics.tasks.length, 1, 'closed after a minute without requests');
  h.ingest([req('a2', 2, 'ok', 95, 99)]);
  for (let now = T0 + 95_000; now <= T0 + 400_000; now += 1000) h.settler.settleDue(now);
  const row = h.task();
  assert.ok(row);
  assert.deepEqual([row.requests, row.succeeded], [2, true]);
  const m = h.metrics.totals();
  assert.equal(m.tasks, 1, 'tokenwatt_tasks_total counts the task once');
  assert.ok(close(m.joules, row.joules, 1e-9), `histogram sum ${m.joules} = ledger ${row.joules}`);
  assert.ok(close(m.attemptWasteJ + m.failedJ, row.wasteJ, 1e-9), `waste ${m.attemptWasteJ} + ${m.failedJ} = ledger ${row.wasteJ}`);
  assert.equal(h.metrics.tasks[1]?.continued, true);
});

test('D6: the ledger task tier is the tier of most of the task\'s energy, not of its last settlement', (t) => {
  const h = harness(t);
  h.ingest([
    req('b1', null, 'ok', 1, 9, { tier: 'large' }),
    req('b2', null, 'ok', 12, 12.1, { tier: 'small', promptTokens: 1, completionTokens: 1 }),
  ]);
  h.settler.settleDue(T0 + 400_000);
  assert.equal(h.task()?.tier, 'large');
  assert.deepEqual(h.metrics.tasks.map((x) => x.tier), ['large']);
});

test('restart: the task row stays whole, an open task is counted once by the new settler, a closed one continues', (t) => {
  const h = harness(t);
  h.ingest([req('a1', 1, 'ok', 1, 15), req('c1', 1, 'error', 1, 2, { taskId: 'c' })]);
  h.settler.settleDue(T0 + 70_000); // c closes (idle since T0 + 2 s); t does not yet
  assert.deepEqual(h.metrics.tasks.map((x) => x.succeeded), [false]);
  h.restart(T0 + 70_000);
  h.ingest([req('a2', 2, 'ok', 50, 66), req('c2', 2, 'ok', 60, 68, { taskId: 'c' })]);
  h.settler.settleDue(T0 + 400_000);
  for (const id of ['t', 'c']) {
    const [row, expected] = [h.task(id), h.expected(id)];
    assert.ok(row && expected);
    assert.deepEqual([row.requests, row.succeeded, row.tier], [expected.requests, expected.succeeded, expected.tier]);
    assert.ok(close(row.wasteJ, expected.wasteJ, 1e-9) && close(row.joules, expected.joules, 1e-9), id);
  }
  const a1 = h.ledger.finalizedTaskRequests(['t']).find((r) => r.requestId === 'a1');
  assert.ok(close(h.task('t')?.wasteJ ?? NaN, a1?.joules ?? NaN, 1e-9), 'a1, settled before the restart, is waste once a2 supersedes it');
  const m = h.metrics.totals();
  assert.equal(m.tasks, 2, 'each task counted once across the restart');
  const ledgerJ = (h.task('t')?.joules ?? 0) + (h.task('c')?.joules ?? 0);
  assert.ok(close(m.joules, ledgerJ, 1e-9), `histogram sum ${m.joules} = ledger ${ledgerJ}`);
});

test('property: for any tasks split across settlements, late arrivals and restarts, the ledger task rows equal aggregateTasks over their requests', (t) => {
  const statuses: RequestStatus[] = ['ok', 'ok', 'error', 'cancelled'];
  const arbRequest = fc.record({
    task: fc.integer({ min: 0, max: 3 }),
    attempt: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
    status: fc.constantFrom(...statuses),
    startS: fc.integer({ min: 0, max: 300 }),
    lengthS: fc.integer({ min: 0, max: 25 }),
    tier: fc.constantFrom('small', 'large'),
    arriveS: fc.integer({ min: 0, max: 400 }), // when ingest sees it (late when its time is settled by then)
  });
  const arbSteps = fc.array(fc.record({ atS: fc.integer({ min: 0, max: 450 }), restart: fc.boolean() }), { maxLength: 8 });
  let runs = 0;
  fc.assert(
    fc.property(fc.array(arbRequest, { minLength: 1, maxLength: 20 }), arbSteps, (specs, steps) => {
      runs += 1;
      const cleanups: (() => void)[] = [];
      try {
        const h = harness({ after: (fn) => cleanups.push(fn) });
        const records = specs.map((s, i) => ({
          arriveMs: T0 + Math.max(s.arriveS, s.startS + s.lengthS) * 1000,
          record: request({
            requestId: `r${i}`, taskId: `task-${s.task}`, attempt: s.attempt, status: s.status, tier: s.tier,
            startMs: T0 + s.startS * 1000, endMs: T0 + (s.startS + s.lengthS) * 1000, promptTokens: 10, completionTokens: 10,
          }),
        }));
        const events = [
          ...records.map((r) => ({ atMs: r.arriveMs, kind: 'ingest' as const, record: r.record })),
          ...steps.map((s) => ({ atMs: T0 + s.atS * 1000, kind: s.restart ? ('restart' as const) : ('settle' as const) })),
        ].sort((a, b) => a.atMs - b.atMs);
        for (const e of events) {
          if (e.kind === 'ingest') h.ingest([e.record]);
          else if (e.kind === 'restart') h.restart(e.atMs);
          else h.settler.settleDue(e.atMs);
        }
        h.settler.settleDue(T0 + 600_000);
        const rows = h.ledger.readTasks(...ALL).sort((a, b) => (a.taskId < b.taskId ? -1 : 1));
        const stored = h.ledger.finalizedTaskRequests(rows.map((r) => r.taskId));
        assert.equal(stored.length, records.length, 'every request is finalized and belongs to its task');
        const expected = aggregateTasks(stored);
        assert.deepEqual(rows.map((r) => r.taskId), expected.map((e) => e.taskId));
        rows.forEach((row, i) => {
          const e = expected[i];
          assert.ok(e);
          const at = `${row.taskId}: ${JSON.stringify(row)} vs ${JSON.stringify(e)}`;
          assert.equal(row.requests, e.requests, at);
          assert.equal(row.succeeded, e.succeeded, at);
          assert.equal(row.tier, e.tier, at);
          assert.equal(row.firstStartMs, e.firstStartMs, at);
          assert.equal(row.lastEndMs, e.lastEndMs, at);
          assert.equal(row.completionTokens, e.completionTokens, at);
          assert.ok(close(row.joules, e.joules, 1e-9, 1e-6), at);
          assert.ok(close(row.wasteJ, e.wasteJ, 1e-9, 1e-6), at);
        });
        if (!steps.some((s) => s.restart)) {
          // Without a restart: every task counted once, and the metric sums are the ledger's.
          const m = h.metrics.totals();
          assert.equal(m.tasks, rows.length);
          assert.ok(close(m.joules, rows.reduce((s, r) => s + r.joules, 0), 1e-9, 1e-6));
        }
      } finally {
        for (const fn of cleanups.reverse()) fn();
      }
    }),
    { numRuns: 40, seed: 20261102 },
  );
  assert.equal(runs >= 40, true);
  t.diagnostic(`${runs} runs`);
});

test('D7b: a task that goes on from its row after retention deleted its requests, open at a restart, is not counted again', (t) => {
  const periodMs = 60_000;
  const h = harness(t, { periodMs });
  const { ledger, metrics } = h;
  h.ingest([req('a1', 1, 'ok', 10, 20)]);
  while (h.settler.settleDue(T0 + 700_000) > 0);
  assert.equal(metrics.totals().tasks, 1);

  const D8 = T0 + 8 * 86_400_000;
  const later = steadySamples('gpu-0', D8, D8 + 1_200_000, 1000, 300);
  h.settler.addSamples(later);
  while (h.settler.settleDue(D8) > 0);
  assert.ok(ledger.prune(epochMs(D8), { periodMs, latenessMs: 0 }).requests >= 1);
  assert.deepEqual(ledger.finalizedTaskRequests(['t']), [], 'the first attempt is gone');
  h.ingest([req('a2', 2, 'ok', 8 * 86_400 + 10, 8 * 86_400 + 20)]);
  // a2 is finalized, the task not idle yet: open again, going on from its row, when the agent restarts.
  while (h.settler.settleDue(D8 + periodMs) > 0);
  assert.equal(metrics.tasks.length, 1, 'not closed again yet');
  h.restart(D8 + periodMs);
  h.settler.addSamples(later);
  while (h.settler.settleDue(D8 + 1_200_000) > 0);

  const row = h.task();
  assert.deepEqual(row && [row.requests, row.succeeded], [2, true]);
  const m = metrics.totals();
  assert.equal(m.tasks, 1, 'tokenwatt_tasks_total counts the task once, across the restart');
  assert.equal(metrics.tasks[1]?.continued, true, 'the close after the restart is a continuation');
  assert.ok(close(m.joules, row?.joules ?? NaN, 1e-9), `histogram sum ${m.joules} = ledger ${row?.joules}`);
  assert.equal(ledger.counterTotals().taskSeries.reduce((n, s) => n + s.count, 0), 1, 'the ledger\'s sums too');
});

test('D7: a task that goes on after retention deleted its earlier requests goes on from its row: counted once, its energy added', (t) => {
  const periodMs = 600_000;
  const h = harness(t, { periodMs });
  const { ledger, metrics, settler } = h;
  h.ingest([req('a1', 1, 'ok', 10, 20)]);
  while (settler.settleDue(T0 + 700_000) > 0);
  assert.equal(metrics.totals().tasks, 1);
  const firstJ = h.task()?.joules ?? NaN;

  // Eight days on: the daily prune has deleted a1 (requestsDays 7); the task row stays (rollupsDays 400).
  const D8 = T0 + 8 * 86_400_000;
  settler.addSamples(steadySamples('gpu-0', D8, D8 + 1_200_000, 1000, 300));
  while (settler.settleDue(D8) > 0);
  assert.ok(ledger.prune(epochMs(D8), { periodMs, latenessMs: 0 }).requests >= 1);
  assert.deepEqual(ledger.finalizedTaskRequests(['t']), [], 'the first attempt is gone');
  h.ingest([req('a2', 2, 'ok', 8 * 86_400 + 10, 8 * 86_400 + 20)]);
  while (settler.settleDue(D8 + 1_200_000) > 0);

  const row = h.task();
  assert.deepEqual(row && [row.requests, row.succeeded], [2, true]);
  const m = metrics.totals();
  assert.equal(m.tasks, 1, 'tokenwatt_tasks_total counts the task once');
  assert.equal(metrics.tasks[1]?.continued, true, 'the second close is a continuation');
  assert.ok(close(m.joules, row?.joules ?? NaN, 1e-9), `histogram sum ${m.joules} = ledger ${row?.joules}`);
  assert.ok(close(row?.joules ?? NaN, 2 * firstJ, 1e-9), 'both attempts\' energy');
  assert.equal(ledger.counterTotals().tasks.count, 1);
  // Its attempts are gone, so the retry cannot make the first one waste: the row's waste stays.
  assert.equal(row?.wasteJ, 0);
});
