import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { eventually, startAgent } from './agent-process.js';

// GPU 0 runs MIG with one device; 3 s after the driver loaded a second one is created and the
// first destroyed (as a node's MIG manager does while the agent runs).
const UUID = 'GPU-0c0c0c0c-0000-0000-0000-0000000000e0';
const MIG_BEFORE = 'MIG-0c0c0c0c-0000-0000-0000-0000000000f1';
const MIG_AFTER = 'MIG-0c0c0c0c-0000-0000-0000-0000000000f2';
const install = installFakeNvml({ gpus: [{ uuid: UUID, migUuids: [MIG_BEFORE], migAt: { atMs: 3000, uuids: [MIG_AFTER] } }] });
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-mig-changed-'));
after(() => {
  install.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('MIG devices created and destroyed while the agent runs (NVML): records naming the new one are taken, the destroyed one refused, no restart', { timeout: 90_000 }, async () => {
  const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', install.libraryPath, '--db', join(dir, 'ledger.db')]);
  try {
    let n = 0;
    const post = async (mig: string) => {
      const now = Date.now();
      const body = JSON.stringify({ request_id: `r${n++}`, model: 'm', tier: 'small', gpus: [mig], start: now - 200, end: now, prompt_tokens: 10, completion_tokens: 5 });
      const reply = await agent.post('/v1/requests', body);
      return JSON.parse(reply.body) as { accepted: number; rejected: number; errors?: { field: string; reason: string }[] };
    };
    assert.equal((await post(MIG_BEFORE)).accepted, 1, 'the MIG device there at start-up');
    // NVML reads the MIG devices again every 10 s: before the fix only at start-up, so the new
    // device stayed unknown until the agent restarted.
    await eventually('a record naming the new MIG device taken', 30_000, async () => ((await post(MIG_AFTER)).accepted === 1 ? true : undefined));
    const refused = await post(MIG_BEFORE);
    assert.equal(refused.rejected, 1);
    assert.match(refused.errors?.[0]?.reason ?? '', /no such GPU on this node/);
    assert.match(agent.stderr(), new RegExp(`GPU 0 \\(${UUID}\\) .*MIG devices ${MIG_AFTER}: its MIG devices changed`));
  } finally {
    assert.equal(await agent.stop(), 0);
  }
});
