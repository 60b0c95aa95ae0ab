import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { formatTraceError, MAX_KEPT_TRACE_ERRORS, MAX_TRACE_GPUS, parsePowerTrace } from '../../collectors/trace-file.js';
import { buildEnergyTimeline } from '../../model/energy-timeline.js';
import { parseNvidiaSmiTimestamp } from '../../collectors/trace-file-nvidia-smi.js';
import { formatPlainTrace } from '../../collectors/trace-file-writer.js';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import { ReplayPowerSource } from '../../collectors/replay/replay-power-source.js';
import { NodeRecordContext } from '../../agent/record-context.js';
import type { PowerSample } from '../../model/power-sample.js';
import { epochMs, joules, watts } from '../../model/units.js';

const capture = (name: string): string => readFileSync(new URL(`../fixtures/traces/${name}`, import.meta.url), 'utf8');
const H100 = 'nvidia-smi-h100-80gb-hbm3-590.48.01.csv';

/** Replace one column of every data row of a capture (by header name). */
function withColumn(text: string, column: string, value: string): string {
  const [header, ...rows] = text.trimEnd().split('\n');
  const i = (header as string).split(', ').indexOf(column);
  assert.ok(i >= 0, column);
  return [header, ...rows.map((r) => r.split(', ').map((f, j) => (j === i ? value : f)).join(', '))].join('\n');
}

test('real nvidia-smi captures (full --query-gpu, with units) parse without a bad line', () => {
  const cases = [
    { file: H100, name: 'NVIDIA H100 80GB HBM3', watts: [69.62, 625.68], mig: false, t0: Date.UTC(2026, 6, 14, 8, 12, 38, 696) },
    { file: 'nvidia-smi-h200-590.48.01.csv', name: 'NVIDIA H200', watts: [78.21, 626.26], mig: false, t0: Date.UTC(2026, 6, 3, 22, 10, 46, 109) },
    { file: 'nvidia-smi-h100-mig-590.48.01.csv', name: 'NVIDIA H100 80GB HBM3', watts: [70.72, 447.35], mig: true, t0: Date.UTC(2026, 6, 14, 9, 0, 27, 792) },
    { file: 'nvidia-smi-rtx-2080-super-windows-591.86.csv', name: 'NVIDIA GeForce RTX 2080 SUPER', watts: [38.92, 97.43], mig: undefined, t0: Date.UTC(2026, 5, 22, 23, 4, 18, 311) },
  ];
  for (const c of cases) {
    const trace = parsePowerTrace(capture(c.file), { fileName: c.file });
    assert.equal(trace.format, 'nvidia-smi', c.file);
    assert.deepEqual(trace.errors, [], c.file);
    assert.deepEqual(trace.samples.toArray().map((s) => s.powerW), c.watts, c.file);
    assert.equal(trace.samples.toArray()[0]?.timestampMs, c.t0, c.file);
    assert.ok(trace.samples.toArray().every((s) => s.energyJ === null && s.powerAveraged === false && s.gpuIndex === 0 && s.gpuUuid === 'GPU-00000000-0000-0000-0000-000000000000'));
    assert.equal(trace.gpus.length, 1);
    assert.equal(trace.gpus[0]?.name, c.name);
    assert.equal(trace.gpus[0]?.migEnabled, c.mig, c.file);
    assert.ok(trace.notes.some((n) => /read as UTC/.test(n)));
    assert.ok(trace.notes.some((n) => /no energy counter/.test(n)));
  }
});

test('without power.draw.instant: power.draw is the 1 s average where power.draw.average reads, instantaneous where it is [N/A]', () => {
  const h100 = parsePowerTrace(withColumn(capture(H100), 'power.draw.instant [W]', '[N/A]'));
  assert.deepEqual(h100.errors, []);
  assert.deepEqual(h100.samples.toArray().map((s) => [s.powerW, s.powerAveraged]), [[69.85, true], [631.95, true]]);
  const turing = parsePowerTrace(withColumn(capture('nvidia-smi-rtx-2080-super-windows-591.86.csv'), 'power.draw.instant [W]', '[Not Supported]'));
  assert.deepEqual(turing.samples.toArray().map((s) => [s.powerW, s.powerAveraged]), [[38.92, false], [97.43, false]]);
  // Only the average left: used, and flagged averaged.
  const avgOnly = parsePowerTrace(withColumn(withColumn(capture(H100), 'power.draw.instant [W]', 'ERR!'), 'power.draw [W]', '[Unknown Error]'));
  assert.deepEqual(avgOnly.samples.toArray().map((s) => [s.powerW, s.powerAveraged]), [[69.85, true], [631.95, true]]);
});

test('a line with no readable power is reported with its number and the fields it had', () => {
  let text = capture(H100);
  for (const c of ['power.draw.instant [W]', 'power.draw [W]', 'power.draw.average [W]']) text = withColumn(text, c, '[N/A]');
  const trace = parsePowerTrace(text);
  assert.equal(trace.samples.length, 0);
  assert.deepEqual(trace.errors.map((e) => e.line), [2, 3]);
  assert.match(trace.errors[0]?.message ?? '', /no power reading \(power\.draw\.instant \[N\/A\], power\.draw \[N\/A\], power\.draw\.average \[N\/A\]\)/);
  assert.equal(formatTraceError('x.csv', trace.errors[0] as never), `x.csv:2: ${trace.errors[0]?.message}`);
});

test('the short query users run (units, several GPUs, written GPU by GPU) and its nounits form', () => {
  // Lines of different GPUs may come in any order (each GPU's own lines are in time order).
  const withUnits = [
    'timestamp, index, uuid, power.draw [W]',
    '2026/11/01 12:00:00.100, 1, GPU-bbbb, 205.00 W',
    '2026/11/01 12:00:00.200, 1, GPU-bbbb, 206.00 W',
    '2026/11/01 12:00:00.100, 0, GPU-aaaa, 100.25 W',
    '2026/11/01 12:00:00.200, 0, GPU-aaaa, 101.50 W',
  ].join('\n');
  const a = parsePowerTrace(withUnits);
  assert.equal(a.format, 'nvidia-smi');
  assert.deepEqual(a.errors, []);
  const t = Date.UTC(2026, 10, 1, 12, 0, 0);
  assert.deepEqual(a.samples.toArray().map((s) => [s.timestampMs - t, s.gpuIndex, s.gpuUuid, s.powerW]), [
    [100, 0, 'GPU-aaaa', 100.25], [100, 1, 'GPU-bbbb', 205], [200, 0, 'GPU-aaaa', 101.5], [200, 1, 'GPU-bbbb', 206],
  ]);
  // power.draw alone: averaging unknown, so taken as averaged (never overstate quality), and said so.
  assert.ok(a.samples.toArray().every((s) => s.powerAveraged === true), 'power.draw alone: assumed averaged');
  assert.ok(a.notes.some((n) => /4 power\.draw line\(s\) without power\.draw\.average or compute_cap: taken as 1 s averages/.test(n)), a.notes.join('\n'));
  const nounits = parsePowerTrace(withUnits.replace(' [W]', '').replaceAll(' W', ''));
  assert.deepEqual(nounits.samples.toArray(), a.samples.toArray());
  // The aliases of --help-query-gpu work too.
  const aliased = parsePowerTrace('timestamp, gpu_uuid, gpu.power.draw.instant [W]\n2026/11/01 12:00:00.100, GPU-cccc, 50.00 W\n');
  assert.deepEqual(aliased.samples.toArray().map((s) => [s.gpuUuid, s.gpuIndex, s.powerW, s.powerAveraged]), [['GPU-cccc', 0, 50, false]]);
});

test('power.draw without power.draw.average: compute_cap says whether it averages; without it, assumed averaged (the replay says so)', async () => {
  const header = 'timestamp, index, uuid, name, compute_cap, power.draw [W]';
  const line = (cc: string) => `2026/06/22 23:04:18.311, 0, GPU-aaaa, GPU, ${cc}, 100.00 W`;
  for (const [cc, averaged] of [['9.0', true], ['8.6', true], ['8.0', false], ['7.5', false], ['[N/A]', true]] as const) {
    const trace = parsePowerTrace(`${header}\n${line(cc)}\n`);
    assert.deepEqual(trace.errors, []);
    assert.equal(trace.samples.toArray()[0]?.powerAveraged, averaged, cc);
    assert.equal(trace.notes.some((n) => /taken as 1 s averages/.test(n)), cc === '[N/A]', cc);
  }
  // The DESIGN's own example header, from an H100: the replay must not claim instantaneous power.
  const h100 = 'timestamp, index, uuid, name, power.draw [W]\n2026/06/22 23:04:18.311, 0, GPU-aaaa, NVIDIA H100 80GB HBM3, 625.68 W\n2026/06/22 23:04:18.411, 0, GPU-aaaa, NVIDIA H100 80GB HBM3, 630.10 W\n';
  const replay = new ReplayPowerSource({ path: 'h100.csv', readFile: async () => h100 });
  await replay.init();
  assert.equal(replay.quality().powerAveraged, true);
  await replay.shutdown();
});

test('nvidia-smi: bad fields, [N/A] identities, repeated headers, comments, CRLF and BOM', () => {
  const lines = [
    '\ufefftimestamp, index, uuid, power.draw [W], power.draw.instant [W]',
    '2026/11/01 12:00:00.100, 0, GPU-aaaa, 100.00 W, [N/A]', // 2: instant N/A -> power.draw
    '2026/11/01 12:00:00.200, 0, ERR!, 101.00 W, 99.00 W', // 3: uuid unreadable -> known by index
    '2026/13/01 12:00:00.300, 0, GPU-aaaa, 100.00 W, 99.00 W', // 4: month 13
    '2026/11/01 12:00:00.400, 0, GPU-aaaa, 12.3.4 W, 99.00 W', // 5: garbage power
    '2026/11/01 12:00:00.500, 0, GPU-aaaa, 100.00 W', // 6: a field short
    '# a comment', // 7
    'timestamp, index, uuid, power.draw [W], power.draw.instant [W]', // 8: repeated header
    '2026/11/01 12:00:00.600, [N/A], [N/A], 100.00 W, 98.00 W', // 9: no identity
    '2026/11/01 12:00:00.700, 0, GPU-aaaa, 100.00 kW, 98.00 W', // 10: wrong unit
    '', // 11
    '2026/02/30 12:00:00.800, 0, GPU-aaaa, 100.00 W, 98.00 W', // 12: no such day
  ];
  const trace = parsePowerTrace(lines.join('\r\n'));
  assert.deepEqual(trace.samples.toArray().map((s) => [s.gpuUuid, s.powerW]), [['GPU-aaaa', 100], ['GPU-aaaa', 99]]);
  assert.deepEqual(trace.errors.map((e) => e.line), [4, 5, 6, 9, 10, 12]);
  const msg = Object.fromEntries(trace.errors.map((e) => [e.line, e.message]));
  assert.match(msg[4] ?? '', /^timestamp: not "YYYY\/MM\/DD HH:MM:SS.mmm"/);
  assert.match(msg[5] ?? '', /^power\.draw: not a power in watts \("12\.3\.4 W"\)/);
  assert.equal(msg[6], 'expected 5 fields, got 4');
  assert.match(msg[9] ?? '', /^no GPU identity/);
  assert.match(msg[10] ?? '', /kW/);
  assert.ok(trace.notes.some((n) => /1 repeated header/.test(n)));
});

test('nvidia-smi timestamps: parsed exactly, zone offset applied when given', () => {
  assert.equal(parseNvidiaSmiTimestamp('2026/11/01 12:00:00.123'), Date.UTC(2026, 10, 1, 12, 0, 0, 123));
  assert.equal(parseNvidiaSmiTimestamp('2026-11-01 12:00:00'), Date.UTC(2026, 10, 1, 12, 0, 0));
  assert.equal(parseNvidiaSmiTimestamp('2026/11/01 12:00:00.5'), Date.UTC(2026, 10, 1, 12, 0, 0, 500));
  for (const bad of ['2026/11/01', '2026/11/01 24:00:00.000', '2026/11/01 12:00:00.', '2026/1x/01 12:00:00.000', '2026/11/01 12:00:00.1234567']) {
    assert.equal(parseNvidiaSmiTimestamp(bad), undefined, bad);
  }
  const text = 'timestamp, index, power.draw [W]\n2026/11/01 12:00:00.000, 0, 10.00 W\n';
  const shifted = parsePowerTrace(text, { nvidiaSmiUtcOffsetMinutes: 120 });
  assert.equal(shifted.samples.toArray()[0]?.timestampMs, Date.UTC(2026, 10, 1, 10, 0, 0));
  assert.ok(shifted.notes.some((n) => /UTC\+120 min/.test(n)));
  assert.equal(shifted.samples.toArray()[0]?.gpuUuid, 'GPU-index-0');
});

test('plain trace: indices or UUIDs, empty energy or power, sorted per GPU', () => {
  const text = [
    'timestamp_ms,gpu,power_w,energy_j',
    '1793534400200,0,310.5,1000.25',
    '1793534400100,0,300,1000',
    '1793534400100,GPU-abc,,5000',
    '1793534400200,GPU-abc,150,',
    '1793534400100,1,99,',
  ].join('\n');
  const trace = parsePowerTrace(text, { fileName: 'p.csv' });
  assert.equal(trace.format, 'plain');
  assert.deepEqual(trace.errors, []);
  assert.deepEqual(trace.samples.toArray().map((s) => [s.timestampMs - 1793534400000, s.gpuIndex, s.gpuUuid, s.powerW, s.energyJ]), [
    [100, 0, 'GPU-index-0', 300, 1000],
    [100, 1, 'GPU-index-1', 99, null],
    [100, 2, 'GPU-abc', null, 5000],
    [200, 0, 'GPU-index-0', 310.5, 1000.25],
    [200, 2, 'GPU-abc', 150, null],
  ]);
  assert.deepEqual(trace.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-index-0'], [1, 'GPU-index-1'], [2, 'GPU-abc']]);
  // Columns in another order, and an extra column, are fine.
  const reordered = parsePowerTrace('gpu,note,energy_j,timestamp_ms,power_w\n0,x,1000,1793534400100,300\n');
  assert.deepEqual(reordered.samples.toArray().map((s) => [s.powerW, s.energyJ]), [[300, 1000]]);
  assert.ok(reordered.notes.some((n) => /columns ignored: note/.test(n)));
  // Power only, no energy column at all.
  assert.equal(parsePowerTrace('timestamp_ms,gpu,power_w\n1793534400100,0,1\n').samples.toArray()[0]?.energyJ, null);
});

test('plain trace: every bad line is reported with its number and reason', () => {
  const text = [
    'timestamp_ms,gpu,power_w,energy_j',
    '1793534400,0,300,1000', // 2: seconds
    '1793534400100,0,abc,1000', // 3
    '1793534400100,0,,', // 4
    '1793534400100,0,-5,1000', // 5
    '1793534400100,0,300,-1', // 6
    '1793534400100,0,300', // 7
    '1793534400100,,300,1', // 8
    '1793534400100,0,0x10,1', // 9: hex is not a decimal
    '1793534400100,0,300,1', // 10: good
    '1793534400100,0,301,2', // 11: same GPU, same instant
    '1793534400200,GPU with spaces,1,1', // 12
  ].join('\n');
  const trace = parsePowerTrace(text);
  assert.equal(trace.samples.length, 1);
  const msg = Object.fromEntries(trace.errors.map((e) => [e.line, e.message]));
  assert.deepEqual(Object.keys(msg).map(Number), [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]);
  assert.match(msg[2] ?? '', /not epoch milliseconds/);
  assert.match(msg[3] ?? '', /^power_w: not a number/);
  assert.equal(msg[4], 'neither power_w nor energy_j has a value');
  assert.match(msg[5] ?? '', /^power_w: -5 out of range/);
  assert.match(msg[6] ?? '', /^energy_j: -1 is negative/);
  assert.equal(msg[7], 'expected 4 fields, got 3');
  assert.equal(msg[8], 'gpu: empty');
  assert.match(msg[9] ?? '', /^power_w: not a number/);
  assert.match(msg[11] ?? '', /second sample of GPU 0 .* \(first on line 10\)/);
  assert.match(msg[12] ?? '', /^gpu: not an index or a UUID/);
});

test('an unknown or empty file says so instead of returning nothing', () => {
  const unknown = parsePowerTrace('time,watts\n1,2\n3,4\n');
  assert.equal(unknown.format, 'unknown');
  assert.deepEqual(unknown.errors.map((e) => e.line), [1, 2, 3]);
  assert.match(unknown.errors[0]?.message ?? '', /unrecognised header/);
  const empty = parsePowerTrace('\n\n');
  assert.deepEqual(empty.errors, [{ line: 1, message: 'empty trace: no header line', reason: 'empty trace' }]);
  assert.match(parsePowerTrace('timestamp_ms,power_w\n').errors[0]?.message ?? '', /lacks the "gpu" column/);
});

test('property: every data line becomes a sample or an error, never nothing; samples are in time order per GPU', () => {
  const goodLine = fc.record({ ts: fc.integer({ min: 1_793_534_400_000, max: 1_793_534_500_000 }), gpu: fc.integer({ min: 0, max: 3 }), p: fc.integer({ min: 0, max: 700 }) })
    .map(({ ts, gpu, p }) => `${ts},${gpu},${p},`);
  const badLine = fc.constantFrom('x,0,1,', '1793534400100,0,,', '1,2', '1793534400100,-1,5,', '17935344001000000,0,1,1', '1793534400100,0,1e999,');
  fc.assert(
    fc.property(fc.array(fc.oneof(goodLine, badLine), { maxLength: 60 }), (lines) => {
      const trace = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', ...lines].join('\n'));
      assert.equal(trace.samples.length + trace.errorCount, lines.length);
      assert.equal(trace.errors.length, Math.min(trace.errorCount, 100));
      const last = new Map<string, number>();
      for (const s of trace.samples.toArray()) {
        assert.ok(s.timestampMs > (last.get(s.gpuUuid) ?? -Infinity));
        last.set(s.gpuUuid, s.timestampMs);
      }
      for (const e of trace.errors) assert.ok(e.line >= 2 && e.line <= lines.length + 1 && e.message.length > 0);
    }),
    { numRuns: 200 },
  );
});

test('a long trace parses in one linear pass (timing printed, not asserted)', () => {
  const lines = ['timestamp, index, uuid, power.draw [W], power.draw.instant [W]'];
  const t0 = Date.UTC(2026, 10, 1);
  for (let i = 0; i < 50_000; i++) {
    const d = new Date(t0 + Math.floor(i / 8) * 100).toISOString();
    lines.push(`${d.slice(0, 10).replaceAll('-', '/')} ${d.slice(11, 23)}, ${i % 8}, GPU-${i % 8}, 300.00 W, ${(300 + (i % 50)).toFixed(2)} W`);
  }
  const text = lines.join('\n');
  const started = performance.now();
  const trace = parsePowerTrace(text);
  const ms = performance.now() - started;
  console.log(`  nvidia-smi trace: ${lines.length - 1} lines in ${ms.toFixed(0)} ms (${Math.round((lines.length - 1) / (ms / 1000)).toLocaleString('en')} lines/s)`);
  assert.equal(trace.samples.length, 50_000);
  assert.deepEqual(trace.errors, []);
});

test('a simulated run written as a plain trace reads back identical, still labelled simulated', () => {
  const t0 = Date.UTC(2026, 10, 1, 12);
  const node = new SimulatedGpuNode({
    gpuType: 'H100', gpuCount: 3, startMs: t0, seed: 4, noise: { powerStdW: 8 },
    replicas: [{ name: 's', model: 'm', tier: 'small', paramsB: 8, gpus: [0, 1] }],
    inject: { dropouts: [{ gpu: 2, fromMs: 500, toMs: 900 }] },
  });
  const samples: PowerSample[] = [];
  node.attach((batch) => samples.push(...batch), () => undefined);
  for (let i = 0; i < 20; i++) node.submit({ requestId: `r${i}`, replica: 's', promptTokens: 500, cachedTokens: 0, maxCompletionTokens: 100, atMs: t0 + i * 50 });
  node.advanceTo(t0 + 2000);
  const text = formatPlainTrace(samples);
  assert.match(text, /^timestamp_ms,gpu,power_w,energy_j,simulated\n/);
  const back = parsePowerTrace(text);
  assert.deepEqual(back.errors, []);
  assert.deepEqual(back.samples.toArray(), samples.map(({ powerAveraged: _averaged, ...rest }) => rest));
  assert.ok(back.notes.some((n) => /marks simulated samples/.test(n)));
  // Without simulated samples the header is exactly the documented one.
  assert.equal(formatPlainTrace([{ ...samples[0], simulated: false } as PowerSample]).split('\n')[0], 'timestamp_ms,gpu,power_w,energy_j');
  assert.match(parsePowerTrace('timestamp_ms,gpu,power_w,simulated\n1793534400100,0,1,yes\n').errors[0]?.message ?? '', /^simulated: expected 1, 0 or empty/);
});

test('plain trace round trip keeps the GPU index and the averaging label of GPUs named by UUID', () => {
  const t = 1_800_000_000_000;
  const samples: PowerSample[] = [
    { timestampMs: epochMs(t), gpuUuid: 'GPU-b', gpuIndex: 3, powerW: watts(300), energyJ: joules(10), powerAveraged: true },
    { timestampMs: epochMs(t), gpuUuid: 'GPU-a', gpuIndex: 5, powerW: watts(200), energyJ: null, powerAveraged: false },
    { timestampMs: epochMs(t + 100), gpuUuid: 'GPU-b', gpuIndex: 3, powerW: watts(310), energyJ: joules(40), powerAveraged: true },
    { timestampMs: epochMs(t + 100), gpuUuid: 'GPU-a', gpuIndex: 5, powerW: null, energyJ: joules(12) },
  ];
  const text = formatPlainTrace(samples);
  assert.match(text, /^timestamp_ms,gpu,power_w,energy_j,gpu_index,power_averaged\n/);
  const back = parsePowerTrace(text);
  assert.deepEqual(back.errors, []);
  assert.deepEqual(back.samples.toArray(), samples);
  assert.deepEqual(back.gpus.map((g) => [g.index, g.uuid]), [[3, 'GPU-b'], [5, 'GPU-a']]);
  // Indices the reader would give anyway and no averaged power: the documented four columns, nothing lost.
  const plain = samples.map((s, i) => ({ ...s, gpuIndex: i % 2, powerAveraged: false }));
  assert.equal(formatPlainTrace(plain).split('\n')[0], 'timestamp_ms,gpu,power_w,energy_j');
  assert.deepEqual(parsePowerTrace(formatPlainTrace(plain)).samples.toArray().map((s) => [s.gpuUuid, s.gpuIndex]), plain.map((s) => [s.gpuUuid, s.gpuIndex]));
  // Bad values in the new columns are reported like any other.
  const bad = parsePowerTrace('timestamp_ms,gpu,power_w,energy_j,gpu_index,power_averaged\n1800000000000,GPU-a,1,,x,\n1800000000000,2,1,,3,\n1800000000000,GPU-c,1,,4,yes\n');
  assert.deepEqual(bad.errors.map((e) => e.message), [
    'gpu_index: not a GPU index 0..1023 ("x")',
    'gpu_index: 3 disagrees with gpu 2',
    'power_averaged: expected 1, 0 or empty ("yes")',
  ]);
});

test('a line earlier than its GPU\'s previous line is an error naming the step, never sorted in', () => {
  const t = 1_800_000_000_000;
  // The counter says 400 J from 0 to 3 s; sorting line 5 in would fake a reset and integrate 550 J.
  const text = [
    'timestamp_ms,gpu,power_w,energy_j',
    `${t},0,100,10`,
    `${t + 1000},0,100,110`,
    `${t + 2000},0,100,210`,
    `${t + 1500},0,100,310`, // 5: half a second back
    `${t + 1200},1,50,`, // 6: another GPU, earlier than line 5 in time: fine
    `${t + 3000},0,100,410`,
  ].join('\n');
  const trace = parsePowerTrace(text);
  assert.equal(trace.errors.length, 1, JSON.stringify(trace.errors));
  assert.equal(trace.errors[0]?.line, 5);
  assert.match(trace.errors[0]?.message ?? '', /^timestamp goes back 0\.5 s for GPU 0: .*T08:00:01\.500Z after .*T08:00:02\.000Z on line 4; not integrated across/);
  assert.deepEqual(trace.samples.toArray().map((s) => [s.timestampMs - t, s.gpuIndex, s.energyJ]), [[0, 0, 10], [1000, 0, 110], [1200, 1, null], [2000, 0, 210], [3000, 0, 410]]);
  const timeline = buildEnergyTimeline(trace.samples.toArray().filter((s) => s.gpuIndex === 0), { samplePeriodMs: 1000, maxAttributableGapMs: 60_000 });
  assert.equal(timeline.intervals.reduce((a, i) => a + i.energyJ, 0), 400);
  assert.ok(timeline.intervals.every((i) => !i.counterReset));
});

test('a GPU named by its stand-in UUID before its index is one GPU: its checks hold across both names', async () => {
  const t = 1_800_000_000_000;
  // `GPU-index-0` is what a trace without UUIDs calls GPU 0 (and what tokenwatt writes back for it).
  const text = [
    'timestamp_ms,gpu,power_w,energy_j',
    `${t},GPU-index-0,100,`,
    `${t},0,300,`, // 3: a second sample of GPU 0 at one instant
    `${t + 100},0,300,`,
    `${t + 50},GPU-index-0,100,`, // 5: back in time for GPU 0
    `${t + 200},GPU-index-0,100,`,
    `${t + 300},0,100,`,
  ].join('\n');
  const trace = parsePowerTrace(text);
  assert.deepEqual(trace.errors.map((e) => [e.line, e.message.split(':')[0]]), [[3, 'second sample of GPU 0 at 2027-01-15T08'], [5, 'timestamp goes back 0.05 s for GPU 0']]);
  assert.deepEqual(trace.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-index-0']]);
  assert.deepEqual(trace.samples.toArray().map((s) => [s.timestampMs - t, s.gpuIndex, s.gpuUuid]), [
    [0, 0, 'GPU-index-0'], [100, 0, 'GPU-index-0'], [200, 0, 'GPU-index-0'], [300, 0, 'GPU-index-0'],
  ]);
  // Replayed, its samples are 100 ms apart (before, two GPUs under one UUID made it 200 ms).
  const replay = new ReplayPowerSource({ path: 'two-names.csv', readFile: async () => text });
  await replay.init();
  assert.equal(replay.quality().samplePeriodMs, 100);
  // A UUID that only looks like a stand-in stays a UUID.
  const other = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', `${t},GPU-index-07,100,`, `${t},7,100,`].join('\n'));
  assert.deepEqual(other.errors, []);
  assert.deepEqual(other.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-index-07'], [7, 'GPU-index-7']]);
});

test('an nvidia-smi capture across a DST fall-back: the repeated hour is refused line by line, not interleaved', () => {
  // US/Eastern host: 01:00:00-01:00:59 EDT, then the clock falls back and 01:00:00.5-01:00:59.5 EST follows.
  const lines = ['timestamp, index, uuid, power.draw.instant [W]'];
  for (const frac of ['000', '500']) for (let s = 0; s < 60; s++) lines.push(`2026/11/01 01:00:${String(s).padStart(2, '0')}.${frac}, 0, GPU-aaaa, 300.00 W`);
  const trace = parsePowerTrace(lines.join('\n'), { nvidiaSmiUtcOffsetMinutes: -240 });
  // Every EST line but the last is earlier than the last EDT one (01:00:59.000); the last is 0.5 s after it.
  assert.equal(trace.samples.length, 61);
  assert.deepEqual(trace.errors.map((e) => e.line), Array.from({ length: 59 }, (_, k) => 62 + k));
  assert.equal(
    trace.errors[0]?.message,
    'timestamp goes back 58.5 s for GPU 0: 2026-11-01T05:00:00.500Z after 2026-11-01T05:00:59.000Z on line 61; not integrated across (a clock step, or a capture across a DST fall-back: give the right UTC offset, or put the captures in time order)',
  );
  assert.match(trace.errors[58]?.message ?? '', /^timestamp goes back 0\.5 s for GPU 0: .* on line 61;/);
});

test('captures concatenated out of order are put in time order only when they do not overlap and the counter confirms it', () => {
  const t = 1_800_000_000_000;
  const block = (from: number, j0: number | null) => [0, 1, 2].flatMap((k) => [0, 1].map((g) => `${t + from + k * 100},${g},300,${j0 === null ? '' : j0 + g * 1000 + k * 30}`));
  const header = 'timestamp_ms,gpu,power_w,energy_j';
  // The later capture first (lines 2-7), then the earlier one (lines 8-13), the header repeated between.
  const concatenated = [header, ...block(60_000, 5000), header, ...block(0, 100)].join('\n');
  const trace = parsePowerTrace(concatenated);
  assert.deepEqual(trace.errors, []);
  assert.deepEqual(trace.samples.toArray().filter((s) => s.gpuIndex === 0).map((s) => [s.timestampMs - t, s.energyJ]), [[0, 100], [100, 130], [200, 160], [60_000, 5000], [60_100, 5030], [60_200, 5060]]);
  assert.ok(trace.notes.some((n) => /put in time order \(GPU 0: 2 blocks from line 9; GPU 1: 2 blocks from line 10\)/.test(n)), trace.notes.join('\n'));
  // Without a counter nothing confirms the order (a DST shift of under an hour looks the same): errors.
  const powerOnly = parsePowerTrace([header, ...block(60_000, null), header, ...block(0, null)].join('\n'));
  assert.deepEqual(powerOnly.errors.map((e) => e.line), [9, 10, 11, 12, 13, 14]);
  assert.match(powerOnly.errors[0]?.message ?? '', /^timestamp goes back 60\.2 s for GPU 0/);
  // A counter that would go back at the seam once in order: errors too.
  const backwards = parsePowerTrace([header, ...block(60_000, 100), header, ...block(0, 5000)].join('\n'));
  assert.deepEqual(backwards.errors.map((e) => e.line), [9, 10, 11, 12, 13, 14]);
  // Overlapping blocks: errors.
  const overlapping = parsePowerTrace([header, ...block(150, 5000), ...block(0, 100)].join('\n'));
  assert.deepEqual(overlapping.errors.map((e) => e.line), [8, 9, 10, 11, 12, 13]);
});

test('energy_j written in millijoules is refused line by line, saying it looks like mJ', () => {
  const t = 1_800_000_000_000;
  // 10 Hz, 300 W, the counter rising 30,000 per 100 ms: NVML's mJ copied without dividing by 1000.
  const lines = ['timestamp_ms,gpu,power_w,energy_j', ...Array.from({ length: 6 }, (_, k) => `${t + k * 100},0,300,${5e9 + k * 30_000}`)];
  const trace = parsePowerTrace(lines.join('\n'));
  assert.equal(trace.samples.length, 1);
  assert.deepEqual(trace.errors.map((e) => e.line), [3, 4, 5, 6, 7]);
  assert.equal(
    trace.errors[0]?.message,
    "energy_j: counter rises 30000 in 100 ms since line 2, a mean of 300000 W (above 5000 W): 1000x power_w (300 W): energy_j looks like millijoules (NVML's unit); the trace wants joules",
  );
  assert.match(trace.errors[4]?.message ?? '', /^energy_j: counter rises 150000 in 500 ms since line 2/);
  // No power to compare with: still refused, the reason given.
  const energyOnly = parsePowerTrace(`timestamp_ms,gpu,energy_j\n${t},0,1000000\n${t + 1000},0,1300000\n`);
  assert.match(energyOnly.errors[0]?.message ?? '', /^energy_j: counter rises 300000 in 1000 ms since line 2, a mean of 300000 W \(above 5000 W\): not a cumulative counter in joules/);
  assert.equal(energyOnly.errors[0]?.line, 3);
  // A joule counter that ticks every 100 ms, read at 100 Hz (70 J in 10 ms), and a reset: both fine.
  const ticking = parsePowerTrace(`timestamp_ms,gpu,power_w,energy_j\n${t},0,700,1000\n${t + 10},0,700,1070\n${t + 20},0,700,1070\n${t + 30},0,700,5\n`);
  assert.deepEqual(ticking.errors, []);
  assert.equal(ticking.samples.length, 4);
});

test('plain trace: the optional counter_run_start column marks where a GPU\'s counter starts a new run; written only when a sample has one', () => {
  const t = 1_800_000_000_000;
  // A simulator's counter in two processes: the second starts far above where the first ended.
  const samples: PowerSample[] = [
    { timestampMs: epochMs(t), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(300), energyJ: joules(1e6), counterRunStart: true },
    { timestampMs: epochMs(t + 1000), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(300), energyJ: joules(1e6 + 300) },
    { timestampMs: epochMs(t + 5000), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(300), energyJ: joules(4e7), counterRunStart: true },
    { timestampMs: epochMs(t + 6000), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(300), energyJ: null },
    { timestampMs: epochMs(t + 7000), gpuUuid: 'GPU-a', gpuIndex: 0, powerW: watts(300), energyJ: joules(4e7 + 600) },
  ];
  const text = formatPlainTrace(samples);
  assert.match(text, /^timestamp_ms,gpu,power_w,energy_j,counter_run_start\n/);
  const back = parsePowerTrace(text);
  assert.deepEqual(back.errors, []);
  assert.deepEqual(back.samples.toArray(), samples);
  assert.ok(back.notes.some((n) => /counter_run_start/.test(n)));
  // Read as a reset, not a climb: the trace's energy is the two runs' plus the 4 s between from power.
  const timeline = buildEnergyTimeline(back.samples.toArray(), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
  assert.deepEqual(timeline.intervals.map((i) => [i.energyJ, i.method, i.counterReset]), [[300, 'counter', false], [1200, 'integrated', true], [300, 'integrated', false], [300, 'integrated', false]]);
  // Without the column the step into the second run is no counter a board could drive: refused.
  const unmarked = parsePowerTrace(formatPlainTrace(samples.map(({ counterRunStart: _run, ...rest }) => rest)));
  assert.deepEqual(unmarked.errors.map((e) => e.line), [4, 6]);
  assert.match(unmarked.errors[0]?.message ?? '', /^energy_j: counter rises 38999700 in 4000 ms since line 3/);
  // Without a marked sample the header is the documented one; a bad value is named.
  assert.equal(formatPlainTrace(samples.map((s) => ({ ...s, counterRunStart: false }))).split('\n')[0], 'timestamp_ms,gpu,power_w,energy_j');
  const bad = parsePowerTrace(`timestamp_ms,gpu,power_w,energy_j,counter_run_start\n${t},0,1,,yes\n${t + 100},0,1,,0\n${t + 200},0,1,,\n`);
  assert.deepEqual(bad.errors.map((e) => [e.line, e.message]), [[2, 'counter_run_start: expected 1, 0 or empty ("yes")']]);
  assert.equal(bad.samples.length, 2);
});


test('plain trace: a counter_run_start line refused for its timestamp passes its mark to its GPU\'s next line', () => {
  const t = 1_800_000_000_000;
  const text = [
    'timestamp_ms,gpu,power_w,energy_j,counter_run_start',
    `${t},0,300,1000,`,
    `${t + 1000},0,300,1300,`,
    `${t + 1000},0,300,40000000,1`, // the new run's first line repeats the last timestamp: refused
    `${t + 2000},0,300,40000300,`,
    `${t + 3000},0,300,40000600,`,
    `${t},1,300,2000,`,
    `${t + 1000},1,300,2300,`,
    `${t + 500},1,300,2100,1`, // the new run's first line is stamped back in time: refused
    `${t + 2000},1,300,2150,`, // just under where the old run ended
    `${t + 3000},1,300,2450,`,
  ].join('\n');
  const trace = parsePowerTrace(`${text}\n`);
  assert.deepEqual(trace.errors.map((e) => e.line), [4, 9], 'only the two refused lines');
  const byGpu = (index: number): PowerSample[] => trace.samples.toArray().filter((s) => s.gpuIndex === index);
  for (const index of [0, 1]) {
    assert.deepEqual(byGpu(index).map((s) => s.counterRunStart === true), [false, false, true, false], `GPU ${index}: the next line starts the new run`);
    // The interval into it is a reset, from power: 300 J a second throughout, not a climb of 40 MJ
    // (refused as millijoules) nor 0 J while the counter stays under the old run's 2300 J.
    const timeline = buildEnergyTimeline(byGpu(index), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
    assert.deepEqual(timeline.intervals.map((i) => [i.energyJ, i.method, i.counterReset]), [[300, 'counter', false], [300, 'integrated', true], [300, 'counter', false]], `GPU ${index}`);
  }
});
test('plain trace: a counter_run_start line refused for a bad field passes its mark to its GPU\'s next line, or says it is lost', () => {
  const t = 1_800_000_000_000;
  const text = [
    'timestamp_ms,gpu,power_w,energy_j,counter_run_start',
    `${t},0,300,1000,`,
    `${t + 1000},0,300,1300,`,
    `${t + 2000},0,6000,40000000,1`, // the new run's first line: power_w out of range
    `${t + 3000},0,300,40000300,`,
    `${t + 4000},0,300,40000600,`,
    `${t},1,300,2000,`,
    `${t + 1000},1,300,2300,`,
    `${t + 2000},1,abc,2100,1`, // the new run's first line: power_w not a number
    `${t + 3000},1,300,2150,`, // just under where the old run ended
    `${t + 4000},1,300,2450,`,
  ].join('\n');
  const trace = parsePowerTrace(`${text}\n`);
  assert.deepEqual(trace.errors.map((e) => [e.line, e.message]), [
    [4, 'power_w: 6000 out of range 0..5000 W; its counter_run_start mark passes to the GPU\'s next line'],
    [9, 'power_w: not a number ("abc"); its counter_run_start mark passes to the GPU\'s next line'],
  ], 'only the two bad lines');
  assert.deepEqual(trace.errorsByReason, [{ reason: 'power_w: N out of range N W', count: 1 }, { reason: 'power_w: not a number', count: 1 }], 'counted under their own reasons');
  const byGpu = (index: number): PowerSample[] => trace.samples.toArray().filter((s) => s.gpuIndex === index);
  for (const index of [0, 1]) {
    assert.deepEqual(byGpu(index).map((s) => s.counterRunStart === true), [false, false, true, false], `GPU ${index}: the next line starts the new run`);
    // 300 J a second throughout: the 2 s into the new run a reset from power, not 40 MJ refused as millijoules nor 0 J as a glitch.
    const timeline = buildEnergyTimeline(byGpu(index), { samplePeriodMs: 1000, maxAttributableGapMs: 30_000 });
    assert.deepEqual(timeline.intervals.map((i) => [i.energyJ, i.method, i.counterReset]), [[300, 'counter', false], [600, 'integrated', true], [300, 'counter', false]], `GPU ${index}`);
  }

  // Where the line's GPU cannot be read, or no line of it is, the mark cannot be placed: the error says so.
  const lost = parsePowerTrace([
    'timestamp_ms,gpu,power_w,energy_j,counter_run_start',
    `${t},0,300,1000,`,
    `${t + 1000},,6000,2000,1`,
    `${t + 2000},0,6000,2000,1,extra`,
    `${t + 3000},7,6000,2000,1`,
    `${t + 4000},0,300,2200,`,
  ].join('\n'));
  assert.deepEqual(lost.errors.map((e) => [e.line, e.message]), [
    [3, 'gpu: empty; its counter_run_start mark is lost: its gpu field cannot be read'],
    [4, 'expected 5 fields, got 6; a counter_run_start mark on it is lost: its fields do not line up with the header'],
    [5, 'power_w: 6000 out of range 0..5000 W; its counter_run_start mark is lost: no line of GPU 7 is read'],
  ]);
  assert.deepEqual(lost.gpus.map((g) => g.index), [0], 'a GPU named only by a bad line is no GPU of the trace');
  assert.deepEqual(lost.samples.toArray().map((s) => s.counterRunStart === true), [false, false]);

  // Blocks out of time order whose counter continues are put in order, but not across a new run a bad line marks.
  const blocks = (mark: string): ReturnType<typeof parsePowerTrace> => parsePowerTrace([
    'timestamp_ms,gpu,power_w,energy_j,counter_run_start',
    `${t + 10_000},0,300,2000,`,
    `${t + 11_000},0,6000,2300,${mark}`,
    `${t + 12_000},0,300,2600,`,
    `${t},0,300,1000,`,
    `${t + 1000},0,300,1300,`,
  ].join('\n'));
  assert.deepEqual(blocks('').errors.map((e) => e.line), [3]);
  assert.deepEqual(blocks('1').errors.map((e) => e.line), [3, 5, 6]);
  assert.match(blocks('1').errors[1]?.message ?? '', /^timestamp goes back/);
});

test('a counter reading of 0 that the next one climbs straight back from is a glitch: the climb is no unit error', () => {
  const t = 1_800_000_000_000;
  // 300 W at 1 Hz on a 1 MJ counter, one bogus 0. The climb back (1 MJ in 1 s) was refused as
  // millijoules, and so was every line after it for 200 s (until 1 MJ from the 0 was under 5000 W).
  const lines = (energies: number[]) => ['timestamp_ms,gpu,power_w,energy_j', ...energies.map((e, k) => `${t + k * 1000},0,300,${e}`)].join('\n');
  const glitch = parsePowerTrace(lines([1e6, 1e6 + 300, 0, 1e6 + 900, 1e6 + 1200]));
  assert.deepEqual(glitch.errors, []);
  assert.deepEqual(glitch.samples.toArray().map((s) => s.energyJ), [1e6, 1e6 + 300, 0, 1e6 + 900, 1e6 + 1200]);
  // A repeat of the drop tells nothing (the timeline judges the drop by the next reading that
  // differs from it): the climb back after two 0s is no unit error either.
  assert.deepEqual(parsePowerTrace(lines([1e6, 1e6 + 300, 0, 0, 1e6 + 1200])).errors, []);
  // Nor is a climb back to just under the reading before the drop (the timeline reads it as a glitch
  // too): the reading before the drop 4 kJ high, the true readings under it for 14 s.
  const underHigh = [1e6, 1e6 + 4300, 0, ...Array.from({ length: 20 }, (_, k) => 1e6 + 900 + 300 * k)];
  assert.deepEqual(parsePowerTrace(lines(underHigh)).errors, []);
  assert.equal(parsePowerTrace(lines(underHigh)).samples.length, underHigh.length);
  // A leap from a drop to far under the reading before it is still refused; so is a millijoule counter after a drop.
  assert.deepEqual(parsePowerTrace(lines([1e6, 1e6 + 300, 0, 5e5])).errors.map((e) => e.line), [5]);
  assert.deepEqual(parsePowerTrace(lines([1e9, 1e9 + 300_000, 0, 1e9 + 900_000])).errors.map((e) => e.line), [3, 5]);
});

test('hundreds of thousands of problems found after the lines are read are reported, not a stack overflow', () => {
  const t = 1_800_000_000_000;
  // Every line after the first repeats the instant: each is a "second sample" problem found when the samples are assembled.
  const n = 200_000;
  const text = `timestamp_ms,gpu,power_w,energy_j\n${`${t},0,100,\n`.repeat(n)}`;
  const trace = parsePowerTrace(text);
  assert.equal(trace.samples.length, 1);
  assert.equal(trace.errors[0]?.line, 3);
  assert.match(trace.errors[0]?.message ?? '', /^second sample of GPU 0 at /);
});

test('bad lines: the first ones by line number are kept with their messages, every one is counted in all and by reason', () => {
  const t = 1_800_000_000_000;
  // 30,000 lines with power n/a (parse errors), then lines going back in time (found when assembling), interleaved
  // with good lines; the earliest assemble-time problem (line 4) comes before most parse errors.
  const lines = ['timestamp_ms,gpu,power_w,energy_j', `${t + 1000},0,100,`, `${t + 2000},0,100,`, `${t},0,100,`];
  for (let k = 0; k < 30_000; k++) lines.push(`${t + 3000 + k},1,n/a,`);
  for (let k = 0; k < 500; k++) lines.push(`${t + 10},0,100,`, `${t + 5000 + k},2,${k % 7},`);
  const trace = parsePowerTrace(lines.join('\n'));
  assert.equal(trace.errorCount, 30_000 + 501);
  assert.equal(trace.errors.length, MAX_KEPT_TRACE_ERRORS, 'only the first ones are kept');
  assert.deepEqual(trace.errors.map((e) => e.line), [4, ...Array.from({ length: MAX_KEPT_TRACE_ERRORS - 1 }, (_, k) => 5 + k)]);
  assert.match(trace.errors[0]?.message ?? '', /^timestamp goes back 2 s for GPU 0/);
  assert.equal(trace.errors[1]?.message, 'power_w: not a number ("n/a")');
  assert.deepEqual(trace.errorsByReason, [
    { reason: 'power_w: not a number', count: 30_000 },
    { reason: 'timestamp goes back for its GPU', count: 501 },
  ]);
  assert.equal(trace.samples.length, 2 + 500);
  // Few bad lines: all kept, in line order, and the counts agree.
  const few = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', `${t},0,1,`, `${t},0,2,`, `${t + 1},0,x,`, `${t + 2},0,1,2,3`].join('\n'));
  assert.deepEqual(few.errors.map((e) => [e.line, e.reason]), [[3, 'second sample of a GPU at one instant'], [4, 'power_w: not a number'], [5, 'expected N fields, got N']]);
  assert.equal(few.errorCount, 3);
  assert.equal(few.errorsByReason.reduce((a, r) => a + r.count, 0), 3);
});

test('GPU identity does not depend on line order: a line giving only the index is the GPU another line binds to that index', () => {
  const t = 1_767_225_600_000;
  const energy = (trace: ReturnType<typeof parsePowerTrace>): number =>
    trace.gpus.reduce((sum, g) => sum + buildEnergyTimeline(trace.samples.toArray().filter((x) => x.gpuUuid === g.uuid), { samplePeriodMs: 1000, maxAttributableGapMs: 60_000 }).intervals.reduce((a, i) => a + i.energyJ, 0), 0);
  // nvidia-smi: the UUID reads [Unknown Error] on the first line, before any line binds index 0 to GPU-aaaa.
  const smi = (uuids: string[]) => ['timestamp, index, uuid, power.draw [W]', ...uuids.map((u, k) => `2026/01/01 00:00:0${k}.000, 0, ${u}, 100.00 W`)].join('\n');
  // Plain: `0` on some lines, GPU-aaaa with gpu_index 0 on others; and the stand-in GPU-index-0 (with or without its index).
  const plain = (gpus: [string, string][]) => ['timestamp_ms,gpu,power_w,energy_j,gpu_index', ...gpus.map(([g, i], k) => `${t + k * 1000},${g},100,,${i}`)].join('\n');
  const bound: [string, string] = ['GPU-aaaa', '0'];
  const index: [string, string] = ['0', ''];
  const standIn: [string, string] = ['GPU-index-0', ''];
  const standInAt: [string, string] = ['GPU-index-0', '0'];
  const cases = [
    smi(['[Unknown Error]', 'GPU-aaaa', 'GPU-aaaa', '[Unknown Error]', 'GPU-aaaa']),
    smi(['GPU-aaaa', 'GPU-aaaa', 'GPU-aaaa', '[Unknown Error]', 'GPU-aaaa']),
    plain([index, bound, index, bound, index]),
    plain([bound, index, bound, index, bound]),
    plain([standIn, standInAt, bound, index, bound]),
  ];
  for (const text of cases) {
    const trace = parsePowerTrace(text);
    assert.deepEqual(trace.errors, [], text);
    assert.deepEqual(trace.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-aaaa']], text);
    assert.equal(trace.samples.length, 5, text);
    assert.equal(energy(trace), 400, text); // 100 W for 4 s on one board (two GPUs made it 600 J)
  }
});

test('two UUIDs at one index, one UUID at two indices, UUIDs differing only in case: the later one\'s lines are errors naming the first', () => {
  const smi = (rows: [number, string][]) => ['timestamp, index, uuid, power.draw [W]', ...rows.map(([i, u], k) => `2026/01/01 00:00:0${Math.floor(k / 2)}.000, ${i}, ${u}, 100.00 W`)].join('\n');
  const twoAtOne = parsePowerTrace(smi([[0, 'GPU-aaaa'], [0, 'GPU-bbbb'], [0, 'GPU-aaaa'], [0, 'GPU-bbbb']]));
  assert.deepEqual(twoAtOne.errors.map((e) => [e.line, e.message]), [3, 5].map((line) => [line, 'gpu: GPU-bbbb at index 0, but index 0 is GPU-aaaa on line 2: one index cannot be two GPUs (captures of two machines or boots joined?)']));
  assert.deepEqual(twoAtOne.errorsByReason, [{ reason: 'gpu: two UUIDs at one index', count: 2 }]);
  assert.deepEqual(twoAtOne.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-aaaa']]);
  // The record context built from the trace resolves index 0 and GPU-aaaa to the one GPU, and GPU-bbbb to none.
  const context = new NodeRecordContext({ gpus: twoAtOne.gpus, replicas: [], tiers: {}, retainedWindowMs: 1, futureSkewMs: 1 });
  assert.deepEqual(['0', 'GPU-aaaa', 'gpu-AAAA', 'GPU-bbbb'].map((ref) => context.resolveGpu(ref)), ['GPU-aaaa', 'GPU-aaaa', 'GPU-aaaa', undefined]);

  const oneAtTwo = parsePowerTrace(smi([[0, 'GPU-aaaa'], [1, 'GPU-bbbb'], [1, 'GPU-aaaa'], [1, 'GPU-bbbb']]));
  assert.deepEqual(oneAtTwo.errors.map((e) => [e.line, e.message]), [[4, 'gpu: GPU-aaaa at index 1, but at index 0 on line 2: one GPU cannot have two indices']]);
  assert.deepEqual(oneAtTwo.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-aaaa'], [1, 'GPU-bbbb']]);

  const t = 1_767_225_600_000;
  const byCase = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', `${t},GPU-abc,100,`, `${t},GPU-ABC,500,`, `${t + 2000},GPU-abc,100,`, `${t + 2000},GPU-ABC,500,`].join('\n'));
  assert.deepEqual(byCase.errors.map((e) => [e.line, e.message]), [3, 5].map((line) => [line, 'gpu: GPU-ABC differs only in case from GPU-abc on line 2: one GPU or two? (write each UUID one way)']));
  assert.deepEqual(byCase.gpus.map((g) => [g.index, g.uuid]), [[0, 'GPU-abc']]);
});

test('more than 1024 distinct GPUs is not a node: the lines of the GPUs beyond the limit are errors naming it', () => {
  const t = 1_767_225_600_000;
  // A column of host names read as UUIDs: 1100 "GPUs", two samples each.
  const lines = ['timestamp_ms,gpu,power_w,energy_j'];
  for (const dt of [0, 1000]) for (let h = 0; h < 1100; h++) lines.push(`${t + dt},host-${h},100,`);
  const trace = parsePowerTrace(lines.join('\n'));
  assert.equal(MAX_TRACE_GPUS, 1024);
  assert.equal(trace.gpus.length, 1024);
  assert.equal(trace.errorCount, 2 * 76);
  assert.equal(trace.errors[0]?.line, 2 + 1024);
  assert.equal(trace.errors[0]?.message, 'gpu: host-1024 would be GPU number 1025 of the trace; at most 1024 distinct GPUs are read (is the gpu column an index or a GPU UUID?)');
  assert.deepEqual(trace.errorsByReason, [{ reason: 'gpu: more than 1024 distinct GPUs', count: 152 }]);
  assert.equal(trace.samples.length, 2 * 1024);
});

test('a GPU with a single sample is named in a note: no energy can be measured from it', () => {
  const t = 1_767_225_600_000;
  const trace = parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', `${t},0,100,`, `${t},GPU-lonely,100,`, `${t + 1000},0,100,`].join('\n'));
  assert.deepEqual(trace.errors, []);
  assert.ok(trace.notes.includes('1 GPU(s) with a single sample: no energy is measured from one sample (GPU 1 (GPU-lonely))'), trace.notes.join('\n'));
  assert.ok(!parsePowerTrace(['timestamp_ms,gpu,power_w,energy_j', `${t},0,100,`, `${t + 1000},0,100,`].join('\n')).notes.some((n) => /single sample/.test(n)));
});
