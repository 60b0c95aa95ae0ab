import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ledger } from '../../agent/ledger.js';
import { runExport } from '../../agent/commands/export.js';
import type { ExportIo, ExportOptions } from '../../agent/commands/export.js';
import { checkContentSha256, contentSha256 } from '../../exporters/esg/canonical-json.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { epochMs } from '../../model/units.js';
import { RETENTION, writeLedger } from './ledger-fixture.js';
import { makeRollups } from './rollup-fixtures.js';

const T0 = Date.UTC(2026, 6, 1);
let dir = '';
let db = '';
let config = '';

function io(): ExportIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {}, now: () => new Date('2026-10-02T09:00:00Z') };
}

async function run(flags: ExportOptions): Promise<ReturnType<typeof io>> {
  const sink = io();
  await runExport({ db, config, ...flags }, sink);
  return sink;
}

function writeConfig(name: string, yaml: string): string {
  const path = join(dir, name);
  writeFileSync(path, yaml);
  return path;
}

before(() => {
  dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-export-'));
  db = writeLedger(join(dir, 'node-a.db'), 'node-a', makeRollups({ fromMs: T0, hours: 24 * 4, gpus: 2, seed: 3, skipHours: [30, 31] }));
  config = writeConfig('config.yaml', 'carbon:\n  region: aws:us-east-1\n  pue: 1.3\n');
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('tokenwatt export (from the ledger)', () => {
  it('writes every format atomically, each from the same report', async () => {
    const files = ['q.json', 'q.csv', 'q.html', 'q.yaml'];
    for (const file of files) {
      const sink = await run({ quarter: '2026-Q3', out: join(dir, file) });
      assert.doesNotMatch(sink.err.join(''), /worker threads unavailable/);
      assert.match(sink.err.join(''), new RegExp(`wrote .*${file.replace('.', '\\.')} \\(\\w+, \\d+ bytes, 2026-Q3, content_sha256 [0-9a-f]{64}\\)`));
    }
    const report = JSON.parse(readFileSync(join(dir, 'q.json'), 'utf8')) as EsgReport;
    assert.deepEqual(esgReportSchemaProblems(report), []);
    assert.ok(checkContentSha256(report).ok);
    assert.equal(report.totals.pue, 1.3);
    assert.equal(report.quality.hours_with_data, 94);
    assert.ok(readFileSync(join(dir, 'q.csv'), 'utf8').includes(report.content_sha256));
    assert.ok(readFileSync(join(dir, 'q.html'), 'utf8').includes(report.content_sha256));
    assert.ok(readFileSync(join(dir, 'q.yaml'), 'utf8').includes(report.content_sha256));
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });

  it('prints to standard output without --out, in the requested format', async () => {
    const sink = await run({ from: '2026-07-01', to: '2026-07-03', format: 'csv' });
    assert.match(sink.out.join(''), /^section,measure,by,key,value,unit,note\r\n/);
  });

  it('reads an hourly intensity file named relative to the config file', async () => {
    const lines = ['Datetime (UTC),Carbon intensity gCO₂eq/kWh (Life cycle)'];
    for (let h = 0; h < 24 * 4; h += 1) lines.push(`${new Date(T0 + h * 3_600_000).toISOString().slice(0, 19).replace('T', ' ')},${100 + h}`);
    writeFileSync(join(dir, 'hourly.csv'), lines.join('\n'));
    const cfg = writeConfig('hourly.yaml', 'carbon:\n  intensityFile: hourly.csv\n');
    const sink = io();
    await runExport({ db, config: cfg, from: '2026-07-01', to: '2026-07-05' }, sink);
    const report = JSON.parse(sink.out.join('')) as EsgReport;
    const location = report.factors.find((f) => f.role === 'location');
    assert.match(location?.source ?? '', /hourly\.csv \(sha256 [0-9a-f]{64}\)/);
    assert.equal(location?.basis, 'lifecycle');
  });
});

describe('tokenwatt export --verify', () => {
  it('recomputes from the ledger and says it matches', async () => {
    const path = join(dir, 'verify.json');
    await run({ quarter: '2026-Q3', out: path });
    const sink = await run({ verify: path });
    assert.match(sink.out.join(''), /verify\.json: verified: recomputed from .*node-a\.db, it matches/);
  });

  it('detects a report edited after it was written', async () => {
    const path = join(dir, 'tampered.json');
    await run({ quarter: '2026-Q3', out: path });
    const report = JSON.parse(readFileSync(path, 'utf8')) as EsgReport;
    writeFileSync(path, JSON.stringify({ ...report, totals: { ...report.totals, emissions_location_kgco2e: report.totals.emissions_location_kgco2e / 2 } }));
    await assert.rejects(run({ verify: path }), /TAMPERED: the content hash does not match/);
  });

  it('detects a report that no longer matches the ledger, and names what differs', async () => {
    const ledgerPath = join(dir, 'changing.db');
    writeLedger(ledgerPath, 'node-a', makeRollups({ fromMs: T0, hours: 24, gpus: 1, seed: 5 }));
    const path = join(dir, 'stale.json');
    await run({ db: ledgerPath, quarter: '2026-Q3', out: path });
    // Re-hashed edits are caught too: a forged hash still has to match the ledger.
    const forged = JSON.parse(readFileSync(path, 'utf8')) as EsgReport;
    const edited = { ...forged, totals: { ...forged.totals, idle_energy_kwh: 0 } };
    writeFileSync(join(dir, 'forged.json'), JSON.stringify({ ...edited, content_sha256: contentSha256(edited) }));
    await assert.rejects(run({ db: ledgerPath, verify: join(dir, 'forged.json') }), /does NOT match the ledger[\s\S]*totals\.idle_energy_kwh: report 0, ledger now /);
    // The ledger gains a settled hour after the report was written.
    const ledger = Ledger.open(ledgerPath, { node: 'node-a', retention: RETENTION });
    const extra = makeRollups({ fromMs: T0 + 24 * 3_600_000, hours: 1, gpus: 1, seed: 9 });
    ledger.commitSettlement({
      periodStartMs: epochMs(T0 + 24 * 3_600_000),
      periodEndMs: epochMs(T0 + 25 * 3_600_000),
      gpuTotals: [],
      requestDeltas: [],
      finalized: [],
      usageRows: extra.usage,
      energyRows: extra.energy,
      hostRows: extra.host,
      qualityRows: extra.quality,
      taskDeltas: [],
      settledUntilMs: epochMs(T0 + 25 * 3_600_000),
    });
    ledger.close();
    await assert.rejects(run({ db: ledgerPath, verify: path }), (e: Error) => /does NOT match the ledger/.test(e.message) && /totals\.gpu_energy_kwh: report [\d.]+, ledger now [\d.]+/.test(e.message));
  });

  it('refuses a file that is not a report', async () => {
    writeFileSync(join(dir, 'not-a-report.json'), '{"hello": 1}');
    await assert.rejects(run({ verify: join(dir, 'not-a-report.json') }), /not a tokenwatt ESG report/);
    writeFileSync(join(dir, 'broken.json'), '{"hello": ');
    await assert.rejects(run({ verify: join(dir, 'broken.json') }), /broken\.json: not JSON/);
  });
});

describe('tokenwatt export: bad input gets a clear message and writes nothing', () => {
  const cases: { name: string; flags: () => ExportOptions; message: RegExp }[] = [
    { name: 'unknown region', flags: () => ({ config: writeConfig('bad-region.yaml', 'carbon:\n  region: us-east-7\n') }), message: /carbon\.region: unknown region\. .*, got 'us-east-7'/ },
    { name: 'negative PUE', flags: () => ({ config: writeConfig('neg-pue.yaml', 'carbon:\n  region: FR\n  pue: -1.2\n') }), message: /carbon\.pue: must be >= 1: PUE is facility energy \/ IT energy, so it cannot be below 1, got -1\.2$/m },
    { name: 'absurd PUE', flags: () => ({ config: writeConfig('big-pue.yaml', 'carbon:\n  region: FR\n  pue: 5\n') }), message: /carbon\.pue: must be <= 3: no credible data centre runs above 3\.0; check the unit, got 5$/m },
    {
      name: 'intensity file with a gap',
      flags: () => {
        writeFileSync(join(dir, 'gap.csv'), 'timestamp,gco2e_per_kwh\n2026-07-01T00:00:00Z,100\n2026-07-01T02:00:00Z,100\n');
        return { config: writeConfig('gap.yaml', 'carbon:\n  intensityFile: gap.csv\n') };
      },
      message: /gap: no value for the hour 2026-07-01T01:00:00.000Z \(between lines 2 and 3\)/,
    },
    {
      name: 'intensity file with a bad timestamp',
      flags: () => {
        writeFileSync(join(dir, 'badts.csv'), 'timestamp,gco2e_per_kwh\n2026-07-01T00:00:00Z,100\n07/01/2026 01:00,100\n');
        return { config: writeConfig('badts.yaml', 'carbon:\n  intensityFile: badts.csv\n') };
      },
      message: /badts\.csv, line 3: bad timestamp "07\/01\/2026 01:00"/,
    },
    { name: 'quarter with no data', flags: () => ({ quarter: '2025-Q4' }), message: /no data between 2025-10-01T00:00:00Z and 2026-01-01T00:00:00Z .*the ledger holds hourly data from 2026-07-01/ },
    { name: 'a period not on whole hours', flags: () => ({ quarter: undefined, from: '2026-07-01T00:30:00Z', to: '2026-07-02' }), message: /--from: must fall on a whole UTC hour/ },
    { name: 'a malformed quarter', flags: () => ({ quarter: '2026-Q5' }), message: /--quarter: expected YYYY-Qn/ },
    // Date.parse would roll these over into another day, moving the period without a word.
    { name: 'a day that does not exist in --from', flags: () => ({ quarter: undefined, from: '2026-02-30', to: '2026-07-02' }), message: /--from: not a valid date \(got "2026-02-30"\)/ },
    { name: 'a day that does not exist in --to', flags: () => ({ quarter: undefined, from: '2026-07-01', to: '2026-06-31' }), message: /--to: not a valid date \(got "2026-06-31"\)/ },
    { name: 'February 29th of a common year, as a time', flags: () => ({ quarter: undefined, from: '2026-02-29T00:00:00Z', to: '2026-07-02' }), message: /--from: not a valid date/ },
    { name: 'hour 24', flags: () => ({ quarter: undefined, from: '2026-07-01T24:00:00Z', to: '2026-07-03' }), message: /--from: not a valid date/ },
    { name: 'a two-digit year', flags: () => ({ quarter: '0024-Q1' }), message: /--quarter: the year must lie in 1990-2199 \(got "0024-Q1"\)/ },
    { name: 'a two-digit year in --from', flags: () => ({ quarter: undefined, from: '0024-01-01', to: '2026-07-02' }), message: /--from: the year must lie in 1990-2199/ },
    {
      name: 'intensity file in kgCO2e/kWh whose header names no unit',
      flags: () => {
        writeFileSync(join(dir, 'kg.csv'), 'timestamp,carbon_intensity\n2026-07-01T00:00:00Z,0.056\n2026-07-01T01:00:00Z,0.061\n');
        return { config: writeConfig('kg.yaml', 'carbon:\n  intensityFile: kg.csv\n') };
      },
      message: /every value in column "carbon_intensity" is below 1 and its header names no unit/,
    },
    { name: 'a missing ledger', flags: () => ({ db: join(dir, 'nope', 'missing.db') }), message: /cannot open the ledger .*missing\.db/ },
  ];
  it('--out through a symbolic link writes the file it points to and keeps the link', async () => {
    const links = join(dir, 'links');
    mkdirSync(join(links, 'reports'), { recursive: true });
    writeFileSync(join(links, 'reports', 'target.json'), 'old');
    symlinkSync(join('reports', 'target.json'), join(links, 'link.json'));
    symlinkSync('link.json', join(links, 'chain.json'));
    const sink = await run({ quarter: '2026-Q3', out: join(links, 'chain.json') });
    assert.ok(lstatSync(join(links, 'chain.json')).isSymbolicLink(), 'the link given stays a link');
    assert.ok(lstatSync(join(links, 'link.json')).isSymbolicLink(), 'and so does the one it points to');
    const written = JSON.parse(readFileSync(join(links, 'reports', 'target.json'), 'utf8')) as EsgReport;
    assert.ok(checkContentSha256(written).ok, 'the target holds the new report');
    assert.match(sink.err.join(''), /wrote .*chain\.json through the link to .*reports\/target\.json \(json, /);
    // A link to a file not there yet creates it.
    symlinkSync(join('reports', 'new.json'), join(links, 'dangling.json'));
    await run({ quarter: '2026-Q3', out: join(links, 'dangling.json') });
    assert.ok(lstatSync(join(links, 'dangling.json')).isSymbolicLink());
    assert.ok(checkContentSha256(JSON.parse(readFileSync(join(links, 'reports', 'new.json'), 'utf8')) as EsgReport).ok);
    // A loop of links is refused by name, and nothing is written.
    symlinkSync('loop-b.json', join(links, 'loop-a.json'));
    symlinkSync('loop-a.json', join(links, 'loop-b.json'));
    await assert.rejects(run({ quarter: '2026-Q3', out: join(links, 'loop-a.json') }), /^Error: cannot write .*loop-a\.json: ELOOP$/);
    assert.deepEqual(readdirSync(links).filter((f) => f.endsWith('.tmp')), []);
    assert.deepEqual(readdirSync(join(links, 'reports')).filter((f) => f.endsWith('.tmp')), []);
  });

  it('an output directory that does not exist: the message names the path given', async () => {
    await assert.rejects(run({ quarter: '2026-Q3', out: join(dir, 'no-such-dir', 'q3.json') }), (e: Error) => /^cannot write .*no-such-dir\/q3\.json: ENOENT$/.test(e.message) && !e.message.includes('.tmp'));
  });
  for (const c of cases) {
    it(c.name, async () => {
      const out = join(dir, `${c.name.replace(/\W+/g, '-')}.json`);
      await assert.rejects(run({ quarter: '2026-Q3', ...c.flags(), out }), c.message);
      assert.equal(existsSync(out), false);
      writeFileSync(out, 'previous report');
      await assert.rejects(run({ quarter: '2026-Q3', ...c.flags(), out }), c.message);
      assert.equal(readFileSync(out, 'utf8'), 'previous report');
      assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
    });
  }
});
