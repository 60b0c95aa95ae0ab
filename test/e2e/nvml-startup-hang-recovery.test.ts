import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sumOf } from '../exporters/prometheus-exposition.js';
import { installFakeNvml, type FakeHang } from '../fakes/fake-nvml.js';
import { eventually, startAgent } from './agent-process.js';

// GPU 1 hangs for 4 s while the agent opens it at start-up (past the 2 s call deadline), then
// answers. It has two MIG devices; records name it by UUID or by a MIG device.
const UUIDS = ['GPU-0a0a0a0a-0000-0000-0000-0000000000e0', 'GPU-1b1b1b1b-0000-0000-0000-0000000000e1'] as const;
const MIGS = ['MIG-1b1b1b1b-0000-0000-0000-0000000000f1', 'MIG-1b1b1b1b-0000-0000-0000-0000000000f2'] as const;
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-hang-recovery-'));
const installs = new Map<string, ReturnType<typeof installFakeNvml>>();
after(() => {
  for (const i of installs.values()) i.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function fakeWith(name: string, hang: FakeHang['fn']) {
  const install = installFakeNvml({
    gpus: [{ uuid: UUIDS[0], powerMw: [200000] }, { uuid: UUIDS[1], name: 'NVIDIA H100 NVL', limitMw: 400000, powerMw: [300000], migUuids: [...MIGS] }],
    hangs: [{ fn: hang, gpu: 1, afterMs: 0, durationMs: 4000, count: 1 }],
  });
  installs.set(name, install);
  return install;
}

for (const [when, fn] of [
  ['before NVML gave its UUID', 'nvmlDeviceGetUUID'],
  ['after its UUID, before its name, power limit and MIG devices', 'nvmlDeviceGetName'],
] as const) {
  test(`a GPU hung at start-up ${when}: once it answers the agent learns it, takes records naming it or its MIG devices, and attributes its energy`, { timeout: 90_000 }, async () => {
    const install = fakeWith(fn, fn);
    const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', install.libraryPath, '--db', join(dir, `${fn}.db`), '--settle-period', '1', '--settle-lateness', '2']);
    try {
      await eventually('GPU 1 sampled', 30_000, async () => {
        const res = await agent.get('/readyz');
        const ready = JSON.parse(res.body) as { checks: Record<string, { detail: string }> };
        return ready.checks.sampling?.detail === '2 GPU(s) sampling' ? true : undefined;
      });
      // Records 3 s ahead: late only if the post takes 4.8 s to be taken in (started 0.2 s back, they
      // were late once a slow machine took 1.8 s). The 2 s lateness stays:
      // GPU 1, learnt 4 s in, joins a settlement already under way, as it did.
      const endMs = Date.now() + 3000;
      const record = (id: string, gpu: string) =>
        JSON.stringify({ request_id: id, model: 'm', tier: 'small', gpus: [gpu], start: endMs - 200, end: endMs, prompt_tokens: 10, completion_tokens: 5 });
      const reply = await agent.post('/v1/requests', [record('by-uuid', UUIDS[1]), record('by-mig', MIGS[1]), record('by-index', '1')].join('\n'));
      assert.equal(reply.status, 202, reply.body);
      assert.deepEqual(JSON.parse(reply.body), { accepted: 3, duplicates: 0, late: 0, rejected: 0 });
      // Its energy is measured and settled under its own labels; the records on it get their share.
      const families = await eventually('GPU 1 energy settled', 30_000, async () => {
        const f = await agent.metrics();
        return sumOf(f, 'tokenwatt_gpu_energy_joules_total', { gpu: '1', uuid: UUIDS[1] }) > 0 && sumOf(f, 'tokenwatt_energy_joules_total') > 0 ? f : undefined;
      });
      assert.ok(Math.abs(sumOf(families, 'tokenwatt_gpu_power_watts', { gpu: '1', uuid: UUIDS[1] }) - 300) < 1);
      assert.match(agent.stderr(), new RegExp(`GPU 1 \\(${UUIDS[1]}\\) NVIDIA H100 NVL, power limit 400 W, MIG devices ${MIGS[0]}, ${MIGS[1]}: learnt after a call on it hung at start-up`));
    } finally {
      await agent.stop();
    }
  });
}
