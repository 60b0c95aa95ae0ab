import { FOLDED_LABEL_KEY } from '../../model/report-keys.js';

/** The value every label falls back to past its cap: reserved, so ingest refuses it as a value. */
export const OTHER_LABEL_VALUE = FOLDED_LABEL_KEY;
/** The value of a label a record does not carry. */
export const ABSENT_LABEL_VALUE = '';

/** Longer values are folded too: they are nearly always ids or payloads, not categories. */
const DEFAULT_MAX_VALUE_LENGTH = 128;

/**
 * Bounds the cardinality of free-form label values (team, feature, model, ...): the first `cap`
 * distinct values of each label keep their name, every later one folds into "(other)". Memory is
 * bounded by cap x labels x maxValueLength. The same instance can serve the metrics and the
 * ledger rollups so both fold the same values. "" (absent) and "(other)" never take a slot.
 */
export class LabelCapper {
  private readonly kept = new Map<string, Set<string>>();
  private readonly foldedCounts = new Map<string, number>();
  private admissions = 0;

  constructor(
    readonly cap: number,
    private readonly maxValueLength = DEFAULT_MAX_VALUE_LENGTH,
  ) {
    if (!Number.isInteger(cap) || cap < 0) throw new RangeError(`LabelCapper: cap must be an integer >= 0, got ${cap}`);
  }

  /** The value to export for `label`: itself, "" when absent, or "(other)" past the cap. */
  value(label: string, value: string | null | undefined): string {
    if (value === undefined || value === null || value === ABSENT_LABEL_VALUE) return ABSENT_LABEL_VALUE;
    if (value === OTHER_LABEL_VALUE) return OTHER_LABEL_VALUE;
    let values = this.kept.get(label);
    if (values === undefined) {
      values = new Set();
      this.kept.set(label, values);
    }
    if (values.has(value)) return value;
    if (values.size < this.cap && value.length <= this.maxValueLength) {
      values.add(value);
      this.admissions += 1;
      return value;
    }
    this.foldedCounts.set(label, (this.foldedCounts.get(label) ?? 0) + 1);
    return OTHER_LABEL_VALUE;
  }

  /** Admit known values first (e.g. from the ledger after a restart), in order, up to the cap. */
  preload(label: string, values: Iterable<string>): void {
    for (const value of values) this.value(label, value);
  }

  /** How many values have been admitted so far: it changes exactly when {@link admitted} does. */
  get revision(): number {
    return this.admissions;
  }

  /** Every label's values that keep their name, in the order they were admitted (for {@link preload} after a restart). */
  admitted(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [label, values] of this.kept) if (values.size > 0) out[label] = [...values];
    return out;
  }

  /** Values of `label` that keep their name, in the order they were admitted. */
  keptValues(label: string): readonly string[] {
    return [...(this.kept.get(label) ?? [])];
  }

  /** How many times a value of `label` was folded into "(other)". */
  folded(label: string): number {
    return this.foldedCounts.get(label) ?? 0;
  }
}
