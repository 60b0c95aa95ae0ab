import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestRecord, toWire, type RequestRecord } from '../../model/request-record.js';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import { DemoWorkload, defaultDemoNodeConfig, demoReplicaMap } from '../../agent/demo-workload.js';
import { DEMO_LONGEST_REQUEST_S } from '../../agent/demo-summary.js';
import { NodeRecordContext } from '../../agent/record-context.js';
import { analyzeRun } from '../../model/analysis.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import { BATCH_BUCKETS } from '../../model/buckets.js';
import type { PowerSample } from '../../model/power-sample.js';
import { resolveRecord, type ResolvedRequest } from '../../model/request-record.js';

const T0 = Date.UTC(2026, 10, 1, 9, 0, 0);

function runDemo(seed: number, seconds: number, split?: number) {
  const node = new SimulatedGpuNode(defaultDemoNodeConfig({ seed, startMs: T0 }));
  const records: RequestRecord[] = [];
  const samples: PowerSample[] = [];
  node.attach((s) => { samples.push(...s); }, () => undefined);
  node.onRequestDone((r) => records.push(r));
  const workload = new DemoWorkload({ node, seed });
  if (split !== undefined) workload.runVirtual(T0 + split * 1000);
  workload.runVirtual(T0 + seconds * 1000);
  return { node, workload, records, samples };
}

// One 4-minute run shared by the assertions below (about 0.3 s of CPU).
const demo = runDemo(3, 240);

/** What `analyze --per-request` reports for the run: each request's attributed joules and engine batch bucket. */
function analyzeDemo() {
  const context = new NodeRecordContext({ gpus: demo.node.gpus(), replicas: [], tiers: {}, retainedWindowMs: Number.MAX_SAFE_INTEGER / 2, futureSkewMs: Number.MAX_SAFE_INTEGER / 2 }).at(Date.UTC(2100, 0, 1));
  const requests: ResolvedRequest[] = [];
  demo.records.forEach((r, i) => {
    const resolved = resolveRecord(r, i, context);
    assert.ok(resolved.ok);
    requests.push(resolved.record);
  });
  return analyzeRun({ samples: demo.samples, requests, gpus: demo.node.gpus().map((g) => ({ uuid: g.uuid, index: g.index })), config: DEFAULT_ATTRIBUTION_CONFIG, perRequest: true });
}

test('the demo node is 8 H100s: small on GPU 0, medium on 1-2, large MoE on 3-6, GPU 7 a spare', () => {
  const map = demoReplicaMap();
  assert.deepEqual(map.map((r) => [r.tier, r.gpuIndices]), [['small', [0]], ['medium', [1, 2]], ['large', [3, 4, 5, 6]]]);
  assert.deepEqual(map.map((r) => r.gpuUuids), demo.node.replicaLayout().map((r) => r.gpuUuids));
  assert.equal(demo.node.gpus().length, 8);
  const spare = demo.node.gpus()[7]?.uuid as string;
  const truth = demo.node.truth();
  assert.ok((truth.perGpuJ[spare] as number) > 0);
  assert.equal(truth.idleJByGpu[spare], truth.perGpuJ[spare]);
});

test('batch sizes range from 1 to the hundreds, and the hundreds are decoding', () => {
  const batches = demo.records.map((r) => r.batchSize).filter((b): b is number => b !== null);
  assert.equal(Math.min(...batches), 1);
  assert.ok(Math.max(...batches) >= 100, `max batch ${Math.max(...batches)}`);
  assert.ok(batches.filter((b) => b < 8).length > 10, 'quiet spells with small batches');
  for (const tier of ['small', 'medium', 'large']) assert.ok(demo.records.some((r) => r.tier === tier), tier);
  // Not requests queued for prefill: the small model's decode batch itself reaches the hundreds.
  const small = demo.node.replicaState().find((s) => s.name === 'llama-3.1-8b');
  assert.ok((small?.maxDecodingSeen as number) >= 300, `peak decode batch ${small?.maxDecodingSeen}`);
  assert.ok(demo.records.filter((r) => r.tier === 'small' && (r.batchSize as number) > 256).length > 100, 'requests admitted into a batch above 256');
});

test('in the small tier J/token falls with the batch, from the smallest bucket to the largest', () => {
  const report = analyzeDemo();
  const byBucket = new Map<string, { j: number; tokens: number; n: number }>();
  for (const r of report.requests ?? []) {
    if (r.tier !== 'small' || r.status !== 'ok') continue;
    const acc = byBucket.get(r.batch_bucket) ?? { j: 0, tokens: 0, n: 0 };
    acc.j += r.joules;
    acc.tokens += r.completion_tokens;
    acc.n++;
    byBucket.set(r.batch_bucket, acc);
  }
  const buckets = BATCH_BUCKETS.filter((b) => (byBucket.get(b)?.n ?? 0) >= 20);
  const jPerToken = buckets.map((b) => {
    const acc = byBucket.get(b) as { j: number; tokens: number };
    return acc.j / acc.tokens;
  });
  const table = buckets.map((b, i) => `${b}: ${(jPerToken[i] as number).toFixed(3)} J/token (${byBucket.get(b)?.n})`).join(', ');
  assert.ok(BATCH_BUCKETS.indexOf(buckets[0] as (typeof BATCH_BUCKETS)[number]) <= 1, `smallest bucket with 20 requests is 1 or 2-4: ${table}`);
  assert.equal(buckets.at(-1), '257+', table);
  // ML.ENERGY's Llama-3.1-8B on H100: 0.455 J/token at batch 8, 0.070 at 512; the demo's requests add their prefill.
  assert.ok((jPerToken[0] as number) > 4 * (jPerToken.at(-1) as number), table);
  assert.ok((jPerToken.at(-1) as number) < 0.15, table);
  jPerToken.forEach((j, i) => assert.ok(i === 0 || j < (jPerToken[i - 1] as number), `not falling at ${buckets[i]}: ${table}`));
});

test('prefix-cache misses, partial hits and full hits all occur, in 16-token blocks', () => {
  const ratio = demo.records.map((r) => r.cachedTokens / r.promptTokens);
  assert.ok(ratio.filter((x) => x === 0).length > 20, 'misses');
  assert.ok(ratio.filter((x) => x > 0 && x < 0.5).length > 20, 'partial hits');
  assert.ok(ratio.filter((x) => x >= 0.8).length > 20, 'hits');
  assert.ok(demo.records.every((r) => r.cachedTokens % 16 === 0));
});

test('tasks span several requests, with retries, cancellations and errors', () => {
  const byTask = new Map<string, RequestRecord[]>();
  for (const r of demo.records) byTask.set(r.taskId as string, [...(byTask.get(r.taskId as string) ?? []), r]);
  assert.ok([...byTask.values()].some((rs) => rs.length >= 4), 'multi-step agent tasks');
  assert.ok(demo.records.some((r) => r.attempt === 2) && demo.records.some((r) => r.status === 'error'));
  assert.ok(demo.records.some((r) => r.status === 'cancelled'));
  // A retry follows its failed attempt in the same task.
  for (const retry of demo.records.filter((r) => (r.attempt as number) > 1)) {
    const before = byTask.get(retry.taskId as string)?.find((r) => r.attempt === (retry.attempt as number) - 1 && r.status !== 'ok' && r.endMs <= retry.startMs);
    assert.ok(before, `retry ${retry.requestId} has a failed attempt before it`);
  }
  const stats = demo.workload.stats();
  assert.ok(stats.retries > 0 && stats.bursts >= 3 && stats.tasksSucceeded > stats.tasksFailed);
  // Submitted = finished + in flight (+ follow-ups already planned past the end of the run).
  const inFlight = demo.node.replicaState().reduce((n, s) => n + s.running + s.queued, 0);
  assert.ok(stats.requestsSubmitted >= demo.records.length + inFlight && stats.requestsSubmitted <= demo.records.length + inFlight + 10);
});

test('a retry finds its whole prompt cached only when the failed attempt got through prefill', () => {
  // Ten minutes of seed 2 has attempts cancelled or failed before their first token, then retried.
  const run = runDemo(2, 600);
  const key = (r: RequestRecord): string => `${r.taskId}#${r.attempt}`;
  const byAttempt = new Map(run.records.map((r) => [key(r), r]));
  const fullHit = (r: RequestRecord): boolean => r.cachedTokens >= r.promptTokens - 15;
  let afterNoFirstToken = 0;
  let afterPrefill = 0;
  for (const retry of run.records.filter((r) => (r.attempt as number) > 1)) {
    const before = byAttempt.get(`${retry.taskId}#${(retry.attempt as number) - 1}`) as RequestRecord;
    if (before.firstTokenMs === null) {
      afterNoFirstToken++;
      assert.ok(!fullHit(retry) || fullHit(before), `retry ${retry.requestId} (${retry.cachedTokens}/${retry.promptTokens} cached) after ${before.requestId} that never got a first token (${before.cachedTokens}/${before.promptTokens})`);
    } else {
      afterPrefill++;
      assert.ok(fullHit(retry), `retry ${retry.requestId} after a prefilled attempt: ${retry.cachedTokens}/${retry.promptTokens} cached`);
    }
  }
  assert.ok(afterNoFirstToken >= 1 && afterPrefill >= 10, `${afterNoFirstToken} retries after no first token, ${afterPrefill} after prefill`);
});

test('labels come from a small set and reasoning tokens only on the large tier', () => {
  const teams = new Set(demo.records.map((r) => r.labels.team));
  const features = new Set(demo.records.map((r) => r.labels.feature));
  assert.ok(teams.size >= 3 && teams.size <= 4, [...teams].join());
  assert.ok(features.size === 5, [...features].join());
  assert.ok(demo.records.filter((r) => r.reasoningTokens > 0).every((r) => r.tier === 'large'));
  assert.ok(demo.records.some((r) => r.reasoningTokens > 0));
});

test('every demo record is valid on the wire', () => {
  for (const r of demo.records) {
    const parsed = parseRequestRecord(toWire(r), 0);
    assert.ok(parsed.ok, JSON.stringify(parsed));
  }
  assert.equal(new Set(demo.records.map((r) => r.requestId)).size, demo.records.length);
});

test('same seed, same traffic; splitting the virtual run changes nothing; another seed differs', () => {
  const a = runDemo(9, 60);
  const b = runDemo(9, 60, 17.333);
  assert.deepEqual(a.records, b.records);
  assert.deepEqual(a.node.truth(), b.node.truth());
  const c = runDemo(10, 60);
  assert.notDeepEqual(a.records.map((r) => r.promptTokens), c.records.map((r) => r.promptTokens));
});

test('real-time mode generates traffic that the node serves', async () => {
  const node = new SimulatedGpuNode(defaultDemoNodeConfig({ samplePeriodMs: 20 }));
  const records: RequestRecord[] = [];
  node.onRequestDone((r) => records.push(r));
  node.start(() => undefined, (e) => assert.fail(e.message));
  const workload = new DemoWorkload({ node, seed: 1, ratePerSecond: 200, tickMs: 20 });
  workload.start();
  for (let waited = 0; records.length === 0 && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  workload.dispose();
  await node.shutdown();
  assert.ok(workload.stats().requestsSubmitted > 10, JSON.stringify(workload.stats()));
  assert.ok(records.length > 0);
  assert.ok(records.every((r) => r.requestId.startsWith('demo-1-')));
});

test('real-time mode: after the clock jumps an hour ahead, traffic goes on at its rate instead of replaying the hour at once', async () => {
  let now = Date.UTC(2026, 10, 1, 12, 0, 0);
  const node = new SimulatedGpuNode(defaultDemoNodeConfig({ startMs: now }));
  const workload = new DemoWorkload({ node, seed: 1, ratePerSecond: 3, tickMs: 10, clock: { now: () => now } });
  workload.start();
  const ticks = async (n: number) => {
    for (let i = 0; i < n; i += 1) {
      now += 10;
      await new Promise((resolve) => setTimeout(resolve, 12));
    }
  };
  await ticks(20);
  now += 3_600_000; // suspend and resume
  await ticks(20);
  workload.dispose();
  // 0.4 s of clock at 3 tasks/s (a burst may add a few hundred): nowhere near an hour's 10,000+.
  assert.ok(workload.stats().requestsSubmitted < 1_000, JSON.stringify(workload.stats()));
  assert.ok(workload.stats().skippedMs >= 3_600_000, 'the skipped hour is counted');
});

test('the demo banner\'s figure for its longest request holds: some requests outlast the demo\'s 30 s lateness, none DEMO_LONGEST_REQUEST_S', () => {
  for (const seed of [1, 2, 3]) {
    const { records } = runDemo(seed, 600);
    let longestS = 0;
    let overLateness = 0;
    for (const r of records) {
      const s = (r.endMs - r.startMs) / 1000;
      if (s > 30) overLateness += 1;
      if (s > longestS) longestS = s;
    }
    assert.ok(overLateness > 0, `seed ${seed}: some requests are longer than the demo's lateness (the banner says they arrive late)`);
    assert.ok(longestS < DEMO_LONGEST_REQUEST_S, `seed ${seed}: the longest request took ${longestS} s`);
  }
});
