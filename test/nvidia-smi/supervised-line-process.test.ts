import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SupervisedLineProcess, type LineProcessProblem, type SupervisedLineProcessOptions } from '../../collectors/nvidia-smi/supervised-line-process.js';

function supervised(command: string, args: string[], extra: Partial<SupervisedLineProcessOptions> = {}) {
  const lines: string[] = [];
  const problems: LineProcessProblem[] = [];
  const process = new SupervisedLineProcess({
    command, args, stallMs: 5000, startupMs: 5000, backoffMs: { initial: 1000, max: 1000 },
    onLine: (line) => lines.push(line), onProblem: (problem) => problems.push(problem), ...extra,
  });
  return { process, lines, problems };
}

/**
 * Makes signals to process groups (how the supervisor signals its children, each leading its own
 * group) not take effect for the groups `stuck` picks: stand-ins for processes in uninterruptible
 * sleep in the driver. Returns the real process.kill and a restore function.
 */
function groupSignalsIgnored(stuck: (pid: number) => boolean): { realKill: typeof process.kill; ignored: number[]; restore: () => void } {
  const realKill = process.kill.bind(process);
  const ignored: number[] = [];
  process.kill = ((pid: number, signal?: NodeJS.Signals | number) => {
    if (pid < 0 && stuck(-pid)) {
      if (!ignored.includes(-pid)) ignored.push(-pid);
      return true;
    }
    return realKill(pid, signal);
  }) as typeof process.kill;
  return { realKill, ignored, restore: () => { process.kill = realKill; } };
}

/** Alive and not a zombie (an orphan in a container may stay a zombie where nothing reaps it). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function timed(promise: Promise<void>, limitMs: number, what: string): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} still pending after ${limitMs} ms`)), limitMs); });
  try {
    await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
  return Date.now() - started;
}

test('stop() right after a spawn that fails (binary missing) returns at once, and nothing is reported after it', async () => {
  const { process, problems } = supervised('/nonexistent/nvidia-smi', []);
  process.start();
  await timed(process.stop(), 1000, 'stop()');
  await new Promise((resolve) => setTimeout(resolve, 50)); // the spawn's 'error' comes now
  assert.deepEqual(problems, []);
});

test('stop() after the spawn failure was reported returns at once too; the restart is cancelled', async () => {
  const { process, problems } = supervised('/nonexistent/nvidia-smi', []);
  process.start();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(problems[0]?.reason, 'spawn');
  await timed(process.stop(), 1000, 'stop()');
  assert.equal(process.startCount, 1);
});

test('stop(): a child that ignores SIGTERM is SIGKILLed after the grace', async () => {
  const script = "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000);";
  const { process, lines } = supervised(globalThis.process.execPath, ['-e', script], { stopGraceMs: 200 });
  process.start();
  const deadline = Date.now() + 5000;
  while (lines.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(lines, ['up']);
  const took = await timed(process.stop(), 2000, 'stop()');
  assert.ok(took >= 150, `stop() took ${took} ms: SIGTERM was not ignored?`);
});

test('stop(): a child that survives SIGKILL (stuck in the driver) is logged and left behind after a bounded wait', async () => {
  const script = "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000);";
  const errors: string[] = [];
  const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: (_: unknown, message: string) => void errors.push(message) };
  const { process, lines } = supervised(globalThis.process.execPath, ['-e', script], { stopGraceMs: 100, stopGiveUpMs: 200, log: log as never });
  process.start();
  const deadline = Date.now() + 5000;
  while (lines.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  // Signals that do not take effect stand in for a process in uninterruptible sleep.
  const signals = groupSignalsIgnored(() => true);
  try {
    const took = await timed(process.stop(), 2000, 'stop()');
    assert.ok(took >= 250, `gave up after ${took} ms`);
    assert.equal(signals.ignored.length, 1, 'its process group was signalled');
  } finally {
    signals.restore();
    for (const pid of signals.ignored) signals.realKill(-pid, 'SIGKILL');
  }
  assert.equal(errors.length, 1);
  assert.match(errors[0] ?? '', /did not exit 200 ms after SIGKILL .*left behind/);
});

test('a child killed as hung that survives SIGKILL: reported once, given up on after stopGiveUpMs and replaced; its late exit starts nothing', async () => {
  // The first child prints nothing (hung); the ones after it print a line every 50 ms. Deadlines
  // are loose so that a slow child start on a loaded machine is not taken for a hang.
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-slp-'));
  const mark = join(dir, 'started-once');
  const script = `const fs = require('fs'); if (fs.existsSync(${JSON.stringify(mark)})) setInterval(() => console.log('line'), 50); else { fs.writeFileSync(${JSON.stringify(mark)}, ''); setInterval(() => {}, 1000); }`;
  const errors: string[] = [];
  const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: (_: unknown, message: string) => void errors.push(message) };
  const problems: LineProcessProblem[] = [];
  const lines: string[] = [];
  // Signals that do not take effect on the first child's process group (the first one signalled)
  // stand in for a process in uninterruptible sleep in the driver.
  let stuckPid: number | undefined;
  const signals = groupSignalsIgnored((pid) => (stuckPid ??= pid) === pid);
  const supervisor: SupervisedLineProcess = new SupervisedLineProcess({
    command: globalThis.process.execPath, args: ['-e', script], stallMs: 1000, startupMs: 2000, stopGiveUpMs: 400,
    backoffMs: { initial: 50, max: 50 }, log: log as never,
    onLine: (line) => { lines.push(line); supervisor.markProgress(); },
    onProblem: (problem) => problems.push(problem),
  });
  try {
    supervisor.start();
    const deadline = Date.now() + 10_000;
    while (lines.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(lines.length >= 3, `no replacement child produced lines (children started: ${supervisor.startCount}, problems: ${problems.length})`);
    assert.equal(supervisor.startCount, 2);
    assert.deepEqual(problems.map((p) => p.reason), ['hang'], 'the stuck child is reported once, not on every watchdog tick');
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /did not exit 400 ms after SIGKILL .*left behind, starting a new one/);
    // The stuck child finally dies: the replacement runs on, no second one is started beside it.
    const first = stuckPid;
    assert.ok(first !== undefined);
    signals.realKill(-first, 'SIGKILL');
    const gone = Date.now() + 5000;
    while (existsSync(`/proc/${first}`) && Date.now() < gone) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(!existsSync(`/proc/${first}`), 'the stuck child exited and was reaped');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(supervisor.startCount, 2);
    assert.deepEqual(problems.map((p) => p.reason), ['hang']);
  } finally {
    signals.restore();
    await supervisor.stop();
    if (stuckPid !== undefined) { try { process.kill(-stuckPid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a wrapper script that runs the binary without exec: stop() and a hang restart end the binary too (the process group is signalled)', async () => {
  // sh -c '<node> -e "$0"; true' stands in for `chroot /run/nvidia/driver nvidia-smi "$@"`: the
  // shell stays the direct child and the binary its child. Each binary writes its pid, prints
  // one line and then hangs, so the watchdog kills and restarts the first one.
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-slp-wrap-'));
  const inner = `const fs = require('fs'); fs.writeFileSync(${JSON.stringify(join(dir, 'pid-'))} + process.pid, ''); console.log('up'); setInterval(() => {}, 1000);`;
  const lines: string[] = [];
  const problems: LineProcessProblem[] = [];
  const supervisor: SupervisedLineProcess = new SupervisedLineProcess({
    command: '/bin/sh', args: ['-c', `"${globalThis.process.execPath}" -e "$0"; true`, inner], stallMs: 1000, startupMs: 3000, stopGraceMs: 200,
    backoffMs: { initial: 50, max: 50 },
    onLine: (line) => { lines.push(line); supervisor.markProgress(); },
    onProblem: (problem) => problems.push(problem),
  });
  const pids = (): number[] => readdirSync(dir).filter((f) => f.startsWith('pid-')).map((f) => Number(f.slice(4)));
  try {
    supervisor.start();
    const deadline = Date.now() + 15_000;
    while (lines.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(lines.length >= 2, `the hung binary was not restarted (lines: ${lines.length}, problems: ${JSON.stringify(problems)})`);
    assert.equal(problems[0]?.reason, 'hang');
    await timed(supervisor.stop(), 3000, 'stop()');
    const left = Date.now() + 3000;
    while (pids().some(running) && Date.now() < left) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(pids().length >= 2, `binaries started: ${pids().length}`);
    assert.deepEqual(pids().filter(running), [], 'binaries left running after the restart and stop()');
  } finally {
    await supervisor.stop();
    for (const pid of pids()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  }
});
