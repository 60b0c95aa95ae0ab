import { flushDeferred, nextInterval } from '../../collectors/engine-metrics/interval-records.js';
import type { EngineBaseline, IntervalRecordOptions, IntervalResult } from '../../collectors/engine-metrics/interval-records.js';
import type { EngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';

/**
 * The scrapes still held for judgement, judged by one more scrape as the scraper would see it (and
 * not by shutdown, which reads an unjudged steep rise as a glitch): the last page a scrape later,
 * its counters up a little more. Its own counters then rise steeply, so it waits in turn and is
 * never counted: only what it judges is. A page that it cannot settle (a drop the next scrapes
 * must confirm) is flushed as at shutdown. For tests whose subject is not the judgement.
 */
export function judgeHeld(baseline: EngineBaseline, options: IntervalRecordOptions): IntervalResult {
  const last = baseline.deferred.at(-1)?.page;
  if (last === undefined) return { records: [], notes: [], baseline };
  const probe: EngineSnapshot = { ...last, atMs: last.atMs + 15_000, monoMs: last.monoMs + 15_000, counters: last.counters.map((c) => ({ ...c, value: c.value * 1.02 + 1 })) };
  const out = nextInterval(baseline, probe, options);
  const rest = out.baseline.deferred;
  if (rest.length === 1 && rest[0]?.page === probe) return { ...out, baseline: { ...out.baseline, deferred: [] } };
  return flushDeferred(baseline, options);
}

