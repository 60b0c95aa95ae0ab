/**
 * Rank queries on a sorted array, usually without a search: [from, to) is split into equal buckets
 * and a table holds, per bucket, how many values lie before it, which bounds the rank of any query
 * in that bucket from both sides; a binary search finishes within those bounds (a few values when
 * the values are spread out). Exact whatever the data: bounds that rounding or a query outside
 * [from, to) would get wrong are widened first, and clustered values only cost that search.
 */
export class SortedLookup {
  private readonly scale: number;
  private readonly lastBucket: number;

  /**
   * `values` sorted ascending, mostly inside [from, to). `before` (at least 2 entries) is filled
   * with the table: before[b] is the number of values < the start of bucket b, and the last entry
   * is all of them.
   */
  constructor(
    private readonly values: Float64Array,
    private readonly from: number,
    to: number,
    private readonly before: Int32Array,
  ) {
    const count = before.length - 1;
    const width = to > from ? (to - from) / count : 1;
    this.scale = 1 / width;
    this.lastBucket = count - 1;
    let below = 0;
    for (let b = 0; b < count; b += 1) {
      const bucketStart = from + b * width;
      while (below < values.length && (values[below] as number) < bucketStart) below += 1;
      this.before[b] = below;
    }
    this.before[count] = values.length;
  }

  private bucketOf(t: number): number {
    const b = Math.floor((t - this.from) * this.scale);
    return b > 0 ? (b < this.lastBucket ? b : this.lastBucket) : 0;
  }

  /** Number of values <= t. */
  countAtMost(t: number): number {
    const { values } = this;
    const count = values.length;
    // Queries past either end are common (spans clipped to a period pile up on its bounds).
    if (count === 0 || (values[count - 1] as number) <= t) return count;
    if ((values[0] as number) > t) return 0;
    const b = this.bucketOf(t);
    let lo = this.before[b] as number;
    let hi = this.before[b + 1] as number;
    if (lo > 0 && (values[lo - 1] as number) > t) lo = 0;
    if (hi < count && (values[hi] as number) <= t) hi = count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((values[mid] as number) <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Number of values < t. */
  countBelow(t: number): number {
    const { values } = this;
    const count = values.length;
    if (count === 0 || (values[count - 1] as number) < t) return count;
    if ((values[0] as number) >= t) return 0;
    const b = this.bucketOf(t);
    let lo = this.before[b] as number;
    let hi = this.before[b + 1] as number;
    if (lo > 0 && (values[lo - 1] as number) >= t) lo = 0;
    if (hi < count && (values[hi] as number) < t) hi = count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((values[mid] as number) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
