import { NO_LABEL_KEY } from '../../model/report-keys.js';
import { JOULES_PER_KWH } from '../../model/units.js';

/** Significant digits kept in reports: far below metering accuracy, stable under re-summation. */
const DIGITS = 10;

/** Round to 10 significant digits (report figures; keeps the content hash stable and readable). */
export function round(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x === 0 ? 0 : x;
  return Number(x.toPrecision(DIGITS));
}

export const kwh = (joules: number): number => round(joules / JOULES_PER_KWH);
export const kg = (grams: number): number => round(grams / 1000);

/** a / b, or null when b is zero (no rate without a denominator). */
export function ratio(a: number, b: number): number | null {
  return b > 0 ? round(a / b) : null;
}

export const isoHour = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
export const dayOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
export const monthOf = (ms: number): string => new Date(ms).toISOString().slice(0, 7);

/** Label value as shown: the ledger keeps "" for an absent user label. */
export const labelKey = (value: string): string => (value === '' ? NO_LABEL_KEY : value);
