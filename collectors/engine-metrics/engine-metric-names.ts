/**
 * The metric names vLLM and SGLang really export, by what tokenwatt reads from them, with the
 * renames across versions. Each list is in order of preference: the first name present wins.
 *
 * Sources (read from the engines' own code and docs):
 * - vLLM v1 `vllm/v1/metrics/loggers.py`: counters `vllm:prompt_tokens`, `vllm:generation_tokens`
 *   (exposed with the `_total` suffix prometheus_client adds), `vllm:prefix_cache_hits` /
 *   `vllm:prefix_cache_queries` (tokens; 0.9+), their deprecated predecessors
 *   `vllm:gpu_prefix_cache_hits` / `vllm:gpu_prefix_cache_queries` (0.8, hidden from 0.10),
 *   `vllm:prompt_tokens_cached` (cached prompt tokens, local + external; newest), gauge
 *   `vllm:num_requests_running`.
 * - vLLM v0 `vllm/engine/metrics.py`: the same token counters and gauge, and the gauge
 *   `vllm:gpu_prefix_cache_hit_rate` (block hit rate, no token counter).
 * - SGLang `python/sglang/srt/metrics/collector.py` and docs/references/production_metrics.md:
 *   counters `sglang:prompt_tokens_total`, `sglang:generation_tokens_total`,
 *   `sglang:cached_tokens_total` (newer; label `cache_source` = device/host/storage_*), gauges
 *   `sglang:num_running_reqs` and `sglang:cache_hit_rate`.
 * - Request-time histograms: vLLM `vllm:request_inference_time_seconds` ("time spent in RUNNING
 *   phase for request") and `vllm:e2e_request_latency_seconds` (docs/design/metrics.md, v0 and v1);
 *   SGLang `sglang:e2e_request_latency_seconds` (production_metrics.md). SGLang has no
 *   running-time histogram.
 *
 * A counter's `_total` suffix is optional when matching (see {@link counterKey}): text written
 * by other clients or an OpenMetrics endpoint may expose the family name without it.
 */
export type EngineKind = 'vllm' | 'sglang';

/** The counters tokenwatt reads (token counts; everything else it reads is a gauge). */
export type CounterMetric = 'promptTokens' | 'generationTokens' | 'cachedTokens';
export const COUNTER_METRICS: readonly CounterMetric[] = ['promptTokens', 'generationTokens', 'cachedTokens'];

export interface EngineMetricNames {
  readonly promptTokens: readonly string[];
  readonly generationTokens: readonly string[];
  /** Counters of prompt tokens served from the prefix cache. */
  readonly cachedTokens: readonly string[];
  /** Fallback when no cached-token counter exists: a hit-rate gauge (0..1), so cached tokens are estimated. */
  readonly cacheHitRate: readonly string[];
  readonly runningRequests: readonly string[];
  /**
   * Histograms of the time each request spent, whose `_sum` grows by that time when the request
   * finishes: their growth over an interval divided by its length is the time-averaged number of
   * requests (Little's law), what batch_size is taken from. In order of preference: vLLM's time in
   * RUNNING (`vllm:request_inference_time_seconds`, v0 0.6+ and v1), then end-to-end latency
   * (vLLM, SGLang), which also counts queueing and so runs high when requests wait.
   */
  readonly requestTime: readonly string[];
}

export const ENGINE_METRIC_NAMES: Readonly<Record<EngineKind, EngineMetricNames>> = {
  vllm: {
    promptTokens: ['vllm:prompt_tokens_total'],
    generationTokens: ['vllm:generation_tokens_total'],
    cachedTokens: ['vllm:prompt_tokens_cached_total', 'vllm:prefix_cache_hits_total', 'vllm:gpu_prefix_cache_hits_total'],
    cacheHitRate: ['vllm:gpu_prefix_cache_hit_rate'],
    runningRequests: ['vllm:num_requests_running'],
    requestTime: ['vllm:request_inference_time_seconds', 'vllm:e2e_request_latency_seconds'],
  },
  sglang: {
    promptTokens: ['sglang:prompt_tokens_total'],
    generationTokens: ['sglang:generation_tokens_total'],
    cachedTokens: ['sglang:cached_tokens_total'],
    cacheHitRate: ['sglang:cache_hit_rate'],
    runningRequests: ['sglang:num_running_reqs'],
    requestTime: ['sglang:e2e_request_latency_seconds'],
  },
};

/** Metric-name prefix of each engine, used to recognise which one serves a /metrics page. */
export const ENGINE_PREFIX: Readonly<Record<EngineKind, string>> = { vllm: 'vllm:', sglang: 'sglang:' };

/** The label both engines put the served model name in. */
export const MODEL_LABEL = 'model_name';

/**
 * Labels that distinguish ranks of ONE model replica (tensor/pipeline/expert parallel). Series that
 * differ only in these report the same requests, so they are not summed (the largest is taken);
 * every other distinguishing label (vLLM `engine` and SGLang `dp_rank` for data parallel, SGLang
 * `cache_source`) is summed.
 */
export const RANK_LABELS: readonly string[] = ['tp_rank', 'pp_rank', 'moe_ep_rank', 'attn_tp_rank'];

/**
 * Labels that split one engine's counter by kind, never by engine: SGLang `cache_source`
 * (device/host/storage_*) and `engine_type` (unified/prefill/decode, one value per server). Series
 * that differ only in these (and in rank labels) come from the same engine process, so a restart
 * seen on one of them is a restart of all (see {@link CounterSeries.origin}). Any other label (vLLM
 * `engine`, SGLang `dp_rank`, custom labels) may name a different engine.
 */
export const SAME_ENGINE_LABELS: readonly string[] = ['cache_source', 'engine_type'];

/** Key under which a counter is matched: its name without a trailing `_total`. */
export function counterKey(name: string): string {
  return name.endsWith('_total') ? name.slice(0, -'_total'.length) : name;
}
