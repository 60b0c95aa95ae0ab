import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { eventually, runCli, startAgent } from './agent-process.js';

// Energy counter calls that hang for 10 minutes at start-up (wedged GPUs); nvidia-smi is absent.
// NVML gives up on each after its 2 s call deadline. Before the fix each process then waited for
// the hung call before it exited (process.exit joins the blocked worker thread).
const bothWedged = installFakeNvml({
  gpus: [{}, {}],
  hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: -1, afterMs: 0, durationMs: 600_000, count: 2 }],
});
const oneWedged = installFakeNvml({
  gpus: [{}, {}],
  hangs: [{ fn: 'nvmlDeviceGetTotalEnergyConsumption', gpu: 1, afterMs: 0, durationMs: 600_000, count: 1 }],
});
// GPU 1 hangs before NVML gives its UUID: the agent cannot name it, nor take it among its GPUs.
const oneUnidentified = installFakeNvml({
  gpus: [{}, {}],
  hangs: [{ fn: 'nvmlDeviceGetUUID', gpu: 1, afterMs: 0, durationMs: 600_000, count: 1 }],
});
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-wedged-'));
after(() => {
  bothWedged.cleanup();
  oneWedged.cleanup();
  oneUnidentified.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

// Generous: the decision takes about 2-6 s; the hung calls would take 10 minutes.
const PROMPT_MS = 30_000;

test('a driver call hung at start-up on every GPU: `run --power auto` exits 3 without waiting for them', async () => {
  const result = await runCli(['run', '--power', 'auto', '--nvml-library', bothWedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--port', '0', '--host', '127.0.0.1', '--db', join(dir, 'ledger.db')], {}, PROMPT_MS);
  assert.equal(result.code, 3, result.stderr.slice(-2000));
  assert.match(result.stderr, /nvmlDeviceGetTotalEnergyConsumption on GPU 0 \(GPU-\S+\), nvmlDeviceGetTotalEnergyConsumption on GPU 1 \(GPU-\S+\) did not return within/);
  assert.match(result.stderr, /driver calls still hung: ending the process without waiting for them/);
});

test('a driver call hung at start-up on every GPU: `doctor` reports NVML unavailable (timeout) and exits 1 without waiting for them', async () => {
  const result = await runCli(['doctor', '--nvml-library', bothWedged.libraryPath, '--nvidia-smi', join(dir, 'no-nvidia-smi'),
    '--powercap-root', join(dir, 'no-powercap'), '--probe-ms', '200'], {}, PROMPT_MS);
  assert.equal(result.code, 1, result.stderr.slice(-2000));
  assert.match(result.stdout, /available: no \(timeout\)/);
  assert.match(result.stdout, /exit status 1/);
});

test('a driver call hung at start-up on one GPU: `run --power nvml` serves on the other, names the hung one, and stops at once', async () => {
  // Before the fix NVML failed to start for the whole node: `run --power nvml` exited 3.
  const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', oneWedged.libraryPath, '--db', join(dir, 'ledger-one.db')]);
  let code: number | null;
  let stopMs: number;
  try {
    const readiness = await eventually('/readyz 200', PROMPT_MS, async () => {
      const res = await agent.get('/readyz');
      return res.status === 200 ? (JSON.parse(res.body) as { checks: Record<string, { ok: boolean; detail: string }> }) : undefined;
    });
    assert.equal(readiness.checks.sampling?.detail, '1 of 2 GPU(s) sampling; no recent sample from GPU 1');
    assert.match(readiness.checks.source_errors?.detail ?? '', /^timeout x1: nvmlDeviceGetTotalEnergyConsumption on GPU 1 \(GPU-\S+\) did not return within 2000 ms at start-up; GPU 1 is left out/);
    assert.equal(sumOf(await agent.metrics(), 'tokenwatt_sample_errors_total', { reason: 'timeout' }), 1);
  } finally {
    const stoppedAt = Date.now();
    code = await agent.stop();
    stopMs = Date.now() - stoppedAt;
  }
  assert.equal(code, 0, agent.stderr().slice(-2000));
  assert.ok(stopMs < PROMPT_MS, `stopped in ${stopMs} ms`);
  assert.match(agent.stderr(), /driver calls still hung: ending the process without waiting for them/);
});

test('a GPU hung at start-up before NVML gave its UUID: /readyz counts it and names it as not sampled and not identified, as it does a hung GPU it could name', async () => {
  // Before the fix /readyz said "1 GPU(s) sampling": the node's second GPU was not there at all.
  const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', oneUnidentified.libraryPath, '--db', join(dir, 'ledger-unidentified.db')]);
  try {
    const readiness = await eventually('/readyz 200', PROMPT_MS, async () => {
      const res = await agent.get('/readyz');
      return res.status === 200 ? (JSON.parse(res.body) as { ready: boolean; checks: Record<string, { ok: boolean; detail: string }> }) : undefined;
    });
    // Ready, as with a lost GPU: the GPU that answers still takes records and settles.
    assert.equal(readiness.ready, true);
    assert.equal(readiness.checks.sampling?.ok, true);
    assert.equal(readiness.checks.sampling?.detail, '1 of 2 GPU(s) sampling; no recent sample from GPU 1 (not identified yet: nvmlDeviceGetUUID on GPU 1 hung at start-up)');
  } finally {
    await agent.stop();
  }
});
