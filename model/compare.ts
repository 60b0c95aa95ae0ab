/** Order of strings by UTF-16 code units: the same on every machine and in every locale. */
export function compareStrings(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
