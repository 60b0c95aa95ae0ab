import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';

/** A RAPL zone tokenwatt sums. */
export interface RaplZone {
  readonly name: string;
  readonly kind: 'package' | 'dram';
  readonly dir: string;
}

/** What discovery found: the zones to sum, and the zones deliberately not summed, with why. */
export interface RaplDiscovery {
  readonly zones: readonly RaplZone[];
  readonly skipped: readonly { readonly name: string; readonly why: string }[];
}

/**
 * Finds the RAPL zones under a powercap root (/sys/class/powercap): each package domain
 * `intel-rapl:N` (name "package-N") and its DRAM child `intel-rapl:N:M` (name "dram"), which are
 * disjoint and sum to the host's CPU + memory energy. Other children (core, uncore) are parts of
 * their package and are never added to it; psys covers the whole platform and would double count;
 * intel-rapl-mmio duplicates the package domain. Children are looked for both as top-level
 * entries (as /sys/class/powercap lists them) and nested in their package's directory.
 * `readName` reads a zone's `name` file (injected so tests and callers control I/O).
 */
export function discoverRaplZones(root: string, readName: (dir: string) => string | null): RaplDiscovery {
  const zones: RaplZone[] = [];
  const skipped: { name: string; why: string }[] = [];
  const seen = new Set<string>();
  const entries = existsSync(root) ? readdirSync(root) : [];
  const packages = entries.filter((e) => /^intel-rapl:\d+$/.test(e)).sort(byNumbers);
  for (const entry of entries.filter((e) => e.startsWith('intel-rapl-mmio'))) skipped.push({ name: entry, why: 'MMIO view of a package domain already read through intel-rapl' });

  for (const pkg of packages) {
    const dir = join(root, pkg);
    const name = readName(dir) ?? pkg;
    seen.add(realpath(dir));
    if (name === 'psys') {
      skipped.push({ name: `${pkg} (psys)`, why: 'platform domain: overlaps the packages' });
      continue;
    }
    if (!name.startsWith('package')) {
      skipped.push({ name: `${pkg} (${name})`, why: 'not a package domain' });
      continue;
    }
    zones.push({ name, kind: 'package', dir });
    const childPattern = new RegExp(`^${pkg.replace(':', '\\:')}:\\d+$`);
    const children = [
      ...entries.filter((e) => childPattern.test(e)).map((e) => join(root, e)),
      ...(existsSync(dir) ? readdirSync(dir).filter((e) => childPattern.test(e)).map((e) => join(dir, e)) : []),
    ];
    for (const childDir of children) {
      const real = realpath(childDir);
      if (seen.has(real)) continue;
      seen.add(real);
      const childName = readName(childDir) ?? childDir;
      if (childName === 'dram') zones.push({ name: `${name}/dram`, kind: 'dram', dir: childDir });
      else skipped.push({ name: `${name}/${childName}`, why: 'part of its package\'s energy, never added to it' });
    }
  }
  return { zones, skipped };
}

function realpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function byNumbers(a: string, b: string): number {
  return Number(a.split(':')[1]) - Number(b.split(':')[1]);
}
