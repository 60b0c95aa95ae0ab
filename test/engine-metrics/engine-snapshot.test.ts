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
  });
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
  assert.equal(m.runningRequests, 10);
  assert.equal(s.restartMarker, 1.7597412046158588e9, 'the prompt counter _created timestamp (latest engine)');
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
    runningRequests: 2,
  });
});
