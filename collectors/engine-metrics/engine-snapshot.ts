import type { PromSample, PromText } from './prometheus-text.js';
import { counterKey, ENGINE_METRIC_NAMES, ENGINE_PREFIX, MODEL_LABEL, RANK_LABELS } from './engine-metric-names.js';
import type { EngineKind, EngineMetricNames } from './engine-metric-names.js';

/** What one scrape says about one served model. `null` means the engine does not export it. */
export interface ModelReading {
  readonly promptTokens: number | null;
  readonly generationTokens: number | null;
  readonly cachedTokens: number | null;
  /** Name of the counter `cachedTokens` came from (deltas are only taken within one name). */
  readonly cachedMetric: string | null;
  /** Prefix-cache hit-rate gauge (0..1), read only when no cached-token counter exists. */
  readonly cacheHitRate: number | null;
  readonly runningRequests: number | null;
}

/** One scrape of one engine, reduced to the figures tokenwatt turns into interval records. */
export interface EngineSnapshot {
  readonly engine: EngineKind;
  readonly atMs: number;
  readonly models: ReadonlyMap<string, ModelReading>;
  /** The name each logical metric was found under (absent: not exported by this engine version). */
  readonly resolved: Readonly<Partial<Record<keyof EngineMetricNames, string>>>;
  /**
   * Changes when the engine process restarts: `process_start_time_seconds`, else the prompt
   * counter's `_created` timestamp. Null when the engine exports neither.
   */
  readonly restartMarker: number | null;
}

/** Which engine serves this page: the prefix most of its samples carry, or null if neither. */
export function detectEngine(text: PromText): EngineKind | null {
  let vllm = 0;
  let sglang = 0;
  for (const sample of text.samples) {
    if (sample.name.startsWith(ENGINE_PREFIX.vllm)) vllm++;
    else if (sample.name.startsWith(ENGINE_PREFIX.sglang)) sglang++;
  }
  if (vllm === 0 && sglang === 0) return null;
  return vllm >= sglang ? 'vllm' : 'sglang';
}

type Kind = 'counter' | 'gauge';

/** Reduce a parsed page to per-model readings, resolving renamed metrics through the alias table. */
export function readEngineSnapshot(text: PromText, engine: EngineKind, atMs: number, fallbackModel: string): EngineSnapshot {
  const names = ENGINE_METRIC_NAMES[engine];
  const byName = indexSamples(text.samples);
  const resolved: Partial<Record<keyof EngineMetricNames, string>> = {};
  const read = (metric: keyof EngineMetricNames, kind: Kind): Map<string, number> | null => {
    for (const candidate of names[metric]) {
      const samples = byName.get(kind === 'counter' ? counterKey(candidate) : candidate);
      if (samples && samples.length > 0) {
        resolved[metric] = candidate;
        return sumPerModel(samples, fallbackModel);
      }
    }
    return null;
  };
  const prompt = read('promptTokens', 'counter');
  const generation = read('generationTokens', 'counter');
  const cached = read('cachedTokens', 'counter');
  const hitRate = cached === null ? read('cacheHitRate', 'gauge') : null;
  const running = read('runningRequests', 'gauge');

  const modelNames = new Set<string>();
  for (const m of [prompt, generation, cached, hitRate, running]) for (const key of m?.keys() ?? []) modelNames.add(key);
  const models = new Map<string, ModelReading>();
  for (const model of modelNames) {
    models.set(model, {
      promptTokens: prompt?.get(model) ?? null,
      generationTokens: generation?.get(model) ?? null,
      cachedTokens: cached?.get(model) ?? null,
      cachedMetric: cached?.has(model) ? (resolved.cachedTokens ?? null) : null,
      cacheHitRate: hitRate?.get(model) ?? null,
      runningRequests: running?.get(model) ?? null,
    });
  }
  return { engine, atMs, models, resolved, restartMarker: restartMarkerOf(byName, names) };
}

/** Samples by name; counters additionally under their name without `_total`. */
function indexSamples(samples: readonly PromSample[]): Map<string, PromSample[]> {
  const byName = new Map<string, PromSample[]>();
  const add = (key: string, sample: PromSample): void => {
    const list = byName.get(key);
    if (list) list.push(sample);
    else byName.set(key, [sample]);
  };
  for (const sample of samples) {
    if (!Number.isFinite(sample.value)) continue; // NaN/Inf say nothing about token counts
    add(sample.name, sample);
    const key = counterKey(sample.name);
    if (key !== sample.name) add(key, sample);
  }
  return byName;
}

/**
 * Per model: series that differ only in rank labels report the same work (largest taken); the
 * other series (data-parallel engines, cache sources) are distinct work and are summed.
 */
function sumPerModel(samples: readonly PromSample[], fallbackModel: string): Map<string, number> {
  const groups = new Map<string, { model: string; value: number }>();
  for (const sample of samples) {
    const model = sample.labels[MODEL_LABEL] || fallbackModel;
    const rest = Object.entries(sample.labels)
      .filter(([name]) => name !== MODEL_LABEL && !RANK_LABELS.includes(name))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const key = JSON.stringify([model, rest]);
    const group = groups.get(key);
    if (!group) groups.set(key, { model, value: sample.value });
    else group.value = Math.max(group.value, sample.value);
  }
  const perModel = new Map<string, number>();
  for (const { model, value } of groups.values()) perModel.set(model, (perModel.get(model) ?? 0) + value);
  return perModel;
}

function restartMarkerOf(byName: Map<string, PromSample[]>, names: EngineMetricNames): number | null {
  const maxOf = (key: string): number | null => {
    const samples = byName.get(key);
    if (!samples || samples.length === 0) return null;
    return Math.max(...samples.map((s) => s.value));
  };
  const processStart = maxOf('process_start_time_seconds');
  if (processStart !== null) return processStart;
  for (const candidate of names.promptTokens) {
    const created = maxOf(`${counterKey(candidate)}_created`);
    if (created !== null) return created;
  }
  return null;
}
