import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CarbonInputError, CarbonInputErrors } from '../../model/carbon/carbon-input-error.js';
import { parseHourlyIntensityCsv } from '../../model/carbon/hourly-intensity-csv.js';
import { resolveLocationIntensity } from '../../model/carbon/location-intensity.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 6, 1);

/** Electricity Maps' CSV export layout (hourly). */
function electricityMaps(rows: readonly [string, string, string][]): string {
  const header = 'Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO₂eq/kWh (direct),Carbon intensity gCO₂eq/kWh (Life cycle),Data source';
  return [header, ...rows.map(([t, direct, life]) => `${t},France,France,FR,${direct},${life},"RTE, ENTSO-E"`)].join('\n');
}

const errorsOf = (fn: () => unknown): CarbonInputError[] => {
  try {
    fn();
  } catch (e) {
    if (e instanceof CarbonInputErrors) return [...e.problems];
    if (e instanceof CarbonInputError) return [e];
    throw e;
  }
  assert.fail('expected an error');
};

describe('hourly intensity CSV', () => {
  it('reads a provider export, preferring the life-cycle column, zone-less times under a UTC header', () => {
    const s = parseHourlyIntensityCsv(
      electricityMaps([
        ['2026-07-01 00:00:00', '20', '40'],
        ['2026-07-01 01:00:00', '30', '50'],
      ]),
      { source: 'fr.csv' },
    );
    assert.equal(s.intensityColumn, 'Carbon intensity gCO₂eq/kWh (Life cycle)');
    assert.equal(s.basis, 'lifecycle');
    assert.equal(s.hours.get(T0)?.gCo2ePerKwh, 40);
    assert.equal(s.hours.get(T0 + H)?.gCo2ePerKwh, 50);
    assert.deepEqual(s.hours.get(T0 + H)?.lines, [3]);
  });

  it('reads a file of more hours than a call takes arguments (decades of hourly data)', () => {
    const n = 200_000;
    const rows = Array.from({ length: n }, (_, i) => `${new Date(T0 + i * H).toISOString()},100`);
    const s = parseHourlyIntensityCsv(['timestamp,carbon_intensity_gco2_per_kwh', ...rows].join('\n'), { source: 'decades.csv' });
    assert.equal(s.hours.size, n);
    assert.deepEqual([s.firstHourMs, s.lastHourMs], [T0, T0 + (n - 1) * H]);
  });

  it('takes the named column and averages sub-hourly rows into their hour', () => {
    const text = ['timestamp,moer,gco2_per_kwh', '2026-07-01T00:00:00Z,1,100', '2026-07-01T00:30:00Z,1,200', '2026-07-01T01:00:00+02:00,1,7'].join('\n');
    const s = parseHourlyIntensityCsv(text, { source: 'f.csv', column: 'gco2_per_kwh' });
    assert.equal(s.hours.get(T0)?.gCo2ePerKwh, 150);
    // 01:00+02:00 is 23:00 UTC the day before.
    assert.equal(s.hours.get(T0 - H)?.gCo2ePerKwh, 7);
  });

  it('reports every bad line with its number and reason', () => {
    const text = [
      'timestamp,carbon_intensity_gco2_per_kwh',
      '2026-07-01T00:00:00Z,100',
      '2026-07-01 01:00:00,100',
      'yesterday,100',
      '2026-07-01T02:00:00Z,-5',
      '2026-07-01T03:00:00Z,',
      '2026-07-01T00:00:00Z,120',
      '2026-07-01T04:00:00Z,abc',
      '2026-07-01T05:00:00Z,0x10', // Number() would read 16
      '2026-07-01T06:00:00Z,1e2',
    ].join('\n');
    const problems = errorsOf(() => parseHourlyIntensityCsv(text, { source: 'bad.csv' }));
    const byLine = new Map(problems.map((p) => [p.line, p.reason]));
    assert.match(byLine.get(3) ?? '', /no time zone/);
    assert.match(byLine.get(4) ?? '', /bad timestamp "yesterday"/);
    assert.match(byLine.get(5) ?? '', /between 0 and 2000/);
    assert.match(byLine.get(6) ?? '', /empty cell is a gap/);
    assert.match(byLine.get(7) ?? '', /duplicate timestamp .* \(first on line 2\)/);
    assert.match(byLine.get(8) ?? '', /"abc" is not a number/);
    assert.match(byLine.get(9) ?? '', /"0x10" is not a number/);
    assert.equal(byLine.get(10), undefined, 'an exponent is a decimal number');
    assert.ok(problems.every((p) => p.message.startsWith('bad.csv, line ')));
  });

  it('converts the unit its column header names to gCO2e/kWh, and says how', () => {
    const at = (header: string, value: string) => {
      const s = parseHourlyIntensityCsv(`timestamp,${header}\n2026-07-01T00:00:00Z,${value}`, { source: 'u.csv', column: header });
      return { g: s.hours.get(T0)?.gCo2ePerKwh, unit: s.unit };
    };
    assert.deepEqual(at('carbon_intensity_kgco2e_per_kwh', '0.056'), { g: 56, unit: { named: 'kg/kWh', toGPerKwh: 1000 } });
    assert.deepEqual(at('carbon intensity (tCO2e/MWh)', '0.25'), { g: 250, unit: { named: 't/MWh', toGPerKwh: 1000 } });
    assert.deepEqual(at('CO2 (lb/MWh)', '1000'), { g: 453.59237, unit: { named: 'lb/MWh', toGPerKwh: 0.45359237 } });
    assert.deepEqual(at('kg CO2e per MWh', '300'), { g: 300, unit: { named: 'kg/MWh', toGPerKwh: 1 } });
    assert.deepEqual(at('Carbon intensity gCO₂eq/kWh (direct)', '40'), { g: 40, unit: { named: 'g/kWh', toGPerKwh: 1 } });
    assert.deepEqual(at('intensity', '300'), { g: 300, unit: { named: null, toGPerKwh: 1 } });
    // The kgco2e column is found without being named, and the 2000 g/kWh bound applies after conversion.
    assert.equal(parseHourlyIntensityCsv('timestamp,carbon_intensity_kgco2e_per_kwh\n2026-07-01T00:00:00Z,0.3', { source: 'u.csv' }).hours.get(T0)?.gCo2ePerKwh, 300);
    assert.match(errorsOf(() => at('intensity kg/kWh', '3'))[0]?.reason ?? '', /"3" \(kg\/kWh, that is 3000 gCO2e\/kWh\) is not a number between 0 and 2000/);
    const li = resolveLocationIntensity(
      { kind: 'hourly', series: parseHourlyIntensityCsv('time,co2_kg_per_kwh\n2026-07-01T00:00:00Z,0.1', { source: 'k.csv', column: 'co2_kg_per_kwh' }), fill: 'error', fileName: 'k.csv', fileSha256: 'cd'.repeat(32) },
      [],
      [T0],
    );
    assert.equal(li.gPerKwhAt(T0), 100);
    assert.match(li.provenance.source, /column "co2_kg_per_kwh" \(kg\/kWh, multiplied by 1000 to gCO2e\/kWh\)/);
  });

  it('refuses values all under 1 when the header names no unit (kgCO2e/kWh read as grams), and takes them when it says grams', () => {
    const rows = '2026-07-01T00:00:00Z,0.056\n2026-07-01T01:00:00Z,0.9\n';
    assert.match(errorsOf(() => parseHourlyIntensityCsv(`timestamp,carbon_intensity\n${rows}`, { source: 'kg.csv' }))[0]?.reason ?? '', /every value in column "carbon_intensity" is below 1 and its header names no unit/);
    assert.equal(parseHourlyIntensityCsv(`timestamp,carbon_intensity_g_per_kwh\n${rows}`, { source: 'g.csv' }).hours.get(T0)?.gCo2ePerKwh, 0.056);
    // One plausible hour is enough: a very clean grid has some hours under 1 g/kWh.
    assert.equal(parseHourlyIntensityCsv(`timestamp,carbon_intensity\n${rows}2026-07-01T02:00:00Z,12\n`, { source: 'c.csv' }).hours.size, 3);
  });

  it('says when an hour of a sub-hourly file has only some of its rows', () => {
    const text = ['timestamp,gco2_per_kwh', ...[0, 15, 30, 45].map((m) => `2026-07-01T00:${String(m).padStart(2, '0')}:00Z,100`), '2026-07-01T01:45:00Z,300'].join('\n');
    const series = parseHourlyIntensityCsv(text, { source: 'q.csv' });
    assert.deepEqual([...series.hours.values()].map((h) => h.partial), [false, true]);
    const spec = { kind: 'hourly' as const, series, fill: 'error' as const, fileName: 'q.csv', fileSha256: 'ef'.repeat(32) };
    assert.match(resolveLocationIntensity(spec, [], [T0, T0 + H]).provenance.note ?? '', /^1 hour\(s\) of the file averaged from only part of the hour's rows/);
    assert.equal(resolveLocationIntensity(spec, [], [T0]).provenance.note, null);
  });

  it('judges each hour by its own rows: a stray row makes only its hour partial; a change of resolution and missing hours are fine', () => {
    const hourly = (day: string, hours: number[]) => hours.map((h) => `2026-07-${day}T${String(h).padStart(2, '0')}:00:00Z,${100 + h}`);
    // An hourly file with one stray 00:15 row: hour 0 is averaged from 2 of 4 rows; no other hour is partial.
    const stray = parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...hourly('01', [0, 1, 2, 3]), '2026-07-01T00:15:00Z,500'].join('\n'), { source: 's.csv' });
    assert.deepEqual([...stray.hours.values()].map((h) => h.partial), [true, false, false, false]);
    // Hourly rows, then 15-minute rows from the next day (as ENTSO-E changed on 2025-10-01).
    const quarters = [0, 1].flatMap((h) => [0, 15, 30, 45].map((m) => `2026-07-02T0${h}:${String(m).padStart(2, '0')}:00Z,200`));
    const mixed = parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...hourly('01', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ...quarters].join('\n'), { source: 'm.csv' });
    assert.equal(mixed.hours.size, 12);
    assert.ok([...mixed.hours.values()].every((h) => !h.partial));
    // An hourly file missing most of its hours is read as it is; the gaps are judged per report.
    const sparse = parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...hourly('01', [0, 2, 4, 7, 9])].join('\n'), { source: 'h.csv' });
    assert.ok([...sparse.hours.values()].every((h) => !h.partial));
  });

  it('takes the step of an hour from the gaps between its rows, so any two rows of a 15-minute hour show it partial', () => {
    const hour = (minutes: number[]) => parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...minutes.map((m) => `2026-07-01T00:${String(m).padStart(2, '0')}:00Z,100`)].join('\n'), { source: 'p.csv' }).hours.get(T0)?.partial;
    assert.equal(hour([0, 45]), true);
    assert.equal(hour([10, 50]), true);
    assert.equal(hour([0, 15, 30, 45]), false);
    assert.equal(hour([0, 30]), false);
    assert.equal(hour([30]), true, 'one row off :00 is part of an hour');
    assert.equal(hour([0]), false, 'one row at :00 is an hourly row');
  });

  it('takes the local resolution from the rows either side, so a 15-minute file\'s hour with one :00 row, or with :15 and :45, is partial', () => {
    const partials = (rows: string[]) => [...parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...rows.map((t) => `2026-07-01T${t}:00Z,100`)].join('\n'), { source: 'l.csv' }).hours.values()].map((h) => h.partial);
    const quarters = (h: string) => ['00', '15', '30', '45'].map((m) => `${h}:${m}`);
    // 00:45 -> 01:00 is 15 minutes: the lone 01:00 row is a quarter of hour 1, not an hourly row.
    assert.deepEqual(partials([...quarters('00'), '01:00', ...quarters('02')]), [false, true, false]);
    // 01:45 -> 02:00 is 15 minutes: hour 1 lacks :00 and :30 (alone, its rows show a 30-minute step).
    assert.deepEqual(partials([...quarters('00'), '01:15', '01:45', ...quarters('02')]), [false, true, false]);
    // An hour whose neighbour has only part of its own rows does not take its step from it: the
    // stray 00:45 row makes only hour 0 partial, though it is 15 minutes before 01:00.
    assert.deepEqual(partials(['00:00', '00:45', '01:00', '02:00']), [true, false, false]);
    // Hourly rows, then 15-minute rows straight after (as ENTSO-E changed on 2025-10-01): 60
    // minutes from 01:00 to 02:00, so hour 1 is an hourly row; a 30-minute file turning into a
    // 15-minute one likewise.
    assert.deepEqual(partials(['00:00', '01:00', ...quarters('02'), ...quarters('03')]), [false, false, false, false]);
    assert.deepEqual(partials(['00:00', '00:30', '01:00', '01:30', ...quarters('02')]), [false, false, false]);
  });

  it('reads a lone :00 row after finer rows as an hourly row when the next hour goes on hourly (a change to a coarser step), and says no hour is partial', () => {
    const partials = (rows: string[]) => [...parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...rows.map((t) => `2026-07-01T${t}:00Z,100`)].join('\n'), { source: 'c.csv' }).hours.values()].map((h) => h.partial);
    const quarters = (h: string) => ['00', '15', '30', '45'].map((m) => `${h}:${m}`);
    // 15-minute rows, then hourly from 02:00 on: hour 2 is a whole hourly row, as are those after it.
    const rows = [...quarters('00'), ...quarters('01'), '02:00', '03:00', '04:00', '05:00'];
    assert.deepEqual(partials(rows), [false, false, false, false, false, false]);
    assert.deepEqual(partials(['00:00', '00:30', '01:00', '01:30', '02:00', '03:00']), [false, false, false, false], 'from 30-minute rows too');
    // The report's provenance says nothing of part of an hour.
    const series = parseHourlyIntensityCsv(['timestamp,gco2_per_kwh', ...rows.map((t) => `2026-07-01T${t}:00Z,100`)].join('\n'), { source: 'c.csv' });
    const spec = { kind: 'hourly' as const, series, fill: 'error' as const, fileName: 'c.csv', fileSha256: 'ab'.repeat(32) };
    assert.equal(resolveLocationIntensity(spec, [], [0, 1, 2, 3, 4, 5].map((h) => T0 + h * H)).provenance.note, null);
    // Still partial: a lone row between 15-minute hours, and the last row of a 15-minute file cut at 02:00.
    assert.deepEqual(partials([...quarters('00'), ...quarters('01'), '02:00', ...quarters('03')]), [false, false, true, false]);
    assert.deepEqual(partials([...quarters('00'), ...quarters('01'), '02:00']), [false, false, true]);
  });

  it('refuses a file without a timestamp or intensity column', () => {
    assert.throws(() => parseHourlyIntensityCsv('a,b\n1,2', { source: 'x.csv' }), /no timestamp column/);
    assert.throws(() => parseHourlyIntensityCsv('time,b\n2026-07-01T00:00:00Z,2', { source: 'x.csv' }), /no intensity column/);
    assert.throws(() => parseHourlyIntensityCsv('time,gco2\n', { source: 'x.csv' }), /no data rows/);
  });
});

describe('hourly intensity gaps', () => {
  const series = parseHourlyIntensityCsv(
    ['time,gco2e_per_kwh', '2026-07-01T00:00:00Z,100', '2026-07-01T01:00:00Z,200', '2026-07-01T04:00:00Z,400'].join('\n'),
    { source: 'g.csv' },
  );
  const spec = (fill: 'error' | 'carry-forward' | 'mean') => ({ kind: 'hourly' as const, series, fill, fileName: 'g.csv', fileSha256: 'ab'.repeat(32) });
  const needed = [T0, T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 4 * H, T0 + 5 * H];

  it('is an error by default, naming each missing hour and the lines around it', () => {
    const problems = errorsOf(() => resolveLocationIntensity(spec('error'), [], needed));
    assert.match(problems[0]?.message ?? '', /gap: no value for the hour 2026-07-01T02:00:00.000Z \(between lines 3 and 4\)/);
    assert.match(problems[1]?.message ?? '', /03:00:00.000Z \(between lines 3 and 4\)/);
    assert.match(problems[2]?.message ?? '', /needs 1 hour\(s\) outside it \(first 2026-07-01T05:00:00.000Z/);
  });

  it('carries the last value forward when told to, and says how many hours it filled', () => {
    const li = resolveLocationIntensity(spec('carry-forward'), [], needed);
    assert.deepEqual(needed.map((h) => li.gPerKwhAt(h)), [100, 200, 200, 200, 400, 400]);
    assert.equal(li.filledHours, 3);
    assert.match(li.provenance.note ?? '', /3 hour\(s\) filled by policy "carry-forward"/);
  });

  it('fills with the file mean when told to', () => {
    const li = resolveLocationIntensity(spec('mean'), [], needed);
    assert.equal(li.gPerKwhAt(T0 + 2 * H), (100 + 200 + 400) / 3);
    // provenance value is the mean over the hours used: (100 + 200 + m + m + 400 + m) / 6
    const m = 700 / 3;
    assert.ok(Math.abs((li.provenance.value ?? 0) - (700 + 3 * m) / 6) < 1e-9);
  });

  it('an hour asked for later (usage without measured energy rows) is filled by the same policy, or named under "error"', () => {
    // Resolved for the measured hours only; then a usage row comes for 05:00, outside the file.
    const carry = resolveLocationIntensity(spec('carry-forward'), [], [T0, T0 + H]);
    assert.equal(carry.filledHours, 0);
    assert.equal(carry.gPerKwhAt(T0 + 5 * H), 400);
    assert.equal(carry.gPerKwhAt(T0 + 5 * H), 400, 'filled once');
    assert.equal(carry.filledHours, 1);
    // The provenance counts it: its note says so and its mean is over 00:00, 01:00 and 05:00.
    assert.match(carry.provenance.note ?? '', /^1 hour\(s\) filled by policy "carry-forward"/);
    assert.equal(carry.provenance.value, (100 + 200 + 400) / 3);
    // An hour of the file asked for later is used too: it enters the mean, not the fill count.
    const later = resolveLocationIntensity(spec('carry-forward'), [], [T0]);
    assert.equal(later.gPerKwhAt(T0 + H), 200);
    assert.equal(later.gPerKwhAt(T0 + H), 200);
    assert.equal(later.provenance.value, 150);
    assert.equal(later.provenance.note, null);
    assert.equal(resolveLocationIntensity(spec('mean'), [], [T0]).gPerKwhAt(T0 + 5 * H), 700 / 3);
    // Under "error" the file's gaps at 02:00 and 03:00 are no reason to refuse it while no hour
    // needs them; an hour asked for later that the file lacks is named.
    const strict = resolveLocationIntensity(spec('error'), [], [T0, T0 + H]);
    assert.equal(strict.gPerKwhAt(T0 + H), 200);
    assert.throws(() => strict.gPerKwhAt(T0 + 5 * H), /no value for the hour 2026-07-01T05:00:00.000Z, which has attributed usage but no measured energy rows \(the file covers 2026-07-01T00:00:00.000Z to 2026-07-01T04:00:00.000Z\)/);
    assert.throws(() => strict.gPerKwhAt(T0 + 2 * H), /no value for the hour 2026-07-01T02:00:00.000Z, .* \(a gap in the file\)/);
  });

  it('records the file name and hash in the provenance', () => {
    const li = resolveLocationIntensity(spec('mean'), [], [T0]);
    assert.match(li.provenance.source, /g\.csv \(sha256 (ab){32}\)/);
  });
});
