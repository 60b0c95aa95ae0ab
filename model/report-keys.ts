import type { z } from 'zod';

/**
 * Keys the ESG report gives rows of its own in the dimensions it breaks down by (model, tier, team,
 * feature). A request's value equal to one would share that row's key (and be summed with it in a
 * fleet merge), so such values are refused where they come in: records and the config.
 */

/** The row of requests without the label (the ledger keeps an absent label as ""). */
export const NO_LABEL_KEY = '(none)';
/** The row of facility energy in node-hours that no request used. */
export const UNALLOCATED_KEY = '(unallocated)';

/**
 * The value metric labels (and the ledger's team and feature) fold into past their cap. Reserved,
 * unlike a plain word such as "other", so that a real value can never merge with the fold.
 */
export const FOLDED_LABEL_KEY = '(other)';

/** The record labels the report breaks down by (the hourly usage rows keep these two). */
export const REPORT_LABELS = ['team', 'feature'] as const;
const REPORTED: ReadonlySet<string> = new Set(REPORT_LABELS);

const FOLDED_WHY = 'values past labels.cap fold into it in the metrics and the ESG report';
const WHY: ReadonlyMap<string, string> = new Map([
  [NO_LABEL_KEY, 'the ESG report keys its rows of requests without a team or feature so'],
  [UNALLOCATED_KEY, 'the ESG report keys its row of facility energy that no request used so'],
  [FOLDED_LABEL_KEY, FOLDED_WHY],
]);

/** Why `value` may not be a model, tier, team or feature, or null when it may. */
export function reservedReportKeyReason(value: string): string | null {
  // Cheap first test: every reserved key starts with "(".
  if (value.charCodeAt(0) !== 40) return null;
  const why = WHY.get(value);
  return why === undefined ? null : `${JSON.stringify(value)} is reserved: ${why}`;
}

/**
 * Why `value` may not be the value of record label `name`, or null when it may: team and feature
 * refuse every reserved key; any other label (it may be a metric label, labels.user) the fold value.
 */
export function reservedLabelValueReason(name: string, value: string): string | null {
  if (REPORTED.has(name)) return reservedReportKeyReason(value);
  return value === FOLDED_LABEL_KEY ? `${JSON.stringify(value)} is reserved: ${FOLDED_WHY}` : null;
}

/** A zod check refusing reserved report keys (for `.superRefine`). */
export function refuseReservedReportKey(value: string, ctx: z.RefinementCtx): void {
  const reason = reservedReportKeyReason(value);
  if (reason !== null) ctx.addIssue({ code: 'custom', message: reason });
}
