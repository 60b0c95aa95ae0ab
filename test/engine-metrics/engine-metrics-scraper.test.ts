import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineMetricsScraper } from '../../collectors/engine-metrics/engine-metrics-scraper.js';
import { engineMetricsConfigSchema } from '../../collectors/engine-metrics/engine-metrics-config.js';
import { COUNTER_LOOKAHEAD_SCRAPES } from '../../collectors/engine-metrics/interval-records.js';
import type { RequestRecord } from '../../model/request-record.js';
import { RecordingSink } from '../proxy/recording-sink.js';
import { captureLog } from '../proxy/capture-log.js';
import { bump, fixture, withValue } from './fixtures.js';
import { fakeEngine } from './fake-engine.js';

function scraperFor(urls: string[], clock: { t: number; mono?: number }, extra: Record<string, unknown> = {}) {
  const { log, lines, messages } = captureLog();
  const errors: string[] = [];
  const config = engineMetricsConfigSchema.parse({ targets: urls.map((url) => ({ url, ...extra })), intervalMs: 3_600_000, timeoutMs: 2000 });
  const monotonicNow = clock.mono === undefined ? undefined : () => clock.mono ?? 0;
  const scraper = new EngineMetricsScraper({ config, log, onError: (e) => errors.push(e.message), now: () => clock.t, ...(monotonicNow ? { monotonicNow } : {}) });
  return { scraper, lines, messages, errors };
}

const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const S = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}';

test('scrapes a real HTTP endpoint: baseline, then interval records delivered to the sink', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('sglang-docs-production-metrics.prom');
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, messages } = scraperFor([engine.url], clock, { gpus: [0, 1], tier: 'large' });
  const sink = new RecordingSink();
  await scraper.start(sink);
  assert.ok(messages('info').some((m) => /is sglang/.test(m)));
  assert.ok(messages('info').some((m) => /interval-level attribution/.test(m)), 'the mode is announced as interval-level');

  clock.t = T0 + 15_000;
  engine.set(bump(bump(page, `sglang:prompt_tokens_total${S}`, 4096), `sglang:generation_tokens_total${S}`, 512));
  const produced = await scraper.scrapeOnce();
  assert.equal(produced.length, 1);
  await scraper.shutdown();
  assert.equal(sink.records.length, 1);
  const r = sink.records[0];
  assert.equal(r?.promptTokens, 4096);
  assert.equal(r?.completionTokens, 512);
  assert.deepEqual(r?.gpus, ['0', '1']);
  assert.equal(r?.tier, 'large');
  assert.equal(r?.granularity, 'interval');
  assert.equal(r?.tokensEstimated, true, 'cached tokens came from the hit-rate gauge');
});

test('counter reset (engine restart) is logged and counted from the restart', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('sglang-docs-production-metrics.prom');
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, messages } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t += 15_000;
  engine.set(withValue(withValue(page, `sglang:prompt_tokens_total${S}`, 300), `sglang:generation_tokens_total${S}`, 20));
  assert.deepEqual(await scraper.scrapeOnce(), [], 'a drop waits for the next scrapes to tell a restart from a bad reading');
  assert.ok(messages('info').some((m) => /sglang:prompt_tokens\{model_name="meta-llama\/Llama-3.1-8B-Instruct"\} read 300, below its last value 8128902/.test(m)), messages('info').join('\n'));
  const counted: RequestRecord[] = [];
  for (let k = 1; k <= COUNTER_LOOKAHEAD_SCRAPES; k++) {
    clock.t += 15_000;
    engine.set(withValue(withValue(page, `sglang:prompt_tokens_total${S}`, 300 + 200 * k), `sglang:generation_tokens_total${S}`, 20 + 10 * k));
    const records = await scraper.scrapeOnce();
    if (k < COUNTER_LOOKAHEAD_SCRAPES) assert.deepEqual(records, [], `still below after ${k} scrape(s): not judged yet`);
    counted.push(...records);
  }
  // Then each scrape rose by more than 1%: counted once the next showed the counter went on.
  assert.deepEqual(counted.map((r) => [r.promptTokens, r.completionTokens, r.endMs]), [[300, 20, T0 + 15_000], [200, 10, T0 + 30_000], [200, 10, T0 + 45_000]]);
  assert.ok(messages('warn').some((m) => /counters reset/.test(m)));
  await scraper.shutdown();
});

test('a counter read low on the last scrape before shutdown has no next scrape to judge it: counted as a bad reading, flagged, nothing lost or invented', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('vllm-0.10-v1-rendered.prom');
  const P = 'vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen3-0.6B"}';
  const G = 'vllm:generation_tokens_total{engine="0",model_name="Qwen/Qwen3-0.6B"}';
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, messages } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t += 15_000;
  engine.set(bump(page, P, 400));
  await scraper.scrapeOnce();
  clock.t += 15_000;
  engine.set(withValue(bump(page, P, 900), G, 6553)); // 655360.0 cut short, read by the final scrape
  await scraper.shutdown();
  assert.deepEqual(
    sink.records.map((r) => [r.startMs - T0, r.endMs - T0, r.promptTokens, r.completionTokens, r.tokensEstimated]),
    [[0, 15_000, 400, 0, false], [15_000, 30_000, 500, 0, true]],
  );
  assert.ok(messages('warn').some((m) => /read 6553, below its last value 655360, and no later reading could judge it/.test(m)), messages('warn').join('\n'));
});

test('missing metrics: one clear error, scraping goes on, records resume when the metric is back', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('vllm-v1-docs-design-metrics.prom'); // no prompt-token counter
  const M = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, errors } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  for (let i = 1; i <= 3; i++) {
    clock.t = T0 + i * 15_000;
    engine.set(bump(page, `vllm:generation_tokens_total${M}`, i * 100));
    assert.deepEqual(await scraper.scrapeOnce(), []);
  }
  const missing = errors.filter((e) => /no prompt-token counter/.test(e));
  assert.equal(missing.length, 1, 'reported once, not every scrape');
  clock.t = T0 + 60_000;
  engine.set(`${bump(page, `vllm:generation_tokens_total${M}`, 400)}\nvllm:prompt_tokens_total${M} 1000\n`);
  const [r] = await scraper.scrapeOnce();
  assert.equal(r?.promptTokens, 1000, 'a series that appears started at zero');
  assert.equal(r?.completionTokens, 100);
  await scraper.shutdown();
});

test('an unreachable or failing engine is reported once; the next good scrape still counts every token', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('sglang-docs-production-metrics.prom');
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, errors, messages } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  engine.status(503);
  clock.t += 15_000;
  assert.deepEqual(await scraper.scrapeOnce(), []);
  clock.t += 15_000;
  assert.deepEqual(await scraper.scrapeOnce(), []);
  assert.equal(errors.filter((e) => /HTTP 503/.test(e)).length, 1);
  engine.status(200);
  engine.set(bump(page, `sglang:prompt_tokens_total${S}`, 777));
  clock.t += 15_000;
  const [r] = await scraper.scrapeOnce();
  assert.equal(r?.promptTokens, 777);
  assert.equal(r?.startMs, T0, 'the interval runs from the last good scrape');
  assert.ok(messages('info').some((m) => /answers again/.test(m)));
  await scraper.shutdown();
});

test('a page that is not an engine, an oversized body and a refused connection are clear errors, never crashes', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  engine.set('process_cpu_seconds_total 12\n');
  const clock = { t: T0 };
  const dead = 'http://127.0.0.1:9/metrics';
  const { scraper, errors } = scraperFor([engine.url, dead], clock);
  await scraper.start(new RecordingSink());
  assert.ok(errors.some((e) => /exports no vllm:\* or sglang:\* metrics/.test(e)));
  assert.ok(errors.some((e) => e.includes(dead)));
  await scraper.shutdown();

  engine.set(`# ${'x'.repeat(4096)}\n`.repeat(4));
  const config = engineMetricsConfigSchema.parse({ targets: [{ url: engine.url }], maxBodyBytes: 4096 });
  const { log } = captureLog();
  const small: string[] = [];
  const limited = new EngineMetricsScraper({ config, log, onError: (e) => small.push(e.message) });
  await limited.start(new RecordingSink());
  await limited.shutdown();
  assert.ok(small.some((e) => /larger than maxBodyBytes/.test(e)));
});

test('the config refuses what cannot work, naming the field', () => {
  const bad = engineMetricsConfigSchema.safeParse({ targets: [{ url: 'ftp://x/metrics', engine: 'tgi' }], intervalMs: 10 });
  assert.equal(bad.success, false);
  if (bad.success) return;
  const paths = bad.error.issues.map((i) => i.path.join('.')).sort();
  assert.deepEqual(paths, ['intervalMs', 'targets.0.engine', 'targets.0.url']);
  assert.equal(engineMetricsConfigSchema.safeParse({ targets: [] }).success, false);
  const ok = engineMetricsConfigSchema.parse({ targets: [{ url: 'http://127.0.0.1:8000/metrics' }] });
  assert.equal(ok.intervalMs, 15_000);
  assert.equal(ok.targets[0]?.engine, 'auto');
});

test('#1 a counter line unreadable in one scrape: reported, the record waits, the next scrape records both intervals exactly', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('vllm-v0-engine-rendered.prom');
  const M = '{model_name="mistralai/Mistral-7B-Instruct-v0.3"}';
  const P = `vllm:prompt_tokens_total${M}`;
  const G = `vllm:generation_tokens_total${M}`;
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, errors, messages } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t = T0 + 15_000;
  const bad = bump(bump(page, P, 100), G, 50).replace(`${P} `, `vllm:prompt_tokens_total{model_name="mistralai/Mistral-7B-Instruct-v0.3\\q"} `);
  engine.set(bad);
  assert.deepEqual(await scraper.scrapeOnce(), []);
  assert.ok(errors.some((e) => /series of model mistralai\/Mistral-7B-Instruct-v0.3 seen before are missing .*records wait/.test(e)));
  clock.t = T0 + 30_000;
  engine.set(bump(bump(page, P, 200), G, 100));
  const [r] = await scraper.scrapeOnce();
  assert.deepEqual([r?.startMs, r?.endMs, r?.promptTokens, r?.completionTokens], [T0, T0 + 30_000, 200, 100], 'not the counter lifetime (20,680)');
  assert.ok(messages('info').some((m) => /series-missing:.* cleared/.test(m)));
  await scraper.shutdown();
});

test('#4 the wall clock steps back between scrapes: reported, and the interval measured on the monotonic clock', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('vllm-v0-engine-rendered.prom');
  const M = '{model_name="mistralai/Mistral-7B-Instruct-v0.3"}';
  engine.set(page);
  const clock = { t: T0, mono: 1000 };
  const { scraper, errors } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t = T0 - 2000; // NTP stepped the clock back while 15 s passed
  clock.mono = 16_000;
  engine.set(bump(bump(page, `vllm:prompt_tokens_total${M}`, 5000), `vllm:generation_tokens_total${M}`, 800));
  // (A rise of more than 1% is counted with the next scrape: shutdown's, at the same counters.)
  await scraper.scrapeOnce();
  await scraper.shutdown();
  const [r] = sink.records;
  assert.deepEqual([r?.startMs, r?.endMs, r?.promptTokens, r?.completionTokens], [T0 - 17_000, T0 - 2000, 5000, 800]);
  assert.ok(errors.some((e) => /wall clock moved -2000 ms while 15000 ms passed .*a step of -17000 ms/.test(e)));
  await scraper.shutdown();
});

test('N4 shutdown takes one last scrape, so the partial interval since the previous one is recorded', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('sglang-docs-production-metrics.prom');
  engine.set(page);
  const clock = { t: T0 };
  const { scraper } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t = T0 + 6000; // stopped 6 s into the interval
  engine.set(bump(page, `sglang:prompt_tokens_total${S}`, 1234));
  await scraper.shutdown();
  assert.equal(sink.records.length, 1);
  assert.deepEqual([sink.records[0]?.startMs, sink.records[0]?.endMs, sink.records[0]?.promptTokens], [T0, T0 + 6000, 1234]);
  await scraper.shutdown(); // idempotent: no second scrape into a closed delivery
  assert.equal(sink.records.length, 1);
});

/** The SGLang docs page's token counters of data-parallel rank `dp` (a dp_rank label), at `p` prompt and `g` generated tokens. */
const rank = (dp: number, p: number, g: number) =>
  withValue(withValue(fixture('sglang-docs-production-metrics.prom'), `sglang:prompt_tokens_total${S}`, p), `sglang:generation_tokens_total${S}`, g)
    .split('\n')
    .filter((l) => /^sglang:(prompt|generation)_tokens_total\{/.test(l))
    .map((l) => l.replace('{model_name=', `{dp_rank="${dp}",model_name=`))
    .join('\n');

test('a series gone for good is reported once (one onError, one warning when given up), not on 2 of every 3 scrapes', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  // Two data-parallel ranks, then rank 1 gone.
  engine.set(`${rank(0, 100_000, 10_000)}\n${rank(1, 90_000, 9_000)}`);
  const clock = { t: T0 };
  const { scraper, errors, messages } = scraperFor([engine.url], clock);
  await scraper.start(new RecordingSink());
  const baseErrors = errors.length; // the page lacks a cache counter and gauge: reported once at start
  const perScrape: number[] = [];
  for (let i = 1; i <= 9; i++) {
    clock.t = T0 + i * 15_000;
    engine.set(rank(0, 3000 * i, 300 * i));
    await scraper.scrapeOnce();
    perScrape.push(errors.length);
  }
  await scraper.shutdown();
  // (Rank 0 restarted: the first page's drop is judged, and the page counted, once the scrapes after it stayed below.)
  const judgedAt = COUNTER_LOOKAHEAD_SCRAPES + 1;
  assert.deepEqual(perScrape, perScrape.map((_, i) => baseErrors + (i + 1 < judgedAt ? 0 : 1)));
  assert.match(errors[baseErrors] ?? '', /series of model meta-llama\/Llama-3.1-8B-Instruct seen before are missing/);
  assert.equal(messages('warn').filter((m) => /no longer wait for them/.test(m)).length, 1);
});

test('a missing series is reported once while scrapes with a steep rise wait for judgement (an engine\'s first minutes)', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  engine.set(`${rank(0, 100_000, 10_000)}\n${rank(1, 90_000, 9_000)}`);
  const clock = { t: T0 };
  const { scraper, errors } = scraperFor([engine.url], clock);
  await scraper.start(new RecordingSink());
  const baseErrors = errors.length;
  // Rank 1 gone; rank 0 alternately rises gently (+0.5%) and steeply (+50%: the scrape waits for the next).
  let p = 100_000;
  for (let i = 1; i <= 8; i++) {
    clock.t = T0 + i * 15_000;
    p = Math.round(i % 2 === 0 ? p * 1.5 : p * 1.005);
    engine.set(rank(0, p, Math.round(p / 10)));
    await scraper.scrapeOnce();
  }
  await scraper.shutdown();
  assert.deepEqual(errors.slice(baseErrors).map((e) => /seen before are missing/.test(e)), [true], errors.slice(baseErrors).join('\n'));
});

test('cache hits that never found their prompt tokens are dropped after one interval, logged at info with the amount', async (t) => {
  const engine = await fakeEngine();
  t.after(() => engine.close());
  const page = fixture('vllm-0.10-v1-rendered.prom');
  const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
  engine.set(page);
  const clock = { t: T0 };
  const { scraper, messages } = scraperFor([engine.url], clock);
  const sink = new RecordingSink();
  await scraper.start(sink);
  clock.t += 15_000;
  engine.set(bump(page, `vllm:prefix_cache_hits_total${E0}`, 480_000));
  await scraper.scrapeOnce();
  clock.t += 15_000;
  await scraper.scrapeOnce(); // their prompts are due by now: none came
  clock.t += 15_000;
  const later = bump(page, `vllm:prefix_cache_hits_total${E0}`, 480_000);
  engine.set(bump(bump(later, `vllm:prompt_tokens_total${E0}`, 8000), `vllm:generation_tokens_total${E0}`, 100));
  await scraper.scrapeOnce();
  await scraper.shutdown();
  // The running gauge (6 and 4 on this page) makes the quiet intervals records too.
  assert.deepEqual(sink.records.map((r) => [r.promptTokens, r.cachedTokens]), [[0, 0], [0, 0], [8000, 0]]);
  assert.equal(messages('info').filter((m) => /480000 cache-hit tokens counted in the previous interval found no prompt tokens/.test(m)).length, 1);
});
