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
  prefillDoneMs: number;
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

/**
 * One model replica under continuous batching, as vLLM runs it: up to `maxBatch` requests run at
 * once (the rest wait, FIFO); admitted prompts are prefilled one after another at the prefill
 * rate (cached prefix tokens cost nothing); every running request then gains one token per
 * decode step, and a step takes longer the more requests run (calibrated step time).
 *
 * All decoding requests advance at the same rate, so the replica keeps one shared progress
 * counter (tokens per request since the start) and each request's end is a fixed target on it:
 * batch changes only change the counter's speed, and the next completion is the smallest target.
 */
export class SimulatedReplica {
  private readonly waiting: SimJob[] = [];
  private waitingHead = 0;
  private readonly prefillQueue: SimJob[] = [];
  private prefillHead = 0;
  private readonly decoding = new MinHeap<SimJob>((a, b) => a.decodeTarget < b.decodeTarget || (a.decodeTarget === b.decodeTarget && a.seq < b.seq));
  private progress = 0;
  private decodeCount = 0;
  private runningCount = 0;
  private power: number;
  private tokensPerMs = 0;
  private peakBatch = 0;

  constructor(
    readonly name: string,
    private readonly curves: ReplicaCurves,
    private readonly maxBatch: number,
    private readonly finished: JobFinished,
  ) {
    this.power = curves.powerPerGpuW(0);
  }

  /** Requests admitted (prefilling or decoding): the engine's running batch. */
  get running(): number {
    return this.runningCount;
  }

  /** Requests waiting for a batch slot. */
  get queued(): number {
    let n = 0;
    for (let i = this.waitingHead; i < this.waiting.length; i++) if (this.waiting[i]?.phase === 'waiting') n++;
    return n;
  }

  /** Largest running batch seen so far. */
  get maxBatchSeen(): number {
    return this.peakBatch;
  }

  /** Power of each of this replica's GPUs now (before noise), watts. */
  get powerPerGpuW(): number {
    return this.power;
  }

  /** Move decode progress forward by `dtMs` at the current rate. */
  advance(dtMs: number): void {
    if (this.decodeCount > 0) this.progress += this.tokensPerMs * dtMs;
  }

  /** Time of the next prefill or decode completion, or Infinity when nothing runs. */
  nextEventMs(nowMs: number): number {
    let next = Infinity;
    const head = this.prefillQueue[this.prefillHead];
    if (head) next = head.prefillDoneMs;
    const top = this.peekDecoding();
    if (top && this.tokensPerMs > 0) next = Math.min(next, nowMs + Math.max(0, top.decodeTarget - this.progress) / this.tokensPerMs);
    return next;
  }

  /** A request arrives at `nowMs`: admit it or queue it. */
  enqueue(job: SimJob, nowMs: number): void {
    this.waiting.push(job);
    this.admit(nowMs);
  }

  /** Complete what is due at `nowMs` (prefills, then decodes), then fill freed batch slots. */
  processDue(nowMs: number): void {
    for (;;) {
      const head = this.prefillQueue[this.prefillHead];
      if (!head || head.prefillDoneMs > nowMs + DUE_TOLERANCE_MS) break;
      this.prefillHead++;
      this.finishPrefill(head, nowMs);
      this.startNextPrefill(nowMs);
    }
    for (;;) {
      const top = this.peekDecoding();
      if (!top) break;
      const dueMs = this.tokensPerMs > 0 ? nowMs + (top.decodeTarget - this.progress) / this.tokensPerMs : Infinity;
      if (dueMs > nowMs + DUE_TOLERANCE_MS) break;
      this.decoding.pop();
      this.progress = Math.max(this.progress, top.decodeTarget);
      top.completionTokens = top.stopAfterTokens;
      this.decodeCount--;
      this.end(top, top.failing ? 'error' : 'ok', nowMs);
    }
    this.admit(nowMs);
    this.compact();
  }

  /** Cancel a request wherever it is; no-op when it already ended. */
  cancel(job: SimJob, nowMs: number): void {
    switch (job.phase) {
      case 'done':
        return;
      case 'waiting':
        job.phase = 'done';
        this.finished(job, 'cancelled', nowMs);
        return;
      case 'prefill': {
        const wasHead = this.prefillQueue[this.prefillHead] === job;
        if (wasHead) this.prefillHead++;
        this.end(job, 'cancelled', nowMs);
        if (wasHead) this.startNextPrefill(nowMs);
        break;
      }
      case 'decode':
        job.completionTokens = Math.min(job.stopAfterTokens, 1 + Math.floor(this.progress - job.decodeStart + 1e-9));
        this.decodeCount--;
        this.end(job, 'cancelled', nowMs);
        break;
    }
    this.admit(nowMs);
    this.compact();
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
    this.updateRates();
  }

  private startNextPrefill(nowMs: number): void {
    // Cancelled jobs stay in the queue array until compaction; skip them.
    while (this.prefillHead < this.prefillQueue.length && this.prefillQueue[this.prefillHead]?.phase !== 'prefill') this.prefillHead++;
    const head = this.prefillQueue[this.prefillHead];
    if (!head) return;
    const uncached = head.promptTokens - head.cachedTokens;
    head.prefillDoneMs = nowMs + 1000 * (this.curves.stepTimeS(this.runningCount) + uncached / this.curves.prefillTokensPerS);
  }

  private admit(nowMs: number): void {
    while (this.runningCount < this.maxBatch && this.waitingHead < this.waiting.length) {
      const job = this.waiting[this.waitingHead++] as SimJob;
      if (job.phase !== 'waiting') continue;
      this.runningCount++;
      this.peakBatch = Math.max(this.peakBatch, this.runningCount);
      job.phase = 'prefill';
      job.batchAtAdmission = this.runningCount;
      const idle = this.prefillHead >= this.prefillQueue.length;
      this.prefillQueue.push(job);
      if (idle) this.startNextPrefill(nowMs);
    }
    this.updateRates();
  }

  private end(job: SimJob, outcome: JobOutcome, nowMs: number): void {
    job.phase = 'done';
    this.runningCount--;
    this.updateRates();
    this.finished(job, outcome, nowMs);
  }

  private updateRates(): void {
    this.power = this.curves.powerPerGpuW(this.runningCount);
    this.tokensPerMs = this.decodeCount > 0 ? 1 / (1000 * this.curves.stepTimeS(this.runningCount)) : 0;
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
    if (this.prefillHead > 1024 && this.prefillHead * 2 > this.prefillQueue.length) {
      this.prefillQueue.splice(0, this.prefillHead);
      this.prefillHead = 0;
    }
  }
}
