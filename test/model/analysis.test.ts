import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeRun, type AnalyzeReport } from '../../model/analysis.js';
import type { AttributionConfig } from '../../model/attribution-types.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { aggregateTasks, jPerSuccessfulTask } from '../../model/tasks.js';
import { joules } from '../../model/units.js';
import { CONFIG, close, prng, request, sample, T0 } from './helpers.js';

/**
 * A run built so the answer is known: power follows the requests (counter increments are the power
 * of the interval: `busyW` while any request of that GPU is active at the interval start, else `idleW`).
 */
function run(seed: number, seconds = 40) {
  const rand = prng(seed);
  const gpus = [
    { uuid: 'gpu-a', index: 0, tier: 'small', idleW: 60, busyW: 250 },
    { uuid: 'gpu-b', index: 1, tier: 'large', idleW: 90, busyW: 600 },
  ];
  const requests: ResolvedRequest[] = [];
  for (const g of gpus) {
    // request bounds on the 100 ms sample grid, so every interval is wholly busy or wholly idle
    let t = T0 + 2000 + 100 * Math.floor(rand() * 10);
    let i = 0;
    while (t < T0 + (seconds - 4) * 1000) {
      const duration = 100 * (2 + Math.floor(rand() * 30));
      const start = t;
      const overlap = rand() < 0.4;
      requests.push(
        request({
          requestId: `${g.tier}-${i}`,
          taskId: `task-${i % 5}`,
          attempt: i % 7 === 3 ? 2 : 1,
          status: i % 9 === 4 ? 'error' : 'ok',
          model: `${g.tier}-model`,
          tier: g.tier,
          gpus: [g.uuid],
          startMs: start,
          firstTokenMs: start + Math.floor(duration / 5),
          endMs: start + duration,
          promptTokens: 100 + Math.floor(rand() * 3000),
          cachedTokens: rand() < 0.5 ? 0 : 50,
          completionTokens: Math.floor(rand() * 400),
        }),
      );
      i += 1;
      t = overlap ? start + 100 * Math.floor(duration / 200) : start + duration + 1000 + 100 * Math.floor(rand() * 30);
    }
  }
  const samples: PowerSample[] = [];
  for (const g of gpus) {
    const mine = requests.filter((r) => r.gpus[0] === g.uuid);
    let counter = 5000;
    for (let t = T0; t <= T0 + seconds * 1000; t += 100) {
      const busy = mine.some((r) => r.startMs <= t && t < r.endMs);
      samples.push(sample(g.uuid, t, busy ? g.busyW : g.idleW, counter, g.index));
      counter += ((busy ? g.busyW : g.idleW) * 100) / 1000;
    }
  }
  return { gpus, requests, samples };
}

function analyze(seed: number, config: AttributionConfig = CONFIG, periodMs?: number, perRequest = false): AnalyzeReport {
  const r = run(seed);
  return analyzeRun({ samples: r.samples, requests: r.requests, gpus: r.gpus, config, perRequest, ...(periodMs === undefined ? {} : { periodMs }) });
}

test('one tier per GPU: each tier gets exactly its GPU\'s measured energy minus idle', () => {
  for (const seed of [1, 2, 3]) {
    const report = analyze(seed);
    for (const [tier, index] of [['small', 0], ['large', 1]] as const) {
      const group = report.groups.find((g) => g.by === 'tier' && g.key === tier);
      const gpu = report.gpus.find((g) => g.index === index);
      assert.ok(group && gpu);
      assert.equal(gpu.unattributed_j, 0);
      assert.ok(close(group.joules, gpu.measured_j - gpu.idle_j), `${tier}: ${group.joules} vs ${gpu.measured_j - gpu.idle_j}`);
      assert.ok(close(report.groups.find((g) => g.by === 'gpu' && g.key === String(index))?.joules ?? -1, group.joules));
    }
    assert.ok(Math.abs(report.totals.residual_j) <= 1e-9 * report.totals.measured_j);
    assert.ok(close(report.totals.attributed_j, report.totals.static_j + report.totals.dynamic_j));
  }
});

test('the idle baseline is learned from idle time and sets the static part', () => {
  const report = analyze(4);
  const a = report.gpus.find((g) => g.uuid === 'gpu-a');
  const b = report.gpus.find((g) => g.uuid === 'gpu-b');
  assert.ok(a && b);
  assert.equal(a.idle_baseline_source, 'learned');
  assert.ok(close(a.idle_baseline_w ?? 0, 60) && close(b.idle_baseline_w ?? 0, 90));
  // busy intervals draw busyW; static is the baseline's part of them: 60/250 on A, 90/600 on B
  assert.ok(close(a.static_j / (a.static_j + a.dynamic_j), 60 / 250, 1e-9));
  assert.ok(close(b.static_j / (b.static_j + b.dynamic_j), 90 / 600, 1e-9));
  const configured = analyze(4, { ...CONFIG, idleBaselineW: { 'gpu-a': 10 } });
  const ca = configured.gpus.find((g) => g.uuid === 'gpu-a');
  assert.equal(ca?.idle_baseline_source, 'configured');
  assert.equal(ca?.idle_baseline_w, 10);
  assert.ok(close(configured.totals.attributed_j, report.totals.attributed_j), 'the baseline moves static/dynamic, not totals');
});

test('the answer does not depend on the period length or the input order', () => {
  const a = analyze(5, CONFIG, 60_000, true);
  const b = analyze(5, CONFIG, 7_000, true);
  assert.ok(close(a.totals.measured_j, b.totals.measured_j) && close(a.totals.idle_j, b.totals.idle_j));
  for (const [i, r] of (a.requests ?? []).entries()) {
    const other = b.requests?.[i];
    assert.equal(other?.request_id, r.request_id);
    assert.ok(close(other?.joules ?? -1, r.joules, 1e-9, 1e-9), `${r.request_id}`);
  }
  const r = run(5);
  const shuffled = analyzeRun({ samples: [...r.samples].reverse(), requests: [...r.requests].reverse(), gpus: r.gpus, config: CONFIG, perRequest: true });
  assert.deepEqual(shuffled, a);
});

test('counter glitches give the same energy however time is cut into periods, and count nothing twice', () => {
  const r = run(7);
  // On GPU a: low readings, single and a run of three, some of them on period starts; a reading of
  // 0 (on a period start too) that the next one climbs straight back from; one 10 kJ spike.
  const low = new Set([T0 + 7_000, T0 + 13_900, T0 + 14_000, T0 + 14_100, T0 + 21_000]);
  const zero = T0 + 9_000;
  const spike = T0 + 17_300;
  const samples = r.samples.map((s) => {
    if (s.gpuUuid !== 'gpu-a' || s.energyJ === null) return s;
    if (low.has(s.timestampMs)) return { ...s, energyJ: joules(s.energyJ - 20) };
    if (s.timestampMs === zero) return { ...s, energyJ: joules(0) };
    return s.timestampMs === spike ? { ...s, energyJ: joules(s.energyJ + 10_000) } : s;
  });
  // A glitch is read as the highest reading so far, so the counter's increase is counted exactly.
  const truth = analyzeRun({ samples: r.samples, requests: r.requests, gpus: r.gpus, config: CONFIG }).totals.measured_j;
  for (const periodMs of [60_000, 7_000, 1_000, 100]) {
    const report = analyzeRun({ samples, requests: r.requests, gpus: r.gpus, config: CONFIG, periodMs });
    assert.equal(report.quality.counter_resets, 0, `${periodMs} ms periods: no reset`);
    assert.ok(close(report.totals.measured_j, truth), `${periodMs} ms periods: measured ${report.totals.measured_j} J, counter increase ${truth} J`);
  }
});

test('counter glitches beside missing readings, and runs of them, give the same energy however time is cut into periods', () => {
  const r = run(7);
  // On GPU a (counter from 5 kJ): failed energy calls before and after readings 20 J low, and
  // before a 0; a reading 80 J high (an advance), then a 0 and readings under it for ~1.3 s.
  const missing = new Set([T0 + 6_900, T0 + 9_000, T0 + 13_900, T0 + 21_100, T0 + 25_000]);
  const low = new Set([T0 + 7_000, T0 + 14_000, T0 + 14_100, T0 + 21_000]);
  const zero = new Set([T0 + 9_100, T0 + 30_100]);
  const high = T0 + 30_000;
  const samples = r.samples.map((s) => {
    if (s.gpuUuid !== 'gpu-a' || s.energyJ === null) return s;
    if (missing.has(s.timestampMs)) return { ...s, energyJ: null };
    if (low.has(s.timestampMs)) return { ...s, energyJ: joules(s.energyJ - 20) };
    if (zero.has(s.timestampMs)) return { ...s, energyJ: joules(0) };
    return s.timestampMs === high ? { ...s, energyJ: joules(s.energyJ + 80) } : s;
  });
  const whole = analyzeRun({ samples, requests: r.requests, gpus: r.gpus, config: CONFIG, periodMs: 3_600_000 }).totals.measured_j;
  for (const periodMs of [60_000, 7_000, 1_000, 100]) {
    const report = analyzeRun({ samples, requests: r.requests, gpus: r.gpus, config: CONFIG, periodMs });
    assert.equal(report.quality.counter_resets, 0, `${periodMs} ms periods: no reset`);
    assert.ok(close(report.totals.measured_j, whole), `${periodMs} ms periods: measured ${report.totals.measured_j} J, in one period ${whole} J`);
  }
});

test('the report has DESIGN\'s analyze --json shape', () => {
  const report = analyze(6, CONFIG, undefined, true);
  for (const k of ['measured_j', 'idle_j', 'attributed_j', 'unattributed_j', 'residual_j', 'static_j', 'dynamic_j', 'estimated_j', 'host_j']) {
    assert.equal(typeof (report.totals as unknown as Record<string, unknown>)[k], 'number', k);
  }
  assert.deepEqual([...new Set(report.groups.map((g) => g.by))], ['tier', 'model', 'batch_bucket', 'cache_bucket', 'gpu']);
  for (const g of report.groups) {
    for (const k of ['by', 'key', 'requests', 'prompt_tokens', 'cached_tokens', 'completion_tokens', 'joules', 'j_per_output_token', 'j_per_output_token_fully_loaded']) assert.ok(k in g, k);
  }
  const byTier = report.groups.filter((g) => g.by === 'tier');
  assert.equal(byTier.reduce((s, g) => s + g.requests, 0), report.quality.records);
  const task = report.tasks[0];
  assert.ok(task);
  for (const k of ['task_id', 'requests', 'succeeded', 'joules', 'waste_j', 'waste_share']) assert.ok(k in task, k);
  assert.equal(report.tasks.reduce((s, t) => s + t.requests, 0), report.quality.records);
  const req = report.requests?.[0];
  assert.ok(req);
  for (const k of ['request_id', 'joules', 'static_j', 'dynamic_j', 'prefill_j', 'decode_j', 'batch_size', 'cache_bucket']) assert.ok(k in req, k);
  assert.equal(analyze(6).requests, undefined);
  assert.equal(report.quality.simulated, false);
  assert.ok(report.quality.coverage > 0.99);
  const factor = report.totals.fully_loaded_factor as number;
  assert.ok(close(factor, report.totals.measured_j / report.totals.attributed_j));
  const small = byTier.find((g) => g.key === 'small');
  assert.ok(close(small?.j_per_output_token_fully_loaded ?? 0, (small?.j_per_output_token ?? 0) * factor));
  assert.equal(JSON.parse(JSON.stringify(report)).totals.measured_j, report.totals.measured_j);
});

test('data quality: records outside the power window or on unknown GPUs are flagged, simulated data is marked', () => {
  const r = run(7, 20);
  const extra = [
    request({ requestId: 'before', gpus: ['gpu-a'], startMs: T0 - 5000, endMs: T0 - 4000, completionTokens: 3 }),
    request({ requestId: 'nowhere', gpus: ['gpu-z'], startMs: T0 + 1000, endMs: T0 + 2000, completionTokens: 3 }),
    { ...(r.requests[0] as ResolvedRequest) },
  ];
  const report = analyzeRun({
    samples: r.samples.map((s, i) => (i === 0 ? { ...s, simulated: true } : s)),
    requests: [...r.requests, ...extra],
    gpus: r.gpus,
    config: CONFIG,
    hostJ: 1000,
    perRequest: true,
  });
  assert.equal(report.quality.records_outside_window, 1);
  assert.equal(report.quality.records_unknown_gpu, 1);
  assert.equal(report.quality.duplicate_records, 1);
  assert.equal(report.quality.records, r.requests.length + 2);
  assert.equal(report.requests?.find((x) => x.request_id === 'before')?.estimated, true);
  assert.equal(report.requests?.find((x) => x.request_id === 'nowhere')?.joules, 0);
  assert.equal(report.quality.simulated, true);
  assert.equal(report.quality.simulated_samples, 1);
  assert.equal(report.totals.host_j, 1000);
  assert.ok(close(report.totals.fully_loaded_factor as number, (report.totals.measured_j + 1000) / report.totals.attributed_j));
});

test('an empty run gives an empty, well-formed report', () => {
  const report = analyzeRun({ samples: [], requests: [], gpus: [], config: CONFIG });
  assert.equal(report.totals.measured_j, 0);
  assert.equal(report.totals.fully_loaded_factor, null);
  assert.equal(report.j_per_successful_task, null);
  assert.deepEqual(report.groups, []);
  assert.equal(report.quality.window_start_ms, null);
});

test('a stretch with no sample and no request is settled at once: a stray timestamp years off costs nothing, and no joule changes', () => {
  // Two 10 s captures an hour apart on one GPU (energy counter at 200 W throughout), one request in each.
  const samples: PowerSample[] = [];
  for (const from of [T0, T0 + 3_600_000]) for (let t = from; t <= from + 10_000; t += 100) samples.push(sample('gpu-a', t, 200, 200 * ((t - T0) / 1000)));
  const requests = [
    request({ requestId: 'first', gpus: ['gpu-a'], startMs: T0 + 1000, endMs: T0 + 6000, completionTokens: 50 }),
    request({ requestId: 'second', gpus: ['gpu-a'], startMs: T0 + 3_601_000, endMs: T0 + 3_606_000, completionTokens: 50 }),
  ];
  const gpus = [{ uuid: 'gpu-a', index: 0 }];
  const report = analyzeRun({ samples, requests, gpus, config: CONFIG, perRequest: true });
  assert.ok(close(report.totals.measured_j, 200 * 3610), `measured ${report.totals.measured_j} J: the counter's whole increase, gap included`);
  assert.ok(Math.abs(report.totals.residual_j) < 1e-6);
  // The same run with one stray reading 25 years earlier (a bad clock): it finishes, and the captures' answer is unchanged.
  const stray = sample('gpu-a', T0 - 25 * 365 * 86_400_000, 200, null);
  const started = Date.now();
  const withStray = analyzeRun({ samples: [stray, ...samples], requests, gpus, config: CONFIG, perRequest: true });
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  for (const id of ['first', 'second']) {
    const a = report.requests?.find((r) => r.request_id === id)?.joules;
    const b = withStray.requests?.find((r) => r.request_id === id)?.joules;
    assert.ok(a !== undefined && b !== undefined && close(a, b), `${id}: ${a} J and ${b} J`);
  }
});

test('quality counts every sample, also a last one lying on the period grid', () => {
  for (const endMs of [60_000, 60_050]) {
    const samples: PowerSample[] = [];
    for (let t = T0; t <= T0 + endMs; t += 100) samples.push(sample('gpu-a', t, 100, (t - T0) / 10));
    const report = analyzeRun({ samples, requests: [], gpus: [{ uuid: 'gpu-a', index: 0 }], config: CONFIG });
    assert.equal(samples.length, 601);
    assert.equal(report.quality.samples, 601, `window ending T0+${endMs} ms`);
    assert.equal(report.gpus[0]?.samples, 601);
  }
});

test('tasks, groups and record counts are those of the per-request entries, summed in report order', () => {
  const r = run(8);
  const extra = [
    // No task: counted in the groups, not a task.
    request({ requestId: 'loose-1', gpus: ['gpu-a'], startMs: T0 + 3000, endMs: T0 + 5000, completionTokens: 7, tokensEstimated: true }),
    request({ requestId: 'loose-2', gpus: ['gpu-b', 'gpu-a'], startMs: T0 + 4000, endMs: T0 + 9000, completionTokens: 9, granularity: 'interval' }),
    // A task spread over both GPUs, retried, the retry outside the window; one request of it on no GPU with data.
    request({ requestId: 'spread-1', taskId: 'spread', gpus: ['gpu-a', 'gpu-b'], startMs: T0 + 6000, endMs: T0 + 8000, status: 'error', completionTokens: 5 }),
    request({ requestId: 'spread-2', taskId: 'spread', attempt: 2, gpus: ['gpu-b'], startMs: T0 + 39_000, endMs: T0 + 45_000, completionTokens: 5, source: 'simulated' }),
    request({ requestId: 'spread-3', taskId: 'spread', gpus: ['gpu-z'], startMs: T0 + 7000, endMs: T0 + 7500, completionTokens: 1 }),
  ];
  const report = analyzeRun({ samples: r.samples, requests: [...extra, ...r.requests], gpus: r.gpus, config: CONFIG, perRequest: true });
  const entries = report.requests ?? [];
  assert.equal(entries.length, r.requests.length + extra.length);
  const inputOf = new Map([...r.requests, ...extra].map((q) => [q.requestId, q]));
  // What aggregateTasks makes of the finalized requests in report order is what the report lists.
  const expected = aggregateTasks(
    entries.map((e) => {
      const q = inputOf.get(e.request_id) as ResolvedRequest;
      return { requestId: e.request_id, taskId: e.task_id, attempt: e.attempt, tier: e.tier, status: q.status, startMs: q.startMs, endMs: q.endMs, joules: joules(e.joules), completionTokens: e.completion_tokens, labels: q.labels };
    }),
  );
  assert.ok(expected.some((t) => t.requests > 1 && t.wasteJ > 0) && expected.some((t) => !t.succeeded), 'tasks with waste and failed tasks');
  assert.deepEqual(
    report.tasks,
    expected.map((t) => ({ task_id: t.taskId, requests: t.requests, succeeded: t.succeeded, joules: t.joules, waste_j: t.wasteJ, waste_share: t.wasteShare, completion_tokens: t.completionTokens, tier: t.tier })),
  );
  assert.equal(report.j_per_successful_task, jPerSuccessfulTask(expected));
  for (const by of ['tier', 'model', 'batch_bucket', 'cache_bucket'] as const) {
    for (const group of report.groups.filter((g) => g.by === by)) {
      const mine = entries.filter((e) => e[by] === group.key);
      assert.equal(group.requests, mine.length, `${by} ${group.key}`);
      assert.equal(group.joules, mine.reduce((s, e) => s + e.joules, 0), `${by} ${group.key}: joules summed in report order`);
      assert.equal(group.completion_tokens, mine.reduce((s, e) => s + e.completion_tokens, 0));
    }
  }
  const q = report.quality;
  assert.equal(q.records, entries.length);
  assert.equal(q.estimated_records, entries.filter((e) => e.estimated).length);
  assert.equal(q.tokens_estimated_records, 1);
  assert.equal(q.interval_granularity_records, 1);
  assert.equal(q.simulated_records, 1);
  assert.equal(q.records_outside_window, 1);
  assert.equal(q.records_unknown_gpu, 1);
  assert.ok((entries.find((e) => e.request_id === 'loose-2')?.joules ?? 0) > 0, 'a request on two GPUs has energy');
});

test('a counter drop as the trace\'s last reading is judged without a reading after it: its interval is counted from power, flagged, not left out', () => {
  // 300 W at 10 Hz on a 1 MJ counter for 10 s; the last reading is 0 (far under: a reset) or a dip (a missing reading).
  const gpus = [{ uuid: 'g', index: 0, name: 'x' }];
  for (const [last, resets] of [[0, 1], [1e6 + 2_960, 0]] as const) {
    const samples = Array.from({ length: 101 }, (_, k) => sample('g', T0 + 100 * k, 300, k === 100 ? last : 1e6 + 30 * k));
    for (const periodMs of [60_000, 1_000, 100]) {
      const report = analyzeRun({ samples, requests: [], gpus, config: CONFIG, periodMs });
      assert.ok(close(report.totals.measured_j, 3_000), `${last}, ${periodMs} ms periods: measured ${report.totals.measured_j} J of 3000 J`);
      assert.ok(close(report.totals.estimated_j, 30), `${last}: the last interval is estimated (${report.totals.estimated_j} J)`);
      assert.equal(report.quality.counter_resets, resets, `${last}: counter resets`);
    }
  }
});
