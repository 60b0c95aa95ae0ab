/**
 * Fake /sys/class/powercap trees in temp directories, laid out like the kernel's: package zones
 * `intel-rapl:N` with their children nested inside and also linked at the top level
 * (`intel-rapl:N:M`), plus optional psys and intel-rapl-mmio zones that must not be summed.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeZone {
  readonly energyUj: number;
  readonly maxUj?: number;
}

export interface FakePackage extends FakeZone {
  readonly dram?: FakeZone;
  readonly core?: FakeZone;
  readonly uncore?: FakeZone;
}

export interface FakePowercap {
  readonly root: string;
  /** Directory of a zone by its sysfs name, e.g. "intel-rapl:0" or "intel-rapl:0:1". */
  dir(zone: string): string;
  setEnergy(zone: string, energyUj: number): void;
  cleanup(): void;
}

const DEFAULT_MAX = 262_143_328_850; // a real package's max_energy_range_uj

export function buildFakePowercap(spec: { packages: readonly FakePackage[]; psys?: FakeZone; mmio?: boolean }): FakePowercap {
  const root = mkdtempSync(join(tmpdir(), 'tokenwatt-powercap-'));
  const dirs = new Map<string, string>();
  const zone = (dir: string, sysName: string, name: string, z: FakeZone) => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'name'), `${name}\n`);
    writeFileSync(join(dir, 'energy_uj'), `${z.energyUj}\n`);
    writeFileSync(join(dir, 'max_energy_range_uj'), `${z.maxUj ?? DEFAULT_MAX}\n`);
    writeFileSync(join(dir, 'enabled'), '1\n');
    dirs.set(sysName, dir);
  };
  mkdirSync(join(root, 'intel-rapl'));
  writeFileSync(join(root, 'intel-rapl', 'enabled'), '1\n');
  spec.packages.forEach((pkg, n) => {
    const sys = `intel-rapl:${n}`;
    const dir = join(root, sys);
    zone(dir, sys, `package-${n}`, pkg);
    const children = [['core', pkg.core], ['uncore', pkg.uncore], ['dram', pkg.dram]] as const;
    let m = 0;
    for (const [name, child] of children) {
      if (!child) continue;
      const childSys = `intel-rapl:${n}:${m++}`;
      zone(join(dir, childSys), childSys, name, child);
      symlinkSync(join(dir, childSys), join(root, childSys));
    }
  });
  if (spec.psys) zone(join(root, `intel-rapl:${spec.packages.length}`), `intel-rapl:${spec.packages.length}`, 'psys', spec.psys);
  if (spec.mmio) zone(join(root, 'intel-rapl-mmio:0'), 'intel-rapl-mmio:0', 'package-0', { energyUj: 1 });
  return {
    root,
    dir: (z) => {
      const d = dirs.get(z);
      if (!d) throw new Error(`no zone ${z}`);
      return d;
    },
    setEnergy(z, energyUj) {
      writeFileSync(join(this.dir(z), 'energy_uj'), `${energyUj}\n`);
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
