/**
 * Embodied emissions per the Software Carbon Intensity specification (ISO/IEC 21031:2024):
 *   M = TE x (TiR / EL) x RS
 * TE: total embodied emissions of the hardware (manufacture, transport, end of life);
 * TiR: time the hardware was reserved for the software in the period; EL: expected lifespan;
 * RS: share of the hardware's resources reserved (1 for a dedicated GPU node).
 */
export interface EmbodiedInput {
  /** TE, kgCO2e for one unit (one GPU, or one host without its GPUs). */
  readonly totalKgCo2e: number;
  /** TiR, hours. */
  readonly reservedHours: number;
  /** EL, years. */
  readonly lifespanYears: number;
  /** RS, 0..1. */
  readonly reservedShare: number;
}

export const HOURS_PER_YEAR = 365.25 * 24;

export function embodiedKgCo2e(input: EmbodiedInput): number {
  if (input.lifespanYears <= 0) return 0;
  return input.totalKgCo2e * (input.reservedHours / (input.lifespanYears * HOURS_PER_YEAR)) * input.reservedShare;
}

/**
 * Defaults when the operator has no vendor product carbon footprint: the estimates Luccioni,
 * Viguier and Ligozat used for the BLOOM training cluster (JMLR 24(253), 2023): about 150 kgCO2e
 * per GPU and 2,500 kgCO2e per server node, replaced after 6 years. They are literature
 * estimates, labelled as such in every report; configure the hardware's own PCF when you have it.
 * The three figures were taken as commonly cited, not re-read from the paper: the source string says so.
 */
export const DEFAULT_EMBODIED = {
  gpuKgCo2e: 150,
  hostKgCo2e: 2500,
  lifespanYears: 6,
  reservedShare: 1,
  source:
    'default literature estimate: Luccioni, Viguier, Ligozat, "Estimating the Carbon Footprint of BLOOM, a 176B Parameter Language Model", JMLR 24(253), 2023 (about 150 kgCO2e per GPU, 2,500 kgCO2e per server node, 6-year replacement; figures as commonly cited from that paper, not re-checked against its text: verify, or configure the hardware\'s own product carbon footprint)',
} as const;
