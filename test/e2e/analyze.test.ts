import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { AnalyzeReport } from '../../model/analysis.js';
import { runCli } from './agent-process.js';
import { simulatedRun } from './simulated-run.js';

const T0 = Date.UTC(2026, 10, 3, 12, 0, 0);

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-analyze-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('analyze: each tier alone on its GPUs gets exactly those GPUs\' energy minus idle; JSON is the DESIGN contract', async (t) => {
  const dir = tempDir(t);
  const run = simulatedRun({ dir, seed: 21, startMs: T0, trafficMs: 60_000, endMs: T0 + 180_000 });
  const { code, stdout, stderr } = await runCli(['analyze', '--power', run.tracePath, '--requests', run.requestsPath, '--config', run.configPath, '--json', '--per-request']);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as AnalyzeReport;

  for (const key of ['measured_j', 'idle_j', 'attributed_j', 'unattributed_j', 'residual_j'] as const) assert.equal(typeof report.totals[key], 'number', `totals.${key}`);
  const { totals } = report;
  assert.ok(Math.abs(totals.measured_j - (totals.attributed_j + totals.idle_j + totals.unattributed_j)) < 1e-6 * totals.measured_j, 'conservation over the run');
  assert.ok(Math.abs(totals.residual_j) < 1e-6 * totals.measured_j);

  // Measured energy is what the trace's counters say.
  for (const gpu of report.gpus) {
    const expected = run.counterEnergyJ[gpu.uuid] ?? Number.NaN;
    assert.ok(Math.abs(gpu.measured_j - expected) < 1e-6 * Math.max(1, expected), `GPU ${gpu.index}: ${gpu.measured_j} J measured vs ${expected} J in the counters`);
  }
  // Known by construction: one tier per set of GPUs.
  const tiers = report.groups.filter((g) => g.by === 'tier');
  assert.deepEqual(tiers.map((g) => g.key).sort(), ['large', 'medium', 'small']);
  for (const group of tiers) {
    const gpus = report.gpus.filter((g) => run.tierGpus[group.key]?.includes(g.uuid));
    const expected = gpus.reduce((a, g) => a + g.measured_j - g.idle_j - g.unattributed_j, 0);
    assert.ok(Math.abs(group.joules - expected) < 1e-6 * expected, `tier ${group.key}: ${group.joules} J = its GPUs minus idle ${expected} J`);
    assert.ok(group.j_per_output_token !== null && group.j_per_output_token > 0);
    assert.ok((group.j_per_output_token_fully_loaded ?? 0) >= group.j_per_output_token, 'fully loaded >= marginal');
  }
  const byKey = Object.fromEntries(tiers.map((g) => [g.key, g.j_per_output_token ?? 0]));
  assert.ok(byKey.small! < byKey.medium! && byKey.medium! < byKey.large!, `J/token rises with the tier: ${JSON.stringify(byKey)}`);
  for (const by of ['model', 'batch_bucket', 'cache_bucket', 'gpu'] as const) assert.ok(report.groups.some((g) => g.by === by), `groups by ${by}`);
  assert.equal(report.requests?.length, run.records.length);
  const spare = report.gpus.find((g) => g.index === 7);
  assert.ok(spare && Math.abs(spare.idle_j - spare.measured_j) < 1e-9 * spare.measured_j, 'the spare GPU is all idle');
  assert.ok(report.tasks.length > 0 && report.tasks.some((task) => task.requests > 1), 'multi-request tasks');
  assert.equal(report.quality.simulated, true, 'a simulated trace is labelled simulated');

  // Deterministic: the same files give the same answer, byte for byte.
  const again = await runCli(['analyze', '--power', run.tracePath, '--requests', run.requestsPath, '--config', run.configPath, '--json', '--per-request']);
  assert.equal(again.stdout, stdout);

  // The text tables name the tiers and say the figures are simulated.
  const table = await runCli(['analyze', '--power', run.tracePath, '--requests', run.requestsPath, '--config', run.configPath]);
  assert.equal(table.code, 0, table.stderr);
  for (const tier of ['small', 'medium', 'large']) assert.match(table.stdout, new RegExp(`\\b${tier}\\b`));
  assert.match(table.stdout, /SIMULATED/);
});

test('analyze: traces of several simulated runs joined into one, each run\'s first samples marked counter_run_start, are measured to the sum of the runs plus the gaps between them', async (t) => {
  // Each simulator process seeds its counters afresh: with one seed a run starts again just under
  // where the run before it ended (within 1%: read as glitches), with another far above it (steps no
  // board draws, refused as millijoules). Marked, each join is one counter reset per GPU.
  const dir = tempDir(t);
  const runs = [
    { seed: 3, startMs: T0 },
    { seed: 3, startMs: T0 + 65_000 },
    { seed: 8, startMs: T0 + 130_000 },
  ].map((r) => simulatedRun({ dir: mkdtempSync(join(dir, 'run-')), seed: r.seed, startMs: r.startMs, trafficMs: 30_000, endMs: r.startMs + 60_000, counterRunStart: true }));
  const power = join(dir, 'joined.csv');
  const requests = join(dir, 'requests.ndjson');
  const [first, ...rest] = runs.map((r) => readFileSync(r.tracePath, 'utf8'));
  assert.match(first ?? '', /^timestamp_ms,gpu,power_w,energy_j,simulated,counter_run_start\n/);
  writeFileSync(power, [first, ...rest.map((text) => text.slice(text.indexOf('\n') + 1))].join(''));
  // Measured energy is the point here (runs of one seed repeat request ids).
  writeFileSync(requests, '');

  // The truth: each run's counter increase, and between runs the trapezoid of power (all there is).
  let expectedJ = 0;
  for (const [k, run] of runs.entries()) {
    expectedJ += Object.values(run.counterEnergyJ).reduce((a, b) => a + b, 0);
    const next = runs[k + 1];
    if (!next) continue;
    for (const gpu of run.gpus) {
      const last = run.samples.filter((s) => s.gpuUuid === gpu.uuid).at(-1)!;
      const after = next.samples.find((s) => s.gpuUuid === gpu.uuid)!;
      expectedJ += (((last.powerW ?? 0) + (after.powerW ?? 0)) / 2) * ((after.timestampMs - last.timestampMs) / 1000);
    }
  }
  const { code, stdout, stderr } = await runCli(['analyze', '--power', power, '--requests', requests, '--config', runs[0]!.configPath, '--json']);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as AnalyzeReport & { input: { trace_bad_lines: number } };
  assert.equal(report.input.trace_bad_lines, 0);
  assert.ok(Math.abs(report.totals.measured_j - expectedJ) < 1e-6 * expectedJ, `measured ${report.totals.measured_j} J, runs and gaps ${expectedJ} J`);
  assert.equal(report.quality.counter_resets, 2 * runs[0]!.gpus.length, 'each join is one counter reset per GPU');
  assert.ok(Math.abs(report.totals.residual_j) < 1e-6 * expectedJ);
});

test('analyze: a bad trace line or record is named with its line, and nothing is analysed unless asked', async (t) => {
  const dir = tempDir(t);
  const run = simulatedRun({ dir, seed: 4, startMs: T0, trafficMs: 10_000, endMs: T0 + 20_000 });
  const lines = readFileSync(run.tracePath, 'utf8').split('\n');
  lines.splice(5, 0, `${T0 + 400},${run.gpus[0]!.uuid},lots,12,1`);
  const badTrace = join(dir, 'bad-trace.csv');
  writeFileSync(badTrace, lines.join('\n'));
  const badRequests = join(dir, 'bad-requests.ndjson');
  writeFileSync(badRequests, `${readFileSync(run.requestsPath, 'utf8')}{"request_id":"x","model":"m","start":1,"end":2,"prompt_tokens":1,"completion_tokens":1}\nnot json\n`);
  const records = run.records.length;

  const strict = await runCli(['analyze', '--power', badTrace, '--requests', badRequests, '--config', run.configPath, '--json']);
  assert.equal(strict.code, 1);
  assert.equal(strict.stdout, '', 'nothing analysed');
  assert.match(strict.stderr, /bad-trace\.csv:6: .*power/);
  assert.match(strict.stderr, new RegExp(`bad-requests\\.ndjson:${records + 1}: start: .*out of range`));
  assert.match(strict.stderr, new RegExp(`bad-requests\\.ndjson:${records + 2}: `));

  const lenient = await runCli(['analyze', '--power', badTrace, '--requests', badRequests, '--config', run.configPath, '--json', '--skip-bad-lines']);
  assert.equal(lenient.code, 0, lenient.stderr);
  const report = JSON.parse(lenient.stdout) as AnalyzeReport & { input: { input_problems: number } };
  assert.ok(report.input.input_problems >= 3, 'the skipped problems are counted in the report');
  assert.equal(report.quality.records, records);

  const missing = await runCli(['analyze', '--power', join(dir, 'nope.csv'), '--requests', run.requestsPath]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /--power .*nope\.csv: no such file/);
});

test('analyze: a record naming a GPU the trace lacks is named by its line; repeated lines are counted in quality', async (t) => {
  const dir = tempDir(t);
  const run = simulatedRun({ dir, seed: 5, startMs: T0, trafficMs: 10_000, endMs: T0 + 30_000 });
  const lines = readFileSync(run.requestsPath, 'utf8').trimEnd().split('\n');
  const unknownGpu = JSON.stringify({ ...JSON.parse(lines[0]!), request_id: 'ghost', gpus: ['GPU-not-in-trace'] });
  const withProblems = join(dir, 'requests-2.ndjson');
  writeFileSync(withProblems, [...lines, unknownGpu, lines[1]].join('\n') + '\n');
  const strict = await runCli(['analyze', '--power', run.tracePath, '--requests', withProblems, '--config', run.configPath, '--json']);
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, new RegExp(`requests-2\\.ndjson:${lines.length + 1}: gpus: no such GPU on this node: GPU-not-in-trace`));
  const lenient = await runCli(['analyze', '--power', run.tracePath, '--requests', withProblems, '--config', run.configPath, '--json', '--skip-bad-lines']);
  assert.equal(lenient.code, 0, lenient.stderr);
  assert.equal((JSON.parse(lenient.stdout) as AnalyzeReport).quality.duplicate_records, 1);
});

test('analyze: many bad trace lines are all counted (in all and by reason) though only the first are listed', async (t) => {
  const dir = tempDir(t);
  const power = join(dir, 'power.csv');
  const requests = join(dir, 'requests.ndjson');
  const rows = ['timestamp_ms,gpu,power_w,energy_j'];
  for (let k = 0; k < 5000; k++) rows.push(`${T0 + k * 100},0,${k % 10 === 0 ? 100 : '[N/A]'},`);
  writeFileSync(power, `${rows.join('\n')}\n`);
  writeFileSync(requests, '');
  const strict = await runCli(['analyze', '--power', power, '--requests', requests, '--json']);
  assert.equal(strict.code, 1);
  const listed = strict.stderr.split('\n').filter((l) => /power\.csv:\d+: /.test(l));
  assert.equal(listed.length, 20);
  assert.match(listed[0] ?? '', /power\.csv:3: power_w: not a number \("\[N\/A\]"\)/);
  assert.match(strict.stderr, /\.\.\. and 4480 more\n/);
  assert.match(strict.stderr, /power\.csv: 4500 bad line\(s\): 4500 power_w: not a number\n/);
  assert.match(strict.stderr, /4500 problem\(s\) in the input/);
  const lenient = await runCli(['analyze', '--power', power, '--requests', requests, '--json', '--skip-bad-lines']);
  assert.equal(lenient.code, 0, lenient.stderr);
  const input = (JSON.parse(lenient.stdout) as { input: { input_problems: number; trace_bad_lines: number; trace_bad_lines_by_reason: Record<string, number> } }).input;
  assert.equal(input.input_problems, 4500);
  assert.equal(input.trace_bad_lines, 4500);
  assert.deepEqual(input.trace_bad_lines_by_reason, { 'power_w: not a number': 4500 });
});

test('analyze: the text output shows what --json says: duplicates the file parser removed, input problems, the trace notes', async (t) => {
  const dir = tempDir(t);
  const power = join(dir, 'power.csv');
  const requests = join(dir, 'requests.ndjson');
  // Two captures concatenated in the wrong order (the counter continues): re-ordered, and a note says so.
  const block = (from: number) => [0, 1, 2, 3, 4].map((k) => `${T0 + (from + k) * 1000},0,100,${(from + k) * 100}`);
  writeFileSync(power, ['timestamp_ms,gpu,power_w,energy_j', ...block(10), ...block(0)].join('\n') + '\n');
  const record = JSON.stringify({ request_id: 'a', model: 'm', gpus: [0], start: T0 + 1000, end: T0 + 3000, prompt_tokens: 10, completion_tokens: 10 });
  writeFileSync(requests, `${record}\n${record}\n{"request_id":"bad"}\n`);
  const args = ['analyze', '--power', power, '--requests', requests, '--skip-bad-lines'];
  const json = await runCli([...args, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const output = JSON.parse(json.stdout) as AnalyzeReport & { input: { input_problems: number; notes: string[] } };
  assert.equal(output.quality.duplicate_records, 1);
  assert.equal(output.input.input_problems, 5);
  assert.ok(output.input.notes.some((n) => n.startsWith('blocks of lines out of time order were put in time order')));
  assert.match(json.stderr, /5 problem\(s\) skipped as asked; they are counted in input\.input_problems\n/);

  const text = await runCli(args);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^quality: .*; duplicate_records 1;/m);
  assert.match(text.stdout, /^input: input_problems 5; .*duplicate_request_lines 1/m);
  for (const note of output.input.notes) assert.ok(text.stdout.includes(`  note: ${note}\n`), note);
});

test('analyze: a trace line over 1 MiB is a bad line named by its number: skipped with --skip-bad-lines, else exit 1', async (t) => {
  const dir = tempDir(t);
  const power = join(dir, 'power.csv');
  const requests = join(dir, 'requests.ndjson');
  writeFileSync(power, ['timestamp_ms,gpu,power_w,energy_j', `${T0},0,100,`, `${T0 + 1000},0,100,`, `${T0 + 2000},0,${'9'.repeat(1 << 20)},`, `${T0 + 3000},0,100,`].join('\n') + '\n');
  writeFileSync(requests, '');
  const strict = await runCli(['analyze', '--power', power, '--requests', requests, '--json']);
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /power\.csv:4: line longer than 1048576 characters: not a trace line\n/);
  const lenient = await runCli(['analyze', '--power', power, '--requests', requests, '--json', '--skip-bad-lines']);
  assert.equal(lenient.code, 0, lenient.stderr);
  assert.match(lenient.stderr, /power\.csv:4: line longer than 1048576 characters/);
  const report = JSON.parse(lenient.stdout) as AnalyzeReport & { input: { input_problems: number } };
  assert.equal(report.input.input_problems, 1);
  assert.equal(report.totals.measured_j, 300);
});

test('analyze: the request file is streamed: a line over 1 MiB is a bad line named by its number, every bad line and duplicate is counted', async (t) => {
  const dir = tempDir(t);
  const power = join(dir, 'power.csv');
  const requests = join(dir, 'requests.ndjson');
  writeFileSync(power, ['timestamp_ms,gpu,power_w,energy_j', ...[0, 1, 2, 3, 4].map((k) => `${T0 + k * 1000},0,100,`)].join('\n') + '\n');
  const record = (id: string) => JSON.stringify({ request_id: id, model: 'm', gpus: [0], start: T0 + 1000, end: T0 + 3000, prompt_tokens: 10, completion_tokens: 10 });
  const lines = [record('a'), `{"request_id":"huge","model":"m","labels":{"team":"${'x'.repeat(1 << 20)}"}}`, `[${record('in-array')}]`, record('b')];
  for (let k = 0; k < 150; k++) lines.push(`not json ${k}`, record('a'));
  writeFileSync(requests, `${lines.join('\n')}\n`);

  const strict = await runCli(['analyze', '--power', power, '--requests', requests, '--json']);
  assert.equal(strict.code, 1);
  const listed = strict.stderr.split('\n').filter((l) => /requests\.ndjson:\d+: /.test(l));
  assert.equal(listed.length, 20);
  assert.equal(listed[0], `${requests}:2: (line): longer than 1048576 characters: a request file has one JSON record per line (NDJSON)`);
  assert.match(listed[1] ?? '', /requests\.ndjson:3: \(record\): must be a JSON object: .*not a JSON array/);
  assert.match(listed[2] ?? '', /requests\.ndjson:5: \(line\): not valid JSON/);
  assert.match(strict.stderr, /\.\.\. and 132 more\n/);
  assert.match(strict.stderr, /152 problem\(s\) in the input; nothing analysed/);

  const lenient = await runCli(['analyze', '--power', power, '--requests', requests, '--json', '--skip-bad-lines']);
  assert.equal(lenient.code, 0, lenient.stderr);
  const output = JSON.parse(lenient.stdout) as AnalyzeReport & { input: { input_problems: number; duplicate_request_lines: number } };
  assert.equal(output.input.input_problems, 152);
  assert.equal(output.input.duplicate_request_lines, 150);
  assert.equal(output.quality.duplicate_records, 150);
  assert.equal(output.quality.records, 2, 'a and b analysed');
});
