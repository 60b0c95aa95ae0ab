/** The period holds no data: exporting it would produce a report of zeros that looks like a result. */
export class NoDataError extends Error {
  override readonly name = 'NoDataError';
}

const MAX_SHOWN = 30;

/** --verify found the report changed, or no longer reproducible from the ledger. */
export class VerificationError extends Error {
  override readonly name = 'VerificationError';

  constructor(
    message: string,
    readonly differences: readonly string[],
  ) {
    const shown = differences.slice(0, MAX_SHOWN).map((d) => `  - ${d}`);
    if (differences.length > MAX_SHOWN) shown.push(`  ... and ${differences.length - MAX_SHOWN} more`);
    super(shown.length > 0 ? `${message}\n${shown.join('\n')}` : message);
  }
}

/** --merge cannot build a fleet report from these node reports without double counting or mixing periods. */
export class MergeError extends Error {
  override readonly name = 'MergeError';
}

/** A report that does not match schemas/esg-report.schema.json (never written). */
export class ReportSchemaError extends Error {
  override readonly name = 'ReportSchemaError';

  constructor(readonly problems: readonly string[]) {
    super(`report does not match schemas/esg-report.schema.json:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}
