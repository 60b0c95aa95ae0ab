/**
 * Buckets for the two dimensions that move J/token the most after the model tier
 * (DESIGN.md "Why it exists"): the batch size at the moment of the call (~4x) and the
 * prefix-cache state (up to ~10x). Bucket names are metric label values and report keys,
 * so they are fixed here once; exporters iterate {@link BATCH_BUCKETS} and {@link CACHE_BUCKETS}.
 */

/**
 * Inclusive upper bound of each batch bucket but the last, in order. Powers of four after 1:
 * the J/token curve of a decode-bound engine flattens roughly logarithmically in batch size,
 * so equal ratios make buckets of similar effect.
 */
export const BATCH_BUCKET_UPPER_BOUNDS = [1, 4, 16, 64, 256] as const;

/** Every batch bucket name, smallest first: 1, 2-4, 5-16, 17-64, 65-256, 257+. */
export const BATCH_BUCKETS = ['1', '2-4', '5-16', '17-64', '65-256', '257+'] as const;
export type BatchBucket = (typeof BATCH_BUCKETS)[number];

/**
 * Batch bucket of a batch size. Engine-reported sizes are integers; an observed size is a
 * time-weighted mean (e.g. 4.4), which is rounded to the nearest integer first, so 4.4 is in
 * "2-4" and 4.5 in "5-16". Sizes below 1 (and non-finite ones) count as 1: a request always
 * runs with at least itself.
 */
export function batchBucket(size: number): BatchBucket {
  const n = Number.isFinite(size) ? Math.max(1, Math.round(size)) : 1;
  for (let i = 0; i < BATCH_BUCKET_UPPER_BOUNDS.length; i += 1) {
    if (n <= (BATCH_BUCKET_UPPER_BOUNDS[i] as number)) return BATCH_BUCKETS[i] as BatchBucket;
  }
  return '257+';
}

/** A request with cached/prompt below this is a cache miss. */
export const CACHE_MISS_BELOW = 0.1;
/** A request with cached/prompt at or above this is a cache hit. */
export const CACHE_HIT_AT_LEAST = 0.9;

/** Every cache bucket name. */
export const CACHE_BUCKETS = ['miss', 'partial', 'hit'] as const;
export type CacheBucket = (typeof CACHE_BUCKETS)[number];

/**
 * Prefix-cache state of a request by the share of its prompt served from the cache:
 * miss below {@link CACHE_MISS_BELOW} (and for an empty prompt, which had nothing to hit),
 * hit at or above {@link CACHE_HIT_AT_LEAST}, partial in between.
 */
export function cacheBucket(cachedTokens: number, promptTokens: number): CacheBucket {
  if (!(promptTokens > 0) || !(cachedTokens > 0)) return 'miss';
  const ratio = Math.min(cachedTokens, promptTokens) / promptTokens;
  if (ratio < CACHE_MISS_BELOW) return 'miss';
  if (ratio >= CACHE_HIT_AT_LEAST) return 'hit';
  return 'partial';
}
