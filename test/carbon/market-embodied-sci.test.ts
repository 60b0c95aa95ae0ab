import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { embodiedKgCo2e, HOURS_PER_YEAR } from '../../model/carbon/embodied.js';
import { resolveMarketIntensity } from '../../model/carbon/market-intensity.js';
import { sciPerUnit } from '../../model/carbon/sci.js';

describe('market-based intensity (GHG Protocol Scope 2)', () => {
  it('weights instruments by coverage and gives the rest the residual mix', () => {
    // 60% PPA at 0 g, 10% RECs at 20 g, 30% residual mix at 500 g: 0 + 2 + 150 = 152 g/kWh.
    const m = resolveMarketIntensity({
      instruments: [
        { kind: 'ppa', name: 'wind', coverageShare: 0.6, gCo2ePerKwh: 0, source: 'PPA contract 2026' },
        { kind: 'rec', name: 'bundle', coverageShare: 0.1, gCo2ePerKwh: 20, source: 'REC registry' },
      ],
      residualMix: { gCo2ePerKwh: 500, source: 'AIB residual mix 2025' },
    });
    assert.ok(Math.abs(m.gPerKwhAt(0, 300) - 152) < 1e-9);
    assert.equal(m.remainder, 'residual-mix');
    assert.ok(Math.abs(m.coveredShare.min - 0.7) < 1e-12 && m.coveredShare.max === m.coveredShare.min);
  });

  it('prefers a supplier-specific rate to the residual mix', () => {
    const m = resolveMarketIntensity({ instruments: [], supplier: { gCo2ePerKwh: 120, source: 'utility disclosure' }, residualMix: { gCo2ePerKwh: 500, source: 'AIB' } });
    assert.equal(m.gPerKwhAt(0, 300), 120);
    assert.equal(m.remainder, 'supplier');
  });

  it('falls back to the location figure for the uncovered share, and discloses it', () => {
    const m = resolveMarketIntensity({ instruments: [{ kind: 'rec', name: '', coverageShare: 0.25, gCo2ePerKwh: 0, source: 'RECs' }] });
    assert.equal(m.gPerKwhAt(0, 400), 300);
    assert.equal(m.remainder, 'location-average');
    assert.ok(m.provenance.some((p) => p.id === 'location-average-fallback' && p.value === null && /residual mix/.test(p.note ?? '')));
  });

  it('equals location-based with no market configuration at all', () => {
    assert.equal(resolveMarketIntensity(undefined).gPerKwhAt(0, 321), 321);
  });

  it('applies an instrument only in the hours of its validity, and says so in the factor list', () => {
    const JULY = Date.UTC(2026, 6, 1);
    const AUGUST = Date.UTC(2026, 7, 1);
    const SEPTEMBER = Date.UTC(2026, 8, 1);
    const m = resolveMarketIntensity(
      {
        instruments: [
          { kind: 'ppa', name: 'july-ppa', coverageShare: 0.8, gCo2ePerKwh: 0, source: 'PPA', validFrom: '2026-07-01', validThrough: '2026-07-31' },
          { kind: 'rec', name: 'old', coverageShare: 0.2, gCo2ePerKwh: 0, source: 'RECs', validFrom: '2019-01-01', validThrough: '2019-12-31' },
          { kind: 'go', name: 'undated', coverageShare: 0.1, gCo2ePerKwh: 0, source: 'GOs', year: 2019 },
        ],
        residualMix: { gCo2ePerKwh: 500, source: 'AIB' },
      },
      { fromMs: JULY, toMs: SEPTEMBER },
    );
    // July: 80% + 10% covered, 10% at 500 g. The last hour of July 31st still counts; August 1st does not.
    assert.ok(Math.abs(m.gPerKwhAt(AUGUST - 3_600_000, 300) - 50) < 1e-9);
    assert.ok(Math.abs(m.gPerKwhAt(AUGUST, 300) - 450) < 1e-9, 'August: only the undated GOs');
    assert.deepEqual(m.coveredShare, { min: 0.1, max: 0.9 });
    assert.equal(m.coveredShareAt(JULY), 0.9);
    const note = (name: string) => m.provenance.find((p) => p.id.endsWith(`:${name}`))?.note ?? '';
    assert.match(note('july-ppa'), /part of the report period/);
    assert.match(note('old'), /outside the report period: covers none of it/);
    assert.match(note('undated'), /year 2019 is not a year of the report period/);
    assert.match(m.provenance.find((p) => p.id === 'july-ppa' || p.id === 'ppa:july-ppa')?.unit ?? '', /valid 2026-07-01 through 2026-07-31/);
    assert.match(m.provenance.find((p) => p.role === 'market-residual-mix')?.unit ?? '', /10% to 90% \(by hour\)/);
  });

  it('refuses coverage above 100% only where instruments overlap in time, and impossible validity dates', () => {
    const half = (validFrom: string, validThrough: string) => ({ kind: 'ppa' as const, name: validFrom, coverageShare: 0.6, gCo2ePerKwh: 0, source: 's', validFrom, validThrough });
    assert.doesNotThrow(() => resolveMarketIntensity({ instruments: [half('2026-01-01', '2026-06-30'), half('2026-07-01', '2026-12-31')] }));
    assert.throws(() => resolveMarketIntensity({ instruments: [half('2026-01-01', '2026-07-01'), half('2026-07-01', '2026-12-31')] }), /1\.2 at one time/);
    assert.throws(() => resolveMarketIntensity({ instruments: [half('2026-02-30', '2026-06-30')] }), /validFrom: is not a day of the calendar \(got "2026-02-30"\)/);
    assert.throws(() => resolveMarketIntensity({ instruments: [half('2026-07-01', '2026-06-30')] }), /validThrough: 2026-06-30 is before validFrom 2026-07-01/);
  });

  it('refuses coverage above 100%', () => {
    assert.throws(() => resolveMarketIntensity({ instruments: [{ kind: 'ppa', name: 'a', coverageShare: 0.8, gCo2ePerKwh: 0, source: 's' }, { kind: 'rec', name: 'b', coverageShare: 0.3, gCo2ePerKwh: 0, source: 's' }] }), /cannot exceed 1/);
  });
});

describe('embodied emissions (SCI M = TE x TiR/EL x RS)', () => {
  it('matches the formula by hand', () => {
    // 150 kg GPU, 720 h reserved of a 6-year life, half of it reserved: 150 * 720 / (6 * 8766) * 0.5
    const expected = (150 * 720) / (6 * 8766) * 0.5;
    assert.ok(Math.abs(embodiedKgCo2e({ totalKgCo2e: 150, reservedHours: 720, lifespanYears: 6, reservedShare: 0.5 }) - expected) < 1e-12);
    assert.equal(HOURS_PER_YEAR, 8766);
  });

  it('is the whole footprint over a whole life at full share', () => {
    assert.ok(Math.abs(embodiedKgCo2e({ totalKgCo2e: 2500, reservedHours: 4 * HOURS_PER_YEAR, lifespanYears: 4, reservedShare: 1 }) - 2500) < 1e-9);
  });
});

describe('SCI', () => {
  it('is (E x I + M) per functional unit', () => {
    assert.equal(sciPerUnit({ operationalGCo2e: 900, embodiedGCo2e: 100, functionalUnits: 250 }), 4);
    assert.equal(sciPerUnit({ operationalGCo2e: 900, embodiedGCo2e: 100, functionalUnits: 0 }), null);
  });

  it('never decreases when emissions or embodied grow (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), fc.double({ min: 0, max: 1e9, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true }), fc.integer({ min: 1, max: 1e9 }), (o, m, extra, r) => {
        const base = sciPerUnit({ operationalGCo2e: o, embodiedGCo2e: m, functionalUnits: r }) ?? 0;
        const more = sciPerUnit({ operationalGCo2e: o + extra, embodiedGCo2e: m, functionalUnits: r }) ?? 0;
        return more >= base;
      }),
    );
  });
});
