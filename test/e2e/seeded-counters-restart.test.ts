import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { series } from '../exporters/prometheus-exposition.js';
import { eventually, firstSample, startAgent } from './agent-process.js';

/**
 * The covered-time, host-energy and records counters go on from the ledger after a restart, as the
 * energy counters do: the ESG export's Prometheus path reads their increase(), which a fall to 0
 * would read as a counter reset, and what the stopped agent added after its last scrape would be lost.
 */


test('tokenwatt_gpu_covered_seconds_total and tokenwatt_host_energy_joules_total go on from the ledger after a restart', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-seeded-restart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'tokenwatt.yaml');
  writeFileSync(config, 'hostPower: { overheadW: 500 }\n');
  // A 5 s lateness: the in-time records (starting "now") stay in time unless the post takes 5 s to
  // be taken in (with 1 s, a slow machine's pause made them late, and the wait for 3 results timed out).
  const args = ['run', '--config', config, '--power', 'simulated', '--db', join(dir, 'agent.db'), '--settle-lateness', '5', '--settle-period', '1'];
  const counters = [
    'tokenwatt_gpu_covered_seconds_total', 'tokenwatt_host_energy_joules_total', 'tokenwatt_records_total', 'tokenwatt_late_records_total',
    'tokenwatt_energy_joules_total', 'tokenwatt_tokens_total', 'tokenwatt_requests_total',
  ];

  const firstStartS = Date.now() / 1000;
  const first = await startAgent(args);
  // Stopped even when an assertion fails first: left running, it held the test file open for ever.
  t.after(() => first.stop());
  // Records in time, one of them sent twice (a duplicate), and one late (it ended before the agent started).
  await firstSample(first);
  const now = Date.now();
  const line = (i: number, startMs: number): string =>
    JSON.stringify({ request_id: `r-${i}`, model: 'm', gpus: [0], start: startMs, end: startMs + 200, prompt_tokens: 10, completion_tokens: 5, labels: { team: 'a' } });
  const posted = await first.post('/v1/requests', [line(1, now), line(2, now), line(3, now - 3_600_000)].join('\n'));
  assert.equal(posted.status, 202, posted.body);
  // Said here, not left to the wait below to time out on: only the hour-old record is late.
  assert.deepEqual(JSON.parse(posted.body), { accepted: 3, duplicates: 0, late: 1, rejected: 0 });
  assert.equal((await first.post('/v1/requests', line(1, now))).status, 202);
  // The last scrape before the stop: every series has counted a few seconds, and the records.
  const before = await eventually('4 s of covered time on a GPU, host energy, and the records settled', 30_000, async () => {
    const m = await first.metrics();
    const covered = series(m, counters[0]!);
    const host = series(m, counters[1]!);
    const records = series(m, counters[2]!);
    return [...covered.values()].some((v) => v >= 4) && [...host.values()].some((v) => v > 0) && records.size === 3 && series(m, counters[6]!).size > 0 ? m : undefined;
  });
  assert.deepEqual([...series(before, counters[2]!).values()].sort(), [1, 1, 2], 'accepted 2, late 1, duplicate 1');
  // A new ledger: the counters started from 0, and say when (the ESG export counts first values by it).
  const start = (m: typeof before): [string, number][] => [...series(m, 'tokenwatt_counters_start_timestamp_seconds')].map(([k, v]) => [JSON.stringify(Object.fromEntries(JSON.parse(k) as [string, string][])), v]);
  const firstStart = start(before);
  assert.equal(firstStart.length, 1);
  assert.equal(firstStart[0]?.[0], '{"seeded":"false"}');
  assert.ok((firstStart[0]?.[1] ?? 0) >= Math.floor(firstStartS) && (firstStart[0]?.[1] ?? 0) <= Date.now() / 1000, `start ${firstStart[0]?.[1]}`);
  assert.equal(await first.stop(), 0, first.stderr().slice(-1500));

  const second = await startAgent(args);
  t.after(() => second.stop());
  const after = await second.metrics();
  // Seeded from the ledger's totals from the first scrape on: none of them is new.
  const secondStart = start(after);
  assert.equal(secondStart.length, 1);
  assert.equal(secondStart[0]?.[0], '{"seeded":"true"}');
  assert.ok((secondStart[0]?.[1] ?? 0) > (firstStart[0]?.[1] ?? Infinity), 'the second process started later');
  for (const name of counters) {
    const was = series(before, name);
    const now = series(after, name);
    assert.ok(was.size > 0, `${name} had series`);
    for (const [labels, value] of was) {
      assert.ok((now.get(labels) ?? 0) >= value, `${name}${labels}: ${now.get(labels) ?? 'absent'} after the restart, ${value} before (a counter reset)`);
    }
  }
  // The host energy is the configured overhead's, labelled so, and simulated as the GPUs are.
  assert.deepEqual([...series(after, counters[1]!).keys()].map((k) => Object.fromEntries(JSON.parse(k) as [string, string][])), [{ estimated: 'true', simulated: 'true', source: 'configured' }]);
  assert.equal(await second.stop(), 0, second.stderr().slice(-1500));
});
