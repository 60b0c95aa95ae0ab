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
    assert.ok(Math.abs(m.coveredShare - 0.7) < 1e-12);
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
