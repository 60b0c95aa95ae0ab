import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { detectEngine, readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import { fixture } from './fixtures.js';

const snap = (name: string, fallbackModel = 'unknown') => {
  const parsed = parsePrometheusText(fixture(name));
  const engine = detectEngine(parsed);
  assert.ok(engine, `${name}: engine detected`);
  return readEngineSnapshot(parsed, engine, 1_000, fallbackModel);
};

test('engines are recognised by their metric prefix', () => {
  assert.equal(detectEngine(parsePrometheusText(fixture('sglang-docs-production-metrics.prom'))), 'sglang');
  assert.equal(detectEngine(parsePrometheusText(fixture('vllm-v1-docs-design-metrics.prom'))), 'vllm');
  assert.equal(detectEngine(parsePrometheusText(fixture('vllm-v0-engine-rendered.prom'))), 'vllm');
  assert.equal(detectEngine(parsePrometheusText('process_cpu_seconds_total 3\nhttp_requests_total 5')), null);
});

test('SGLang docs page: prompt/generation counters, running gauge, only a hit-rate gauge for the cache', () => {
  const s = snap('sglang-docs-production-metrics.prom');
  const m = s.models.get('meta-llama/Llama-3.1-8B-Instruct');
  assert.ok(m);
  assert.equal(m.promptTokens, 8_128_902);
  assert.equal(m.generationTokens, 7_557_572);
  assert.equal(m.runningRequests, 162);
  assert.equal(m.cachedTokens, null);
  assert.equal(m.cacheHitRate, 0.007507552643049313);
  assert.deepEqual(s.resolved, {
    promptTokens: 'sglang:prompt_tokens_total',
    generationTokens: 'sglang:generation_tokens_total',
    cacheHitRate: 'sglang:cache_hit_rate',
    runningRequests: 'sglang:num_running_reqs',
    requestTime: 'sglang:e2e_request_latency_seconds',
  });
  // The page's end-to-end latency histogram, for the time-averaged batch size (_sum and _count as the docs show them).
  assert.deepEqual(s.requestTime, [
    { key: 'sglang:e2e_request_latency_seconds{model_name="meta-llama/Llama-3.1-8B-Instruct"}', model: 'meta-llama/Llama-3.1-8B-Instruct', sum: 3.116093850019932e6, count: 11228 },
  ]);
  // func_latency_seconds has no model_name but is not a metric we read: no phantom model
  assert.deepEqual([...s.models.keys()], ['meta-llama/Llama-3.1-8B-Instruct']);
});

test('newer SGLang: cached tokens summed over cache sources, tensor-parallel ranks not double counted', () => {
  const m = snap('sglang-cached-tokens-rendered.prom').models.get('Qwen/Qwen2.5-7B-Instruct');
  assert.ok(m);
  assert.equal(m.cachedTokens, 786_432 + 65_536);
  assert.equal(m.cachedMetric, 'sglang:cached_tokens_total');
  assert.equal(m.runningRequests, 24, 'tp_rank 0 and 1 report the same 24 requests');
  assert.equal(m.cacheHitRate, null, 'the gauge is only a fallback when no counter exists');
});

test('vLLM 0.10: the new prefix_cache_hits name wins over its deprecated twin; data-parallel engines are summed', () => {
  const s = snap('vllm-0.10-v1-rendered.prom');
  const m = s.models.get('Qwen/Qwen3-0.6B');
  assert.ok(m);
  assert.equal(s.resolved.cachedTokens, 'vllm:prefix_cache_hits_total');
  assert.equal(m.promptTokens, 1_298_848 + 1_201_117);
  assert.equal(m.generationTokens, 655_360 + 601_088);
  assert.equal(m.cachedTokens, 412_304 + 388_512);
  assert.equal(m.runningRequests, (6 * 6 + 4 * 4) / (6 + 4), 'engines running 6 and 4: the batch a running request is in');
  assert.equal(s.restartMarker, null, 'no process_start_time_seconds on the page');
});

test('counters are kept per series (name + labels), each with its own _created, engine and deprecated twin', () => {
  const s = snap('vllm-0.10-v1-rendered.prom');
  const prompt = s.counters.filter((c) => c.metric === 'promptTokens');
  assert.deepEqual(
    prompt.map((c) => [c.key, c.value, c.created, c.origin]),
    [
      ['vllm:prompt_tokens{engine="0",model_name="Qwen/Qwen3-0.6B"}', 1_298_848, 1.7597412046158106e9, 'Qwen/Qwen3-0.6B{engine="0"}'],
      ['vllm:prompt_tokens{engine="1",model_name="Qwen/Qwen3-0.6B"}', 1_201_117, 1.7597412046158588e9, 'Qwen/Qwen3-0.6B{engine="1"}'],
    ],
  );
  const cachedNames = new Set(s.counters.filter((c) => c.metric === 'cachedTokens').map((c) => c.name));
  assert.deepEqual([...cachedNames], ['vllm:prefix_cache_hits_total', 'vllm:gpu_prefix_cache_hits_total'], 'both twins are read; the interval picks one');
  // Same origin as engine 0's prompt counter: a restart seen on one resets the other.
  const hits0 = s.counters.find((c) => c.name === 'vllm:prefix_cache_hits_total' && c.origin === 'Qwen/Qwen3-0.6B{engine="0"}');
  assert.equal(hits0?.value, 412_304);
});

test('SGLang: cache_source and engine_type series belong to the same engine; ranks are merged, dp ranks are not', () => {
  const s = snap('sglang-cached-tokens-rendered.prom');
  const origins = new Set(s.counters.map((c) => c.origin));
  assert.deepEqual([...origins], ['Qwen/Qwen2.5-7B-Instruct{}'], 'prompt, generation and both cache sources: one engine');
  const typed = readEngineSnapshot(
    parsePrometheusText('sglang:prompt_tokens_total{engine_type="unified",model_name="m"} 1\nsglang:cached_tokens_total{cache_source="host",model_name="m"} 1'),
    'sglang',
    5,
    'x',
  );
  assert.deepEqual(typed.counters.map((c) => c.origin), ['m{}', 'm{}']);
  const text = [
    'sglang:prompt_tokens_total{dp_rank="0",model_name="m",tp_rank="0"} 100',
    'sglang:prompt_tokens_total{dp_rank="0",model_name="m",tp_rank="1"} 100',
    'sglang:prompt_tokens_total{dp_rank="1",model_name="m",tp_rank="0"} 40',
    'sglang:prompt_tokens_total{dp_rank="1",model_name="m",tp_rank="1"} 40',
  ].join('\n');
  const dp = readEngineSnapshot(parsePrometheusText(text), 'sglang', 5, 'x');
  assert.deepEqual(dp.counters.map((c) => [c.key, c.value]), [
    ['sglang:prompt_tokens{dp_rank="0",model_name="m"}', 100],
    ['sglang:prompt_tokens{dp_rank="1",model_name="m"}', 40],
  ]);
  assert.equal(dp.models.get('m')?.promptTokens, 140);
});

test('hit-rate gauge across data-parallel ranks is averaged, not summed; values outside 0..1 are set apart', () => {
  const page = (r0: number, r1: number) =>
    [
      'sglang:prompt_tokens_total{model_name="m"} 1000',
      `sglang:cache_hit_rate{dp_rank="0",model_name="m",tp_rank="0"} ${r0}`,
      `sglang:cache_hit_rate{dp_rank="0",model_name="m",tp_rank="1"} ${r0}`,
      `sglang:cache_hit_rate{dp_rank="1",model_name="m",tp_rank="0"} ${r1}`,
      `sglang:cache_hit_rate{dp_rank="1",model_name="m",tp_rank="1"} ${r1}`,
    ].join('\n');
  const ok = readEngineSnapshot(parsePrometheusText(page(0.6, 0.5)), 'sglang', 5, 'x').models.get('m');
  assert.equal(ok?.cacheHitRate, 0.55);
  assert.deepEqual(ok?.cacheHitRateOutOfRange, []);
  const bad = readEngineSnapshot(parsePrometheusText(page(0.6, 1.7)), 'sglang', 5, 'x').models.get('m');
  assert.equal(bad?.cacheHitRate, 0.6);
  assert.deepEqual(bad?.cacheHitRateOutOfRange, [1.7, 1.7]);
});

test('running requests across data-parallel engines: the batch a running request is in, not the sum', () => {
  const page = (r0: number, r1: number) =>
    [
      `sglang:num_running_reqs{dp_rank="0",model_name="m",tp_rank="0"} ${r0}`,
      `sglang:num_running_reqs{dp_rank="0",model_name="m",tp_rank="1"} ${r0}`,
      `sglang:num_running_reqs{dp_rank="1",model_name="m",tp_rank="0"} ${r1}`,
    ].join('\n');
  const running = (r0: number, r1: number) => readEngineSnapshot(parsePrometheusText(page(r0, r1)), 'sglang', 5, 'x').models.get('m')?.runningRequests;
  assert.equal(running(8, 8), 8, 'two engines of 8: batch 8, not 16');
  assert.equal(running(10, 0), 10, 'an idle engine does not halve the busy one');
  assert.equal(running(0, 0), 0);
});

test('unreadable sample lines are remembered by counter name (a series absent from such a page may be hidden)', () => {
  const text = ['vllm:prompt_tokens_total{model_name="m\\q"} 5', 'vllm:generation_tokens_total{model_name="m"} 4', '{bad} 1', '# TYPE 9bad counter'].join('\n');
  const s = readEngineSnapshot(parsePrometheusText(text), 'vllm', 5, 'x');
  assert.deepEqual([...s.unreadable].sort(), ['*', 'vllm:prompt_tokens']);
  assert.deepEqual([...readEngineSnapshot(parsePrometheusText('vllm:prompt_tokens_total 1\n# TYPE 9bad counter'), 'vllm', 5, 'x').unreadable], [], 'a bad comment hides no sample');
});

test('vLLM 0.8 names: only vllm:gpu_prefix_cache_hits_total exists and is used', () => {
  const s = snap('vllm-v1-deprecated-prefix-names-rendered.prom');
  assert.equal(s.resolved.cachedTokens, 'vllm:gpu_prefix_cache_hits_total');
  assert.equal(s.models.get('meta-llama/Llama-3.1-8B-Instruct')?.cachedTokens, 1_572_864);
});

test('vLLM v0 engine: block hit-rate gauge only, model from the model_name label', () => {
  const s = snap('vllm-v0-engine-rendered.prom');
  const m = s.models.get('mistralai/Mistral-7B-Instruct-v0.3');
  assert.equal(s.resolved.cachedTokens, undefined);
  assert.equal(m?.cacheHitRate, 0.25);
  assert.equal(m?.promptTokens, 20_480);
});

test('vLLM docs excerpt: missing prompt counter is visible in `resolved`, not guessed', () => {
  const s = snap('vllm-v1-docs-design-metrics.prom');
  assert.equal(s.resolved.promptTokens, undefined);
  assert.equal(s.resolved.generationTokens, 'vllm:generation_tokens_total');
  const m = s.models.get('meta-llama/Llama-3.1-8B-Instruct');
  assert.equal(m?.promptTokens, null);
  assert.equal(m?.generationTokens, 27_453);
  assert.equal(m?.runningRequests, 8);
});

test('counters without the _total suffix and series without a model label use the fallback model', () => {
  const text = ['# TYPE vllm:prompt_tokens counter', 'vllm:prompt_tokens 100', 'vllm:generation_tokens 40', 'vllm:num_requests_running 2'].join('\n');
  const s = readEngineSnapshot(parsePrometheusText(text), 'vllm', 5, 'my-model');
  assert.deepEqual(s.models.get('my-model'), {
    promptTokens: 100,
    generationTokens: 40,
    cachedTokens: null,
    cachedMetric: null,
    cacheHitRate: null,
    cacheHitRateOutOfRange: [],
    runningRequests: 2,
  });
});

test('a page of more counter series than a call takes arguments is read whole', () => {
  const lines = Array.from({ length: 150_000 }, (_, i) => `vllm:prompt_tokens_total{engine="${i}",model_name="m"} 1`);
  const s = readEngineSnapshot(parsePrometheusText(lines.join('\n')), 'vllm', 5, 'x');
  assert.equal(s.counters.filter((c) => c.metric === 'promptTokens').length, 150_000);
  assert.equal(s.models.get('m')?.promptTokens, 150_000);
});
