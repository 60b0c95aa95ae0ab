import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { buildFakePowercap } from '../fakes/fake-powercap.js';
import { startAgent } from './agent-process.js';

test('the "tokenwatt agent running" line names the configured node under node, and the Node.js version under nodeVersion', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-startup-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'agent.db'), '--node', 'gpu-node-17']);
  t.after(() => agent.stop());
  const line = agent.stderr().split('\n').find((l) => l.includes('"msg":"tokenwatt agent running"'));
  assert.ok(line !== undefined, agent.stderr());
  const entry = JSON.parse(line) as Record<string, unknown>;
  assert.equal(entry.node, 'gpu-node-17');
  assert.equal(entry.nodeVersion, process.version);
  assert.equal(entry.port, agent.port);
  assert.equal(await agent.stop(), 0);
});

test('run reads host power from the RAPL tree TOKENWATT_POWERCAP_ROOT names (as doctor does)', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-startup-log-'));
  const tree = buildFakePowercap({ packages: [{ energyUj: 5_000 }] });
  t.after(() => {
    tree.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'agent.db')], { TOKENWATT_POWERCAP_ROOT: tree.root });
  t.after(() => agent.stop());
  const line = agent.stderr().split('\n').find((l) => l.includes('"msg":"host energy: RAPL"'));
  assert.ok(line !== undefined, agent.stderr());
  const host = (JSON.parse(line) as { host: { kind: string; zones: string[]; notes: string[] } }).host;
  assert.equal(host.kind, 'rapl');
  assert.deepEqual(host.zones, ['package-0']);
  assert.ok(host.notes.some((n) => n.startsWith(`RAPL under ${tree.root}:`)), host.notes.join('\n'));
  assert.equal(await agent.stop(), 0);
});
