import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { eventually, startAgent } from './agent-process.js';

// GPU 1 answers NVML but gives neither power nor energy (as a vGPU guest): NVML leaves it out.
const oneUnmeasurable = installFakeNvml({
  gpus: [{}, { instantSupported: false, powerUsageSupported: false, energySupported: false }],
});
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-unmeasurable-'));
after(() => {
  oneUnmeasurable.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('a GPU NVML can read no power or energy from: /readyz counts it, names it with the reason and says what it means for attribution', async () => {
  // Before the fix /readyz said "1 GPU(s) sampling": the node's second GPU was not there at all.
  const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', oneUnmeasurable.libraryPath, '--db', join(dir, 'ledger.db')]);
  try {
    const readiness = await eventually('/readyz 200', 30_000, async () => {
      const res = await agent.get('/readyz');
      return res.status === 200 ? (JSON.parse(res.body) as { ready: boolean; checks: Record<string, { ok: boolean; detail: string }> }) : undefined;
    });
    // Ready: the GPU that answers takes records and settles.
    assert.equal(readiness.ready, true);
    assert.equal(readiness.checks.sampling?.ok, true);
    assert.match(readiness.checks.sampling?.detail ?? '', new RegExp('^1 of 2 GPU\\(s\\) sampling; no recent sample from GPU 1 \\(GPU-fa4e0000-0000-0000-0000-000000000001 ' +
      'not sampled: reports neither power \\(.*\\) nor energy \\(.*\\), so NVML cannot measure it; no energy is measured for it or attributed on it, and records naming it are refused\\)$'));
  } finally {
    assert.equal(await agent.stop(), 0);
  }
});
