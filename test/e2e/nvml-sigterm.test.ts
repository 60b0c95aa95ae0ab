import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { installFakeNvml } from '../fakes/fake-nvml.js';
import { eventually, startAgent } from './agent-process.js';

const install = installFakeNvml({ gpus: [{}, {}] });
const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-nvml-sigterm-'));
after(() => {
  install.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('SIGTERM on `run --power nvml` (healthy NVML): exit 0 every time, no false "driver calls still hung"', async (t) => {
  // Before the fix about half the stops ended in SIGKILL (137): the worker closing normally was
  // counted as stuck in the driver. Three rounds make a regression show almost surely.
  for (let i = 0; i < 3; i++) {
    const agent = await startAgent(['run', '--power', 'nvml', '--nvml-library', install.libraryPath, '--db', join(dir, `ledger-${i}.db`)]);
    // Killed when an assertion fails first: left running, it would hold the test file open for ever.
    t.after(() => agent.kill9());
    // Stopped once it samples (as a pod is in practice): stopping right at start-up hid the race.
    await eventually('/readyz 200', 20_000, async () => ((await agent.get('/readyz')).status === 200 ? true : undefined));
    const code = await agent.stop();
    assert.equal(agent.child.signalCode, null, `round ${i}: killed by ${agent.child.signalCode}:\n${agent.stderr().slice(-2000)}`);
    assert.equal(code, 0, `round ${i}:\n${agent.stderr().slice(-2000)}`);
    assert.doesNotMatch(agent.stderr(), /still hung/);
  }
});
