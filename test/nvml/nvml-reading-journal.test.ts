import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createReadingJournal, ReadingJournalReader, ReadingJournalWriter } from '../../collectors/nvml/nvml-reading-journal.js';

test('journal: readings after a position come back in order, nulls and the averaged flag kept', () => {
  const buffer = createReadingJournal(8);
  const writer = new ReadingJournalWriter(buffer);
  const reader = new ReadingJournalReader(buffer);
  writer.write(0, 1000, 200_000, 5_000_000, false);
  writer.write(1, 1000, null, 7_000_123, true);
  const posted = writer.head;
  writer.write(0, 1050, 201_000, null, false);
  writer.write(1, 1050, 300_500, 7_000_140, true);
  assert.deepEqual(reader.since(posted), {
    readings: [
      { index: 0, timestampMs: 1050, powerMw: 201_000, energyMj: null, powerAveraged: false },
      { index: 1, timestampMs: 1050, powerMw: 300_500, energyMj: 7_000_140, powerAveraged: true },
    ],
    overwritten: 0,
    head: 4,
  });
  assert.equal(reader.since(0).readings[1]?.powerMw, null);
  assert.deepEqual(reader.since(4).readings, []);
});

test('journal: beyond its capacity the oldest readings are overwritten and counted; positions wrap around int32', () => {
  const buffer = createReadingJournal(4);
  new Int32Array(buffer, 0, 1)[0] = 2 ** 31 - 2; // a worker that has run for a long time
  const writer = new ReadingJournalWriter(buffer);
  const reader = new ReadingJournalReader(buffer);
  const from = writer.head;
  for (let i = 0; i < 6; i++) writer.write(i, 1000 + i, i, i, false);
  const got = reader.since(from);
  assert.equal(got.overwritten, 2);
  assert.deepEqual(got.readings.map((r) => r.index), [2, 3, 4, 5]);
  assert.equal(got.head, (from + 6) | 0);
  assert.ok(got.head < 0, 'wrapped');
  assert.throws(() => createReadingJournal(6), /power of two/);
});
