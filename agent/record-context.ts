import type { GpuInfo } from '../model/power-sample.js';
import type { RecordContext } from '../model/request-record.js';
import { epochMs } from '../model/units.js';

/** How far ahead of the agent's clock a record may start (clock skew allowance). */
export const RECORD_FUTURE_SKEW_MS = 5 * 60_000;

/** A replica from config: which GPUs serve a model, and its tier. */
export interface ReplicaSpec {
  readonly model: string;
  readonly gpus: readonly (string | number)[];
  readonly tier?: string | undefined;
}

export interface RecordContextOptions {
  readonly gpus: readonly GpuInfo[];
  readonly replicas: readonly ReplicaSpec[];
  readonly tiers: Readonly<Record<string, string>>;
  /** Records ending before now - this are refused (no raw samples left to attribute them). */
  readonly retainedWindowMs: number;
  /** Records starting after now + this are refused (clock skew allowance). */
  readonly futureSkewMs: number;
}

/**
 * Builds the node's view used to resolve request records: GPU references (index, UUID or MIG
 * instance UUID, matched case-insensitively) to physical GPU UUIDs, model -> replica GPUs, and
 * model -> tier. The lookup tables are built once; only the time window moves with `now`.
 */
export class NodeRecordContext {
  private readonly gpuByRef = new Map<string, string>();
  private readonly replicaGpus = new Map<string, string[]>();
  private readonly tierByModel = new Map<string, string>();

  constructor(private readonly options: RecordContextOptions) {
    for (const gpu of options.gpus) {
      this.gpuByRef.set(String(gpu.index), gpu.uuid);
      this.gpuByRef.set(gpu.uuid.toLowerCase(), gpu.uuid);
      for (const mig of gpu.migInstances ?? []) this.gpuByRef.set(mig.toLowerCase(), gpu.uuid);
    }
    for (const replica of options.replicas) {
      const uuids = replica.gpus.map((ref) => this.resolveGpu(String(ref))).filter((u): u is string => u !== undefined);
      if (uuids.length > 0 && !this.replicaGpus.has(replica.model)) this.replicaGpus.set(replica.model, uuids);
      if (replica.tier !== undefined && !this.tierByModel.has(replica.model)) this.tierByModel.set(replica.model, replica.tier);
    }
    // The explicit model -> tier map wins over a replica's tier.
    for (const [model, tier] of Object.entries(options.tiers)) this.tierByModel.set(model, tier);
  }

  /** Replica GPU references that name no GPU of this node (reported at start-up). */
  unknownReplicaGpus(): string[] {
    return this.options.replicas.flatMap((r) =>
      r.gpus.filter((ref) => this.resolveGpu(String(ref)) === undefined).map((ref) => `${r.model}: ${ref}`),
    );
  }

  resolveGpu(ref: string): string | undefined {
    return this.gpuByRef.get(ref.toLowerCase());
  }

  at(nowMs: number): RecordContext {
    return {
      resolveGpu: (ref) => this.resolveGpu(ref),
      defaultGpus: (model) => this.replicaGpus.get(model),
      tierOf: (model) => this.tierByModel.get(model),
      retainedFromMs: epochMs(nowMs - this.options.retainedWindowMs),
      acceptUntilMs: epochMs(nowMs + this.options.futureSkewMs),
    };
  }
}
