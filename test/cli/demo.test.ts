import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DemoSummaryPrinter } from '../../agent/demo-summary.js';
import type { DemoWorkload, DemoWorkloadStats } from '../../agent/demo-workload.js';
import { Ledger } from '../../agent/ledger.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { writeLedger } from '../esg/ledger-fixture.js';
import { makeRollups } from '../esg/rollup-fixtures.js';

/** `tokenwatt demo` through agent/cli.ts (no build needed); ports 19500-19599 only. */
const CLI_ARGS = ['--import', 'tsx', 'agent/cli.ts', 'demo'];

describe('tokenwatt demo stands alone', { timeout: 120_000 }, () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-demo-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses, with exit 2 and the reason, a --db or TOKENWATT_DB ledger that already holds power samples', () => {
    const db = join(dir, 'used.db');
    const ledger = Ledger.open(db, { node: 'n', retention: { samplesHours: 48, requestsDays: 7, rollupsDays: 400 } });
    ledger.insertSamples([{ timestampMs: epochMs(Date.now() - 1000), gpuUuid: 'GPU-sim00000-0000-0000-0000-000000000000', gpuIndex: 0, powerW: watts(70), energyJ: joules(4e7), simulated: true }]);
    ledger.close();
    const before = statSync(db).mtimeMs;
    const env = { ...process.env, TOKENWATT_DB: '' };
    for (const [args, extraEnv, from] of [
      [['--db', db], {}, '--db'],
      [[], { TOKENWATT_DB: db }, 'TOKENWATT_DB'],
    ] as const) {
      const run = spawnSync(process.execPath, [...CLI_ARGS, '--port', '19510', '--duration', '30', ...args], { encoding: 'utf8', env: { ...env, ...extraEnv }, timeout: 60_000 });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`the ledger .*used\\.db \\(from ${from}\\) already holds power samples\\. A demo must stand alone`));
      assert.match(run.stderr, /Give a new file \(e\.g\. --db .*\), or leave --db and TOKENWATT_DB unset/);
      assert.doesNotMatch(run.stdout, /SIMULATED/, 'nothing started');
    }
    assert.equal(statSync(db).mtimeMs, before, 'the ledger is left as it was');
  });

  it('binds 127.0.0.1 unless --host is given', async () => {
    const external = Object.values(os.networkInterfaces())
      .flat()
      .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address;
    const reach = (host: string, port: number) =>
      new Promise<boolean>((resolve) => {
        const socket = net.connect({ host, port }, () => {
          socket.destroy();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      });
    for (const [host, port] of [[undefined, 19511], ['0.0.0.0', 19512]] as const) {
      const child = spawn(process.execPath, [...CLI_ARGS, '--port', String(port), '--duration', '20', '--summary-every', '0', ...(host ? ['--host', host] : [])], {
        env: { ...process.env, TOKENWATT_DB: '', TOKENWATT_HOST: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      try {
        const deadline = Date.now() + 40_000;
        while (!out.includes('Metrics: curl') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
        assert.match(out, new RegExp(`Metrics: curl http://127\\.0\\.0\\.1:${port}/metrics`), err);
        assert.equal(await reach('127.0.0.1', port), true);
        if (external !== undefined) assert.equal(await reach(external, port), host !== undefined, `${external}:${port} with --host ${host ?? '(none)'}`);
        // The open-ingest warning only where ingest is really open.
        assert.equal(/not set while listening on/.test(err), host !== undefined, err);
      } finally {
        child.kill('SIGTERM');
        assert.equal(await exited, 0, err);
      }
    }
  });

  it('the summary covers this run only: its start, and no task closed before it', () => {
    const hourStart = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    const startedAtMs = hourStart + 60_000;
    const rollups = makeRollups({ fromMs: hourStart, hours: 1, seed: 3 });
    const db = writeLedger(join(dir, 'summary.db'), 'n', rollups);
    const printer = new DemoSummaryPrinter({
      dbPath: db,
      node: 'n',
      startedAtMs,
      address: '127.0.0.1',
      port: 19513,
      workload: {} as DemoWorkload,
      health: () => ({ sampleErrors: 0, rejectedRecords: 0, settledUntilMs: hourStart + 3_600_000 }),
      taskIdleMs: 0,
    });
    try {
      const snapshot = printer.snapshot();
      const later = rollups.tasks.filter((t) => t.lastEndMs >= startedAtMs).length;
      assert.ok(later > 0 && later < rollups.tasks.length, 'the fixture has tasks on both sides of the start');
      assert.equal(snapshot.tasks?.closed, later);
      assert.equal(snapshot.windowStartMs, startedAtMs);
    } finally {
      printer.close();
    }
  });

  it('the banner says what the tables do: printed from the start, their figures once the first periods are settled', () => {
    const db = writeLedger(join(dir, 'nothing-settled.db'), 'n', { energy: [], host: [], usage: [], tasks: [], quality: [] });
    const stats: DemoWorkloadStats = { tasksStarted: 0, requestsSubmitted: 0, retries: 0, cancelled: 0, errored: 0, tasksSucceeded: 0, tasksFailed: 0, bursts: 0, tickErrors: 0, skippedMs: 0 };
    const printer = (everyS: number, latenessS = 30) =>
      new DemoSummaryPrinter({
        dbPath: db,
        node: 'n',
        startedAtMs: Date.now(),
        address: '127.0.0.1',
        port: 19513,
        workload: { stats: () => stats } as unknown as DemoWorkload,
        health: () => ({ sampleErrors: 0, rejectedRecords: 0, settledUntilMs: null }),
        taskIdleMs: 60_000,
        tables: { everyS, figuresAfterS: 35, latenessS },
      });
    const every10 = printer(10);
    try {
      // The first table comes before anything is settled (the old banner said it would wait).
      assert.match(every10.render(), /tier: no settled requests yet/);
      assert.match(every10.banner(), /A table every 10 s; its figures start once the first periods are settled, about 35 s in/);
      assert.doesNotMatch(every10.banner(), /first table appears/);
      // The demo's 30 s lateness leaves its longest requests late: said, with the fix.
      assert.match(every10.banner(), /Settle lateness 30 s, short for quick figures: the longest reasoning requests/);
      assert.match(every10.banner(), /--settle-lateness 400 avoids it/);
    } finally {
      every10.close();
    }
    const patient = printer(10, 400);
    try {
      assert.doesNotMatch(patient.banner(), /Settle lateness/, 'nothing to say once the lateness covers the longest request');
    } finally {
      patient.close();
    }
    const never = printer(0);
    try {
      assert.match(never.banner(), /No tables \(--summary-every 0\)/);
    } finally {
      never.close();
    }
  });

  it('counts a task closed only as the agent does: no request for the task idle time before the settled edge', () => {
    const hourStart = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    const rollups = makeRollups({ fromMs: hourStart, hours: 1, seed: 3 });
    const db = writeLedger(join(dir, 'summary-open.db'), 'n', rollups);
    const settledUntilMs = hourStart + 3_600_000;
    const taskIdleMs = 58 * 60_000; // the fixture's tasks end 0.5, 1.5 and 2.5 minutes into the hour
    const printer = new DemoSummaryPrinter({
      dbPath: db,
      node: 'n',
      startedAtMs: hourStart,
      address: '127.0.0.1',
      port: 19513,
      workload: {} as DemoWorkload,
      health: () => ({ sampleErrors: 0, rejectedRecords: 0, settledUntilMs }),
      taskIdleMs,
    });
    try {
      const tasks = printer.snapshot().tasks;
      const inRun = rollups.tasks.filter((t) => t.lastEndMs >= hourStart);
      const closed = inRun.filter((t) => t.lastEndMs + taskIdleMs <= settledUntilMs);
      assert.ok(closed.length > 0 && closed.length < inRun.length, 'the fixture has closed and open tasks');
      assert.equal(tasks?.closed, closed.length);
      assert.equal(tasks?.open, inRun.length - closed.length);
      assert.equal(tasks?.succeeded, closed.filter((t) => t.succeeded).length);
      assert.ok(Math.abs((tasks?.joules ?? -1) - closed.reduce((a, t) => a + t.joules, 0)) < 1e-6, 'joules of the closed tasks only');
    } finally {
      printer.close();
    }
  });
});
