import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { eventually, runCli, startAgent } from './agent-process.js';

// GPU 1's energy counter call hangs for 10 minutes at start-up (a wedged GPU); nvidia-smi is absent.
// NVML gives up on it after its 2 s call deadline, sets it aside and starts on GPU 0. Before, the
// whole NVML start-up failed (run exiting 3), and before that each process also waited for the
// hung call before it exited (process.exit joins the blocked worker thread).
const wedged = installFakeNvml({
  gpus: [{}, {}],
  hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 0, durationMs: 600_000, count: 1 }],
});
// The only GPU is wedged: nothing is left to sample.
const onlyWedged = installFakeNvml({
  gpus: [{}],
  hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 0, afterMs: 0, durationMs: 600_000, count: 1 }],
});
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-wedged-'));
after(() => {
  wedged.cleanup();
  onlyWedged.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

// Generous: the decision takes about 2-3 s; the hung call would take 10 minutes.
const PROMPT_MS = 30_000;

test('a GPU wedged at start-up: `run --power auto` starts on the healthy GPU, says why GPU 1 is left out, and stops promptly', async () => {
  const agent = await startAgent(['run', '--power', 'auto', '--nvml-library', wedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--db', join(dir, 'ledger.db')]);
  try {
    await eventually('/readyz 200', 20_000, async () => ((await agent.get('/readyz')).status === 200 ? true : undefined));
    assert.match(agent.stderr(), /GPU 1 is not usable through NVML: nvmlDeviceGetTotalEnergyConsumption on GPU 1 did not return within 2000 ms: set aside/);
  } finally {
    const stopping = Date.now();
    const code = await agent.stop();
    assert.equal(code, 0, agent.stderr().slice(-2000));
    assert.ok(Date.now() - stopping < PROMPT_MS, 'stopped without waiting for the hung call');
  }
  assert.match(agent.stderr(), /driver calls still hung: ending the process without waiting for them/);
});

test('a GPU wedged at start-up: `doctor` reports NVML available with GPU 1 not sampled and why, and exits 0 without waiting for it', async () => {
  const result = await runCli(['doctor', '--nvml-library', wedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--powercap-root', join(dir, 'no-powercap'), '--probe-ms', '200'], {}, PROMPT_MS);
  assert.equal(result.code, 0, result.stdout + result.stderr.slice(-2000));
  assert.match(result.stdout, /GPU 1 not sampled: nvmlDeviceGetTotalEnergyConsumption on GPU 1 did not return within 2000 ms: set aside/);
});

test('the only GPU wedged at start-up: `run --power auto` exits 3 without waiting for the hung call', async () => {
  const result = await runCli(['run', '--power', 'auto', '--nvml-library', onlyWedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--port', '0', '--host', '127.0.0.1', '--db', join(dir, 'ledger-2.db')], {}, PROMPT_MS);
  assert.equal(result.code, 3, result.stderr.slice(-2000));
  assert.match(result.stderr, /nvmlDeviceGetTotalEnergyConsumption on GPU 0 did not return within 2000 ms.* No other GPU is usable/);
  assert.match(result.stderr, /driver calls still hung: ending the process without waiting for them/);
});

test('the only GPU wedged at start-up: `doctor` reports NVML unavailable (timeout) and exits 1 without waiting for it', async () => {
  const result = await runCli(['doctor', '--nvml-library', onlyWedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--powercap-root', join(dir, 'no-powercap'), '--probe-ms', '200'], {}, PROMPT_MS);
  assert.equal(result.code, 1, result.stderr.slice(-2000));
  assert.match(result.stdout, /available: no \(timeout\)/);
  assert.match(result.stdout, /exit status 1/);
});
