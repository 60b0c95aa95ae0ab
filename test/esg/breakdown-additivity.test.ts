import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Database from '../../agent/sqlite-driver.js';
import { Ledger } from '../../agent/ledger.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { CarbonConfig } from '../../model/carbon/carbon-config.js';
import { parseHourlyIntensityCsv } from '../../model/carbon/hourly-intensity-csv.js';
import { epochMs } from '../../model/units.js';
import { buildEsgReport, prepareEsgReport, UNALLOCATED_KEY } from '../../exporters/esg/build-esg-report.js';
import type { EsgReportInput } from '../../exporters/esg/build-esg-report.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { aggregateUsageInParts, aggregateUsageInWorkers } from '../../exporters/esg/parallel-usage-aggregate.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { rollupsOf } from '../../exporters/esg/rollup-source.js';
import { usageTotalsInSqlite } from '../../exporters/esg/sqlite-usage-aggregate.js';
import { RETENTION } from './ledger-fixture.js';
import type { Rollups } from './rollup-fixtures.js';
import { H, spanningRequestArb, spanningRollups } from './spanning-requests.js';
import type { SpanningRequest, UsageBooking } from './spanning-requests.js';

// Data from 22:00 on June 30 for 30 hours; the report covers July 1 00:00 to 24:00, so requests
// and their energy also cross the period's edges, and the day cut of the SQLite parts.
const DATA_FROM = Date.UTC(2026, 5, 30, 22);
const DATA_HOURS = 30;
const PERIOD = { fromMs: Date.UTC(2026, 6, 1), toMs: Date.UTC(2026, 6, 2), label: '2026-07-01' };
const META = { toolVersion: 't', generatedAt: '2026-07-02T00:00:00.000Z' };
const DIMENSIONS = ['tier', 'model', 'team', 'feature', 'cache_bucket', 'batch_bucket'] as const;

/** Every hour of the data window and the hours after it that long requests reach, 40 to 400 g/kWh. */
const csv = ['time,gco2e', ...Array.from({ length: DATA_HOURS + 8 }, (_, i) => `${new Date(DATA_FROM + i * H).toISOString()},${40 + ((i * 97) % 361)}`)].join('\n');
const INTENSITY = { series: parseHourlyIntensityCsv(csv, { source: 'hourly.csv' }), name: 'hourly.csv', sha256: '0'.repeat(64) };

function carbonConfig(): CarbonConfig {
  const parsed = parseCarbonConfig({
    intensityFile: 'hourly.csv',
    pue: 1.3,
    market: { instruments: [{ kind: 'rec', coverageShare: 0.4, source: 'RECs' }], residualMix: { gCo2ePerKwh: 600, source: 'residual mix' } },
  });
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.config;
}
const CARBON = carbonConfig();
const BASE: Pick<EsgReportInput, 'carbon' | 'intensityFile' | 'period' | 'toolVersion' | 'generatedAt'> = { carbon: CARBON, intensityFile: INTENSITY, period: PERIOD, ...META };

const close = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) <= 1e-7 * Math.max(1e-9, Math.abs(expected)) + 1e-12, `${what}: ${actual} != ${expected}`);
};

/** For every label dimension: its rows (the unallocated row included) add up to the totals. */
function assertAddsUp(r: EsgReport, usageJ: number, allFinalized: boolean, booking: UsageBooking): void {
  assert.deepEqual(esgReportSchemaProblems(r), []);
  for (const by of DIMENSIONS) {
    const rows = r.breakdowns.filter((b) => b.by === by && b.key !== UNALLOCATED_KEY);
    const sum = (pick: (b: (typeof rows)[number]) => number): number => rows.reduce((s, b) => s + pick(b), 0);
    const unallocated = r.breakdowns.find((b) => b.by === by && b.key === UNALLOCATED_KEY);
    close(sum((b) => b.fully_loaded_energy_kwh) + r.totals.unallocated_facility_energy_kwh, r.totals.facility_energy_kwh, `${by}: fully loaded energy + unallocated`);
    close(sum((b) => b.emissions_location_kgco2e) + (unallocated?.emissions_location_kgco2e ?? 0), r.totals.emissions_location_kgco2e, `${by}: location-based emissions`);
    close(sum((b) => b.emissions_market_kgco2e) + (unallocated?.emissions_market_kgco2e ?? 0), r.totals.emissions_market_kgco2e, `${by}: market-based emissions`);
    close(sum((b) => b.attributed_energy_kwh), usageJ / 3.6e6, `${by}: attributed energy of the usage rows`);
    assert.equal(sum((b) => b.completion_tokens ?? 0), r.totals.completion_tokens, `${by}: output tokens`);
    // The unallocated row is there exactly when some facility energy had no usage, and is that energy.
    assert.equal(unallocated !== undefined, r.totals.unallocated_facility_energy_kwh > 0, `${by}: unallocated row present`);
    close(unallocated?.fully_loaded_energy_kwh ?? 0, r.totals.unallocated_facility_energy_kwh, `${by}: unallocated row`);
  }
  const months = r.breakdowns.filter((b) => b.by === 'month');
  close(months.reduce((s, b) => s + b.fully_loaded_energy_kwh, 0), r.totals.facility_energy_kwh, 'months: fully loaded energy');
  // Booked where it was drawn, finalized usage is the attributed energy of the energy rows.
  if (allFinalized && booking === 'drawn-hours') close(usageJ / 3.6e6, r.totals.attributed_energy_kwh, 'usage = attributed energy of the hours');
}

function usageJoulesInPeriod(rollups: Rollups): number {
  return rollups.usage.filter((u) => u.hourStartMs >= PERIOD.fromMs && u.hourStartMs < PERIOD.toMs).reduce((s, u) => s + u.staticJ + u.dynamicJ, 0);
}

const requestsArb = fc.array(spanningRequestArb(DATA_FROM, DATA_HOURS), { minLength: 0, maxLength: 40 });
const bookingArb = fc.constantFrom<UsageBooking>('end-hour', 'drawn-hours');

describe('ESG breakdowns add up to the totals for requests that cross hours (property)', () => {
  it('streamed: every label dimension plus the unallocated row equals the totals, for energy and both emissions', () => {
    fc.assert(
      fc.property(requestsArb, bookingArb, (requests, booking) => {
        const rollups = spanningRollups(requests, DATA_FROM, DATA_HOURS, booking);
        const r = buildEsgReport({ ...rollups, ...BASE });
        assertAddsUp(r, usageJoulesInPeriod(rollups), requests.every((q) => q.finalized), booking);
      }),
      { numRuns: 60 },
    );
  });

  it('worked by hand: a request from 09:59 to 10:00:05 is charged the facility energy of both hours, not 6x it', () => {
    // One idle GPU at 100 W; the request adds 300 W: 18,000 J in hour 9 and 1,500 J in hour 10.
    const request: SpanningRequest = {
      node: 'n1', gpu: 0, startMs: PERIOD.fromMs + 9 * H + 59 * 60_000, endMs: PERIOD.fromMs + 10 * H + 5000, watts: 300, staticShare: 0,
      tier: 'small', model: 'm', team: '', feature: 'chat', cacheBucket: 'miss', batchBucket: '1', completionTokens: 100, finalized: true,
    };
    const constant = parseCarbonConfig({ intensityGPerKwh: 100, intensitySource: 'test', pue: 1.5 });
    assert.ok(constant.ok);
    for (const booking of ['end-hour', 'drawn-hours'] as const) {
      const rollups = spanningRollups([request], PERIOD.fromMs + 9 * H, 2, booking);
      const only = (rows: Rollups['energy']) => rows.filter((e) => e.node === 'n1' && e.gpuUuid === 'GPU-n1-0').map((e) => ({ ...e, idleJ: 360_000, measuredJ: 360_000 + e.staticJ + e.dynamicJ, unattributedJ: 0 }));
      const r = buildEsgReport({ ...rollups, energy: only(rollups.energy), host: [], carbon: constant.config, period: PERIOD, ...META });
      const facilityJ = (360_000 * 2 + 18_000 + 1_500) * 1.5;
      close(r.totals.facility_energy_kwh, facilityJ / 3.6e6, `${booking}: facility`);
      const small = r.breakdowns.find((b) => b.by === 'tier' && b.key === 'small');
      const unallocated = r.breakdowns.find((b) => b.by === 'tier' && b.key === UNALLOCATED_KEY);
      if (booking === 'drawn-hours') {
        // Both hours have the request's energy: all facility energy is its.
        close(small?.fully_loaded_energy_kwh ?? 0, facilityJ / 3.6e6, 'drawn: tier small');
        assert.equal(unallocated, undefined);
      } else {
        // Booked whole in hour 10: hour 10's facility energy is its, hour 9's is unallocated.
        close(small?.fully_loaded_energy_kwh ?? 0, (361_500 * 1.5) / 3.6e6, 'end hour: tier small');
        close(unallocated?.fully_loaded_energy_kwh ?? 0, (378_000 * 1.5) / 3.6e6, 'end hour: unallocated');
      }
      close(small?.emissions_location_kgco2e ?? 0, ((small?.fully_loaded_energy_kwh ?? 0) * 100) / 1000, `${booking}: emissions`);
    }
  });

  it('says when usage rows were written before ledger schema 7 booked energy by the hour it was drawn', () => {
    const rollups = spanningRollups([], DATA_FROM, DATA_HOURS, 'end-hour');
    const request: SpanningRequest = {
      node: 'n1', gpu: 0, startMs: PERIOD.fromMs + 3 * H, endMs: PERIOD.fromMs + 3 * H + 1000, watts: 300, staticShare: 0.5,
      tier: 'small', model: 'm', team: '', feature: 'chat', cacheBucket: 'miss', batchBucket: '1', completionTokens: 1, finalized: true,
    };
    const withUsage = { ...rollups, usage: spanningRollups([request], DATA_FROM, DATA_HOURS, 'end-hour').usage };
    const old = /written by a tokenwatt agent before ledger schema 7/;
    const notes = (from: number | undefined) => buildEsgReport({ ...withUsage, ...BASE, ...(from === undefined ? {} : { usageByDrawnHourFromMs: from }) }).quality.notes;
    assert.ok(notes(Number.POSITIVE_INFINITY).some((n) => old.test(n) && !/before 20/.test(n)), 'a ledger of schema 5');
    assert.ok(notes(PERIOD.fromMs + 4 * H).some((n) => old.test(n) && n.includes('before 2026-07-01T04:00:00Z')), 'migrated after the usage');
    assert.ok(!notes(PERIOD.fromMs + 3 * H).some((n) => old.test(n)), 'migrated before the usage');
    assert.ok(!notes(undefined).some((n) => old.test(n)), 'not said without the ledger telling');
  });
});

describe('ESG breakdowns add up in the SQLite sums and their worker threads (property)', () => {
  let dir = '';
  let n = 0;
  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-add-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function writeRollups(rollups: Rollups): string {
    const path = join(dir, `l${(n += 1)}.db`);
    const ledger = Ledger.open(path, { node: 'n1', retention: RETENTION });
    try {
      const end = Math.max(...rollups.energy.map((e) => e.hourStartMs)) + H;
      ledger.commitSettlement({
        periodStartMs: epochMs(DATA_FROM), periodEndMs: epochMs(end), settledUntilMs: epochMs(end), gpuTotals: [], requestDeltas: [], finalized: [],
        usageRows: rollups.usage, energyRows: rollups.energy, hostRows: rollups.host, qualityRows: rollups.quality, taskDeltas: [],
      });
    } finally {
      ledger.close();
    }
    return path;
  }

  it('in parts on one thread and in worker threads, as streamed', async () => {
    await fc.assert(
      fc.asyncProperty(requestsArb, bookingArb, async (requests, booking) => {
        const rollups = spanningRollups(requests, DATA_FROM, DATA_HOURS, booking);
        const path = writeRollups(rollups);
        const ledger = Ledger.openReadOnly(path);
        const db = new Database(path, { readonly: true });
        try {
          const input = { ...rollupsOf(ledger, PERIOD), usageTotals: usageTotalsInSqlite(db, PERIOD), ...BASE };
          const inParts = prepareEsgReport(input);
          const partsAggregate = aggregateUsageInParts(db, PERIOD, inParts.factors);
          assert.ok(partsAggregate !== null, 'every usage row found its node-hour factors');
          const inWorkers = prepareEsgReport(input);
          const workersAggregate = await aggregateUsageInWorkers(db, path, PERIOD, inWorkers.factors);
          const streamed = buildEsgReport({ ...rollups, ...BASE });
          const allFinalized = requests.every((q) => q.finalized);
          for (const r of [inParts.finish(partsAggregate), inWorkers.finish(workersAggregate)]) {
            assertAddsUp(r, usageJoulesInPeriod(rollups), allFinalized, booking);
            for (const b of r.breakdowns) {
              const s = streamed.breakdowns.find((x) => x.by === b.by && x.key === b.key);
              close(b.fully_loaded_energy_kwh, s?.fully_loaded_energy_kwh ?? Number.NaN, `${b.by} ${b.key} as streamed`);
            }
          }
        } finally {
          db.close();
          ledger.close();
        }
      }),
      { numRuns: 6 },
    );
  });
});
