import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestRecord } from '../../model/request-record.js';
import { parsePrometheusText } from '../../collectors/engine-metrics/prometheus-text.js';
import { readEngineSnapshot } from '../../collectors/engine-metrics/engine-snapshot.js';
import { baselineOf, flushDeferred, nextInterval } from '../../collectors/engine-metrics/interval-records.js';
import type { EngineBaseline } from '../../collectors/engine-metrics/interval-records.js';
import { baselineKey, restoreBaseline, serializeBaseline } from '../../collectors/engine-metrics/baseline-state.js';
import { bump, fixture } from './fixtures.js';

const T0 = Date.UTC(2026, 10, 1, 10, 0, 0);
const URL_A = 'http://127.0.0.1:8000/metrics';
const E0 = '{engine="0",model_name="Qwen/Qwen3-0.6B"}';
const E1 = '{engine="1",model_name="Qwen/Qwen3-0.6B"}';
const OPTIONS = { engineId: 'vllm-a', gpus: [0] };
const snap = (text: string, atMs: number, monoMs = atMs) => readEngineSnapshot(parsePrometheusText(text), 'vllm', atMs, 'unknown', monoMs);
const without = (text: string, series: string): string => text.split('\n').filter((l) => !l.startsWith(`${series} `)).join('\n');

/** A baseline with everything a stored one must keep: a held interval with pending increases, and cache-hit credit. */
function busyBaseline(): { baseline: EngineBaseline; page: string } {
  const page0 = fixture('vllm-0.10-v1-rendered.prom');
  const page1 = bump(bump(bump(page0, `vllm:prompt_tokens_total${E0}`, 100), `vllm:prefix_cache_hits_total${E0}`, 500), `vllm:generation_tokens_total${E0}`, 10);
  const page2 = without(bump(page1, `vllm:prompt_tokens_total${E0}`, 300), `vllm:prompt_tokens_total${E1}`);
  const one = nextInterval(baselineOf(snap(page0, T0)), snap(page1, T0 + 15_000), OPTIONS);
  assert.equal(one.records.length, 1);
  const two = nextInterval(one.baseline, snap(page2, T0 + 30_000), OPTIONS);
  assert.equal(two.records.length, 0, 'held: a prompt series is missing');
  const model = two.baseline.models.get('Qwen/Qwen3-0.6B');
  assert.deepEqual([model?.held, model?.credit, model?.sinceMs], [1, 400, T0 + 15_000], 'the state worth keeping is there');
  return { baseline: two.baseline, page: page1 };
}

test('a stored baseline read back in a new process gives the same next interval as the one in memory', () => {
  const { baseline, page } = busyBaseline();
  const stored = serializeBaseline(baseline, URL_A);
  // The new process starts 5 s after the stored scrape; its monotonic clock starts near zero.
  const restored = restoreBaseline(stored, URL_A, T0 + 35_000, 120);
  assert.ok(restored.ok, restored.ok ? '' : restored.reason);
  const later = bump(bump(page, `vllm:prompt_tokens_total${E0}`, 300 + 900), `vllm:generation_tokens_total${E1}`, 40);
  const T3 = T0 + 60_000;
  const inMemory = nextInterval(baseline, snap(later, T3), OPTIONS);
  const resumed = nextInterval(restored.baseline, snap(later, T3, 120 + (T3 - (T0 + 35_000))), OPTIONS);
  assert.deepEqual(resumed.records, inMemory.records);
  assert.deepEqual(resumed.notes, inMemory.notes);
  const [r] = inMemory.records.map((w) => parseRequestRecord(w, 0));
  assert.ok(r?.ok, 'a valid record');
  // From the interval's start (the held one's), every token: 300 + 900 prompt, 40 generation; 400 hits of credit.
  assert.deepEqual([r.record.startMs, r.record.endMs, r.record.promptTokens, r.record.completionTokens, r.record.cachedTokens], [T0 + 15_000, T3, 1200, 40, 400]);
  assert.equal(serializeBaseline(resumed.baseline, URL_A), serializeBaseline(inMemory.baseline, URL_A), 'and the same baseline after it');
});

test('a wall clock that went back across the restart places the stored scrape at now, never in the future', () => {
  const { baseline } = busyBaseline();
  const restored = restoreBaseline(serializeBaseline(baseline, URL_A), URL_A, baseline.atMs - 60_000, 5000);
  assert.ok(restored.ok, 'restored');
  assert.equal(restored.baseline.monoMs, 5000);
  assert.equal(restored.baseline.models.get('Qwen/Qwen3-0.6B')?.sinceMono, 5000 - 15_000, 'the held interval keeps its measured length');
});

test('an unusable stored value is refused with its reason, never half read', () => {
  const { baseline } = busyBaseline();
  const good = JSON.parse(serializeBaseline(baseline, URL_A)) as Record<string, unknown> & { series: Record<string, unknown>[] };
  const edit = (change: (v: typeof good) => void): string => {
    const copy = structuredClone(good);
    change(copy);
    return JSON.stringify(copy);
  };
  const reason = (value: string, url = URL_A): string => {
    const r = restoreBaseline(value, url, T0 + 60_000, 0);
    assert.equal(r.ok, false, value.slice(0, 80));
    return r.ok ? '' : r.reason;
  };
  assert.match(reason('{"format":"tokenwatt.engine-metrics.baseline","vers'), /^not JSON/);
  assert.equal(reason('{"settled_until_ms":1}'), 'not a tokenwatt.engine-metrics.baseline value');
  assert.equal(reason('null'), 'not a tokenwatt.engine-metrics.baseline value');
  assert.equal(reason(edit((v) => (v.version = 2))), 'version 2, this tokenwatt reads version 1');
  assert.equal(reason(JSON.stringify(good), 'http://127.0.0.1:8001/metrics'), `saved for ${URL_A}, not http://127.0.0.1:8001/metrics`);
  assert.equal(reason(edit((v) => (v.series[0]!.value = '12'))), 'malformed at series.0.value: Invalid input: expected number, received string');
  assert.equal(reason(edit((v) => delete v.models)), 'malformed at models: Invalid input: expected array, received undefined');
  assert.match(reason(edit((v) => (v.series[0]!.name = 'sglang:prompt_tokens_total'))), /: sglang:prompt_tokens_total is not a vllm \w+ counter$/);
  assert.match(reason(edit((v) => v.series.push(v.series[0]!))), /^series .* appears twice$/);
  assert.ok(restoreBaseline(JSON.stringify(good), URL_A, T0, 0).ok, 'the unedited value is fine');
});

test('each engine keeps its baseline under its own source: key', () => {
  assert.equal(baselineKey('vllm-a'), 'source:engine-metrics:baseline:vllm-a');
});

test('a scrape deferred for judgement is not stored (its records are not either); an interval that starts at a glitch stays flagged across a restart', () => {
  const G = `vllm:generation_tokens_total${E0}`;
  const page0 = fixture('vllm-0.10-v1-rendered.prom');
  const low = bump(page0, G, -648_807); // 655360 read as 6553
  const held = nextInterval(baselineOf(snap(page0, T0)), snap(low, T0 + 15_000), OPTIONS);
  assert.equal(held.baseline.deferred.length, 1);
  assert.equal(serializeBaseline(held.baseline, URL_A), serializeBaseline(baselineOf(snap(page0, T0)), URL_A), 'stored as the baseline before it');
  // Shutdown: flushed as a glitch; the interval from it is flagged, in this process or the next.
  const flushed = flushDeferred(held.baseline, OPTIONS);
  assert.deepEqual(flushed.records.map((w) => w.tokens_estimated), [true]);
  const stored = serializeBaseline(flushed.baseline, URL_A);
  const restored = restoreBaseline(stored, URL_A, T0 + 16_000, 500);
  assert.ok(restored.ok, restored.ok ? '' : restored.reason);
  assert.deepEqual(restored.baseline.deferred, []);
  assert.equal(serializeBaseline(restored.baseline, URL_A), stored);
  const resumed = nextInterval(restored.baseline, snap(bump(page0, G, 150), T0 + 30_000, 500 + 14_000), OPTIONS);
  assert.deepEqual(resumed.records, nextInterval(flushed.baseline, snap(bump(page0, G, 150), T0 + 30_000), OPTIONS).records);
  assert.deepEqual(resumed.records.map((w) => [w.completion_tokens, w.tokens_estimated]), [[150, true]]);
});
