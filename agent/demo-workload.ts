import type { RequestRecord } from '../model/request-record.js';
import { Prng } from '../collectors/simulated/prng.js';
import { simulatedGpuUuid, type SimulatedGpuNode, type SimulatedGpuNodeConfig, type SimulatedRequestSpec } from '../collectors/simulated/simulated-gpu-node.js';

/**
 * The node `tokenwatt demo` simulates: 8 x H100 with three replicas and one spare GPU.
 *  - GPU 0: Llama-3.1-8B, BF16 (tier small) — an ML.ENERGY reference configuration;
 *  - GPUs 1-2: Llama-3.1-70B, FP8, tensor parallel 2 (tier medium) — scaled from the BF16 x4 reference;
 *  - GPUs 3-6: Qwen3-235B-A22B (MoE, 22B active), FP8, x4 (tier large) — an ML.ENERGY reference;
 *  - GPU 7: warm spare serving nothing, so the demo shows idle energy that nobody's requests pay.
 * (A 235B model does not fit in three 80 GB GPUs even at FP8, hence 2 + 4 GPUs rather than 4 + 3.)
 */
export function defaultDemoNodeConfig(options: { seed?: number; startMs?: number; clock?: { now(): number }; samplePeriodMs?: number } = {}): SimulatedGpuNodeConfig {
  return {
    gpuType: 'H100',
    gpuCount: 8,
    samplePeriodMs: options.samplePeriodMs ?? 100,
    seed: options.seed ?? 1,
    noise: { powerStdW: 6 },
    ...(options.clock && { clock: options.clock }),
    ...(options.startMs !== undefined && { startMs: options.startMs }),
    replicas: [
      { name: 'llama-3.1-8b', model: 'meta-llama/Llama-3.1-8B-Instruct', tier: 'small', paramsB: 8, gpus: [0], maxBatch: 512 },
      { name: 'llama-3.1-70b-fp8', model: 'meta-llama/Llama-3.1-70B-Instruct-FP8', tier: 'medium', paramsB: 70, precision: 'fp8', gpus: [1, 2], maxBatch: 256 },
      { name: 'qwen3-235b-a22b-fp8', model: 'Qwen/Qwen3-235B-A22B-Instruct-2507-FP8', tier: 'large', paramsB: 235, activeParamsB: 22, precision: 'fp8', gpus: [3, 4, 5, 6], maxBatch: 192 },
    ],
  };
}

/** One replica of a simulated node config, as the agent config needs it (model -> tier, replica GPUs). */
export interface DemoReplicaMapping {
  readonly replica: string;
  readonly model: string;
  readonly tier: string;
  readonly gpuIndices: readonly number[];
  readonly gpuUuids: readonly string[];
}

/** Replica -> model, tier and GPUs of a simulated node config (default: the demo node). */
export function demoReplicaMap(config: SimulatedGpuNodeConfig = defaultDemoNodeConfig()): DemoReplicaMapping[] {
  return config.replicas.map((r) => ({ replica: r.name, model: r.model, tier: r.tier, gpuIndices: [...r.gpus], gpuUuids: r.gpus.map(simulatedGpuUuid) }));
}

export interface DemoWorkloadOptions {
  readonly node: SimulatedGpuNode;
  readonly seed?: number;
  /** Mean arrivals of new tasks per second besides the batch jobs (modulated over a 5-minute cycle); default 3. */
  readonly ratePerSecond?: number;
  /** Seconds between the starts of summarisation batch jobs, drawn uniformly in this range; default [45, 90]. */
  readonly burstEverySeconds?: readonly [number, number];
  /** Requests in one batch job, uniformly in this range; default [300, 700]. */
  readonly burstSize?: readonly [number, number];
  /** Requests a batch job keeps in flight (its client's concurrency), uniformly in this range; default [150, 450]. */
  readonly burstConcurrency?: readonly [number, number];
  /** Prefix of request and task ids; default "demo-<seed>-<node start, base 36>" (unique per run). */
  readonly idPrefix?: string;
  /** Clock of the real-time generator; default Date.now (must match the node's). */
  readonly clock?: { now(): number };
  /** Real-time generator period; default 100 ms. */
  readonly tickMs?: number;
  /** Where a failing real-time tick reports; default: ignored after being counted in stats(). */
  readonly onError?: (error: Error) => void;
}

/** Counters of what the workload did. */
export interface DemoWorkloadStats {
  tasksStarted: number;
  requestsSubmitted: number;
  retries: number;
  /** Requests submitted with a client deadline that the simulator then enforced. */
  cancelled: number;
  errored: number;
  tasksSucceeded: number;
  tasksFailed: number;
  /** Summarisation batch jobs started. */
  bursts: number;
  tickErrors: number;
  /** Milliseconds of traffic skipped because the real-time clock was far ahead of the plan (suspend, stall). */
  skippedMs: number;
}

type Scenario = 'chat' | 'agent' | 'code-review' | 'reasoning' | 'summarize';

/** A summarisation batch job: its client keeps `concurrency` requests in flight until `remaining` is spent. */
interface BatchJob {
  remaining: number;
}

interface TaskState {
  readonly id: string;
  readonly scenario: Scenario;
  readonly replica: string;
  readonly team: string;
  readonly steps: number;
  step: number;
  attempt: number;
  /** Prompt tokens of the current step (for retries: the same prompt again). */
  promptTokens: number;
  /** Shared prefix of the current step that the prefix cache may hold, or none. */
  prefixKey: string | null;
  prefixTokens: number;
  /** Shorter prefix to fall back on when prefixKey was evicted (the system prompt), or none. */
  fallbackKey: string | null;
  fallbackTokens: number;
  /** Key under which this step's whole prompt is cached once served (the next turn's or step's prefix). */
  storeKey: string | null;
  /** Context accumulated by the previous steps (agent tasks). */
  contextTokens: number;
  /** Output of the current step; a retry asks for the same. */
  outputTokens: number;
  reasoningTokens: number;
  /** Keys the current attempt will have cached once it produced its first token (prefill done). */
  pendingCacheKeys: string[];
  /** Whether an attempt of the current step got through prefill, so a retry finds its whole prompt cached. */
  promptCached: boolean;
  /** The batch job this task belongs to (summarisation), if any. */
  batchJob: BatchJob | null;
}

const TEAMS = ['search', 'support', 'research', 'data'] as const;
const MAX_ATTEMPTS = 3;
/** vLLM caches prefixes in blocks of 16 tokens. */
const CACHE_BLOCK = 16;
/** A batch job's client ramps up to its concurrency over this long. */
const BATCH_RAMP_MS = 2000;
/** A cached prefix survives this long unused (KV blocks get evicted under pressure). */
const PREFIX_TTL_MS = 90_000;
/** Fresh arrivals are generated this far ahead, in fixed windows, so virtual runs split alike. */
const WINDOW_MS = 1000;

/**
 * A real-time tick that finds the plan further behind the clock than this skips the gap: longer
 * than any event-loop stall the plan should make up, shorter than a suspend.
 */
const MAX_CATCH_UP_MS = 5_000;

/**
 * A realistic, seeded mix of LLM traffic for a SimulatedGpuNode: chat turns (some continuing a
 * conversation whose history the prefix cache holds), multi-step agent tasks whose steps reuse
 * the previous context, code reviews with long unique prompts, reasoning requests with long
 * outputs, and periodic summarisation batch jobs: a client that keeps a few hundred short
 * documents in flight on the small model until its job is done, so the decode batch stands in the
 * hundreds for a while (that is where J/token is lowest). Requests fail (retried up to 3
 * attempts) and users cancel (some regenerate).
 * Labels team/feature come from a small set.
 *
 * runVirtual(untilMs) drives the node in virtual time (deterministic for a seed); start()/stop()
 * generate in real time while the node runs on its own timer (SimulatedGpuNode.start()).
 */
export class DemoWorkload {
  private readonly node: SimulatedGpuNode;
  private readonly arrivalPrng: Prng;
  private readonly followPrng: Prng;
  private readonly rate: number;
  private readonly burstEvery: readonly [number, number];
  private readonly burstSize: readonly [number, number];
  private readonly burstConcurrency: readonly [number, number];
  private readonly idPrefix: string;
  private readonly clock: { now(): number };
  private readonly tickMs: number;
  private readonly originMs: number;
  private readonly replicaByTier = new Map<string, string>();
  private readonly defaultReplica: string;
  private readonly tasks = new Map<string, TaskState>();
  private readonly prefixCache = new Map<string, number>();
  private readonly conversations: { key: string; tokens: number; replica: string; team: string; lastMs: number }[] = [];
  private readonly counters: DemoWorkloadStats = {
    tasksStarted: 0, requestsSubmitted: 0, retries: 0, cancelled: 0, errored: 0, tasksSucceeded: 0, tasksFailed: 0, bursts: 0, tickErrors: 0, skippedMs: 0,
  };
  private generatedUntil: number;
  private nextTaskMs: number;
  private nextBurstMs: number;
  private requestSeq = 0;
  private taskSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** After stop(): finished requests no longer lead to next steps or retries. */
  private stopped = false;

  constructor(private readonly options: DemoWorkloadOptions) {
    this.node = options.node;
    const seed = options.seed ?? 1;
    this.arrivalPrng = new Prng(seed * 7 + 1);
    this.followPrng = new Prng(seed * 7 + 2);
    this.rate = options.ratePerSecond ?? 3;
    if (!(this.rate > 0 && this.rate <= 10_000)) throw new Error(`demo workload: ratePerSecond must be in (0, 10000] (got ${this.rate})`);
    this.burstEvery = options.burstEverySeconds ?? [45, 90];
    this.burstSize = options.burstSize ?? [300, 700];
    this.burstConcurrency = options.burstConcurrency ?? [150, 450];
    this.clock = options.clock ?? { now: () => Date.now() };
    this.tickMs = options.tickMs ?? 100;
    this.originMs = this.node.now();
    this.idPrefix = options.idPrefix ?? `demo-${seed}-${Math.round(this.originMs).toString(36)}`;
    const layout = this.node.replicaLayout();
    if (layout.length === 0) throw new Error('demo workload: the node has no replicas');
    for (const r of layout) if (!this.replicaByTier.has(r.tier)) this.replicaByTier.set(r.tier, r.name);
    this.defaultReplica = (layout[0] as { name: string }).name;
    this.generatedUntil = this.originMs;
    this.nextTaskMs = this.originMs + this.arrivalPrng.exponential(this.rate) * 1000;
    // The first burst comes early so that even a short run sees a full batch.
    this.nextBurstMs = this.originMs + (5 + this.arrivalPrng.next() * 10) * 1000;
    this.unsubscribe = this.node.onRequestDone((record) => this.onDone(record));
  }

  /** Drive the node in virtual time up to `untilMs` (epoch ms). */
  runVirtual(untilMs: number): void {
    this.stopped = false;
    // Whole windows are planned before the node enters them, wherever a call stops, so that
    // one long run and several short ones make the same traffic.
    for (;;) {
      const target = Math.min(untilMs, this.generatedUntil);
      this.node.advanceTo(target); // finish the planned window before planning the next
      if (target >= untilMs) return;
      this.generateUntil(this.windowEndAfter(this.generatedUntil));
    }
  }

  /** Generate traffic in real time (the node must run its own real-time timer). */
  start(): void {
    if (this.timer) return;
    this.stopped = false;
    // Started a while after construction (or after a stop): begin now rather than replay the gap.
    this.skipLag(0);
    this.timer = setInterval(() => {
      try {
        // The clock jumped ahead (suspend and resume, a paused VM): the clients paused with the
        // node, so traffic goes on at its rate instead of arriving all at once for the gap.
        this.skipLag(MAX_CATCH_UP_MS);
        this.generateUntil(this.clock.now() + this.tickMs);
      } catch (error) {
        this.counters.tickErrors++;
        this.options.onError?.(error instanceof Error ? error : new Error(String(error)));
      }
    }, this.tickMs);
    this.timer.unref();
  }

  /** Move the traffic plan to now when it lags the clock by more than `toleratedMs`. */
  private skipLag(toleratedMs: number): void {
    const lag = this.clock.now() - this.generatedUntil;
    if (lag > toleratedMs) {
      // Counted when the running plan falls behind; the start's catch-up is not traffic lost.
      if (toleratedMs > 0) this.counters.skippedMs += lag;
      this.generatedUntil += lag;
      this.nextTaskMs += lag;
      this.nextBurstMs += lag;
    }
  }

  /** Stop generating, follow-up steps and retries included; requests already submitted still finish on the node. Idempotent. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopped = true;
  }

  /** Stop and stop listening to the node. */
  dispose(): void {
    this.stop();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  stats(): DemoWorkloadStats {
    return { ...this.counters };
  }

  // ---- arrivals -----------------------------------------------------------------------------

  private windowEndAfter(t: number): number {
    return this.originMs + (Math.floor((t - this.originMs) / WINDOW_MS) + 1) * WINDOW_MS;
  }

  /** Arrival rate (tasks/s) at time t: a 5-minute swell between 25% and 175% of the mean, so quiet and busy spells alternate. */
  private rateAt(t: number): number {
    const phase = ((t - this.originMs) / 300_000) * 2 * Math.PI;
    return this.rate * (1 + 0.75 * Math.sin(phase));
  }

  private generateUntil(untilMs: number): void {
    while (this.nextTaskMs < untilMs) {
      this.startTask(this.nextTaskMs);
      this.nextTaskMs += this.arrivalPrng.exponential(Math.max(0.05, this.rateAt(this.nextTaskMs))) * 1000;
    }
    while (this.nextBurstMs < untilMs) {
      this.burst(this.nextBurstMs);
      const [lo, hi] = this.burstEvery;
      this.nextBurstMs += (lo + this.arrivalPrng.next() * (hi - lo)) * 1000;
    }
    this.generatedUntil = Math.max(this.generatedUntil, untilMs);
  }

  private replicaFor(tier: string): string {
    return this.replicaByTier.get(tier) ?? this.defaultReplica;
  }

  private startTask(atMs: number): void {
    const p = this.arrivalPrng;
    const scenario = p.weighted<Scenario>([['chat', 55], ['agent', 20], ['code-review', 10], ['reasoning', 10], ['summarize', 5]]);
    const team = scenario === 'summarize' ? 'data' : scenario === 'code-review' ? 'search' : p.pick(TEAMS);
    const tier = scenario === 'chat' ? p.weighted([['small', 60], ['medium', 30], ['large', 10]] as const)
      : scenario === 'agent' ? p.weighted([['medium', 70], ['large', 30]] as const)
      : scenario === 'code-review' ? 'medium'
      : scenario === 'reasoning' ? 'large'
      : 'small';
    const task = this.newTask(scenario, this.replicaFor(tier), team, scenario === 'agent' ? p.int(2, 8) : 1);
    this.planStep(task, atMs, p);
  }

  private newTask(scenario: Scenario, replica: string, team: string, steps: number): TaskState {
    const task: TaskState = {
      id: `${this.idPrefix}-t${this.taskSeq++}`, scenario, replica, team, steps, step: 1, attempt: 1,
      promptTokens: 0, prefixKey: null, prefixTokens: 0, fallbackKey: null, fallbackTokens: 0, storeKey: null,
      contextTokens: 0, outputTokens: 1, reasoningTokens: 0, pendingCacheKeys: [], promptCached: false, batchJob: null,
    };
    this.counters.tasksStarted++;
    this.tasks.set(task.id, task);
    return task;
  }

  /** Start a summarisation batch job: its first `concurrency` requests ramp up now; each one that ends starts the next. */
  private burst(atMs: number): void {
    const p = this.arrivalPrng;
    const job: BatchJob = { remaining: p.int(this.burstSize[0], this.burstSize[1]) };
    const concurrency = Math.min(job.remaining, p.int(this.burstConcurrency[0], this.burstConcurrency[1]));
    this.counters.bursts++;
    for (let i = 0; i < concurrency; i++) this.startBatchTask(job, atMs + (i / concurrency) * BATCH_RAMP_MS, p);
  }

  private startBatchTask(job: BatchJob, atMs: number, p: Prng): void {
    job.remaining--;
    const task = this.newTask('summarize', this.replicaFor('small'), 'data', 1);
    task.batchJob = job;
    this.planStep(task, atMs, p);
  }

  /** Choose prompt, prefix and output of the task's current step, then submit it. */
  private planStep(task: TaskState, atMs: number, p: Prng): void {
    const round = (x: number): number => Math.max(1, Math.round(x));
    switch (task.scenario) {
      case 'chat': {
        const system = 300 + 400 * (hash(task.team) % 4); // each team has its own system prompt
        const systemKey = `sys:${task.team}`;
        const recent = this.conversations.filter((c) => c.replica === task.replica && c.team === task.team && atMs - c.lastMs < 120_000);
        const user = round(p.logNormal(120, 0.9));
        if (p.chance(0.2)) {
          // A one-off API call with its own prompt: nothing to reuse, a prefix-cache miss.
          task.prefixKey = null;
          task.prefixTokens = 0;
          task.storeKey = null;
        } else if (recent.length > 0 && p.chance(0.45)) {
          const conv = p.pick(recent); // a follow-up turn: the whole history is a cacheable prefix
          task.prefixKey = conv.key;
          task.prefixTokens = conv.tokens;
          task.storeKey = conv.key;
          conv.tokens += user + 200;
          conv.lastMs = atMs;
        } else {
          task.prefixKey = systemKey;
          task.prefixTokens = system;
          task.storeKey = `conv:${task.id}`;
          if (this.conversations.length > 500) this.conversations.shift();
          this.conversations.push({ key: task.storeKey, tokens: system + user + 200, replica: task.replica, team: task.team, lastMs: atMs });
        }
        task.fallbackKey = task.prefixKey === null ? null : systemKey;
        task.fallbackTokens = system;
        task.promptTokens = task.prefixTokens + user;
        task.outputTokens = Math.min(2048, round(p.logNormal(180, 0.8)));
        return this.submit(task, atMs, p.chance(0.04) ? 300 + p.next() * 4000 : undefined, p);
      }
      case 'agent': {
        const systemKey = `agent:${task.team}`;
        const system = 1500 + 300 * (hash(task.team) % 5);
        if (task.step === 1) {
          task.prefixKey = systemKey;
          task.prefixTokens = system;
          task.contextTokens = system + round(p.logNormal(300, 0.6));
        } else {
          // The previous step's prompt and output are the prefix of this one; tool output is appended.
          task.prefixKey = `${task.id}:step${task.step - 1}`;
          task.prefixTokens = task.contextTokens;
          task.contextTokens += round(p.logNormal(500, 0.8));
        }
        task.fallbackKey = systemKey;
        task.fallbackTokens = system;
        task.storeKey = `${task.id}:step${task.step}`;
        task.promptTokens = task.contextTokens;
        task.outputTokens = Math.min(1024, round(p.logNormal(150, 0.7)));
        return this.submit(task, atMs, undefined, p);
      }
      case 'code-review':
        task.prefixKey = 'sys:code-review';
        task.prefixTokens = 800;
        task.fallbackKey = null;
        task.storeKey = null;
        task.promptTokens = 800 + round(p.logNormal(4000, 0.6));
        task.outputTokens = Math.min(2048, round(p.logNormal(450, 0.4)));
        return this.submit(task, atMs, undefined, p);
      case 'reasoning': {
        task.prefixKey = `sys:reasoning:${task.team}`;
        task.prefixTokens = 400;
        task.fallbackKey = null;
        task.storeKey = null;
        task.promptTokens = 400 + round(p.logNormal(500, 0.8));
        task.outputTokens = Math.min(8192, round(p.logNormal(2200, 0.6)));
        task.reasoningTokens = Math.floor(task.outputTokens * (0.7 + 0.2 * p.next()));
        const deadline = p.chance(0.1) ? 10_000 + p.next() * 40_000 : undefined; // users give up on long thinking
        return this.submit(task, atMs, deadline, p);
      }
      case 'summarize':
        // Short documents (tickets, reviews, abstracts) under a shared instruction prompt.
        task.prefixKey = 'sys:summarize';
        task.prefixTokens = 200;
        task.fallbackKey = null;
        task.storeKey = null;
        task.promptTokens = 200 + round(p.logNormal(350, 0.5));
        task.outputTokens = Math.min(1024, round(p.logNormal(300, 0.4)));
        return this.submit(task, atMs, undefined, p);
    }
  }

  /** Submit the task's current step (attempt `task.attempt`), with a client deadline when given. */
  private submit(task: TaskState, atMs: number, cancelAfterMs: number | undefined, p: Prng): void {
    const cached = this.cachedPrefix(task, atMs);
    // A retry finds its own whole prompt cached, if a failed attempt got through prefill.
    const cachedRaw = task.attempt > 1 && task.promptCached ? task.promptTokens : cached;
    const cachedTokens = Math.min(task.promptTokens, Math.floor(cachedRaw / CACHE_BLOCK) * CACHE_BLOCK);
    const spec: SimulatedRequestSpec = {
      requestId: `${this.idPrefix}-r${this.requestSeq++}`,
      taskId: task.id,
      attempt: task.attempt,
      replica: task.replica,
      promptTokens: task.promptTokens,
      cachedTokens,
      maxCompletionTokens: task.scenario === 'reasoning' ? 8192 : 2048,
      outputTokens: task.outputTokens,
      reasoningTokens: task.reasoningTokens,
      labels: { team: task.team, feature: task.scenario },
      ...(cancelAfterMs !== undefined && { cancelAfterMs: Math.round(cancelAfterMs) }),
      fail: p.chance(0.025),
      atMs,
    };
    this.counters.requestsSubmitted++;
    this.node.submit(spec);
  }

  /**
   * Tokens of the step's prefix the replica's prefix cache holds at `atMs`. What serving the
   * attempt will cache is noted on the task and stored only once the attempt got through
   * prefill (see cachePrompt): an attempt cancelled or failed before its first token caches nothing.
   */
  private cachedPrefix(task: TaskState, atMs: number): number {
    const warm = (key: string | null): boolean => {
      if (key === null) return false;
      const last = this.prefixCache.get(`${task.replica}|${key}`);
      return last !== undefined && last <= atMs && atMs - last < PREFIX_TTL_MS;
    };
    const tokens = warm(task.prefixKey) ? task.prefixTokens : warm(task.fallbackKey) ? task.fallbackTokens : 0;
    task.pendingCacheKeys = [task.prefixKey, task.fallbackKey, task.storeKey].filter((k): k is string => k !== null);
    return tokens;
  }

  /** The attempt's prompt was prefilled by `atMs` (its first token): its prefixes and whole prompt are cached from then. */
  private cachePrompt(task: TaskState, atMs: number): void {
    task.promptCached = true;
    for (const key of task.pendingCacheKeys) {
      const k = `${task.replica}|${key}`;
      this.prefixCache.set(k, Math.max(this.prefixCache.get(k) ?? -Infinity, atMs));
    }
    task.pendingCacheKeys = [];
    if (this.prefixCache.size > 5000) {
      for (const [key, last] of this.prefixCache) if (atMs - last >= PREFIX_TTL_MS) this.prefixCache.delete(key);
    }
  }

  // ---- outcomes -----------------------------------------------------------------------------

  private onDone(record: RequestRecord): void {
    const task = record.taskId === null ? undefined : this.tasks.get(record.taskId);
    if (!task) return; // another client's request
    if (record.firstTokenMs !== null) this.cachePrompt(task, record.firstTokenMs);
    if (this.stopped) {
      this.tasks.delete(task.id);
      return;
    }
    const p = this.followPrng;
    if (record.status === 'error') this.counters.errored++;
    if (record.status === 'cancelled') this.counters.cancelled++;
    if (record.status === 'ok') {
      if (task.step >= task.steps) return this.closeTask(task, true, record.endMs);
      task.step++;
      task.attempt = 1;
      task.promptCached = false;
      task.reasoningTokens = 0;
      task.contextTokens += record.completionTokens;
      return this.planStep(task, record.endMs + 300 + p.next() * 3500, p); // tool call / user think time
    }
    // error: the client retries; cancelled: the user regenerates half of the time.
    const retry = task.attempt < MAX_ATTEMPTS && (record.status === 'error' || p.chance(0.5));
    if (!retry) return this.closeTask(task, false, record.endMs);
    task.attempt++;
    this.counters.retries++;
    const backoffMs = record.status === 'error' ? 500 * 2 ** (task.attempt - 2) + p.next() * 500 : 1000 + p.next() * 4000;
    this.submit(task, record.endMs + backoffMs, undefined, p);
  }

  /** The task is over at `atMs`; in a batch job, its client sends the job's next document. */
  private closeTask(task: TaskState, ok: boolean, atMs: number): void {
    this.tasks.delete(task.id);
    if (ok) this.counters.tasksSucceeded++;
    else this.counters.tasksFailed++;
    const job = task.batchJob;
    if (job && job.remaining > 0) this.startBatchTask(job, atMs + 20 + this.followPrng.next() * 200, this.followPrng);
  }
}

/** A small stable string hash (FNV-1a), for per-team prompt lengths. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
