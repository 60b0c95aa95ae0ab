/**
 * The key of a request_id in the ledger's id index (table request_ids, schema version 5): a 53-bit
 * hash, so that an index entry is a few bytes and a batch of new ids can be merged into the index
 * in hash order (see {@link RecentRequestIds}). A hash only narrows the search: every candidate row
 * is compared by its full request_id, so two ids with one hash are still two requests.
 *
 * The value is stored in ledger files: changing this function orphans every stored entry (their
 * ids would no longer be found, and a resent record would be counted twice). Never change it;
 * test/ledger/request-id-index.test.ts pins its output.
 *
 * cyrb53 (bryc, public domain): two 32-bit multiply-xorshift lanes over the UTF-16 code units,
 * folded into 53 bits (a JavaScript safe integer, an SQLite INTEGER).
 */
export function requestIdHash(id: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}
