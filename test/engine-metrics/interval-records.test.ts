import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseRequestRecord } from '../../model/request-record.js';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import type { EngineSnapshot, ModelReading } from '../../collectors/engine-metrics/engine-snapshot.js';
import { intervalRecords } from '../../collectors/engine-metrics/interval-records.js';
import { bump, fixture, withValue } from './fixtures.js';

const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const T1 = T0 + 15_000;
const vllm = (text: string, at: number) => readEngineSnapshot(parsePrometheusText(text), 'vllm', at, 'unknown');
const sglang = (text: string, at: number) => readEngineSnapshot(parsePrometheusText(text), 'sglang', at, 'unknown');
const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
const E1 = '{engine="1",model_name="Qwen/Qwen3-0.6B"}';

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
  assert.deepEqual(notes, []);
  assert.equal(records.length, 1);
  const r = valid(records[0]);
  assert.equal(r.promptTokens, 4000);
  assert.equal(r.completionTokens, 700);
  assert.equal(r.cachedTokens, 1200);
  assert.equal(r.batchSize, 12, '(6+4 then 10+4) / 2');
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

test('a counter that goes down is an engine restart: the delta is what it counted since', () => {
  const before = fixture('vllm-v1-deprecated-prefix-names-rendered.prom');
  const S = '{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}';
  let after = withValue(before, `vllm:prompt_tokens_total${S}`, 500);
  after = withValue(after, `vllm:generation_tokens_total${S}`, 80);
  after = withValue(after, `vllm:gpu_prefix_cache_hits_total${S}`, 100);
  const { records, notes } = intervalRecords(vllm(before, T0), vllm(after, T1), { engineId: 'e' });
  const r = valid(records[0]);
  assert.equal(r.promptTokens, 500);
  assert.equal(r.completionTokens, 80);
  assert.equal(r.cachedTokens, 100);
  assert.ok(notes.some((n) => n.kind === 'counter-reset' && /prompt tokens went from 3401280 to 500/.test(n.reason)));
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
  assert.ok(notes.some((n) => n.kind === 'counter-reset' && n.reason === 'engine restarted'));
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
  assert.deepEqual(notes, [{ kind: 'missing-counter', model: 'meta-llama/Llama-3.1-8B-Instruct', metric: 'promptTokens' }]);
});

test('ids stay under the request_id length limit for very long model names', () => {
  const model = `/gpfs/scratch/${'x'.repeat(200)}/llama-2-7b`; // legal (<= 256) but too long to embed
  const reading = (p: number): ModelReading => ({ promptTokens: p, generationTokens: p, cachedTokens: null, cachedMetric: null, cacheHitRate: null, runningRequests: 1 });
  const at = (atMs: number, p: number): EngineSnapshot => ({ engine: 'vllm', atMs, models: new Map([[model, reading(p)]]), resolved: {}, restartMarker: null });
  const { records } = intervalRecords(at(T0, 10), at(T1, 20), { engineId: 'e' });
  const r = valid(records[0]);
  assert.equal(r.model, model);
  assert.ok(r.requestId.length <= 256);
  assert.match(r.requestId, /sha256-[0-9a-f]{24}/);
});

test('property: over any run of scrapes without restarts, the records add up to last minus first', () => {
  const step = fc.record({ prompt: fc.nat(50_000), gen: fc.nat(20_000), cached: fc.nat(60_000), running: fc.nat(64) });
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), (steps) => {
      let p = 1000;
      let g = 500;
      let c = 0;
      const snaps: EngineSnapshot[] = [];
      const push = (i: number, running: number) =>
        snaps.push({
          engine: 'sglang',
          atMs: T0 + i * 15_000,
          models: new Map([['m', { promptTokens: p, generationTokens: g, cachedTokens: c, cachedMetric: 'sglang:cached_tokens_total', cacheHitRate: null, runningRequests: running }]]),
          resolved: {},
          restartMarker: 42,
        });
      push(0, 0);
      steps.forEach((s, i) => {
        p += s.prompt;
        g += s.gen;
        c += Math.min(s.cached, s.prompt); // engines never cache more than they are asked
        push(i + 1, s.running);
      });
      let prompt = 0;
      let gen = 0;
      let cached = 0;
      for (let i = 1; i < snaps.length; i++) {
        const { records } = intervalRecords(snaps[i - 1] as EngineSnapshot, snaps[i] as EngineSnapshot, { engineId: 'e' });
        for (const w of records) {
          const r = valid(w);
          prompt += r.promptTokens;
          gen += r.completionTokens;
          cached += r.cachedTokens;
        }
      }
      assert.equal(prompt, p - 1000);
      assert.equal(gen, g - 500);
      assert.equal(cached, c);
    }),
    { numRuns: 200 },
  );
});
