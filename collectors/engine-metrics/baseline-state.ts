import { z } from 'zod';
import { SOURCE_STATE_PREFIX } from '../request-sink.js';
import { COUNTER_METRICS, ENGINE_METRIC_NAMES } from './engine-metric-names.js';
import type { CounterMetric } from './engine-metric-names.js';
import type { EngineBaseline, ModelState, TrackedSeries } from './interval-records.js';

/**
 * The engine-metrics scraper's baseline as the ledger keeps it (`agent_state`, one key per
 * engine), written in the transaction of the interval records it produced, so that a restart,
 * even after kill -9, resumes counting where the committed records end.
 *
 * JSON, tagged with {@link BASELINE_FORMAT} and {@link BASELINE_VERSION}; a value that is not
 * exactly this shape (corrupt, foreign, another version, another engine or URL) is refused with
 * the reason, never half read. Monotonic-clock readings are not kept (they mean nothing in
 * another process): each interval stores how long before the baseline's scrape it opened, and
 * {@link restoreBaseline} places the baseline on the new process's monotonic clock by its wall
 * time. A scrape deferred for judgement (EngineBaseline.deferred) is not kept: its records are not
 * stored either, and the next run counts its interval from the stored baseline.
 */
export const BASELINE_FORMAT = 'tokenwatt.engine-metrics.baseline';
export const BASELINE_VERSION = 1;

/** The `agent_state` key of one engine's baseline. */
export function baselineKey(engineId: string): string {
  return `${SOURCE_STATE_PREFIX}engine-metrics:baseline:${engineId}`;
}

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const metric = z.enum(COUNTER_METRICS as [CounterMetric, ...CounterMetric[]]);

const storedSchema = z.strictObject({
  format: z.literal(BASELINE_FORMAT),
  version: z.literal(BASELINE_VERSION),
  /** The target's URL when saved: a baseline of another endpoint is not this engine's. */
  url: z.string(),
  engine: z.enum(['vllm', 'sglang']),
  atMs: finite,
  restartMarker: finite.nullable(),
  unreadable: z.array(z.string()),
  series: z.array(
    z.strictObject({
      key: z.string().min(1),
      metric,
      name: z.string().min(1),
      model: z.string().min(1),
      origin: z.string(),
      value: finite,
      created: finite.nullable(),
      seenMs: finite,
      status: z.enum(['seen', 'stale', 'restarted', 'given-up']),
    }),
  ),
  models: z.array(
    z.strictObject({
      model: z.string().min(1),
      sinceMs: finite,
      /** Monotonic ms between the interval's start and the baseline's scrape. */
      sinceMonoAgoMs: finite,
      running: finite.nullable(),
      held: z.number().int().min(0),
      credit: finite.min(0),
      /** Optional: absent in values stored before batch sizes were taken from request-time histograms. */
      requestTime: z.strictObject({ name: z.string().min(1), series: z.record(z.string(), z.strictObject({ sum: finite, count: finite })) }).nullable().optional(),
      pending: z.record(z.string(), finite),
      used: z.strictObject({ promptTokens: z.string().optional(), generationTokens: z.string().optional(), cachedTokens: z.string().optional() }),
      /** Optional: written only when true, so that a value without it reads as before. */
      glitch: z.literal(true).optional(),
    }),
  ),
});

type StoredBaseline = z.output<typeof storedSchema>;

/** The value to store for `baseline`, the baseline of the target at `url`. */
export function serializeBaseline(baseline: EngineBaseline, url: string): string {
  const stored: StoredBaseline = {
    format: BASELINE_FORMAT,
    version: BASELINE_VERSION,
    url,
    engine: baseline.engine,
    atMs: baseline.atMs,
    restartMarker: baseline.restartMarker,
    unreadable: [...baseline.unreadable],
    series: [...baseline.series.values()].map((t) => ({ ...t.series, seenMs: t.seenMs, status: t.status })),
    models: [...baseline.models].map(([model, m]) => ({
      model,
      sinceMs: m.sinceMs,
      sinceMonoAgoMs: baseline.monoMs - m.sinceMono,
      running: m.running,
      held: m.held,
      credit: m.credit,
      requestTime: m.requestTime,
      pending: { ...m.pending },
      used: { ...m.used },
      ...(m.glitch ? { glitch: true as const } : {}),
    })),
  };
  return JSON.stringify(stored);
}

export type RestoredBaseline = { readonly ok: true; readonly baseline: EngineBaseline } | { readonly ok: false; readonly reason: string };

/**
 * Read back a stored baseline for the target at `url`. `wallNow` and `monoNow` are the two clocks
 * now: the baseline is placed on the monotonic clock as long ago as the wall clock says (never in
 * the future: a wall clock that went back makes the downtime count as zero), so the next interval
 * runs from the stored scrape to the next one. Never throws: an unusable value gives the reason.
 */
export function restoreBaseline(value: string, url: string, wallNow: number, monoNow: number): RestoredBaseline {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch (err) {
    return { ok: false, reason: `not JSON (${err instanceof Error ? err.message : String(err)})` };
  }
  const header = z.object({ format: z.unknown(), version: z.unknown() }).safeParse(json);
  if (!header.success || header.data.format !== BASELINE_FORMAT) return { ok: false, reason: `not a ${BASELINE_FORMAT} value` };
  if (header.data.version !== BASELINE_VERSION) return { ok: false, reason: `version ${JSON.stringify(header.data.version)}, this tokenwatt reads version ${BASELINE_VERSION}` };
  const parsed = storedSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}` };
  }
  const stored = parsed.data;
  if (stored.url !== url) return { ok: false, reason: `saved for ${stored.url}, not ${url}` };
  const names = ENGINE_METRIC_NAMES[stored.engine];
  const series = new Map<string, TrackedSeries>();
  for (const { seenMs, status, ...s } of stored.series) {
    if (!names[s.metric].includes(s.name)) return { ok: false, reason: `series ${s.key}: ${s.name} is not a ${stored.engine} ${s.metric} counter` };
    if (series.has(s.key)) return { ok: false, reason: `series ${s.key} appears twice` };
    series.set(s.key, { series: s, seenMs, status });
  }
  const monoMs = monoNow - Math.max(0, wallNow - stored.atMs);
  const models = new Map<string, ModelState>();
  for (const { model, sinceMonoAgoMs, ...m } of stored.models) {
    if (models.has(model)) return { ok: false, reason: `model ${model} appears twice` };
    const used: Partial<Record<CounterMetric, string>> = {};
    for (const k of COUNTER_METRICS) {
      const name = m.used[k];
      if (name !== undefined) used[k] = name;
    }
    models.set(model, { sinceMs: m.sinceMs, sinceMono: monoMs - sinceMonoAgoMs, running: m.running, held: m.held, credit: m.credit, requestTime: m.requestTime ?? null, pending: m.pending, used, glitch: m.glitch === true });
  }
  return {
    ok: true,
    baseline: { engine: stored.engine, atMs: stored.atMs, monoMs, restartMarker: stored.restartMarker, processes: stored.restartMarker === null ? [] : [stored.restartMarker], foreignPages: 0, unreadable: new Set(stored.unreadable), series, models, deferred: [] },
  };
}
