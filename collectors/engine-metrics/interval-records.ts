import { createHash } from 'node:crypto';
import { MAX_TOKENS } from '../../model/request-record.js';
import type { RequestRecordWire } from '../../model/request-record.js';
import { COUNTER_METRICS, counterKey, ENGINE_METRIC_NAMES } from './engine-metric-names.js';
import type { CounterMetric, EngineKind } from './engine-metric-names.js';
import type { CounterSeries, EngineSnapshot, ModelReading, RequestTimeSeries } from './engine-snapshot.js';

/** Something worth telling the operator about one interval (logged by the scraper). */
export type IntervalNote =
  /**
   * The page came from another engine process than the baseline's, one that cannot be its restart
   * (see {@link foreignProcess}): several processes answer the target's URL (a Service or load
   * balancer over several pods). Nothing was counted for the page. `rebased`: the baseline's
   * process served none of the last {@link MAX_FOREIGN_PAGES} pages, so counting goes on from this
   * page's process, from its values now (nothing counted for the switch).
   */
  | { readonly kind: 'several-processes'; readonly marker: number; readonly baselineMarker: number; readonly reason: string; readonly rebased: boolean }
  /** Counters of the model restarted; `reason` names the series and what cannot be known. */
  | { readonly kind: 'counter-reset'; readonly model: string; readonly reason: string }
  /**
   * A counter went down with no restart behind it (see {@link COUNTER_DIP_RESTART_SHARE}): nothing is
   * counted for it. `held`: a small dip, counted on from the higher value; else (its `_created` the
   * same) from the lower one.
   */
  | { readonly kind: 'counter-dip'; readonly model: string; readonly series: string; readonly from: number; readonly to: number; readonly held: boolean }
  /**
   * A counter read below its last value by more than a dip, with no restart marker or `_created` to
   * say why: the page waits for the next scrapes to judge it (see {@link judgeScrape}); its
   * records come with a later page's.
   */
  | { readonly kind: 'counter-drop-held'; readonly model: string; readonly series: string; readonly from: number; readonly to: number }
  /**
   * A bad reading `to`, read as `from` (see {@link judgeScrape}): a drop that a later scrape climbed
   * back from (`next` at or above `from`), or a rise (`to` above `from`) that the next reading fell
   * back from (`next`), or either one that no later reading could judge (`next` null: shutdown, or
   * no page of the look-ahead with the series' line). Nothing is counted for it, and the records of the
   * interval it ends and the one it starts are flagged tokens_estimated.
   */
  | { readonly kind: 'counter-glitch'; readonly model: string; readonly series: string; readonly from: number; readonly to: number; readonly next: number | null }
  /** The model has no series of this counter: no record; the other counters' tokens are not recorded. */
  | { readonly kind: 'missing-counter'; readonly model: string; readonly metric: 'promptTokens' | 'generationTokens'; readonly dropped: TokenCounts }
  /**
   * Series seen before are absent from this page (unreadable line, partial page). `held`: the record
   * waits so that the next good scrape covers both intervals; else it was made without them and
   * their tokens since `sinceMs` are counted when they come back.
   */
  | { readonly kind: 'series-missing'; readonly model: string; readonly series: readonly string[]; readonly held: boolean; readonly sinceMs: number }
  /** A series missing from earlier scrapes is back: its increase since `sinceMs` is in this record. */
  | { readonly kind: 'series-returned'; readonly model: string; readonly series: string; readonly sinceMs: number }
  /** A series first seen after a page with unreadable lines of its name: what it counted before is unknowable. */
  | { readonly kind: 'series-unknown-start'; readonly model: string; readonly series: string }
  /** The counter a metric is read from changed name (engine upgrade, deprecated twin). */
  | { readonly kind: 'counter-renamed'; readonly model: string; readonly metric: CounterMetric; readonly from: string; readonly to: string }
  /** Cache hits beyond the interval's prompt tokens: capped, the excess carried to the next interval. */
  | { readonly kind: 'cached-capped'; readonly model: string; readonly cached: number; readonly prompt: number; readonly carried: number }
  /**
   * Cache hits carried from the previous interval that found no prompt tokens in this one: dropped.
   * The carry covers the lag between a request's scheduling (hits counted) and its first token
   * (prompt tokens counted), never more than one interval; hits of requests aborted before their
   * first token, or counted again after a preemption, never get prompt tokens.
   */
  | { readonly kind: 'cached-credit-expired'; readonly model: string; readonly tokens: number }
  /**
   * Where the record's batch_size came from: `request-time` (Δ time in RUNNING / Δt), `e2e-latency`
   * (Δ end-to-end latency / Δt, queueing included), `running-gauge` (mean of the gauge at the
   * interval's two ends: no request finished in it), or `none` (batch_size left unset).
   */
  | { readonly kind: 'batch-size'; readonly model: string; readonly source: BatchSizeSource; readonly metric: string | null }
  /**
   * Series given up on: absent for {@link MAX_HELD_SCRAPES} scrapes, a record was made without them.
   * Later intervals no longer wait for them; if they come back, they count from their last value.
   */
  | { readonly kind: 'series-given-up'; readonly model: string; readonly series: readonly string[] }
  /** A restart voided cache hits carried from earlier intervals (their prefills died with the engine). */
  | { readonly kind: 'cached-credit-dropped'; readonly model: string; readonly tokens: number }
  | { readonly kind: 'cached-estimated'; readonly model: string }
  /** Hit-rate gauge values outside 0..1, left out of the estimate. */
  | { readonly kind: 'hit-rate-out-of-range'; readonly model: string; readonly metric: string; readonly values: readonly number[] }
  /**
   * The wall clock moved `wallMs` while the monotonic clock moved `monoMs`. `held`: no time can be
   * measured (the clocks are one injected clock that went back), the records wait for the next scrape.
   */
  | { readonly kind: 'clock-step'; readonly wallMs: number; readonly monoMs: number; readonly held: boolean }
  /**
   * The interval counted more tokens than one record may hold ({@link MAX_TOKENS} per field; after
   * a long downtime of the agent): it is recorded as `pieces` records of the same interval whose
   * token counts add up exactly.
   */
  | { readonly kind: 'interval-split'; readonly model: string; readonly pieces: number; readonly startMs: number; readonly endMs: number };

export type BatchSizeSource = 'request-time' | 'e2e-latency' | 'running-gauge' | 'none';

export interface TokenCounts {
  readonly prompt: number;
  readonly generation: number;
  readonly cached: number;
}

export interface IntervalRecordOptions {
  /** Stable name of the scraped engine (request ids are built from it). */
  readonly engineId: string;
  readonly tier?: string;
  readonly gpus?: readonly (string | number)[];
}

/** What is kept of one counter series between scrapes. */
export interface TrackedSeries {
  /** As last seen: its value is where the next increase counts from. */
  readonly series: CounterSeries;
  readonly seenMs: number;
  /**
   * seen: its value is good; absent, it is owed (its tokens since then are not recorded yet).
   * stale: it was absent when its metric moved to another counter name; its next increase would
   * overlap tokens recorded under that name, so it only sets a new starting value.
   * restarted: its engine restarted while it was absent; it counts from zero when it is back.
   * given-up: absent while a record was made without it (gone for good, e.g. fewer data-parallel
   * engines after a restart without a marker): nothing waits for it; back, it counts from its value.
   */
  readonly status: 'seen' | 'stale' | 'restarted' | 'given-up';
}

/** Per model: the interval not yet recorded. */
export interface ModelState {
  readonly sinceMs: number;
  readonly sinceMono: number;
  /** Running-requests gauge at `sinceMs`. */
  readonly running: number | null;
  /** Scrapes this interval has waited for missing series. */
  readonly held: number;
  /** Cache hits counted before their prompt tokens: added to the next interval's cached tokens only. */
  readonly credit: number;
  /** The request-time histogram's series of this model at `sinceMs` (null: none on that page). */
  readonly requestTime: RequestTimeState | null;
  /** Increase per counter name since `sinceMs`, not yet recorded. */
  readonly pending: Readonly<Record<string, number>>;
  /** The counter name each metric's last record used. */
  readonly used: Readonly<Partial<Record<CounterMetric, string>>>;
  /**
   * A counter reading at the start of or within this interval was a glitch read as the value before
   * it: when the tokens it hid were served is not known, so the record is flagged tokens_estimated.
   */
  readonly glitch: boolean;
}

/** A request-time histogram at an interval's start: its name, and per series key its sum and count. */
export interface RequestTimeState {
  readonly name: string;
  readonly series: Readonly<Record<string, { readonly sum: number; readonly count: number }>>;
}

/**
 * What the scraper keeps of one engine between scrapes: the last good value of every series ever
 * seen (a series missing from one page keeps its value), and per model the interval not yet
 * recorded. Immutable: {@link nextInterval} returns the next one.
 */
export interface EngineBaseline {
  readonly engine: EngineKind;
  readonly atMs: number;
  readonly monoMs: number;
  readonly restartMarker: number | null;
  /**
   * Restart markers (process start times) of the pages read from this target, oldest first, at
   * most {@link MAX_KNOWN_PROCESSES}: a page with one of them is from an earlier process, never a
   * restart. Not stored: a restored baseline knows its own marker only.
   */
  readonly processes: readonly number[];
  /** Pages in a row skipped as from another process than the baseline's (see {@link foreignProcess}). */
  readonly foreignPages: number;
  readonly unreadable: ReadonlySet<string>;
  readonly series: ReadonlyMap<string, TrackedSeries>;
  readonly models: ReadonlyMap<string, ModelState>;
  /**
   * Scrapes not yet counted, in order: a counter on the first dropped or rose steeply, and later
   * scrapes judge whether that was a bad reading (see {@link judgeScrape}); the others wait behind
   * it. Not stored: the baseline stored is the one before them, which the records stored match.
   */
  readonly deferred: readonly HeldScrape[];
}

export interface IntervalResult {
  readonly records: RequestRecordWire[];
  readonly notes: IntervalNote[];
  readonly baseline: EngineBaseline;
}

/**
 * Scrapes one model's record waits for missing series before it is made without them: a one-off
 * unreadable line costs nothing, and records stay well within the agent's settlement lateness.
 */
export const MAX_HELD_SCRAPES = 2;

/** Wall and monotonic clocks may disagree by this much (NTP slewing) before it counts as a step. */
export const CLOCK_TOLERANCE_MS = 1000;

/** The first scrape of an engine: every series' current value is where counting starts. */
export function baselineOf(snapshot: EngineSnapshot): EngineBaseline {
  const series = new Map<string, TrackedSeries>();
  for (const s of snapshot.counters) series.set(s.key, { series: s, seenMs: snapshot.atMs, status: 'seen' });
  const models = new Map<string, ModelState>();
  for (const model of modelsOf(snapshot)) {
    const used: Partial<Record<CounterMetric, string>> = {};
    for (const metric of COUNTER_METRICS) {
      const name = ENGINE_METRIC_NAMES[snapshot.engine][metric].find((n) => snapshot.counters.some((s) => s.model === model && s.name === n));
      if (name !== undefined) used[metric] = name;
    }
    models.set(model, openInterval(snapshot, 0, used, model, snapshot));
  }
  return {
    engine: snapshot.engine,
    atMs: snapshot.atMs,
    monoMs: snapshot.monoMs,
    restartMarker: snapshot.restartMarker,
    processes: withProcess([], snapshot.restartMarker),
    foreignPages: 0,
    unreadable: snapshot.unreadable,
    series,
    models,
    deferred: [],
  };
}

/**
 * Turn two scrapes of one engine into interval-level request records, one per served model that
 * did work in between (pure: same snapshots, same records). The scraper keeps state through
 * {@link nextInterval}; this is its one-step form, with no later scrape to judge `curr` by (as
 * {@link flushDeferred}): a counter of `curr` that dropped, or rose by more than a dip's share, is
 * read as a glitch (see {@link judgeScrape}).
 */
export function intervalRecords(prev: EngineSnapshot, curr: EngineSnapshot, options: IntervalRecordOptions): { records: RequestRecordWire[]; notes: IntervalNote[] } {
  const step = nextInterval(baselineOf(prev), curr, options);
  const flushed = flushDeferred(step.baseline, options);
  return { records: [...step.records, ...flushed.records], notes: [...step.notes, ...flushed.notes] };
}

/**
 * Advance an engine's baseline by one scrape and make the interval records that are due.
 *
 * - Tokens are counter increases taken per series (name and labels, ranks merged), then summed per
 *   model, as Prometheus' `sum(increase())`. A series whose `_created` changed restarted; so did
 *   every series when `process_start_time_seconds` changed. A series that went down by more than a
 *   dip may be a bad reading as well as a restart, and one that rose by more than a dip's share may
 *   be a bad reading as well as tokens: the scrape waits for the next ones to judge it
 *   ({@link judgeScrape}), and its records come out with a later scrape's. A restart seen on one
 *   counter of an engine (an origin: model plus the labels that name an engine) resets every
 *   counter of that engine for the interval: they count from zero, and what was counted between
 *   the previous scrape and the restart is unknowable (noted). A series never seen before started
 *   at zero, unless the previous page had unreadable lines of its name (then its start is unknown).
 * - A series seen before and missing now is missing data, never a new series: it keeps its last
 *   value, and the model's record waits (up to {@link MAX_HELD_SCRAPES}) so that the next good
 *   scrape covers the whole interval; after that the record is made without it and its tokens are
 *   counted when it is back. Nothing is counted twice or dropped without a note.
 * - Of a metric's candidate names (renames, deprecated twins), the record keeps to the one it used
 *   while that name is on the page, then moves to the first one on the page (noted); the others'
 *   increases cover the same tokens and are discarded.
 * - Cached tokens are capped at the interval's prompt tokens: the engines count cache hits when a
 *   request is scheduled and prompt tokens when its prefill ends, so hits can run ahead. The excess
 *   is carried to the next intervals (per model, voided by a restart), so that cached tokens add up
 *   to the engine's counter. Without a cached-token counter, the hit-rate gauge (averaged over
 *   ranks and engines) times the prompt tokens is used and the record is marked `tokens_estimated`.
 * - The interval's length comes from the monotonic clock; the wall clock only stamps its bounds. When
 *   the two disagree (a wall-clock step), the record ends at the current wall time and lasts what the
 *   monotonic clock measured, and the step is noted.
 * - batch_size is the mean of the per-engine running-requests gauge at the interval's two ends.
 * - The request id is derived from engine, model and the interval's bounds, so resubmitting the
 *   same interval is acknowledged as a duplicate rather than counted twice.
 * - An interval with more tokens than one record may hold ({@link MAX_TOKENS}, after a long
 *   downtime of the agent) becomes several records of the same bounds (ids suffixed `#i/n`) whose
 *   counts add up exactly (noted).
 * - Records carry granularity "interval" and source "engine-metrics".
 */
export function nextInterval(baseline: EngineBaseline, curr: EngineSnapshot, options: IntervalRecordOptions): IntervalResult {
  return countHeld(baseline, [...baseline.deferred, { page: curr, noted: false }], options, false);
}

/**
 * The scrapes held for judgement, counted with what judges them now (at shutdown: no later scrape
 * will come): a drop no later reading judged is read as the value before it (a glitch; see
 * {@link judgeScrape}), so that nothing is invented, and the records are flagged; so is a rise no
 * later reading judged (a bad high reading counts nothing; a true rise's tokens are counted by the
 * next run, from the stored mark). A drop or rise that the readings after it all stayed below
 * stands. The baseline keeps the value before a glitch, so a restart behind it is still seen by
 * the next run's first scrapes, and counted from there.
 */
export function flushDeferred(baseline: EngineBaseline, options: IntervalRecordOptions): IntervalResult {
  return baseline.deferred.length === 0 ? { records: [], notes: [], baseline } : countHeld(baseline, baseline.deferred, options, true);
}

/**
 * Count the scrapes of `queue` in order while each can be judged with the ones after it (`final`:
 * no more will come); the first that cannot waits, with those after it, in the baseline.
 */
function countHeld(baseline: EngineBaseline, queue: readonly HeldScrape[], options: IntervalRecordOptions, final: boolean): IntervalResult {
  let records: RequestRecordWire[] = [];
  let notes: IntervalNote[] = [];
  let base: EngineBaseline = { ...baseline, deferred: [] };
  for (let i = 0; i < queue.length; i++) {
    const { page, noted } = queue[i] as HeldScrape;
    const foreign = foreignProcess(base, page);
    if (foreign !== null) {
      const skipped = skipForeignPage(base, page, foreign);
      notes = notes.concat(skipped.note);
      base = skipped.baseline;
      continue;
    }
    const judged = judgeScrape(base, page, queue.slice(i + 1, i + 1 + COUNTER_LOOKAHEAD_SCRAPES).map((h) => h.page), final);
    if (judged === null) {
      if (!noted) {
        for (const d of suspectReadings(base, page)) if (d.kind === 'drop') notes = notes.concat({ kind: 'counter-drop-held', model: d.model, series: d.key, from: d.mark, to: d.reading });
      }
      return { records, notes, baseline: { ...base, deferred: [{ page, noted: true }, ...queue.slice(i + 1)] } };
    }
    const counted = countInterval(base, judged.read, options, judged.glitched);
    // Not push(...): an interval split to fit the token limit may be more records than a call takes arguments.
    records = records.concat(counted.records);
    notes = notes.concat(judged.notes, counted.notes);
    base = counted.baseline;
  }
  return { records, notes, baseline: base };
}

const NO_MODELS: ReadonlySet<string> = new Set();

/** A scrape held for judgement; `noted`: its held drops were noted (once). */
export interface HeldScrape {
  readonly page: EngineSnapshot;
  readonly noted: boolean;
}

/**
 * Scrapes after a counter drop or a steep rise that judge it (see {@link judgeScrape}): a drop is
 * a restart only once this many readings after it all stay below the value before it.
 */
export const COUNTER_LOOKAHEAD_SCRAPES = 3;

/** A counter reading awaiting later scrapes' judgement. */
interface SuspectReading {
  /** drop: below the value before it by more than a dip; rise: above it by more than a dip's share. */
  readonly kind: 'drop' | 'rise';
  readonly key: string;
  readonly origin: string;
  readonly model: string;
  /** The value before it, and the reading. */
  readonly mark: number;
  readonly reading: number;
  readonly created: number | null;
  /** No `_created` on both sides: a drop that stands is a restart of its engine (else part of its count went away). */
  readonly restart: boolean;
}

/** Down by more than a dip ({@link COUNTER_DIP_RESTART_SHARE}). */
const isDrop = (mark: number, reading: number): boolean => mark - reading > COUNTER_DIP_RESTART_SHARE * mark;

/**
 * Counters of `curr` that later scrapes must judge, where nothing else says the engine restarted
 * (its page's restart marker, a changed `_created` of one of its series): a drop below the last
 * value by more than a dip may be a bad reading (a line cut short: 655360.0 read as 6553) as well
 * as a restart; a rise above it by more than a dip's share of it (any rise from 0) may be a bad
 * reading (655360.0 read as 6553600) as well as tokens. A smaller rise is counted at once: read
 * high, the fall back from it is a dip, counted on from the higher value, so nothing is counted
 * twice in all.
 */
function suspectReadings(baseline: EngineBaseline, curr: EngineSnapshot): SuspectReading[] {
  if (pageRestarted(baseline, curr)) return [];
  const recreated = new Set<string>();
  const suspects: SuspectReading[] = [];
  for (const s of curr.counters) {
    const tracked = baseline.series.get(s.key);
    if (!tracked) continue;
    const before = tracked.series;
    const created = before.created !== null && s.created !== null;
    const suspect = { key: s.key, origin: s.origin, model: s.model, mark: before.value, reading: s.value, created: s.created, restart: !created };
    if (created && before.created !== s.created) recreated.add(s.origin);
    else if (isDrop(before.value, s.value)) suspects.push({ kind: 'drop', ...suspect });
    // A stale series' rise counts nothing (seriesIncreases): no need to judge it.
    else if (tracked.status !== 'stale' && isDrop(s.value, before.value)) suspects.push({ kind: 'rise', ...suspect });
  }
  return suspects.filter((d) => !recreated.has(d.origin));
}

/**
 * How a suspect reading is read, judged by the readings of its series on the scrapes after it
 * (`after`, up to {@link COUNTER_LOOKAHEAD_SCRAPES}), as the GPU energy counter's readings are
 * (model/energy-timeline.ts, judgeCounterReading): 'glitch' (a bad reading, read as the value
 * before it), 'stands' (read as it is), or null (not until more scrapes come). `next`: the reading
 * that decided it.
 * - A drop that a reading after it is back from, at or above the value before it (within a dip),
 *   was a bad reading; one that all of them stay below stands: a restart. Two bad readings in a row
 *   are bad readings, not a restart.
 * - A rise that the next reading stays at or above (within a dip) stands: the counter is there. One
 *   that the next reading is back under, at or above the value before it, was a bad reading. A
 *   reading under the value before it (itself a bad reading, or a restart) tells neither: the
 *   readings after it judge, and one that all of them stay below stands.
 * - A page after it without the series' line (an unreadable line, a partial page), or from a
 *   process running beside this one ({@link foreignProcess}), says nothing of it: the pages after
 *   that judge, within the look-ahead.
 * - A page after it from a restarted process (a new, later restart marker) or with the series re-created
 *   ends the judgement: a drop that a reading before that stayed below stands, one that none judged
 *   is read as a glitch (a restart behind it shows as a drop again at its next reading); a rise
 *   stands (that page counts from zero: nothing is counted twice).
 * - The end of the scrapes (shutdown), or of the look-ahead with no page that has the series' line:
 *   a drop or a rise that a reading stayed below stands; one that no reading judged is read as a
 *   glitch, so that nothing is invented (not a bad high reading's tokens, nor, with it kept as the
 *   mark, an engine lifetime counted again when the next true reading is a "drop" from it). The
 *   mark stays the value before it: the next scrape, or the next run (the baseline is stored),
 *   counts on from there, so a true rise's tokens are counted then, not lost.
 */
function verdictOf(d: SuspectReading, page: EngineSnapshot, after: readonly EngineSnapshot[], final: boolean, processes: readonly number[]): { verdict: 'glitch' | 'stands'; next: number | null } | null {
  let next: number | null = null;
  let known = withProcess(processes, page.restartMarker);
  // No more readings: one that stayed below judged it (it stands); with none, it is read as a glitch.
  const ended = () => ({ verdict: next === null ? 'glitch' : 'stands', next }) as const;
  // Another process, or the series re-created: a drop as above; a rise stands, the page counting from zero.
  const cut = () => (d.kind === 'rise' ? ({ verdict: 'stands', next } as const) : ended());
  for (let k = 0; k < COUNTER_LOOKAHEAD_SCRAPES; k++) {
    const a = after[k];
    if (a === undefined) return final ? ended() : null;
    // Another process serves that page: its counts say nothing of the one read here. One running
    // beside it (see foreignProcess) is left out, as it will be counted: the pages after it judge.
    if (page.restartMarker !== null && a.restartMarker !== null && page.restartMarker !== a.restartMarker) {
      if (foreignProcess({ restartMarker: page.restartMarker, atMs: page.atMs, processes: known }, a) === null) return cut();
      known = withProcess(known, a.restartMarker);
      continue;
    }
    const n = a.counters.find((s) => s.key === d.key);
    if (n === undefined) continue; // no line of it on that page: it says nothing
    if (n.created !== null && d.created !== null && n.created !== d.created) return cut();
    next = n.value;
    if (d.kind === 'drop' && !isDrop(d.mark, n.value)) return { verdict: 'glitch', next };
    if (d.kind === 'rise' && !isDrop(d.reading, n.value)) return { verdict: 'stands', next };
    if (d.kind === 'rise' && !isDrop(d.mark, n.value)) return { verdict: 'glitch', next };
  }
  return ended();
}

/**
 * The held scrape `page` as it is to be counted, its suspect readings judged by the scrapes after
 * it (see {@link verdictOf}), or null while they cannot be yet. A bad reading is read as the value
 * before it, so it counts nothing and the next interval counts from there; both records are
 * flagged tokens_estimated, since when the hidden tokens were served is not known. A drop that
 * stands is a restart of its engine (every counter of it then counts from zero), or with the same
 * `_created` a part of its count gone.
 *
 * The energy rule's rate bounds (watts a GPU can draw) have no counterpart for tokens, so a climb
 * is not judged by its rate. The costs: a restarted engine that counts past its old total within
 * {@link COUNTER_LOOKAHEAD_SCRAPES} scrapes (one that had counted little) is taken for a bad
 * reading, and what it counted up to that total is missed (as a restart, every bad reading would
 * count a lifetime of tokens again); so is one restarted right after a steep rise, whose count
 * passes the value before that rise (the rise is taken for a bad reading); so is a true steep rise
 * that no reading judged (its series off the next pages, or shutdown) when its engine restarts
 * before the series is read again; a true rise followed by a bad reading between it and the value
 * before it, or by pages without its line, is counted a scrape (or a run) late; and the records of
 * a scrape with a drop or a steep rise come with a later scrape's.
 */
function judgeScrape(base: EngineBaseline, page: EngineSnapshot, after: readonly EngineSnapshot[], final: boolean): { read: EngineSnapshot; glitched: ReadonlySet<string>; notes: IntervalNote[] } | null {
  const suspects = suspectReadings(base, page);
  if (suspects.length === 0) return { read: page, glitched: NO_MODELS, notes: [] };
  const verdicts: (SuspectReading & { verdict: 'glitch' | 'stands'; next: number | null })[] = [];
  for (const d of suspects) {
    const v = verdictOf(d, page, after, final, base.processes);
    if (v === null) return null;
    verdicts.push({ ...d, ...v });
  }
  // A restart that stands restarted every counter of its engine: none of its readings is a glitch then.
  const restarted = new Set(verdicts.filter((v) => v.kind === 'drop' && v.verdict === 'stands' && v.restart).map((v) => v.origin));
  const glitches = verdicts.filter((v) => v.verdict === 'glitch' && !restarted.has(v.origin));
  const marks = new Map(glitches.map((g) => [g.key, g.mark]));
  const read: EngineSnapshot = marks.size === 0 ? page : { ...page, counters: page.counters.map((s) => (marks.has(s.key) ? { ...s, value: marks.get(s.key) as number } : s)) };
  const notes: IntervalNote[] = glitches.map((g) => ({ kind: 'counter-glitch', model: g.model, series: g.key, from: g.mark, to: g.reading, next: g.next }));
  return { read, glitched: new Set(glitches.map((g) => g.model)), notes };
}

/** One interval counted: `curr` against the baseline; `glitched`, models with a counter glitch read as its mark on `curr`. */
function countInterval(baseline: EngineBaseline, curr: EngineSnapshot, options: IntervalRecordOptions, glitched: ReadonlySet<string>): IntervalResult {
  const records: RequestRecordWire[] = [];
  const notes: IntervalNote[] = [];
  const clockNote = clockStepOf(baseline, curr);
  if (clockNote) notes.push(clockNote);

  const { resets, dips } = restartedOrigins(baseline, curr);
  for (const [key, dip] of dips) notes.push({ kind: 'counter-dip', model: dip.model, series: key, from: dip.from, to: dip.to, held: dip.held });
  const { tracked, increases, incomplete, returned } = seriesIncreases(baseline, curr, resets, dips, notes);
  const absent = new Map<string, TrackedSeries[]>();
  for (const [key, t] of baseline.series) {
    if (tracked.has(key)) continue;
    // Its engine restarted: the new process creates it again when it counts (prometheus_client
    // creates labelled series lazily), from zero, and nothing is owed for the time before.
    const kept: TrackedSeries = resets.has(t.series.origin) ? { ...t, series: { ...t.series, value: 0, created: null }, status: 'restarted' } : t;
    tracked.set(key, kept);
    push(absent, t.series.model, kept);
  }
  const present = new Map<string, Set<string>>();
  for (const s of curr.counters) present.set(s.model, (present.get(s.model) ?? new Set<string>()).add(s.name));

  const models = new Map<string, ModelState>();
  const allModels = new Set([...baseline.models.keys(), ...modelsOf(curr), ...[...tracked.values()].map((t) => t.series.model)]);
  for (const model of allModels) {
    const before = baseline.models.get(model) ?? openInterval(baseline, 0, {}, model);
    const reading = curr.models.get(model);
    const pending = { ...before.pending };
    for (const [name, inc] of increases.get(model) ?? []) pending[name] = (pending[name] ?? 0) + inc;
    let credit = before.credit;
    const resetReasons = [...resets.values()].filter((r) => r.model === model).flatMap((r) => r.reasons);
    if (resetReasons.length > 0) {
      notes.push({ kind: 'counter-reset', model, reason: resetNote(resetReasons, model, tracked, resets) });
      if (credit > 0) notes.push({ kind: 'cached-credit-dropped', model, tokens: credit });
      credit = 0;
    }
    // Back after a record was made without it: its increase since then is in this record.
    for (const r of returned.get(model) ?? []) if (r.sinceMs < before.sinceMs) notes.push({ kind: 'series-returned', model, series: r.key, sinceMs: r.sinceMs });

    const modelAbsent = absent.get(model) ?? [];
    const missing = modelAbsent.filter((t) => t.status === 'seen');
    const chosen = chooseNames(curr, before.used, present.get(model) ?? new Set(), modelAbsent, incomplete.get(model) ?? new Set());
    const waiting = COUNTER_METRICS.some((m) => chosen[m]?.state === 'waiting');
    const monoElapsed = curr.monoMs - before.sinceMono;
    if ((waiting && before.held < MAX_HELD_SCRAPES) || monoElapsed <= 0) {
      if (waiting) notes.push({ kind: 'series-missing', model, series: missing.map((t) => t.series.key), held: true, sinceMs: before.sinceMs });
      models.set(model, { ...before, pending, credit, held: waiting ? before.held + 1 : before.held, glitch: before.glitch || glitched.has(model) });
      continue;
    }
    if (waiting) {
      notes.push({ kind: 'series-missing', model, series: missing.map((t) => t.series.key), held: false, sinceMs: before.sinceMs });
      // Made without them: stop waiting, or every later interval would wait and be marked
      // estimated for series that may never come back.
      const givenUp = missing.filter((t) => chosen[t.series.metric]?.name === t.series.name);
      for (const t of givenUp) tracked.set(t.series.key, { ...t, status: 'given-up' });
      if (givenUp.length > 0) notes.push({ kind: 'series-given-up', model, series: givenUp.map((t) => t.series.key) });
    }
    // Missing series of a name no longer used: what they counted since they were last seen cannot
    // be told apart from what the name now used counts, so they only set a new start when back.
    for (const t of missing) {
      if (chosen[t.series.metric]?.name !== t.series.name) tracked.set(t.series.key, { ...t, status: 'stale' });
    }

    const used: Partial<Record<CounterMetric, string>> = {};
    for (const metric of COUNTER_METRICS) {
      const name = chosen[metric]?.name;
      if (name === undefined) continue;
      used[metric] = name;
      const from = before.used[metric];
      if (from !== undefined && from !== name) notes.push({ kind: 'counter-renamed', model, metric, from, to: name });
    }
    // A glitch read as the mark on `curr` hid tokens that the next interval counts.
    const next = (carry: number): ModelState => openInterval(curr, carry, { ...before.used, ...used }, model, curr, glitched.has(model));
    const count = (metric: CounterMetric): number => {
      const name = chosen[metric]?.name;
      return name === undefined ? 0 : Math.max(0, Math.round(pending[name] ?? 0));
    };
    const promptName = chosen.promptTokens;
    const generationName = chosen.generationTokens;
    if (promptName === undefined || generationName === undefined) {
      const dropped = { prompt: count('promptTokens'), generation: count('generationTokens'), cached: count('cachedTokens') };
      for (const metric of ['promptTokens', 'generationTokens'] as const) if (chosen[metric] === undefined) notes.push({ kind: 'missing-counter', model, metric, dropped });
      models.set(model, next(credit));
      continue;
    }
    const promptTokens = count('promptTokens');
    const completionTokens = count('generationTokens');
    const cached = cachedTokensOf(model, chosen.cachedTokens !== undefined ? count('cachedTokens') : null, credit, promptTokens, reading, curr, notes);
    const running = meanRunning(before.running, reading?.runningRequests ?? null);
    models.set(model, next(cached.credit));
    if (promptTokens === 0 && completionTokens === 0 && (running === null || running < 0.5)) continue; // idle
    const batch = batchSizeOf(before, curr, model, monoElapsed, resetReasons.length > 0, running);
    notes.push({ kind: 'batch-size', model, source: batch.source, metric: batch.metric });

    const { startMs, endMs } = intervalBounds(before, curr);
    // Counts known to be short for this interval (a series missing or of unknown start) are not exact.
    const inexact = before.glitch || glitched.has(model) || COUNTER_METRICS.some((m) => chosen[m] !== undefined && chosen[m].state !== 'complete');
    const wire: Record<string, unknown> = {
      request_id: intervalRequestId(options.engineId, model, startMs, endMs),
      model,
      start: startMs,
      end: endMs,
      prompt_tokens: promptTokens,
      cached_tokens: cached.tokens,
      completion_tokens: completionTokens,
      reasoning_tokens: 0,
      status: 'ok',
      granularity: 'interval',
      source: 'engine-metrics',
    };
    if (batch.size !== null) wire.batch_size = batch.size;
    if (cached.estimated || inexact) wire.tokens_estimated = true;
    if (options.tier !== undefined) wire.tier = options.tier;
    if (options.gpus !== undefined && options.gpus.length > 0) wire.gpus = [...options.gpus];
    const pieces = Math.ceil(Math.max(promptTokens, completionTokens) / MAX_TOKENS);
    if (pieces > 1) {
      notes.push({ kind: 'interval-split', model, pieces, startMs, endMs });
      for (const piece of splitRecord(wire, pieces)) records.push(piece); // pieces grow with the counters: no spread
    } else records.push(wire as RequestRecordWire);
  }
  return {
    records,
    notes,
    baseline: {
      engine: curr.engine,
      atMs: curr.atMs,
      monoMs: curr.monoMs,
      // A page without the marker keeps the last one, unless a restart was seen without it: that
      // marker is then stale, and its change on the next page must not count the restart again.
      restartMarker: curr.restartMarker ?? (resets.size > 0 ? null : baseline.restartMarker),
      processes: withProcess(baseline.processes, curr.restartMarker),
      foreignPages: 0,
      unreadable: curr.unreadable,
      series: tracked,
      models,
      deferred: [],
    },
  };
}

/**
 * One interval's record as `pieces` records of the same interval (ids suffixed `#i/n`): the
 * tokens are spread evenly, their sums exact, and each piece's cached tokens stay within its
 * prompt tokens. They keep the interval's bounds rather than cut it into sub-intervals: when
 * within it the tokens were served is not known, and every piece must end inside the retained
 * window the whole interval ends in.
 */
function splitRecord(wire: Record<string, unknown>, pieces: number): RequestRecordWire[] {
  // Integer arithmetic (BigInt): the products pass 2^53 long before the counts do.
  const n = BigInt(pieces);
  const prompt = BigInt(wire.prompt_tokens as number);
  const cached = BigInt(wire.cached_tokens as number);
  const completion = BigInt(wire.completion_tokens as number);
  const upTo = (total: bigint, i: number): bigint => (total * BigInt(i)) / n;
  const out: RequestRecordWire[] = [];
  for (let i = 0; i < pieces; i++) {
    const promptFrom = upTo(prompt, i);
    const promptTo = upTo(prompt, i + 1);
    // Cached tokens follow the prompt tokens: floor(C·a/P) − floor(C·b/P) ≤ a − b when C ≤ P.
    const cachedTokens = prompt === 0n ? 0n : (cached * promptTo) / prompt - (cached * promptFrom) / prompt;
    out.push({
      ...wire,
      request_id: `${wire.request_id as string}#${i + 1}/${pieces}`,
      prompt_tokens: Number(promptTo - promptFrom),
      cached_tokens: Number(cachedTokens),
      completion_tokens: Number(upTo(completion, i + 1) - upTo(completion, i)),
    } as RequestRecordWire);
  }
  return out;
}

function modelsOf(snapshot: EngineSnapshot): Set<string> {
  return new Set([...snapshot.models.keys(), ...snapshot.counters.map((s) => s.model)]);
}

/** A new interval of `model` from `at`; `snapshot`, the scrape it opens at, gives its gauge and histogram readings. */
function openInterval(at: { atMs: number; monoMs: number }, credit: number, used: Partial<Record<CounterMetric, string>>, model: string, snapshot?: EngineSnapshot, glitch = false): ModelState {
  const running = snapshot?.models.get(model)?.runningRequests ?? null;
  const requestTime = snapshot ? requestTimeOf(snapshot.requestTime, model) : null;
  return { sinceMs: at.atMs, sinceMono: at.monoMs, running, held: 0, credit, requestTime, pending: {}, used, glitch };
}

function requestTimeOf(all: readonly RequestTimeSeries[], model: string): RequestTimeState | null {
  const own = all.filter((s) => s.model === model);
  const first = own[0];
  if (first === undefined) return null;
  const name = first.key.slice(0, first.key.indexOf('{'));
  return { name, series: Object.fromEntries(own.map((s) => [s.key, { sum: s.sum, count: s.count }])) };
}

/**
 * The interval's batch size, time-averaged where the engine allows it. Little's law: the growth of
 * a request-time histogram's sum over the interval, divided by its length, is the mean number of
 * requests in that phase. Per series (data-parallel engine) L = min(Δsum / Δt, Δcount): the
 * histogram counts a request when it finishes, so a long request's whole time lands in the
 * interval it finishes in; no finished request was in the interval for longer than the interval,
 * hence the cap. Requests still running at the end count when they finish, in a later interval.
 * Across engines, the batch the average request is in (ΣL² / ΣL), as for the gauge. With no
 * request finished (or a restart, or the histogram gone or renamed), the mean of the running
 * gauge at the two ends; when that is 0 too, nothing is known and batch_size is left unset.
 */
function batchSizeOf(
  before: ModelState,
  curr: EngineSnapshot,
  model: string,
  monoElapsed: number,
  restarted: boolean,
  running: number | null,
): { size: number | null; source: BatchSizeSource; metric: string | null } {
  const from = before.requestTime;
  const now = requestTimeOf(curr.requestTime, model);
  const seconds = monoElapsed / 1000;
  if (from !== null && now !== null && from.name === now.name && !restarted && seconds > 0) {
    let sumL = 0;
    let sumL2 = 0;
    let finished = 0;
    let usable = true;
    for (const [key, s] of Object.entries(now.series)) {
      const b = from.series[key];
      if (b === undefined) continue; // new since the interval began: its start is unknown
      const dSum = s.sum - b.sum;
      const dCount = s.count - b.count;
      if (dSum < 0 || dCount < 0) usable = false; // went down: a restart this interval cannot place
      if (!usable) break;
      const l = Math.min(dSum / seconds, dCount);
      finished += dCount;
      sumL += l;
      sumL2 += l * l;
    }
    if (usable && finished > 0 && sumL > 0) {
      const source = now.name.endsWith('e2e_request_latency_seconds') ? 'e2e-latency' : 'request-time';
      return { size: Math.min(100_000, Math.max(1, Math.round(sumL2 / sumL))), source, metric: now.name };
    }
  }
  if (running !== null && running > 0) return { size: Math.min(100_000, Math.max(1, Math.round(running))), source: 'running-gauge', metric: curr.resolved.runningRequests ?? null };
  return { size: null, source: 'none', metric: null };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function clockStepOf(baseline: EngineBaseline, curr: EngineSnapshot): IntervalNote | null {
  const wallMs = curr.atMs - baseline.atMs;
  const monoMs = curr.monoMs - baseline.monoMs;
  if (monoMs < 0) return { kind: 'clock-step', wallMs, monoMs, held: true };
  if (monoMs > 0 && (wallMs <= 0 || Math.abs(wallMs - monoMs) > CLOCK_TOLERANCE_MS)) return { kind: 'clock-step', wallMs, monoMs, held: false };
  return null;
}

/**
 * The record's bounds: from the model's last record to now on the wall clock, unless the wall
 * clock stepped in between; then it ends now and lasts what the monotonic clock measured.
 */
function intervalBounds(before: ModelState, curr: EngineSnapshot): { startMs: number; endMs: number } {
  const wall = curr.atMs - before.sinceMs;
  const mono = curr.monoMs - before.sinceMono;
  if (wall > 0 && Math.abs(wall - mono) <= CLOCK_TOLERANCE_MS) return { startMs: before.sinceMs, endMs: curr.atMs };
  return { startMs: curr.atMs - Math.max(1, Math.round(mono)), endMs: curr.atMs };
}

/**
 * A counter that goes down by more than this share of its value is taken to have restarted, unless
 * its `_created` stayed the same. A smaller dip is not a restart: ranks of one replica are merged by
 * their largest value, so one rank missing from a page lowers it by the tokens that rank lags, and
 * float sums can lose a fraction; counting such a dip as a restart would count the engine's whole
 * lifetime again. The cost of the rule: a process that restarts and, within one scrape, counts back
 * to over 99% of what the old one had counted (so the old one had counted little) has that missed.
 */
export const COUNTER_DIP_RESTART_SHARE = 0.01;

/** A counter that went down without a restart: nothing counted; `held` keeps the higher value as the base. */
interface CounterDip {
  readonly model: string;
  readonly from: number;
  readonly to: number;
  readonly held: boolean;
}

/**
 * Origins (engines) whose counters restarted since the baseline, with the reasons, and the
 * counters that went down without a restart.
 *
 * A changed restart marker (`process_start_time_seconds`, the process serving the page) restarts
 * every origin; a series' changed `_created` restarts its origin. The page's marker staying the
 * same proves nothing of an origin, whose counting process may not be the one serving the page.
 * Otherwise a counter going down by over {@link COUNTER_DIP_RESTART_SHARE} of its value (a drop
 * the next scrapes confirmed: see {@link judgeScrape}) restarts its origin, unless its `_created`
 * stayed the same: then part of its count went away (a worker's share) and it is counted on from
 * the lower value. A smaller dip is held: counted on from the
 * higher value, which the lagging rank makes good when it catches up.
 *
 * A restart resets every counter of its origin, since the new process's other counters may already
 * have passed their old values: they all count from zero. Other origins of the same model (vLLM
 * `engine`, SGLang `dp_rank`, custom labels) whose counters all went up are taken to have kept
 * counting. If they restarted too (one process behind several labels), up to their last values
 * are missed: bounded by what they counted since the restart. The other choice, counting their
 * whole values, would add their lifetime totals when only one engine restarted.
 */
function restartedOrigins(baseline: EngineBaseline, curr: EngineSnapshot): { resets: Map<string, { model: string; reasons: string[] }>; dips: Map<string, CounterDip> } {
  const resets = new Map<string, { model: string; reasons: string[] }>();
  const dips = new Map<string, CounterDip>();
  const add = (s: CounterSeries, reason: string): void => {
    const known = resets.get(s.origin);
    if (!known) resets.set(s.origin, { model: s.model, reasons: [reason] });
    else if (!known.reasons.includes(reason)) known.reasons.push(reason);
  };
  if (pageRestarted(baseline, curr)) {
    const reason = `engine process restarted (process_start_time_seconds ${baseline.restartMarker} -> ${curr.restartMarker})`;
    for (const t of baseline.series.values()) add(t.series, reason);
    for (const s of curr.counters) add(s, reason);
    return { resets, dips };
  }
  for (const s of curr.counters) {
    const before = baseline.series.get(s.key)?.series;
    if (!before) continue;
    const created = before.created !== null && s.created !== null;
    if (created && before.created !== s.created) add(s, `${s.key} was re-created (_created ${before.created} -> ${s.created})`);
    else if (s.value < before.value) {
      const held = !isDrop(before.value, s.value);
      if (held || created) dips.set(s.key, { model: s.model, from: before.value, to: s.value, held });
      else add(s, `${s.key} went from ${before.value} to ${s.value}`);
    }
  }
  // A restart of the origin counts its series from zero: a dip of one of them is part of it.
  for (const s of curr.counters) if (resets.has(s.origin)) dips.delete(s.key);
  return { resets, dips };
}

/**
 * A restarted process starts after the page its predecessor served last; its start time may read
 * earlier than that page's scrape time by this much: the fetch (up to the 60 s largest scrape
 * timeout; the scrape is stamped when the body is read), the start time's rounding (the kernel's
 * boot time is in whole seconds) and the engine host's clock running behind this agent's.
 */
export const RESTART_MARKER_TOLERANCE_MS = 120_000;

/**
 * Pages in a row from processes other than the baseline's after which counting moves to the
 * page's process ({@link skipForeignPage}): its process is gone (a pod scaled down behind the
 * Service), or was the same one all along behind a marker that moved (the engine host's clock
 * stepped). With two pods picked at random, 8 in a row come about once in 256 pages.
 */
export const MAX_FOREIGN_PAGES = 8;

/** Process start times remembered per target; beyond it the oldest are forgotten. */
export const MAX_KNOWN_PROCESSES = 64;

/**
 * Why the page's process, whose restart marker differs from the baseline's, cannot be a restart of
 * the baseline's process; null when it can (or either marker is unknown). A restarted process
 * starts after its predecessor served its last page, so its start time is new, later than the
 * predecessor's, and no earlier than that page's scrape ({@link RESTART_MARKER_TOLERANCE_MS}).
 * A page that breaks one of these comes from another process that was running beside the
 * baseline's: several processes answer one URL (a Kubernetes Service or load balancer over
 * several pods). Read as a restart, as before this check, each such page counted that process's
 * lifetime totals as new work. A clock step on the engine's host that moves the marker of the one
 * process reads the same, which is also no restart.
 */
export function foreignProcess(base: Pick<EngineBaseline, 'restartMarker' | 'atMs' | 'processes'>, page: EngineSnapshot): string | null {
  const was = base.restartMarker;
  const now = page.restartMarker;
  if (was === null || now === null || was === now) return null;
  if (base.processes.includes(now)) return `process_start_time_seconds ${now} is an earlier page's: that process answers beside ${was}`;
  if (now < was) return `process_start_time_seconds ${now} is earlier than ${was}: a restart never starts before the process it replaces`;
  if (now * 1000 < base.atMs - RESTART_MARKER_TOLERANCE_MS) {
    return `process_start_time_seconds ${now} is before the last page of process ${was} (scraped ${new Date(base.atMs).toISOString()}): both were running`;
  }
  return null;
}

/** `processes` with `marker` last (moved there if known), the oldest beyond {@link MAX_KNOWN_PROCESSES} dropped. */
function withProcess(processes: readonly number[], marker: number | null): readonly number[] {
  if (marker === null || processes.at(-1) === marker) return processes;
  return [...processes.filter((p) => p !== marker), marker].slice(-MAX_KNOWN_PROCESSES);
}

/**
 * Leave out a page of another process ({@link foreignProcess}): nothing is counted for it and the
 * baseline stays the last page of its own process, whose next page counts everything since. After
 * {@link MAX_FOREIGN_PAGES} such pages in a row the baseline moves to this page's process, from its
 * values now: nothing is counted for the switch (what the old process counted since its last page,
 * and this one before now, are not recorded), never a lifetime total. The open intervals go on.
 */
function skipForeignPage(base: EngineBaseline, page: EngineSnapshot, reason: string): { note: IntervalNote; baseline: EngineBaseline } {
  const foreignPages = base.foreignPages + 1;
  const processes = withProcess(base.processes, page.restartMarker);
  const rebased = foreignPages >= MAX_FOREIGN_PAGES;
  const note: IntervalNote = { kind: 'several-processes', marker: page.restartMarker as number, baselineMarker: base.restartMarker as number, reason, rebased };
  if (!rebased) return { note, baseline: { ...base, processes, foreignPages } };
  const fresh = baselineOf(page);
  const models = new Map(fresh.models);
  for (const [model, before] of base.models) {
    const now = models.get(model) ?? openInterval(page, 0, {}, model, page);
    // Its uncounted tokens stay owed; hits carried ahead of prompts died with the old process, as at a restart.
    models.set(model, { ...now, sinceMs: before.sinceMs, sinceMono: before.sinceMono, pending: before.pending, used: { ...now.used, ...before.used }, held: before.held, glitch: before.glitch });
  }
  return { note, baseline: { ...fresh, processes, models } };
}

/** The page's restart marker (`process_start_time_seconds`) changed. */
function pageRestarted(baseline: EngineBaseline, curr: EngineSnapshot): boolean {
  return baseline.restartMarker !== null && curr.restartMarker !== null && baseline.restartMarker !== curr.restartMarker;
}

function resetNote(reasons: readonly string[], model: string, tracked: ReadonlyMap<string, TrackedSeries>, resets: ReadonlyMap<string, unknown>): string {
  const others = new Set([...tracked.values()].filter((t) => t.series.model === model && !resets.has(t.series.origin)).map((t) => t.series.origin));
  const kept = others.size > 0 ? `; ${[...others].join(', ')} kept counting` : '';
  return `${[...new Set(reasons)].join('; ')}; every counter of that engine counts from the restart, tokens counted between the previous scrape and the restart are unknowable${kept}`;
}

/** Per series: the increase since its last value, into its model's counts per counter name. */
function seriesIncreases(
  baseline: EngineBaseline,
  curr: EngineSnapshot,
  resets: ReadonlyMap<string, unknown>,
  dips: ReadonlyMap<string, CounterDip>,
  notes: IntervalNote[],
): {
  tracked: Map<string, TrackedSeries>;
  increases: Map<string, Map<string, number>>;
  incomplete: Map<string, Set<string>>;
  returned: Map<string, { key: string; sinceMs: number }[]>;
} {
  const tracked = new Map<string, TrackedSeries>();
  const increases = new Map<string, Map<string, number>>();
  const incomplete = new Map<string, Set<string>>(); // model -> names with an unknowable part this interval
  const returned = new Map<string, { key: string; sinceMs: number }[]>();
  const unknown = (s: CounterSeries): void => {
    const names = incomplete.get(s.model) ?? new Set<string>();
    incomplete.set(s.model, names.add(s.name));
  };
  for (const s of curr.counters) {
    const before = baseline.series.get(s.key);
    const dip = dips.get(s.key);
    let inc: number;
    let kept = s;
    if (resets.has(s.origin)) inc = s.value; // counted since the restart
    else if (dip !== undefined) {
      inc = 0;
      if (dip.held) kept = { ...s, value: dip.from };
    } else if (before?.status === 'stale') {
      inc = 0;
      unknown(s);
    } else if (before) {
      inc = s.value - before.series.value; // from zero when its engine restarted while it was absent
      if ((before.status === 'seen' || before.status === 'given-up') && before.seenMs < baseline.atMs) push(returned, s.model, { key: s.key, sinceMs: before.seenMs });
    } else if (baseline.unreadable.has('*') || baseline.unreadable.has(counterKey(s.name))) {
      inc = 0;
      unknown(s);
      notes.push({ kind: 'series-unknown-start', model: s.model, series: s.key });
    } else inc = s.value; // created since the previous scrape, from zero
    const perName = increases.get(s.model) ?? new Map<string, number>();
    increases.set(s.model, perName.set(s.name, (perName.get(s.name) ?? 0) + inc));
    tracked.set(s.key, { series: kept, seenMs: curr.atMs, status: 'seen' });
  }
  return { tracked, increases, incomplete, returned };
}

interface ChosenName {
  readonly name: string;
  /** complete: every series read; partial: some increase is unknowable; waiting: series missing now. */
  readonly state: 'complete' | 'partial' | 'waiting';
}

/**
 * Per metric, the counter name to record. It sticks to the name used last time while that name has
 * series on the page, so a missing series makes the record wait rather than switch and lose what
 * the series is owed. When the name has gone from the page (an engine upgrade renamed it), the
 * first name in order of preference that is on the page takes over. With nothing on the page, the
 * name owed tokens waits; a name whose series restarted and have not been created again counts
 * zero for now (they count from zero when they are back).
 */
function chooseNames(
  curr: EngineSnapshot,
  used: Readonly<Partial<Record<CounterMetric, string>>>,
  present: ReadonlySet<string>,
  absent: readonly TrackedSeries[],
  incomplete: ReadonlySet<string>,
): Partial<Record<CounterMetric, ChosenName>> {
  const chosen: Partial<Record<CounterMetric, ChosenName>> = {};
  const owes = (name: string): boolean => absent.some((t) => t.series.name === name && t.status === 'seen');
  const knows = (name: string): boolean => absent.some((t) => t.series.name === name);
  const hidden = (name: string): boolean => curr.unreadable.has('*') || curr.unreadable.has(counterKey(name));
  for (const metric of COUNTER_METRICS) {
    const last = used[metric];
    const candidates = ENGINE_METRIC_NAMES[curr.engine][metric];
    const name =
      (last !== undefined && present.has(last) ? last : undefined) ??
      candidates.find((n) => present.has(n)) ??
      (last !== undefined && knows(last) ? last : undefined) ??
      candidates.find(knows);
    if (name === undefined) continue;
    // Short for this interval: a stale series left out, or a restarted one that a bad line may hide.
    const short = absent.some((t) => t.series.name === name && (t.status === 'stale' || (t.status === 'restarted' && hidden(name))));
    const state = owes(name) ? 'waiting' : incomplete.has(name) || short ? 'partial' : 'complete';
    chosen[metric] = { name, state };
  }
  return chosen;
}

function cachedTokensOf(
  model: string,
  counted: number | null,
  credit: number,
  promptTokens: number,
  reading: ModelReading | undefined,
  curr: EngineSnapshot,
  notes: IntervalNote[],
): { tokens: number; estimated: boolean; credit: number } {
  if (counted !== null) {
    // The carried hits go first (their prompts were due first); what of them finds no prompt
    // tokens now never will, so it is dropped rather than carried on (bounded to one interval).
    const fromCredit = Math.min(credit, promptTokens);
    const fromCounted = Math.min(counted, promptTokens - fromCredit);
    const expired = credit - fromCredit;
    const carried = counted - fromCounted;
    if (expired > 0) notes.push({ kind: 'cached-credit-expired', model, tokens: expired });
    if (carried > 0) notes.push({ kind: 'cached-capped', model, cached: counted + fromCredit, prompt: promptTokens, carried });
    return { tokens: fromCredit + fromCounted, estimated: false, credit: carried };
  }
  const outOfRange = reading?.cacheHitRateOutOfRange ?? [];
  if (outOfRange.length > 0) notes.push({ kind: 'hit-rate-out-of-range', model, metric: curr.resolved.cacheHitRate ?? 'hit rate', values: outOfRange });
  const rate = reading?.cacheHitRate ?? null;
  if (rate !== null) {
    notes.push({ kind: 'cached-estimated', model });
    return { tokens: Math.round(promptTokens * rate), estimated: true, credit };
  }
  // A gauge that is there but unusable leaves cached tokens unknown, not zero.
  return { tokens: 0, estimated: outOfRange.length > 0, credit };
}

function meanRunning(before: number | null, now: number | null): number | null {
  const values = [before, now].filter((v): v is number => typeof v === 'number' && v >= 0);
  if (values.length === 0) return null;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

const MAX_PART = 96;

/** `engine-metrics:<engine>:<model>:<start>-<end>`; over-long parts are replaced by a hash. */
export function intervalRequestId(engineId: string, model: string, startMs: number, endMs: number): string {
  const part = (text: string): string =>
    text.length <= MAX_PART ? text : `sha256-${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
  return `engine-metrics:${part(engineId)}:${part(model)}:${startMs}-${endMs}`;
}
