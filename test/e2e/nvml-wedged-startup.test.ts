import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { runCli } from './agent-process.js';

// GPU 1's energy counter call hangs for 10 minutes at start-up (a wedged GPU); nvidia-smi is absent.
// NVML gives up on it after its 2 s call deadline. Before the fix each process then waited for the
// hung call before it exited (process.exit joins the blocked worker thread).
const install = installFakeNvml({
  gpus: [{}, {}],
  hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 0, durationMs: 600_000, count: 1 }],
});
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-wedged-'));
after(() => {
  install.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

// Generous: the decision takes about 2-3 s; the hung call would take 10 minutes.
const PROMPT_MS = 30_000;

test('a driver call hung at start-up: `run --power auto` exits 3 without waiting for it', async () => {
  const result = await runCli(['run', '--power', 'auto', '--nvml-library', install.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--port', '0', '--host', '127.0.0.1', '--db', join(dir, 'ledger.db')], {}, PROMPT_MS);
  assert.equal(result.code, 3, result.stderr.slice(-2000));
  assert.match(result.stderr, /nvmlDeviceGetTotalEnergyConsumption on GPU 1 did not return within/);
  assert.match(result.stderr, /driver calls still hung: ending the process without waiting for them/);
});

test('a driver call hung at start-up: `doctor` reports NVML unavailable (timeout) and exits 1 without waiting for it', async () => {
  const result = await runCli(['doctor', '--nvml-library', install.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--powercap-root', join(dir, 'no-powercap'), '--probe-ms', '200'], {}, PROMPT_MS);
  assert.equal(result.code, 1, result.stderr.slice(-2000));
  assert.match(result.stdout, /available: no \(timeout\)/);
  assert.match(result.stdout, /exit status 1/);
});
