import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import type { CounterTotals } from '../../agent/ledger.js';
import type { SettlementCommit } from '../../agent/ledger-types.js';
import { LEDGER_MIGRATIONS, latestVersion, migrate } from '../../agent/migrations/index.js';
import { initialSchema } from '../../agent/migrations/001-initial.js';
import { TokenwattMetrics } from '../../exporters/prometheus/index.js';
import type { HourlyEnergyRow, HourlyUsageRow } from '../../model/rollup-types.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { parseExposition, sumOf } from '../exporters/prometheus-exposition.js';
import { RETENTION, T0, pruneAt, tempDir, tempLedger } from './temp-ledger.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const ALL = [epochMs(0), epochMs(Number.MAX_SAFE_INTEGER)] as const;
/** A prune at this time is past the retention of every row these tests write. */
const FAR_FUTURE = epochMs(T0 + 10_000 * DAY_MS);

/** Joules are summed in another order once carried, so they may differ in the last places. */
function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
}

/** Every counter field of the totals (not gpuIndex, which follows the periods' own retention). */
function assertSameTotals(actual: CounterTotals, expected: CounterTotals, why: string): void {
  assert.deepEqual(actual.gpus.map((g) => [g.gpuUuid, g.simulated]), expected.gpus.map((g) => [g.gpuUuid, g.simulated]), `${why}: GPUs`);
  expected.gpus.forEach((e, i) => {
    const a = actual.gpus[i]!;
    for (const k of ['measuredJ', 'idleJ', 'staticJ', 'dynamicJ', 'unattributedJ', 'estimatedJ', 'coveredMs'] as const) near(a[k], e[k], `${why}: ${e.gpuUuid} ${k}`);
  });
  const keyOf = (u: CounterTotals['usage'][number]): string => JSON.stringify([u.node, u.model, u.tier, u.cacheBucket, u.batchBucket, u.status, u.team, u.feature, u.simulated]);
  assert.deepEqual(actual.usage.map(keyOf), expected.usage.map(keyOf), `${why}: usage label sets`);
  expected.usage.forEach((e, i) => {
    const a = actual.usage[i]!;
    for (const k of ['requests', 'promptTokens', 'cachedTokens', 'completionTokens', 'reasoningTokens'] as const) assert.equal(a[k], e[k], `${why}: usage ${k}`);
    for (const k of ['staticJ', 'dynamicJ', 'prefillJ', 'decodeJ'] as const) near(a[k], e[k], `${why}: usage ${k}`);
  });
  near(actual.hostJ, expected.hostJ, `${why}: hostJ`);
  near(actual.hostByKind.measuredJ, expected.hostByKind.measuredJ, `${why}: host measured`);
  near(actual.hostByKind.estimatedJ, expected.hostByKind.estimatedJ, `${why}: host estimated`);
  assert.deepEqual(actual.quality, expected.quality, `${why}: quality`);
  assert.equal(actual.tasks.count, expected.tasks.count, `${why}: tasks.count`);
  assert.equal(actual.tasks.succeeded, expected.tasks.succeeded, `${why}: tasks.succeeded`);
  near(actual.tasks.joules, expected.tasks.joules, `${why}: tasks.joules`);
  near(actual.tasks.wasteJ, expected.tasks.wasteJ, `${why}: tasks.wasteJ`);
}

function energyRow(hourStartMs: number, gpuUuid: string, scale: number, simulated = false): HourlyEnergyRow {
  return {
    hourStartMs: epochMs(hourStartMs), node: 'node-a', gpuUuid, measuredJ: 100.1 * scale, idleJ: 20.3 * scale, staticJ: 30.7 * scale,
    dynamicJ: 49.1 * scale, unattributedJ: 0.3 * scale, estimatedJ: 1.9 * scale, coveredMs: 10_000, counterResets: 0, gaps: 1, simulated,
  };
}

function usageRow(hourStartMs: number, overrides: Partial<HourlyUsageRow> = {}): HourlyUsageRow {
  return {
    hourStartMs: epochMs(hourStartMs), node: 'node-a', model: 'llama-8b', tier: 'small', cacheBucket: 'partial', batchBucket: '2-4',
    status: 'ok', team: 'search', feature: '', requests: 3, promptTokens: 300, cachedTokens: 30, completionTokens: 60,
    reasoningTokens: 15, staticJ: 9.1, dynamicJ: 15.3, prefillJ: 6.7, decodeJ: 17.7, simulated: false, ...overrides,
  };
}

/** The 10 s period `i` (from T0), with rollups in the hour `hourOffset` hours after T0 and a task of its own. */
function settlement(i: number, hourOffset: number, status = 'ok'): SettlementCommit {
  const start = T0 + i * 10_000;
  const hour = T0 + hourOffset * HOUR_MS;
  return {
    periodStartMs: epochMs(start), periodEndMs: epochMs(start + 10_000), settledUntilMs: epochMs(start + 10_000),
    gpuTotals: [0, 1].map((g) => ({
      gpuUuid: `GPU-${g}`, gpuIndex: g, measuredJ: joules(100), idleJ: joules(20), staticJ: joules(30), dynamicJ: joules(50),
      unattributedJ: joules(0), residualJ: joules(0), estimatedJ: joules(0), coveredMs: 10_000, counterResets: 0, gaps: 0,
      samples: 100, idleBaselineW: watts(60), observedIdlePowerW: null, idleMs: 2000,
    })),
    requestDeltas: [], finalized: [],
    usageRows: [usageRow(hour), usageRow(hour, { team: 'ads', feature: 'chat', status: 'error', requests: 1, simulated: i % 2 === 0 })],
    energyRows: [energyRow(hour, 'GPU-0', 1 + i), energyRow(hour, 'GPU-1', 0.5, i === 1)],
    hostRows: [{ hourStartMs: epochMs(hour), node: 'node-a', hostJ: 40.2 + i, estimated: hourOffset !== 1 }],
    qualityRows: [{ hourStartMs: epochMs(hour), node: 'node-a', lateRecords: 1, rejectedRecords: 2 + i, sampleErrors: 3 }],
    taskDeltas: [{
      taskId: `task-${i}`, requests: 2, joules: 8.25 + i, wasteJ: status === 'ok' ? 0 : 1.5, completionTokens: 20,
      firstStartMs: epochMs(hour), lastEndMs: epochMs(hour + 1000), lastStatus: status, tier: 'small', team: 'search', feature: '',
    }],
  };
}

/** Five settlements over three hours, one of them failed, every rollup table and tasks touched. */
function settleSome(ledger: Ledger): void {
  [[0, 0, 'ok'], [1, 0, 'error'], [2, 1, 'ok'], [3, 2, 'ok'], [4, 2, 'ok']].forEach(([i, hour, status]) => {
    ledger.commitSettlement(settlement(i as number, hour as number, status as string));
  });
}

test('pruning every rollup and task leaves counterTotals() unchanged; hourly reads do not see the carried sums', (t) => {
  const { ledger, cleanup } = tempLedger();
  t.after(cleanup);
  settleSome(ledger);
  const before = ledger.counterTotals();
  assert.equal(before.gpus.length, 2);
  assert.deepEqual(before.gpus.map((g) => g.coveredMs), [50_000, 50_000]);
  assert.deepEqual(before.hostByKind, { measuredJ: 42.2, estimatedJ: 40.2 + 41.2 + 43.2 + 44.2 });
  assert.equal(before.usage.length, 2);
  assert.equal(before.tasks.count, 5);
  assert.equal(before.tasks.succeeded, 4);

  // First a prune that takes the first hour only (rows of the same key are carried twice: the
  // second carry adds to the first), then one that takes everything.
  const firstCut = epochMs(T0 + HOUR_MS + RETENTION.rollupsDays * DAY_MS);
  assert.ok(pruneAt(ledger, firstCut).rollups > 0);
  assertSameTotals(ledger.counterTotals(), before, 'after pruning the first hour');
  assert.deepEqual([...new Set(ledger.readHourlyEnergy(...ALL).map((r) => r.hourStartMs - T0))], [HOUR_MS, 2 * HOUR_MS]);

  const pruned = pruneAt(ledger, FAR_FUTURE);
  assert.ok(pruned.rollups > 0);
  for (const [name, rows] of Object.entries({
    energy: ledger.readHourlyEnergy(...ALL), usage: ledger.readHourlyUsage(...ALL), host: ledger.readHourlyHost(...ALL),
    quality: ledger.readHourlyQuality(...ALL), tasks: ledger.readTasks(...ALL),
  })) assert.deepEqual(rows, [], `no ${name} row is left, and the carried totals are not read as one`);

  const after = ledger.counterTotals();
  assertSameTotals(after, before, 'after pruning everything');
  assert.deepEqual(after.gpus.map((g) => g.gpuIndex), [null, null], 'the index still comes from the periods, pruned too');

  assert.deepEqual(pruneAt(ledger, FAR_FUTURE).rollups, 0);
  assertSameTotals(ledger.counterTotals(), before, 'a second prune carries nothing twice');

  // New settlements after the prune add on top of the carried totals.
  ledger.commitSettlement({ ...settlement(5, 24), settledUntilMs: epochMs(FAR_FUTURE + 10_000) });
  const grown = ledger.counterTotals();
  near(grown.gpus[0]!.measuredJ, before.gpus[0]!.measuredJ + 100.1 * 6, 'GPU-0 measured after a new settlement');
  assert.equal(grown.tasks.count, 6);
});

test('the carried totals survive a restart (a re-opened file)', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  settleSome(ledger);
  const before = ledger.counterTotals();
  pruneAt(ledger, FAR_FUTURE);
  ledger.close();
  const again = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => again.close());
  assertSameTotals(again.counterTotals(), before, 'after re-opening');
  const reader = Ledger.openReadOnly(path);
  t.after(() => reader.close());
  assertSameTotals(reader.counterTotals(), before, 'through a read-only connection');
});

test('the seeded GPU energy, covered time and host energy after a restart following a prune are not below the values before', async (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  settleSome(ledger);
  // What the agent does at start (Agent.init): seed the counters from the ledger.
  const seeded = async (l: Ledger): Promise<Map<string, number>> => {
    const metrics = new TokenwattMetrics({ now: () => T0 });
    metrics.seed(l.counterTotals());
    const families = parseExposition(await metrics.metrics());
    return new Map([
      ...['GPU-0', 'GPU-1'].flatMap((uuid) => [
        [`energy ${uuid}`, sumOf(families, 'tokenwatt_gpu_energy_joules_total', { uuid })],
        [`covered ${uuid}`, sumOf(families, 'tokenwatt_gpu_covered_seconds_total', { uuid })],
      ] as const),
      ['host rapl', sumOf(families, 'tokenwatt_host_energy_joules_total', { source: 'rapl', estimated: 'false' })],
      ['host configured', sumOf(families, 'tokenwatt_host_energy_joules_total', { source: 'configured', estimated: 'true' })],
    ]);
  };
  const before = await seeded(ledger);
  for (const [series, value] of before) assert.ok(value > 0, `${series} is seeded`);
  assert.ok(Math.abs(before.get('covered GPU-0')! - 50) < 1e-6, 'five 10 s settlements');
  pruneAt(ledger, FAR_FUTURE);
  ledger.close();
  const restarted = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => restarted.close());
  const after = await seeded(restarted);
  for (const [series, value] of before) assert.ok(after.get(series)! >= value, `${series}: ${after.get(series)} < ${value} would read as a counter reset`);
});

test('a version-1 ledger file opens, migrates to the latest version, keeps its rows and carries them on prune', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const path = join(dir, 'v1.db');
  const hour = T0;
  const v1 = new Database(path);
  v1.pragma('journal_mode = WAL');
  migrate(v1, [initialSchema], path);
  assert.equal(v1.pragma('user_version', { simple: true }), 1);
  v1.prepare(`INSERT INTO hourly_energy VALUES (?, 'node-a', 'GPU-0', 10, 2, 3, 5, 0, 0, 1000, 0, 0, 0)`).run(hour);
  v1.prepare(`INSERT INTO hourly_usage VALUES (?, 'node-a', 'm', 't', 'miss', '1', 'ok', '', '', 2, 20, 0, 4, 0, 1, 4, 1, 4, 0)`).run(hour);
  v1.prepare(`INSERT INTO hourly_host VALUES (?, 'node-a', 7, 1)`).run(hour);
  v1.prepare(`INSERT INTO hourly_quality VALUES (?, 'node-a', 1, 2, 3)`).run(hour);
  v1.prepare(`INSERT INTO tasks VALUES ('task-1', 'node-a', ?, ?, 2, 5, 0, 4, 'ok', 't', '', '')`).run(hour, hour + 1000);
  v1.close();
  // A reader (export) reads it as it is, unmigrated: version 2 and 3 only add tables it never reads.
  const reader = Ledger.openReadOnly(path);
  assert.equal(reader.schemaVersion(), 1);
  assert.equal(reader.counterTotals().hostJ, 7, 'without pruned_* tables the totals are the hourly sums');
  assert.equal(reader.readHourlyEnergy(...ALL).length, 1);
  reader.close();

  const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => ledger.close());
  assert.equal(ledger.schemaVersion(), latestVersion(LEDGER_MIGRATIONS));
  assert.ok(ledger.schemaVersion() >= 2, 'past the pruned-totals step');
  const before = ledger.counterTotals();
  assert.deepEqual(before.gpus.map((g) => [g.gpuUuid, g.measuredJ]), [['GPU-0', 10]]);
  assert.deepEqual(before.usage.map((u) => [u.requests, u.promptTokens, u.dynamicJ]), [[2, 20, 4]]);
  assert.equal(before.hostJ, 7);
  assert.deepEqual(before.quality, { lateRecords: 1, rejectedRecords: 2, sampleErrors: 3, acceptedRecords: 0, duplicateRecords: 0 });
  assert.deepEqual(before.tasks, { count: 1, succeeded: 1, joules: 5, wasteJ: 0 });
  assert.equal(pruneAt(ledger, FAR_FUTURE).rollups, 5);
  assertSameTotals(ledger.counterTotals(), before, 'a migrated file carries its pruned rows');
});

// --- property: random settlements and prunes; the totals are always everything ever settled ---

const NODES = ['node-a', 'node-b'];
const MODELS = ['m1', 'm2'];
const TEAMS = ['', 'search'];

interface Step {
  readonly kind: 'settle' | 'prune';
  /** Hours after T0 of the rollups (settle) or of the cut-off (prune). */
  readonly hour: number;
  readonly node: number;
  readonly model: number;
  readonly team: number;
  readonly j: number;
  readonly tokens: number;
  readonly ok: boolean;
  readonly simulated: boolean;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom<Step['kind']>('settle', 'settle', 'prune'),
  hour: fc.integer({ min: 0, max: 72 }),
  node: fc.integer({ min: 0, max: 1 }),
  model: fc.integer({ min: 0, max: 1 }),
  team: fc.integer({ min: 0, max: 1 }),
  j: fc.double({ min: 0, max: 1e6, noNaN: true }),
  tokens: fc.integer({ min: 0, max: 100_000 }),
  ok: fc.boolean(),
  simulated: fc.boolean(),
});

/** What the totals must be: the plain sum of everything settled. */
interface Expected {
  gpu: Map<string, { j: number; coveredMs: number; simulated: boolean }>;
  usage: Map<string, { requests: number; tokens: number; j: number }>;
  hostJ: number;
  rejected: number;
  tasks: number;
  succeeded: number;
  taskJ: number;
}

function settleStep(ledger: Ledger, i: number, s: Step, expected: Expected): void {
  const hour = T0 + s.hour * HOUR_MS;
  const node = NODES[s.node]!;
  const gpu = `GPU-${s.node}`;
  const usage = usageRow(hour, {
    node, model: MODELS[s.model]!, team: TEAMS[s.team]!, requests: 1, promptTokens: s.tokens, completionTokens: s.tokens,
    staticJ: s.j, dynamicJ: s.j, prefillJ: s.j, decodeJ: s.j, simulated: false,
  });
  ledger.commitSettlement({
    // Settlement only moves forward: after a prune (which settles up to its time first), later steps stay there.
    periodStartMs: epochMs(T0 + i * 1000), periodEndMs: epochMs(T0 + i * 1000 + 1000), settledUntilMs: epochMs(Math.max(T0 + i * 1000 + 1000, ledger.getSettledUntil() ?? 0)),
    gpuTotals: [], requestDeltas: [], finalized: [],
    usageRows: [usage],
    energyRows: [{ ...energyRow(hour, gpu, 1, s.simulated), node, measuredJ: s.j, idleJ: s.j, staticJ: s.j, dynamicJ: s.j, unattributedJ: s.j, estimatedJ: s.j }],
    hostRows: [{ hourStartMs: epochMs(hour), node, hostJ: s.j, estimated: s.ok }],
    qualityRows: [{ hourStartMs: epochMs(hour), node, lateRecords: 0, rejectedRecords: s.tokens, sampleErrors: 0 }],
    taskDeltas: [{
      taskId: `task-${i}`, requests: 1, joules: s.j, wasteJ: s.j, completionTokens: s.tokens, firstStartMs: epochMs(hour),
      lastEndMs: epochMs(hour), lastStatus: s.ok ? 'ok' : 'error', tier: 'small', team: '', feature: '',
    }],
  });
  const g = expected.gpu.get(gpu) ?? { j: 0, coveredMs: 0, simulated: false };
  expected.gpu.set(gpu, { j: g.j + s.j, coveredMs: g.coveredMs + 10_000, simulated: g.simulated || s.simulated });
  const key = JSON.stringify([node, usage.model, usage.team]);
  const u = expected.usage.get(key) ?? { requests: 0, tokens: 0, j: 0 };
  expected.usage.set(key, { requests: u.requests + 1, tokens: u.tokens + s.tokens, j: u.j + s.j });
  expected.hostJ += s.j;
  expected.rejected += s.tokens;
  expected.tasks += 1;
  expected.succeeded += s.ok ? 1 : 0;
  expected.taskJ += s.j;
}

function assertExpected(totals: CounterTotals, expected: Expected, why: string): void {
  assert.deepEqual(totals.gpus.map((g) => [g.gpuUuid, g.simulated]), [...expected.gpu].sort().map(([uuid, g]) => [uuid, g.simulated]), why);
  for (const g of totals.gpus) {
    const e = expected.gpu.get(g.gpuUuid)!;
    for (const k of ['measuredJ', 'idleJ', 'staticJ', 'dynamicJ', 'unattributedJ', 'estimatedJ'] as const) near(g[k], e.j, `${why}: ${g.gpuUuid} ${k}`);
    assert.equal(g.coveredMs, e.coveredMs, `${why}: ${g.gpuUuid} covered time`);
  }
  assert.equal(totals.usage.length, expected.usage.size, `${why}: usage label sets`);
  for (const u of totals.usage) {
    const e = expected.usage.get(JSON.stringify([u.node, u.model, u.team]))!;
    assert.equal(u.requests, e.requests, `${why}: requests`);
    assert.equal(u.promptTokens, e.tokens, `${why}: prompt tokens`);
    assert.equal(u.completionTokens, e.tokens, `${why}: completion tokens`);
    for (const k of ['staticJ', 'dynamicJ', 'prefillJ', 'decodeJ'] as const) near(u[k], e.j, `${why}: usage ${k}`);
  }
  near(totals.hostJ, expected.hostJ, `${why}: hostJ`);
  // By kind it is the whole (an hour is estimated once any of its host energy is).
  near(totals.hostByKind.measuredJ + totals.hostByKind.estimatedJ, expected.hostJ, `${why}: host by kind`);
  assert.equal(totals.quality.rejectedRecords, expected.rejected, `${why}: rejected records`);
  assert.equal(totals.tasks.count, expected.tasks, `${why}: tasks`);
  assert.equal(totals.tasks.succeeded, expected.succeeded, `${why}: succeeded tasks`);
  near(totals.tasks.joules, expected.taskJ, `${why}: task joules`);
  near(totals.tasks.wasteJ, expected.taskJ, `${why}: task waste`);
}

test('property: whatever is settled and pruned, in any order, counterTotals() is everything ever settled and never decreases', () => {
  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), (steps) => {
      const ledger = Ledger.open(':memory:', { node: 'node-a', retention: RETENTION });
      try {
        const expected: Expected = { gpu: new Map(), usage: new Map(), hostJ: 0, rejected: 0, tasks: 0, succeeded: 0, taskJ: 0 };
        let previous = ledger.counterTotals();
        steps.forEach((s, i) => {
          if (s.kind === 'settle') settleStep(ledger, i, s, expected);
          else {
            const cut = T0 + s.hour * HOUR_MS;
            pruneAt(ledger, epochMs(cut + RETENTION.rollupsDays * DAY_MS));
            assert.ok(ledger.readHourlyEnergy(...ALL).every((r) => r.hourStartMs >= cut), 'hourly reads hold only retained hours');
            assert.ok(ledger.readHourlyUsage(...ALL).every((r) => r.hourStartMs >= cut), 'hourly reads hold only retained hours');
          }
          const totals = ledger.counterTotals();
          assertExpected(totals, expected, `after step ${i} (${s.kind} at hour ${s.hour})`);
          for (const g of totals.gpus) {
            const was = previous.gpus.find((p) => p.gpuUuid === g.gpuUuid)?.measuredJ ?? 0;
            assert.ok(g.measuredJ + Math.abs(g.measuredJ) * 1e-9 >= was, `${g.gpuUuid} measured decreased: ${was} -> ${g.measuredJ}`);
          }
          assert.ok(totals.tasks.count >= previous.tasks.count && totals.hostJ + totals.hostJ * 1e-9 >= previous.hostJ, 'totals never decrease');
          previous = totals;
        });
      } finally {
        ledger.close();
      }
    }),
    { numRuns: 100 },
  );
});
