import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import Database from '../../agent/sqlite-driver.js';
import { Settler } from '../../agent/settler.js';
import { LabelCapper } from '../../exporters/prometheus/label-capper.js';
import { TokenwattMetrics } from '../../exporters/prometheus/tokenwatt-metrics.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { RequestStatus, ResolvedRequest } from '../../model/request-record.js';
import { isLateRecord } from '../../model/settlement-schedule.js';
import { epochMs } from '../../model/units.js';
import { parseExposition } from '../exporters/prometheus-exposition.js';
import { close, request, steadySamples } from '../model/helpers.js';

/**
 * tokenwatt_tasks_total and tokenwatt_waste_energy_joules_total go on from the ledger after a
 * restart, series for series: the settlement that closes a task adds what it counts to the
 * ledger's sums in its own transaction, and a restart seeds the counters from them.
 */

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } as const;
const gpus = [{ uuid: 'gpu-0', index: 0, name: 'H100' }];
const samples = steadySamples('gpu-0', T0, T0 + 700_000, 100, 300);
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/** One agent process over a ledger file: its own capper, metrics and settler, as Agent.init builds them. */
function processOn(path: string, nowMs: number, labelCap: number, taskIdleMs = 60_000, log: typeof quiet = quiet) {
  const ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  const capper = new LabelCapper(labelCap);
  for (const [label, values] of ledger.getAdmittedLabelValues() ?? []) capper.preload(label, values);
  const metrics = new TokenwattMetrics({ capper });
  metrics.seed(ledger.counterTotals());
  const settler = new Settler({
    ledger, metrics, gpus, node: 'n', periodMs: 10_000, latenessMs: 0, attribution: DEFAULT_ATTRIBUTION_CONFIG, simulated: false,
    labelValue: (name, value) => capper.value(name, value), labelCap: capper, taskIdleMs, log,
  });
  settler.restore(nowMs);
  settler.addSamples(samples);
  return {
    ledger, metrics, settler,
    ingest(rs: ResolvedRequest[]) { ledger.insertRequests(rs, (r) => isLateRecord(r, settler.lateEdge())); },
    settleTo(fromMs: number, toMs: number) { for (let now = fromMs; now <= toMs; now += 1000) settler.settleDue(now); },
  };
}

const req = (id: string, task: string, tier: string, attempt: number, status: RequestStatus, startS: number, endS: number) =>
  request({ requestId: id, taskId: task, tier, attempt, status, startMs: T0 + startS * 1000, endMs: T0 + endS * 1000, promptTokens: 100, completionTokens: 100 });

// Closed before the restart: a task whose first attempt failed (attempt waste), a failed task of
// another tier (task_failed waste), which folds into "(other)" past a cap of one tier.
const BEFORE = [req('a1', 't1', 'gold', 1, 'error', 1, 5), req('a2', 't1', 'gold', 2, 'ok', 6, 10), req('b1', 't2', 'silver', 1, 'error', 2, 8)];
// Closed after it, in the same series.
const AFTER = [req('c1', 't3', 'gold', 1, 'error', 100, 104), req('c2', 't3', 'gold', 2, 'ok', 105, 109), req('d1', 't4', 'bronze', 1, 'error', 110, 115)];

/** Each series of a counter, by its labels. */
async function seriesOf(metrics: TokenwattMetrics, name: string): Promise<Map<string, number>> {
  const family = parseExposition(await metrics.metrics()).get(name);
  return new Map((family?.samples ?? []).map((s) => [JSON.stringify(Object.entries(s.labels).sort()), s.value]));
}

function tempPath(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-task-counters-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'l.db');
}

test('task and waste counters go on from the ledger after a kill, series for series, as if the process had run on', async (t) => {
  // The same traffic without a restart: what the counters must show at the end.
  const reference = processOn(tempPath(t), T0, 1);
  t.after(() => reference.ledger.close());
  reference.ingest(BEFORE);
  reference.settleTo(T0 + 10_000, T0 + 90_000);
  reference.ingest(AFTER);
  reference.settleTo(T0 + 91_000, T0 + 400_000);

  const path = tempPath(t);
  const first = processOn(path, T0, 1);
  first.ingest(BEFORE);
  first.settleTo(T0 + 10_000, T0 + 90_000);
  const tasksBefore = await seriesOf(first.metrics, 'tokenwatt_tasks_total');
  const wasteBefore = await seriesOf(first.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.equal([...tasksBefore.values()].reduce((a, b) => a + b, 0), 2, 'both tasks closed before the kill');
  assert.ok(wasteBefore.size >= 2, 'attempt and task_failed waste');
  assert.ok([...tasksBefore.keys()].some((k) => k.includes('(other)')), 'a tier folded past the cap');
  // Killed: nothing more runs in that process; the ledger holds what its settlements committed.
  first.ledger.close();

  const second = processOn(path, T0 + 90_000, 1);
  t.after(() => second.ledger.close());
  const tasksSeeded = await seriesOf(second.metrics, 'tokenwatt_tasks_total');
  const wasteSeeded = await seriesOf(second.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual(tasksSeeded, tasksBefore, 'tasks_total goes on from its value, series for series');
  assert.deepEqual([...wasteSeeded.keys()].sort(), [...wasteBefore.keys()].sort());
  for (const [labels, value] of wasteBefore) {
    const seeded = wasteSeeded.get(labels) ?? NaN;
    assert.ok(seeded >= value && close(seeded, value), `waste ${labels}: ${seeded} after the restart, ${value} before`);
  }

  second.ingest(AFTER);
  second.settleTo(T0 + 91_000, T0 + 400_000);
  const tasks = await seriesOf(second.metrics, 'tokenwatt_tasks_total');
  const waste = await seriesOf(second.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual(tasks, await seriesOf(reference.metrics, 'tokenwatt_tasks_total'), 'nothing lost, nothing counted twice');
  const wasteReference = await seriesOf(reference.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual([...waste.keys()].sort(), [...wasteReference.keys()].sort());
  for (const [labels, value] of wasteReference) assert.ok(close(waste.get(labels) ?? NaN, value), `waste ${labels}: ${waste.get(labels)} vs ${value}`);

  // The ledger's sums are what the process counted.
  const totals = second.ledger.counterTotals();
  const key = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort());
  const bool = (b: boolean): string => (b ? 'true' : 'false');
  assert.deepEqual(new Map(totals.taskSeries.map((s) => [key({ tier: s.tier, succeeded: bool(s.succeeded), simulated: bool(s.simulated) }), s.count])), tasks);
  const stored = new Map(totals.wasteSeries.map((s) => [key({ tier: s.tier, reason: s.reason, simulated: bool(s.simulated) }), s.joules]));
  assert.deepEqual([...stored.keys()].sort(), [...waste.keys()].sort());
  for (const [labels, value] of waste) assert.ok(close(stored.get(labels) ?? NaN, value), `ledger waste ${labels}: ${stored.get(labels)} vs ${value}`);
});

test('the ledger\'s task and waste sums equal the counters exactly, and pruning the task rows leaves them whole', async (t) => {
  const p = processOn(tempPath(t), T0, 50);
  t.after(() => p.ledger.close());
  p.ingest([...BEFORE, ...AFTER]);
  p.settleTo(T0 + 10_000, T0 + 400_000);
  const totals = p.ledger.counterTotals();
  const waste = await seriesOf(p.metrics, 'tokenwatt_waste_energy_joules_total');
  // One process from 0: the stored sums are the same floats the counters reached.
  assert.deepEqual(
    totals.wasteSeries.map((s) => s.joules).sort(),
    [...waste.values()].sort(),
  );
  assert.deepEqual(totals.taskSeries.map((s) => [s.tier, s.succeeded, s.count]), [['bronze', false, 1], ['gold', true, 2], ['silver', false, 1]]);
  // Past rollup retention the task rows go; these sums stay (lifetime totals).
  const later = T0 + (RETENTION.rollupsDays + 1) * 86_400_000;
  p.ledger.commitSettlement({
    periodStartMs: epochMs(later - 1), periodEndMs: epochMs(later), settledUntilMs: epochMs(later),
    gpuTotals: [], requestDeltas: [], finalized: [], usageRows: [], energyRows: [], hostRows: [], qualityRows: [], taskDeltas: [],
  });
  assert.ok(p.ledger.prune(epochMs(later)).rollups > 0, 'the task rows were pruned');
  const after = p.ledger.counterTotals();
  assert.deepEqual([after.taskSeries, after.wasteSeries], [totals.taskSeries, totals.wasteSeries]);
});

test('a settlement that fails after its tasks closed writes no counts and counts nothing; the retry counts them once', async (t) => {
  const ledger = Ledger.open(tempPath(t), { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const capper = new LabelCapper(50);
  const metrics = new TokenwattMetrics({ capper });
  let failAt: number | null = null;
  let bump = 0;
  // The last write of a settlement that stores the admitted labels: made to fail once, in the settlement that closes the tasks.
  const labelCap = {
    get revision() { return capper.revision + bump++; },
    admitted() {
      if (failAt !== null && settler.settledUntil !== null && settler.settledUntil >= failAt) {
        failAt = null;
        throw new Error('disk I/O error');
      }
      return capper.admitted();
    },
  };
  const settler = new Settler({
    ledger, metrics, gpus, node: 'n', periodMs: 10_000, latenessMs: 0, attribution: DEFAULT_ATTRIBUTION_CONFIG, simulated: false,
    labelValue: (name, value) => capper.value(name, value), labelCap, taskIdleMs: 60_000, log: quiet,
  });
  settler.addSamples(samples);
  ledger.insertRequests(BEFORE, (r) => isLateRecord(r, settler.lateEdge()));
  for (let now = T0 + 10_000; now <= T0 + 60_000; now += 1000) settler.settleDue(now);
  assert.equal((await seriesOf(metrics, 'tokenwatt_tasks_total')).size, 0, 'no task closed yet');
  // The settlement of [60 s, 70 s) closes t1 (last end 10 s): it fails, and is applied on the next tick.
  failAt = T0 + 60_000;
  assert.throws(() => settler.settleDue(T0 + 70_000), /not applied: disk I\/O error/);
  assert.deepEqual(ledger.counterTotals().taskSeries, [], 'nothing of the failed settlement in the ledger');
  assert.equal((await seriesOf(metrics, 'tokenwatt_tasks_total')).size, 0, 'nor in the counters');
  for (let now = T0 + 70_000; now <= T0 + 120_000; now += 1000) settler.settleDue(now);
  const tasks = await seriesOf(metrics, 'tokenwatt_tasks_total');
  assert.equal([...tasks.values()].reduce((a, b) => a + b, 0), 2, 'each task counted once');
  assert.deepEqual(ledger.counterTotals().taskSeries.map((s) => [s.tier, s.succeeded, s.count]), [['gold', true, 1], ['silver', false, 1]]);
});

// Closed before the restart, then reopened by more requests, and still open when the agent
// restarts: t5 succeeded (attempt waste), t6 failed with an ok step (task_failed waste) in silver.
const FIRST = [
  req('e1', 't5', 'gold', 1, 'error', 1, 5), req('e2', 't5', 'gold', 2, 'ok', 6, 10),
  req('f1', 't6', 'silver', 1, 'ok', 2, 5), req('f2', 't6', 'silver', 1, 'error', 6, 8),
];
// More of both after they closed (at 70 s): t5 another failed attempt; t6 an ok step and a failed
// one in gold, more energy than its silver ones, so its row's tier and outcome are not those counted.
const REOPEN = [
  req('e3', 't5', 'gold', 1, 'error', 100, 104), req('e4', 't5', 'gold', 2, 'ok', 105, 110),
  req('f3', 't6', 'gold', 1, 'ok', 100, 108), req('f4', 't6', 'gold', 1, 'error', 109, 112),
];

/**
 * FIRST closes, REOPEN reopens both tasks, the agent restarts while they are open, and they close
 * again: the counters must end as those of a run without the restart. `beforeUpgrade`: the first
 * close left nothing on the rows (a ledger of schema 13 then), as if it closed before the upgrade.
 */
async function reopenedAtRestart(t: { after(fn: () => void): void }, beforeUpgrade: boolean): Promise<void> {
  const reference = processOn(tempPath(t), T0, 50);
  t.after(() => reference.ledger.close());
  reference.ingest(FIRST);
  reference.settleTo(T0 + 10_000, T0 + 90_000);
  reference.ingest(REOPEN);
  reference.settleTo(T0 + 91_000, T0 + 400_000);
  const referenceTasks = await seriesOf(reference.metrics, 'tokenwatt_tasks_total');
  assert.deepEqual([...referenceTasks.values()], [1, 1], 'each task counted once, without a restart');

  const path = tempPath(t);
  const first = processOn(path, T0, 50);
  first.ingest(FIRST);
  first.settleTo(T0 + 10_000, T0 + 90_000);
  assert.equal([...(await seriesOf(first.metrics, 'tokenwatt_tasks_total')).values()].reduce((a, b) => a + b, 0), 2, 'both closed');
  if (beforeUpgrade) {
    const db = new Database(path);
    db.prepare('UPDATE tasks SET counted_tier = NULL, counted_succeeded = NULL, counted_joules = NULL, counted_waste_j = NULL, counted_failed_j = NULL').run();
    db.close();
  }
  first.ingest(REOPEN);
  // Settled past the reopening requests' ends, not past their idle time: both are open again.
  first.settleTo(T0 + 91_000, T0 + 130_000);
  const row = first.ledger.readTasks(epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)).find((r) => r.taskId === 't6');
  assert.deepEqual(row && [row.tier, row.succeeded], ['gold', false], 'the row has t6\'s final tier');
  first.ledger.close();

  const second = processOn(path, T0 + 130_000, 50);
  t.after(() => second.ledger.close());
  second.settleTo(T0 + 131_000, T0 + 400_000);
  assert.deepEqual(await seriesOf(second.metrics, 'tokenwatt_tasks_total'), referenceTasks, 'neither task counted a second time');
  const waste = await seriesOf(second.metrics, 'tokenwatt_waste_energy_joules_total');
  const wasteReference = await seriesOf(reference.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual([...waste.keys()].sort(), [...wasteReference.keys()].sort(), 'the same waste series (the tier and outcome counted at the close)');
  for (const [labels, value] of wasteReference) assert.ok(close(waste.get(labels) ?? NaN, value), `waste ${labels}: ${waste.get(labels)} vs ${value}`);
}

test('a task that closed, reopened and is open at a restart counts only what it added since its close, as if the process had run on', async (t) => {
  await reopenedAtRestart(t, false);
});

test('a task that closed before the upgrade to ledger schema 14 and reopened after it, open at a restart, is not counted again either', async (t) => {
  await reopenedAtRestart(t, true);
});

test('a restart with a longer task idle time (a raised settle lateness) does not count again the tasks that closed before it', async (t) => {
  const path = tempPath(t);
  const first = processOn(path, T0, 50);
  first.ingest([...BEFORE, ...FIRST]);
  // Closed at 70 s (idle 60 s); 90 s on, they ended less than 5 min ago.
  first.settleTo(T0 + 10_000, T0 + 90_000);
  const tasksBefore = await seriesOf(first.metrics, 'tokenwatt_tasks_total');
  const wasteBefore = await seriesOf(first.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.equal([...tasksBefore.values()].reduce((a, b) => a + b, 0), 4, 'all four closed');
  first.ledger.close();

  const second = processOn(path, T0 + 90_000, 50, 300_000);
  t.after(() => second.ledger.close());
  second.settleTo(T0 + 91_000, T0 + 600_000);
  assert.deepEqual(await seriesOf(second.metrics, 'tokenwatt_tasks_total'), tasksBefore, 'each task still counted once');
  const waste = await seriesOf(second.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual([...waste.keys()].sort(), [...wasteBefore.keys()].sort());
  for (const [labels, value] of wasteBefore) assert.ok(close(waste.get(labels) ?? NaN, value), `waste ${labels}: ${waste.get(labels)} vs ${value}`);
});

const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

/**
 * FIRST ends at 10 s and is open at the stop (90 s, idle 300 s); the restart lowers the idle time
 * to 60 s. `more`: requests the second process gets (t5 goes on).
 */
async function loweredAtRestart(t: { after(fn: () => void): void }, more: ResolvedRequest[]) {
  const path = tempPath(t);
  const first = processOn(path, T0, 50, 300_000);
  first.ingest(FIRST);
  first.settleTo(T0 + 10_000, T0 + 90_000);
  assert.equal(total(await seriesOf(first.metrics, 'tokenwatt_tasks_total')), 0, 'both open at the stop');
  first.ledger.close();
  const second = processOn(path, T0 + 90_000, 50, 60_000);
  t.after(() => second.ledger.close());
  second.ingest(more);
  second.settleTo(T0 + 91_000, T0 + 600_000);
  return second;
}

test('a restart with a shorter task idle time (a lowered settle lateness) counts the tasks open at the stop, as a run with the shorter one would', async (t) => {
  const reference = processOn(tempPath(t), T0, 50, 60_000);
  t.after(() => reference.ledger.close());
  reference.ingest(FIRST);
  reference.settleTo(T0 + 10_000, T0 + 600_000);
  const second = await loweredAtRestart(t, []);
  assert.deepEqual(await seriesOf(second.metrics, 'tokenwatt_tasks_total'), await seriesOf(reference.metrics, 'tokenwatt_tasks_total'), 'both counted once');
  const waste = await seriesOf(second.metrics, 'tokenwatt_waste_energy_joules_total');
  const wasteReference = await seriesOf(reference.metrics, 'tokenwatt_waste_energy_joules_total');
  assert.deepEqual([...waste.keys()].sort(), [...wasteReference.keys()].sort());
  for (const [labels, value] of wasteReference) assert.ok(close(waste.get(labels) ?? NaN, value), `waste ${labels}: ${waste.get(labels)} vs ${value}`);
  assert.equal(second.ledger.getTaskIdleMs(), 60_000, 'the idle time the settlements now use is stored');
});

test('... and a task open at the stop that goes on after such a restart is counted once, not taken as a continuation', async (t) => {
  const second = await loweredAtRestart(t, [req('e3', 't5', 'gold', 3, 'ok', 200, 210)]);
  const tasks = await seriesOf(second.metrics, 'tokenwatt_tasks_total');
  assert.equal(total(tasks), 2, `t5 and t6 each counted once: ${JSON.stringify([...tasks])}`);
});

test('a task whose outcome flips failed, ok, failed over three closes never counts a joule as waste twice', async (t) => {
  // Without and with a restart while it is open after each reopen: the same counters.
  const run = async (restarts: boolean) => {
    const path = tempPath(t);
    let p = processOn(path, T0, 50);
    const step = (rs: ResolvedRequest[], fromS: number, toS: number) => {
      if (restarts && fromS > 10) {
        p.ledger.close();
        p = processOn(path, T0 + (fromS - 1) * 1000, 50);
      }
      p.ingest(rs);
      p.settleTo(T0 + fromS * 1000, T0 + toS * 1000);
    };
    step([req('g1', 't7', 'gold', 1, 'ok', 1, 5), req('g2', 't7', 'gold', 1, 'error', 6, 8)], 10, 90); // closes failed
    step([req('g3', 't7', 'gold', 2, 'ok', 100, 104)], 91, 190); // closes again: ok now
    step([req('g4', 't7', 'gold', 1, 'error', 200, 204)], 191, 400); // and again: failed
    const row = p.ledger.readTasks(epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)).find((r) => r.taskId === 't7');
    assert.ok(row && !row.succeeded && row.joules > 0);
    const waste = await seriesOf(p.metrics, 'tokenwatt_waste_energy_joules_total');
    // Every request but the ok g3 is waste at the end, g1 (an ok step of a failed task) as task_failed:
    // the counters have the task's whole waste, once.
    assert.ok(close(total(waste), row.wasteJ + (row.joules - row.wasteJ)), `waste counted ${total(waste)} J, the task's energy ${row.joules} J`);
    assert.equal(total(await seriesOf(p.metrics, 'tokenwatt_tasks_total')), 1);
    const out = { waste, joules: row.joules };
    p.ledger.close();
    return out;
  };
  const once = await run(false);
  const restarted = await run(true);
  assert.deepEqual([...restarted.waste.keys()].sort(), [...once.waste.keys()].sort());
  for (const [labels, value] of once.waste) assert.ok(close(restarted.waste.get(labels) ?? NaN, value), `waste ${labels}: ${restarted.waste.get(labels)} vs ${value}`);
});

test('a hand-edited counted_succeeded or counted_tier of a task open at a restart is reported by task and column, and the task counted whole', async (t) => {
  // A tier stored as a blob (the bytes of "gold") is not text: read through String() it was a tier of its own.
  for (const [column, value] of [['counted_succeeded', "'yes'"], ['counted_succeeded', '2'], ['counted_tier', "X'676f6c64'"]] as const) {
    const path = tempPath(t);
    const first = processOn(path, T0, 50);
    first.ingest(FIRST);
    first.settleTo(T0 + 10_000, T0 + 90_000); // both closed
    first.ingest([req('e3', 't5', 'gold', 3, 'ok', 100, 104)]);
    first.settleTo(T0 + 91_000, T0 + 120_000); // t5 reopened, open
    first.ledger.close();
    const db = new Database(path);
    db.prepare(`UPDATE tasks SET ${column} = ${value} WHERE task_id = 't5'`).run();
    db.close();
    const warnings: string[] = [];
    const second = processOn(path, T0 + 120_000, 50, 60_000, { ...quiet, warn(_o: unknown, msg?: string) { warnings.push(String(msg)); } } as typeof quiet);
    second.settleTo(T0 + 121_000, T0 + 300_000);
    assert.ok(warnings.some((w) => w.includes('task "t5"') && w.includes(column) && w.includes('counted whole')), `${column} = ${value}: ${JSON.stringify(warnings)}`);
    assert.equal(total(await seriesOf(second.metrics, 'tokenwatt_tasks_total')), 3, 't5 counted again, whole, as the warning says');
    second.ledger.close();
  }
});
