import type { RecordContext } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';

/**
 * A node with `gpuCount` GPUs named GPU-0, GPU-1, ... (index i <-> 'GPU-i'). Model
 * 'llama-8b' is served by GPU-0 and mapped to tier 'small'; other models have no replica.
 */
export function fakeContext(opts: { gpuCount?: number; retainedFromMs?: number; acceptUntilMs?: number } = {}): RecordContext {
  const uuids = Array.from({ length: opts.gpuCount ?? 2 }, (_, i) => `GPU-${i}`);
  return {
    resolveGpu: (ref) => (/^\d+$/.test(ref) ? uuids[Number(ref)] : uuids.find((u) => u === ref)),
    defaultGpus: (model) => (model === 'llama-8b' ? ['GPU-0'] : undefined),
    tierOf: (model) => (model === 'llama-8b' ? 'small' : undefined),
    retainedFromMs: epochMs(opts.retainedFromMs ?? Date.UTC(2000, 0, 1)),
    acceptUntilMs: epochMs(opts.acceptUntilMs ?? Date.UTC(2100, 0, 1)),
  };
}
