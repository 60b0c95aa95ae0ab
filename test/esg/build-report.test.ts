import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { CarbonConfig, CarbonConfigInput } from '../../model/carbon/carbon-config.js';
import { CarbonInputError } from '../../model/carbon/carbon-input-error.js';
import { parseHourlyIntensityCsv } from '../../model/carbon/hourly-intensity-csv.js';
import type { HourlyEnergyRow, HourlyUsageRow, TaskRow } from '../../model/rollup-types.js';
import { epochMs } from '../../model/units.js';
import { buildEsgReport, UNALLOCATED_KEY } from '../../exporters/esg/build-esg-report.js';
import type { EsgReportInput } from '../../exporters/esg/build-esg-report.js';
import { NoDataError } from '../../exporters/esg/esg-errors.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { makeRollups } from './rollup-fixtures.js';
import type { Rollups } from './rollup-fixtures.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 6, 1);
const DAY = { fromMs: T0, toMs: T0 + 24 * H, label: '2026-07-01' };
const close = (actual: number | null, expected: number, what: string, rel = 1e-8): void => {
  assert.ok(actual !== null && Math.abs(actual - expected) <= rel * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
};

function config(input: CarbonConfigInput): CarbonConfig {
  const parsed = parseCarbonConfig(input);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.config;
}

function energy(hour: number, e: Partial<HourlyEnergyRow>): HourlyEnergyRow {
  return {
    hourStartMs: epochMs(hour),
    node: 'n1',
    gpuUuid: 'GPU-0',
    measuredJ: 0,
    idleJ: 0,
    staticJ: 0,
    dynamicJ: 0,
    unattributedJ: 0,
    estimatedJ: 0,
    coveredMs: H,
    counterResets: 0,
    gaps: 0,
    simulated: false,
    ...e,
  };
}

function usage(u: Partial<HourlyUsageRow>): HourlyUsageRow {
  return {
    hourStartMs: epochMs(T0),
    node: 'n1',
    model: 'm',
    tier: 't',
    cacheBucket: 'miss',
    batchBucket: '1',
    status: 'ok',
    team: '',
    feature: '',
    requests: 1,
    promptTokens: 0,
    cachedTokens: 0,
    completionTokens: 0,
    reasoningTokens: 0,
    staticJ: 0,
    dynamicJ: 0,
    prefillJ: 0,
    decodeJ: 0,
    simulated: false,
    ...u,
  };
}

function task(t: Partial<TaskRow>): TaskRow {
  return {
    taskId: 't',
    node: 'n1',
    firstStartMs: epochMs(T0),
    lastEndMs: epochMs(T0 + 60_000),
    requests: 1,
    succeeded: true,
    joules: 0,
    wasteJ: 0,
    completionTokens: 0,
    tier: 't',
    team: '',
    feature: '',
    ...t,
  };
}

/**
 * Two hours of one GPU, worked by hand: hour 0 has 1 kWh measured (0.25 idle, 0.0833 unattributed,
 * 0.6667 attributed to two requests) and 0.1 kWh host; hour 1 has 0.5 kWh, all idle, and 0.1 kWh host.
 */
function handRollups(simulated = false): Rollups {
  return {
    energy: [
      energy(T0, { measuredJ: 3.6e6, idleJ: 0.9e6, staticJ: 0.6e6, dynamicJ: 1.8e6, unattributedJ: 0.3e6, estimatedJ: 0.3e6, coveredMs: 3.0e6, counterResets: 1, gaps: 1, simulated }),
      energy(T0 + H, { measuredJ: 1.8e6, idleJ: 1.8e6, simulated }),
    ],
    host: [
      { hourStartMs: epochMs(T0), node: 'n1', hostJ: 0.36e6, estimated: false },
      { hourStartMs: epochMs(T0 + H), node: 'n1', hostJ: 0.36e6, estimated: true },
    ],
    usage: [
      usage({ model: 'm-s', tier: 'small', cacheBucket: 'hit', batchBucket: '1', team: 'search', feature: 'chat', completionTokens: 1000, staticJ: 0.2e6, dynamicJ: 0.6e6, simulated }),
      usage({ model: 'm-l', tier: 'large', cacheBucket: 'miss', batchBucket: '2-4', team: '', feature: 'chat', completionTokens: 2000, staticJ: 0.4e6, dynamicJ: 1.2e6, simulated }),
    ],
    tasks: [
      task({ taskId: 'a', tier: 'small', succeeded: true, joules: 1000, wasteJ: 100 }),
      task({ taskId: 'b', tier: 'large', succeeded: false, joules: 3000, wasteJ: 3000 }),
      task({ taskId: 'june', tier: 'large', succeeded: true, joules: 9e9, lastEndMs: epochMs(T0 - H) }),
    ],
    quality: [{ hourStartMs: epochMs(T0), node: 'n1', lateRecords: 3, rejectedRecords: 1, sampleErrors: 2 }],
  };
}

const HAND_CONFIG: CarbonConfigInput = {
  pue: 1.5,
  intensityGPerKwh: 200,
  intensitySource: 'test constant',
  market: { instruments: [{ kind: 'rec', coverageShare: 0.5, source: 'RECs' }], residualMix: { gCo2ePerKwh: 500, source: 'residual mix' } },
};

function build(rollups: Rollups, carbon: CarbonConfigInput, extra: Partial<EsgReportInput> = {}): EsgReport {
  return buildEsgReport({ ...rollups, carbon: config(carbon), period: DAY, toolVersion: '9.9.9', generatedAt: '2026-10-02T00:00:00.000Z', ...extra });
}

describe('ESG report: carbon math by hand', () => {
  const r = build(handRollups(), HAND_CONFIG);

  it('adds up energy and applies PUE to GPU + host', () => {
    close(r.totals.gpu_energy_kwh, 1.5, 'gpu');
    close(r.totals.idle_energy_kwh, 0.75, 'idle');
    close(r.totals.attributed_energy_kwh, 2.4 / 3.6, 'attributed');
    close(r.totals.host_energy_kwh, 0.2, 'host');
    close(r.totals.it_energy_kwh, 1.7, 'it');
    close(r.totals.facility_energy_kwh, 2.55, 'facility');
    // hour 1 has no attributed work: its (0.5 + 0.1) x 1.5 kWh stays unallocated.
    close(r.totals.unallocated_facility_energy_kwh, 0.9, 'unallocated');
  });

  it('reports location- and market-based emissions (dual reporting)', () => {
    close(r.totals.emissions_location_kgco2e, (2.55 * 200) / 1000, 'location');
    // half covered by RECs at 0 g, half at the 500 g residual mix: 250 g/kWh.
    close(r.totals.emissions_market_kgco2e, (2.55 * 250) / 1000, 'market');
  });

  it('computes embodied emissions per SCI for the GPU and the host, over the time covered by samples', () => {
    // The GPU was observed 3.0e6 ms of hour 0 and all of hour 1; the host as long as its GPU.
    const observedHours = (3.0e6 + 3.6e6) / 3.6e6;
    const gpu = (150 * observedHours) / (6 * 8766);
    const host = (2500 * observedHours) / (6 * 8766);
    close(r.totals.embodied_gpu_kgco2e, gpu, 'embodied gpu');
    close(r.totals.embodied_host_kgco2e, host, 'embodied host');
    close(r.totals.embodied_kgco2e, gpu + host, 'embodied');
    close(r.totals.reserved_gpu_hours, observedHours, 'reserved GPU hours');
    close(r.totals.reserved_host_hours, observedHours, 'reserved host hours');
    assert.equal(r.totals.gpu_count, 1);
  });

  it('computes SCI per token, per 1,000 tokens and per successful task', () => {
    const m = ((150 + 2500) * ((3.0e6 + 3.6e6) / 3.6e6) / (6 * 8766)) * 1000;
    const operational = 2.55 * 200;
    close(r.sci.per_token_gco2e, (operational + m) / 3000, 'per token');
    close(r.sci.per_1k_tokens_gco2e, ((operational + m) / 3000) * 1000, 'per 1k');
    close(r.sci.per_task_gco2e, operational + m, 'per task (one successful)');
  });

  it('spreads each hour\'s idle, unattributed and host energy over its work (fully loaded), times PUE', () => {
    const small = r.breakdowns.find((b) => b.by === 'tier' && b.key === 'small');
    const large = r.breakdowns.find((b) => b.by === 'tier' && b.key === 'large');
    // hour 0: (3.6 + 0.36) MJ x 1.5 over 2.4 MJ attributed = 2.475 per attributed joule.
    close(small?.fully_loaded_energy_kwh ?? null, (0.8e6 * 2.475) / 3.6e6, 'small fully loaded');
    close(large?.fully_loaded_energy_kwh ?? null, (1.6e6 * 2.475) / 3.6e6, 'large fully loaded');
    close(small?.j_per_output_token ?? null, 800, 'small J/token');
    close(small?.j_per_output_token_fully_loaded ?? null, 1980, 'small J/token fully loaded');
    close(small?.emissions_location_kgco2e ?? null, (0.55 * 200) / 1000, 'small emissions');
    assert.equal(r.breakdowns.find((b) => b.by === 'team' && b.key === '(none)')?.completion_tokens, 2000);
  });

  it('keeps the month rows equal to the totals', () => {
    const month = r.breakdowns.find((b) => b.by === 'month' && b.key === '2026-07');
    close(month?.fully_loaded_energy_kwh ?? null, 2.55, 'month facility');
    close(month?.emissions_location_kgco2e ?? null, 0.51, 'month emissions');
  });

  it('summarises tasks ending in the period, waste and J per successful task', () => {
    assert.equal(r.tasks.count, 2);
    assert.equal(r.tasks.succeeded, 1);
    assert.equal(r.tasks.success_rate, 0.5);
    close(r.tasks.waste_share, 3100 / 4000, 'waste share');
    close(r.tasks.j_per_successful_task, 4000, 'J per successful task');
    assert.deepEqual(r.tasks.by_tier.map((t) => [t.tier, t.count]), [['large', 1], ['small', 1]]);
  });

  it('reports data quality and node coverage over the whole period', () => {
    assert.equal(r.quality.hours_in_period, 24);
    assert.equal(r.quality.hours_with_data, 2);
    close(r.quality.sample_coverage, 6.6e6 / H / 24, 'coverage');
    close(r.quality.estimated_share, 0.3e6 / 5.4e6, 'estimated share');
    assert.equal(r.quality.counter_resets, 1);
    assert.equal(r.quality.estimated_intervals, 1);
    assert.equal(r.quality.late_records, 3);
    close(r.quality.host_estimated_share, 0.5, 'host estimated share');
    assert.equal(r.quality.simulated_share, 0);
    assert.deepEqual(r.coverage.nodes[0]?.missing_hours, [{ from: '2026-07-01T02:00:00Z', to: '2026-07-02T00:00:00Z', hours: 22 }]);
  });

  it('states every factor with its provenance', () => {
    const roles = r.factors.map((f) => f.role);
    for (const role of ['location', 'market-instrument', 'market-residual-mix', 'pue', 'embodied-gpu', 'embodied-host']) assert.ok(roles.includes(role), role);
    assert.ok(r.factors.every((f) => f.source.length > 0 && f.nodes.includes('n1')));
    assert.deepEqual(esgReportSchemaProblems(r), []);
  });
});

describe('ESG report: embodied emissions over the time the hardware was observed', () => {
  it('a 90-second run of 8 GPUs reserves their 80 covered seconds each, not 8 GPU-hours and a host-hour', () => {
    const gpus = Array.from({ length: 8 }, (_, i) =>
      energy(T0 + 5 * H, { gpuUuid: `GPU-${i}`, measuredJ: 8000, idleJ: 8000, coveredMs: 80_000 - i * 1000 }),
    );
    const r = build({ energy: gpus, host: [{ hourStartMs: epochMs(T0 + 5 * H), node: 'n1', hostJ: 9000, estimated: true }], usage: [], tasks: [], quality: [] }, { region: 'FR', embodied: { gpuKgCo2e: 8766, hostKgCo2e: 8766, lifespanYears: 1, source: 'test: 1 kg per hour' } });
    const gpuHours = gpus.reduce((s, g) => s + g.coveredMs, 0) / H;
    close(r.totals.reserved_gpu_hours, gpuHours, 'reserved GPU hours');
    close(r.totals.reserved_host_hours, 80_000 / H, 'the host is observed as long as its most covered GPU');
    close(r.totals.embodied_kgco2e, gpuHours + 80_000 / H, 'embodied, 1 kg per observed hour');
    assert.equal(r.totals.gpu_count, 8);
    assert.equal(r.quality.expected_gpu_hours, 8 * 24);
    assert.deepEqual(esgReportSchemaProblems(r), []);
  });

  it('an hour counts at most once per GPU, and a host reporting no GPU counts its hour', () => {
    const r = build(
      { energy: [energy(T0, { coveredMs: 2 * H })], host: [{ hourStartMs: epochMs(T0 + H), node: 'n1', hostJ: 9000, estimated: false }], usage: [], tasks: [], quality: [] },
      { region: 'FR' },
    );
    assert.equal(r.totals.reserved_gpu_hours, 1);
    assert.equal(r.totals.reserved_host_hours, 2);
  });
});

describe('ESG report: market instruments and their validity', () => {
  it('an instrument valid only outside the period covers nothing, and the factor list says why', () => {
    const r = build(handRollups(), {
      ...HAND_CONFIG,
      market: { instruments: [{ kind: 'rec', name: 'june', coverageShare: 0.5, source: 'RECs', validFrom: '2026-06-01', validThrough: '2026-06-30' }], residualMix: { gCo2ePerKwh: 500, source: 'residual mix' } },
    });
    close(r.totals.emissions_market_kgco2e, (2.55 * 500) / 1000, 'all of it at the residual mix');
    const factor = r.factors.find((f) => f.id === 'rec:june');
    assert.match(factor?.note ?? '', /outside the report period/);
    assert.deepEqual(esgReportSchemaProblems(r), []);
  });
});

describe('ESG report: hourly intensity', () => {
  it('multiplies each hour\'s facility energy by that hour\'s intensity', () => {
    const series = parseHourlyIntensityCsv('time,gco2e\n2026-07-01T00:00:00Z,100\n2026-07-01T01:00:00Z,300\n', { source: 'i.csv' });
    const r = build(handRollups(), { pue: 1.5, intensityFile: 'i.csv', market: { instruments: [{ kind: 'ppa', coverageShare: 0.5, source: 'PPA' }] } }, {
      intensityFile: { series, name: 'i.csv', sha256: '0'.repeat(64) },
    });
    // hour 0: 1.65 kWh x 100 g; hour 1: 0.9 kWh x 300 g.
    close(r.totals.emissions_location_kgco2e, (1.65 * 100 + 0.9 * 300) / 1000, 'location');
    // no residual mix: the uncovered half takes the hour's location figure.
    close(r.totals.emissions_market_kgco2e, (0.5 * (1.65 * 100 + 0.9 * 300)) / 1000, 'market');
    assert.ok(r.quality.notes.some((n) => /location-based grid average/.test(n)));
  });
});

describe('ESG report: simulated data is never unmarked', () => {
  it('says so in the title, a flag, the quality share and a note', () => {
    const r = build(handRollups(true), HAND_CONFIG);
    assert.equal(r.simulated, true);
    assert.match(r.title, /^SIMULATED DATA \(not a measurement\)/);
    assert.equal(r.quality.simulated_share, 1);
    assert.ok(r.quality.notes.some((n) => n.startsWith('SIMULATED')));
    assert.ok(r.breakdowns.filter((b) => b.by === 'tier' && b.key !== UNALLOCATED_KEY).every((b) => b.simulated_energy_kwh > 0));
  });

  it('is marked even when only the requests were simulated', () => {
    const rollups = handRollups(false);
    rollups.usage = rollups.usage.map((u, i) => (i === 0 ? { ...u, simulated: true } : u));
    const r = build(rollups, HAND_CONFIG);
    assert.equal(r.simulated, true);
    assert.ok(r.quality.simulated_share > 0);
  });
});

describe('ESG report: offsets and instruments never reduce SCI', () => {
  it('leaves SCI and location emissions unchanged, and shows offsets beside them', () => {
    const plain = build(handRollups(), { pue: 1.5, intensityGPerKwh: 200, intensitySource: 's' });
    const green = build(handRollups(), {
      pue: 1.5,
      intensityGPerKwh: 200,
      intensitySource: 's',
      market: { instruments: [{ kind: 'ppa', coverageShare: 1, source: '100% PPA' }] },
      offsets: [{ kgCo2e: 1000, description: 'forestry credits', source: 'registry' }],
    });
    assert.deepEqual(green.sci, plain.sci);
    assert.equal(green.totals.emissions_location_kgco2e, plain.totals.emissions_location_kgco2e);
    assert.equal(green.totals.emissions_market_kgco2e, 0);
    assert.equal(green.totals.offsets_kgco2e, 1000);
    assert.ok(green.factors.some((f) => f.role.startsWith('offset') && /never netted/.test(f.role)));
  });

  it('holds for any fixture, any coverage and any offsets (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true }), (seed, coverage, offsets) => {
        const rollups = makeRollups({ fromMs: T0, hours: 6, gpus: 1, seed });
        const plain = build(rollups, { region: 'DE' });
        const green = build(rollups, {
          region: 'DE',
          market: { instruments: [{ kind: 'rec', coverageShare: coverage, source: 'RECs' }], residualMix: { gCo2ePerKwh: 0, source: 'x' } },
          offsets: [{ kgCo2e: offsets, description: 'credits', source: 'registry' }],
        });
        assert.deepEqual(green.sci, plain.sci);
        assert.ok(green.totals.emissions_market_kgco2e <= plain.totals.emissions_location_kgco2e + 1e-9);
      }),
      { numRuns: 25 },
    );
  });
});

describe('ESG report: breakdowns add up (property)', () => {
  it('fully loaded energy and emissions of every dimension plus unallocated equal the totals', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 2, max: 30 }), fc.integer({ min: 1, max: 3 }), (seed, hours, gpus) => {
        const r = build(makeRollups({ fromMs: T0, hours, gpus, seed, idleHours: [1] }), { region: 'FR', pue: 1.2 });
        for (const by of ['tier', 'model', 'team', 'feature', 'cache_bucket', 'batch_bucket'] as const) {
          const rows = r.breakdowns.filter((b) => b.by === by);
          // The rows include the dimension's unallocated row.
          const fl = rows.reduce((s, b) => s + b.fully_loaded_energy_kwh, 0);
          close(fl, r.totals.facility_energy_kwh, `${by} fully loaded`, 1e-7);
          close(rows.find((b) => b.key === UNALLOCATED_KEY)?.fully_loaded_energy_kwh ?? 0, r.totals.unallocated_facility_energy_kwh, `${by} unallocated`, 1e-7);
          close(rows.reduce((s, b) => s + b.emissions_location_kgco2e, 0), r.totals.emissions_location_kgco2e, `${by} emissions`, 1e-7);
          const attributed = rows.reduce((s, b) => s + b.attributed_energy_kwh, 0);
          close(attributed, r.totals.attributed_energy_kwh, `${by} attributed`, 1e-7);
          const tokens = rows.reduce((s, b) => s + (b.completion_tokens ?? 0), 0);
          assert.equal(tokens, r.totals.completion_tokens);
        }
        const months = r.breakdowns.filter((b) => b.by === 'month');
        close(months.reduce((s, b) => s + b.emissions_location_kgco2e, 0), r.totals.emissions_location_kgco2e, 'month emissions', 1e-7);
        // measured = idle + attributed + unattributed (conservation carried through)
        close(r.totals.idle_energy_kwh + r.totals.attributed_energy_kwh + r.totals.unattributed_energy_kwh, r.totals.gpu_energy_kwh, 'conservation', 1e-7);
      }),
      { numRuns: 20 },
    );
  });
});

describe('ESG report: bad input', () => {
  it('refuses a period without data', () => {
    assert.throws(
      () => build(handRollups(), HAND_CONFIG, { period: { fromMs: Date.UTC(2026, 0, 1), toMs: Date.UTC(2026, 3, 1), label: '2026-Q1' } }),
      (e: unknown) => e instanceof NoDataError && /no data between 2026-01-01T00:00:00Z and 2026-04-01T00:00:00Z \(2026-Q1\)/.test(e.message),
    );
  });

  it('refuses an unknown region', () => {
    assert.throws(() => build(handRollups(), { region: 'moon-base-1' }), (e: unknown) => e instanceof CarbonInputError && /unknown region "moon-base-1"/.test(e.message));
  });

  it('refuses a configuration without any grid intensity', () => {
    assert.throws(() => build(handRollups(), {}), /no grid intensity configured/);
  });

  it('refuses an intensity file with a gap in the hours it needs', () => {
    const series = parseHourlyIntensityCsv('time,gco2e\n2026-07-01T00:00:00Z,100\n', { source: 'short.csv' });
    assert.throws(
      () => build(handRollups(), { intensityFile: 'short.csv' }, { intensityFile: { series, name: 'short.csv', sha256: '0'.repeat(64) } }),
      /short\.csv.*outside it \(first 2026-07-01T01:00:00.000Z/s,
    );
  });
});
