import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { CarbonInputError } from '../../model/carbon/carbon-input-error.js';
import { checkPue, DEFAULT_PUE, DEFAULT_PUE_SOURCE, facilityEnergy } from '../../model/carbon/pue.js';

describe('PUE', () => {
  it('applies to IT energy (GPU + host)', () => {
    assert.equal(facilityEnergy(100, 1.25), 125);
  });

  it('has a documented default with its source', () => {
    assert.ok(DEFAULT_PUE >= 1 && DEFAULT_PUE <= 3);
    assert.match(DEFAULT_PUE_SOURCE, /Uptime Institute/);
    const parsed = parseCarbonConfig({});
    assert.ok(parsed.ok);
    assert.equal(parsed.config.pue, DEFAULT_PUE);
  });

  for (const bad of [-1.2, 0, 0.95, 3.01, 12]) {
    it(`refuses ${bad} with a message naming the field and the reason`, () => {
      assert.throws(() => checkPue(bad), (e: unknown) => e instanceof CarbonInputError && e.field === 'carbon.pue' && /must be (>=|<=)/.test(e.reason));
      const parsed = parseCarbonConfig({ pue: bad });
      assert.equal(parsed.ok, false);
      assert.ok(!parsed.ok && parsed.errors.some((line) => line.startsWith('carbon.pue: must be') && line.includes(String(bad))));
    });
  }

  it('accepts the bounds 1.0 and 3.0', () => {
    assert.equal(checkPue(1), 1);
    assert.equal(checkPue(3), 3);
  });
});

describe('carbonConfigSchema', () => {
  it('takes exactly one grid source', () => {
    const both = parseCarbonConfig({ region: 'FR', intensityGPerKwh: 50, intensitySource: 'x' });
    assert.ok(!both.ok && both.errors.some((e) => /only one of region, intensityGPerKwh and intensityFile/.test(e)));
  });

  it('wants a source for a configured constant', () => {
    const r = parseCarbonConfig({ intensityGPerKwh: 250 });
    assert.ok(!r.ok && r.errors.some((e) => e.startsWith('carbon.intensitySource')));
  });

  it('refuses an intensity in the wrong unit (lb/MWh or g/MWh give > 2000)', () => {
    const r = parseCarbonConfig({ intensityGPerKwh: 596_300, intensitySource: 'eGRID' });
    assert.ok(!r.ok && r.errors.some((e) => e.startsWith('carbon.intensityGPerKwh') && /unit mistake/.test(e)));
  });

  it('refuses instrument coverage above 100%', () => {
    const r = parseCarbonConfig({
      region: 'FR',
      market: { instruments: [{ kind: 'ppa', coverageShare: 0.7, source: 'PPA 1' }, { kind: 'rec', coverageShare: 0.4, source: 'RECs' }] },
    });
    assert.ok(!r.ok && r.errors.some((e) => e.startsWith('carbon.market.instruments') && /cannot exceed 1/.test(e)));
  });

  it('reads instrument validity days, refusing impossible or reversed ones, and checks coverage where they overlap', () => {
    const rec = (validFrom: string, validThrough: string) => ({ kind: 'rec', coverageShare: 0.6, source: 'RECs', validFrom, validThrough });
    assert.ok(parseCarbonConfig({ region: 'FR', market: { instruments: [rec('2026-01-01', '2026-06-30'), rec('2026-07-01', '2026-12-31')] } }).ok);
    const bad = parseCarbonConfig({ region: 'FR', market: { instruments: [rec('2026-02-30', '2026-06-30'), rec('2026-7-1', '2026-12-31'), rec('2026-07-01', '2026-06-30')] } });
    assert.ok(!bad.ok);
    assert.deepEqual(bad.errors, [
      'carbon.market.instruments[0].validFrom: is not a day of the calendar, got "2026-02-30"',
      'carbon.market.instruments[1].validFrom: must be a date, YYYY-MM-DD, got "2026-7-1"',
      'carbon.market.instruments[2].validThrough: is before validFrom 2026-07-01, got "2026-06-30"',
    ]);
    const overlap = parseCarbonConfig({ region: 'FR', market: { instruments: [rec('2026-01-01', '2026-07-01'), rec('2026-07-01', '2026-12-31')] } });
    assert.ok(!overlap.ok && overlap.errors.some((e) => /add up to 1\.2 at one time/.test(e)));
  });

  it('refuses unknown keys so a typo is not silently ignored', () => {
    const r = parseCarbonConfig({ region: 'FR', puee: 1.2 });
    assert.ok(!r.ok && r.errors.some((e) => e.includes('puee')));
  });

  it('fills embodied defaults and keeps offsets apart', () => {
    const r = parseCarbonConfig({ region: 'FR', offsets: [{ kgCo2e: 10, description: 'forestry', source: 'registry X' }] });
    assert.ok(r.ok);
    assert.equal(r.config.embodied.lifespanYears, 6);
    assert.match(r.config.embodied.source, /BLOOM/);
    assert.equal(r.config.offsets.length, 1);
    assert.equal(r.config.intensityFill, 'error');
  });
});
