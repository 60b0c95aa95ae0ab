/**
 * Software Carbon Intensity (ISO/IEC 21031:2024): SCI = (E x I + M) per R.
 * E x I is location-based: the specification excludes market-based instruments, and offsets
 * are not an input at all, so neither can lower the score. R is the functional unit.
 */
export interface SciInput {
  /** E x I: operational emissions, gCO2e, location-based (facility energy x grid intensity). */
  readonly operationalGCo2e: number;
  /** M: embodied emissions, gCO2e. */
  readonly embodiedGCo2e: number;
  /** R: number of functional units (tokens, tasks); 0 gives null (no rate without units). */
  readonly functionalUnits: number;
}

export function sciPerUnit(input: SciInput): number | null {
  if (!(input.functionalUnits > 0)) return null;
  return (input.operationalGCo2e + input.embodiedGCo2e) / input.functionalUnits;
}
