import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger } from '../../agent/ledger.js';
import { RETENTION, T0, request, tempLedger } from './temp-ledger.js';

test('records stored in time and duplicates are counted with the records, and kept across a re-open (what tokenwatt_records_total is seeded from)', (t) => {
  const { ledger, path, cleanup } = tempLedger();
  t.after(cleanup);
  const late = (r: { endMs: number }): boolean => r.endMs < T0 + 2000;
  // req-1 is late; req-2 and req-3 in time; req-2 again is a duplicate.
  const first = ledger.insertRequests([request(1), request(2), request(3)], late);
  assert.equal(first.inserted.length, 3);
  const again = ledger.insertRequests([request(2)], late);
  assert.deepEqual(again.duplicates, ['req-2']);
  // A duplicate the caller judged itself (ingest, from a source's sightings).
  ledger.addDuplicateRecords(2);
  const counts = (l: Ledger): [number, number] => [l.counterTotals().quality.acceptedRecords, l.counterTotals().quality.duplicateRecords];
  assert.deepEqual(counts(ledger), [2, 3]);
  ledger.close();
  const reopened = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  t.after(() => reopened.close());
  assert.deepEqual(counts(reopened), [2, 3]);
  // Taken back: duplicates of a submission then answered with an error (ingest); never a fraction.
  reopened.addDuplicateRecords(-1);
  assert.deepEqual(counts(reopened), [2, 2]);
  assert.throws(() => reopened.addDuplicateRecords(0.5), /addDuplicateRecords: n must be a whole number, got 0.5/);
});
