/**
 * Histogram bucket bounds in a 1-2.5-5 series per decade from `min` to `max` (inclusive):
 * fine enough to read a J/request median within a factor of 2, few enough (3 per decade) to
 * keep each histogram at about 20 series per label set.
 */
export function energyBuckets(min: number, max: number): number[] {
  if (!(min > 0) || !(max >= min)) throw new RangeError(`energyBuckets: need 0 < min <= max, got ${min}, ${max}`);
  const bounds: number[] = [];
  for (let decade = 10 ** Math.floor(Math.log10(min)); decade <= max; decade *= 10) {
    for (const step of [1, 2.5, 5]) {
      // Round away the binary noise of decade * step (0.1 * 2.5 = 0.25000000000000006).
      const bound = Number((decade * step).toPrecision(6));
      if (bound >= min * (1 - 1e-9) && bound <= max * (1 + 1e-9)) bounds.push(bound);
    }
  }
  return bounds;
}

/** One request: from a short completion on a small model (~0.1 J) to a long reasoning run on a large one (~100 kJ). */
export const REQUEST_ENERGY_BUCKETS: readonly number[] = energyBuckets(0.1, 100_000);
/** One task: a single request up to a long multi-step agent run (1 MJ ~ 0.28 kWh). */
export const TASK_ENERGY_BUCKETS: readonly number[] = energyBuckets(1, 1_000_000);
