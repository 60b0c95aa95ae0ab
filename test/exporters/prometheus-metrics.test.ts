import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Counter, register as globalRegistry, Registry } from 'prom-client';
import { METRIC_CATALOG, OTHER_LABEL_VALUE, SEED_JOULES_MARGIN, TokenwattMetrics, type FinalizedRequestMetrics } from '../../exporters/prometheus/index.js';
import { parseExposition, sumOf, type Family } from './prometheus-exposition.js';

const request = (over: Partial<FinalizedRequestMetrics> = {}): FinalizedRequestMetrics => ({
  model: 'llama-8b', tier: 'small', status: 'ok', cacheBucket: 'miss', batchBucket: '5-16',
  labels: { team: 'search', feature: 'chat' },
  staticJ: 2, dynamicJ: 6, joules: 8, promptTokens: 100, cachedTokens: 20, completionTokens: 50, reasoningTokens: 10,
  ...over,
});

/** Call every method once so every family has samples. */
function exerciseAll(m: TokenwattMetrics): void {
  m.setGpuPower(0, 'GPU-a', 250);
  m.addMeasuredEnergy(0, 'GPU-a', 100);
  m.addIdleEnergy(0, 10);
  m.addUnattributedEnergy(0, 1);
  m.addEstimatedEnergy(0, 2);
  m.addCoveredTime(0, 'GPU-a', 1500);
  m.addHostEnergy('rapl', 30, false);
  m.requestFinalized(request());
  m.taskFinalized({ tier: 'small', succeeded: true, joules: 8, wasteJ: 1 });
  m.sampleTaken(0, 10);
  m.sampleError('timeout');
  m.recordsAccepted(3);
  m.recordsDuplicate(1);
  m.recordsLate(1);
  m.recordsRejected('validation', 2);
  m.settled(1_700_000_000_000, [0.001, -0.002]);
  m.setPendingAttributedEnergy(42);
  m.captureError('proxy');
  m.setCarbonFactors('', 1.2, { gPerKwh: 56, factor: 'FR' });
  m.setPowerSourceInfo({ kind: 'nvml', energyCounter: true, powerAveraged: false, simulated: false });
  m.setBuildInfo('1.2.3', 'v20.0.0');
}

async function scrape(m: TokenwattMetrics): Promise<Map<string, Family>> {
  return parseExposition(await m.metrics());
}

function labelNames(family: Family | undefined): string[] {
  const names = new Set<string>();
  for (const s of family?.samples ?? []) for (const k of Object.keys(s.labels)) if (k !== 'le') names.add(k);
  return [...names].sort();
}

test('the DESIGN metrics exist with their types and labels, and the exposition parses', async () => {
  const m = new TokenwattMetrics({ now: () => 1_700_000_120_000 });
  exerciseAll(m);
  const families = await scrape(m);
  const expected: [string, string, string[]][] = [
    ['tokenwatt_gpu_power_watts', 'gauge', ['gpu', 'uuid', 'simulated']],
    ['tokenwatt_gpu_energy_joules_total', 'counter', ['gpu', 'uuid', 'simulated']],
    ['tokenwatt_idle_energy_joules_total', 'counter', ['gpu', 'simulated']],
    ['tokenwatt_energy_joules_total', 'counter', ['model', 'tier', 'cache_bucket', 'batch_bucket', 'status', 'mode', 'team', 'feature', 'simulated']],
    ['tokenwatt_tokens_total', 'counter', ['model', 'tier', 'cache_bucket', 'batch_bucket', 'kind', 'simulated']],
    ['tokenwatt_requests_total', 'counter', ['model', 'tier', 'status', 'simulated', 'team', 'feature']],
    ['tokenwatt_request_energy_joules', 'histogram', ['tier', 'simulated']],
    ['tokenwatt_task_energy_joules', 'histogram', ['tier', 'succeeded', 'simulated']],
    ['tokenwatt_unattributed_energy_joules_total', 'counter', ['gpu', 'simulated']],
    ['tokenwatt_estimated_energy_joules_total', 'counter', ['gpu', 'simulated']],
    ['tokenwatt_gpu_covered_seconds_total', 'counter', ['gpu', 'uuid']],
    ['tokenwatt_host_energy_joules_total', 'counter', ['source', 'estimated', 'simulated']],
    ['tokenwatt_tasks_total', 'counter', ['tier', 'succeeded', 'simulated']],
    ['tokenwatt_waste_energy_joules_total', 'counter', ['tier', 'reason', 'simulated']],
    ['tokenwatt_samples_total', 'counter', ['gpu']],
    ['tokenwatt_sample_errors_total', 'counter', ['reason']],
    ['tokenwatt_capture_errors_total', 'counter', ['source']],
    ['tokenwatt_pue_ratio', 'gauge', ['site']],
    ['tokenwatt_grid_intensity_grams_per_joule', 'gauge', ['basis', 'factor']],
    ['tokenwatt_records_total', 'counter', ['result']],
    ['tokenwatt_records_rejected_total', 'counter', ['reason']],
    ['tokenwatt_late_records_total', 'counter', []],
    ['tokenwatt_settle_lag_seconds', 'gauge', []],
    ['tokenwatt_settled_until_timestamp_seconds', 'gauge', []],
    ['tokenwatt_counters_start_timestamp_seconds', 'gauge', ['seeded']],
    ['tokenwatt_conservation_residual_joules', 'gauge', []],
    ['tokenwatt_pending_attributed_energy_joules', 'gauge', ['simulated']],
    ['tokenwatt_conservation_residual_joules_total', 'counter', []],
    ['tokenwatt_power_source_info', 'gauge', ['kind', 'energy_counter', 'power_averaged', 'simulated']],
    ['tokenwatt_build_info', 'gauge', ['version', 'node_version']],
  ];
  for (const [name, type, labels] of expected) {
    const family = families.get(name);
    assert.ok(family, `${name} is exported`);
    assert.equal(family.type, type, `${name} type`);
    assert.ok(family.help.length > 10, `${name} has help`);
    assert.deepEqual(labelNames(family), [...labels].sort(), `${name} labels`);
  }
  assert.equal(sumOf(families, 'tokenwatt_energy_joules_total', { mode: 'static' }), 2);
  assert.equal(sumOf(families, 'tokenwatt_energy_joules_total', { mode: 'dynamic' }), 6);
  assert.equal(sumOf(families, 'tokenwatt_tokens_total', { kind: 'cached' }), 20);
  assert.equal(sumOf(families, 'tokenwatt_records_total', { result: 'late' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_late_records_total'), 1);
  assert.equal(sumOf(families, 'tokenwatt_gpu_covered_seconds_total', { uuid: 'GPU-a' }), 1.5, 'covered milliseconds exported in seconds');
  assert.equal(sumOf(families, 'tokenwatt_settle_lag_seconds'), 120);
  assert.equal(sumOf(families, 'tokenwatt_settled_until_timestamp_seconds'), 1_700_000_000);
  assert.equal(sumOf(families, 'tokenwatt_conservation_residual_joules'), 0.002, 'gauge: largest |residual|');
  assert.equal(sumOf(families, 'tokenwatt_pending_attributed_energy_joules'), 42);
  assert.ok(Math.abs(sumOf(families, 'tokenwatt_conservation_residual_joules_total') - 0.003) < 1e-12, 'counter: sum of |residual|');
  assert.equal(sumOf(families, 'tokenwatt_request_energy_joules_count'), 1);
  assert.equal(sumOf(families, 'tokenwatt_request_energy_joules_bucket', { le: '10' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_request_energy_joules_bucket', { le: '5' }), 0);
});

test('naming conventions: prefix, base units, counters end in _total and only counters do', () => {
  for (const spec of Object.values(METRIC_CATALOG)) {
    assert.match(spec.name, /^tokenwatt_[a-z][a-z0-9_]*$/, spec.name);
    assert.equal(spec.name.endsWith('_total'), spec.type === 'counter', `${spec.name}: _total iff counter`);
    assert.match(spec.name, /_(joules|watts|seconds|ratio|info|total|grams_per_joule)$/, `${spec.name} ends in a base unit, _ratio, _info or _total`);
    assert.doesNotMatch(spec.name, /kilo|milli|kwh|_ms|percent/, `${spec.name} uses base units`);
  }
});

test('prom-client refuses bad metric and label names at definition', () => {
  const registry = new Registry();
  assert.throws(() => new Counter({ name: 'tokenwatt-energy_total', help: 'h', registers: [registry] }), /Invalid metric name/);
  assert.throws(() => new Counter({ name: 'tokenwatt_x_total', help: 'h', labelNames: ['bad-label'], registers: [registry] }), /Invalid label name/);
  assert.throws(() => new TokenwattMetrics({ userLabels: ['team-name'] }), /not a Prometheus label name/);
});

test('no request, task or user ids become labels; a config asking for one is refused', async () => {
  assert.throws(() => new TokenwattMetrics({ userLabels: ['request_id'] }), /identifier/);
  assert.throws(() => new TokenwattMetrics({ userLabels: ['user'] }), /identifier/);
  const m = new TokenwattMetrics();
  m.requestFinalized(request({ labels: { team: 't', feature: 'f', request_id: 'req-123', task_id: 'task-9', user_id: 'u-77' } }));
  const text = await m.metrics();
  for (const id of ['req-123', 'task-9', 'u-77']) assert.ok(!text.includes(id), `${id} must not appear in /metrics`);
  const forbidden = /(^|_)(id|uid|uuid)$|^user$/;
  for (const family of parseExposition(text).values()) {
    for (const name of labelNames(family)) if (name !== 'uuid') assert.doesNotMatch(name, forbidden, `${family.name} label ${name}`);
  }
});

test('label capping: with cap N, the N+1th distinct team folds into OTHER_LABEL_VALUE and the fold is counted', async () => {
  const cap = 3;
  const m = new TokenwattMetrics({ labelCap: cap });
  const teams = ['a', 'b', 'c', 'd', 'e'];
  for (const team of teams) m.requestFinalized(request({ labels: { team, feature: 'chat' } }));
  m.requestFinalized(request({ labels: { feature: 'chat' } }));
  const families = await scrape(m);
  const exported = new Set(families.get('tokenwatt_energy_joules_total')?.samples.map((s) => s.labels.team));
  assert.deepEqual([...exported].sort(), ['', OTHER_LABEL_VALUE, 'a', 'b', 'c'].sort());
  assert.equal(sumOf(families, 'tokenwatt_energy_joules_total', { team: OTHER_LABEL_VALUE }), 2 * 8, 'the energy of d and e is kept, under the fold');
  assert.equal(sumOf(families, 'tokenwatt_label_values_folded_total', { label: 'team', reason: 'value_cap' }), 2);
});

test('rejection reasons past the cap do not fold sample-error reasons: each reason label has its own cap', async () => {
  const m = new TokenwattMetrics({ labelCap: 2 });
  for (const reason of ['gpus', 'cached_tokens', 'labels.a', 'labels.b']) m.recordsRejected(reason, 1);
  m.sampleError('gpu_lost');
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_sample_errors_total', { reason: 'gpu_lost' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_records_rejected_total', { reason: OTHER_LABEL_VALUE }), 2, 'rejections fold among themselves');
});

test('the series budget folds new user-label combinations but never drops energy', async () => {
  const m = new TokenwattMetrics({ maxEnergyLabelSets: 4 });
  let total = 0;
  for (let i = 0; i < 10; i += 1) {
    m.requestFinalized(request({ labels: { team: `t${i}`, feature: 'chat' }, staticJ: i, dynamicJ: 1, joules: i + 1 }));
    total += i + 1;
  }
  const families = await scrape(m);
  const energy = families.get('tokenwatt_energy_joules_total');
  const labelSets = new Set(energy?.samples.map((s) => `${s.labels.team}/${s.labels.feature}`));
  assert.equal(labelSets.size, 5, 'four admitted combinations plus the fold of both');
  assert.ok(labelSets.has(`${OTHER_LABEL_VALUE}/${OTHER_LABEL_VALUE}`));
  assert.equal(sumOf(families, 'tokenwatt_energy_joules_total'), total);
  assert.ok(sumOf(families, 'tokenwatt_label_values_folded_total', { reason: 'series_cap' }) > 0);
});

test('simulated runs say so on every energy and power series', async () => {
  const m = new TokenwattMetrics({ simulated: true });
  exerciseAll(m);
  m.setPowerSourceInfo({ kind: 'simulated', energyCounter: true, powerAveraged: false, simulated: true });
  const families = await scrape(m);
  for (const family of families.values()) {
    if (!/joules|watts|_tokens_total|_requests_total|_tasks_total/.test(family.name) || family.name.includes('residual')) continue;
    for (const s of family.samples) assert.equal(s.labels.simulated, 'true', `${s.name} ${JSON.stringify(s.labels)}`);
  }
  assert.equal(sumOf(families, 'tokenwatt_power_source_info', { simulated: 'true', kind: 'simulated' }), 1);
  assert.equal(families.get('tokenwatt_power_source_info')?.samples.length, 1, 'info is replaced, not accumulated');
});

test('property: counters never go backwards, whatever is fed in (bad values are counted, not thrown)', async () => {
  const joules = fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.constantFrom(-1, NaN, Infinity, -0));
  const op = fc.oneof(
    fc.record({ kind: fc.constant('measured' as const), j: joules }),
    fc.record({ kind: fc.constant('idle' as const), j: joules }),
    fc.record({ kind: fc.constant('request' as const), s: joules, d: joules, team: fc.constantFrom('a', 'b', 'c', 'd') }),
    fc.record({ kind: fc.constant('task' as const), j: joules, w: joules, ok: fc.boolean() }),
    fc.record({ kind: fc.constant('records' as const), n: fc.integer({ min: -2, max: 5 }) }),
    fc.record({ kind: fc.constant('settled' as const), r: joules }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
      const m = new TokenwattMetrics({ labelCap: 2 });
      let previous = new Map<string, number>();
      for (const o of ops) {
        if (o.kind === 'measured') m.addMeasuredEnergy(0, 'GPU-a', o.j);
        else if (o.kind === 'idle') m.addIdleEnergy(0, o.j);
        else if (o.kind === 'request') m.requestFinalized(request({ staticJ: o.s, dynamicJ: o.d, joules: o.s + o.d, labels: { team: o.team } }));
        else if (o.kind === 'task') m.taskFinalized({ tier: 'small', succeeded: o.ok, joules: o.j, wasteJ: o.w });
        else if (o.kind === 'records') m.recordsAccepted(o.n);
        else m.settled(1_700_000_000_000, o.r);
        const now = new Map<string, number>();
        for (const family of (await scrape(m)).values()) {
          if (family.type !== 'counter') continue;
          for (const s of family.samples) {
            const key = `${s.name}${JSON.stringify(s.labels)}`;
            assert.ok(Number.isFinite(s.value) && s.value >= 0, `${key} = ${s.value}`);
            assert.ok(s.value >= (previous.get(key) ?? 0), `${key} went from ${previous.get(key)} to ${s.value}`);
            now.set(key, s.value);
          }
        }
        for (const key of previous.keys()) assert.ok(now.has(key), `${key} disappeared`);
        previous = now;
      }
    }),
    { numRuns: 40 },
  );
});

test('waste: failed attempts, and the rest of a task that never succeeded', async () => {
  const m = new TokenwattMetrics();
  m.taskFinalized({ tier: 'large', succeeded: false, joules: 100, wasteJ: 30 });
  m.taskFinalized({ tier: 'large', succeeded: true, joules: 50, wasteJ: 20, wasteByReason: { cancelled: 5 } });
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_waste_energy_joules_total', { reason: 'attempt' }), 30 + 15);
  assert.equal(sumOf(families, 'tokenwatt_waste_energy_joules_total', { reason: 'task_failed' }), 70);
  assert.equal(sumOf(families, 'tokenwatt_waste_energy_joules_total', { reason: 'cancelled' }), 5);
  assert.equal(sumOf(families, 'tokenwatt_tasks_total', { succeeded: 'false' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_task_energy_joules_sum', { succeeded: 'true' }), 50);
});

test('a task that continues after it closed is not counted again: its added energy and waste go to the histogram sum and the waste counter', async () => {
  const m = new TokenwattMetrics();
  m.taskFinalized({ tier: 'large', succeeded: false, joules: 100, wasteJ: 100 });
  m.taskFinalized({ tier: 'large', succeeded: false, joules: 40, wasteJ: 0, failedJ: 0, continued: true }); // the retry succeeded
  m.taskFinalized({ tier: 'large', succeeded: false, joules: 0, wasteJ: 0, failedJ: 3, continued: true });
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_tasks_total', {}), 1);
  assert.equal(sumOf(families, 'tokenwatt_task_energy_joules_sum', {}), 140);
  assert.equal(sumOf(families, 'tokenwatt_task_energy_joules_count', {}), 2, '_count counts closings that added energy');
  assert.equal(sumOf(families, 'tokenwatt_waste_energy_joules_total', { reason: 'attempt' }), 100);
  assert.equal(sumOf(families, 'tokenwatt_waste_energy_joules_total', { reason: 'task_failed' }), 3);
});

test('a joule counter seeded from sums in another order never comes back below the running total it continues', () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 5e4, noNaN: true }), { minLength: 1, maxLength: 20_000 }), fc.integer({ min: 1, max: 500 }), (joules, perHour) => {
      let live = 0; // the previous process: request by request
      for (const j of joules) live += j;
      let ledger = 0; // the ledger: hourly rows, then their total
      for (let i = 0; i < joules.length; i += perHour) ledger += joules.slice(i, i + perHour).reduceRight((a, j) => a + j, 0);
      const seeded = ledger + Math.abs(ledger) * SEED_JOULES_MARGIN;
      return seeded >= live;
    }),
    { numRuns: 200 },
  );
});

test('seed starts the counters from ledger totals, once, before anything is counted', async () => {
  const m = new TokenwattMetrics();
  m.seed({
    gpus: [{ gpuUuid: 'GPU-a', gpuIndex: 0, measuredJ: 1000, idleJ: 300, unattributedJ: 5, estimatedJ: 0, simulated: false }],
    usage: [{
      model: 'llama-8b', tier: 'small', cacheBucket: 'hit', batchBucket: '1', status: 'ok', team: 'search', feature: '',
      requests: 7, promptTokens: 700, cachedTokens: 650, completionTokens: 70, reasoningTokens: 0, staticJ: 100, dynamicJ: 500, simulated: false,
    }],
    quality: { lateRecords: 2 },
  });
  m.addMeasuredEnergy(0, 'GPU-a', 10);
  const families = await scrape(m);
  // Joules come back a hair (1e-9) above the ledger's sums, counts exactly.
  const near = (value: number, seeded: number, after = 0) => value === seeded + seeded * SEED_JOULES_MARGIN + after;
  assert.ok(near(sumOf(families, 'tokenwatt_gpu_energy_joules_total', { uuid: 'GPU-a' }), 1000, 10));
  assert.ok(near(sumOf(families, 'tokenwatt_idle_energy_joules_total'), 300));
  assert.ok(near(sumOf(families, 'tokenwatt_energy_joules_total', { team: 'search', mode: 'dynamic' }), 500));
  assert.equal(sumOf(families, 'tokenwatt_requests_total'), 7);
  assert.equal(sumOf(families, 'tokenwatt_tokens_total', { kind: 'cached' }), 650);
  assert.equal(sumOf(families, 'tokenwatt_late_records_total'), 2);
  assert.throws(() => m.seed({ gpus: [], usage: [] }), /once, before anything is counted/);
  const late = new TokenwattMetrics();
  late.recordsAccepted(1);
  assert.throws(() => late.seed({ gpus: [], usage: [] }), /before anything is counted/);
});

test('tokenwatt_counters_start_timestamp_seconds says when the counters started, and whether from 0 or from the ledger\'s totals', async () => {
  const startOf = async (m: TokenwattMetrics) => (await scrape(m)).get('tokenwatt_counters_start_timestamp_seconds')?.samples.map((s) => ({ ...s.labels, value: s.value }));
  let clock = 1_700_000_000_000;
  const fresh = new TokenwattMetrics({ now: () => clock });
  clock += 5000;
  assert.deepEqual(await startOf(fresh), [{ seeded: 'false', value: 1_700_000_000 }], 'set at construction, read then');
  // An empty ledger, or one whose totals are all 0: every counter still starts from 0.
  const empty = new TokenwattMetrics({ now: () => 1_700_000_000_000 });
  empty.seed({ gpus: [{ gpuUuid: 'GPU-a', gpuIndex: 0, measuredJ: 0, idleJ: 0, unattributedJ: 0, estimatedJ: 0, simulated: false }], usage: [], quality: { lateRecords: 0 } });
  assert.deepEqual(await startOf(empty), [{ seeded: 'false', value: 1_700_000_000 }]);
  for (const totals of [
    { gpus: [{ gpuUuid: 'GPU-a', gpuIndex: 0, measuredJ: 1, idleJ: 0, unattributedJ: 0, estimatedJ: 0, simulated: false }], usage: [] },
    { gpus: [], usage: [], quality: { lateRecords: 1 } },
    { gpus: [], usage: [], taskSeries: [{ tier: 't', succeeded: true, simulated: false, count: 1 }] },
  ]) {
    const seeded = new TokenwattMetrics({ now: () => 1_700_000_000_000 });
    seeded.seed(totals);
    assert.deepEqual(await startOf(seeded), [{ seeded: 'true', value: 1_700_000_000 }], JSON.stringify(totals));
  }
});

test('each instance has its own registry; the global one is untouched', async () => {
  const a = new TokenwattMetrics();
  const b = new TokenwattMetrics();
  a.recordsAccepted(5);
  assert.equal(sumOf(await scrape(b), 'tokenwatt_records_total'), 0);
  assert.equal(globalRegistry.getSingleMetric('tokenwatt_records_total'), undefined);
  assert.match(a.contentType, /^text\/plain; version=0\.0\.4/);
});

test('invalid values are refused and counted by metric', async () => {
  const m = new TokenwattMetrics();
  m.addMeasuredEnergy(0, 'GPU-a', -5);
  m.setGpuPower(0, 'GPU-a', NaN);
  m.requestFinalized(request({ staticJ: Infinity }));
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_metric_invalid_values_total', { metric: 'tokenwatt_gpu_energy_joules_total' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_metric_invalid_values_total', { metric: 'tokenwatt_gpu_power_watts' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_metric_invalid_values_total', { metric: 'tokenwatt_energy_joules_total' }), 1);
  assert.equal(sumOf(families, 'tokenwatt_energy_joules_total', { mode: 'dynamic' }), 6, 'the valid part of the request still counts');
});

test('label values with quotes, backslashes and newlines are escaped in the exposition', async () => {
  const m = new TokenwattMetrics();
  const model = 'we"ird\\model\nname';
  m.requestFinalized(request({ model }));
  const families = await scrape(m);
  assert.equal(families.get('tokenwatt_requests_total')?.samples[0]?.labels.model, model);
});

test('settled series are rendered once per change, and a scrape never misses a change', async () => {
  const m = new TokenwattMetrics({ now: () => 1_700_000_010_000 });
  m.requestFinalized(request());
  assert.equal(sumOf(await scrape(m), 'tokenwatt_requests_total'), 1, 'a scrape right after a change shows it');
  const first = await m.metrics();
  assert.equal(await m.metrics(), first, 'no change, same text');
  m.requestFinalized(request());
  m.settled(1_700_000_000_000, 0);
  await new Promise((resolve) => setImmediate(resolve)); // the background render runs here
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_requests_total'), 2);
  assert.equal(sumOf(families, 'tokenwatt_settle_lag_seconds'), 10);
  m.sampleTaken(3, 7); // live series need no render
  assert.equal(sumOf(await scrape(m), 'tokenwatt_samples_total', { gpu: '3' }), 7);
});

test('metrics other components register on `registry` are exported with tokenwatt\'s', async () => {
  const m = new TokenwattMetrics();
  const proxied = new Counter({ name: 'tokenwatt_proxy_requests_total', help: 'Requests through the proxy.', registers: [m.registry] });
  proxied.inc(4);
  m.requestFinalized(request());
  const families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_proxy_requests_total'), 4);
  assert.equal(sumOf(families, 'tokenwatt_requests_total'), 1);
});

test('property: a settlement\'s requests counted in one batch give the same exposition as one by one', async () => {
  const arb = fc.array(
    fc.record({
      tier: fc.constantFrom('small', 'large'), status: fc.constantFrom('ok', 'error'), cacheBucket: fc.constantFrom('miss', 'hit'),
      team: fc.constantFrom('a', 'b', 'c'), s: fc.integer({ min: 0, max: 1000 }), d: fc.integer({ min: 0, max: 1000 }), out: fc.integer({ min: 0, max: 500 }),
    }),
    { maxLength: 40 },
  );
  await fc.assert(
    fc.asyncProperty(arb, async (rows) => {
      const requests = rows.map((r) => request({ tier: r.tier, status: r.status as 'ok', cacheBucket: r.cacheBucket, labels: { team: r.team }, staticJ: r.s, dynamicJ: r.d, joules: r.s + r.d, completionTokens: r.out }));
      // One clock for both: the counters' start time is in the exposition.
      const one = new TokenwattMetrics({ simulated: false, now: () => 1_700_000_000_000 });
      const batch = new TokenwattMetrics({ simulated: false, now: () => 1_700_000_000_000 });
      for (const r of requests) one.requestFinalized(r);
      batch.requestsFinalized(requests);
      assert.equal(await batch.metrics(), await one.metrics());
    }),
    { numRuns: 50 },
  );
});

test('the settle lag is read against the clock at each scrape, so it keeps growing when settlement stalls', async () => {
  let nowMs = 1_700_000_130_000;
  const m = new TokenwattMetrics({ now: () => nowMs });
  assert.equal(sumOf(await scrape(m), 'tokenwatt_settle_lag_seconds'), 0, 'prom-client shows an unlabelled gauge as 0 before the first settlement');
  m.settled(1_700_000_010_000, 0);
  assert.equal(sumOf(await scrape(m), 'tokenwatt_settle_lag_seconds'), 120);
  nowMs += 600_000; // ten minutes with no settlement
  assert.equal(sumOf(await scrape(m), 'tokenwatt_settle_lag_seconds'), 720);
  nowMs = 1_700_000_000_000; // the clock stepped back before the settled edge
  assert.equal(sumOf(await scrape(m), 'tokenwatt_settle_lag_seconds'), 0);
});

test('conservation residuals: the gauge is the period\'s largest over GPUs, the counter adds every GPU\'s; an edge moved without a settlement counts none', async () => {
  const m = new TokenwattMetrics();
  m.settled(1_700_000_000_000, [0.001, -0.002, 0.0005]);
  let families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_conservation_residual_joules'), 0.002);
  assert.ok(Math.abs(sumOf(families, 'tokenwatt_conservation_residual_joules_total') - 0.0035) < 1e-12);
  m.settled(1_700_000_010_000, []);
  families = await scrape(m);
  assert.equal(sumOf(families, 'tokenwatt_settled_until_timestamp_seconds'), 1_700_000_010);
  assert.equal(sumOf(families, 'tokenwatt_conservation_residual_joules'), 0.002, 'the last settled period\'s gauge stands');
  assert.ok(Math.abs(sumOf(families, 'tokenwatt_conservation_residual_joules_total') - 0.0035) < 1e-12, 'nothing added');
});
