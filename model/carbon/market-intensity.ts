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
  /**
   * First day (UTC, YYYY-MM-DD) of the consumption the instrument may be applied to: a contract's
   * term, or the period a certificate was retired for. Absent: no start.
   */
  readonly validFrom?: string | undefined;
  /** Last day (UTC, YYYY-MM-DD, inclusive) of that consumption. Absent: no end. */
  readonly validThrough?: string | undefined;
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
  /** gCO2e/kWh of the hour starting at `hourStartMs`, given that hour's location-based figure. */
  gPerKwhAt(hourStartMs: number, locationGPerKwh: number): number;
  /** Share of consumption the instruments valid in that hour cover. */
  coveredShareAt(hourStartMs: number): number;
  /** Lowest and highest covered share over the report period (over all time when none was given). */
  readonly coveredShare: { readonly min: number; readonly max: number };
  /** What the uncovered remainder uses. */
  readonly remainder: 'supplier' | 'residual-mix' | 'location-average';
  readonly provenance: readonly FactorProvenance[];
}

/** The consumption period being reported: [fromMs, toMs). */
export interface MarketReportPeriod {
  readonly fromMs: number;
  readonly toMs: number;
}

const DAY_MS = 86_400_000;

/** An instrument's validity as [fromMs, toMs), whole UTC days; unbounded ends are infinite. */
interface Validity {
  readonly fromMs: number;
  readonly toMs: number;
}

/** The validity of an instrument; a date that is not a real YYYY-MM-DD day is a CarbonInputError. */
export function instrumentValidity(instrument: Pick<MarketInstrument, 'validFrom' | 'validThrough'>, field = 'carbon.market.instruments'): Validity {
  const fromMs = instrument.validFrom === undefined ? Number.NEGATIVE_INFINITY : dayStartMs(instrument.validFrom, `${field}.validFrom`);
  const toMs = instrument.validThrough === undefined ? Number.POSITIVE_INFINITY : dayStartMs(instrument.validThrough, `${field}.validThrough`) + DAY_MS;
  if (!(toMs > fromMs)) throw new CarbonInputError(`${field}.validThrough`, `${instrument.validThrough} is before validFrom ${instrument.validFrom}`);
  return { fromMs, toMs };
}

/** Start of the UTC day `text` (YYYY-MM-DD), refusing days that do not exist (2026-02-30). */
export function dayStartMs(text: string, field: string): number {
  const parsed = parseDay(text);
  if (typeof parsed === 'string') throw new CarbonInputError(field, `${parsed} (got "${text}")`);
  return parsed;
}

/** Start of the UTC day `text` (YYYY-MM-DD), or why it is not one. */
export function parseDay(text: string): number | string {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (match === null) return 'must be a date, YYYY-MM-DD';
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0-99 as 1900-1999
  if (at.getUTCFullYear() !== year || at.getUTCMonth() !== month - 1 || at.getUTCDate() !== day) return 'is not a day of the calendar';
  return at.getTime();
}

/**
 * The highest sum of coverage shares at any one time. Shares are step functions of time that rise
 * at a validity's start, so the highest sum is reached at some start (or before every start).
 */
export function peakCoverage(instruments: readonly Pick<MarketInstrument, 'coverageShare' | 'validFrom' | 'validThrough'>[]): number {
  const spans = instruments.map((i) => ({ share: i.coverageShare, ...instrumentValidity(i) }));
  let peak = 0;
  for (const t of [Number.NEGATIVE_INFINITY, ...spans.map((s) => s.fromMs)]) {
    const sum = spans.reduce((acc, s) => (s.fromMs <= t && t < s.toMs ? acc + s.share : acc), 0);
    peak = Math.max(peak, sum);
  }
  return peak;
}

/**
 * Resolve the market-based method of the GHG Protocol Scope 2 Guidance (dual reporting): the
 * covered share takes each instrument's rate; the rest takes the supplier-specific rate, else the
 * residual mix, else the location-based grid average (the Guidance's last resort, flagged in the
 * report because it double counts renewable claims already sold to others).
 *
 * An instrument counts only in the hours of its validity (`validFrom` .. `validThrough`): Scope 2
 * Quality Criterion 4 asks that instruments be issued and redeemed as close as possible to the
 * period of consumption they are applied to. An instrument with no validity counts in every hour,
 * and the factor list says so, with its `year` when that is not a year of the report period.
 */
export function resolveMarketIntensity(market: MarketConfig | undefined, period?: MarketReportPeriod): MarketIntensity {
  const instruments = market?.instruments ?? [];
  const spans = instruments.map((i, index) => ({ instrument: i, ...instrumentValidity(i, `carbon.market.instruments.${index}`) }));
  const peak = peakCoverage(instruments);
  if (peak > 1 + 1e-9) {
    throw new CarbonInputError('carbon.market.instruments', `coverage shares add up to ${round(peak)} at one time; they cannot exceed 1 (100% of consumption)`);
  }
  const activeAt = (hourStartMs: number) => spans.filter((s) => s.fromMs <= hourStartMs && hourStartMs < s.toMs);
  const coveredShareAt = (hourStartMs: number): number => activeAt(hourStartMs).reduce((sum, s) => sum + s.instrument.coverageShare, 0);
  const coveredShare = coveredRange(spans, period, coveredShareAt);
  const fixedRest = market?.supplier ?? market?.residualMix;
  const remainder = market?.supplier ? 'supplier' : market?.residualMix ? 'residual-mix' : 'location-average';
  const provenance: FactorProvenance[] = spans.map(({ instrument: i, fromMs, toMs }, index) => ({
    role: 'market-instrument',
    id: `${i.kind}:${i.name || index}`,
    value: i.gCo2ePerKwh,
    unit: `gCO2e/kWh over ${round(i.coverageShare * 100)}% of consumption${validityText(i)}`,
    source: i.source,
    year: i.year ?? null,
    basis: null,
    note: validityNote(i, { fromMs, toMs }, period),
  }));
  const restText = restShareText(coveredShare);
  if (fixedRest) {
    provenance.push({
      role: remainder === 'supplier' ? 'market-supplier' : 'market-residual-mix',
      id: remainder,
      value: fixedRest.gCo2ePerKwh,
      unit: `gCO2e/kWh over ${restText} of consumption`,
      source: fixedRest.source,
      year: fixedRest.year ?? null,
      basis: null,
      note: null,
    });
  } else if (coveredShare.min < 1) {
    provenance.push({
      role: 'market-residual-mix',
      id: 'location-average-fallback',
      value: null,
      unit: `location-based gCO2e/kWh over ${restText} of consumption`,
      source: 'no supplier rate or residual mix configured (carbon.market.supplier / carbon.market.residualMix)',
      year: null,
      basis: null,
      note: 'GHG Protocol Scope 2 Guidance allows the grid average only when no residual mix exists; it overstates the clean share. Configure a residual mix (e.g. AIB European Residual Mixes, Green-e US residual mix).',
    });
  }
  return {
    coveredShare,
    coveredShareAt,
    remainder,
    provenance,
    gPerKwhAt: (hourStartMs, locationG) => {
      let covered = 0;
      let instrumentG = 0;
      for (const s of spans) {
        if (s.fromMs <= hourStartMs && hourStartMs < s.toMs) {
          covered += s.instrument.coverageShare;
          instrumentG += s.instrument.coverageShare * s.instrument.gCo2ePerKwh;
        }
      }
      return instrumentG + Math.max(0, 1 - covered) * (fixedRest ? fixedRest.gCo2ePerKwh : locationG);
    },
  };
}

/** The covered share's range over the period: it changes only at validity bounds inside it. */
function coveredRange(spans: readonly Validity[], period: MarketReportPeriod | undefined, coveredShareAt: (ms: number) => number): { min: number; max: number } {
  const from = period?.fromMs ?? Number.NEGATIVE_INFINITY;
  const to = period?.toMs ?? Number.POSITIVE_INFINITY;
  const points = [from];
  for (const s of spans) for (const t of [s.fromMs, s.toMs]) if (t > from && t < to) points.push(t);
  const shares = points.map(coveredShareAt);
  return { min: Math.min(...shares), max: Math.max(...shares) };
}

function restShareText(covered: { min: number; max: number }): string {
  const most = round((1 - covered.min) * 100);
  const least = round((1 - covered.max) * 100);
  return most === least ? `${most}%` : `${least}% to ${most}% (by hour)`;
}

function validityText(i: MarketInstrument): string {
  if (i.validFrom === undefined && i.validThrough === undefined) return '';
  return `, valid ${i.validFrom ?? 'from the start'} through ${i.validThrough ?? 'no end'}`;
}

const yearOf = (ms: number): number => new Date(ms).getUTCFullYear();

/** What the report should say about when the instrument applies, or null when it covers the whole period. */
function validityNote(i: MarketInstrument, validity: Validity, period: MarketReportPeriod | undefined): string | null {
  if (i.validFrom === undefined && i.validThrough === undefined) {
    const years = period === undefined ? null : { first: yearOf(period.fromMs), last: yearOf(period.toMs - 1) };
    if (years !== null && i.year !== undefined && (i.year < years.first || i.year > years.last)) {
      return `year ${i.year} is not a year of the report period, and no validFrom/validThrough is set, so it is applied to every hour: Scope 2 Quality Criterion 4 asks for instruments issued and redeemed as close as possible to the consumption period`;
    }
    return 'no validFrom/validThrough set: applied to every hour of the report period';
  }
  if (period === undefined) return null;
  if (validity.toMs <= period.fromMs || validity.fromMs >= period.toMs) return 'valid outside the report period: covers none of it';
  if (validity.fromMs > period.fromMs || validity.toMs < period.toMs) return 'valid for part of the report period: the other hours fall to the remainder';
  return null;
}

const round = (x: number): number => Math.round(x * 1e6) / 1e6;
