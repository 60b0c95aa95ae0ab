import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './agent-process.js';

test('usage errors exit 2 with commander\'s message; --version and --help exit 0', async () => {
  const cases: [args: string[], code: number, output: RegExp][] = [
    [['doctor', '--bogus'], 2, /unknown option '--bogus'/],
    [['run', '--bogus'], 2, /unknown option '--bogus'/],
    [['nosuchcmd'], 2, /unknown command 'nosuchcmd'/],
    // Only the named command is loaded; an unknown one loads them all, for the suggestion.
    [['rnu'], 2, /unknown command 'rnu'\n\(Did you mean run\?\)/],
    [['demo', '--duration', 'abc'], 2, /option '--duration <seconds>' argument 'abc' is invalid\. must be a whole number from 1 to 31536000/],
    [['demo', '--summary-every', '-5'], 2, /option '--summary-every <seconds>' argument '-5' is invalid/],
    [['demo', '--seed', '1.5'], 2, /option '--seed <n>' argument '1\.5' is invalid/],
    [['--version'], 0, /^\d+\.\d+\.\d+/],
    [['analyze', '--help'], 0, /Exit status: 0 analysed; 1 bad input/],
  ];
  for (const [args, code, output] of cases) {
    const result = await runCli(args);
    assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stdout + result.stderr, output, args.join(' '));
    assert.doesNotMatch(result.stderr, /^tokenwatt: /m, 'commander\'s message is not printed twice');
  }
});

test('run --replay-keep-timestamps true with a trace recorded in the past: refused at start-up (exit 3, pointing to analyze), no ledger written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-keep-ts-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const trace = join(dir, 'trace.csv');
  const t0 = Date.UTC(2026, 6, 1);
  writeFileSync(trace, ['timestamp_ms,gpu,power_w,energy_j', ...[0, 1, 2, 3].map((k) => `${t0 + k * 1000},0,300,${300 * k}`)].join('\n') + '\n');
  const db = join(dir, 'agent.db');
  // Before the fix the agent started, booked the trace's energy as unattributed into hours it never covered, and never exited.
  const result = await runCli(['run', '--power', `replay:${trace}`, '--replay-keep-timestamps', 'true', '--db', db, '--port', '0', '--host', '127.0.0.1'], {}, 30_000);
  assert.equal(result.code, 3, result.stderr.slice(-2000));
  assert.match(result.stderr, /^tokenwatt: replay: \S+trace\.csv starts at 2026-07-01T00:00:00\.000Z, [\d.]+ d before now: .*\(--settle-lateness 120 s\).*`tokenwatt analyze --power FILE --requests FILE`/m);
  assert.equal(existsSync(db), false, 'nothing is written');
});
