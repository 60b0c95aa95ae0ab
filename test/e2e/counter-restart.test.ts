import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { eventually, startAgent, type AgentProcess } from './agent-process.js';

/**
 * A simulator's and a replay's energy counters start again with each agent process, a little under
 * the highest reading the stopped agent stored. The periods after a restart must still measure
 * what the GPUs drew (before, they measured 0 J until the counter passed the old highest reading).
 */

interface PeriodRow {
  gpu: string;
  startMs: number;
  measuredJ: number;
  coveredMs: number;
  /** Mean of the stored power readings inside the period. */
  meanW: number | null;
}

function periodsOf(db: string, fromMs: number): PeriodRow[] {
  const file = new Database(db, { readonly: true });
  try {
    return file.prepare(`SELECT p.gpu_uuid AS gpu, p.period_start_ms AS startMs, p.measured_j AS measuredJ, p.covered_ms AS coveredMs,
        (SELECT avg(s.power_w) FROM power_samples s WHERE s.gpu_uuid = p.gpu_uuid AND s.ts_ms >= p.period_start_ms AND s.ts_ms < p.period_end_ms) AS meanW
      FROM periods p WHERE p.period_start_ms >= ? ORDER BY p.gpu_uuid, p.period_start_ms`).all(fromMs) as PeriodRow[];
  } finally {
    file.close();
  }
}

function firstSampleMs(db: string): number {
  const file = new Database(db, { readonly: true });
  try {
    return (file.prepare('SELECT min(ts_ms) AS t FROM power_samples').get() as { t: number }).t;
  } finally {
    file.close();
  }
}

const settledUntilMs = async (agent: AgentProcess): Promise<number> => 1000 * sumOf(await agent.metrics(), 'tokenwatt_settled_until_timestamp_seconds');

/** Run the agent until it has settled `settleS` seconds after it started, then stop it (SIGTERM, or kill -9). */
async function runFor(args: readonly string[], settleS: number, kill: boolean): Promise<void> {
  const startedMs = Date.now();
  const agent = await startAgent(args);
  try {
    await eventually(`settlement ${settleS} s past the start`, 30_000, async () => ((await settledUntilMs(agent)) >= startedMs + settleS * 1000 ? true : undefined));
  } finally {
    if (kill) await agent.kill9();
    else assert.equal(await agent.stop(), 0, agent.stderr().slice(-1500));
  }
}

/** Two runs of the agent on one ledger (`power` is given the temp dir); returns the ledger and when the second run started. */
async function twoRuns(t: { after: (f: () => void) => void }, power: (dir: string) => string, kill: boolean): Promise<{ db: string; restartMs: number }> {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-counter-restart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'agent.db');
  const args = ['run', '--power', power(dir), '--db', db, '--settle-lateness', '2', '--settle-period', '1'];
  // The first run settles a few periods: each settlement stores the counters' highest readings.
  await runFor(args, 4, kill);
  const restartMs = Date.now();
  await runFor(args, 7, false);
  return { db, restartMs };
}

for (const kill of [false, true]) {
  test(`simulated GPUs measure their power's energy in the periods after a ${kill ? 'kill -9' : 'SIGTERM'} and restart on the same ledger`, { timeout: 120_000 }, async (t) => {
    const { db, restartMs } = await twoRuns(t, () => 'simulated', kill);
    const after = periodsOf(db, restartMs).filter((p) => p.coveredMs === 1000 && p.meanW !== null);
    const gpus = new Set(after.map((p) => p.gpu));
    assert.ok(gpus.size >= 1 && after.length >= 4 * gpus.size, `periods settled after the restart: ${after.length} on ${gpus.size} GPU(s)`);
    for (const p of after) {
      // Idle simulated GPUs: about 70 W, so about 70 J a period (0 J before the fix).
      const expectedJ = (p.meanW as number) * (p.coveredMs / 1000);
      assert.ok(p.measuredJ > 0.8 * expectedJ && p.measuredJ < 1.25 * expectedJ, `${p.gpu} period at +${p.startMs - restartMs} ms: measured ${p.measuredJ.toFixed(1)} J, its power readings say ${expectedJ.toFixed(1)} J`);
    }
  });
}

test('a replayed trace measures its power\'s energy in every period, before and after a restart on the same ledger', { timeout: 120_000 }, async (t) => {
  // GPU 0 at a constant 300 W for 600 s at 10 Hz, its counter from 500 MJ: each run replays it from its start.
  const trace = (dir: string): string => {
    const path = join(dir, 'trace.csv');
    const t0 = Date.UTC(2026, 0, 1);
    const lines = ['timestamp_ms,gpu,power_w,energy_j'];
    for (let k = 0; k <= 6000; k += 1) lines.push(`${t0 + 100 * k},0,300,${5e8 + 30 * k}`);
    writeFileSync(path, `${lines.join('\n')}\n`);
    return `replay:${path}`;
  };
  const { db, restartMs } = await twoRuns(t, trace, false);
  // Every period after the first sample: the first run's, the one across the restart, and the second run's.
  const rows = periodsOf(db, firstSampleMs(db));
  assert.ok(rows.filter((p) => p.startMs >= restartMs).length >= 4, `periods settled after the restart: ${rows.length} in all`);
  // 300 W throughout: each 1 s period measures 300 J, the one across the restart (the time the
  // agent was down counted from power, flagged) included.
  for (const p of rows) {
    assert.ok(Math.abs(p.measuredJ - 300) <= 1.5, `period at ${p.startMs - restartMs} ms from the restart: measured ${p.measuredJ.toFixed(2)} J, 300 W for 1 s is 300 J`);
  }
});

test('a replay with its own timestamps, restarted with a longer lateness, skips the samples the ledger already holds instead of counting them as errors', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-kept-restart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'agent.db');
  const tracePath = join(dir, 'trace.csv');
  // GPU 0 at 300 W for 60 s at 10 Hz, starting about now: the replay keeps these timestamps.
  const t0 = Math.ceil(Date.now() / 100) * 100 + 300;
  const lines = ['timestamp_ms,gpu,power_w,energy_j'];
  for (let k = 0; k <= 600; k += 1) lines.push(`${t0 + 100 * k},0,300,${5e8 + 30 * k}`);
  writeFileSync(tracePath, `${lines.join('\n')}\n`);
  const args = (lateness: number): string[] => ['run', '--power', `replay:${tracePath}`, '--replay-keep-timestamps', 'true', '--db', db, '--settle-lateness', String(lateness), '--settle-period', '1'];
  // The replay refuses a trace that starts more than the lateness before now: 8 s leaves a slow
  // machine time to start the agent (2 s did not, under load).
  const first = await startAgent(args(8));
  let settledMs: number;
  try {
    settledMs = await eventually('the first run settling 2 s of the trace', 30_000, async () => {
      const s = await settledUntilMs(first);
      return s >= t0 + 2000 ? s : undefined;
    });
  } finally {
    assert.equal(await first.stop(), 0, first.stderr().slice(-1500));
  }
  const storedMs = (() => {
    const file = new Database(db, { readonly: true });
    try {
      return (file.prepare('SELECT max(ts_ms) AS t FROM power_samples').get() as { t: number }).t;
    } finally {
      file.close();
    }
  })();
  // Started again with a longer lateness (the trace now starts too far back for 8 s): the replay
  // gives the trace from its first sample again, so its first seconds are ones the ledger holds,
  // some of them in settled time.
  const second = await startAgent(args(60));
  try {
    // New samples are counted once the replay has passed what the first run stored.
    await eventually('the second run\'s first new samples', 30_000, async () => (sumOf(await second.metrics(), 'tokenwatt_samples_total') >= 5 ? true : undefined));
    const families = await second.metrics();
    assert.ok(settledMs > t0 && storedMs > settledMs, `the first run settled ${settledMs - t0} ms and stored ${storedMs - t0} ms of the trace`);
    assert.equal(sumOf(families, 'tokenwatt_sample_errors_total', { reason: 'stale_timestamp' }), 0, 'readings the ledger already holds are no stale samples');
  } finally {
    assert.equal(await second.stop(), 0, second.stderr().slice(-1500));
  }
  const file = new Database(db, { readonly: true });
  try {
    const errors = (file.prepare('SELECT coalesce(sum(sample_errors), 0) AS n FROM hourly_quality').get() as { n: number }).n;
    assert.equal(errors, 0, 'nor sample errors in the ledger\'s data quality');
  } finally {
    file.close();
  }
});
