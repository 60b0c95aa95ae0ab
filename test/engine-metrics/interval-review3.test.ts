import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestRecord } from '../../model/request-record.js';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import type { EngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import { baselineOf, COUNTER_LOOKAHEAD_SCRAPES, MAX_HELD_SCRAPES, nextInterval } from '../../collectors/engine-metrics/interval-records.js';
import type { IntervalNote } from '../../collectors/engine-metrics/interval-records.js';
import type { RequestRecordWire } from '../../model/request-record.js';
import { bump, fixture, withValue } from './fixtures.js';
import { judgeHeld } from './judge-held.js';

const T0 = Date.UTC(2026, 10, 1, 10);
const at = (i: number) => T0 + i * 15_000;
const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
const E1 = '{engine="1",model_name="Qwen/Qwen3-0.6B"}';
const MODEL = 'Qwen/Qwen3-0.6B';
const snap = (engine: 'vllm' | 'sglang', text: string, atMs: number): EngineSnapshot => readEngineSnapshot(parsePrometheusText(text), engine, atMs, 'unknown');

/**
 * Feed snapshots one at a time, then judge the scrapes still held by one more scrape that is not
 * counted itself ({@link judgeHeld}; shutdown would read an unjudged steep rise as a glitch), the
 * last step: records (wire) and notes per step.
 */
function run(snaps: readonly EngineSnapshot[]) {
  let baseline = baselineOf(snaps[0] as EngineSnapshot);
  const steps: { records: RequestRecordWire[]; notes: IntervalNote[] }[] = [];
  const take = (r: ReturnType<typeof nextInterval>): void => {
    baseline = r.baseline;
    for (const w of r.records) assert.ok(parseRequestRecord(w, 0).ok, 'a valid record');
    steps.push({ records: r.records, notes: r.notes });
  };
  for (const s of snaps.slice(1)) take(nextInterval(baseline, s, { engineId: 'e' }));
  take(judgeHeld(baseline, { engineId: 'e' }));
  return { steps, records: steps.flatMap((s) => s.records), notes: steps.flatMap((s) => s.notes), baseline };
}

// vLLM 0.10, two data-parallel engines, with its request-time histograms.
const VLLM = `${fixture('vllm-0.10-v1-rendered.prom')}\n${fixture('vllm-0.10-v1-request-time-rendered.prom')}`;
const idle = (text: string) => withValue(withValue(text, `vllm:num_requests_running${E0}`, 0), `vllm:num_requests_running${E1}`, 0);
/** Engine 0 served 40,000 prompt tokens in the interval; the running gauge reads 0 at both ends. */
const served = (text: string) => bump(bump(text, `vllm:prompt_tokens_total${E0}`, 40_000), `vllm:generation_tokens_total${E0}`, 12_000);
const finished = (text: string, engine: string, seconds: number, requests: number) =>
  bump(bump(text, `vllm:request_inference_time_seconds_sum${engine}`, seconds), `vllm:request_inference_time_seconds_count${engine}`, requests);

test('batch_size: 40 requests of 10 s between two scrapes are a time-averaged batch of 27 (Δ time in RUNNING / Δt), not 1 from the gauge', () => {
  const before = idle(VLLM);
  // e2e latency grows too (queueing included): the running time is preferred over it.
  const after = bump(finished(served(before), E0, 400, 40), `vllm:e2e_request_latency_seconds_sum${E0}`, 900);
  const { records, notes } = run([snap('vllm', before, at(0)), snap('vllm', after, at(1))]);
  assert.deepEqual(records.map((r) => [r.prompt_tokens, r.batch_size]), [[40_000, 27]]); // 400 s / 15 s = 26.7
  assert.deepEqual(notes, [{ kind: 'batch-size', model: MODEL, source: 'request-time', metric: 'vllm:request_inference_time_seconds' }]);
});

test('batch_size: per data-parallel engine, the batch the average request is in (ΣL²/ΣL), as for the gauge', () => {
  const before = idle(VLLM);
  const after = finished(finished(served(before), E0, 300, 30), E1, 150, 15); // L = 20 and 10
  const { records } = run([snap('vllm', before, at(0)), snap('vllm', after, at(1))]);
  assert.deepEqual(records.map((r) => r.batch_size), [17]); // (400 + 100) / 30 = 16.7
});

test('batch_size: one long request finishing puts its whole time in one interval; capped at the requests that finished', () => {
  const before = idle(VLLM);
  const after = finished(served(before), E0, 600, 1); // a 10-minute request: 600 s / 15 s would say 40
  const { records } = run([snap('vllm', before, at(0)), snap('vllm', after, at(1))]);
  assert.deepEqual(records.map((r) => r.batch_size), [1]);
});

test('batch_size: no request finished and the gauge reads 0 at both ends: left unset, not 1', () => {
  const before = idle(VLLM);
  const { records, notes } = run([snap('vllm', before, at(0)), snap('vllm', served(before), at(1))]);
  assert.equal(records.length, 1);
  assert.equal(records[0]?.batch_size, undefined);
  assert.deepEqual(notes, [{ kind: 'batch-size', model: MODEL, source: 'none', metric: null }]);
  // No request finished, the gauge read 6 and 4, then 10 and 4: its mean, and the note says so.
  const busy = withValue(served(VLLM), `vllm:num_requests_running${E0}`, 10);
  const gauge = run([snap('vllm', VLLM, at(0)), snap('vllm', busy, at(1))]);
  assert.deepEqual(gauge.records.map((r) => r.batch_size), [7]);
  assert.deepEqual(gauge.notes, [{ kind: 'batch-size', model: MODEL, source: 'running-gauge', metric: 'vllm:num_requests_running' }]);
});

test('batch_size: without the running-time histogram, end-to-end latency (vLLM, SGLang), named as such', () => {
  const noRunning = idle(VLLM)
    .split('\n')
    .filter((l) => !l.includes('request_inference_time'))
    .join('\n');
  const after = bump(bump(served(noRunning), `vllm:e2e_request_latency_seconds_sum${E0}`, 450), `vllm:e2e_request_latency_seconds_count${E0}`, 40);
  const v = run([snap('vllm', noRunning, at(0)), snap('vllm', after, at(1))]);
  assert.deepEqual(v.records.map((r) => r.batch_size), [30]);
  assert.deepEqual(v.notes, [{ kind: 'batch-size', model: MODEL, source: 'e2e-latency', metric: 'vllm:e2e_request_latency_seconds' }]);

  const S = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  const page = fixture('sglang-docs-production-metrics.prom');
  let later = bump(bump(page, `sglang:prompt_tokens_total${S}`, 4096), `sglang:generation_tokens_total${S}`, 512);
  later = bump(bump(later, `sglang:e2e_request_latency_seconds_sum${S}`, 120), `sglang:e2e_request_latency_seconds_count${S}`, 20);
  const s = run([snap('sglang', page, at(0)), snap('sglang', later, at(1))]);
  assert.deepEqual(s.records.map((r) => r.batch_size), [8]); // 120 s / 15 s
  assert.deepEqual(s.notes.filter((n) => n.kind === 'batch-size'), [{ kind: 'batch-size', model: 'meta-llama/Llama-3.1-8B-Instruct', source: 'e2e-latency', metric: 'sglang:e2e_request_latency_seconds' }]);
});

test('cache hits carried ahead of their prompts expire after one interval: 480k stray hits at 10:00 do not make records from 11:00 cached', () => {
  const page = idle(VLLM);
  const hits = bump(page, `vllm:prefix_cache_hits_total${E0}`, 480_000); // requests aborted before their first token
  const snaps = [snap('vllm', page, T0), snap('vllm', hits, T0 + 15_000)];
  for (let i = 2; i <= 241; i++) snaps.push(snap('vllm', hits, T0 + i * 15_000)); // an idle hour
  let p = hits;
  for (let i = 1; i <= 4; i++) {
    p = bump(bump(p, `vllm:prompt_tokens_total${E0}`, 8000), `vllm:generation_tokens_total${E0}`, 1000); // uncached traffic
    snaps.push(snap('vllm', p, T0 + 3_615_000 + i * 15_000));
  }
  const { records, notes, baseline } = run(snaps);
  assert.deepEqual(
    records.map((r) => [r.start, r.prompt_tokens, r.cached_tokens]),
    [1, 2, 3, 4].map((i) => [T0 + 3_600_000 + i * 15_000, 8000, 0]),
  );
  assert.deepEqual(notes.filter((n) => n.kind === 'cached-credit-expired' || n.kind === 'cached-capped'), [
    { kind: 'cached-capped', model: MODEL, cached: 480_000, prompt: 0, carried: 480_000 },
    { kind: 'cached-credit-expired', model: MODEL, tokens: 480_000 },
  ]);
  assert.equal(baseline.models.get(MODEL)?.credit, 0);
});

/** SGLang docs page as data-parallel rank `dp` (SGLang's `dp_rank` label), token counters only. */
function rank(dp: number, prompt: number, generation: number): string {
  const S = '{model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  const page = withValue(withValue(fixture('sglang-docs-production-metrics.prom'), `sglang:prompt_tokens_total${S}`, prompt), `sglang:generation_tokens_total${S}`, generation);
  return page
    .split('\n')
    .filter((l) => /^sglang:(prompt|generation)_tokens_total\{/.test(l))
    .map((l) => l.replace('{model_name=', `{dp_rank="${dp}",model_name=`))
    .join('\n');
}

test(`a series gone for good (DP 2 -> 1, no restart marker) is waited for ${MAX_HELD_SCRAPES} scrapes once, then records go on at the normal interval, exact and not estimated`, () => {
  const snaps = [snap('sglang', `${rank(0, 100_000, 10_000)}\n${rank(1, 90_000, 9_000)}`, at(0))];
  for (let i = 1; i <= 9; i++) snaps.push(snap('sglang', rank(0, 3000 * i, 300 * i), at(i))); // rank 0 restarted, rank 1 gone
  const { steps, records, notes } = run(snaps);
  assert.deepEqual(
    records.map((r) => [r.start, r.end, r.prompt_tokens, r.tokens_estimated ?? false]),
    [[at(0), at(3), 9000, true], ...[4, 5, 6, 7, 8, 9].map((i) => [at(i - 1), at(i), 3000, false])],
  );
  const gone = ['sglang:prompt_tokens{dp_rank="1",model_name="meta-llama/Llama-3.1-8B-Instruct"}', 'sglang:generation_tokens{dp_rank="1",model_name="meta-llama/Llama-3.1-8B-Instruct"}'];
  assert.deepEqual(notes.filter((n) => n.kind === 'series-missing' || n.kind === 'series-given-up').map((n) => [n.kind, 'held' in n ? n.held : null]), [
    ['series-missing', true],
    ['series-missing', true],
    ['series-missing', false],
    ['series-given-up', null],
  ]);
  // Rank 0's restart (a drop with no marker) is judged by the scrapes after it: the note comes with them.
  assert.deepEqual(steps[COUNTER_LOOKAHEAD_SCRAPES]?.notes.find((n) => n.kind === 'series-given-up'), { kind: 'series-given-up', model: 'meta-llama/Llama-3.1-8B-Instruct', series: gone });

  // It comes back (DP 2 again, a new process): counted from its own last value, as any series.
  const back = [...snaps, snap('sglang', `${rank(0, 27_500, 2750)}\n${rank(1, 90_400, 9040)}`, at(10))];
  const again = run(back);
  assert.deepEqual(again.steps.at(-1)?.records.map((r) => [r.prompt_tokens, r.completion_tokens]), [[500 + 400, 50 + 40]]);
  assert.ok(again.steps.at(-1)?.notes.some((n) => n.kind === 'series-returned'));
});
