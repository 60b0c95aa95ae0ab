import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { finishGzipMember, formatValue, IncrementalExposition, type ExpositionSnapshot } from '../../exporters/prometheus/index.js';

/** Label values that stress the exposition: escapes, separators prom-client hashes with, non-ASCII. */
const LABEL_VALUES = ['a', 'b', '', 'we"ird', 'back\\slash', 'new\nline', 'sp ace', 'co,mma', 'co:lon', 'énergie', '能量', '}'] as const;
const NUMBERS = [0, -0, 1, 0.1 + 0.2, 1e21, 1e-7, 123456789.123, 5e-324, Number.MAX_VALUE, NaN, Infinity, -Infinity, -3.5] as const;

function registryWithMetrics(): { registry: Registry; counter: Counter<string>; gauge: Gauge<string>; histogram: Histogram<string>; plain: Counter<string> } {
  const registry = new Registry();
  return {
    registry,
    counter: new Counter({ name: 'x_things_total', help: 'Things, with "quotes" \\ and\nnewline in help.', labelNames: ['k', 'v'], registers: [registry] }),
    plain: new Counter({ name: 'x_unlabelled_total', help: 'No labels.', registers: [registry] }),
    gauge: new Gauge({ name: 'x_level', help: 'A gauge.', labelNames: ['k'], registers: [registry] }),
    histogram: new Histogram({ name: 'x_size', help: 'A histogram.', labelNames: ['k'], buckets: [0.5, 1, 10, 100], registers: [registry] }),
  };
}

async function assertSame(snapshot: ExpositionSnapshot, registry: Registry, what: string): Promise<void> {
  const expected = await registry.metrics();
  assert.equal(snapshot.text(), expected, what);
  assert.equal(snapshot.byteLength, Buffer.byteLength(expected), `${what}: length`);
  assert.equal(snapshot.crc, crc32(Buffer.from(expected)), `${what}: CRC-32`);
  assert.equal(Buffer.concat(snapshot.chunks).toString('utf8'), expected, `${what}: chunks`);
  const live = Buffer.from('x_live 1\n');
  const gzip = Buffer.concat(finishGzipMember(await snapshot.gzipPrefix(), snapshot.crc, snapshot.byteLength, live));
  assert.equal(gunzipSync(gzip).toString('utf8'), expected + live.toString(), `${what}: gzip`);
}

test('formatValue prints numbers as prom-client does', async () => {
  const registry = new Registry();
  const gauge = new Gauge({ name: 'x_value', help: 'h', labelNames: ['i'], registers: [registry] });
  NUMBERS.forEach((n, i) => gauge.set({ i: String(i) }, n));
  const printed = (await registry.metrics()).split('\n').filter((l) => l.startsWith('x_value{')).map((l) => l.slice(l.lastIndexOf(' ') + 1));
  assert.deepEqual(printed, NUMBERS.map(formatValue));
});

test('property: the incremental text is exactly what prom-client renders, after any changes', async () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('inc' as const), k: fc.constantFrom(...LABEL_VALUES), v: fc.constantFrom(...LABEL_VALUES), n: fc.double({ min: 0, max: 1e9, noNaN: true }) }),
    fc.record({ kind: fc.constant('incPlain' as const), n: fc.integer({ min: 0, max: 5 }) }),
    fc.record({ kind: fc.constant('set' as const), k: fc.constantFrom(...LABEL_VALUES), n: fc.constantFrom(...NUMBERS) }),
    fc.record({ kind: fc.constant('gaugeInc' as const), k: fc.constantFrom(...LABEL_VALUES), n: fc.integer({ min: -3, max: 3 }) }),
    fc.record({ kind: fc.constant('observe' as const), k: fc.constantFrom(...LABEL_VALUES), n: fc.double({ min: 0, max: 1000, noNaN: true }) }),
    fc.record({ kind: fc.constant('zero' as const), k: fc.constantFrom(...LABEL_VALUES) }),
    fc.record({ kind: fc.constant('remove' as const), k: fc.constantFrom(...LABEL_VALUES), v: fc.constantFrom(...LABEL_VALUES) }),
    fc.record({ kind: fc.constant('removeOne' as const), k: fc.constantFrom(...LABEL_VALUES), which: fc.constantFrom('gauge' as const, 'histogram' as const) }),
    // A key deleted behind prom-client's back (no remove()): the exposition must notice it is gone.
    fc.record({ kind: fc.constant('deleteRaw' as const), nth: fc.nat({ max: 20 }) }),
    fc.record({ kind: fc.constant('reset' as const), which: fc.constantFrom('counter' as const, 'gauge' as const, 'histogram' as const) }),
    fc.record({ kind: fc.constant('render' as const) }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 50 }), async (ops, segmentLines, linesPerTurn) => {
      const { registry, counter, gauge, histogram, plain } = registryWithMetrics();
      const exposition = new IncrementalExposition(registry, { segmentLines, linesPerTurn });
      // A second exposition of the same registry: both track new series through the same maps.
      const second = new IncrementalExposition(registry, { segmentLines: 3 });
      for (const o of ops) {
        if (o.kind === 'inc') counter.inc({ k: o.k, v: o.v }, o.n);
        else if (o.kind === 'incPlain') plain.inc(o.n);
        else if (o.kind === 'set') gauge.set({ k: o.k }, o.n);
        else if (o.kind === 'gaugeInc') gauge.inc({ k: o.k }, o.n);
        else if (o.kind === 'observe') histogram.observe({ k: o.k }, o.n);
        else if (o.kind === 'zero') histogram.zero({ k: o.k });
        else if (o.kind === 'remove') counter.remove({ k: o.k, v: o.v });
        else if (o.kind === 'removeOne') ({ gauge, histogram })[o.which].remove({ k: o.k });
        else if (o.kind === 'deleteRaw') {
          const hashMap = (counter as unknown as { hashMap: Record<string, unknown> }).hashMap;
          const key = Object.keys(hashMap)[o.nth];
          if (key !== undefined) delete hashMap[key];
        } else if (o.kind === 'reset') ({ counter, gauge, histogram })[o.which].reset();
        else {
          await assertSame(await exposition.render(), registry, 'mid-sequence render');
          await assertSame(await second.render(), registry, 'mid-sequence render, second exposition');
        }
      }
      await assertSame(await exposition.render(), registry, 'final render');
      await assertSame(await second.render(), registry, 'final render, second exposition');
      assert.equal(exposition.fallback, false, 'prom-client as it is needs no fallback');
    }),
    { numRuns: 150 },
  );
});

test('a render shows one instant even when it yields: changes made meanwhile land in the next render', async () => {
  const { registry, counter, histogram } = registryWithMetrics();
  const exposition = new IncrementalExposition(registry, { segmentLines: 7, linesPerTurn: 20 });
  for (let i = 0; i < 300; i += 1) counter.inc({ k: `k${i}`, v: 'x' }, i);
  // Every state the registry passes through (changes happen only in these macrotasks; rendering
  // it with prom-client takes only microtasks, so the text recorded is that state).
  const states = new Set([await registry.metrics()]);
  let turns = 0;
  const churn = setInterval(() => {
    turns += 1;
    counter.inc({ k: `late${turns}`, v: 'y' }, 1); // a new series mid-render
    counter.inc({ k: 'k1', v: 'x' }, 1); // an old one moves
    histogram.observe({ k: 'h' }, turns);
    void registry.metrics().then((text) => states.add(text));
  }, 0);
  try {
    for (let r = 0; r < 3; r += 1) {
      const snapshot = await exposition.render();
      assert.ok(states.has(snapshot.text()), `render ${r} is one state the registry was in`);
    }
  } finally {
    clearInterval(churn);
  }
  assert.ok(turns > 2, 'the renders yielded to the event loop');
  await assertSame(await exposition.render(), registry, 'a render once the changes stop');
});

test('only changed segments are rebuilt; an unchanged render reuses every segment', async () => {
  const { registry, counter } = registryWithMetrics();
  const exposition = new IncrementalExposition(registry, { segmentLines: 4 });
  for (let i = 0; i < 40; i += 1) counter.inc({ k: `k${i}`, v: 'x' }, 1);
  const first = await exposition.render();
  const same = await exposition.render();
  assert.deepEqual(same.chunks.map((c) => c.buffer), first.chunks.map((c) => c.buffer), 'no change: the same buffers');
  counter.inc({ k: 'k21', v: 'x' }, 1);
  const next = await exposition.render();
  const rebuilt = next.chunks.filter((c, i) => c !== first.chunks[i]);
  assert.equal(rebuilt.length, 1, 'one segment rebuilt');
  await assertSame(next, registry, 'after one change');
});

test('a metric with collect(), or a registry with default labels, is rendered by prom-client in full', async () => {
  const { registry, counter } = registryWithMetrics();
  let n = 0;
  new Gauge({ name: 'x_collected', help: 'Set on collect.', registers: [registry], collect() { this.set((n += 1)); } });
  counter.inc({ k: 'a', v: 'b' }, 2);
  const exposition = new IncrementalExposition(registry);
  const snapshot = await exposition.render();
  assert.equal(exposition.fallback, true);
  assert.match(snapshot.text(), /^x_collected 1$/m);
  assert.match(snapshot.text(), /^x_things_total\{k="a",v="b"\} 2$/m);

  const labelled = registryWithMetrics();
  labelled.registry.setDefaultLabels({ node: 'n1' });
  labelled.counter.inc({ k: 'a', v: 'b' }, 2);
  const withDefaults = new IncrementalExposition(labelled.registry);
  await assertSame(await withDefaults.render(), labelled.registry, 'default labels');
  assert.equal(withDefaults.fallback, true);
});

test('new, removed and re-added series are tracked without enumerating the map on every render', async () => {
  const { registry, counter, gauge } = registryWithMetrics();
  const exposition = new IncrementalExposition(registry, { segmentLines: 2 });
  for (let i = 0; i < 5; i += 1) counter.inc({ k: `k${i}`, v: 'x' }, i + 1);
  await assertSame(await exposition.render(), registry, 'first render');
  counter.inc({ k: 'k5', v: 'x' }, 6);
  await assertSame(await exposition.render(), registry, 'a new series, seen through the watcher');
  // Removed, then added again before the next render: prom-client now renders it last.
  counter.remove({ k: 'k1', v: 'x' });
  counter.inc({ k: 'k1', v: 'x' }, 10);
  const text = (await exposition.render()).text();
  assert.equal(text.match(/k="k1"/g)?.length, 1, 'the re-added series is rendered once');
  await assertSame(await exposition.render(), registry, 'removed and re-added');
  // Deleted behind prom-client's back (no remove()): the lookup misses and the keys are read again.
  const hashMap = (counter as unknown as { hashMap: Record<string, unknown> }).hashMap;
  delete hashMap[Object.keys(hashMap)[2] as string];
  await assertSame(await exposition.render(), registry, 'deleted from the map');
  gauge.set({ k: 'a' }, 1);
  gauge.reset(); // replaces the map: the new one is watched from the next render
  gauge.set({ k: 'b' }, 2);
  await assertSame(await exposition.render(), registry, 'after reset()');
  gauge.set({ k: 'c' }, 3);
  await assertSame(await exposition.render(), registry, 'a new series in the new map');
});

test('an empty registry renders as prom-client does', async () => {
  const registry = new Registry();
  await assertSame(await new IncrementalExposition(registry).render(), registry, 'empty');
});
