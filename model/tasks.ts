import type { TaskDelta } from '../agent/ledger-types.js';
import type { RequestResult } from './request-result.js';
import { epochMs, joules, type EpochMs, type Joules } from './units.js';
import { compareStrings } from './compare.js';

/**
 * Tasks: the requests sharing a task_id (agent steps, retries). DESIGN.md's headline is joules per
 * SUCCESSFUL task, counting every retry, error and cancellation, with the waste share beside it.
 * Requests without a task_id are not tasks.
 *
 * Steps and attempts. Requests of a task are ordered by start time (then attempt, end, id). A request
 * with no attempt number or attempt 1 begins a new step; attempt 2, 3, ... retries the current step.
 * Every request of a step but its last is superseded.
 *
 * Success. A task succeeded when the request that ends last (ties: higher attempt, later start,
 * greater request_id) has status ok: "the latest request wins".
 *
 * Waste. The energy of requests that ended in error or were cancelled, plus that of ok requests
 * superseded by a later attempt of the same step. Each request counts once.
 */

/** Per-task figures. */
export interface TaskSummary {
  readonly taskId: string;
  readonly requests: number;
  readonly succeeded: boolean;
  /** Status of the request that decides success (the last to end). */
  readonly lastStatus: string;
  /** All energy of the task, waste included. */
  readonly joules: Joules;
  readonly wasteJ: Joules;
  /** wasteJ / joules (0 when the task has no energy). */
  readonly wasteShare: number;
  readonly completionTokens: number;
  readonly firstStartMs: EpochMs;
  readonly lastEndMs: EpochMs;
  /** The tier that spent most of the task's energy (ties: alphabetical). */
  readonly tier: string;
}

type TaskRequest = Pick<
  RequestResult,
  'requestId' | 'taskId' | 'attempt' | 'tier' | 'status' | 'startMs' | 'endMs' | 'joules' | 'completionTokens' | 'labels'
>;

function groupByTask<T extends TaskRequest>(results: readonly T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const r of results) {
    if (r.taskId === null) continue;
    const list = groups.get(r.taskId);
    if (list) list.push(r);
    else groups.set(r.taskId, [r]);
  }
  return groups;
}

/** Which requests of ONE task are superseded attempts (see the module comment). */
export function supersededRequests(requests: readonly TaskRequest[]): Set<string> {
  const ordered = [...requests].sort(
    (x, y) =>
      x.startMs - y.startMs || (x.attempt ?? 1) - (y.attempt ?? 1) || x.endMs - y.endMs || compareStrings(x.requestId, y.requestId),
  );
  const superseded = new Set<string>();
  let previousOfStep: TaskRequest | null = null;
  for (const r of ordered) {
    const retry = (r.attempt ?? 1) > 1;
    if (retry && previousOfStep !== null) superseded.add(previousOfStep.requestId);
    previousOfStep = r;
  }
  return superseded;
}

/** The request that decides a task's success: the last to end. */
export function lastRequestOf<T extends TaskRequest>(requests: readonly T[]): T | undefined {
  let last: T | undefined;
  for (const r of requests) {
    if (
      last === undefined ||
      r.endMs > last.endMs ||
      (r.endMs === last.endMs &&
        ((r.attempt ?? 1) > (last.attempt ?? 1) ||
          ((r.attempt ?? 1) === (last.attempt ?? 1) &&
            (r.startMs > last.startMs || (r.startMs === last.startMs && r.requestId > last.requestId)))))
    ) {
      last = r;
    }
  }
  return last;
}

function dominantTier(requests: readonly TaskRequest[]): string {
  const byTier = new Map<string, number>();
  for (const r of requests) byTier.set(r.tier, (byTier.get(r.tier) ?? 0) + r.joules);
  let best = '';
  let bestJ = -Infinity;
  for (const [tier, j] of [...byTier].sort(([x], [y]) => compareStrings(x, y))) {
    if (j > bestJ) {
      best = tier;
      bestJ = j;
    }
  }
  return best;
}

interface TaskFigures {
  readonly requests: number;
  readonly joules: number;
  readonly wasteJ: number;
  readonly completionTokens: number;
  readonly firstStartMs: number;
  readonly lastEndMs: number;
  readonly lastStatus: string;
  readonly tier: string;
}

function figuresOf(requests: readonly TaskRequest[]): TaskFigures {
  const superseded = supersededRequests(requests);
  let total = 0;
  let waste = 0;
  let completionTokens = 0;
  let firstStartMs = Infinity;
  let lastEndMs = -Infinity;
  for (const r of requests) {
    total += r.joules;
    if (r.status !== 'ok' || superseded.has(r.requestId)) waste += r.joules;
    completionTokens += r.completionTokens;
    firstStartMs = Math.min(firstStartMs, r.startMs);
    lastEndMs = Math.max(lastEndMs, r.endMs);
  }
  return {
    requests: requests.length,
    joules: total,
    wasteJ: waste,
    completionTokens,
    firstStartMs,
    lastEndMs,
    lastStatus: lastRequestOf(requests)?.status ?? 'ok',
    tier: dominantTier(requests),
  };
}

/** One summary per task_id among `results`, sorted by task_id. */
export function aggregateTasks(results: readonly RequestResult[]): TaskSummary[] {
  const out: TaskSummary[] = [];
  for (const [taskId, requests] of [...groupByTask(results)].sort(([x], [y]) => compareStrings(x, y))) {
    const f = figuresOf(requests);
    out.push({
      taskId,
      requests: f.requests,
      succeeded: f.lastStatus === 'ok',
      lastStatus: f.lastStatus,
      joules: joules(f.joules),
      wasteJ: joules(f.wasteJ),
      wasteShare: f.joules > 0 ? f.wasteJ / f.joules : 0,
      completionTokens: f.completionTokens,
      firstStartMs: epochMs(f.firstStartMs),
      lastEndMs: epochMs(f.lastEndMs),
      tier: f.tier,
    });
  }
  return out;
}

/** Maps a user label to its exported (capped) value; `value` is undefined when the label is absent. */
export type LabelValueFn = (name: string, value: string | undefined) => string;

/** First value of a label among requests in start order (a task's team does not change mid-task). */
function labelOf(requests: readonly TaskRequest[], name: string): string | undefined {
  let chosen: TaskRequest | undefined;
  for (const r of requests) {
    if (r.labels[name] === undefined) continue;
    if (chosen === undefined || r.startMs < chosen.startMs || (r.startMs === chosen.startMs && r.requestId < chosen.requestId)) chosen = r;
  }
  return chosen?.labels[name];
}

/**
 * Per-task increments from the requests finalized in one settlement, for the ledger's task table.
 * Waste here sees only these requests: an attempt finalized in an earlier settlement and superseded
 * by one in this settlement is not re-classified (the ledger does not re-send it). Where exact waste
 * across settlements matters, run {@link aggregateTasks} over all of a task's results.
 */
export function taskDeltas(results: readonly RequestResult[], labelValue: LabelValueFn): TaskDelta[] {
  const out: TaskDelta[] = [];
  for (const [taskId, requests] of [...groupByTask(results)].sort(([x], [y]) => compareStrings(x, y))) {
    const f = figuresOf(requests);
    out.push({
      taskId,
      requests: f.requests,
      joules: f.joules,
      wasteJ: f.wasteJ,
      completionTokens: f.completionTokens,
      firstStartMs: epochMs(f.firstStartMs),
      lastEndMs: epochMs(f.lastEndMs),
      lastStatus: f.lastStatus,
      tier: f.tier,
      team: labelValue('team', labelOf(requests, 'team')),
      feature: labelValue('feature', labelOf(requests, 'feature')),
    });
  }
  return out;
}

/**
 * Joules per successful task: ALL task energy (waste and failed tasks included) divided by the
 * number of tasks that succeeded. Null when none succeeded.
 */
export function jPerSuccessfulTask(tasks: readonly Pick<TaskSummary, 'joules' | 'succeeded'>[]): number | null {
  let total = 0;
  let succeeded = 0;
  for (const t of tasks) {
    total += t.joules;
    if (t.succeeded) succeeded += 1;
  }
  return succeeded > 0 ? total / succeeded : null;
}
