/**
 * One published grid emission factor with its provenance. Every factor that reaches a report
 * carries where it came from, for which year, and whether it counts combustion only or the
 * whole life cycle of generation (the two differ by 5-20% on fossil-heavy grids).
 */
export interface GridIntensityFactor {
  /** Lookup key: ISO 3166 alpha-2 ("FR"), "egrid:SRVC", "gcp:europe-west4", "aws:us-east-1", "azure:westeurope", "world". */
  readonly id: string;
  readonly name: string;
  readonly kind: 'country' | 'egrid-subregion' | 'cloud-region' | 'world';
  /** Grams CO2-equivalent per kWh of electricity, converted from the published value when needed. */
  readonly gCo2ePerKwh: number;
  /** The value and unit exactly as published (before any conversion). */
  readonly publishedValue: number;
  readonly publishedUnit: string;
  /** Who published it, which table or dataset. */
  readonly source: string;
  readonly sourceUrl: string;
  /** Data year the factor describes (not the release year). */
  readonly year: number;
  /** lifecycle: includes upstream fuel supply and plant construction; combustion: stack emissions only. */
  readonly basis: FactorBasis;
  /** For a cloud region: the table row whose value it takes, and why. */
  readonly derivedFrom?: string;
  /** Caveats a reader must see (transcription, proxy geography, definition quoted from the source). */
  readonly note?: string;
}

export type FactorBasis = 'lifecycle' | 'combustion' | 'unspecified';

/** Provenance of any factor or parameter used in a report (grid, PUE, embodied, market instrument). */
export interface FactorProvenance {
  /** What the factor is used for: location, market-instrument, market-supplier, market-residual, pue, embodied-gpu, ... */
  readonly role: string;
  readonly id: string;
  /** null when the value varies (e.g. the location-based fallback of the market method). */
  readonly value: number | null;
  readonly unit: string;
  readonly source: string;
  readonly year: number | null;
  readonly basis: FactorBasis | null;
  readonly note: string | null;
}
