import type { ReplicaCurves } from './calibration.js';
import { MinHeap } from './min-heap.js';

/** How a simulated request ended. */
export type JobOutcome = 'ok' | 'error' | 'cancelled';

/** One request inside the simulator. Times are simulation milliseconds (relative to the node's origin). */
export interface SimJob {
  readonly seq: number;
  readonly arrivalMs: number;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  /** Tokens the request stops after: its output length, or the failure point of a failing one. */
  readonly stopAfterTokens: number;
  readonly failing: boolean;
  phase: 'waiting' | 'prefill' | 'decode' | 'done';
  /** Requests running on the replica right after this one was admitted (itself included). */
  batchAtAdmission: number | null;
  /** Prompt tokens still to prefill (uncached, at least the last prompt token). */
  prefillLeft: number;
  firstTokenMs: number | null;
  /** Replica decode progress when this job's decode began, and the progress at which it ends. */
  decodeStart: number;
  decodeTarget: number;
  completionTokens: number;
}

/** Called when a job ends (the node turns it into a RequestRecord). */
export type JobFinished = (job: SimJob, outcome: JobOutcome, atMs: number) => void;

/** Completion times closer than this (ms) to the current time are due now: guards float round-off. */
const DUE_TOLERANCE_MS = 1e-6;

/** vLLM V1's default max_num_batched_tokens for the OpenAI server on an 80 GB+ GPU. */
export const DEFAULT_MAX_BATCHED_TOKENS = 8192;

/** One prefill chunk of the step in flight. */
interface Chunk {
  readonly job: SimJob;
  readonly tokens: number;
}

/**
 * One model replica under continuous batching with chunked prefill, as vLLM V1 runs it. The
 * engine runs steps back to back while it has work. Each step has a token budget
 * (`maxBatchedTokens`) shared by everything it schedules: first one token for every decoding
 * request, then chunks of the prompts already being prefilled (oldest first), then new requests
 * from the FIFO wait queue while the budget lasts and fewer than `maxBatch` requests run. Many
 * short prompts are prefilled within one step; a long one spreads over several. A request whose
 * prefill completes in a step gets its first token at the end of that step; every decoding
 * request gains one token per step.
 *
 * A step's duration and power come from what it schedules (ReplicaCurves.engineStepS and
 * enginePowerPerGpuW of its sequences and tokens), never from requests that are only waiting.
 * All decoding requests advance one token per step, so the replica keeps one shared progress
 * counter (steps decoded) and each request's end is a fixed target on it.
 */
export class SimulatedReplica {
  private readonly waiting: SimJob[] = [];
  private waitingHead = 0;
  /** Admitted requests whose prompt is not fully prefilled yet, oldest first. */
  private prefilling: SimJob[] = [];
  private readonly decoding = new MinHeap<SimJob>((a, b) => a.decodeTarget < b.decodeTarget || (a.decodeTarget === b.decodeTarget && a.seq < b.seq));
  private progress = 0;
  private decodeCount = 0;
  private runningCount = 0;
  private power: number;
  private peakBatch = 0;
  private peakDecode = 0;
  /** The step in flight: its end, whether it decodes, its prefill chunks. */
  private stepEndMs = Infinity;
  private stepDecodes = false;
  private stepChunks: Chunk[] = [];

  constructor(
    readonly name: string,
    private readonly curves: ReplicaCurves,
    private readonly maxBatch: number,
    private readonly finished: JobFinished,
    private readonly maxBatchedTokens: number = DEFAULT_MAX_BATCHED_TOKENS,
  ) {
    this.power = curves.powerPerGpuW(0);
  }

  /** Requests admitted (prefilling or decoding): the engine's running batch (vLLM num_requests_running). */
  get running(): number {
    return this.runningCount;
  }

  /** Requests decoding (past their first token): the decode batch. */
  get decodingNow(): number {
    return this.decodeCount;
  }

  /** Requests waiting to be scheduled. */
  get queued(): number {
    let n = 0;
    for (let i = this.waitingHead; i < this.waiting.length; i++) if (this.waiting[i]?.phase === 'waiting') n++;
    return n;
  }

  /** Largest running batch seen so far. */
  get maxBatchSeen(): number {
    return this.peakBatch;
  }

  /** Largest decode batch seen so far. */
  get maxDecodeSeen(): number {
    return this.peakDecode;
  }

  /** Whether an engine step is in flight (the GPUs are working). */
  get busy(): boolean {
    return this.stepEndMs !== Infinity;
  }

  /** Power of each of this replica's GPUs now (before noise), watts. */
  get powerPerGpuW(): number {
    return this.power;
  }

  /** End of the step in flight, or Infinity when the engine is idle. */
  nextEventMs(): number {
    return this.stepEndMs;
  }

  /** A request arrives: it waits for the next step (see schedule). */
  enqueue(job: SimJob): void {
    this.waiting.push(job);
  }

  /** Finish the step in flight when it is due at `nowMs`. */
  processDue(nowMs: number): void {
    if (this.stepEndMs > nowMs + DUE_TOLERANCE_MS) return;
    this.finishStep(nowMs);
    this.compact();
  }

  /**
   * Start the next step when the engine is idle and has work. Called once everything due at
   * `nowMs` is processed, so that requests arriving together are scheduled together.
   */
  schedule(nowMs: number): void {
    if (!this.busy) this.startStep(nowMs);
  }

  /** Cancel a request wherever it is; no-op when it already ended. The step in flight completes. */
  cancel(job: SimJob, nowMs: number): void {
    switch (job.phase) {
      case 'done':
        return;
      case 'waiting':
        job.phase = 'done';
        this.finished(job, 'cancelled', nowMs);
        return;
      case 'prefill':
        this.end(job, 'cancelled', nowMs);
        break;
      case 'decode':
        job.completionTokens = Math.min(job.stopAfterTokens, 1 + this.progress - job.decodeStart);
        this.decodeCount--;
        this.end(job, 'cancelled', nowMs);
        break;
    }
    if (this.runningCount === 0) {
      // Nothing of the step in flight is still wanted: the engine drops it (schedule starts the next).
      this.stepEndMs = Infinity;
      this.stepChunks = [];
      this.stepDecodes = false;
      this.power = this.curves.powerPerGpuW(0);
    }
    this.compact();
  }

  private finishStep(nowMs: number): void {
    this.stepEndMs = Infinity;
    if (this.stepDecodes) {
      this.progress++;
      for (let top = this.peekDecoding(); top && top.decodeTarget <= this.progress; top = this.peekDecoding()) {
        this.decoding.pop();
        top.completionTokens = top.stopAfterTokens;
        this.decodeCount--;
        this.end(top, top.failing ? 'error' : 'ok', nowMs);
      }
    }
    const chunks = this.stepChunks;
    this.stepChunks = [];
    for (const { job, tokens } of chunks) {
      if (job.phase !== 'prefill') continue; // cancelled during the step
      job.prefillLeft -= tokens;
      if (job.prefillLeft <= 0) this.finishPrefill(job, nowMs);
    }
    if (this.prefilling.some((j) => j.phase !== 'prefill')) this.prefilling = this.prefilling.filter((j) => j.phase === 'prefill');
  }

  private finishPrefill(job: SimJob, nowMs: number): void {
    if (job.stopAfterTokens === 0) {
      this.end(job, job.failing ? 'error' : 'ok', nowMs);
      return;
    }
    job.firstTokenMs = nowMs;
    job.completionTokens = 1;
    if (job.stopAfterTokens === 1) {
      this.end(job, job.failing ? 'error' : 'ok', nowMs);
      return;
    }
    job.phase = 'decode';
    job.decodeStart = this.progress;
    job.decodeTarget = this.progress + (job.stopAfterTokens - 1);
    this.decoding.push(job);
    this.decodeCount++;
    this.peakDecode = Math.max(this.peakDecode, this.decodeCount);
  }

  /** Schedule the next step from what runs and waits now; idle power when there is nothing to do. */
  private startStep(nowMs: number): void {
    // maxBatch <= maxBatchedTokens (the node checks), so every decoding request fits.
    const decodes = this.decodeCount;
    let budget = this.maxBatchedTokens - decodes;
    const chunks: Chunk[] = [];
    let prefillTokens = 0;
    const take = (job: SimJob): void => {
      const tokens = Math.min(job.prefillLeft, budget);
      chunks.push({ job, tokens });
      prefillTokens += tokens;
      budget -= tokens;
    };
    for (const job of this.prefilling) {
      if (budget <= 0) break;
      if (job.phase === 'prefill') take(job);
    }
    while (budget > 0 && this.runningCount < this.maxBatch && this.waitingHead < this.waiting.length) {
      const job = this.waiting[this.waitingHead++] as SimJob;
      if (job.phase !== 'waiting') continue;
      this.runningCount++;
      this.peakBatch = Math.max(this.peakBatch, this.runningCount);
      job.phase = 'prefill';
      job.batchAtAdmission = this.runningCount;
      this.prefilling.push(job);
      take(job);
    }
    this.stepChunks = chunks;
    this.stepDecodes = decodes > 0;
    const seqs = decodes + chunks.length;
    if (seqs === 0) {
      this.stepEndMs = Infinity;
      this.power = this.curves.powerPerGpuW(0);
      return;
    }
    this.stepEndMs = nowMs + 1000 * this.curves.engineStepS(seqs, decodes + prefillTokens);
    this.power = this.curves.enginePowerPerGpuW(seqs, decodes + prefillTokens);
  }

  private end(job: SimJob, outcome: JobOutcome, nowMs: number): void {
    job.phase = 'done';
    this.runningCount--;
    this.finished(job, outcome, nowMs);
  }

  private peekDecoding(): SimJob | undefined {
    for (;;) {
      const top = this.decoding.peek();
      if (!top || top.phase === 'decode') return top;
      this.decoding.pop(); // cancelled while decoding
    }
  }

  /** Drop consumed queue prefixes so long runs do not grow the arrays. */
  private compact(): void {
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting.splice(0, this.waitingHead);
      this.waitingHead = 0;
    }
  }
}
