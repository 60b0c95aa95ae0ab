import type { GpuPeriodTotals } from './attribution-types.js';
import { joules, type Joules } from './units.js';

/**
 * Marginal and fully loaded energy (DESIGN.md "Attribution": report both; never hide idle energy).
 *
 * - Marginal: a request's attributed joules (static + dynamic), what it drew while it ran.
 * - Fully loaded: the same scaled by the node's factor over a period,
 *     factor = (attributed + idle + unattributed + host) / attributed,
 *   so the fully loaded joules of all requests add up to everything the node spent: idle GPUs kept
 *   warm, energy that could not be attributed, and host (CPU, DRAM) energy. Facility overhead (PUE)
 *   is applied on top by the carbon model, not here.
 * - With nothing attributed there is no work to spread energy over: the factor is null.
 */

/** The parts of a node's energy over a period that the factor spreads. */
export interface EnergyBreakdown {
  readonly attributedJ: number;
  readonly idleJ: number;
  readonly unattributedJ: number;
  readonly hostJ: number;
}

/** Breakdown of a set of GPU period totals (one node, one or more periods) plus host energy. */
export function breakdownOf(totals: readonly GpuPeriodTotals[], hostJ = 0): EnergyBreakdown {
  let attributedJ = 0;
  let idleJ = 0;
  let unattributedJ = 0;
  for (const t of totals) {
    attributedJ += t.staticJ + t.dynamicJ;
    idleJ += t.idleJ;
    unattributedJ += t.unattributedJ;
  }
  return { attributedJ, idleJ, unattributedJ, hostJ: Number.isFinite(hostJ) && hostJ > 0 ? hostJ : 0 };
}

/** (attributed + idle + unattributed + host) / attributed, or null when nothing was attributed. */
export function fullyLoadedFactor(b: EnergyBreakdown): number | null {
  if (!(b.attributedJ > 0)) return null;
  return (b.attributedJ + b.idleJ + b.unattributedJ + b.hostJ) / b.attributedJ;
}

/** Fully loaded joules of a request's marginal joules, or null when the factor is null. */
export function fullyLoadedJoules(marginal: number, factor: number | null): Joules | null {
  return factor === null ? null : joules(marginal * factor);
}

/** Marginal joules: the attributed joules themselves (named so call sites say which they report). */
export function marginalJoules(attributed: number): Joules {
  return joules(attributed);
}
