/**
 * Bad carbon input (configuration, region, intensity file): what is wrong and where.
 * `field` names the configuration key or file column; `line` is 1-based when it comes from a file.
 */
export class CarbonInputError extends Error {
  override readonly name = 'CarbonInputError';

  constructor(
    readonly field: string,
    readonly reason: string,
    readonly line?: number,
  ) {
    super(line === undefined ? `${field}: ${reason}` : `${field}, line ${line}: ${reason}`);
  }
}

/** Several problems in one input, reported together so that one run shows them all. */
export class CarbonInputErrors extends Error {
  override readonly name = 'CarbonInputErrors';

  constructor(
    readonly source: string,
    readonly problems: readonly CarbonInputError[],
    readonly omitted = 0,
  ) {
    const shown = problems.map((p) => `  - ${p.message}`).join('\n');
    const more = omitted > 0 ? `\n  ... and ${omitted} more` : '';
    super(`${source}: ${problems.length + omitted} problem(s)\n${shown}${more}`);
  }
}
