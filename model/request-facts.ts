import type { RequestRecord, ResolvedRequest } from './request-record.js';

/** A record with, once resolved, the GPU references it was sent with (see ResolvedRequest.gpusSent). */
type Stated = RequestRecord & Pick<ResolvedRequest, 'gpusSent'>;

/**
 * What a request was, field by field, with each field's wire name: everything a record states
 * except `source` (the path it came by). Two records under one request_id that agree on all of
 * these are one record sent twice; records that differ are two requests sharing an id.
 */
const FACTS: readonly (readonly [wire: string, same: (a: Stated, b: Stated) => boolean])[] = [
  ['task_id', (a, b) => a.taskId === b.taskId],
  ['attempt', (a, b) => a.attempt === b.attempt],
  ['model', (a, b) => a.model === b.model],
  ['tier', (a, b) => a.tier === b.tier],
  // The same GPUs, or the same references as sent: the index-to-UUID mapping may have changed
  // between the two sends (a GPU added, MIG reconfigured, another device order after a restart).
  ['gpus', (a, b) => sameGpus(a.gpus, b.gpus) || sameGpuRefs(a.gpusSent ?? a.gpus, b.gpusSent ?? b.gpus)],
  ['start', (a, b) => a.startMs === b.startMs],
  ['first_token', (a, b) => a.firstTokenMs === b.firstTokenMs],
  ['end', (a, b) => a.endMs === b.endMs],
  ['prompt_tokens', (a, b) => a.promptTokens === b.promptTokens],
  ['cached_tokens', (a, b) => a.cachedTokens === b.cachedTokens],
  ['completion_tokens', (a, b) => a.completionTokens === b.completionTokens],
  ['reasoning_tokens', (a, b) => a.reasoningTokens === b.reasoningTokens],
  ['batch_size', (a, b) => a.batchSize === b.batchSize],
  ['status', (a, b) => a.status === b.status],
  ['labels', (a, b) => sameLabels(a.labels, b.labels)],
  ['tokens_estimated', (a, b) => a.tokensEstimated === b.tokensEstimated],
  ['granularity', (a, b) => a.granularity === b.granularity],
  // Which OTLP span(s) a record is: two spans with equal facts under one id are still two calls.
  ['otlp_spans', (a, b) => a.otlpSpans?.client === b.otlpSpans?.client && a.otlpSpans?.server === b.otlpSpans?.server],
];

/** Wire names of the facts in which `kept` and `repeat` differ; empty when `repeat` restates `kept`. */
export function differingFacts(kept: Stated, repeat: Stated): string[] {
  const differing: string[] = [];
  for (const [wire, same] of FACTS) if (!same(kept, repeat)) differing.push(wire);
  return differing;
}

/**
 * `differing` less the facts that `sent` left to the node to fill in: a tier (the config's
 * model->tier map) and GPUs (the model's replica) it did not give. The config may have changed
 * since the first send, so a resend of the same bytes resolves to another tier or GPUs; what the
 * sender stated is all it can contradict.
 */
export function statedDifferences(differing: readonly string[], sent: Pick<RequestRecord, 'tier' | 'gpus'>): readonly string[] {
  if (sent.tier !== null && sent.gpus !== null) return differing;
  return differing.filter((fact) => !((fact === 'tier' && sent.tier === null) || (fact === 'gpus' && sent.gpus === null)));
}

/** The refusal of a record whose request_id is taken by a different one (ingest and request files say the same). */
export function conflictReason(differing: readonly string[], keptWhere: string): string {
  return `already used by ${keptWhere} with a different ${differing.join(', ')}: that record is kept and this one is not stored (give each request its own id)`;
}

/** A request's GPUs are a set: the order they are listed in carries no meaning. */
function sameGpus(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  const sortedB = [...b].sort();
  return [...a].sort().every((x, i) => x === sortedB[i]);
}

/** References compared as GPUs are looked up: case-insensitively, as a set. */
function sameGpuRefs(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return sameGpus(a.map((r) => r.toLowerCase()), b.map((r) => r.toLowerCase()));
}

/** Label order carries no meaning. */
function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
