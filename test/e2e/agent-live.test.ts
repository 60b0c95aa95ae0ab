import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import type { AnalyzeReport } from '../../model/analysis.js';
import { epochMs } from '../../model/units.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, runCli, startAgent } from './agent-process.js';
import { simulatedRun } from './simulated-run.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('demo: a simulated node serving three tiers shows J/token in /metrics, every figure labelled simulated', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const agent = await startAgent(['demo', '--db', join(dir, 'demo.db'), '--settle-lateness', '3', '--settle-period', '1', '--summary-every', '3']);
  t.after(() => agent.stop());

  const families = await eventually('energy attributed to at least two tiers', 60_000, async () => {
    const m = await agent.metrics();
    const tiers = new Set((m.get('tokenwatt_energy_joules_total')?.samples ?? []).map((s) => s.labels.tier));
    return tiers.size >= 2 ? m : undefined;
  });
  const energy = families.get('tokenwatt_energy_joules_total')!;
  assert.ok(energy.samples.every((s) => s.labels.simulated === 'true'), 'every attributed-energy series says simulated="true"');
  assert.ok(energy.samples.every((s) => ['static', 'dynamic'].includes(s.labels.mode ?? '')));
  assert.equal(sumOf(families, 'tokenwatt_power_source_info', { kind: 'simulated', simulated: 'true' }), 1);
  assert.equal(families.get('tokenwatt_gpu_power_watts')?.samples.length, 8, 'power of all 8 GPUs');
  assert.ok(sumOf(families, 'tokenwatt_tokens_total', { kind: 'completion' }) > 0);
  assert.ok(sumOf(families, 'tokenwatt_requests_total') > 0);

  // Conservation seen from outside, over the same settled periods: measured = attributed (final
  // requests) + pending (requests still in flight) + idle + unattributed.
  const measured = sumOf(families, 'tokenwatt_gpu_energy_joules_total');
  const attributed = sumOf(families, 'tokenwatt_energy_joules_total');
  const pending = sumOf(families, 'tokenwatt_pending_attributed_energy_joules');
  const idle = sumOf(families, 'tokenwatt_idle_energy_joules_total');
  const unattributed = sumOf(families, 'tokenwatt_unattributed_energy_joules_total');
  assert.ok(measured > 0);
  assert.ok(Math.abs(measured - (attributed + pending + idle + unattributed)) <= 1e-6 * measured, `measured ${measured} = ${attributed} + ${pending} + ${idle} + ${unattributed}`);
  assert.ok(Math.abs(sumOf(families, 'tokenwatt_conservation_residual_joules')) < 1e-6);

  const ready = await eventually('/readyz 200', 20_000, async () => ((await agent.get('/readyz')).status === 200 ? true : undefined));
  assert.equal(ready, true);
  assert.equal((await agent.get('/healthz')).status, 200);
  await eventually('a summary table on stdout', 20_000, async () => (/J\/out-tok/.test(agent.stdout()) ? true : undefined));
  assert.match(agent.stdout(), /SIMULATED GPU NODE — figures are simulated, not measured/);
  assert.equal(await agent.stop(), 0, 'SIGTERM shuts down cleanly');
});

test('run --power replay: a recorded run posted over HTTP gives the offline answer per tier and the trace\'s own energy', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  // A 20 s run starting a few seconds from now, replayed with its own timestamps in real time.
  // The replay refuses a trace that starts more than the lateness (2 s) before now, and records
  // from then would be late: 8 s leaves a slow machine time to start the agent.
  const startMs = Math.ceil(Date.now() / 1000) * 1000 + 8000;
  const endMs = startMs + 20_000;
  const run = simulatedRun({ dir, seed: 9, startMs, trafficMs: 14_000, endMs, ratePerSecond: 6 });
  assert.ok(run.records.length > 20, `enough requests (${run.records.length})`);

  const agent = await startAgent(
    ['run', '--power', `replay:${run.tracePath}`, '--replay-keep-timestamps', 'true', '--db', join(dir, 'agent.db'), '--config', run.configPath, '--settle-lateness', '2', '--settle-period', '1'],
  );
  t.after(() => agent.stop());
  // Records of a run are posted as they were recorded: all of them, in one NDJSON body (their times
  // lie in the next seconds, which the agent accepts within its clock-skew allowance).
  const posted = await agent.post('/v1/requests', readFileSync(run.requestsPath, 'utf8'));
  assert.equal(posted.status, 202, posted.body);
  assert.equal(JSON.parse(posted.body).accepted, run.records.length);
  const repeat = await agent.post('/v1/requests', readFileSync(run.requestsPath, 'utf8'));
  assert.deepEqual(JSON.parse(repeat.body), { accepted: 0, duplicates: run.records.length, late: 0, rejected: 0 }, 'a repeat is acknowledged, not doubled');
  // Two records refused at ingest: counted in /metrics and, through settlement, in the ledger's data quality.
  const refused = await agent.post('/v1/requests', [
    { request_id: 'bad-gpu', model: 'm', start: startMs, end: startMs + 100, prompt_tokens: 1, completion_tokens: 1, gpus: [99] },
    { request_id: 'bad-cache', model: 'm', start: startMs, end: startMs + 100, prompt_tokens: 1, completion_tokens: 1, cached_tokens: 5 },
  ].map((r) => JSON.stringify(r)).join('\n'));
  assert.equal(refused.status, 400, refused.body);
  assert.deepEqual((JSON.parse(refused.body) as { errors: { field: string }[] }).errors.map((e) => e.field), ['gpus', 'cached_tokens']);

  const families = await eventually('settlement past the end of the trace', 60_000, async () => {
    const m = await agent.metrics();
    return sumOf(m, 'tokenwatt_settled_until_timestamp_seconds') * 1000 >= endMs + 1000 ? m : undefined;
  });
  // The agent measured what the trace's energy counters say.
  for (const gpu of run.gpus) {
    const measured = sumOf(families, 'tokenwatt_gpu_energy_joules_total', { uuid: gpu.uuid });
    const expected = run.counterEnergyJ[gpu.uuid] ?? Number.NaN;
    assert.ok(Math.abs(measured - expected) <= 1e-6 * expected, `GPU ${gpu.index}: agent ${measured} J vs trace ${expected} J`);
  }
  // And per tier, exactly what the offline analysis of the same files says.
  const offline = await runCli(['analyze', '--power', run.tracePath, '--requests', run.requestsPath, '--config', run.configPath, '--json']);
  assert.equal(offline.code, 0, offline.stderr);
  const report = JSON.parse(offline.stdout) as AnalyzeReport;
  for (const group of report.groups.filter((g) => g.by === 'tier')) {
    const live = sumOf(families, 'tokenwatt_energy_joules_total', { tier: group.key });
    assert.ok(Math.abs(live - group.joules) <= 1e-6 * group.joules, `tier ${group.key}: live ${live} J vs offline ${group.joules} J`);
    const completion = sumOf(families, 'tokenwatt_tokens_total', { tier: group.key, kind: 'completion' });
    assert.equal(completion, group.completion_tokens, `tier ${group.key}: completion tokens`);
  }
  assert.equal(sumOf(families, 'tokenwatt_requests_total'), run.records.length, 'every request settled once');
  assert.equal(sumOf(families, 'tokenwatt_late_records_total'), 0);
  assert.equal(sumOf(families, 'tokenwatt_records_rejected_total'), 2);
  assert.equal(await agent.stop(), 0);
  const ledger = Ledger.openReadOnly(join(dir, 'agent.db'));
  try {
    const quality = ledger.readHourlyQuality(epochMs(startMs - 3_600_000), epochMs(endMs + 3_600_000));
    assert.equal(quality.reduce((a, q) => a + q.rejectedRecords, 0), 2, 'the ledger (and so the ESG report) counts the refused records');
  } finally {
    ledger.close();
  }
});

test('a GPU that stops sampling is reported, its power series goes, and the agent stays ready for ingest', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  // GPU 0 samples for 30 s; GPU 1 falls silent after its first second (an XID 79, say).
  const lines = ['timestamp_ms,gpu,power_w,energy_j'];
  for (let ms = 0; ms <= 30_000; ms += 100) {
    lines.push(`${1_764_000_000_000 + ms},0,150,`);
    if (ms <= 1_000) lines.push(`${1_764_000_000_000 + ms},1,150,`);
  }
  const trace = join(dir, 'trace.csv');
  writeFileSync(trace, `${lines.join('\n')}\n`);
  const agent = await startAgent(['run', '--power', `replay:${trace}`, '--db', join(dir, 'agent.db'), '--settle-lateness', '2', '--settle-period', '1']);
  t.after(() => agent.stop());
  const readiness = await eventually('GPU 1 reported stale', 20_000, async () => {
    const r = await agent.get('/readyz');
    return /1 of 2 GPU\(s\) sampling; no recent sample from GPU 1/.test(r.body) ? r : undefined;
  });
  assert.equal(readiness.status, 200, `still ready: ${readiness.body}`);
  const power = await eventually('GPU 1 power series gone', 10_000, async () => {
    const m = await agent.metrics();
    const gpus = (m.get('tokenwatt_gpu_power_watts')?.samples ?? []).map((s) => s.labels.gpu);
    return gpus.includes('1') ? undefined : gpus;
  });
  assert.deepEqual(power, ['0'], 'the healthy GPU keeps its power series');
});

test('run --power replay: the end of the trace is logged (the agent goes on, not ready), not left to be guessed from /readyz', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const lines = ['timestamp_ms,gpu,power_w,energy_j'];
  for (let ms = 0; ms <= 1_000; ms += 100) lines.push(`${1_764_000_000_000 + ms},0,150,${(ms * 0.15).toFixed(1)}`);
  const trace = join(dir, 'short.csv');
  writeFileSync(trace, `${lines.join('\n')}\n`);
  const agent = await startAgent(['run', '--power', `replay:${trace}`, '--db', join(dir, 'agent.db'), '--settle-lateness', '2', '--settle-period', '1']);
  t.after(() => agent.stop());
  const logged = await eventually('the end of the replay logged', 20_000, async () => {
    const line = (agent.stdout() + agent.stderr()).split('\n').find((l) => l.includes('"msg":"replay: ') && l.includes(' ended '));
    return line === undefined ? undefined : (JSON.parse(line) as { level: string; file: string; msg: string });
  });
  assert.equal(logged.file, trace);
  assert.match(logged.msg, /short\.csv ended \(its last sample replayed\); the agent goes on without samples/);
  const readiness = await eventually('GPU 0 reported stale', 20_000, async () => {
    const r = await agent.get('/readyz');
    return /no recent sample from GPU 0/.test(r.body) ? r : undefined;
  });
  assert.equal(readiness.status, 503, readiness.body);
  assert.equal(await agent.stop(), 0);
});

test('run --power replay: --replay-loop true starts the trace over, the counters going on: energy keeps coming past the trace\'s own, and no end is logged', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const lines = ['timestamp_ms,gpu,power_w,energy_j'];
  // 1 s at 150 W: 150 J a loop (plus the gap of one sample period between loops, at the last power).
  for (let ms = 0; ms <= 1_000; ms += 100) lines.push(`${1_764_000_000_000 + ms},0,150,${(ms * 0.15).toFixed(1)}`);
  const trace = join(dir, 'short.csv');
  writeFileSync(trace, `${lines.join('\n')}\n`);
  const agent = await startAgent(['run', '--power', `replay:${trace}`, '--replay-loop', 'true', '--db', join(dir, 'agent.db'), '--settle-lateness', '2', '--settle-period', '1']);
  t.after(() => agent.stop());
  // Four loops' worth settled: a replay played once stops at 150 J.
  const families = await eventually('more than four loops of energy settled', 30_000, async () => {
    const m = await agent.metrics();
    return sumOf(m, 'tokenwatt_gpu_energy_joules_total') > 4 * 150 ? m : undefined;
  });
  assert.equal(sumOf(families, 'tokenwatt_estimated_energy_joules_total'), 0, 'a loop is no counter reset: nothing estimated');
  const readiness = await agent.get('/readyz');
  assert.equal(readiness.status, 200, readiness.body);
  assert.ok(!(agent.stdout() + agent.stderr()).includes(' ended (its last sample replayed)'), 'a looping replay does not end');
  assert.equal(await agent.stop(), 0);
});
