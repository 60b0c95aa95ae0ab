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
 * with no attempt number or attempt 1 begins a new step; attempt k > 1 retries an earlier request of
 * the task with attempt k - 1 that no retry has superseded yet. Several steps may be in flight at
 * once (agent fan-out), so among those candidates the retry takes the one that ended last at or
 * before its own start (a retry follows the attempt it retries); when none had ended by then (a
 * hedged retry), the one that started last. A retry of one step so never supersedes an ok request
 * of another. Only when there is no candidate at all (attempt numbers missing or skipped) does the
 * retry supersede the request just before it in that order.
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

/** The facts of a request that its task's figures need. */
export type TaskRequest = Pick<
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
  // Per attempt number, the earlier requests (in order) that no retry has superseded yet.
  const open = new Map<number, TaskRequest[]>();
  let previous: TaskRequest | null = null;
  for (const r of ordered) {
    const attempt = r.attempt ?? 1;
    if (attempt > 1) {
      const candidates = open.get(attempt - 1) ?? [];
      let at = -1; // the latest to end by r's start; otherwise the latest to start (the last in order)
      for (let i = candidates.length - 1; i >= 0; i -= 1) {
        const c = candidates[i] as TaskRequest;
        if (c.endMs <= r.startMs && (at === -1 || (candidates[at] as TaskRequest).endMs > r.startMs || c.endMs > (candidates[at] as TaskRequest).endMs)) at = i;
        else if (at === -1) at = i;
      }
      const match = at === -1 ? previous : (candidates.splice(at, 1)[0] as TaskRequest);
      if (match !== null && !superseded.has(match.requestId)) {
        superseded.add(match.requestId);
        const list = open.get(match.attempt ?? 1);
        const i = list?.indexOf(match) ?? -1;
        if (list && i !== -1) list.splice(i, 1);
      }
    }
    const list = open.get(attempt);
    if (list) list.push(r);
    else open.set(attempt, [r]);
    previous = r;
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

/** A task's figures: the sums over its requests and what its last request decides. */
export interface TaskFigures {
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
export function aggregateTasks(results: readonly TaskRequest[]): TaskSummary[] {
  return [...groupByTask(results)].sort(([x], [y]) => compareStrings(x, y)).map(([taskId, requests]) => taskSummary(taskId, requests));
}

/**
 * The summary of ONE task from all its requests, in the order {@link aggregateTasks} takes them
 * (the order given): for a caller that groups the requests itself.
 */
export function taskSummary(taskId: string, requests: readonly TaskRequest[]): TaskSummary {
  return summaryOf(taskId, figuresOf(requests));
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

/** One task's change in one settlement: the ledger increment and the whole task before and after. */
export interface TaskUpdate {
  readonly delta: TaskDelta;
  /** The whole task: `prior` and `added` together. */
  readonly summary: TaskSummary;
  /** The task before this settlement (null when `prior` held none of its requests). */
  readonly previous: TaskSummary | null;
}

/** The summary of a task with these figures. */
export function summaryOf(taskId: string, f: TaskFigures): TaskSummary {
  return {
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
  };
}

/**
 * Per-task changes from the requests finalized in one settlement (`added`), given the task's
 * requests finalized before (`prior`, any order; requests of tasks not in `added` are ignored).
 *
 * The delta is what the ledger adds to the task row so that the row equals {@link aggregateTasks}
 * over all the task's requests however they are split across settlements: the sums (requests,
 * joules, tokens) of `added`; waste as the whole task's waste minus the waste `prior` had (a retry
 * can turn an earlier ok attempt into waste); success, tier, times and labels of the whole task.
 *
 * `stored`: the rows of tasks whose earlier requests retention has deleted (`prior` holds none of
 * them). The row stands for those requests, so the task goes on from it rather than starting anew
 * (it is not counted a second time). Its attempts are gone, so a retry of one of them cannot turn
 * it into waste: the row's waste is kept as it was.
 */
export function taskUpdates(
  added: readonly TaskRequest[],
  prior: readonly TaskRequest[],
  labelValue: LabelValueFn,
  stored: ReadonlyMap<string, TaskSummary> = NO_TASKS,
): TaskUpdate[] {
  const out: TaskUpdate[] = [];
  const priorByTask = groupByTask(prior);
  for (const [taskId, requests] of [...groupByTask(added)].sort(([x], [y]) => compareStrings(x, y))) {
    const before = priorByTask.get(taskId) ?? [];
    const all = before.length > 0 ? [...before, ...requests] : requests;
    const kept = before.length === 0 ? stored.get(taskId) : undefined;
    const whole = kept === undefined ? figuresOf(all) : afterStored(kept, figuresOf(requests));
    const previous = before.length > 0 ? figuresOf(before) : (kept ?? null);
    let addedJ = 0;
    let addedTokens = 0;
    for (const r of requests) {
      addedJ += r.joules;
      addedTokens += r.completionTokens;
    }
    out.push({
      delta: {
        taskId,
        requests: requests.length,
        joules: addedJ,
        wasteJ: whole.wasteJ - (previous?.wasteJ ?? 0),
        completionTokens: addedTokens,
        firstStartMs: epochMs(whole.firstStartMs),
        lastEndMs: epochMs(whole.lastEndMs),
        lastStatus: whole.lastStatus,
        tier: whole.tier,
        team: labelValue('team', labelOf(all, 'team')),
        feature: labelValue('feature', labelOf(all, 'feature')),
      },
      summary: summaryOf(taskId, whole),
      previous: previous === null ? null : summaryOf(taskId, previous),
    });
  }
  return out;
}

const NO_TASKS: ReadonlyMap<string, TaskSummary> = new Map();

/** A stored task (its requests gone) with requests added: the sums, and the rest as the ledger's upsert keeps it. */
function afterStored(kept: TaskSummary, added: TaskFigures): TaskFigures {
  const newer = added.lastEndMs >= kept.lastEndMs;
  return {
    requests: kept.requests + added.requests,
    joules: kept.joules + added.joules,
    wasteJ: kept.wasteJ + added.wasteJ,
    completionTokens: kept.completionTokens + added.completionTokens,
    firstStartMs: Math.min(kept.firstStartMs, added.firstStartMs),
    lastEndMs: Math.max(kept.lastEndMs, added.lastEndMs),
    lastStatus: newer ? added.lastStatus : kept.lastStatus,
    tier: newer ? added.tier : kept.tier,
  };
}

/** The ledger increments of {@link taskUpdates}; with no `prior`, the tasks as seen in `results` alone. */
export function taskDeltas(results: readonly TaskRequest[], labelValue: LabelValueFn, prior: readonly TaskRequest[] = []): TaskDelta[] {
  return taskUpdates(results, prior, labelValue).map((u) => u.delta);
}

/**
 * Joules per successful task: ALL task energy (waste and failed tasks included) divided by the
 * number of tasks that succeeded. Null when none succeeded.
 */
export function jPerSuccessfulTask(tasks: readonly { readonly joules: number; readonly succeeded: boolean }[]): number | null {
  let total = 0;
  let succeeded = 0;
  for (const t of tasks) {
    total += t.joules;
    if (t.succeeded) succeeded += 1;
  }
  return succeeded > 0 ? total / succeeded : null;
}
