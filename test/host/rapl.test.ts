import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { wrappedDelta } from '../../collectors/host/energy-counter-wrap.js';
import { HostPowerReadError } from '../../collectors/host/host-power-source.js';
import { RaplUnavailableError } from '../../collectors/host/rapl-errors.js';
import { RaplHostPowerSource } from '../../collectors/host/rapl-host-power-source.js';
import { buildFakePowercap } from '../fakes/fake-powercap.js';

test('zones: packages and their DRAM are summed; core, uncore, psys and the MMIO duplicate are not', async () => {
  const tree = buildFakePowercap({
    packages: [
      { energyUj: 1_000_000, core: { energyUj: 500_000 }, uncore: { energyUj: 100_000 }, dram: { energyUj: 200_000 } },
      { energyUj: 3_000_000, dram: { energyUj: 400_000 } },
    ],
    psys: { energyUj: 9_000_000 },
    mmio: true,
  });
  try {
    const rapl = new RaplHostPowerSource({ powercapRoot: tree.root });
    await rapl.init();
    const q = rapl.quality();
    assert.deepEqual(q.zones, ['package-0', 'package-0/dram', 'package-1', 'package-1/dram']);
    const notes = q.notes.join('\n');
    assert.match(notes, /package-0\/core not summed: part of its package's energy/);
    assert.match(notes, /package-0\/uncore not summed/);
    assert.match(notes, /psys\) not summed: platform domain/);
    assert.match(notes, /intel-rapl-mmio:0 not summed/);
    assert.equal(q.measured, true);
    assert.equal(q.estimated, false);

    const start = rapl.read();
    assert.equal(start.energyJ, 0, 'cumulative from start-up');
    tree.setEnergy('intel-rapl:0', 1_000_000 + 50_000_000); // +50 J
    tree.setEnergy('intel-rapl:0:2', 200_000 + 5_000_000); // dram +5 J
    tree.setEnergy('intel-rapl:0:0', 500_000 + 40_000_000); // core +40 J: inside package-0, must not add
    tree.setEnergy('intel-rapl:1', 3_000_000 + 70_000_000); // +70 J
    tree.setEnergy('intel-rapl:2', 9_000_000 + 999_000_000); // psys: ignored
    const next = rapl.read();
    assert.equal(next.energyJ, 125);
    assert.deepEqual(next.zones.map((z) => [z.name, z.kind, z.energyJ]), [
      ['package-0', 'package', 50], ['package-0/dram', 'dram', 5], ['package-1', 'package', 70], ['package-1/dram', 'dram', 0],
    ]);
    assert.equal(next.estimated, false);
  } finally {
    tree.cleanup();
  }
});

test('wraparound: a counter passing max_energy_range_uj is corrected, and counted in quality', async () => {
  const max = 65_532_610_987;
  const tree = buildFakePowercap({ packages: [{ energyUj: max - 2_000_000, maxUj: max }] });
  try {
    const rapl = new RaplHostPowerSource({ powercapRoot: tree.root });
    await rapl.init();
    tree.setEnergy('intel-rapl:0', 3_000_000); // wrapped: 2 J before the top, 3 J after
    assert.equal(rapl.read().energyJ, 5);
    tree.setEnergy('intel-rapl:0', 4_000_000);
    assert.equal(rapl.read().energyJ, 6);
    assert.match(rapl.quality().notes.join('\n'), /1 counter wraparound\(s\) corrected/);
  } finally {
    tree.cleanup();
  }
});

test('property: for any start and any increments below the range, wrap-corrected deltas sum to the true energy', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1_000, max: 2 ** 40 }),
    fc.nat(),
    fc.array(fc.nat(), { minLength: 1, maxLength: 50 }),
    (maxRange, startSeed, steps) => {
      let counter = startSeed % (maxRange + 1);
      let measured = 0;
      let truth = 0;
      for (const seed of steps) {
        const increment = seed % maxRange; // less than one full wrap between reads
        const next = (counter + increment) % maxRange;
        measured += wrappedDelta(counter, next, maxRange).delta;
        truth += increment;
        counter = next;
      }
      return measured === truth;
    },
  ));
});

/**
 * /sys/class/powercap/intel-rapl:N are symlinks into /sys/devices/virtual/powercap, which container
 * runtimes mask: the advice is to mount the real tree and point powercapRoot into it, as the chart does.
 */
function assertContainerMountAdvice(fix: string): void {
  assert.match(fix, /mount the host's \/sys\/devices\/virtual\/powercap read-only/);
  assert.match(fix, /hostPower\.powercapRoot at its intel-rapl directory/);
  assert.match(fix, /--set rapl\.enabled=true/);
  assert.doesNotMatch(fix, /mount\w* the host's \/sys\/class\/powercap/);
}

test('following the container advice reaches the zones: the real tree mounted, powercapRoot at its intel-rapl', async () => {
  // The kernel's layout: zones under /sys/devices/virtual/powercap/intel-rapl, linked from /sys/class/powercap.
  const host = mkdtempSync(join(tmpdir(), 'tokenwatt-sysfs-'));
  try {
    const devices = join(host, 'sys/devices/virtual/powercap');
    const zone = join(devices, 'intel-rapl', 'intel-rapl:0');
    mkdirSync(zone, { recursive: true });
    writeFileSync(join(zone, 'name'), 'package-0\n');
    writeFileSync(join(zone, 'energy_uj'), '1000000\n');
    writeFileSync(join(zone, 'max_energy_range_uj'), '262143328850\n');
    mkdirSync(join(host, 'sys/class/powercap'), { recursive: true });
    symlinkSync('../../devices/virtual/powercap/intel-rapl/intel-rapl:0', join(host, 'sys/class/powercap/intel-rapl:0'));
    // In the container: /sys/class/powercap mounted alone, its links dangle: absent, and the advice says what to mount.
    const container = mkdtempSync(join(tmpdir(), 'tokenwatt-ctr-'));
    try {
      cpSync(join(host, 'sys/class/powercap'), join(container, 'class-powercap'), { recursive: true, verbatimSymlinks: true });
      const wrong = new RaplHostPowerSource({ powercapRoot: join(container, 'class-powercap') });
      const error = await wrong.init().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof RaplUnavailableError);
      assert.equal(error.reason, 'absent');
      assertContainerMountAdvice(error.fix);
      // The advice followed: the host's /sys/devices/virtual/powercap mounted, powercapRoot at its intel-rapl.
      cpSync(devices, join(container, 'host-powercap'), { recursive: true });
      const right = new RaplHostPowerSource({ powercapRoot: join(container, 'host-powercap', 'intel-rapl') });
      await right.init();
      assert.deepEqual(right.quality().zones, ['package-0']);
    } finally {
      rmSync(container, { recursive: true, force: true });
    }
  } finally {
    rmSync(host, { recursive: true, force: true });
  }
});

test('no RAPL zone: init fails with reason absent and the fix', async () => {
  const rapl = new RaplHostPowerSource({ powercapRoot: join(fileURLToPath(new URL('.', import.meta.url)), 'no-such-powercap') });
  await assert.rejects(rapl.init(), (error: unknown) => {
    assert.ok(error instanceof RaplUnavailableError);
    assert.equal(error.reason, 'absent');
    assert.match(error.fix, /hostPath/);
    assert.match(error.fix, /overheadW/);
    assertContainerMountAdvice(error.fix);
    return true;
  });
  assert.throws(() => rapl.read(), HostPowerReadError);
});

test('root-only energy_uj: init fails with reason permission and the fix (root, chmod, securityContext)', async () => {
  const tree = buildFakePowercap({ packages: [{ energyUj: 1 }] });
  try {
    const denied = (path: string): string => {
      if (path.endsWith('energy_uj')) throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
      return readFileSync(path, 'utf8');
    };
    const rapl = new RaplHostPowerSource({ powercapRoot: tree.root, readFile: denied });
    await assert.rejects(rapl.init(), (error: unknown) => {
      assert.ok(error instanceof RaplUnavailableError);
      assert.equal(error.reason, 'permission');
      assert.match(error.message, /intel-rapl:0\/energy_uj is readable by root only/);
      assert.match(error.fix, /runAsUser: 0/);
      assert.match(error.fix, /chmod o\+r/);
      assertContainerMountAdvice(error.fix);
      return true;
    });
  } finally {
    tree.cleanup();
  }
});

test('root-only energy_uj for real: a 0400 file read by an unprivileged process', async () => {
  const tree = buildFakePowercap({ packages: [{ energyUj: 1, dram: { energyUj: 1 } }] });
  try {
    chmodSync(tree.dir('intel-rapl:0'), 0o755);
    chmodSync(tree.root, 0o755);
    chmodSync(join(tree.dir('intel-rapl:0'), 'energy_uj'), 0o400);
    let result: { ok: boolean; reason?: string; fix?: string };
    if (process.getuid?.() === 0) {
      // Root reads anything: drop to "nobody" in a child to meet the kernel's real check.
      const child = fileURLToPath(new URL('../fakes/rapl-child.ts', import.meta.url));
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, tree.root], {
        uid: 65534, gid: 65534, cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 30_000,
      });
      result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
    } else {
      const rapl = new RaplHostPowerSource({ powercapRoot: tree.root });
      result = await rapl.init().then(() => ({ ok: true }), (e: RaplUnavailableError) => ({ ok: false, reason: e.reason, fix: e.fix }));
    }
    assert.equal(result.ok, false);
    assert.equal(result.reason, 'permission');
    assert.match(result.fix ?? '', /runAsUser: 0/);
  } finally {
    tree.cleanup();
  }
});

test('a zone that becomes unreadable mid-run fails that read with a HostPowerReadError, the next good read carries on', async () => {
  const tree = buildFakePowercap({ packages: [{ energyUj: 0 }] });
  try {
    let broken = false;
    const rapl = new RaplHostPowerSource({
      powercapRoot: tree.root,
      readFile: (p) => { if (broken && p.endsWith('energy_uj')) throw Object.assign(new Error('EIO'), { code: 'EIO' }); return readFileSync(p, 'utf8'); },
    });
    await rapl.init();
    tree.setEnergy('intel-rapl:0', 1_000_000);
    broken = true;
    assert.throws(() => rapl.read(), (e: unknown) => e instanceof HostPowerReadError && e.reason === 'unreadable');
    broken = false;
    assert.equal(rapl.read().energyJ, 1);
    tree.setEnergy('intel-rapl:0', 'garbage' as unknown as number);
    assert.throws(() => rapl.read(), /not a counter/);
  } finally {
    tree.cleanup();
  }
});
