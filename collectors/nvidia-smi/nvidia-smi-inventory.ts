import { parseNvidiaSmiCell, parseNvidiaSmiNumber } from './nvidia-smi-csv.js';

/** A GPU as `nvidia-smi --query-gpu=index,uuid,name,...` describes it. */
export interface NvidiaSmiGpu {
  readonly index: number;
  readonly uuid: string;
  readonly name: string;
  readonly powerLimitW: number | null;
  /** null when the GPU has no MIG mode ([N/A]). */
  readonly migEnabled: boolean | null;
  /** "9.0" style compute capability, when offered. */
  readonly computeCapability: string | null;
}

/** Parses the inventory query's `--format=csv,noheader,nounits` output whose columns are `fields`. */
export function parseInventory(text: string, fields: readonly string[]): { gpus: NvidiaSmiGpu[]; errors: string[] } {
  const gpus: NvidiaSmiGpu[] = [];
  const errors: string[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() === '') continue;
    const cells = line.split(',');
    if (cells.length !== fields.length) {
      errors.push(`inventory line ${i + 1}: expected ${fields.length} fields, got ${cells.length}: ${line.slice(0, 120)}`);
      continue;
    }
    const cell = (name: string) => parseNvidiaSmiCell(cells[fields.indexOf(name)] ?? '');
    const text = (name: string) => {
      const c = cell(name);
      return fields.includes(name) && c.kind === 'value' ? c.text : null;
    };
    const index = text('index');
    const uuid = text('uuid');
    if (index === null || !/^\d+$/.test(index) || uuid === null || !uuid.startsWith('GPU-')) {
      errors.push(`inventory line ${i + 1}: no usable index/uuid: ${line.slice(0, 120)}`);
      continue;
    }
    const limitField = fields.includes('enforced.power.limit') ? 'enforced.power.limit' : 'power.limit';
    const mig = text('mig.mode.current');
    gpus.push({
      index: Number(index),
      uuid,
      name: text('name') ?? 'unknown NVIDIA GPU',
      powerLimitW: fields.includes(limitField) ? parseNvidiaSmiNumber(cell(limitField), 'W') : null,
      migEnabled: mig === null ? null : mig === 'Enabled',
      computeCapability: text('compute_cap'),
    });
  }
  return { gpus, errors };
}

/**
 * MIG device UUIDs per GPU UUID from `nvidia-smi -L`:
 *   GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)
 *     MIG 3g.40gb     Device  0: (UUID: MIG-...)
 */
export function parseMigList(text: string): Map<string, string[]> {
  const byGpu = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of text.split(/\r?\n/)) {
    const gpu = /^GPU \d+: .*\(UUID: (GPU-[^)]+)\)/.exec(line);
    if (gpu?.[1]) {
      current = [];
      byGpu.set(gpu[1], current);
      continue;
    }
    const mig = /^\s+MIG .*\(UUID: (MIG-[^)]+)\)/.exec(line);
    if (mig?.[1] && current) current.push(mig[1]);
  }
  return byGpu;
}

/**
 * Whether `power.draw` is a 1 s average on a GPU of this compute capability: Ampere and newer
 * (8.x and up) except GA100 (8.0), per the --help-query-gpu text for power.draw and the NVML docs.
 * Unknown means averaged.
 */
export function powerDrawAveragedFor(computeCapability: string | null): boolean {
  const m = computeCapability ? /^(\d+)\.(\d+)$/.exec(computeCapability) : null;
  if (!m) return true;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 8 || (major === 8 && minor > 0);
}
