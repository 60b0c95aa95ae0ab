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

/** The record labels the report breaks down by (the hourly usage rows keep these two). */
export const REPORT_LABELS = ['team', 'feature'] as const;

const WHY: ReadonlyMap<string, string> = new Map([
  [NO_LABEL_KEY, 'the ESG report keys its rows of requests without a team or feature so'],
  [UNALLOCATED_KEY, 'the ESG report keys its row of facility energy that no request used so'],
]);

/** Why `value` may not be a model, tier, team or feature, or null when it may. */
export function reservedReportKeyReason(value: string): string | null {
  // Cheap first test: every reserved key starts with "(".
  if (value.charCodeAt(0) !== 40) return null;
  const why = WHY.get(value);
  return why === undefined ? null : `${JSON.stringify(value)} is reserved: ${why}`;
}

/** A zod check refusing reserved report keys (for `.superRefine`). */
export function refuseReservedReportKey(value: string, ctx: z.RefinementCtx): void {
  const reason = reservedReportKeyReason(value);
  if (reason !== null) ctx.addIssue({ code: 'custom', message: reason });
}
