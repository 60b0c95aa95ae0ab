/**
 * A target URL answered by several engine processes (a Kubernetes Service or load balancer over
 * several pods): each page comes from one of them. Read as restarts, their pages counted each
 * process's lifetime totals again and again; they must be told from a restart by their
 * process_start_time_seconds, left out, and the operator told.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import type { EngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import * as intervals from '../../collectors/engine-metrics/interval-records.js';
import type { EngineBaseline, IntervalNote, IntervalResult } from '../../collectors/engine-metrics/interval-records.js';
import { restoreBaseline, serializeBaseline } from '../../collectors/engine-metrics/baseline-state.js';
import { EngineMetricsScraper } from '../../collectors/engine-metrics/engine-metrics-scraper.js';
import { engineMetricsConfigSchema } from '../../collectors/engine-metrics/engine-metrics-config.js';
import { parseRequestRecord } from '../../model/request-record.js';
import { RecordingSink } from '../proxy/recording-sink.js';
import { captureLog } from '../proxy/capture-log.js';
import { fakeEngine } from './fake-engine.js';
import { judgeHeld } from './judge-held.js';

const { baselineOf, nextInterval } = intervals;
const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const STEP = 15_000;

/** One engine process: its start time (null: no marker on its page) and counters, which grow every scrape whichever pod answers. */
interface Pod {
  readonly start: number | null;
  prompt: number;
  gen: number;
}

const text = (pod: Pod, promptShown = pod.prompt): string =>
  [
    ...(pod.start === null ? [] : [`process_start_time_seconds ${pod.start}`]),
    `vllm:prompt_tokens_total{model_name="m"} ${promptShown}`,
    `vllm:generation_tokens_total{model_name="m"} ${pod.gen}`,
    'vllm:num_requests_running{model_name="m"} 3',
  ].join('\n');
const snap = (page: string, k: number): EngineSnapshot => readEngineSnapshot(parsePrometheusText(page), 'vllm', T0 + k * STEP, 'unknown', k * STEP);

/**
 * Feed the scrapes one by one, as the scraper does, then judge what is held by one more scrape
 * (a young engine's steep rises wait for it); sums of what was recorded.
 */
function run(snaps: readonly EngineSnapshot[], from?: EngineBaseline) {
  let baseline = from ?? baselineOf(snaps[0] as EngineSnapshot);
  let prompt = 0;
  let gen = 0;
  const notes: IntervalNote[] = [];
  const take = (out: IntervalResult): void => {
    notes.push(...out.notes);
    for (const wire of out.records) {
      const parsed = parseRequestRecord(wire, 0);
      assert.ok(parsed.ok, JSON.stringify(parsed));
      prompt += parsed.record.promptTokens;
      gen += parsed.record.completionTokens;
    }
  };
  for (const s of from === undefined ? snaps.slice(1) : snaps) {
    const out = nextInterval(baseline, s, { engineId: 'e' });
    baseline = out.baseline;
    take(out);
  }
  take(judgeHeld(baseline, { engineId: 'e' }));
  return { prompt, gen, notes, several: notes.filter((n) => n.kind === 'several-processes') };
}

/** Every pod counts on, whichever answers the scrape. */
function grow(pods: Record<string, Pod>): void {
  for (const p of Object.values(pods)) {
    p.prompt += 3000;
    p.gen += 1000;
  }
}

/** Scrapes 0..n, each answered by `pick(k)`; every pod counts 3000 prompt and 1000 generation tokens per scrape. */
function serve(pods: Record<string, Pod>, pick: (k: number) => string, n: number): { snaps: EngineSnapshot[]; served: { pod: string; prompt: number }[] } {
  const snaps: EngineSnapshot[] = [];
  const served: { pod: string; prompt: number }[] = [];
  for (let k = 0; k <= n; k++) {
    if (k > 0) grow(pods);
    const who = pods[pick(k)] as Pod;
    snaps.push(snap(text(who), k));
    served.push({ pod: pick(k), prompt: who.prompt });
  }
  return { snaps, served };
}

/** The growth of `pod` between its first and last page. */
const growth = (served: readonly { pod: string; prompt: number }[], pod: string): number => {
  const own = served.filter((s) => s.pod === pod);
  return (own.at(-1)?.prompt ?? 0) - (own[0]?.prompt ?? 0);
};

test('pods behind a Service, started long before: pages alternate, only the first page\'s process is counted, once', () => {
  // Pod A up a day, pod B an hour: B was running when A answered, so B's page is no restart of A.
  const pick = (k: number): string => ((k * 7919) % 13 < 6 ? 'A' : 'B');
  const pods = { A: { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 }, B: { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 } };
  const { snaps, served } = serve(pods, pick, 40);
  const out = run(snaps);
  // Was 8,049,000: every page of the other pod read as a restart, its lifetime counted.
  assert.equal(out.prompt, growth(served, 'A'), 'A counted from its first page to its last, nothing of B');
  assert.equal(out.gen, growth(served, 'A') / 3);
  assert.equal(out.several.length, served.filter((s) => s.pod === 'B').length, 'each of B\'s pages left out, and said');
  // The first of B's pages by its start time, the others as an earlier page's process.
  const reasons = out.several.map((n) => (n.kind === 'several-processes' && !n.rebased ? n.reason : ''));
  assert.match(reasons[0] as string, /is before the last page of process .*: both were running/);
  assert.ok(reasons.slice(1).every((r) => /is an earlier page's: that process answers beside/.test(r)), reasons.join('\n'));
  assert.ok(!out.notes.some((n) => n.kind === 'counter-reset'), 'no page read as a restart');

  // Pinned to the younger pod, the older one's pages start before the process they would replace.
  const pods2 = { A: { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 }, B: { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 } };
  const second = serve(pods2, (k) => (pick(k) === 'A' ? 'B' : 'A'), 40);
  const out2 = run(second.snaps);
  assert.equal(out2.prompt, growth(second.served, 'B'));
  assert.ok(out2.several.length > 0 && out2.several[0]?.kind === 'several-processes' && /is earlier than .*: a restart never starts before the process it replaces/.test(out2.several[0].reason));
});

test('a process that comes back after another one answered is no restart: counted only what the first switch could not tell apart', () => {
  // B started after A's first page: its first page is read as A restarting (counting what B counted
  // since it started, 4000 tokens, not a lifetime). A's start time then comes back: impossible for a restart.
  const pods = { A: { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 }, B: { start: T0 / 1000 + 5, prompt: 1000, gen: 0 } };
  // Ending on B's page: its last steep rise (B is young) is judged by one more of its own.
  const { snaps, served } = serve(pods, (k) => (k % 2 === 0 ? 'A' : 'B'), 41);
  const out = run(snaps);
  const lastB = served.filter((s) => s.pod === 'B').at(-1)?.prompt;
  assert.equal(served[1]?.prompt, 4000);
  // Was 22,604,000 (every page a restart, either pod's lifetime counted each time).
  assert.equal(out.prompt, lastB, 'B counted from its start, once; A\'s lifetime never');
  assert.equal(out.notes.filter((n) => n.kind === 'counter-reset').length, 1, 'the first switch only');
  assert.equal(out.several.length, 20);
  assert.ok(out.several.every((n) => n.kind === 'several-processes' && /is an earlier page's/.test(n.reason)));
});

test('a real restart (a new, later start time that stays) is still counted from the restart', () => {
  const a = { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 };
  // Restarted between the scrapes at 15 s and 30 s: counts 2000, then 3000 a scrape.
  const restarted = { start: T0 / 1000 + 20, prompt: 2000, gen: 700 };
  const pages = [text(a), text({ ...a, prompt: 1_003_000, gen: 501_000 }), text(restarted), text({ ...restarted, prompt: 5000, gen: 1700 }), text({ ...restarted, prompt: 8000, gen: 2700 })];
  const out = run(pages.map((p, k) => snap(p, k)));
  assert.equal(out.prompt, 3000 + 8000);
  assert.equal(out.gen, 1000 + 2700);
  assert.equal(out.notes.filter((n) => n.kind === 'counter-reset').length, 1);
  assert.equal(out.several.length, 0);
});

test('a bad reading of the counted process is judged by its own next page, past a page of another process', () => {
  const a = { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 };
  const b = { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 };
  // 1,003,000 read as 100,300,000 (a bad high reading); B answers next; then A, back under it.
  const pages = [text(a), text({ ...a, prompt: 1_003_000, gen: 501_000 }, 100_300_000), text(b), text({ ...a, prompt: 1_009_000, gen: 503_000 }), text({ ...a, prompt: 1_012_000, gen: 504_000 })];
  const out = run(pages.map((p, k) => snap(p, k)));
  assert.equal(out.prompt, 12_000, 'A\'s tokens, none invented by the bad reading');
  assert.equal(out.gen, 4000);
  assert.ok(out.notes.some((n) => n.kind === 'counter-glitch' && n.to === 100_300_000 && n.next === 1_009_000), JSON.stringify(out.notes));
});

test('the counted process gone for good: after a run of other processes\' pages, counting moves on from one of them, nothing counted for the switch', () => {
  const max = intervals.MAX_FOREIGN_PAGES;
  assert.ok(Number.isInteger(max) && max > intervals.COUNTER_LOOKAHEAD_SCRAPES);
  const pods = { A: { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 }, B: { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 } };
  const { snaps } = serve(pods, (k) => (k <= 1 ? 'A' : 'B'), max + 6);
  const out = run(snaps);
  // A's one interval, then B from its max-th page on (5 intervals after it).
  assert.equal(out.prompt, 3000 + 5 * 3000);
  assert.equal(out.several.length, max);
  assert.deepEqual(out.several.map((n) => n.kind === 'several-processes' && n.rebased), [...Array(max - 1).fill(false), true]);
});

test('resuming from a stored baseline: a page of another process running beside it is left out', () => {
  const a = { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 };
  const b = { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 };
  const stored = restoreBaseline(serializeBaseline(baselineOf(snap(text(a), 0)), 'http://svc/metrics'), 'http://svc/metrics', T0 + STEP, STEP);
  assert.ok(stored.ok);
  const out = run([snap(text(b), 1), snap(text({ ...a, prompt: 1_006_000, gen: 502_000 }), 2)], stored.baseline);
  assert.equal(out.prompt, 6000);
  assert.equal(out.several.length, 1);
});

test('the scraper reports several processes behind the URL once, with what to do, and counts only one process', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const pods = { A: { start: T0 / 1000 - 86_400, prompt: 1_000_000, gen: 500_000 }, B: { start: T0 / 1000 - 3600, prompt: 200_000, gen: 100_000 } };
  const clock = { t: T0 };
  const { log, messages } = captureLog();
  const errors: string[] = [];
  const config = engineMetricsConfigSchema.parse({ targets: [{ url: engine.url }], intervalMs: 3_600_000, timeoutMs: 2000 });
  const scraper = new EngineMetricsScraper({ config, log, onError: (e) => errors.push(e.message), now: () => clock.t });
  const sink = new RecordingSink();
  engine.set(text(pods.A));
  await scraper.start(sink);
  for (let k = 1; k <= 8; k++) {
    grow(pods);
    clock.t = T0 + k * STEP;
    engine.set(text(k % 2 === 0 ? pods.A : pods.B));
    await scraper.scrapeOnce();
  }
  await scraper.shutdown();
  assert.equal(sink.records.reduce((sum, r) => sum + r.promptTokens, 0), 8 * 3000, 'A\'s tokens only');
  const several = errors.filter((e) => /several engine processes/.test(e));
  assert.equal(several.length, 1, errors.join('\n'));
  assert.match(several[0] as string, /pod IP/);
  assert.ok(messages('warn').some((m) => /several engine processes/.test(m)));
});
