import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REGION_INTENSITY_TABLE } from '../../collectors/carbon-data/region-intensity-table.js';
import { CarbonInputError } from '../../model/carbon/carbon-input-error.js';
import { findRegionFactor, normalizeRegionId } from '../../model/carbon/region-lookup.js';

describe('shipped region table', () => {
  it('covers countries, US eGRID subregions and the major cloud regions', () => {
    const ids = new Set(REGION_INTENSITY_TABLE.map((f) => f.id));
    for (const id of ['FR', 'DE', 'IE', 'egrid:CAMX', 'egrid:SRVC', 'aws:us-east-1', 'gcp:europe-west4', 'azure:westeurope']) assert.ok(ids.has(id), id);
    for (const kind of ['country', 'egrid-subregion', 'cloud-region'] as const) assert.ok(REGION_INTENSITY_TABLE.some((f) => f.kind === kind), kind);
  });

  it('has unique ids', () => {
    const ids = REGION_INTENSITY_TABLE.map((f) => normalizeRegionId(f.id));
    assert.equal(new Set(ids).size, ids.length);
  });

  it('gives every row a value, unit, source, year and basis', () => {
    for (const f of REGION_INTENSITY_TABLE) {
      assert.ok(Number.isFinite(f.gCo2ePerKwh) && f.gCo2ePerKwh > 0 && f.gCo2ePerKwh < 1500, `${f.id} value ${f.gCo2ePerKwh}`);
      assert.ok(f.source.length > 20, `${f.id} source`);
      assert.match(f.sourceUrl, /^https:\/\/\S+$/, `${f.id} url`);
      assert.ok(Number.isInteger(f.year) && f.year >= 2015 && f.year <= 2030, `${f.id} year`);
      assert.ok(['lifecycle', 'combustion'].includes(f.basis), `${f.id} basis`);
      assert.ok(f.publishedUnit.length > 0 && Number.isFinite(f.publishedValue), `${f.id} published value`);
    }
  });

  it('converts eGRID lb/MWh to g/kWh (1 lb = 453.59237 g)', () => {
    for (const f of REGION_INTENSITY_TABLE.filter((x) => x.kind === 'egrid-subregion')) {
      assert.equal(f.publishedUnit, 'lb CO2e/MWh');
      assert.ok(Math.abs(f.gCo2ePerKwh - (f.publishedValue * 453.59237) / 1000) < 0.05, f.id);
    }
  });

  it('says what a derived cloud region takes its value from, and takes exactly that value', () => {
    const byId = new Map(REGION_INTENSITY_TABLE.map((f) => [f.id, f]));
    const derived = REGION_INTENSITY_TABLE.filter((f) => f.derivedFrom !== undefined);
    assert.ok(derived.length >= 5);
    for (const f of derived) {
      const base = byId.get(f.derivedFrom ?? '');
      assert.ok(base, `${f.id} derives from ${f.derivedFrom}`);
      assert.equal(f.gCo2ePerKwh, base.gCo2ePerKwh);
      assert.equal(f.year, base.year);
      assert.match(f.note ?? '', /publishes no per-region grid factor/);
    }
  });
});

describe('region lookup', () => {
  it('accepts the usual spellings', () => {
    assert.equal(findRegionFactor(REGION_INTENSITY_TABLE, 'AWS us-east-1').id, 'aws:us-east-1');
    assert.equal(findRegionFactor(REGION_INTENSITY_TABLE, 'gcp/europe-west4').id, 'gcp:europe-west4');
    assert.equal(findRegionFactor(REGION_INTENSITY_TABLE, 'fr').id, 'FR');
    assert.equal(findRegionFactor(REGION_INTENSITY_TABLE, 'CAMX').id, 'egrid:CAMX');
  });

  it('refuses an unknown region, suggesting near ones, and never falls back', () => {
    assert.throws(
      () => findRegionFactor(REGION_INTENSITY_TABLE, 'aws:us-east-11'),
      (e: unknown) => e instanceof CarbonInputError && e.field === 'carbon.region' && /unknown region "aws:us-east-11"/.test(e.message) && /"aws:us-east-1"/.test(e.message),
    );
    assert.throws(() => findRegionFactor(REGION_INTENSITY_TABLE, 'atlantis'), /unknown region "atlantis".*intensityGPerKwh/);
  });
});
