/**
 * Energy consumed between two readings of a counter that wraps to 0 after `maxRange` (RAPL's
 * energy_uj wraps at max_energy_range_uj). A reading below the previous one is one wrap; more
 * than one wrap between two readings cannot be seen, which is why RAPL is read well within
 * max_energy_range_uj / max power (minutes on servers).
 */
export function wrappedDelta(previous: number, next: number, maxRange: number | null): { delta: number; wrapped: boolean } {
  if (next >= previous) return { delta: next - previous, wrapped: false };
  if (maxRange === null || maxRange < previous) return { delta: next, wrapped: true }; // range unknown: count from 0
  return { delta: maxRange - previous + next, wrapped: true };
}
