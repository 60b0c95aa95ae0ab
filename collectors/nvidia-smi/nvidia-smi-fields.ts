/**
 * Which `--query-gpu` fields this driver's nvidia-smi offers, read from `--help-query-gpu`
 * (entries look like `"power.draw.instant" or "gpu.power.draw.instant"` at the start of a line),
 * and the power stream's fields chosen from them. Older drivers lack power.draw.instant and
 * power.draw.average; every driver has power.draw.
 */

/** Every property name (aliases included) that `--help-query-gpu` lists. */
export function parseHelpQueryGpu(help: string): Set<string> {
  const offered = new Set<string>();
  for (const line of help.split(/\r?\n/)) {
    if (!line.startsWith('"')) continue;
    for (const m of line.matchAll(/"([^"]+)"/g)) if (m[1]) offered.add(m[1]);
  }
  return offered;
}

const REQUIRED = ['timestamp', 'index', 'uuid'] as const;
const POWER_PREFERENCE = ['power.draw.instant', 'power.draw.average', 'power.draw'] as const;

export type StreamFieldChoice =
  | { readonly ok: true; readonly fields: readonly string[]; readonly instantAvailable: boolean }
  | { readonly ok: false; readonly reason: string };

/** The power stream's fields: timestamp, index, uuid and every power field the driver offers. */
export function chooseStreamFields(offered: ReadonlySet<string>): StreamFieldChoice {
  const missing = REQUIRED.filter((f) => !offered.has(f));
  if (missing.length > 0) return { ok: false, reason: `this nvidia-smi does not offer ${missing.join(', ')} in --query-gpu` };
  const power = POWER_PREFERENCE.filter((f) => offered.has(f));
  if (power.length === 0) return { ok: false, reason: 'this nvidia-smi offers no power.draw field in --query-gpu' };
  return { ok: true, fields: [...REQUIRED, ...power], instantAvailable: power.includes('power.draw.instant') };
}

/** Fields for the one-shot inventory query, those the driver offers. */
export function chooseInventoryFields(offered: ReadonlySet<string>): string[] {
  const wanted = ['index', 'uuid', 'name', offered.has('enforced.power.limit') ? 'enforced.power.limit' : 'power.limit', 'mig.mode.current', 'compute_cap'];
  return wanted.filter((f) => offered.has(f));
}
