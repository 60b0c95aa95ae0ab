import { CarbonInputError } from './carbon-input-error.js';
import type { FactorProvenance } from './grid-intensity-factor.js';

/** A contractual instrument (GHG Protocol Scope 2 Guidance, ch. 6): PPA, REC/GO, green tariff. */
export interface MarketInstrument {
  readonly kind: 'ppa' | 'rec' | 'go' | 'green-tariff' | 'other';
  readonly name: string;
  /** Share of the site's consumption the instrument covers, 0..1. */
  readonly coverageShare: number;
  /** Emission rate conveyed by the instrument; 0 for renewable certificates. */
  readonly gCo2ePerKwh: number;
  readonly source: string;
  readonly year?: number | undefined;
}

export interface PublishedRate {
  readonly gCo2ePerKwh: number;
  readonly source: string;
  readonly year?: number | undefined;
}

export interface MarketConfig {
  readonly instruments: readonly MarketInstrument[];
  /** Supplier-specific emission rate for consumption not covered by instruments. */
  readonly supplier?: PublishedRate | undefined;
  /** Residual mix for consumption covered neither by instruments nor by a supplier rate. */
  readonly residualMix?: PublishedRate | undefined;
}

/** Market-based intensity: instruments first, then supplier rate, then residual mix, then (disclosed) grid average. */
export interface MarketIntensity {
  gPerKwhAt(hourStartMs: number, locationGPerKwh: number): number;
  readonly coveredShare: number;
  /** What the uncovered remainder uses. */
  readonly remainder: 'supplier' | 'residual-mix' | 'location-average';
  readonly provenance: readonly FactorProvenance[];
}

/**
 * Resolve the market-based method of the GHG Protocol Scope 2 Guidance (dual reporting): the
 * covered share takes each instrument's rate; the rest takes the supplier-specific rate, else the
 * residual mix, else the location-based grid average (the Guidance's last resort, flagged in the
 * report because it double counts renewable claims already sold to others).
 */
export function resolveMarketIntensity(market: MarketConfig | undefined): MarketIntensity {
  const instruments = market?.instruments ?? [];
  const coveredShare = instruments.reduce((s, i) => s + i.coverageShare, 0);
  if (coveredShare > 1 + 1e-9) {
    throw new CarbonInputError('carbon.market.instruments', `coverage shares add up to ${round(coveredShare)}; they cannot exceed 1 (100% of consumption)`);
  }
  const instrumentG = instruments.reduce((s, i) => s + i.coverageShare * i.gCo2ePerKwh, 0);
  const rest = Math.max(0, 1 - coveredShare);
  const fixedRest = market?.supplier ?? market?.residualMix;
  const remainder = market?.supplier ? 'supplier' : market?.residualMix ? 'residual-mix' : 'location-average';
  const provenance: FactorProvenance[] = instruments.map((i, index) => ({
    role: 'market-instrument',
    id: `${i.kind}:${i.name || index}`,
    value: i.gCo2ePerKwh,
    unit: `gCO2e/kWh over ${round(i.coverageShare * 100)}% of consumption`,
    source: i.source,
    year: i.year ?? null,
    basis: null,
    note: null,
  }));
  if (fixedRest) {
    provenance.push({
      role: remainder === 'supplier' ? 'market-supplier' : 'market-residual-mix',
      id: remainder,
      value: fixedRest.gCo2ePerKwh,
      unit: `gCO2e/kWh over ${round(rest * 100)}% of consumption`,
      source: fixedRest.source,
      year: fixedRest.year ?? null,
      basis: null,
      note: null,
    });
  } else if (rest > 0) {
    provenance.push({
      role: 'market-residual-mix',
      id: 'location-average-fallback',
      value: null,
      unit: `location-based gCO2e/kWh over ${round(rest * 100)}% of consumption`,
      source: 'no supplier rate or residual mix configured (carbon.market.supplier / carbon.market.residualMix)',
      year: null,
      basis: null,
      note: 'GHG Protocol Scope 2 Guidance allows the grid average only when no residual mix exists; it overstates the clean share. Configure a residual mix (e.g. AIB European Residual Mixes, Green-e US residual mix).',
    });
  }
  return {
    coveredShare,
    remainder,
    provenance,
    gPerKwhAt: (_hour, locationG) => instrumentG + rest * (fixedRest ? fixedRest.gCo2ePerKwh : locationG),
  };
}

const round = (x: number): number => Math.round(x * 1e6) / 1e6;
