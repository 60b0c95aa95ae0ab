/**
 * A bad option value or configuration that a command finds itself (commander checks only the
 * options' shape): the CLI exits 2 for it, as for commander's usage errors, so that 1 keeps
 * meaning bad input data.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
