import type { GpuInfo, PowerSample } from '../../model/power-sample.js';
import type { RequestRecord } from '../../model/request-record.js';
import { epochMs, joules, watts } from '../../model/units.js';
import type { PowerSource, PowerSourceError, PowerSourceQuality } from '../power-source.js';
import { curvesFor, GPU_TYPES, type GpuType, type ReplicaCurves } from './calibration.js';
import { MinHeap } from './min-heap.js';
import { Prng } from './prng.js';
import { DEFAULT_MAX_BATCHED_TOKENS, SimulatedReplica, type JobOutcome, type SimJob } from './simulated-replica.js';

/** One model replica on the simulated node. */
export interface SimulatedReplicaConfig {
  /** Unique name of the replica (e.g. "llama-8b-0"). */
  readonly name: string;
  /** Model name written into request records. */
  readonly model: string;
  readonly tier: string;
  /** Total parameters, billions. */
  readonly paramsB: number;
  /** Parameters active per token (MoE), billions; defaults to paramsB. */
  readonly activeParamsB?: number;
  /** Weight precision; default bf16. */
  readonly precision?: 'bf16' | 'fp8';
  /** GPU indices the replica spans; no GPU may serve two replicas. */
  readonly gpus: readonly number[];
  /** Most requests running at once (vLLM max_num_seqs); default 256. */
  readonly maxBatch?: number;
  /** Token budget of one engine step, shared by decode tokens and prefill chunks (vLLM max_num_batched_tokens); default 8192. */
  readonly maxBatchedTokens?: number;
}

/** Faults to inject, at milliseconds after the node's origin (`startMs`). */
export interface SimulatedFaults {
  /** The GPU's energy counter drops to 0 (a driver reload). */
  readonly counterResets?: readonly { readonly gpu: number; readonly atMs: number }[];
  /** No samples from the GPU in [fromMs, toMs) (a stalled driver); energy keeps flowing. */
  readonly dropouts?: readonly { readonly gpu: number; readonly fromMs: number; readonly toMs: number }[];
}

export interface SimulatedGpuNodeConfig {
  readonly gpuType: GpuType;
  readonly gpuCount: number;
  readonly replicas: readonly SimulatedReplicaConfig[];
  /** Sampling period of the emitted power samples; default 100 ms (10 Hz). */
  readonly samplePeriodMs?: number;
  /** Seed of every random draw (noise, failure points, counter offsets); default 1. */
  readonly seed?: number;
  /** Gaussian power noise per GPU, redrawn every sample period. */
  readonly noise?: { readonly powerStdW: number };
  readonly inject?: SimulatedFaults;
  /** Wall clock; default Date.now. Virtual runs pass a fixed origin via startMs instead. */
  readonly clock?: { now(): number };
  /** Simulation origin, epoch ms; default clock.now() at construction. */
  readonly startMs?: number;
}

/** A request for the simulated node to serve. */
export interface SimulatedRequestSpec {
  readonly requestId: string;
  readonly taskId?: string;
  readonly attempt?: number;
  /** Replica name. */
  readonly replica: string;
  readonly promptTokens: number;
  /** Prompt tokens served from the prefix cache (not prefilled). */
  readonly cachedTokens: number;
  readonly maxCompletionTokens: number;
  /** Tokens the model generates before it stops by itself; default (and capped at) maxCompletionTokens. */
  readonly outputTokens?: number;
  /** Leading output tokens that are reasoning; default 0. */
  readonly reasoningTokens?: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** The client gives up this long after arrival (status "cancelled" if still running). */
  readonly cancelAfterMs?: number;
  /** The engine fails the request part-way (status "error"); the failure point is drawn from the seed. */
  readonly fail?: boolean;
  /** Arrival time, epoch ms; default now. A time already simulated is clamped to now. */
  readonly atMs?: number;
}

/** Energy the simulator integrated: the ground truth tests compare measurements against. */
export interface SimulatedTruth {
  /** Energy of each GPU since the origin, by UUID. */
  readonly perGpuJ: Record<string, number>;
  /** Energy of each replica's GPUs since the origin (busy and idle), by replica name. */
  readonly perReplicaJ: Record<string, number>;
  /** Energy each GPU spent with no request running on it, by UUID. */
  readonly idleJByGpu: Record<string, number>;
  /** Simulated time covered, ms since the origin. */
  readonly elapsedMs: number;
}

/** The replica layout, for building an agent config (model -> tier, replica -> GPUs). */
export interface SimulatedReplicaInfo {
  readonly name: string;
  readonly model: string;
  readonly tier: string;
  readonly gpuIndices: readonly number[];
  readonly gpuUuids: readonly string[];
  readonly curves: string;
}

interface Arrival {
  readonly atMs: number;
  readonly seq: number;
  readonly spec: SimulatedRequestSpec;
}

interface Pending {
  readonly job: SimJob;
  readonly spec: SimulatedRequestSpec;
  readonly replica: ReplicaSlot;
  readonly cancelAtMs: number;
}

interface ReplicaSlot {
  readonly config: SimulatedReplicaConfig;
  readonly engine: SimulatedReplica;
  readonly uuids: readonly string[];
  readonly curves: ReplicaCurves;
}

const DEFAULT_MAX_BATCH = 256;
const MAX_STEPS_PER_ADVANCE = 50_000_000; // a bound on the event loop, far above any real run

/** UUID of simulated GPU `index`: shaped like a real one (8-4-4-4-12), marked "sim" so it is never mistaken for hardware. */
export function simulatedGpuUuid(index: number): string {
  return `GPU-sim00000-0000-0000-0000-${index.toString(16).padStart(12, '0')}`;
}

/**
 * A GPU node that does not exist: replicas serve submitted requests under continuous batching
 * with chunked prefill * at speeds and powers calibrated on ML.ENERGY v3, each GPU's energy counter integrates its
 * power exactly, and finished requests come out as complete RequestRecords (source
 * "simulated"). It is a PowerSource like NVML, flagged simulated in its quality and in every
 * sample.
 *
 * Two ways to run it: start() advances it with the wall clock (an unref'd timer per sample
 * period); advanceTo(ms) moves virtual time by hand, deterministic for a seed, as fast as the
 * CPU allows (tests, benchmarks). Use one or the other, not both.
 */
export class SimulatedGpuNode implements PowerSource {
  /** Each node seeds its counters afresh (the same values for the same seed). */
  readonly counterRestartsWithProcess = true;
  private readonly clock: { now(): number };
  private readonly originMs: number;
  private readonly periodMs: number;
  private readonly uuids: string[];
  private readonly replicas = new Map<string, ReplicaSlot>();
  private readonly replicaOfGpu: (ReplicaSlot | undefined)[];
  private readonly noiseStdW: number;
  private readonly noisePrng: Prng;
  private readonly requestPrng: Prng;
  private readonly noiseW: number[];
  private readonly counterJ: number[];
  private readonly energyJ: number[];
  private readonly idleJ: number[];
  private readonly resets: { gpu: number; atMs: number }[];
  private readonly dropouts: { gpu: number; fromMs: number; toMs: number; reported: boolean }[];
  private readonly arrivals = new MinHeap<Arrival>((a, b) => a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq));
  private readonly cancels = new MinHeap<Pending>((a, b) => a.cancelAtMs < b.cancelAtMs || (a.cancelAtMs === b.cancelAtMs && a.job.seq < b.job.seq));
  private readonly pending = new Map<SimJob, Pending>();
  private readonly doneListeners: ((record: RequestRecord) => void)[] = [];
  private onSamples: ((samples: readonly PowerSample[]) => void) | undefined;
  private onError: ((error: PowerSourceError) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Current simulated time, ms after the origin. */
  private nowRel = 0;
  /**
   * Time up to which energy has been folded in. Only events fold, so
   * stopping an advance between events (advanceTo at any time) leaves the run bit-identical.
   */
  private baseRel = 0;
  private nextTickRel: number;
  private nextResetIndex = 0;
  private seq = 0;
  private advancing = false;

  constructor(private readonly config: SimulatedGpuNodeConfig) {
    const spec = GPU_TYPES[config.gpuType];
    if (!spec) throw new Error(`simulated node: unknown gpuType ${JSON.stringify(config.gpuType)} (known: ${Object.keys(GPU_TYPES).join(', ')})`);
    if (!Number.isInteger(config.gpuCount) || config.gpuCount < 1 || config.gpuCount > 64) throw new Error(`simulated node: gpuCount must be an integer 1..64 (got ${config.gpuCount})`);
    this.periodMs = config.samplePeriodMs ?? 100;
    if (!(this.periodMs >= 1 && this.periodMs <= 60_000)) throw new Error(`simulated node: samplePeriodMs must be 1..60000 (got ${this.periodMs})`);
    this.noiseStdW = config.noise?.powerStdW ?? 0;
    if (!(this.noiseStdW >= 0)) throw new Error('simulated node: noise.powerStdW must be >= 0');
    this.clock = config.clock ?? { now: () => Date.now() };
    this.originMs = config.startMs ?? this.clock.now();
    const seed = config.seed ?? 1;
    this.noisePrng = new Prng(seed * 3 + 1);
    this.requestPrng = new Prng(seed * 3 + 2);
    const setupPrng = new Prng(seed * 3);
    const n = config.gpuCount;
    this.uuids = Array.from({ length: n }, (_, i) => simulatedGpuUuid(i));
    this.replicaOfGpu = new Array<ReplicaSlot | undefined>(n).fill(undefined);
    this.noiseW = new Array<number>(n).fill(0);
    // Counters start where a driver loaded days ago would be (NVML counts mJ since driver load).
    this.counterJ = Array.from({ length: n }, () => Math.round(1e6 + setupPrng.next() * 5e7));
    this.energyJ = new Array<number>(n).fill(0);
    this.idleJ = new Array<number>(n).fill(0);

    for (const r of config.replicas) {
      if (this.replicas.has(r.name)) throw new Error(`simulated node: replica name ${JSON.stringify(r.name)} used twice`);
      if (r.gpus.length === 0) throw new Error(`simulated node: replica ${r.name} has no GPUs`);
      const maxBatch = r.maxBatch ?? DEFAULT_MAX_BATCH;
      if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`simulated node: replica ${r.name} maxBatch must be a positive integer`);
      const maxBatchedTokens = r.maxBatchedTokens ?? DEFAULT_MAX_BATCHED_TOKENS;
      if (!Number.isInteger(maxBatchedTokens) || maxBatchedTokens < maxBatch) throw new Error(`simulated node: replica ${r.name} maxBatchedTokens must be an integer >= maxBatch (${maxBatch})`);
      const curves = curvesFor(config.gpuType, { paramsB: r.paramsB, activeParamsB: r.activeParamsB, precision: r.precision, numGpus: r.gpus.length, model: r.model });
      const slot: ReplicaSlot = {
        config: r,
        curves,
        uuids: r.gpus.map((g) => this.uuids[g] ?? ''),
        engine: new SimulatedReplica(r.name, curves, maxBatch, (job, outcome, at) => this.finish(job, outcome, at), maxBatchedTokens),
      };
      for (const g of r.gpus) {
        if (!Number.isInteger(g) || g < 0 || g >= n) throw new Error(`simulated node: replica ${r.name} names GPU ${g}, node has 0..${n - 1}`);
        if (this.replicaOfGpu[g]) throw new Error(`simulated node: GPU ${g} is in replicas ${this.replicaOfGpu[g]?.config.name} and ${r.name}`);
        this.replicaOfGpu[g] = slot;
      }
      this.replicas.set(r.name, slot);
    }
    const checkGpu = (g: number, what: string): void => {
      if (!Number.isInteger(g) || g < 0 || g >= n) throw new Error(`simulated node: ${what} names GPU ${g}, node has 0..${n - 1}`);
    };
    this.resets = [...(config.inject?.counterResets ?? [])].map((r) => ({ ...r })).sort((a, b) => a.atMs - b.atMs);
    this.resets.forEach((r) => checkGpu(r.gpu, 'counter reset'));
    this.dropouts = (config.inject?.dropouts ?? []).map((d) => ({ ...d, reported: false }));
    this.dropouts.forEach((d) => checkGpu(d.gpu, 'dropout'));
    // Samples fall on the wall-clock grid of the period (…00, …10, …20 at 10 Hz).
    this.nextTickRel = Math.ceil(this.originMs / this.periodMs) * this.periodMs - this.originMs;
    this.drawNoise();
  }

  // ---- PowerSource ------------------------------------------------------------------------

  async init(): Promise<readonly GpuInfo[]> {
    return this.gpus();
  }

  /** Emit samples in real time: every sample period the node advances to the clock's now. */
  start(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void): void {
    this.attach(onSamples, onError);
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.periodMs);
    this.timer.unref();
  }

  async shutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  quality(): PowerSourceQuality {
    const spec = GPU_TYPES[this.config.gpuType];
    const notes = [
      `SIMULATED: ${this.config.gpuCount} x ${spec.name}; power and energy come from a model calibrated on ML.ENERGY v3, not from hardware`,
      `idle power ${spec.idlePowerW} W (${spec.idlePowerSource})`,
      ...spec.notes,
      ...[...this.replicas.values()].map((r) => `replica ${r.config.name}: ${r.curves.description}`),
    ];
    const unused = this.uuids.map((_, i) => i).filter((i) => !this.replicaOfGpu[i]);
    if (unused.length > 0) notes.push(`GPUs ${unused.join(', ')} serve no replica (idle)`);
    if (this.resets.length > 0) notes.push(`injected energy-counter resets: ${this.resets.length}`);
    if (this.dropouts.length > 0) notes.push(`injected sample dropouts: ${this.dropouts.length}`);
    return { kind: 'simulated', energyCounter: true, powerAveraged: false, simulated: true, samplePeriodMs: this.periodMs, notes };
  }

  // ---- Driving ----------------------------------------------------------------------------

  /** Receive samples and problems without starting the real-time timer (virtual runs). */
  attach(onSamples: (samples: readonly PowerSample[]) => void, onError: (error: PowerSourceError) => void): void {
    this.onSamples = onSamples;
    this.onError = onError;
  }

  /** Listen for finished requests (ok, cancelled or error). Returns a function that stops listening. */
  onRequestDone(listener: (record: RequestRecord) => void): () => void {
    this.doneListeners.push(listener);
    return () => {
      const i = this.doneListeners.indexOf(listener);
      if (i >= 0) this.doneListeners.splice(i, 1);
    };
  }

  /** Hand a request to a replica. Throws on a spec that names no replica or has impossible token counts. */
  submit(spec: SimulatedRequestSpec): void {
    const replica = this.replicas.get(spec.replica);
    if (!replica) throw new Error(`simulated node: no replica ${JSON.stringify(spec.replica)} (have ${[...this.replicas.keys()].join(', ')})`);
    const count = (n: number | undefined, what: string, min: number): void => {
      if (n !== undefined && !(Number.isInteger(n) && n >= min)) throw new Error(`simulated request ${spec.requestId}: ${what} must be an integer >= ${min} (got ${n})`);
    };
    count(spec.promptTokens, 'promptTokens', 0);
    count(spec.cachedTokens, 'cachedTokens', 0);
    count(spec.maxCompletionTokens, 'maxCompletionTokens', 1);
    count(spec.outputTokens, 'outputTokens', 1);
    count(spec.reasoningTokens, 'reasoningTokens', 0);
    count(spec.attempt, 'attempt', 1);
    if (spec.cachedTokens > spec.promptTokens) throw new Error(`simulated request ${spec.requestId}: cachedTokens exceeds promptTokens`);
    if (spec.cancelAfterMs !== undefined && !(spec.cancelAfterMs >= 0)) throw new Error(`simulated request ${spec.requestId}: cancelAfterMs must be >= 0`);
    const base = this.timer ? Math.max(this.nowRel, this.clock.now() - this.originMs) : this.nowRel;
    const atRel = spec.atMs === undefined ? base : Math.max(this.nowRel, spec.atMs - this.originMs);
    this.arrivals.push({ atMs: atRel, seq: this.seq++, spec });
  }

  /**
   * Run the simulation up to `ms` (epoch ms): requests progress, energy integrates, samples are
   * emitted on the period grid and finished requests go to the listeners. A time already passed
   * is a no-op; a call from inside a listener is ignored (the outer call carries on).
   */
  advanceTo(ms: number): void {
    if (this.advancing) return;
    this.advancing = true;
    try {
      this.run(ms - this.originMs);
    } finally {
      this.advancing = false;
    }
  }

  /** Current simulated time, epoch ms. */
  now(): number {
    return this.originMs + this.nowRel;
  }

  /** The node's GPUs, marked simulated in name and UUID. */
  gpus(): GpuInfo[] {
    const spec = GPU_TYPES[this.config.gpuType];
    return this.uuids.map((uuid, index) => ({ uuid, index, name: `${spec.name} (simulated)`, powerLimitW: watts(spec.powerLimitW), migEnabled: false }));
  }

  /** Replica layout: model, tier and GPUs of each replica. */
  replicaLayout(): SimulatedReplicaInfo[] {
    return [...this.replicas.values()].map((r) => ({
      name: r.config.name,
      model: r.config.model,
      tier: r.config.tier,
      gpuIndices: [...r.config.gpus],
      gpuUuids: [...r.uuids],
      curves: r.curves.description,
    }));
  }

  /**
   * Each replica now: running batch (admitted, prefilling or decoding), decode batch, queue, and
   * the peaks of the running and decode batches so far.
   */
  replicaState(): { name: string; running: number; decoding: number; queued: number; maxBatchSeen: number; maxDecodingSeen: number; powerPerGpuW: number }[] {
    return [...this.replicas.values()].map((r) => ({
      name: r.config.name,
      running: r.engine.running,
      decoding: r.engine.decodingNow,
      queued: r.engine.queued,
      maxBatchSeen: r.engine.maxBatchSeen,
      maxDecodingSeen: r.engine.maxDecodeSeen,
      powerPerGpuW: r.engine.powerPerGpuW,
    }));
  }

  /** Energy the simulator integrated so far (copies). */
  truth(): SimulatedTruth {
    const pendingS = (this.nowRel - this.baseRel) / 1000; // since the last event: power has not changed
    const energy = this.energyJ.map((e, g) => e + this.powerOf(g) * pendingS);
    const perGpuJ: Record<string, number> = {};
    const idleJByGpu: Record<string, number> = {};
    this.uuids.forEach((uuid, g) => {
      perGpuJ[uuid] = energy[g] as number;
      idleJByGpu[uuid] = (this.idleJ[g] as number) + (this.isBusy(g) ? 0 : this.powerOf(g) * pendingS);
    });
    const perReplicaJ: Record<string, number> = {};
    for (const r of this.replicas.values()) perReplicaJ[r.config.name] = r.config.gpus.reduce((sum, g) => sum + (energy[g] as number), 0);
    return { perGpuJ, perReplicaJ, idleJByGpu, elapsedMs: this.nowRel };
  }

  // ---- Simulation -------------------------------------------------------------------------

  private tick(): void {
    try {
      this.advanceTo(this.clock.now());
    } catch (error) {
      this.report({ reason: 'simulator', message: `simulated node: ${error instanceof Error ? error.message : String(error)}` });
    }
  }

  private run(targetRel: number): void {
    for (let steps = 0; steps < MAX_STEPS_PER_ADVANCE; steps++) {
      let next = Math.min(this.nextTickRel, this.arrivals.peek()?.atMs ?? Infinity, this.resets[this.nextResetIndex]?.atMs ?? Infinity);
      const cancel = this.peekCancel();
      if (cancel) next = Math.min(next, cancel.cancelAtMs);
      for (const r of this.replicas.values()) next = Math.min(next, r.engine.nextEventMs());
      if (next > targetRel) {
        this.nowRel = Math.max(this.nowRel, targetRel);
        return;
      }
      this.integrate(Math.max(this.baseRel, next));
      this.processEventsAt(this.baseRel);
    }
    throw new Error(`event loop exceeded ${MAX_STEPS_PER_ADVANCE} steps in one advance`);
  }

  private processEventsAt(t: number): void {
    while (this.resets[this.nextResetIndex] && (this.resets[this.nextResetIndex]?.atMs as number) <= t) {
      const reset = this.resets[this.nextResetIndex++] as { gpu: number };
      this.counterJ[reset.gpu] = 0;
    }
    for (let c = this.peekCancel(); c && c.cancelAtMs <= t; c = this.peekCancel()) {
      this.cancels.pop();
      c.replica.engine.cancel(c.job, t);
    }
    for (const r of this.replicas.values()) r.engine.processDue(t);
    for (let a = this.arrivals.peek(); a && a.atMs <= t; a = this.arrivals.peek()) {
      this.arrivals.pop();
      this.arrive(a, t);
    }
    for (const r of this.replicas.values()) r.engine.schedule(t);
    if (this.nextTickRel <= t) {
      this.emitSamples(this.nextTickRel);
      this.nextTickRel += this.periodMs;
      this.drawNoise();
    }
  }

  private arrive(arrival: Arrival, t: number): void {
    const spec = arrival.spec;
    const replica = this.replicas.get(spec.replica) as ReplicaSlot;
    const output = Math.min(spec.outputTokens ?? spec.maxCompletionTokens, spec.maxCompletionTokens);
    const stopAfter = spec.fail ? Math.floor(this.requestPrng.next() * output) : output;
    const job: SimJob = {
      seq: arrival.seq,
      arrivalMs: t,
      promptTokens: spec.promptTokens,
      cachedTokens: spec.cachedTokens,
      stopAfterTokens: stopAfter,
      failing: spec.fail === true,
      phase: 'waiting',
      batchAtAdmission: null,
      prefillLeft: Math.max(1, spec.promptTokens - spec.cachedTokens), // vLLM computes at least the last prompt token
      firstTokenMs: null,
      decodeStart: 0,
      decodeTarget: 0,
      completionTokens: 0,
    };
    const pending: Pending = { job, spec, replica, cancelAtMs: spec.cancelAfterMs === undefined ? Infinity : t + spec.cancelAfterMs };
    this.pending.set(job, pending);
    if (Number.isFinite(pending.cancelAtMs)) this.cancels.push(pending);
    replica.engine.enqueue(job);
  }

  private peekCancel(): Pending | undefined {
    for (;;) {
      const top = this.cancels.peek();
      if (!top || top.job.phase !== 'done') return top;
      this.cancels.pop(); // finished before its deadline
    }
  }

  /** Fold power over [baseRel, toRel] into energy counters and truth. */
  private integrate(toRel: number): void {
    const dt = toRel - this.baseRel;
    if (dt <= 0) return;
    for (let g = 0; g < this.uuids.length; g++) {
      const busy = this.isBusy(g);
      const p = this.powerOf(g);
      const e = (p * dt) / 1000;
      this.energyJ[g] = (this.energyJ[g] as number) + e;
      this.counterJ[g] = (this.counterJ[g] as number) + e;
      if (!busy) this.idleJ[g] = (this.idleJ[g] as number) + e;
    }
    this.baseRel = toRel;
    this.nowRel = Math.max(this.nowRel, toRel);
  }

  private isBusy(g: number): boolean {
    const slot = this.replicaOfGpu[g];
    return slot !== undefined && (slot.engine.running > 0 || slot.engine.busy);
  }

  /**
   * Power of GPU g now: the replica's calibrated power (or idle) plus this period's noise, never
   * negative and never above the enforced power limit, which holds the noise too, as on hardware.
   */
  private powerOf(g: number): number {
    const slot = this.replicaOfGpu[g];
    const spec = GPU_TYPES[this.config.gpuType];
    const base = slot ? slot.engine.powerPerGpuW : spec.idlePowerW;
    return Math.min(spec.powerLimitW, Math.max(0, base + (this.noiseW[g] as number)));
  }

  private drawNoise(): void {
    if (this.noiseStdW === 0) return;
    for (let g = 0; g < this.noiseW.length; g++) this.noiseW[g] = this.noiseStdW * this.noisePrng.normal();
  }

  private emitSamples(tickRel: number): void {
    const samples: PowerSample[] = [];
    const timestampMs = epochMs(this.originMs + tickRel);
    for (let g = 0; g < this.uuids.length; g++) {
      const dropout = this.dropouts.find((d) => d.gpu === g && tickRel >= d.fromMs && tickRel < d.toMs);
      if (dropout) {
        if (!dropout.reported) {
          dropout.reported = true;
          this.report({ gpuUuid: this.uuids[g], reason: 'dropout', message: `simulated dropout: no samples from GPU ${g} for ${dropout.toMs - dropout.fromMs} ms (injected)` });
        }
        continue;
      }
      samples.push({
        timestampMs,
        gpuUuid: this.uuids[g] as string,
        gpuIndex: g,
        powerW: watts(this.powerOf(g)),
        // NVML reports whole millijoules.
        energyJ: joules(Math.floor((this.counterJ[g] as number) * 1000) / 1000),
        powerAveraged: false,
        simulated: true,
      });
    }
    if (samples.length > 0 && this.onSamples) this.onSamples(samples);
  }

  private finish(job: SimJob, outcome: JobOutcome, atRel: number): void {
    const pending = this.pending.get(job);
    if (!pending) return;
    this.pending.delete(job);
    const { spec, replica } = pending;
    const abs = (rel: number): number => Math.round(this.originMs + rel);
    const record: RequestRecord = {
      requestId: spec.requestId,
      taskId: spec.taskId ?? null,
      attempt: spec.attempt ?? null,
      model: replica.config.model,
      tier: replica.config.tier,
      gpus: [...replica.uuids],
      startMs: epochMs(abs(job.arrivalMs)),
      firstTokenMs: job.firstTokenMs === null ? null : epochMs(abs(job.firstTokenMs)),
      endMs: epochMs(abs(atRel)),
      promptTokens: spec.promptTokens,
      cachedTokens: spec.cachedTokens,
      completionTokens: job.completionTokens,
      reasoningTokens: Math.min(spec.reasoningTokens ?? 0, job.completionTokens),
      batchSize: job.batchAtAdmission,
      status: outcome,
      labels: { ...(spec.labels ?? {}) },
      tokensEstimated: false,
      granularity: 'request',
      source: 'simulated',
    };
    for (const listener of [...this.doneListeners]) {
      try {
        listener(record);
      } catch (error) {
        if (!this.onError) throw error;
        this.report({ reason: 'listener', message: `request listener failed: ${error instanceof Error ? error.message : String(error)}` });
      }
    }
  }

  private report(error: PowerSourceError): void {
    this.onError?.(error);
  }
}
