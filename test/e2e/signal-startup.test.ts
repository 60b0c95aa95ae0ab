import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './agent-process.js';

/** Spawn `tokenwatt run` and send `signals` as soon as its first log line arrives, i.e. during start-up. */
function signalDuringStartup(dbPath: string, signals: readonly NodeJS.Signals[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'run', '--power', 'simulated', '--port', '0', '--host', '127.0.0.1', '--db', dbPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (sent) return;
      sent = true;
      for (const s of signals) child.kill(s);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the agent did not exit in 30 s:\n${stderr.slice(-2000)}`));
    }, 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

test('a SIGTERM during start-up is not fatal: the agent finishes starting, then shuts down cleanly and exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-signal-'));
  try {
    const first = await signalDuringStartup(join(dir, 'ledger.db'), ['SIGTERM']);
    // Without a handler in place, the default action kills the process (signal SIGTERM, no code).
    assert.equal(first.signal, null, `killed by ${first.signal}:\n${first.stderr.slice(-2000)}`);
    assert.equal(first.code, 0, first.stderr.slice(-2000));
    assert.match(first.stderr, /"msg":"shutting down"/);
    // The clean shutdown released the writer lease: a second agent takes the file without a takeover.
    const second = await signalDuringStartup(join(dir, 'ledger.db'), ['SIGTERM']);
    assert.equal(second.code, 0, second.stderr.slice(-2000));
    assert.doesNotMatch(second.stderr, /taken over|took over/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two signals during start-up: the process exits by its own hand (status 1 at once, or 0 after a clean stop), never by the signal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-signal-'));
  try {
    const result = await signalDuringStartup(join(dir, 'ledger.db'), ['SIGINT', 'SIGINT']);
    assert.equal(result.signal, null, `killed by ${result.signal}`);
    // Both signals land before start-up ends, or the first one stops an agent that already serves
    // and the second is ignored: either way the process ends by its own hand, never by the signal.
    if (/again during start-up: exiting now/.test(result.stderr)) assert.equal(result.code, 1);
    else assert.equal(result.code, 0, result.stderr.slice(-2000));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
