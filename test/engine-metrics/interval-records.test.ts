import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseRequestRecord } from '../../model/request-record.js';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import type { EngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import { baselineOf, COUNTER_DIP_RESTART_SHARE, COUNTER_LOOKAHEAD_SCRAPES, flushDeferred, MAX_HELD_SCRAPES, nextInterval } from '../../collectors/engine-metrics/interval-records.js';
import type { EngineBaseline, IntervalNote, IntervalRecordOptions } from '../../collectors/engine-metrics/interval-records.js';
import { restoreBaseline, serializeBaseline } from '../../collectors/engine-metrics/baseline-state.js';
import { bump, fixture, withValue } from './fixtures.js';
import { judgeHeld } from './judge-held.js';

const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const T1 = T0 + 15_000;
const vllm = (text: string, at: number) => readEngineSnapshot(parsePrometheusText(text), 'vllm', at, 'unknown');
const sglang = (text: string, at: number) => readEngineSnapshot(parsePrometheusText(text), 'sglang', at, 'unknown');
const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
const E1 = '{engine="1",model_name="Qwen/Qwen3-0.6B"}';

/**
 * The records and notes of the interval `prev` -> `curr` once a later scrape judged `curr`
 * ({@link judgeHeld}): the production `intervalRecords` has no later scrape, so a steep rise in
 * `curr` would be read as a glitch there.
 */
function intervalRecords(prev: EngineSnapshot, curr: EngineSnapshot, options: IntervalRecordOptions) {
  const first = nextInterval(baselineOf(prev), curr, options);
  const judged = judgeHeld(first.baseline, options);
  return { records: [...first.records, ...judged.records], notes: [...first.notes, ...judged.notes] };
}

function valid(wire: unknown) {
  const parsed = parseRequestRecord(wire, 0);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  return parsed.record;
}

test('vLLM 0.10 page, two scrapes: deltas summed over engines, batch = mean running, interval granularity', () => {
  const before = fixture('vllm-0.10-v1-rendered.prom');
  let after = bump(before, `vllm:prompt_tokens_total${E0}`, 3000);
  after = bump(after, `vllm:prompt_tokens_total${E1}`, 1000);
  after = bump(after, `vllm:generation_tokens_total${E0}`, 700);
  after = bump(after, `vllm:prefix_cache_hits_total${E0}`, 1200);
  after = bump(after, `vllm:gpu_prefix_cache_hits_total${E0}`, 999_999); // deprecated twin: must be ignored
  after = withValue(after, `vllm:num_requests_running${E0}`, 10);
  after = withValue(after, `vllm:num_requests_running${E1}`, 4);
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T1), { engineId: 'vllm-a', tier: 'small', gpus: [0] });
  // This page has no request-time histogram: the gauge is all there is, and the note says so.
  assert.deepEqual(notes, [{ kind: 'batch-size', model: 'Qwen/Qwen3-0.6B', source: 'running-gauge', metric: 'vllm:num_requests_running' }]);
  assert.equal(records.length, 1);
  const r = valid(records[0]);
  assert.equal(r.promptTokens, 4000);
  assert.equal(r.completionTokens, 700);
  assert.equal(r.cachedTokens, 1200);
  // Per engine, not summed: engines at 6 and 4 run batches of 6 and 4 (5.2 for the average running
  // request), then 10 and 4 (8.29); the mean of the two ends is 6.7.
  assert.equal(r.batchSize, 7);
  assert.equal(r.granularity, 'interval');
  assert.equal(r.source, 'engine-metrics');
  assert.equal(r.startMs, T0);
  assert.equal(r.endMs, T1);
  assert.equal(r.firstTokenMs, null);
  assert.equal(r.tier, 'small');
  assert.deepEqual(r.gpus, ['0']);
  assert.equal(r.requestId, `engine-metrics:vllm-a:Qwen/Qwen3-0.6B:${T0}-${T1}`);
  // same scrapes, same id: a resubmission is a duplicate, not new work
  assert.equal(intervalRecords(vllm(before, T0), vllm(after, T1), { engineId: 'vllm-a' }).records[0]?.request_id, r.requestId);
});

/** A page without `_created` series (vLLM disables them; so can PROMETHEUS_DISABLE_CREATED_SERIES). */
const withoutCreated = (text: string): string => text.split('\n').filter((l) => !/_created[{ ]/.test(l)).join('\n');

test('a counter that goes down, and stays down at the next scrapes, is an engine restart: the delta is what it counted since', () => {
  const before = withoutCreated(fixture('vllm-v1-deprecated-prefix-names-rendered.prom'));
  const S = '{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  let after = withValue(before, `vllm:prompt_tokens_total${S}`, 500);
  after = withValue(after, `vllm:generation_tokens_total${S}`, 80);
  after = withValue(after, `vllm:gpu_prefix_cache_hits_total${S}`, 100);
  const later = [1, 2, 3].map((k) => vllm(bump(after, `vllm:prompt_tokens_total${S}`, 10 * k), T1 + 15_000 * k));
  const { steps, notes } = run([vllm(before, T0), vllm(after, T1), ...later]);
  for (let k = 0; k < COUNTER_LOOKAHEAD_SCRAPES; k++) assert.deepEqual(steps[k]?.records, [], `judged by the ${COUNTER_LOOKAHEAD_SCRAPES} scrapes after it (${k})`);
  const r = steps[COUNTER_LOOKAHEAD_SCRAPES]?.records[0] as ReturnType<typeof valid>;
  assert.deepEqual([r.startMs, r.endMs], [T0, T1]);
  assert.equal(r.promptTokens, 500);
  assert.equal(r.completionTokens, 80);
  assert.equal(r.cachedTokens, 100);
  assert.ok(notes.some((n) => n.kind === 'counter-reset' && n.reason.startsWith('vllm:prompt_tokens{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} went from 3401280 to 500')));
});

test('a small dip is not a restart: nothing counted, then counting goes on from the higher value', () => {
  // Float error, or the leading rank of a replica missing from one page (ranks merge by their largest value).
  const page = (prompt: number, gen: number, created = true): string => [
    'process_start_time_seconds 1.7e9',
    `vllm:prompt_tokens_total{model_name="m"} ${prompt}`,
    ...(created ? ['vllm:prompt_tokens_created{model_name="m"} 1.7e9'] : []),
    `vllm:generation_tokens_total{model_name="m"} ${gen}`,
    'vllm:num_requests_running{model_name="m"} 2',
  ].join('\n');
  for (const created of [true, false]) {
    const pages = [page(1_000_000, 50_000, created), page(999_999.5, 50_100, created), page(1_000_100, 50_200, created)];
    const out = run(pages.map((text, i) => readEngineSnapshot(parsePrometheusText(text), 'vllm', T0 + i * 15_000, 'unknown', i * 15_000)));
    assert.deepEqual([out.prompt, out.completion], [100, 200], `created ${created}`);
    const dip = out.notes.find((n) => n.kind === 'counter-dip');
    assert.deepEqual(dip, { kind: 'counter-dip', model: 'm', series: 'vllm:prompt_tokens{model_name="m"}', from: 1_000_000, to: 999_999.5, held: true });
    assert.ok(!out.notes.some((n) => n.kind === 'counter-reset'));
  }
});

test('SGLang tensor-parallel ranks: a page without the leading rank is a dip, not a restart of a lifetime of tokens', () => {
  const page = (rank0: number | null, rank1: number): string => [
    'process_start_time_seconds 1.7e9',
    ...(rank0 === null ? [] : [`sglang:prompt_tokens_total{model_name="m",tp_rank="0"} ${rank0}`, `sglang:generation_tokens_total{model_name="m",tp_rank="0"} 500000`]),
    `sglang:prompt_tokens_total{model_name="m",tp_rank="1"} ${rank1}`,
    'sglang:generation_tokens_total{model_name="m",tp_rank="1"} 500000',
    'sglang:num_running_reqs{model_name="m",tp_rank="0"} 2',
  ].join('\n');
  const snaps = [page(2_000_000, 1_999_990), page(null, 1_999_995), page(2_000_010, 2_000_010)]
    .map((text, i) => readEngineSnapshot(parsePrometheusText(text), 'sglang', T0 + i * 15_000, 'unknown', i * 15_000));
  const out = run(snaps);
  assert.equal(out.prompt, 10, 'the 10 tokens rank 0 counted, once');
  assert.equal(out.completion, 0);
  assert.ok(!out.notes.some((n) => n.kind === 'counter-reset'));
});

test('a large drop with the same _created is no restart: part of the count went away, counting goes on from the lower value', () => {
  const before = fixture('vllm-v1-deprecated-prefix-names-rendered.prom');
  const S = '{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  const dropped = withValue(before, `vllm:prompt_tokens_total${S}`, 1_000_000);
  const later = bump(dropped, `vllm:prompt_tokens_total${S}`, 700);
  const out = run([before, dropped, later].map((text, i) => vllm(text, T0 + i * 15_000)));
  assert.equal(out.prompt, 700);
  assert.ok(out.notes.some((n) => n.kind === 'counter-dip' && !n.held && n.from === 3_401_280 && n.to === 1_000_000));
  assert.ok(!out.notes.some((n) => n.kind === 'counter-reset'));
});

test('a negative counter value is unreadable, not a restart: it neither subtracts from the other engines nor counts twice', () => {
  const page = (a: number, b: number): string => [
    'process_start_time_seconds 1.7e9',
    `vllm:prompt_tokens_total{engine="0",model_name="m"} ${a}`, `vllm:prompt_tokens_total{engine="1",model_name="m"} ${b}`,
    'vllm:generation_tokens_total{engine="0",model_name="m"} 10', 'vllm:generation_tokens_total{engine="1",model_name="m"} 10',
    'vllm:num_requests_running{model_name="m"} 2',
  ].join('\n');
  const snaps = [page(1000, 1000), page(-400, 1500), page(1100, 1600)].map((text, i) => readEngineSnapshot(parsePrometheusText(text), 'vllm', T0 + i * 15_000, 'unknown', i * 15_000));
  const out = run(snaps, { judge: true });
  assert.deepEqual([out.prompt, out.completion], [700, 0], 'engine 0 +100 and engine 1 +600, each once');
  assert.ok(!out.notes.some((n) => n.kind === 'counter-reset'));
});

test('a restart seen on a page without the marker is not counted again when the marker comes back changed', () => {
  const page = (marker: number | null, prompt: number): string => [
    ...(marker === null ? [] : [`process_start_time_seconds ${marker}`]),
    `vllm:prompt_tokens_total{model_name="m"} ${prompt}`,
    `vllm:generation_tokens_total{model_name="m"} ${prompt / 10}`,
    'vllm:num_requests_running{model_name="m"} 2',
  ].join('\n');
  // The last page read again a scrape later: it judges the new process's first reading (a steep rise from 50).
  const snaps = [page(1.7e9, 100_000), page(null, 50), page(1.8e9, 80), page(1.8e9, 80)].map((text, i) => readEngineSnapshot(parsePrometheusText(text), 'vllm', T0 + i * 15_000, 'unknown', i * 15_000));
  const out = run(snaps);
  assert.deepEqual([out.prompt, out.completion], [80, 8], 'the new process counted 80 and 8, once');
  assert.equal(out.notes.filter((n) => n.kind === 'counter-reset').length, 1);
});

test('a changed _created timestamp is a restart even when the counters already grew past the old values', () => {
  const before = fixture('vllm-v1-deprecated-prefix-names-rendered.prom');
  const S = '{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  let after = withValue(before, `vllm:prompt_tokens_created${S}`, 1.75e9);
  after = withValue(after, `vllm:prompt_tokens_total${S}`, 4_000_000);
  after = withValue(after, `vllm:generation_tokens_total${S}`, 1_048_600);
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T1), { engineId: 'e' });
  assert.equal(valid(records[0]).promptTokens, 4_000_000);
  assert.equal(valid(records[0]).completionTokens, 1_048_600);
  assert.ok(notes.some((n) => n.kind === 'counter-reset' && /vllm:prompt_tokens\{engine="0",.*\} was re-created \(_created 1745337605.2431207 -> 1750000000\)/.test(n.reason)));
});

test('SGLang docs page: cached tokens estimated from the hit-rate gauge, and the record says so', () => {
  const S = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  const before = fixture('sglang-docs-production-metrics.prom');
  let after = bump(before, `sglang:prompt_tokens_total${S}`, 20_000);
  after = bump(after, `sglang:generation_tokens_total${S}`, 5000);
  after = withValue(after, `sglang:cache_hit_rate${S}`, 0.5);
  const { records, notes } = intervalRecords(sglang(before, T0), sglang(after, T1), { engineId: 's' });
  const r = valid(records[0]);
  assert.equal(r.promptTokens, 20_000);
  assert.equal(r.cachedTokens, 10_000);
  assert.equal(r.tokensEstimated, true);
  assert.equal(r.batchSize, 162);
  assert.ok(notes.some((n) => n.kind === 'cached-estimated'));
});

test('newer SGLang: a cache-source series created between scrapes counts from zero; hits beyond prompts are capped', () => {
  const S = '{model_name="Qwen/Qwen2.5-7B-Instruct"}';
  const before = fixture('sglang-cached-tokens-rendered.prom');
  let after = bump(before, `sglang:prompt_tokens_total${S}`, 1000);
  after = bump(after, `sglang:generation_tokens_total${S}`, 10);
  after = `${after}\nsglang:cached_tokens_total{cache_source="storage_file",model_name="Qwen/Qwen2.5-7B-Instruct"} 300.0\n`;
  const first = intervalRecords(sglang(before, T0), sglang(after, T1), { engineId: 's' });
  assert.equal(valid(first.records[0]).cachedTokens, 300);
  const later = bump(bump(after, `sglang:cached_tokens_total{cache_source="device",model_name="Qwen/Qwen2.5-7B-Instruct"}`, 5000), `sglang:prompt_tokens_total${S}`, 2000);
  const second = intervalRecords(sglang(after, T1), sglang(later, T1 + 15_000), { engineId: 's' });
  assert.equal(valid(second.records[0]).cachedTokens, 2000);
  assert.ok(second.notes.some((n) => n.kind === 'cached-capped' && n.cached === 5000 && n.prompt === 2000));
});

test('an idle interval yields no record; a busy one without finished prompts still does', () => {
  const before = fixture('vllm-v0-engine-rendered.prom');
  const M = '{model_name="mistralai/Mistral-7B-Instruct-v0.3"}';
  const idle = withValue(withValue(before, `vllm:num_requests_running${M}`, 0), 'vllm:num_requests_running' + M, 0);
  assert.equal(intervalRecords(vllm(idle, T0), vllm(idle, T1), { engineId: 'e' }).records.length, 0);
  const busy = intervalRecords(vllm(before, T0), vllm(before, T1), { engineId: 'e' });
  assert.equal(busy.records.length, 1);
  assert.equal(valid(busy.records[0]).batchSize, 3);
  assert.equal(valid(busy.records[0]).completionTokens, 0);
});

test('a missing prompt counter yields a note and no record for that model', () => {
  const text = fixture('vllm-v1-docs-design-metrics.prom');
  const { records, notes } = intervalRecords(vllm(text, T0), vllm(bump(text, 'vllm:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"}', 10), T1), { engineId: 'e' });
  assert.equal(records.length, 0);
  assert.deepEqual(notes, [{ kind: 'missing-counter', model: 'meta-llama/Llama-3.1-8B-Instruct', metric: 'promptTokens', dropped: { prompt: 0, generation: 10, cached: 0 } }]);
});

test('ids stay under the request_id length limit for very long model names', () => {
  const model = `/gpfs/scratch/${'x'.repeat(200)}/llama-2-7b`; // legal (<= 256) but too long to embed
  const at = (atMs: number, p: number) => vllm(`vllm:prompt_tokens_total{model_name="${model}"} ${p}\nvllm:generation_tokens_total{model_name="${model}"} ${p}`, atMs);
  const { records } = intervalRecords(at(T0, 10), at(T1, 20), { engineId: 'e' });
  const r = valid(records[0]);
  assert.equal(r.model, model);
  assert.ok(r.requestId.length <= 256);
  assert.match(r.requestId, /sha256-[0-9a-f]{24}/);
});


/**
 * Run snapshots through the stateful path, as the scraper does, then shut down (flushDeferred, the
 * last step: scrapes held for judgement are counted); every record checked against the schema.
 * `judge`: the scrapes still held are first judged by one more scrape ({@link judgeHeld}), in the
 * last step, for tests whose subject is not what shutdown makes of an unjudged reading.
 */
function run(snaps: readonly EngineSnapshot[], opts: { judge?: boolean } = {}) {
  let baseline: EngineBaseline = baselineOf(snaps[0] as EngineSnapshot);
  const steps: { records: ReturnType<typeof valid>[]; notes: IntervalNote[] }[] = [];
  for (const snap of snaps.slice(1)) {
    const out = nextInterval(baseline, snap, { engineId: 'e' });
    baseline = out.baseline;
    steps.push({ records: out.records.map(valid), notes: out.notes });
  }
  const flushed = opts.judge ? judgeHeld(baseline, { engineId: 'e' }) : flushDeferred(baseline, { engineId: 'e' });
  baseline = flushed.baseline;
  steps.push({ records: flushed.records.map(valid), notes: flushed.notes });
  const records = steps.flatMap((s) => s.records);
  const sum = (k: 'promptTokens' | 'completionTokens' | 'cachedTokens') => records.reduce((a, r) => a + r[k], 0);
  return { steps, records, notes: steps.flatMap((s) => s.notes), baseline, prompt: sum('promptTokens'), completion: sum('completionTokens'), cached: sum('cachedTokens') };
}

/** A vLLM v1 page: per data-parallel engine [prompt, generation, cache hits]; `bad` garbles those series' lines. */
function vpage(engines: readonly (readonly [number, number, number])[], opts: { bad?: readonly string[]; extra?: string } = {}): string {
  const lines: string[] = [];
  engines.forEach(([p, g, c], e) => {
    const series: [string, number][] = [
      ['vllm:prompt_tokens_total', p],
      ['vllm:generation_tokens_total', g],
      ['vllm:prefix_cache_hits_total', c],
    ];
    for (const [name, value] of series) {
      const garbled = opts.bad?.includes(`${name}/${e}`);
      lines.push(`${name}{engine="${e}",model_name="m${garbled ? '\\q' : ''}"} ${value}`);
    }
    lines.push(`vllm:num_requests_running{engine="${e}",model_name="m"} 4`);
  });
  if (opts.extra) lines.push(opts.extra);
  return lines.join('\n');
}
const at = (i: number) => T0 + i * 15_000;

test('#1 a series missing from one scrape is missing data: the record waits, the next scrape covers both intervals', () => {
  const snaps = [
    vllm(vpage([[20_480, 8192, 0]]), at(0)),
    vllm(vpage([[20_580, 8242, 0]], { bad: ['vllm:prompt_tokens_total/0'] }), at(1)), // the prompt line is unreadable
    vllm(vpage([[20_680, 8292, 0]]), at(2)),
  ];
  const { steps, records, prompt, completion } = run(snaps);
  assert.deepEqual(steps[0]?.records, [], 'no record without the prompt counter, and no tokens lost');
  assert.deepEqual(steps[0]?.notes, [{ kind: 'series-missing', model: 'm', series: ['vllm:prompt_tokens{engine="0",model_name="m"}'], held: true, sinceMs: at(0) }]);
  assert.equal(records.length, 1);
  assert.equal(records[0]?.startMs, at(0), 'one record over both intervals');
  assert.equal(records[0]?.endMs, at(2));
  assert.equal(prompt, 200, 'not the counter lifetime (20,680)');
  assert.equal(completion, 100);
  assert.equal(records[0]?.tokensEstimated, false);
});

test(`#1 a series missing for more than ${MAX_HELD_SCRAPES} scrapes: records go on without it; its tokens count when it is back`, () => {
  const pages = [
    vpage([[1000, 100, 0], [5000, 500, 0]]),
    vpage([[1100, 110, 0], [5200, 520, 0]], { bad: ['vllm:prompt_tokens_total/1'] }),
    vpage([[1200, 120, 0], [5400, 540, 0]], { bad: ['vllm:prompt_tokens_total/1'] }),
    vpage([[1300, 130, 0], [5600, 560, 0]], { bad: ['vllm:prompt_tokens_total/1'] }),
    vpage([[1400, 140, 0], [5800, 580, 0]]),
  ];
  const { steps, records, prompt, completion, notes } = run(pages.map((p, i) => vllm(p, at(i))), { judge: true });
  // Each page's counters rise by more than 1%: it is counted with the next (the last at shutdown).
  assert.deepEqual(steps.map((s) => s.records.length), [0, 0, 0, 1, 1]);
  assert.equal(steps[3]?.records[0]?.promptTokens, 300, 'engine 0 only: engine 1 is owed');
  assert.equal(steps[3]?.records[0]?.tokensEstimated, true, 'the record knows it is short');
  assert.equal(steps[4]?.records[0]?.promptTokens, 100 + 800, 'engine 1 back: its increase since it was last seen');
  assert.equal(prompt, 400 + 800);
  assert.equal(completion, 40 + 80);
  assert.ok(notes.some((n) => n.kind === 'series-missing' && !n.held));
  assert.ok(notes.some((n) => n.kind === 'series-returned' && n.sinceMs === at(0)));
  assert.deepEqual(records.map((r) => [r.startMs, r.endMs]), [[at(0), at(3)], [at(3), at(4)]]);
});

test('#1 a series first seen after a page whose lines of that name were unreadable: start unknown, not its lifetime', () => {
  const extra = 'vllm:prompt_tokens_total{engine="9",model_name="m"} 1000000';
  const base = vpage([[1000, 100, 0]], { bad: ['vllm:prompt_tokens_total/0'], extra: 'vllm:prompt_tokens_total{engine="9",model_name="m\\q"} 999000' });
  const hidden = run([vllm(vpage([[1000, 100, 0]]), at(0)), vllm(base, at(1)), vllm(vpage([[1200, 120, 0]], { extra }), at(2))], { judge: true });
  assert.equal(hidden.prompt, 200, 'engine 9 may have been hidden: its 1,000,000 are not new');
  assert.ok(hidden.notes.some((n) => n.kind === 'series-unknown-start' && n.series === 'vllm:prompt_tokens{engine="9",model_name="m"}'));
  assert.equal(hidden.records[0]?.tokensEstimated, true);
  const clean = run([vllm(vpage([[1000, 100, 0]]), at(0)), vllm(vpage([[1200, 120, 0]], { extra: 'vllm:prompt_tokens_total{engine="9",model_name="m"} 50' }), at(1))], { judge: true });
  assert.equal(clean.prompt, 250, 'after a clean page, a new series started at zero');
});

test('#4 a wall-clock step: never dropped; the interval lasts what the monotonic clock measured and ends now', () => {
  const page = (p: number) => vpage([[p, p / 10, 0]]);
  const snap = (p: number, wall: number, mono: number) => readEngineSnapshot(parsePrometheusText(page(p)), 'vllm', wall, 'unknown', mono);
  const back = run([snap(10_000, T0, 0), snap(15_000, T0 - 2000, 15_000), snap(15_100, T0 + 13_000, 30_000)]);
  assert.equal(back.prompt, 5100);
  assert.deepEqual(back.records.map((r) => [r.startMs, r.endMs]), [[T0 - 17_000, T0 - 2000], [T0 - 2000, T0 + 13_000]]);
  // The first page rose by more than 1%: its notes come with the next page's.
  assert.deepEqual(back.steps[1]?.notes.slice(0, 2), [{ kind: 'clock-step', wallMs: -2000, monoMs: 15_000, held: false }, { kind: 'batch-size', model: 'm', source: 'running-gauge', metric: 'vllm:num_requests_running' }]);
  const forward = run([snap(10_000, T0, 0), snap(15_000, T0 + 3_600_000, 15_000)]);
  assert.deepEqual(forward.records.map((r) => [r.startMs, r.endMs]), [[T0 + 3_585_000, T0 + 3_600_000]], 'not an hour-long record');
  assert.ok(forward.notes.some((n) => n.kind === 'clock-step'));
  // One injected clock for both (no monotonic clock to measure with): the interval waits.
  const one = run([vllm(page(10_000), T0), vllm(page(15_000), T0 - 2000), vllm(page(15_100), T0 + 13_000)]);
  assert.deepEqual(one.notes.filter((n) => n.kind === 'clock-step'), [{ kind: 'clock-step', wallMs: -2000, monoMs: -2000, held: true }]);
  assert.deepEqual(one.records.map((r) => [r.startMs, r.endMs, r.promptTokens]), [[T0, T0 + 13_000, 5100]]);
});

const sgl = (p: number, g: number, c: number, extra = '') =>
  `sglang:prompt_tokens_total{model_name="m"} ${p}\nsglang:generation_tokens_total{model_name="m"} ${g}\nsglang:cached_tokens_total{cache_source="device",model_name="m"} ${c}\nsglang:num_running_reqs{model_name="m"} 4\n${extra}`;

test('#5 a restart seen on one counter resets every counter of that engine, even those already past their old value', () => {
  // No restart marker (prometheus_client multiprocess). The new process did 20k prompt (15k cached), 6k generated.
  const { records, notes } = run([sglang(sgl(50_000, 2000, 1000), T0), sglang(sgl(20_000, 6000, 15_000), T1), sglang(sgl(20_000, 6000, 15_000), T1 + 15_000)]);
  const r = records[0] as ReturnType<typeof valid>;
  assert.deepEqual([r.promptTokens, r.completionTokens, r.cachedTokens], [20_000, 6000, 15_000]);
  const reset = notes.find((n) => n.kind === 'counter-reset');
  assert.match(reset?.kind === 'counter-reset' ? reset.reason : '', /sglang:prompt_tokens\{model_name="m"\} went from 50000 to 20000; every counter of that engine counts from the restart/);
});

test('#6 increases are taken per series, then summed: one engine restarting does not hide or add the others', () => {
  const page = (p0: number, p1: number, created1?: number) =>
    [
      `vllm:prompt_tokens_total{engine="0",model_name="m"} ${p0}`,
      `vllm:prompt_tokens_total{engine="1",model_name="m"} ${p1}`,
      ...(created1 === undefined ? [] : ['vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9', `vllm:prompt_tokens_created{engine="1",model_name="m"} ${created1}`]),
      'vllm:generation_tokens_total{engine="0",model_name="m"} 0',
      'vllm:generation_tokens_total{engine="1",model_name="m"} 0',
      'vllm:num_requests_running{engine="0",model_name="m"} 2',
    ].join('\n');
  // The page after is the same: a drop on it stands.
  const prompt = (a: string, b: string) => run([vllm(a, T0), vllm(b, T1), vllm(b, T1 + 15_000)]).prompt;
  assert.equal(prompt(page(1_000_000, 300_000), page(1_000_600, 50)), 650, 'the sum shrinks: not the other engine\'s lifetime');
  assert.equal(prompt(page(1_000_000, 300_000), page(1_400_000, 50)), 400_050, 'the sum grows: the reset is still seen');
  assert.equal(prompt(page(1_000_000, 300_000, 1.7e9), page(1_000_600, 350_000, 1.7e9 + 3600)), 350_600, 'a re-created series (_created) resets only itself');
});

test('#6 tensor-parallel ranks of one engine are one series: a rank line missing is neither a reset nor double counted', () => {
  const page = (p: number, ranks: number[]) =>
    [...ranks.map((tp) => `sglang:prompt_tokens_total{model_name="m",tp_rank="${tp}"} ${p}`), 'sglang:generation_tokens_total{model_name="m"} 0'].join('\n');
  const { prompt, notes } = run([sglang(page(1000, [0, 1]), at(0)), sglang(page(1100, [0]), at(1)), sglang(page(1300, [1]), at(2)), sglang(page(1400, [0, 1]), at(3))], { judge: true });
  assert.equal(prompt, 400);
  assert.deepEqual(notes.filter((n) => n.kind !== 'batch-size'), []);
});

test('#7 cache hits ahead of their prompt tokens are carried, so cached tokens add up to the engine counter', () => {
  const page = (p: number, g: number, c: number) => `process_start_time_seconds 1.7e9\n${vpage([[p, g, c]])}`;
  // Interval 1: 10k prompt tokens finished (9k cached), and a 32k-token request (30k cached) scheduled
  // whose prefill ends after the scrape. Interval 2: that prefill ends.
  const { records, notes, cached, prompt, baseline } = run([vllm(page(0, 0, 0), at(0)), vllm(page(10_000, 500, 39_000), at(1)), vllm(page(42_000, 900, 39_000), at(2))], { judge: true });
  assert.deepEqual(records.map((r) => [r.promptTokens, r.cachedTokens]), [[10_000, 10_000], [32_000, 29_000]]);
  assert.equal(prompt, 42_000);
  assert.equal(cached, 39_000, 'the engine counted 39,000');
  assert.deepEqual(notes.filter((n) => n.kind === 'cached-capped'), [{ kind: 'cached-capped', model: 'm', cached: 39_000, prompt: 10_000, carried: 29_000 }]);
  assert.equal(baseline.models.get('m')?.credit, 0);
  // A restart voids the carried hits (their prefills died with the engine), and says so.
  const restarted = run([vllm(page(0, 0, 0), at(0)), vllm(page(10_000, 500, 39_000), at(1)), vllm(page(5000, 100, 2000).replace('1.7e9', '1.8e9'), at(2))], { judge: true });
  assert.deepEqual(restarted.records.map((r) => [r.promptTokens, r.cachedTokens]), [[10_000, 10_000], [5000, 2000]]);
  assert.ok(restarted.notes.some((n) => n.kind === 'cached-credit-dropped' && n.tokens === 29_000));
});

test('#8 the hit-rate gauge is averaged across data-parallel ranks; an out-of-range value is named, not a silent zero', () => {
  const page = (p: number, r0: number, r1: number) =>
    [
      `sglang:prompt_tokens_total{model_name="m"} ${p}`,
      `sglang:generation_tokens_total{model_name="m"} ${p / 10}`,
      `sglang:cache_hit_rate{dp_rank="0",model_name="m"} ${r0}`,
      `sglang:cache_hit_rate{dp_rank="1",model_name="m"} ${r1}`,
      'sglang:num_running_reqs{dp_rank="0",model_name="m"} 3',
    ].join('\n');
  const interval = (r0: number, r1: number) => {
    const { records, notes } = intervalRecords(sglang(page(1000, r0, r1), T0), sglang(page(2000, r0, r1), T1), { engineId: 'e' });
    return { r: valid(records[0]), notes };
  };
  assert.equal(interval(0.6, 0.5).r.cachedTokens, 550, '55%, not 110% (and not 0)');
  assert.equal(interval(0.3, 0.4).r.cachedTokens, 350);
  const bad = interval(0.6, 1.5);
  assert.equal(bad.r.cachedTokens, 600, 'the in-range rank only');
  assert.ok(bad.notes.some((n) => n.kind === 'hit-rate-out-of-range' && n.metric === 'sglang:cache_hit_rate' && n.values.join() === '1.5'));
  const off = interval(-1, -1);
  assert.deepEqual([off.r.cachedTokens, off.r.tokensEstimated], [0, true], 'vLLM v0 reports -1 when prefix caching is off: no hits');
  assert.ok(!off.notes.some((n) => n.kind === 'hit-rate-out-of-range'));
  const none = interval(-0.5, 1.5);
  assert.equal(none.r.cachedTokens, 0);
  assert.equal(none.r.tokensEstimated, true, 'unknown, so not presented as a measured zero');
  assert.ok(none.notes.some((n) => n.kind === 'hit-rate-out-of-range'));
});

test('N2 batch size is per engine: data-parallel engines running 10 and 0 are a batch of 10 (not the mean 5); 8 and 8 a batch of 8 (not 16)', () => {
  const page = (p: number, r0: number, r1: number) =>
    vpage([[p, p, 0], [p, p, 0]]).replace('vllm:num_requests_running{engine="0",model_name="m"} 4', `vllm:num_requests_running{engine="0",model_name="m"} ${r0}`).replace('vllm:num_requests_running{engine="1",model_name="m"} 4', `vllm:num_requests_running{engine="1",model_name="m"} ${r1}`);
  const r = valid(intervalRecords(vllm(page(100, 10, 0), T0), vllm(page(200, 10, 0), T1), { engineId: 'e' }).records[0]);
  assert.equal(r.batchSize, 10);
  const even = valid(intervalRecords(vllm(page(100, 8, 8), T0), vllm(page(200, 8, 8), T1), { engineId: 'e' }).records[0]);
  assert.equal(even.batchSize, 8, 'not 16');
});

test('N3 a renamed cached counter (old name gone, new one created) is read from the new name and noted, not a silent 0', () => {
  const prompt = (p: number) => `vllm:prompt_tokens_total{model_name="m"} ${p}\nvllm:generation_tokens_total{model_name="m"} 10`;
  const before = `${prompt(5000)}\nvllm:gpu_prefix_cache_hits_total{model_name="m"} 1000`;
  const after = `${prompt(6000)}\nvllm:prefix_cache_hits_total{model_name="m"} 300`;
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T1), { engineId: 'e' });
  assert.equal(valid(records[0]).cachedTokens, 300);
  assert.ok(notes.some((n) => n.kind === 'counter-renamed' && n.from === 'vllm:gpu_prefix_cache_hits_total' && n.to === 'vllm:prefix_cache_hits_total'));
  // Its deprecated twin on the same page never adds to it, even when the used name's line is unreadable once.
  const twins = (p: number, c: number, bad = false) =>
    `${prompt(p)}\nvllm:prefix_cache_hits_total{model_name="m${bad ? '\\q' : ''}"} ${c}\nvllm:gpu_prefix_cache_hits_total{model_name="m"} ${c}`;
  const held = run([vllm(twins(1000, 100), at(0)), vllm(twins(2000, 600, true), at(1)), vllm(twins(3000, 900), at(2))], { judge: true });
  assert.equal(held.cached, 800);
  assert.equal(held.prompt, 2000);
});

/**
 * A simulated vLLM page: data-parallel engines 0 and 1 (engine 1 on two tensor-parallel ranks that
 * report the same counts), counters prompt / generation / prefix-cache hits, and
 * process_start_time_seconds. Cache hits are counted when a request is scheduled and prompt tokens
 * when its prefill ends, so part of a step's hits can be counted a step early.
 */
const engineStep = fc.record({
  prompt: fc.nat(40_000),
  cachedPct: fc.integer({ min: 0, max: 100 }),
  earlyPct: fc.integer({ min: 0, max: 100 }), // of the NEXT step's cached tokens, counted in this step
  gen: fc.nat(20_000),
  running: fc.nat(64),
  restart: fc.constantFrom(false, false, false, false, false, false, false, true), // no marker: counters drop
  hide: fc.constantFrom('none', 'none', 'none', 'none', 'none', 'prompt', 'gen', 'cached', 'all', 'rank'),
  glitch: fc.constantFrom(false, false, false, false, false, false, false, true), // the prompt line read as a hundredth of its value
});
const simStep = fc.record({
  engines: fc.tuple(engineStep, engineStep),
  pageRestart: fc.constantFrom(false, false, false, false, false, false, false, false, false, true), // process_start_time_seconds changes
  clock: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'back', 'forward'),
});
type SimMetric = 'prompt' | 'gen' | 'cached';
const SIM_METRICS: SimMetric[] = ['prompt', 'gen', 'cached'];
const SIM_NAMES: Record<SimMetric, string> = { prompt: 'vllm:prompt_tokens_total', gen: 'vllm:generation_tokens_total', cached: 'vllm:prefix_cache_hits_total' };

test('property: over random runs with restarts, bad readings, missing and unreadable series, per-series resets, hits ahead of prompts and clock steps, the records add up to the engine totals less only what is unknowable', () => {
  fc.assert(
    fc.property(fc.array(simStep, { minLength: 1, maxLength: 25 }), (generated) => {
      // A last clean scrape with nothing new: every series readable, so everything owed is due; and
      // one more that judges it (at shutdown, a steep rise no reading judged is left to the next run).
      const quiet = { prompt: 0, cachedPct: 0, earlyPct: 0, gen: 0, running: 0, restart: false, hide: 'none' as const, glitch: false };
      const last = { engines: [quiet, quiet] as const, pageRestart: false, clock: 'ok' as const };
      const steps = [...generated, last, last];
      const zero = (): Record<SimMetric, number> => ({ prompt: 0, gen: 0, cached: 0 });
      const engines = [0, 1].map((e) => ({
        value: { prompt: 1_000_000 + e * 77_777, gen: 400_000, cached: 300_000 } as Record<SimMetric, number>,
        lastSeen: { prompt: 1_000_000 + e * 77_777, gen: 400_000, cached: 300_000 } as Record<SimMetric, number>,
        prevSeen: { prompt: 1_000_000 + e * 77_777, gen: 400_000, cached: 300_000 } as Record<SimMetric, number>, // the value lastSeen is read against
        restartedSince: { prompt: false, gen: false, cached: false } as Record<SimMetric, boolean>,
        early: 0, // hits of this step's prompts already counted in the previous step
        glitched: false, // this step's prompt reading is a bad one
        glitchAt: null as number | null, // the step of a bad reading that no prompt reading after it has judged yet
        seenAt: { prompt: -1, gen: -1, cached: -1 } as Record<SimMetric, number>, // the page of lastSeen
        lineAfter: { prompt: null, gen: null, cached: null } as Record<SimMetric, number | null>, // the first page after seenAt with a (bad) line of it
        restartPages: new Set<number>(), // steps whose page shows this engine restarted (a drop, no marker)
      }));
      const truth = zero(); // every token the engine counted
      const observable = zero(); // what a reader of the scrapes can know: increase() over the visible samples
      const lost = zero(); // counted after a series was last seen and before its engine restarted
      let processStart = T0 / 1000 - 86_400;
      let wall = T0;
      let mono = 0;
      const restartSteps = new Set<number>();
      const clockSteps = new Set<number>();
      const markerSteps = new Set<number>(); // pages whose process_start_time_seconds changed

      let pageAt = -1; // the step whose page is rendered
      const render = (step: (typeof steps)[number]): string => {
        const lines = [`process_start_time_seconds ${processStart}`];
        engines.forEach((eng, e) => {
          const s = step.engines[e] as (typeof steps)[number]['engines'][number];
          for (const m of SIM_METRICS) {
            // After a restart the hit counter is created again only on its first hit (prometheus_client is lazy).
            const absent = m === 'cached' && eng.restartedSince.cached && eng.value.cached === 0;
            const hidden = s.hide === m || s.hide === 'all';
            const glitched = eng.glitched && m === 'prompt';
            const ranks = e === 1 ? ['0', '1'] : [null];
            for (const tp of ranks) {
              if (absent || (s.hide === 'rank' && tp === '1')) continue;
              const shown = glitched ? Math.floor(eng.value[m] / 100) : eng.value[m];
              lines.push(`${SIM_NAMES[m]}{engine="${e}",model_name="${hidden ? 'm\\q' : 'm'}"${tp === null ? '' : `,tp_rank="${tp}"`}} ${shown}`);
            }
            if (!absent && !hidden && eng.lineAfter[m] === null) eng.lineAfter[m] = pageAt;
            // A bad reading is no reading: what it hid is counted from the next one.
            if (!absent && !hidden && !glitched) {
              // Judged before seenAt and lineAfter move on to this reading.
              const riseGlitched = unjudgedRise(eng, m, pageAt) === 'glitch';
              eng.seenAt[m] = pageAt;
              eng.lineAfter[m] = null;
              observable[m] += eng.restartedSince[m] ? eng.value[m] : eng.value[m] - eng.lastSeen[m];
              // After a restart, read against zero; after a rise read as a glitch, against the value before it.
              eng.prevSeen[m] = eng.restartedSince[m] ? 0 : riseGlitched ? eng.prevSeen[m] : eng.lastSeen[m];
              eng.lastSeen[m] = eng.value[m];
              eng.restartedSince[m] = false;
              if (m === 'prompt') eng.glitchAt = null;
            }
          }
          lines.push(`vllm:num_requests_running{engine="${e}",model_name="m"} ${s.running}`);
        });
        return lines.join('\n');
      };
      // The last reading of a counter rose steeply (on a page whose restart marker changed, nothing
      // is judged: every counter counts from zero; on the page its engine restarted, it fell), and no page of the look-ahead after it had its
      // line up to step k: still to be judged at k (pending), or read as a glitch.
      const unjudgedRise = (eng: (typeof engines)[number], m: SimMetric, k: number): 'pending' | 'glitch' | null => {
        const seen = eng.seenAt[m];
        const line = eng.lineAfter[m];
        if (eng.restartedSince[m] || markerSteps.has(seen) || eng.restartPages.has(seen) || !(eng.lastSeen[m] - eng.prevSeen[m] > COUNTER_DIP_RESTART_SHARE * eng.lastSeen[m])) return null;
        if (line !== null && line - seen <= COUNTER_LOOKAHEAD_SCRAPES) return null;
        return k - seen > COUNTER_LOOKAHEAD_SCRAPES ? 'glitch' : 'pending';
      };
      const restart = (eng: (typeof engines)[number], k: number): void => {
        for (const m of SIM_METRICS) {
          // Such a rise with no page of the look-ahead to judge it was read as a glitch (its increase
          // to be counted from the value before it): the restart counts from zero, so it is lost.
          if (unjudgedRise(eng, m, k) === 'glitch') {
            observable[m] -= eng.lastSeen[m] - eng.prevSeen[m];
            lost[m] += eng.lastSeen[m] - eng.prevSeen[m];
          }
          lost[m] += eng.value[m] - (eng.restartedSince[m] ? 0 : eng.lastSeen[m]);
          eng.value[m] = 0;
          eng.restartedSince[m] = true;
        }
        eng.early = 0; // requests scheduled before the restart died with it
        eng.glitchAt = null; // another process: a bad reading before it is read as one
      };

      const snaps = [readEngineSnapshot(parsePrometheusText(render(steps[steps.length - 1] as (typeof steps)[number])), 'vllm', wall, 'unknown', mono)];
      steps.forEach((step, k) => {
        mono += 15_000;
        wall += step.clock === 'back' ? -2000 : step.clock === 'forward' ? 3_600_000 : 15_000;
        if (step.clock !== 'ok') clockSteps.add(k);
        if (step.pageRestart) {
          markerSteps.add(k);
          // The new process started after the previous page, by this host's clock (the agent's:
          // engine and agent share a node), after any step of it; a restart never starts earlier.
          processStart = Math.max(processStart + 1, wall / 1000 - 1);
          engines.forEach((eng) => restart(eng, k));
          restartSteps.add(k);
        }
        engines.forEach((eng, e) => {
          const s = step.engines[e] as (typeof step.engines)[number];
          let prompt = s.prompt;
          let gen = s.gen;
          // Without a marker a restart must show: its prompt counter is read, below its last reading
          // by more than a dip (COUNTER_DIP_RESTART_SHARE), or it would be read as one; and it is
          // still below at the next readings (up to COUNTER_LOOKAHEAD_SCRAPES, until one that cannot
          // judge), or it would be read as a glitch (a bad reading). Each counter also lands below
          // the reading before its last one: after a steep rise, a reading between the two reads as
          // the rise being a bad one (a restart that counted past it is taken for none).
          const floor = (m: SimMetric) => Math.ceil(Math.min(eng.lastSeen[m], eng.prevSeen[m]) * (1 - COUNTER_DIP_RESTART_SHARE)) - 1;
          const below = floor('prompt');
          const after = steps[k + 1];
          // A page without the prompt line says nothing: a later one of the look-ahead judges, up to a marker change.
          let judged = false;
          for (let j = 1; j <= COUNTER_LOOKAHEAD_SCRAPES; j++) {
            const later = steps[k + j];
            if (later === undefined || later.pageRestart) break;
            const mine = later.engines[e] as (typeof later.engines)[number];
            if (mine.hide !== 'prompt' && mine.hide !== 'all') {
              judged = true;
              break;
            }
          }
          // The counts of each counter from the restart on, over the scrapes that judge it (until a
          // marker change): `first` at the restart, then what later steps add (cached: at most their hits).
          const staysUnder = (m: SimMetric, first: number, bound: number): boolean => {
            let total = first;
            for (let j = 1; total <= bound && j <= COUNTER_LOOKAHEAD_SCRAPES + 1; j++) {
              const later = steps[k + j];
              const mine = later?.engines[e];
              if (later === undefined || mine === undefined || later.pageRestart) break;
              total += m === 'prompt' ? mine.prompt : m === 'gen' ? mine.gen : Math.round((mine.prompt * mine.cachedPct) / 100);
            }
            return total <= bound;
          };
          const cachedFirst = Math.round((Math.min(prompt, below) * s.cachedPct) / 100) + (after?.engines[e] ? Math.round((after.engines[e].prompt * after.engines[e].cachedPct) / 100) : 0);
          // (A restart after a bad reading that no reading has judged yet, the pages between without
          // the prompt line, would make it look like the start of the restart.)
          const unjudgedGlitch = eng.glitchAt !== null && k - eng.glitchAt <= COUNTER_LOOKAHEAD_SCRAPES;
          // A hit counter's steep rise still to be judged when the restart takes it off the page (created
          // again on its first hit) may be read as a glitch, or not: no restart then.
          const cachedPending = unjudgedRise(eng, 'cached', k) === 'pending';
          const restarts = s.restart && !step.pageRestart && !unjudgedGlitch && !cachedPending && !eng.restartedSince.prompt && judged && below >= 0 && staysUnder('prompt', Math.min(prompt, below), below)
            && floor('gen') >= 0 && staysUnder('gen', Math.min(gen, floor('gen')), floor('gen'))
            // A hit counter at zero stays off the page (created on its first hit): nothing to judge.
            && (staysUnder('cached', cachedFirst, 0) || staysUnder('cached', cachedFirst, floor('cached')));
          if (restarts) {
            restart(eng, k);
            eng.restartPages.add(k);
            prompt = Math.min(prompt, below);
            gen = Math.min(gen, floor('gen'));
            (s as { hide: string }).hide = 'none';
            restartSteps.add(k);
          }
          const glitchedBefore = eng.glitched;
          const cached = Math.round((prompt * s.cachedPct) / 100);
          const next = steps[k + 1]?.engines[e];
          const nextCached = next ? Math.round((next.prompt * next.cachedPct) / 100) : 0;
          const earlyNext = Math.round((nextCached * s.earlyPct) / 100);
          const hits = Math.max(0, cached - eng.early) + earlyNext;
          eng.early = earlyNext;
          const inc = { prompt, gen, cached: hits };
          for (const m of SIM_METRICS) {
            eng.value[m] += inc[m];
            truth[m] += inc[m];
          }
          // A bad reading that is a drop (one that is not reads as a true count between the two), under
          // the reading before the last one too (else, after a steep rise, it reads as that rise being a bad one).
          eng.glitched = s.glitch && !glitchedBefore && !unjudgedGlitch && !restarts && !step.pageRestart
            && Math.floor(eng.value.prompt / 100) < (eng.restartedSince.prompt ? 0 : Math.min(eng.lastSeen.prompt, eng.prevSeen.prompt)) * (1 - COUNTER_DIP_RESTART_SHARE);
          if (eng.glitched) eng.glitchAt = k;
        });
        pageAt = k;
        snaps.push(readEngineSnapshot(parsePrometheusText(render(step)), 'vllm', wall, 'unknown', mono));
      });
      // The oracle itself: only tokens counted between a series' last reading and a restart are lost.
      for (const m of SIM_METRICS) assert.equal(observable[m] + lost[m], truth[m], m);

      const { steps: out, records, prompt, completion, cached, notes, baseline } = run(snaps);
      assert.equal(prompt, observable.prompt, 'prompt tokens');
      assert.equal(completion, observable.gen, 'generation tokens');
      // Hits ahead of prompts wait as credit; a restart voids it, with a note.
      // Hits ahead of prompts wait as credit for one interval; a restart voids it, so does finding
      // no prompt tokens in the next interval; both with a note naming the tokens.
      const dropped = notes.reduce((a, n) => a + (n.kind === 'cached-credit-dropped' ? n.tokens : 0), 0);
      const expired = notes.reduce((a, n) => a + (n.kind === 'cached-credit-expired' ? n.tokens : 0), 0);
      const credit = baseline.models.get('m')?.credit ?? 0;
      assert.equal(cached + dropped + expired + credit, observable.cached, 'cached tokens');
      if (restartSteps.size === 0) {
        assert.deepEqual([prompt, completion, cached + expired + credit], [truth.prompt, truth.gen, truth.cached], 'no restart: exactly the engine totals');
        // Hits run at most one step ahead, so with every series read each time nothing is left waiting or
        // expires. A bad reading is a prompt count not read: hits ahead of it may find no prompt tokens.
        if (generated.every((st) => st.engines.every((e) => e.hide === 'none' && !e.glitch))) assert.deepEqual([credit, expired], [0, 0], 'all hits recorded');
      }
      // Every restart is reported, once; so is every clock step; nothing else resets. A page with a
      // drop is counted (and its notes come) with the next one, so notes are counted, not placed.
      const count = (kind: IntervalNote['kind']) => out.reduce((a, st) => a + st.notes.filter((n) => n.kind === kind).length, 0);
      assert.equal(count('counter-reset'), restartSteps.size);
      assert.equal(count('clock-step'), clockSteps.size);
      // A steep rise followed by look-ahead pages all without its line is read as a glitch too (counted on later).
      const unjudgeable = generated.some((_, k) => [0, 1].some((e) => {
        const next = generated.slice(k + 1, k + 1 + COUNTER_LOOKAHEAD_SCRAPES);
        return next.length === COUNTER_LOOKAHEAD_SCRAPES && next.every((st) => st.engines[e]?.hide !== 'none' && st.engines[e]?.hide !== 'rank');
      }));
      if (!unjudgeable && generated.every((st) => st.engines.every((e) => !e.glitch))) assert.equal(count('counter-glitch'), 0, 'no bad reading: none judged one');
      assert.deepEqual(baseline.deferred, [], 'shutdown counted every scrape held');
      // Records: valid (cached <= prompt is checked by the schema), distinct ids, positive length.
      assert.equal(new Set(records.map((r) => r.requestId)).size, records.length);
      for (const r of records) assert.ok(r.endMs > r.startMs);
    }),
    { numRuns: 300 },
  );
});

test('an interval with more tokens than one record may hold (after a long agent downtime) becomes several records of it that add up exactly', () => {
  const before = fixture('vllm-0.10-v1-rendered.prom');
  let after = bump(before, `vllm:prompt_tokens_total${E0}`, 250_000_000);
  after = bump(after, `vllm:prompt_tokens_total${E1}`, 1);
  after = bump(after, `vllm:generation_tokens_total${E0}`, 7);
  after = bump(after, `vllm:prefix_cache_hits_total${E0}`, 200_000_000);
  const T2 = T0 + 3 * 86_400_000;
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T2), { engineId: 'vllm-a', gpus: [0] });
  assert.deepEqual(notes.filter((n) => n.kind !== 'batch-size'), [{ kind: 'interval-split', model: 'Qwen/Qwen3-0.6B', pieces: 3, startMs: T0, endMs: T2 }]);
  const parsed = records.map(valid);
  const id = `engine-metrics:vllm-a:Qwen/Qwen3-0.6B:${T0}-${T2}`;
  assert.deepEqual(parsed.map((r) => [r.requestId, r.startMs, r.endMs]), [1, 2, 3].map((i) => [`${id}#${i}/3`, T0, T2]));
  assert.deepEqual(parsed.map((r) => r.promptTokens), [83_333_333, 83_333_334, 83_333_334]);
  assert.deepEqual(parsed.map((r) => r.cachedTokens), [66_666_666, 66_666_667, 66_666_667]);
  assert.deepEqual(parsed.map((r) => r.completionTokens), [2, 2, 3]);
});

test('a counter read low once, then back at its value: a bad reading read as that value (no tokens invented, records flagged), with and without _created', () => {
  // The review's case: vllm:generation_tokens_total 655360.0 read as 6553 (a line cut short).
  const G = `vllm:generation_tokens_total${E0}`;
  const P = `vllm:prompt_tokens_total${E0}`;
  for (const created of [true, false]) {
    const p1 = created ? fixture('vllm-0.10-v1-rendered.prom') : withoutCreated(fixture('vllm-0.10-v1-rendered.prom'));
    const p2 = withValue(bump(p1, P, 500), G, 6553);
    const p3 = bump(bump(p1, G, 100), P, 1000);
    const out = run([vllm(p1, at(0)), vllm(p2, at(1)), vllm(p3, at(2))]);
    assert.deepEqual(out.steps[0]?.records, [], `created ${created}: the low page waits for the next`);
    assert.deepEqual(out.steps[0]?.notes, [{ kind: 'counter-drop-held', model: 'Qwen/Qwen3-0.6B', series: 'vllm:generation_tokens{engine="0",model_name="Qwen/Qwen3-0.6B"}', from: 655_360, to: 6553 }]);
    assert.deepEqual([out.prompt, out.completion], [1000, 100], `created ${created}: the engine's 1,000 and 100, not 648,907 invented`);
    assert.deepEqual(out.records.map((r) => [r.startMs, r.endMs, r.promptTokens, r.completionTokens, r.tokensEstimated]), [
      [at(0), at(1), 500, 0, true],
      [at(1), at(2), 500, 100, true],
    ]);
    assert.ok(out.notes.some((n) => n.kind === 'counter-glitch' && n.from === 655_360 && n.to === 6553 && n.next === 655_460));
    assert.ok(!out.notes.some((n) => n.kind === 'counter-reset' || n.kind === 'counter-dip'));
  }
});

test('a counter read high once, then back under that reading: a bad reading read as the value before it, not counted (and its fall no restart)', () => {
  // 655360.0 read as 6553600 (a digit too many), then true readings again.
  const G = `vllm:generation_tokens_total${E0}`;
  const P = `vllm:prompt_tokens_total${E0}`;
  for (const created of [true, false]) {
    const p1 = created ? fixture('vllm-0.10-v1-rendered.prom') : withoutCreated(fixture('vllm-0.10-v1-rendered.prom'));
    const p2 = withValue(bump(p1, P, 500), G, 6_553_600);
    const p3 = bump(bump(p1, G, 100), P, 1000);
    const p4 = bump(bump(p1, G, 150), P, 1200);
    const out = run([vllm(p1, at(0)), vllm(p2, at(1)), vllm(p3, at(2)), vllm(p4, at(3))]);
    assert.deepEqual(out.steps[0]?.records, [], `created ${created}: the high page waits for the next`);
    assert.deepEqual(out.records.map((r) => [r.startMs, r.endMs, r.promptTokens, r.completionTokens, r.tokensEstimated]), [
      [at(0), at(1), 500, 0, true],
      [at(1), at(2), 500, 100, true],
      [at(2), at(3), 200, 50, false],
    ], `created ${created}: the engine's 150 generated tokens, not 5.9 million`);
    assert.ok(out.notes.some((n) => n.kind === 'counter-glitch' && n.from === 655_360 && n.to === 6_553_600 && n.next === 655_460));
    assert.ok(!out.notes.some((n) => n.kind === 'counter-reset' || n.kind === 'counter-dip'));
  }
});

test('two bad low readings in a row, then the counter back at its value: bad readings, not a restart', () => {
  const G = `vllm:generation_tokens_total${E0}`;
  const P = `vllm:prompt_tokens_total${E0}`;
  for (const created of [true, false]) {
    const p1 = created ? fixture('vllm-0.10-v1-rendered.prom') : withoutCreated(fixture('vllm-0.10-v1-rendered.prom'));
    const pages = [
      p1,
      withValue(bump(p1, P, 300), G, 6553),
      withValue(bump(p1, P, 600), G, 6600),
      bump(bump(p1, G, 100), P, 900),
      bump(bump(p1, G, 130), P, 1000),
    ];
    const out = run(pages.map((text, i) => vllm(text, at(i))));
    const { records } = out;
    assert.deepEqual([records.reduce((a, r) => a + r.promptTokens, 0), records.reduce((a, r) => a + r.completionTokens, 0)], [1000, 130], `created ${created}`);
    assert.deepEqual(records.map((r) => [r.startMs, r.endMs, r.completionTokens, r.tokensEstimated]), [
      [at(0), at(1), 0, true],
      [at(1), at(2), 0, true],
      [at(2), at(3), 100, true],
      [at(3), at(4), 30, false],
    ], `created ${created}`);
    assert.equal(out.notes.filter((n) => n.kind === 'counter-glitch').length, 2);
    assert.ok(!out.notes.some((n) => n.kind === 'counter-reset' || n.kind === 'counter-dip'), `created ${created}`);
  }
});

test('a restart behind a drop still counts from zero once the next scrapes stay below, with and without _created; _created the same: counted on from the low value', () => {
  const G = `vllm:generation_tokens_total${E0}`;
  const P = `vllm:prompt_tokens_total${E0}`;
  const p1 = withoutCreated(fixture('vllm-0.10-v1-rendered.prom'));
  // Engine 0 restarted: 300 prompt and 20 generated since, then 200 and 10 more a scrape.
  const pages = [0, 1, 2, 3].map((k) => withValue(withValue(p1, P, 300 + 200 * k), G, 20 + 10 * k));
  const out = run([vllm(p1, at(0)), ...pages.map((page, k) => vllm(page, at(k + 1)))], { judge: true });
  for (let k = 0; k < COUNTER_LOOKAHEAD_SCRAPES; k++) assert.deepEqual(out.steps[k]?.records, []);
  // Each scrape after it rose by more than 1%: counted once the next one shows the counter went on.
  assert.deepEqual(out.steps[COUNTER_LOOKAHEAD_SCRAPES]?.records.map((r) => [r.startMs, r.endMs, r.promptTokens, r.completionTokens]), [[at(0), at(1), 300, 20], [at(1), at(2), 200, 10], [at(2), at(3), 200, 10]]);
  assert.ok(out.notes.some((n) => n.kind === 'counter-reset'));
  assert.ok(!out.notes.some((n) => n.kind === 'counter-glitch'));
  // With _created unchanged a drop that stands is part of the count gone (a worker's share): on from the low value.
  const c1 = fixture('vllm-0.10-v1-rendered.prom');
  const dip = run([vllm(c1, at(0)), vllm(withValue(c1, P, 1_000_000), at(1)), vllm(withValue(c1, P, 1_000_700), at(2))]);
  assert.equal(dip.prompt, 700);
  assert.ok(dip.notes.some((n) => n.kind === 'counter-dip' && !n.held && n.from === 1_298_848 && n.to === 1_000_000));
  assert.equal(dip.records.some((r) => r.tokensEstimated), false);
});

test('a drop no next scrape can judge (shutdown) is flushed as a glitch: the low page counted, nothing invented, flagged; a restart behind it is seen later', () => {
  const G = `vllm:generation_tokens_total${E0}`;
  const P = `vllm:prompt_tokens_total${E0}`;
  const p1 = withoutCreated(fixture('vllm-0.10-v1-rendered.prom'));
  const low = withValue(bump(p1, P, 500), G, 6553);
  const held = nextInterval(baselineOf(vllm(p1, at(0))), vllm(low, at(1)), { engineId: 'e' });
  assert.deepEqual(held.records, []);
  const flushed = flushDeferred(held.baseline, { engineId: 'e' });
  assert.deepEqual(flushed.records.map((r) => [r.start, r.end, r.prompt_tokens, r.completion_tokens, r.tokens_estimated]), [[at(0), at(1), 500, 0, true]]);
  assert.ok(flushed.notes.some((n) => n.kind === 'counter-glitch' && n.next === null));
  assert.deepEqual(flushed.baseline.deferred, []);
  assert.deepEqual(flushDeferred(flushed.baseline, { engineId: 'e' }).records, [], 'flushed once');
  // The next run reads 20 generated by a restarted engine: a drop again, judged by the scrapes after.
  let baseline = flushed.baseline;
  const counted: ReturnType<typeof valid>[] = [];
  for (let k = 0; k <= COUNTER_LOOKAHEAD_SCRAPES; k++) {
    const step = nextInterval(baseline, vllm(withValue(low, G, 20 * (k + 1)), at(2 + k)), { engineId: 'e' });
    baseline = step.baseline;
    if (k < COUNTER_LOOKAHEAD_SCRAPES) assert.deepEqual(step.records, [], `held (${k})`);
    counted.push(...step.records.map(valid));
  }
  assert.deepEqual(counted.map((r) => [r.completionTokens, r.tokensEstimated]), [[20, true], [20, false], [20, false]], 'from the restart, the first flagged (it starts at the glitch)');
});

test('an interval of more pieces than a call takes arguments becomes all of its records', () => {
  const before = fixture('vllm-0.10-v1-rendered.prom');
  const after = bump(before, `vllm:prompt_tokens_total${E0}`, 160_000 * 100_000_000);
  const T2 = T0 + 3 * 86_400_000;
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T2), { engineId: 'vllm-a', gpus: [0] });
  assert.deepEqual(notes.filter((n) => n.kind === 'interval-split').map((n) => (n as { pieces: number }).pieces), [160_000]);
  assert.equal(records.length, 160_000);
  assert.equal(records.reduce((a, r) => a + (r.prompt_tokens as number), 0), 160_000 * 100_000_000);
});

/** A vLLM page of one engine: prompt and generation counters; `prompt` null: its line unreadable. */
const onePage = (prompt: number | string, gen: number, i: number): EngineSnapshot =>
  readEngineSnapshot(
    parsePrometheusText(
      ['process_start_time_seconds 1.7e9', `vllm:prompt_tokens_total{model_name="m"} ${prompt}`, `vllm:generation_tokens_total{model_name="m"} ${gen}`, 'vllm:num_requests_running{model_name="m"} 2'].join('\n'),
    ),
    'vllm',
    at(i),
    'unknown',
    i * 15_000,
  );

/** Feed snapshots from `baseline`: the records (checked) and notes, and the baseline after. */
function feed(baseline: EngineBaseline, snaps: readonly EngineSnapshot[]) {
  const records: ReturnType<typeof valid>[] = [];
  const notes: IntervalNote[] = [];
  for (const snap of snaps) {
    const out = nextInterval(baseline, snap, { engineId: 'e' });
    baseline = out.baseline;
    records.push(...out.records.map(valid));
    notes.push(...out.notes);
  }
  return { records, notes, baseline };
}

test('a steep rise no scrape judged before shutdown (655360 read as 6553600) is read as a glitch: nothing invented, flagged; the next run counts on from the value before it', () => {
  // Prompt counter 655,000, +100 a scrape; the last scrape before shutdown reads 6,553,000 (a digit too many; truly 655,400).
  const run1 = feed(baselineOf(onePage(655_000, 65_500, 0)), [1, 2, 3].map((k) => onePage(655_000 + 100 * k, 65_500 + 10 * k, k)).concat(onePage(6_553_000, 65_540, 4)));
  assert.deepEqual(run1.baseline.deferred.length, 1, 'the steep rise waits for a scrape to judge it');
  const flushed = flushDeferred(run1.baseline, { engineId: 'e' });
  const first = [...run1.records, ...flushed.records.map(valid)];
  assert.deepEqual(first.map((r) => [r.promptTokens, r.completionTokens, r.tokensEstimated]), [[100, 10, false], [100, 10, false], [100, 10, false], [0, 10, true]], 'not 5,897,700 invented');
  assert.ok(flushed.notes.some((n) => n.kind === 'counter-glitch' && n.from === 655_300 && n.to === 6_553_000 && n.next === null));
  // The agent restarts: the stored baseline is the value before the bad reading.
  const restored = restoreBaseline(serializeBaseline(flushed.baseline, 'http://e/metrics'), 'http://e/metrics', at(10), 10 * 15_000);
  assert.ok(restored.ok);
  const run2 = feed(restored.baseline, [0, 1, 2, 3, 4].map((k) => onePage(655_500 + 100 * k, 65_560 + 10 * k, 10 + k)));
  const second = [...run2.records, ...flushDeferred(run2.baseline, { engineId: 'e' }).records.map(valid)];
  const all = [...first, ...second];
  assert.deepEqual([all.reduce((a, r) => a + r.promptTokens, 0), all.reduce((a, r) => a + r.completionTokens, 0)], [900, 100], 'the engine counted 900 and 100: not 6,553,900');
  assert.ok(![...run1.notes, ...flushed.notes, ...run2.notes].some((n) => n.kind === 'counter-reset' || n.kind === 'counter-drop-held'), 'the true reading after it is no drop, nor a restart');
});

test('a steep rise whose next page lacks that counter (an unreadable line) is judged by the pages after: a bad high reading is a glitch, nothing invented, no restart', () => {
  // 655,000, 655,100, then 6,552,000 (truly 655,200), then a page whose prompt line cannot be read, then 655,400, 655,500, ...
  const pages = [onePage(655_000, 65_500, 0), onePage(655_100, 65_510, 1), onePage(6_552_000, 65_520, 2), onePage('65x53', 65_530, 3)];
  for (let k = 4; k <= 8; k++) pages.push(onePage(655_000 + 100 * k, 65_500 + 10 * k, k));
  const out = feed(baselineOf(pages[0] as EngineSnapshot), pages.slice(1));
  const flushed = flushDeferred(out.baseline, { engineId: 'e' });
  const records = [...out.records, ...flushed.records.map(valid)];
  const notes = [...out.notes, ...flushed.notes];
  assert.deepEqual([records.reduce((a, r) => a + r.promptTokens, 0), records.reduce((a, r) => a + r.completionTokens, 0)], [800, 80], 'the engine counted 800 and 80: not 6,552,800');
  assert.ok(notes.some((n) => n.kind === 'counter-glitch' && n.from === 655_100 && n.to === 6_552_000 && n.next === 655_400), 'judged by the page after the one without its line');
  assert.ok(!notes.some((n) => n.kind === 'counter-reset' || n.kind === 'counter-drop-held'));
  assert.ok(records.some((r) => r.tokensEstimated), 'the records around the bad reading are flagged');
  assert.equal(records.find((r) => r.endMs === at(2))?.tokensEstimated, true);
});
