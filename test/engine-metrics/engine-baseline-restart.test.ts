/**
 * The engine-metrics baseline across agent restarts: a scraper feeding a real IngestService and
 * ledger, against a fake engine over real HTTP. A "crash" drops the scraper without its final
 * scrape and cuts its sink (what it had not committed is gone, as with kill -9); a new scraper on
 * the reopened ledger must then record exactly what the engine counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { IngestService } from '../../agent/ingest-service.js';
import { Ledger } from '../../agent/ledger.js';
import { EngineMetricsScraper } from '../../collectors/engine-metrics/engine-metrics-scraper.js';
import { engineMetricsConfigSchema } from '../../collectors/engine-metrics/engine-metrics-config.js';
import { baselineKey, restoreBaseline } from '../../collectors/engine-metrics/baseline-state.js';
import { COUNTER_LOOKAHEAD_SCRAPES } from '../../collectors/engine-metrics/interval-records.js';
import type { RequestSink } from '../../collectors/request-sink.js';
import type { RecordContext } from '../../model/request-record.js';
import { epochMs } from '../../model/units.js';
import type { EpochMs } from '../../model/units.js';
import { captureLog } from '../proxy/capture-log.js';
import { fakeContext } from '../ingest/fake-context.js';
import { RETENTION, tempDir } from '../ledger/temp-ledger.js';
import { bump, fixture, withValue } from './fixtures.js';
import { fakeEngine } from './fake-engine.js';

const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const M = '{model_name="mistralai/Mistral-7B-Instruct-v0.3"}';
const P = `vllm:prompt_tokens_total${M}`;
const G = `vllm:generation_tokens_total${M}`;
// A long-running engine's counters (the fixture's 20480 and 8192, x1000): a scrape's increase is
// under 1% of them, so each scrape is counted at once (a steeper rise waits for the next scrape).
const PAGE = withValue(withValue(fixture('vllm-v0-engine-rendered.prom'), P, 20_480_000), G, 8_192_000);
const KEY = baselineKey('vllm-a');

interface RunOptions {
  readonly context?: () => RecordContext;
  readonly settledUntil?: () => EpochMs | null;
}

/** One agent run: its ledger, ingest service and scraper. `crash` cuts it off as kill -9 would. */
function agentRun(path: string, url: string, clock: { t: number }, opts: RunOptions = {}) {
  const ledger = Ledger.open(path, { node: 'node-a', retention: RETENTION });
  let late = 0;
  const ingest = new IngestService({
    ledger,
    context: opts.context ?? (() => fakeContext()),
    settledUntil: opts.settledUntil ?? (() => null),
    onAccepted: () => {},
    onLate: (n) => (late += n),
    queueLimit: 1000,
  });
  let dead = false;
  // A dead process commits nothing more: its submits never complete.
  const sink: RequestSink = { submit: (records, firstIndex, options) => (dead ? new Promise(() => {}) : ingest.submit(records, firstIndex, options)) };
  const { log, messages } = captureLog();
  const errors: string[] = [];
  const config = engineMetricsConfigSchema.parse({ targets: [{ url, engineId: 'vllm-a', gpus: [0] }], intervalMs: 3_600_000, timeoutMs: 2000 });
  const scraper = new EngineMetricsScraper({ config, log, onError: (e) => errors.push(e.message), now: () => clock.t });
  return {
    ledger,
    scraper,
    messages,
    errors,
    late: () => late,
    start: () => scraper.start(sink, { read: (key) => ledger.readSourceState(key) }),
    crash: () => {
      dead = true;
      ledger.close();
    },
    stop: async () => {
      await scraper.shutdown();
      ingest.close();
      ledger.close();
    },
  };
}

/** Wait until the ledger holds the baseline of the scrape at `atMs` (it commits with that scrape's records). */
async function baselineStoredAt(ledger: Ledger, atMs: number): Promise<void> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
    const value = ledger.readSourceState(KEY);
    let stored: unknown;
    try {
      stored = JSON.parse(value ?? 'null');
    } catch {
      continue; // not (yet) a baseline
    }
    if ((stored as { atMs?: number } | null)?.atMs === atMs) return;
  }
  assert.fail(`the baseline of the scrape at ${atMs} was not committed (stored: ${ledger.readSourceState(KEY)?.slice(0, 120)})`);
}

function stored(ledger: Ledger): [number, number, number, number][] {
  return ledger.readRequests(epochMs(0), epochMs(Date.UTC(2200, 0, 1))).map((s) => [s.record.startMs - T0, s.record.endMs - T0, s.record.promptTokens, s.record.completionTokens]);
}

const total = (rows: [number, number, number, number][]): [number, number] => [rows.reduce((a, r) => a + r[2], 0), rows.reduce((a, r) => a + r[3], 0)];

async function setup(t: { after: (fn: () => unknown) => void }) {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const { dir, cleanup } = tempDir('tokenwatt-engine-baseline-');
  t.after(cleanup);
  return { engine, path: join(dir, 'ledger.db') };
}

test('crash without the final scrape: the restarted scraper records exactly what the engine counted meanwhile, from the committed baseline', async (t) => {
  const { engine, path } = await setup(t);
  const clock = { t: T0 };
  engine.set(PAGE);
  const first = agentRun(path, engine.url, clock);
  await first.start();
  await baselineStoredAt(first.ledger, T0);

  clock.t = T0 + 15_000;
  engine.set(bump(bump(PAGE, P, 1000), G, 100));
  await first.scraper.scrapeOnce();
  await baselineStoredAt(first.ledger, T0 + 15_000);

  // This scrape is made, then the agent dies before its commit: records and baseline are lost together.
  clock.t = T0 + 30_000;
  engine.set(bump(bump(PAGE, P, 1500), G, 150));
  assert.equal((await first.scraper.scrapeOnce()).length, 1);
  first.crash();

  // The engine keeps serving while the agent is down.
  clock.t = T0 + 90_000;
  engine.set(bump(bump(PAGE, P, 2200), G, 220));
  const second = agentRun(path, engine.url, clock);
  t.after(() => second.stop());
  await second.start();
  await baselineStoredAt(second.ledger, T0 + 90_000);
  assert.ok(second.messages('info').some((m) => m.includes(`resuming from the baseline stored at ${new Date(T0 + 15_000).toISOString()}`)), second.messages().join('\n'));
  const rows = stored(second.ledger);
  assert.deepEqual(rows, [
    [0, 15_000, 1000, 100],
    [15_000, 90_000, 1200, 120], // the lost scrape's interval and the downtime, in one record
  ]);
  assert.deepEqual(total(rows), [2200, 220], 'exactly the engine counters\' increase since the first baseline');
  assert.deepEqual(second.errors.filter((e) => /baseline/.test(e)), []);
  await second.stop();
});

test('the engine restarted while the agent was down (counters lower): counted from the engine\'s restart, reported', async (t) => {
  const { engine, path } = await setup(t);
  const clock = { t: T0 };
  engine.set(PAGE);
  const first = agentRun(path, engine.url, clock);
  await first.start();
  clock.t = T0 + 15_000;
  engine.set(bump(bump(PAGE, P, 1000), G, 100));
  await first.scraper.scrapeOnce();
  await baselineStoredAt(first.ledger, T0 + 15_000);
  first.crash();

  clock.t = T0 + 120_000;
  engine.set(withValue(withValue(PAGE, P, 300), G, 30)); // a new engine process: 300 / 30 since its start
  const second = agentRun(path, engine.url, clock);
  t.after(() => second.stop());
  await second.start();
  // The drop is judged by the next scrapes: all still below, a restart. (Each of them rose by more
  // than 1% of the new engine's count: counted once the next shows the counter went on.)
  for (let k = 1; k <= COUNTER_LOOKAHEAD_SCRAPES; k++) {
    clock.t = T0 + 120_000 + 15_000 * k;
    engine.set(withValue(withValue(PAGE, P, 300 + 50 * k), G, 30 + 5 * k));
    await second.scraper.scrapeOnce();
  }
  await baselineStoredAt(second.ledger, T0 + 120_000 + 15_000 * (COUNTER_LOOKAHEAD_SCRAPES - 1));
  assert.deepEqual(stored(second.ledger), [
    [0, 15_000, 1000, 100],
    [15_000, 120_000, 300, 30],
    ...Array.from({ length: COUNTER_LOOKAHEAD_SCRAPES - 1 }, (_, k) => [120_000 + 15_000 * k, 135_000 + 15_000 * k, 50, 5]),
  ]);
  await second.stop();
  assert.ok(second.messages('warn').some((m) => /counters reset \(vllm:prompt_tokens\{model_name="mistralai\/Mistral-7B-Instruct-v0.3"\} went from 20481000 to 300/.test(m)), second.messages('warn').join('\n'));
});

test('an engine restart hidden by counters already past their old values is seen by _created, which the stored baseline keeps', async (t) => {
  const { engine, path } = await setup(t);
  const page = fixture('vllm-0.10-v1-rendered.prom');
  const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
  const E1 = '{engine="1",model_name="Qwen/Qwen3-0.6B"}';
  const clock = { t: T0 };
  engine.set(page);
  const first = agentRun(path, engine.url, clock);
  await first.start();
  await baselineStoredAt(first.ledger, T0);
  first.crash();

  // Engine 0 restarted and counted 2,000,000 prompt tokens since (more than its old 1,298,848).
  clock.t = T0 + 600_000;
  let restarted = withValue(page, `vllm:prompt_tokens_total${E0}`, 2_000_000);
  restarted = withValue(restarted, `vllm:prompt_tokens_created${E0}`, 1_759_742_000);
  restarted = bump(restarted, `vllm:prompt_tokens_total${E1}`, 5000);
  engine.set(restarted);
  const second = agentRun(path, engine.url, clock);
  t.after(() => second.stop());
  await second.start();
  await baselineStoredAt(second.ledger, T0 + 600_000);
  const rows = stored(second.ledger);
  assert.equal(rows.length, 1);
  // Engine 0 from its restart (its generation counter counts from zero too: 655,360 since), engine 1's increase.
  assert.deepEqual(rows[0], [0, 600_000, 2_000_000 + 5000, 655_360]);
  await second.stop();
});

test('a corrupt or foreign stored baseline: a warning naming the key, a fresh baseline, never a crash, and counting goes on exactly', async (t) => {
  const { engine, path } = await setup(t);
  for (const [value, why] of [
    ['{"format":"tokenwatt.engine-metrics.baseline","version":1,"url":', /unusable: not JSON/],
    [JSON.stringify({ format: 'tokenwatt.engine-metrics.baseline', version: 7 }), /unusable: version 7, this tokenwatt reads version 1/],
    [JSON.stringify({ hello: 'world' }), /unusable: not a tokenwatt.engine-metrics.baseline value/],
  ] as const) {
    const seed = Ledger.open(path, { node: 'node-a', retention: RETENTION });
    seed.insertRequests([], () => false, [{ key: KEY, value }]);
    seed.close();
    const clock = { t: T0 };
    engine.set(PAGE);
    const run = agentRun(path, engine.url, clock);
    await run.start();
    const warning = run.errors.find((e) => e.includes(`agent_state key ${KEY}`));
    assert.ok(warning, run.errors.join('\n'));
    assert.match(warning, why);
    assert.match(warning, /starting from a fresh baseline at the first scrape/);
    await baselineStoredAt(run.ledger, T0); // replaced by a good one
    const readBack = restoreBaseline(run.ledger.readSourceState(KEY) ?? '', engine.url, T0, 0);
    assert.ok(readBack.ok, 'the stored value is a good baseline again');
    clock.t = T0 + 15_000;
    engine.set(bump(bump(PAGE, P, 640), G, 64));
    await run.stop(); // its final scrape records the interval
    const check = Ledger.openReadOnly(path);
    assert.deepEqual(stored(check), [[0, 15_000, 640, 64]]);
    check.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true }); // the next case starts afresh
  }
});

test('a baseline stored days ago, older than the retained window: the downtime is one interval, accepted (it ends now), counted late, split to fit the token limit', async (t) => {
  const { engine, path } = await setup(t);
  const DAY = 86_400_000;
  const clock = { t: T0 - 3 * DAY };
  engine.set(PAGE);
  const first = agentRun(path, engine.url, clock);
  await first.start();
  await baselineStoredAt(first.ledger, T0 - 3 * DAY);
  first.crash();

  clock.t = T0;
  engine.set(bump(bump(PAGE, P, 250_000_000), G, 9_000_000));
  const second = agentRun(path, engine.url, clock, {
    context: () => fakeContext({ retainedFromMs: T0 - 2 * DAY }), // 48 h, as the agent's default
    settledUntil: () => epochMs(T0 - 60_000),
  });
  t.after(() => second.stop());
  await second.start();
  // The downtime's rise is more than 1% of the counters: counted once the next scrape shows they went on.
  clock.t = T0 + 15_000;
  await second.scraper.scrapeOnce();
  await baselineStoredAt(second.ledger, T0 + 15_000);
  const rows = stored(second.ledger);
  assert.deepEqual(rows, [
    [-3 * DAY, 0, 83_333_333, 3_000_000],
    [-3 * DAY, 0, 83_333_333, 3_000_000],
    [-3 * DAY, 0, 83_333_334, 3_000_000],
    [0, 15_000, 0, 0], // requests running, no tokens
  ]);
  assert.deepEqual(total(rows), [250_000_000, 9_000_000]);
  assert.equal(second.late(), 3, 'they start in settled time: counted as late, never dropped');
  assert.ok(second.messages('warn').some((m) => /resuming from the baseline stored at .*, 259200 s ago: what the engine counted since is recorded as ONE interval/.test(m)), second.messages().join('\n'));
  assert.ok(second.messages('info').some((m) => /recorded as 3 records of it/.test(m)), second.messages().join('\n'));
  await second.stop();
});
