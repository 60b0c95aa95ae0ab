/**
 * A minimal Prometheus HTTP API client for the end-to-end test, and an independent implementation
 * of rate() (Prometheus 2.x extrapolatedRate) used to recompute recording rules from raw samples.
 */

export interface Series {
  readonly labels: Record<string, string>;
  /** [epoch ms, value] pairs. */
  readonly samples: readonly (readonly [number, number])[];
}

interface ApiResponse {
  status: string;
  error?: string;
  data: { resultType: string; result: { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[] };
}

export class PrometheusApi {
  constructor(private readonly baseUrl: string) {}

  private async get(path: string, params: Record<string, string>): Promise<ApiResponse> {
    const url = `${this.baseUrl}${path}?${new URLSearchParams(params).toString()}`;
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    const body = (await response.json()) as ApiResponse;
    if (body.status !== 'success') throw new Error(`${url}: ${body.error ?? response.status}`);
    return body;
  }

  /** Instant query at `timeMs`: one value per series. */
  async instant(expr: string, timeMs: number): Promise<{ labels: Record<string, string>; value: number }[]> {
    const body = await this.get('/api/v1/query', { query: expr, time: (timeMs / 1000).toFixed(3) });
    if (body.data.resultType !== 'vector') throw new Error(`${expr}: expected a vector, got ${body.data.resultType}`);
    return body.data.result.map((r) => ({ labels: r.metric, value: Number(r.value?.[1]) }));
  }

  /** Raw samples of a range selector (e.g. `metric{a="b"}[5m]`) as the engine sees them at `timeMs`. */
  async raw(selector: string, timeMs: number): Promise<Series[]> {
    const body = await this.get('/api/v1/query', { query: selector, time: (timeMs / 1000).toFixed(3) });
    if (body.data.resultType !== 'matrix') throw new Error(`${selector}: expected a matrix, got ${body.data.resultType}`);
    return body.data.result.map((r) => ({
      labels: r.metric,
      samples: (r.values ?? []).map(([t, v]) => [Math.round(t * 1000), Number(v)] as const),
    }));
  }

  async json<T>(path: string): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
    return (await response.json()) as T;
  }
}

/**
 * rate() of one counter series over (rangeStartMs, rangeEndMs], the way Prometheus 2.x computes it:
 * counter resets added back, extrapolated towards the range boundaries by at most half a sample
 * interval (or to where the counter would have been zero), divided by the range in seconds.
 * undefined when fewer than two samples (Prometheus drops the series).
 */
export function extrapolatedRate(samples: readonly (readonly [number, number])[], rangeStartMs: number, rangeEndMs: number): number | undefined {
  if (samples.length < 2) return undefined;
  const first = samples[0] as readonly [number, number];
  const last = samples[samples.length - 1] as readonly [number, number];
  let result = last[1] - first[1];
  let previous = 0;
  for (const [, v] of samples) {
    if (v < previous) result += previous;
    previous = v;
  }
  let durationToStart = (first[0] - rangeStartMs) / 1000;
  const durationToEnd = (rangeEndMs - last[0]) / 1000;
  const sampledInterval = (last[0] - first[0]) / 1000;
  const averageInterval = sampledInterval / (samples.length - 1);
  if (result > 0 && first[1] >= 0) {
    const durationToZero = sampledInterval * (first[1] / result);
    if (durationToZero < durationToStart) durationToStart = durationToZero;
  }
  const threshold = averageInterval * 1.1;
  let extrapolateTo = sampledInterval;
  extrapolateTo += durationToStart < threshold ? durationToStart : averageInterval / 2;
  extrapolateTo += durationToEnd < threshold ? durationToEnd : averageInterval / 2;
  return (result * (extrapolateTo / sampledInterval)) / ((rangeEndMs - rangeStartMs) / 1000);
}

/** sum by (labels) (rate(selector[windowS])) at `timeMs`, computed here from raw samples. */
export async function sumRateBy(api: PrometheusApi, selector: string, windowS: number, by: readonly string[], timeMs: number): Promise<Map<string, number>> {
  const series = await api.raw(`${selector}[${windowS}s]`, timeMs);
  const sums = new Map<string, number>();
  for (const s of series) {
    const rate = extrapolatedRate(s.samples, timeMs - windowS * 1000, timeMs);
    if (rate === undefined) continue;
    const key = groupKey(s.labels, by);
    sums.set(key, (sums.get(key) ?? 0) + rate);
  }
  return sums;
}

/** A stable key of the `by` labels of a series (missing labels count as ""). */
export function groupKey(labels: Record<string, string>, by: readonly string[]): string {
  return JSON.stringify(by.map((l) => labels[l] ?? ''));
}
