import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runExport } from '../../agent/commands/export.js';
import type { ExportIo } from '../../agent/commands/export.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { CarbonConfigInput } from '../../model/carbon/carbon-config.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { checkContentSha256, contentSha256 } from '../../exporters/esg/canonical-json.js';
import { MergeError } from '../../exporters/esg/esg-errors.js';
import { OFFSET_ROLE } from '../../exporters/esg/esg-report.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { mergeEsgReports } from '../../exporters/esg/merge-reports.js';
import { esgReportSchemaProblems } from '../../exporters/esg/report-schema.js';
import { makeRollups } from './rollup-fixtures.js';
import type { Rollups } from './rollup-fixtures.js';

const T0 = Date.UTC(2026, 6, 1);
const Q3 = { fromMs: T0, toMs: Date.UTC(2026, 9, 1), label: '2026-Q3' };
const META = { toolVersion: '1.0.0', generatedAt: '2026-10-02T00:00:00.000Z' };

function nodeReport(node: string, rollups: Rollups, carbon: CarbonConfigInput, period = Q3): EsgReport {
  const parsed = parseCarbonConfig(carbon);
  if (!parsed.ok) throw new Error(parsed.errors.join());
  return buildEsgReport({ ...rollups, carbon: parsed.config, period, ...META });
}

const a = nodeReport('node-a', makeRollups({ node: 'node-a', fromMs: T0, hours: 48, gpus: 2, seed: 1, skipHours: [10, 11, 12] }), { region: 'FR', pue: 1.2 });
const b = nodeReport('node-b', makeRollups({ node: 'node-b', fromMs: T0 + 24 * 3_600_000, hours: 48, gpus: 4, seed: 2 }), { region: 'egrid:CAMX', pue: 1.4 });
const close = (x: number, y: number, what: string): void => assert.ok(Math.abs(x - y) <= 1e-8 * Math.max(1, Math.abs(y)), `${what}: ${x} != ${y}`);

describe('fleet report from node reports (--merge)', () => {
  const fleet = mergeEsgReports([{ name: 'a.json', report: a }, { name: 'b.json', report: b }], META);

  it('sums the additive figures and recomputes the ratios', () => {
    assert.deepEqual(fleet.nodes, ['node-a', 'node-b']);
    assert.equal(fleet.data_source, 'merge');
    for (const key of ['gpu_energy_kwh', 'facility_energy_kwh', 'emissions_location_kgco2e', 'emissions_market_kgco2e', 'embodied_kgco2e', 'completion_tokens'] as const) {
      close(fleet.totals[key], a.totals[key] + b.totals[key], key);
    }
    // effective PUE is facility / IT over the fleet, between the two sites' PUEs
    close(fleet.totals.pue, fleet.totals.facility_energy_kwh / fleet.totals.it_energy_kwh, 'pue');
    assert.ok(fleet.totals.pue > 1.2 && fleet.totals.pue < 1.4);
    const sci = ((a.sci.operational_gco2e + b.sci.operational_gco2e + a.sci.embodied_gco2e + b.sci.embodied_gco2e) / (a.totals.completion_tokens + b.totals.completion_tokens)) * 1000;
    close(fleet.sci.per_1k_tokens_gco2e ?? 0, sci, 'sci per 1k');
    const large = (r: EsgReport) => r.breakdowns.find((x) => x.by === 'tier' && x.key === 'large');
    close(large(fleet)?.attributed_energy_kwh ?? 0, (large(a)?.attributed_energy_kwh ?? 0) + (large(b)?.attributed_energy_kwh ?? 0), 'large kWh');
    close(fleet.tasks.count, a.tasks.count + b.tasks.count, 'tasks');
    assert.deepEqual(esgReportSchemaProblems(fleet), []);
    assert.ok(checkContentSha256(fleet).ok);
  });

  it('states node coverage: which nodes, which hours are missing, which hours the fleet had data', () => {
    assert.deepEqual(fleet.coverage.nodes.map((n) => n.node), ['node-a', 'node-b']);
    assert.deepEqual(fleet.coverage.nodes[0]?.missing_hours[0], { from: '2026-07-01T10:00:00Z', to: '2026-07-01T13:00:00Z', hours: 3 });
    // node-a covers hours 0..47 minus 3, node-b hours 24..71: the union is 72 hours (a's gap is covered by nobody).
    assert.equal(fleet.quality.hours_with_data, 72 - 3);
    assert.deepEqual(fleet.coverage.sources.map((s) => s.name), ['a.json', 'b.json']);
    assert.ok(fleet.factors.some((f) => f.role === 'location' && f.id === 'FR' && f.nodes.join() === 'node-a'));
    assert.ok(fleet.factors.some((f) => f.role === 'location' && f.id === 'egrid:CAMX' && f.nodes.join() === 'node-b'));
  });

  it('counts a report given twice once, and says so', () => {
    const twice = mergeEsgReports([{ name: 'a.json', report: a }, { name: 'b.json', report: b }, { name: 'copy-of-a.json', report: a }], META);
    assert.equal(twice.totals.gpu_energy_kwh, fleet.totals.gpu_energy_kwh);
    assert.deepEqual(twice.coverage.duplicates_ignored, [{ name: 'copy-of-a.json', content_sha256: a.content_sha256, duplicate_of: 'a.json' }]);
  });

  it('refuses the same node in two different reports (double counting)', () => {
    const a2 = nodeReport('node-a', makeRollups({ node: 'node-a', fromMs: T0, hours: 5, seed: 9 }), { region: 'FR' });
    assert.throws(() => mergeEsgReports([{ name: 'a.json', report: a }, { name: 'a-again.json', report: a2 }], META), (e: unknown) => e instanceof MergeError && /node node-a is in both a\.json and a-again\.json/.test(e.message));
  });

  it('refuses reports of different periods', () => {
    const other = nodeReport('node-c', makeRollups({ node: 'node-c', fromMs: T0, hours: 5, seed: 4 }), { region: 'FR' }, { fromMs: T0, toMs: T0 + 86_400_000, label: 'day' });
    assert.throws(() => mergeEsgReports([{ name: 'a.json', report: a }, { name: 'c.json', report: other }], META), /c\.json covers 2026-07-01T00:00:00Z to 2026-07-02T00:00:00Z, but a\.json covers/);
  });

  it('refuses a tampered node report', () => {
    const tampered = { ...b, totals: { ...b.totals, gpu_energy_kwh: 1 } };
    assert.throws(() => mergeEsgReports([{ name: 'a.json', report: a }, { name: 'b.json', report: tampered }], META), /b\.json: content hash mismatch/);
  });

  it('says that tasks are counted per node when more than one node has tasks', () => {
    assert.ok(a.tasks.count > 0 && b.tasks.count > 0, 'both fixtures have tasks');
    assert.ok(fleet.quality.notes.some((n) => /tasks are counted per node \(node-a, node-b\): a task whose requests ran on more than one/.test(n)));
    const alone = mergeEsgReports([{ name: 'a.json', report: a }], META);
    assert.ok(!alone.quality.notes.some((n) => /tasks are counted per node/.test(n)));
  });

  it('warns when ledger and Prometheus reports are merged, as their node names cannot be matched', () => {
    const fromPrometheus = { ...b, data_source: 'prometheus' as const };
    const { content_sha256: _, ...unhashed } = fromPrometheus;
    const mixed = mergeEsgReports([{ name: 'a.json', report: a }, { name: 'p.json', report: { ...unhashed, content_sha256: contentSha256(unhashed) } }], META);
    assert.ok(mixed.quality.notes.some((n) => /from node ledgers and from Prometheus are merged/.test(n)));
    assert.ok(!fleet.quality.notes.some((n) => /from node ledgers and from Prometheus/.test(n)));
  });

  it('counts an offset configured alike on several nodes once, in its total as in its factor list; different offsets add up', () => {
    const shared = { kgCo2e: 100, source: 'Gold Standard GS-1234 (retired 2026-09)', description: 'company-wide purchase' };
    const withOffset = (node: string, seed: number, offsets: CarbonConfigInput['offsets']) =>
      nodeReport(node, makeRollups({ node, fromMs: T0, hours: 24, gpus: 1, seed }), { region: 'FR', offsets });
    const same = mergeEsgReports([{ name: 'x.json', report: withOffset('node-x', 3, [shared]) }, { name: 'y.json', report: withOffset('node-y', 4, [shared]) }], META);
    const offsetFactors = same.factors.filter((f) => f.role.startsWith('offset'));
    assert.deepEqual(offsetFactors.map((f) => [f.value, f.nodes]), [[100, ['node-x', 'node-y']]]);
    assert.equal(same.totals.offsets_kgco2e, 100);
    const other = { ...shared, kgCo2e: 40, description: 'node-y site purchase' };
    const different = mergeEsgReports([{ name: 'x.json', report: withOffset('node-x', 3, [shared]) }, { name: 'y.json', report: withOffset('node-y', 4, [other]) }], META);
    assert.equal(different.totals.offsets_kgco2e, 140);
    assert.deepEqual(esgReportSchemaProblems(same), []);
  });

  it('matches an offset by its content, not its position in each node\'s list', () => {
    const x = { kgCo2e: 100, source: 'Gold Standard VER batch 7', description: 'company-wide purchase' };
    const y = { kgCo2e: 50, source: 'registry 9', description: 'node-b site purchase' };
    const withOffsets = (node: string, seed: number, offsets: CarbonConfigInput['offsets']) =>
      nodeReport(node, makeRollups({ node, fromMs: T0, hours: 24, gpus: 1, seed }), { region: 'FR', offsets });
    const nodeA = withOffsets('node-a', 3, [x]);
    const nodeB = withOffsets('node-b', 4, [y, x]);
    const fleet = mergeEsgReports([{ name: 'a.json', report: nodeA }, { name: 'b.json', report: nodeB }], META);
    assert.equal(fleet.totals.offsets_kgco2e, 150);
    const offsets = fleet.factors.filter((f) => f.role === OFFSET_ROLE);
    assert.deepEqual(offsets.map((f) => [f.value, f.nodes]).sort(), [[100, ['node-a', 'node-b']], [50, ['node-b']]]);
    // The same purchase has the same id in both node reports.
    assert.equal(nodeA.factors.find((f) => f.value === 100 && f.nodes.includes('node-a'))?.id, nodeB.factors.find((f) => f.value === 100)?.id);
    // Reports that named offsets by position (offset:0, offset:1) are matched by content too.
    const byPosition = (r: EsgReport): EsgReport => {
      let i = 0;
      const unhashed = { ...r, factors: r.factors.map((f) => (f.id.startsWith('offset:') ? { ...f, id: `offset:${i++}` } : f)), content_sha256: '' };
      return { ...unhashed, content_sha256: contentSha256(unhashed) };
    };
    assert.equal(mergeEsgReports([{ name: 'a.json', report: byPosition(nodeA) }, { name: 'b.json', report: byPosition(nodeB) }], META).totals.offsets_kgco2e, 150);
    // The same purchase listed twice on one node is two purchases: one of them is also node-b's.
    const twice = withOffsets('node-a', 3, [x, x]);
    assert.equal(twice.totals.offsets_kgco2e, 200);
    assert.equal(new Set(twice.factors.filter((f) => f.value === 100).map((f) => f.id)).size, 2);
    assert.equal(mergeEsgReports([{ name: 'a.json', report: twice }, { name: 'b.json', report: nodeB }], META).totals.offsets_kgco2e, 250);
  });

  it('carries the simulated mark into the fleet report', () => {
    const sim = nodeReport('node-s', makeRollups({ node: 'node-s', fromMs: T0, hours: 5, seed: 4, simulated: true }), { region: 'FR' });
    const merged = mergeEsgReports([{ name: 'a.json', report: a }, { name: 's.json', report: sim }], META);
    assert.equal(merged.simulated, true);
    assert.match(merged.title, /^SIMULATED DATA/);
    assert.ok(merged.quality.simulated_share > 0 && merged.quality.simulated_share < 1);
  });
});

describe('tokenwatt export --merge', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-esg-merge-'));
    writeFileSync(join(dir, 'a.json'), JSON.stringify(a));
    writeFileSync(join(dir, 'b.json'), JSON.stringify(b));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a fleet report that verifies by hash, ignoring a repeated file', async () => {
    const err: string[] = [];
    const io: ExportIo = { stdout: () => undefined, stderr: (t) => err.push(t), env: {}, now: () => new Date('2026-10-03T00:00:00Z') };
    const out = join(dir, 'fleet.json');
    await runExport({ merge: [join(dir, 'a.json'), join(dir, 'b.json'), join(dir, 'a.json')], out }, io);
    const fleet = JSON.parse(readFileSync(out, 'utf8')) as EsgReport;
    assert.equal(fleet.coverage.duplicates_ignored.length, 1);
    close(fleet.totals.gpu_energy_kwh, a.totals.gpu_energy_kwh + b.totals.gpu_energy_kwh, 'gpu');
    const said: string[] = [];
    await runExport({ verify: out }, { ...io, stdout: (t) => said.push(t) });
    assert.match(said.join(''), /content hash verified .* built from node reports/);
  });

  it('refuses to pass reports of part of a period off as the period asked for, checking both ends', async () => {
    const july = { fromMs: T0, toMs: Date.UTC(2026, 7, 1), label: 'July' };
    writeFileSync(join(dir, 'a-july.json'), JSON.stringify(nodeReport('node-a', makeRollups({ node: 'node-a', fromMs: T0, hours: 24, seed: 1 }), { region: 'FR' }, july)));
    writeFileSync(join(dir, 'b-july.json'), JSON.stringify(nodeReport('node-b', makeRollups({ node: 'node-b', fromMs: T0, hours: 24, seed: 2 }), { region: 'FR' }, july)));
    const io: ExportIo = { stdout: () => undefined, stderr: () => undefined, env: {}, now: () => new Date() };
    const merge = [join(dir, 'a-july.json'), join(dir, 'b-july.json')];
    await assert.rejects(runExport({ merge, quarter: '2026-Q3' }, io), /the reports cover 2026-07-01T00:00:00Z to 2026-08-01T00:00:00Z .*not the period asked for \(2026-Q3\)/);
    await assert.rejects(runExport({ merge, to: '2030-01-01' }, io), /say which period/);
    const out = join(dir, 'july-fleet.json');
    await runExport({ merge, from: '2026-07-01', to: '2026-08-01', out }, io);
    assert.equal((JSON.parse(readFileSync(out, 'utf8')) as EsgReport).period.to, '2026-08-01T00:00:00Z');
  });

  it('refuses a node report that is not valid JSON or not a report', async () => {
    writeFileSync(join(dir, 'bad.json'), '[1,2');
    const io: ExportIo = { stdout: () => undefined, stderr: () => undefined, env: {}, now: () => new Date() };
    await assert.rejects(runExport({ merge: [join(dir, 'a.json'), join(dir, 'bad.json')] }, io), /bad\.json: not JSON/);
  });
});
