import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
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
  const kill = ChildProcess.prototype.kill;
  const children: ChildProcess[] = [];
  ChildProcess.prototype.kill = function (this: ChildProcess) { children.push(this); return true; };
  try {
    const took = await timed(process.stop(), 2000, 'stop()');
    assert.ok(took >= 250, `gave up after ${took} ms`);
  } finally {
    ChildProcess.prototype.kill = kill;
    for (const child of new Set(children)) child.kill('SIGKILL');
  }
  assert.equal(errors.length, 1);
  assert.match(errors[0] ?? '', /did not exit 200 ms after SIGKILL .*left behind/);
});
