/**
 * One object for each value that records repeat: a request file of a million records names a few
 * models, tiers, label sets and GPU lists, and each parsed record had its own copy of them (~150
 * bytes a record). Values are read-only once in a record, so records can share them. At most
 * MAX_SHARED distinct values of each kind are remembered, so a file whose values never repeat
 * costs a bounded table more than before, not a second copy of everything.
 */
export class SharedValues {
  private readonly strings = new Map<string, string>();
  private readonly labelSets = new Map<string, Readonly<Record<string, string>>>();
  private readonly lists = new Map<string, readonly string[]>();

  string(value: string): string {
    return shared(this.strings, value, value);
  }

  /** Label sets with the same names and values in the same order are one object. */
  labels(value: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
    return shared(this.labelSets, JSON.stringify(value), value);
  }

  /** Lists of the same strings in the same order are one array. */
  list(value: readonly string[]): readonly string[] {
    return shared(this.lists, JSON.stringify(value), value);
  }
}

export const MAX_SHARED = 10_000;

function shared<T>(known: Map<string, T>, key: string, value: T): T {
  const found = known.get(key);
  if (found !== undefined) return found;
  if (known.size < MAX_SHARED) known.set(key, value);
  return value;
}
