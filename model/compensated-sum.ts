/**
 * Prefix sums carried as two doubles (the running sum and the rounding error of each addition, by
 * Knuth's two-sum), so that the sum of a run of terms is the difference of two entries accurate to
 * about one rounding of that run itself, however large the total before it. A plain prefix
 * difference loses a small run to the rounding of the large total it is taken from.
 */
export interface CompensatedPrefix {
  /** high[k] + low[k] = terms[0] + ... + terms[k - 1] (k = 0 .. n). */
  readonly high: Float64Array;
  readonly low: Float64Array;
}

/** Prefix sums of the first `n` terms, written into `high` and `low` (n + 1 entries each). */
export function compensatedPrefixSums(terms: Float64Array, n: number, high: Float64Array, low: Float64Array): CompensatedPrefix {
  high[0] = 0;
  low[0] = 0;
  let sum = 0;
  let error = 0;
  for (let k = 0; k < n; k += 1) {
    const term = terms[k] as number;
    const next = sum + term;
    const termPart = next - sum;
    error += sum - (next - termPart) + (term - termPart);
    sum = next;
    high[k + 1] = sum;
    low[k + 1] = error;
  }
  return { high, low };
}

/** terms[from] + ... + terms[to - 1] (from <= to). */
export function rangeSum(prefix: CompensatedPrefix, from: number, to: number): number {
  const { high, low } = prefix;
  return (high[to] as number) - (high[from] as number) + ((low[to] as number) - (low[from] as number));
}

/**
 * Add `value` to slot k of a compensated accumulator array pair (high + low), so that many values of
 * both signs added to one slot keep the exact sum to about one rounding of the result.
 */
export function addCompensated(high: Float64Array, low: Float64Array, k: number, value: number): void {
  const sum = high[k] as number;
  const next = sum + value;
  const valuePart = next - sum;
  low[k] = (low[k] as number) + (sum - (next - valuePart) + (value - valuePart));
  high[k] = next;
}
