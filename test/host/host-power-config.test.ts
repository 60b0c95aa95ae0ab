import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfiguredHostOverhead } from '../../collectors/host/configured-host-overhead.js';
import { createHostPowerSource, hostPowerConfigSchema } from '../../collectors/host/host-power-config.js';
import { readHostInventory } from '../../collectors/host/host-inventory.js';
import { buildFakePowercap } from '../fakes/fake-powercap.js';

test('configured overhead: energy is watts x elapsed time, labelled estimated everywhere', async () => {
  let now = 1_000_000;
  const host = new ConfiguredHostOverhead(120, 'no RAPL on this VM', () => now);
  await host.init();
  now += 30_000;
  const reading = host.read();
  assert.equal(reading.energyJ, 3600);
  assert.equal(reading.estimated, true);
  assert.deepEqual(reading.zones, []);
  const q = host.quality();
  assert.equal(q.measured, false);
  assert.equal(q.estimated, true);
  assert.match(q.notes.join(' '), /estimate: a constant 120 W \(no RAPL on this VM\)/);
  assert.throws(() => new ConfiguredHostOverhead(-1), /overheadW/);
});

test('hostPowerConfigSchema: valid sections pass, bad ones name the field', () => {
  assert.deepEqual(hostPowerConfigSchema.parse({}), {});
  assert.deepEqual(hostPowerConfigSchema.parse({ overheadW: 85.5, powercapRoot: '/host/sys/class/powercap', rapl: 'off' }), { overheadW: 85.5, powercapRoot: '/host/sys/class/powercap', rapl: 'off' });
  const bad = hostPowerConfigSchema.safeParse({ overheadW: -3, rapl: 'sometimes', extra: 1 });
  assert.equal(bad.success, false);
  const paths = bad.success ? [] : bad.error.issues.map((i) => i.path.join('.') || i.message);
  assert.ok(paths.includes('overheadW'), JSON.stringify(paths));
  assert.ok(paths.includes('rapl'), JSON.stringify(paths));
  assert.ok(paths.some((p) => /extra/.test(p)), JSON.stringify(paths));
});

test('createHostPowerSource: RAPL when readable, else the configured overhead (with why), else none', async () => {
  const tree = buildFakePowercap({ packages: [{ energyUj: 5 }] });
  const empty = mkdtempSync(join(tmpdir(), 'tokenwatt-nopowercap-'));
  try {
    const rapl = await createHostPowerSource({ powercapRoot: tree.root, overheadW: 50 });
    assert.equal(rapl.kind, 'rapl');
    assert.equal(rapl.source?.quality().measured, true);

    const off = await createHostPowerSource({ powercapRoot: tree.root, rapl: 'off', overheadW: 50 });
    assert.equal(off.kind, 'configured');
    assert.match(off.source?.quality().notes.join(' ') ?? '', /RAPL disabled in config/);

    const fallback = await createHostPowerSource({ powercapRoot: empty, overheadW: 50 });
    assert.equal(fallback.kind, 'configured');
    assert.equal(fallback.raplProblem?.reason, 'absent');
    assert.match(fallback.source?.quality().notes.join(' ') ?? '', /RAPL unavailable: absent/);

    const none = await createHostPowerSource({ powercapRoot: empty });
    assert.equal(none.kind, 'none');
    assert.equal(none.source, null);
    assert.equal(none.raplProblem?.reason, 'absent');
  } finally {
    tree.cleanup();
    rmSync(empty, { recursive: true, force: true });
  }
});

test('host inventory: CPU model, memory, machine id and OS of this machine', async () => {
  const inventory = await readHostInventory();
  assert.ok(inventory.cpuModel.length > 0);
  assert.ok(inventory.cpuCores >= 1);
  assert.ok(inventory.memoryBytes > 64 * 1024 * 1024);
  assert.equal(inventory.os.platform, process.platform);
  assert.ok(inventory.hostname.length > 0);
  assert.ok(inventory.machineId === null || /^[0-9a-f-]{16,}$/i.test(inventory.machineId), String(inventory.machineId));
});
