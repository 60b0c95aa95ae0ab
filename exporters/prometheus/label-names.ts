/**
 * Rules for the user labels (team, feature, ...) that tokenwatt copies from request records onto
 * its energy metrics. Shared by the config schema and TokenwattMetrics so both refuse the same.
 */

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Labels tokenwatt's own metrics use, plus those Prometheus reserves or sets on every target. */
export const RESERVED_LABEL_NAMES: ReadonlySet<string> = new Set([
  'gpu', 'uuid', 'model', 'tier', 'cache_bucket', 'batch_bucket', 'status', 'mode', 'kind', 'simulated',
  'succeeded', 'reason', 'source', 'result', 'label', 'metric', 'le', 'quantile', 'job', 'instance', 'node',
]);

/**
 * Identifiers make one series per request or user: unbounded cardinality that the value cap
 * would fold into "(other)" anyway. They belong in the ledger, not in metric labels.
 */
const IDENTIFIER_LIKE = /(^|_)(id|ids|uid|uuid)$|^(user|username|email|session|attempt)$/i;

/** At most this many user labels: each multiplies the series of tokenwatt_energy_joules_total. */
export const MAX_USER_LABELS = 4;

/** One problem with one user label name (index null: a problem with the list as a whole). */
export interface LabelNameProblem {
  readonly index: number | null;
  readonly reason: string;
}

/** Every problem with a list of user label names (empty when they are fine). */
export function userLabelNameProblems(names: readonly string[]): LabelNameProblem[] {
  const problems: LabelNameProblem[] = [];
  if (names.length > MAX_USER_LABELS) problems.push({ index: null, reason: `at most ${MAX_USER_LABELS} user labels (each multiplies the energy series), got ${names.length}` });
  const seen = new Set<string>();
  names.forEach((name, index) => {
    const problem = (reason: string): void => {
      problems.push({ index, reason });
    };
    if (!LABEL_NAME.test(name) || name.startsWith('__')) problem('not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)');
    else if (RESERVED_LABEL_NAMES.has(name)) problem('reserved (tokenwatt or Prometheus uses this label)');
    else if (IDENTIFIER_LIKE.test(name)) problem('looks like a request or user identifier; identifiers must not be metric labels');
    if (seen.has(name)) problem('listed twice');
    seen.add(name);
  });
  return problems;
}
