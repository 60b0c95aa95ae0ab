import type { GpuPeriodTotals } from './attribution-types.js';

/**
 * The conservation invariant (DESIGN.md): for every settled period and GPU,
 * idle + static + dynamic + unattributed = measured, to floating point precision. Tests assert it
 * and the agent exports the residual as a self-check metric.
 */

/** Default relative tolerance: 1e-9 of the measured energy ... */
export const CONSERVATION_RELATIVE_TOLERANCE = 1e-9;
/** ... plus this many joules, for periods that measured (almost) nothing. */
export const CONSERVATION_ABSOLUTE_TOLERANCE_J = 1e-9;

/** Residual of one GPU period: measured minus its four parts, recomputed (not read from residualJ). */
export interface ConservationResidual {
  /** measured - (idle + static + dynamic + unattributed), signed, joules. */
  readonly absoluteJ: number;
  /** |absoluteJ| / measured; 0 when both are 0, Infinity when only measured is 0. */
  readonly relative: number;
}

export function conservationResidual(t: Pick<GpuPeriodTotals, 'measuredJ' | 'idleJ' | 'staticJ' | 'dynamicJ' | 'unattributedJ'>): ConservationResidual {
  const absoluteJ = t.measuredJ - (t.idleJ + t.staticJ + t.dynamicJ + t.unattributedJ);
  const magnitude = Math.abs(absoluteJ);
  const relative = t.measuredJ !== 0 ? magnitude / Math.abs(t.measuredJ) : magnitude === 0 ? 0 : Infinity;
  return { absoluteJ, relative };
}

/** Largest residual (joules) accepted for a period that measured `measuredJ`. */
export function conservationTolerance(
  measuredJ: number,
  relative = CONSERVATION_RELATIVE_TOLERANCE,
  absoluteJ = CONSERVATION_ABSOLUTE_TOLERANCE_J,
): number {
  return relative * Math.abs(measuredJ) + absoluteJ;
}

/** True when the residual is within tolerance (and finite). */
export function isConserved(
  t: Pick<GpuPeriodTotals, 'measuredJ' | 'idleJ' | 'staticJ' | 'dynamicJ' | 'unattributedJ'>,
  relative = CONSERVATION_RELATIVE_TOLERANCE,
  absoluteJ = CONSERVATION_ABSOLUTE_TOLERANCE_J,
): boolean {
  const residual = conservationResidual(t).absoluteJ;
  return Number.isFinite(residual) && Math.abs(residual) <= conservationTolerance(t.measuredJ, relative, absoluteJ);
}

/** The worst |residual| in joules over a set of GPU period totals (0 for none): the self-check gauge. */
export function worstResidualJ(totals: readonly GpuPeriodTotals[]): number {
  let worst = 0;
  for (const t of totals) worst = Math.max(worst, Math.abs(conservationResidual(t).absoluteJ));
  return worst;
}
