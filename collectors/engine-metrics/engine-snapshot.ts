import type { PromSample, PromText } from './prometheus-text.js';
import { MAX_PARSE_ERRORS } from './prometheus-text.js';
import { COUNTER_METRICS, counterKey, ENGINE_METRIC_NAMES, ENGINE_PREFIX, MODEL_LABEL, RANK_LABELS, SAME_ENGINE_LABELS } from './engine-metric-names.js';
import type { CounterMetric, EngineKind, EngineMetricNames } from './engine-metric-names.js';

/**
 * What one scrape says about one served model, per model. `null` means the engine does not export
 * it. The token figures are for reading only: interval deltas are taken per series
 * ({@link EngineSnapshot.counters}), never on these sums.
 */
export interface ModelReading {
  /** Sums over the model's series of the resolved counter name (ranks of one replica counted once). */
  readonly promptTokens: number | null;
  readonly generationTokens: number | null;
  readonly cachedTokens: number | null;
  /** Name of the counter `cachedTokens` came from. */
  readonly cachedMetric: string | null;
  /**
   * Prefix-cache hit-rate gauge (0..1), read only when no cached-token counter exists: the mean over
   * ranks and data-parallel engines of the values within 0..1 (a ratio is averaged, never summed).
   */
  readonly cacheHitRate: number | null;
  /** Hit-rate values outside 0..1: left out of the mean and reported by name. */
  readonly cacheHitRateOutOfRange: readonly number[];
  /**
   * Running requests per engine: the batch a running request is in, averaged over requests
   * (sum of r² / sum of r over data-parallel engines, ranks of one replica counted once). Each
   * data-parallel engine runs its own batch, so their sum would overstate the batch size.
   */
  readonly runningRequests: number | null;
}

/** One counter series of one scrape. Ranks of one replica are merged into one series (largest value). */
export interface CounterSeries {
  /** Counter name without `_total`, then the labels except rank labels, sorted: the identity deltas are taken on. */
  readonly key: string;
  readonly metric: CounterMetric;
  /** The candidate name from the alias table that this series was found under. */
  readonly name: string;
  readonly model: string;
  /**
   * The engine this series belongs to: its model and its labels except rank labels and
   * {@link SAME_ENGINE_LABELS}. A restart seen on one counter of an origin resets all its counters.
   */
  readonly origin: string;
  readonly value: number;
  /** The series' `_created` sample (prometheus_client's creation time, seconds); null when not exported. */
  readonly created: number | null;
}

/**
 * One series of a request-time histogram (ranks of one replica merged, largest taken): the total
 * seconds and number of the requests it has counted, both growing when a request finishes.
 */
export interface RequestTimeSeries {
  /** The histogram's name, then its labels except rank labels and `le`, sorted. */
  readonly key: string;
  readonly model: string;
  readonly sum: number;
  readonly count: number;
}

/** One scrape of one engine, reduced to the figures tokenwatt turns into interval records. */
export interface EngineSnapshot {
  readonly engine: EngineKind;
  /** Wall clock at the scrape (epoch ms): stamps the records' bounds. */
  readonly atMs: number;
  /** Monotonic clock at the scrape (ms): measures the interval's length, immune to wall-clock steps. */
  readonly monoMs: number;
  readonly models: ReadonlyMap<string, ModelReading>;
  /** Every series of every candidate name of the token counters (deprecated twins included). */
  readonly counters: readonly CounterSeries[];
  /** Series of the first request-time histogram on the page ({@link EngineMetricNames.requestTime}). */
  readonly requestTime: readonly RequestTimeSeries[];
  /** The name each logical metric was found under (absent: not exported by this engine version). */
  readonly resolved: Readonly<Partial<Record<keyof EngineMetricNames, string>>>;
  /**
   * `process_start_time_seconds` when the page has exactly one: changes when the engine process
   * restarts. Null otherwise (prometheus_client in multiprocess mode exports none; several would be
   * several processes). Per-series `_created` samples are in {@link CounterSeries.created}.
   */
  readonly restartMarker: number | null;
  /**
   * Counter names (without `_total`) of the page's unreadable sample lines; `*` when a line's name
   * was unreadable too, or more lines were unreadable than the parser lists. A series absent from
   * such a page may have been hidden, not absent.
   */
  readonly unreadable: ReadonlySet<string>;
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

/**
 * Reduce a parsed page to per-series counters and per-model readings, resolving renamed metrics
 * through the alias table. `monoMs` is the monotonic clock at the scrape (defaults to `atMs`).
 */
export function readEngineSnapshot(text: PromText, engine: EngineKind, atMs: number, fallbackModel: string, monoMs: number = atMs): EngineSnapshot {
  const names = ENGINE_METRIC_NAMES[engine];
  const byName = indexSamples(text.samples);
  const resolved: Partial<Record<keyof EngineMetricNames, string>> = {};
  const samplesOf = (candidate: string, kind: Kind): readonly PromSample[] => byName.get(kind === 'counter' ? counterKey(candidate) : candidate) ?? [];
  const resolve = (metric: keyof EngineMetricNames, kind: Kind): readonly PromSample[] | null => {
    for (const candidate of names[metric]) {
      const samples = samplesOf(candidate, kind);
      if (samples.length > 0) {
        resolved[metric] = candidate;
        return samples;
      }
    }
    return null;
  };

  const counters: CounterSeries[] = [];
  for (const metric of COUNTER_METRICS) {
    for (const candidate of names[metric]) {
      // One at a time: a page can hold more series than a call takes arguments.
      for (const series of counterSeries(metric, candidate, samplesOf(candidate, 'counter'), byName, fallbackModel)) counters.push(series);
    }
  }
  const prompt = resolve('promptTokens', 'counter');
  const generation = resolve('generationTokens', 'counter');
  const cached = resolve('cachedTokens', 'counter');
  const hitRate = cached === null ? resolve('cacheHitRate', 'gauge') : null;
  const running = resolve('runningRequests', 'gauge');
  const requestTime = requestTimeSeries(names.requestTime, byName, fallbackModel, resolved);

  const sums = (metric: CounterMetric): Map<string, number> => {
    const perModel = new Map<string, number>();
    for (const s of counters) if (s.metric === metric && s.name === resolved[metric]) perModel.set(s.model, (perModel.get(s.model) ?? 0) + s.value);
    return perModel;
  };
  const promptSums = sums('promptTokens');
  const generationSums = sums('generationTokens');
  const cachedSums = sums('cachedTokens');
  const hitRates = hitRate === null ? null : ratioPerModel(hitRate, fallbackModel);
  const batches = running === null ? null : batchPerModel(running, fallbackModel);

  const modelNames = new Set<string>();
  for (const samples of [prompt, generation, cached, hitRate, running]) for (const s of samples ?? []) modelNames.add(modelOf(s, fallbackModel));
  const models = new Map<string, ModelReading>();
  for (const model of modelNames) {
    const rates = hitRates?.get(model);
    models.set(model, {
      promptTokens: promptSums.get(model) ?? null,
      generationTokens: generationSums.get(model) ?? null,
      cachedTokens: cachedSums.get(model) ?? null,
      cachedMetric: cachedSums.has(model) ? (resolved.cachedTokens ?? null) : null,
      cacheHitRate: rates?.mean ?? null,
      cacheHitRateOutOfRange: rates?.outOfRange ?? [],
      runningRequests: batches?.get(model) ?? null,
    });
  }
  return { engine, atMs, monoMs, models, counters, requestTime, resolved, restartMarker: restartMarkerOf(byName), unreadable: unreadableNames(text) };
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

function modelOf(sample: PromSample, fallbackModel: string): string {
  return sample.labels[MODEL_LABEL] || fallbackModel;
}

/** `name{a="x",b="y"}` over the labels not in `leaveOut`, sorted by label name. */
function seriesId(name: string, labels: Readonly<Record<string, string>>, leaveOut: readonly string[]): string {
  const parts = Object.keys(labels)
    .filter((label) => !leaveOut.includes(label))
    .sort()
    .map((label) => `${label}=${JSON.stringify(labels[label])}`);
  return `${name}{${parts.join(',')}}`;
}

/**
 * The series of one counter name, ranks of one replica merged (they count the same requests; the
 * largest value is taken, which also survives one rank's series being absent from a scrape).
 */
function counterSeries(
  metric: CounterMetric,
  candidate: string,
  samples: readonly PromSample[],
  byName: Map<string, PromSample[]>,
  fallbackModel: string,
): CounterSeries[] {
  const family = counterKey(candidate);
  const created = new Map<string, number>();
  for (const s of byName.get(`${family}_created`) ?? []) {
    const key = seriesId(family, s.labels, RANK_LABELS);
    created.set(key, Math.max(created.get(key) ?? Number.NEGATIVE_INFINITY, s.value));
  }
  const series = new Map<string, CounterSeries>();
  for (const s of samples) {
    // A counter never goes below zero: a negative value is as unreadable as NaN (the series is missing).
    if (s.value < 0) continue;
    const key = seriesId(family, s.labels, RANK_LABELS);
    const known = series.get(key);
    if (known && known.value >= s.value) continue;
    const model = modelOf(s, fallbackModel);
    const origin = seriesId(model, s.labels, [MODEL_LABEL, ...RANK_LABELS, ...SAME_ENGINE_LABELS]);
    series.set(key, { key, metric, name: candidate, model, origin, value: s.value, created: created.get(key) ?? null });
  }
  return [...series.values()];
}

/**
 * The series of the first candidate histogram with a `_sum` on the page, each with its `_count`
 * (or, lacking one, its `+Inf` bucket). A series without a count is left out: its sum alone cannot
 * bound what one interval's finished requests contribute.
 */
function requestTimeSeries(
  candidates: readonly string[],
  byName: Map<string, PromSample[]>,
  fallbackModel: string,
  resolved: Partial<Record<keyof EngineMetricNames, string>>,
): RequestTimeSeries[] {
  for (const name of candidates) {
    const sums = byName.get(`${name}_sum`) ?? [];
    if (sums.length === 0) continue;
    resolved.requestTime = name;
    const counts = new Map<string, number>();
    for (const s of byName.get(`${name}_count`) ?? []) {
      const key = seriesId(name, s.labels, RANK_LABELS);
      counts.set(key, Math.max(counts.get(key) ?? 0, s.value));
    }
    for (const s of byName.get(`${name}_bucket`) ?? []) {
      const key = seriesId(name, s.labels, [...RANK_LABELS, 'le']);
      if (s.labels.le === '+Inf' && !counts.has(key)) counts.set(key, s.value);
    }
    const series = new Map<string, RequestTimeSeries>();
    for (const s of sums) {
      const key = seriesId(name, s.labels, RANK_LABELS);
      const count = counts.get(key);
      const known = series.get(key);
      if (count === undefined || s.value < 0 || (known && known.sum >= s.value)) continue;
      series.set(key, { key, model: modelOf(s, fallbackModel), sum: s.value, count });
    }
    return [...series.values()];
  }
  return [];
}

/**
 * Mean per model of a ratio gauge over every series within 0..1; the others are listed. vLLM v0
 * reports -1 when prefix caching is disabled or unsupported ("-1 means not supported or disabled",
 * vllm/core/block/interfaces.py): no hits, so it counts as 0.
 */
function ratioPerModel(samples: readonly PromSample[], fallbackModel: string): Map<string, { mean: number | null; outOfRange: number[] }> {
  const values = new Map<string, { inRange: number[]; outOfRange: number[] }>();
  for (const s of samples) {
    const model = modelOf(s, fallbackModel);
    const entry = values.get(model) ?? { inRange: [], outOfRange: [] };
    values.set(model, entry);
    const value = s.value === -1 ? 0 : s.value;
    (value >= 0 && value <= 1 ? entry.inRange : entry.outOfRange).push(value);
  }
  const out = new Map<string, { mean: number | null; outOfRange: number[] }>();
  for (const [model, { inRange, outOfRange }] of values) {
    out.set(model, { mean: inRange.length > 0 ? inRange.reduce((a, b) => a + b, 0) / inRange.length : null, outOfRange });
  }
  return out;
}

/**
 * Batch size per model from a running-requests gauge: ranks of one replica report the same
 * requests (largest taken); across data-parallel engines, the batch the average running request
 * is in (sum of r² / sum of r), so an idle engine does not halve the busy one's batch.
 */
function batchPerModel(samples: readonly PromSample[], fallbackModel: string): Map<string, number> {
  const perEngine = new Map<string, { model: string; running: number }>();
  for (const s of samples) {
    if (s.value < 0) continue;
    const key = seriesId('', s.labels, RANK_LABELS);
    const known = perEngine.get(key);
    if (!known || s.value > known.running) perEngine.set(key, { model: modelOf(s, fallbackModel), running: s.value });
  }
  const sums = new Map<string, { r: number; r2: number }>();
  for (const { model, running } of perEngine.values()) {
    const sum = sums.get(model) ?? { r: 0, r2: 0 };
    sums.set(model, { r: sum.r + running, r2: sum.r2 + running * running });
  }
  return new Map([...sums].map(([model, { r, r2 }]) => [model, r > 0 ? r2 / r : 0]));
}

function restartMarkerOf(byName: Map<string, PromSample[]>): number | null {
  const samples = byName.get('process_start_time_seconds') ?? [];
  return samples.length === 1 ? (samples[0]?.value ?? null) : null;
}

function unreadableNames(text: PromText): Set<string> {
  const names = new Set<string>();
  for (const e of text.errors) if (e.name !== undefined) names.add(e.name === null ? '*' : counterKey(e.name));
  if (text.errors.length >= MAX_PARSE_ERRORS) names.add('*');
  return names;
}
