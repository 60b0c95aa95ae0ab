import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { CAPTURE_DIR, fakeNvidiaSmiBinary, writeGpuCount } from '../fakes/fake-nvidia-smi.js';
import { eventually, startAgent, type AgentProcess } from './agent-process.js';

// The fake nvidia-smi lists as many GPUs as the count file says, in its GPU list and in its
// running stream: GPU 1 appears after start-up, goes away, and comes back.
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-smi-gpu-added-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ADDED = 'GPU-00000001-0000-0000-0000-000000000000';

async function sampling(agent: AgentProcess, detail: RegExp): Promise<void> {
  await eventually(`readyz sampling ${detail}`, 40_000, async () => {
    const ready = JSON.parse((await agent.get('/readyz')).body) as { checks: Record<string, { detail: string }> };
    return detail.test(ready.checks.sampling?.detail ?? '') ? true : undefined;
  });
}

test('nvidia-smi: a GPU listed after start-up is learnt, takes records and is settled; gone, its energy is a gap, not dropped', { timeout: 120_000 }, async () => {
  const countFile = join(dir, 'gpus');
  writeGpuCount(countFile, 1);
  const agent = await startAgent(['run', '--power', 'nvidia-smi', '--nvidia-smi', fakeNvidiaSmiBinary(), '--db', join(dir, 'ledger.db'), '--settle-period', '1', '--settle-lateness', '2'], {
    FAKE_NVIDIA_SMI_CAPTURE: join(CAPTURE_DIR, 'linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt'),
    FAKE_NVIDIA_SMI_GPUS_FILE: countFile,
  });
  try {
    await sampling(agent, /^1 GPU\(s\) sampling$/);
    writeGpuCount(countFile, 2);
    await sampling(agent, /^2 GPU\(s\) sampling$/);
    // Records 3 s ahead: late only if the post takes 4.8 s to be taken in (started 0.2 s back, they
    // were late once a slow machine took 1.8 s). The 2 s lateness stays:
    // GPU 1's gap below outlasts it, as it did.
    const endMs = Date.now() + 3000;
    const record = (id: string, gpu: string) =>
      JSON.stringify({ request_id: id, model: 'm', tier: 'small', gpus: [gpu], start: endMs - 200, end: endMs, prompt_tokens: 10, completion_tokens: 5 });
    const reply = await agent.post('/v1/requests', [record('by-index', '1'), record('by-uuid', ADDED)].join('\n'));
    assert.equal(reply.status, 202, reply.body);
    assert.deepEqual(JSON.parse(reply.body), { accepted: 2, duplicates: 0, late: 0, rejected: 0 });
    await eventually('GPU 1 energy settled and attributed', 30_000, async () => {
      const f = await agent.metrics();
      return sumOf(f, 'tokenwatt_gpu_energy_joules_total', { gpu: '1', uuid: ADDED }) > 0 && sumOf(f, 'tokenwatt_energy_joules_total') > 0 ? f : undefined;
    });
    // Told once, as the GPU list describes it (found by the stream, or by a periodic read of the list first).
    assert.match(agent.stderr(), new RegExp(`GPU 1 \\(${ADDED}\\) NVIDIA H100 80GB HBM3, power limit 700 W, no MIG devices: found (in the nvidia-smi stream )?after start-up`));
    assert.doesNotMatch(agent.stderr(), /not described yet/);
    assert.match(agent.stderr(), /GPU added: the power source found it after start-up/);

    // Gone: reported lost, named by readiness; back: the stretch between is counted as a gap.
    writeGpuCount(countFile, 1);
    await sampling(agent, /no recent sample from GPU 1$/);
    await eventually('GPU 1 reported lost', 30_000, async () => (sumOf(await agent.metrics(), 'tokenwatt_sample_errors_total', { reason: 'gpu_lost' }) >= 1 ? true : undefined));
    const before = sumOf(await agent.metrics(), 'tokenwatt_estimated_energy_joules_total', { gpu: '1' });
    writeGpuCount(countFile, 2);
    await sampling(agent, /^2 GPU\(s\) sampling$/);
    await eventually('the gap of GPU 1 counted as estimated energy', 30_000, async () =>
      (sumOf(await agent.metrics(), 'tokenwatt_estimated_energy_joules_total', { gpu: '1' }) > before ? true : undefined));
  } finally {
    assert.equal(await agent.stop(), 0);
  }
});
