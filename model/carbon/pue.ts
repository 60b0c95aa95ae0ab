import { CarbonInputError } from './carbon-input-error.js';

/**
 * Power usage effectiveness: total facility energy / IT energy. The default is the industry
 * average of the Uptime Institute Global Data Center Survey 2023 (1.58, flat since 2020).
 * It is deliberately conservative: hyperscale sites report 1.1-1.2, so configure the
 * site's own figure; the report states which one was used.
 */
export const DEFAULT_PUE = 1.58;
export const DEFAULT_PUE_SOURCE =
  'Uptime Institute Global Data Center Survey 2023: industry average annual PUE 1.58 (default; configure the site value)';
export const MIN_PUE = 1.0;
export const MAX_PUE = 3.0;

/** Refuse a PUE that cannot be true: below 1.0 is impossible, above 3.0 is not a credible data centre. */
export function checkPue(pue: number, field = 'carbon.pue'): number {
  if (!Number.isFinite(pue)) throw new CarbonInputError(field, `must be a finite number (got ${String(pue)})`);
  if (pue < MIN_PUE) {
    throw new CarbonInputError(
      field,
      `must be >= ${MIN_PUE} (got ${pue}): PUE is facility energy / IT energy, so it cannot be below 1`,
    );
  }
  if (pue > MAX_PUE) {
    throw new CarbonInputError(field, `must be <= ${MAX_PUE} (got ${pue}): no credible data centre runs above 3.0; check the unit`);
  }
  return pue;
}

/** Facility energy of an amount of IT energy (GPU + host): what the grid delivers to the site. */
export function facilityEnergy(itEnergy: number, pue: number): number {
  return itEnergy * pue;
}
