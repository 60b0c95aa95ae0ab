import type { AttributionConfig } from './attribution-types.js';
import { watts, type Watts } from './units.js';

/**
 * The idle baseline of a GPU: the power it draws with the model loaded and nothing running. It is
 * the "static" part of an active interval (DESIGN.md "Attribution"). A configured baseline
 * (`AttributionConfig.idleBaselineW[uuid]`) always wins; otherwise it is learned from the GPU's own
 * idle intervals (no request active).
 *
 * Method (online, for the agent): an asymmetric, duration-weighted exponential average that tracks
 * the FLOOR of idle power. Idle observations include the tails after requests (power ramps down
 * over hundreds of milliseconds, and NVML on Ampere+ reports a ~1 s moving average) and occasional
 * spikes, so a plain mean overstates idle. Observations below the estimate pull it down with a
 * short time constant ({@link IDLE_DOWN_TAU_MS}); observations above pull it up with a long one
 * ({@link IDLE_UP_TAU_MS}). The estimate settles at a low quantile of idle power, follows slow drift
 * (temperature) both ways, and a brief glitch moves it by only duration/tau. Until
 * {@link IDLE_MIN_OBSERVED_MS} of idle time has been seen there is no baseline (null): the attribution
 * then counts an active interval as all dynamic, which moves energy between static and dynamic
 * but never changes a request's total.
 *
 * Method (offline, for `tokenwatt analyze`): {@link idleBaselineFromObservations}, the
 * duration-weighted {@link IDLE_QUANTILE} quantile of all idle observations of the run, for the same
 * reason (a low quantile ignores tails) but independent of order and of the run's length.
 *
 * Caveat: after a long idle stretch a GPU may drop to a lower performance state
 * than it keeps between requests, so the learned floor can be below the "awake" idle power. That
 * shifts energy from static to dynamic. Configure the baseline where that matters.
 */

/** Time constant of a downward pull (observation below the estimate). */
export const IDLE_DOWN_TAU_MS = 60_000;
/** Time constant of an upward pull (observation above the estimate): 30x slower than down. */
export const IDLE_UP_TAU_MS = 1_800_000;
/** Idle time that must be observed before a learned baseline is used. */
export const IDLE_MIN_OBSERVED_MS = 10_000;
/** Quantile of idle power used offline (duration-weighted). */
export const IDLE_QUANTILE = 0.1;

/** Learned idle baseline of one GPU. Immutable: {@link observeIdle} returns a new state. */
export interface IdleBaselineState {
  /** Current estimate in watts, or null before the first observation. */
  readonly estimateW: number | null;
  /** Total idle time observed, in milliseconds. */
  readonly observedMs: number;
}

/** The state before any observation. */
export function initialIdleBaseline(): IdleBaselineState {
  return { estimateW: null, observedMs: 0 };
}

/**
 * Fold one idle observation (mean power over `durationMs` of idle time) into the state.
 * Non-finite or negative power and non-positive durations are ignored (the state is returned as is).
 */
export function observeIdle(state: IdleBaselineState, powerW: number, durationMs: number): IdleBaselineState {
  if (!Number.isFinite(powerW) || powerW < 0 || !Number.isFinite(durationMs) || durationMs <= 0) return state;
  const observedMs = state.observedMs + durationMs;
  if (state.estimateW === null) return { estimateW: powerW, observedMs };
  const tau = powerW < state.estimateW ? IDLE_DOWN_TAU_MS : IDLE_UP_TAU_MS;
  const gain = 1 - Math.exp(-durationMs / tau);
  return { estimateW: state.estimateW + gain * (powerW - state.estimateW), observedMs };
}

/** The learned baseline, or null until enough idle time has been observed. */
export function currentIdleBaseline(state: IdleBaselineState): Watts | null {
  if (state.estimateW === null || state.observedMs < IDLE_MIN_OBSERVED_MS) return null;
  return watts(state.estimateW);
}

/** The state after folding `observations`, in order, into `state` (a restart that has only the stored periods). */
export function observeIdleAll(state: IdleBaselineState, observations: readonly IdleObservation[]): IdleBaselineState {
  let next = state;
  for (const o of observations) next = observeIdle(next, o.powerW, o.durationMs);
  return next;
}

/** One idle observation: mean power over a stretch of idle time. */
export interface IdleObservation {
  readonly powerW: number;
  readonly durationMs: number;
}

/**
 * Offline baseline: the duration-weighted `quantile` of idle power over all observations, or null
 * when less than {@link IDLE_MIN_OBSERVED_MS} of idle time was observed. Invalid observations are ignored.
 */
export function idleBaselineFromObservations(observations: readonly IdleObservation[], quantile = IDLE_QUANTILE): Watts | null {
  const valid = observations.filter(
    (o) => Number.isFinite(o.powerW) && o.powerW >= 0 && Number.isFinite(o.durationMs) && o.durationMs > 0,
  );
  const total = valid.reduce((sum, o) => sum + o.durationMs, 0);
  if (total < IDLE_MIN_OBSERVED_MS) return null;
  valid.sort((x, y) => x.powerW - y.powerW || x.durationMs - y.durationMs);
  const target = Math.min(Math.max(quantile, 0), 1) * total;
  let seen = 0;
  for (const o of valid) {
    seen += o.durationMs;
    if (seen >= target) return watts(o.powerW);
  }
  return watts((valid[valid.length - 1] as IdleObservation).powerW);
}

/** Where a GPU's baseline comes from: configured, learned, or none yet. */
export type IdleBaselineSource = 'configured' | 'learned' | 'none';

/**
 * The baseline to use for a GPU: the configured one always wins over the learned one. Returns the
 * value and its source (reports say which was used).
 */
export function resolveIdleBaseline(
  config: Pick<AttributionConfig, 'idleBaselineW'>,
  gpuUuid: string,
  learned: Watts | null,
): { readonly baselineW: Watts | null; readonly source: IdleBaselineSource } {
  const configured = config.idleBaselineW[gpuUuid];
  if (configured !== undefined && Number.isFinite(configured) && configured >= 0) {
    return { baselineW: watts(configured), source: 'configured' };
  }
  return learned === null ? { baselineW: null, source: 'none' } : { baselineW: learned, source: 'learned' };
}
