import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { epochMs } from '../../model/units.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { rollupsOf } from '../../exporters/esg/rollup-source.js';
import { aggregateUsageInParts, aggregateUsageInWorkers, usageParts } from '../../exporters/esg/parallel-usage-aggregate.js';
import { prepareEsgReport } from '../../exporters/esg/build-esg-report.js';
import { aggregateTasksInSqlite, aggregateUsageInSqlite, usageTotalsInSqlite } from '../../exporters/esg/sqlite-usage-aggregate.js';
import { RETENTION, writeLedger } from './ledger-fixture.js';
import { makeRollups } from './rollup-fixtures.js';

const T0 = Date.UTC(2026, 6, 1);
const PERIOD = { fromMs: T0, toMs: Date.UTC(2026, 9, 1), label: '2026-Q3' };

function numbersClose(a: unknown, b: unknown, path = ''): void {
  if (typeof a === 'number' && typeof b === 'number') {
    assert.ok(Math.abs(a - b) <= 1e-8 * Math.max(1, Math.abs(b)), `${path}: ${a} != ${b}`);
    return;
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) numbersClose((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    return;
  }
  assert.deepEqual(a, b, path);
}

describe('usage and task sums inside SQLite', () => {
  let dir = '';
  let path = '';
  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-sql-'));
    path = writeLedger(join(dir, 'l.db'), 'node-a', makeRollups({ fromMs: T0, hours: 24 * 3 + 5, gpus: 3, seed: 21, idleHours: [4, 40], skipHours: [50] }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function reports(): { streamed: EsgReport; summed: EsgReport; usedSql: boolean } {
    const carbon = parseCarbonConfig({ region: 'IE', pue: 1.3, market: { instruments: [{ kind: 'rec', coverageShare: 0.2, source: 'RECs' }] } });
    assert.ok(carbon.ok);
    const ledger = Ledger.openReadOnly(path);
    const db = new Database(path, { readonly: true });
    let usedSql = false;
    try {
      const base = { carbon: carbon.config, period: PERIOD, toolVersion: 't', generatedAt: '2026-10-02T00:00:00.000Z' };
      const streamed = buildEsgReport({ ...rollupsOf(ledger, PERIOD), ...base });
      const summed = buildEsgReport({
        ...rollupsOf(ledger, PERIOD),
        usageAggregator: (factors) => {
          const aggregate = aggregateUsageInSqlite(db, PERIOD, factors);
          usedSql = aggregate !== null;
          return aggregate;
        },
        tasks: [],
        taskAggregates: aggregateTasksInSqlite(db, PERIOD),
        usageTotals: usageTotalsInSqlite(db, PERIOD),
        ...base,
      });
      return { streamed, summed, usedSql };
    } finally {
      db.close();
      ledger.close();
    }
  }

  it('gives the same report as streaming the rows', () => {
    const { streamed, summed, usedSql } = reports();
    assert.ok(usedSql, 'the SQLite sums were used');
    // 14 label keys, and each of the 6 dimensions' unallocated row (the idle hours).
    assert.equal(summed.breakdowns.filter((b) => b.by !== 'month').length, 14 + 6);
    const strip = (r: EsgReport) => ({ ...r, content_sha256: '' });
    numbersClose(strip(summed), strip(streamed));
  });

  it('sums the same in worker threads as in parts on one thread, to the last bit', async () => {
    // Both parts hold data: days 0-1 on this thread, days 2-3 in the worker.
    const FOUR_DAYS = { fromMs: T0, toMs: T0 + 4 * 86_400_000, label: 'four days' };
    const carbon = parseCarbonConfig({ region: 'IE' });
    assert.ok(carbon.ok);
    const ledger = Ledger.openReadOnly(path);
    const db = new Database(path, { readonly: true });
    try {
      const prepared = prepareEsgReport({ ...rollupsOf(ledger, FOUR_DAYS), carbon: carbon.config, period: FOUR_DAYS, toolVersion: 't', generatedAt: '2026-10-02T00:00:00.000Z' });
      const inWorkers = await aggregateUsageInWorkers(db, path, FOUR_DAYS, prepared.factors);
      const inParts = aggregateUsageInParts(db, FOUR_DAYS, prepared.factors);
      assert.ok(inWorkers !== null && inParts !== null);
      assert.deepEqual([...inWorkers.dailyByTier.keys()], ['2026-07-01', '2026-07-02', '2026-07-03', '2026-07-04']);
      assert.deepEqual(inWorkers, inParts);
      assert.equal(prepared.finish(inWorkers).content_sha256, prepareEsgReport({ ...rollupsOf(ledger, FOUR_DAYS), carbon: carbon.config, period: FOUR_DAYS, toolVersion: 't', generatedAt: 'x' }).finish(inParts).content_sha256);
    } finally {
      db.close();
      ledger.close();
    }
  });

  it('cuts the period into whole days, in order, covering it exactly', () => {
    const parts = usageParts({ fromMs: T0, toMs: T0 + 92 * 86_400_000, label: 'q' }, 3);
    assert.deepEqual(parts.map((p) => (p.toMs - p.fromMs) / 86_400_000), [30, 31, 31]);
    assert.equal(parts[0]?.fromMs, T0);
    assert.equal(parts.at(-1)?.toMs, T0 + 92 * 86_400_000);
    for (let i = 1; i < parts.length; i += 1) assert.equal(parts[i]?.fromMs, parts[i - 1]?.toMs);
  });

  it('cuts a period that does not start at midnight on UTC midnights, so that each day and month gets its own usage', async () => {
    // Noon on June 30 to noon on July 2: three UTC days and two months, none of them whole.
    const start = Date.UTC(2026, 5, 30, 12);
    const period = { fromMs: start, toMs: start + 48 * 3_600_000, label: 'unaligned' };
    const unaligned = writeLedger(join(dir, 'unaligned.db'), 'node-a', makeRollups({ fromMs: start - 12 * 3_600_000, hours: 72, gpus: 2, seed: 5 }));
    const carbon = parseCarbonConfig({ region: 'IE' });
    assert.ok(carbon.ok);
    const ledger = Ledger.openReadOnly(unaligned);
    const db = new Database(unaligned, { readonly: true });
    try {
      const base = { carbon: carbon.config, period, toolVersion: 't', generatedAt: '2026-10-02T00:00:00.000Z' };
      const streamed = buildEsgReport({ ...rollupsOf(ledger, period), ...base });
      const prepared = prepareEsgReport({ ...rollupsOf(ledger, period), ...base });
      const inSql = aggregateUsageInSqlite(db, period, prepared.factors);
      const inWorkers = await aggregateUsageInWorkers(db, unaligned, period, prepared.factors);
      assert.ok(inSql !== null && inWorkers !== null);
      assert.deepEqual([...inSql.dailyByTier.keys()], ['2026-06-30', '2026-07-01', '2026-07-02']);
      assert.deepEqual([...inSql.months.keys()], ['2026-06', '2026-07']);
      assert.deepEqual([...inWorkers.months.keys()], ['2026-06', '2026-07']);
      const june = streamed.breakdowns.find((b) => b.by === 'month' && b.key === '2026-06');
      assert.ok(june !== undefined && (june.completion_tokens ?? 0) > 0, 'the reference path has June usage');
      const strip = (r: EsgReport) => ({ ...r, content_sha256: '' });
      numbersClose(strip(prepared.finish(inSql)), strip(streamed));
      numbersClose(strip(prepared.finish(inWorkers)), strip(streamed));
    } finally {
      db.close();
      ledger.close();
    }
  });

  it('never splits a UTC day between two parts', () => {
    const start = Date.UTC(2026, 6, 1, 7);
    const parts = usageParts({ fromMs: start, toMs: start + 5 * 86_400_000, label: 'q' }, 2);
    assert.deepEqual(parts.map((p) => [new Date(p.fromMs).toISOString(), new Date(p.toMs).toISOString()]), [
      ['2026-07-01T07:00:00.000Z', '2026-07-04T00:00:00.000Z'],
      ['2026-07-04T00:00:00.000Z', '2026-07-06T07:00:00.000Z'],
    ]);
  });

  it('sums usage in an hour without measured energy in SQLite too, with no fully loaded energy, as streaming does', () => {
    // Usage settled in an hour whose energy rows are missing.
    const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION });
    const orphan = makeRollups({ fromMs: T0 + 50 * 3_600_000, hours: 1, seed: 2 }).usage;
    ledger.commitSettlement({
      periodStartMs: epochMs(T0 + 200 * 3_600_000),
      periodEndMs: epochMs(T0 + 201 * 3_600_000),
      gpuTotals: [],
      requestDeltas: [],
      finalized: [],
      usageRows: orphan,
      energyRows: [],
      hostRows: [],
      qualityRows: [],
      taskDeltas: [],
      settledUntilMs: epochMs(T0 + 201 * 3_600_000),
    });
    ledger.close();
    const db = new Database(path, { readonly: true });
    try {
      // Without factors for every node-hour of usage it still hands back to streaming.
      assert.equal(aggregateUsageInSqlite(db, PERIOD, new Map()), null);
    } finally {
      db.close();
    }
    const { streamed, summed, usedSql } = reports();
    assert.equal(usedSql, true);
    assert.ok(summed.quality.notes.some((n) => /1 node-hour\(s\) have attributed usage but no measured energy rows/.test(n)));
    numbersClose({ ...summed, content_sha256: '' }, { ...streamed, content_sha256: '' });
    // Its facility energy is counted where it was measured, so the dimensions still add up to the totals.
    const tiers = summed.breakdowns.filter((b) => b.by === 'tier');
    const fullyLoaded = tiers.reduce((s, b) => s + b.fully_loaded_energy_kwh, 0);
    assert.ok(Math.abs(fullyLoaded - summed.totals.facility_energy_kwh) <= 1e-7 * summed.totals.facility_energy_kwh, `${fullyLoaded} != ${summed.totals.facility_energy_kwh}`);
  });
});
