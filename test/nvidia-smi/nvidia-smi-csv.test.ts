import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  NVIDIA_SMI_STREAM_FIELDS, parseNvidiaSmiHeader, parseNvidiaSmiLog, parseNvidiaSmiPowerLine, parseNvidiaSmiTimestamp,
} from '../../collectors/nvidia-smi/nvidia-smi-csv.js';
import { chooseInventoryFields, chooseStreamFields, parseHelpQueryGpu } from '../../collectors/nvidia-smi/nvidia-smi-fields.js';
import { parseInventory, parseMigList, powerDrawAveragedFor } from '../../collectors/nvidia-smi/nvidia-smi-inventory.js';
import { capturedCell, capturedWatts, findSection, linuxCaptures } from '../fakes/fake-nvidia-smi.js';

const captures = linuxCaptures();

test('there are Linux captures to test against, MIG ones included', () => {
  assert.ok(captures.length >= 8, `${captures.length} captures`);
  assert.ok(captures.some((c) => c.file.includes('mig')));
});

for (const capture of captures) {
  test(`${capture.file}: the captured --query-gpu csv (header with units) parses with the power the capture shows`, () => {
    for (const phase of ['idle', 'load'] as const) {
      const section = findSection(capture.sections, phase, 'query-gpu');
      assert.ok(section, `${phase} query-gpu section`);
      const [header, row] = section.body.split('\n');
      assert.ok(header && row);
      const parsed = parseNvidiaSmiPowerLine(row, parseNvidiaSmiHeader(header), { zone: 'utc' });
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      assert.equal(parsed.row.powerW, capturedWatts(capture.sections, phase, 'power.draw.instant'));
      assert.equal(parsed.row.powerField, 'power.draw.instant');
      assert.equal(parsed.row.powerAveraged, false);
      assert.equal(parsed.row.gpuUuid, capturedCell(capture.sections, phase, 'uuid'));
      assert.equal(parsed.row.gpuIndex, Number(capturedCell(capture.sections, phase, 'index')));
      assert.equal(parsed.row.timestampMs, parseNvidiaSmiTimestamp(capturedCell(capture.sections, phase, 'timestamp'), 'utc'));
      assert.deepEqual(parsed.row.issues, []);
    }
  });

  test(`${capture.file}: --help-query-gpu offers what the power stream needs`, () => {
    const help = findSection(capture.sections, 'capabilities', 'help-query-gpu');
    assert.ok(help);
    const offered = parseHelpQueryGpu(help.body);
    assert.ok(offered.has('gpu.power.draw.instant'), 'aliases are read too');
    const choice = chooseStreamFields(offered);
    assert.ok(choice.ok);
    assert.deepEqual(choice.fields, NVIDIA_SMI_STREAM_FIELDS);
    assert.deepEqual(chooseInventoryFields(offered), ['index', 'uuid', 'name', 'enforced.power.limit', 'mig.mode.current', 'compute_cap']);
  });
}

test('-L of the MIG captures gives the MIG device UUIDs of their GPU', () => {
  const expected = new Map([['h100-mig', 4], ['h200-mig', 5]]);
  for (const capture of captures) {
    const list = findSection(capture.sections, 'capabilities', 'list');
    assert.ok(list);
    const migs = parseMigList(list.body);
    const uuid = capturedCell(capture.sections, 'idle', 'uuid');
    const count = [...expected].find(([k]) => capture.file.includes(k))?.[1] ?? 0;
    assert.equal(migs.get(uuid)?.length ?? 0, count, capture.file);
    for (const m of migs.get(uuid) ?? []) assert.match(m, /^MIG-[0-9a-f-]+$/);
  }
});

test('a driver without power.draw.instant streams power.draw; one without timestamp or power is refused', () => {
  assert.deepEqual(chooseStreamFields(new Set(['timestamp', 'index', 'uuid', 'power.draw'])), { ok: true, fields: ['timestamp', 'index', 'uuid', 'power.draw'], instantAvailable: false });
  const noPower = chooseStreamFields(new Set(['timestamp', 'index', 'uuid']));
  assert.equal(noPower.ok, false);
  assert.match(noPower.ok ? '' : noPower.reason, /no power.draw/);
  const noStamp = chooseStreamFields(new Set(['index', 'uuid', 'power.draw']));
  assert.match(noStamp.ok ? '' : noStamp.reason, /timestamp/);
});

const columns = NVIDIA_SMI_STREAM_FIELDS;
const UUID = 'GPU-0a1b2c3d-0000-1111-2222-333344445555';
const line = (instant: string, average: string, draw: string) => `2026/07/14 09:00:44.579, 3, ${UUID}, ${instant}, ${average}, ${draw}`;

test('markers are handled per field: a missing instant value falls back to power.draw, labelled as averaged when the GPU averages', () => {
  const hopper = parseNvidiaSmiPowerLine(line('[N/A]', '433.78', '433.78'), columns);
  assert.ok(hopper.ok);
  assert.equal(hopper.row.powerW, 433.78);
  assert.equal(hopper.row.powerField, 'power.draw');
  assert.equal(hopper.row.powerAveraged, true);
  assert.deepEqual(hopper.row.issues, [{ field: 'power.draw.instant', marker: '[N/A]' }]);

  const turing = parseNvidiaSmiPowerLine(line('ERR!', '[N/A]', '111.50'), columns);
  assert.ok(turing.ok);
  assert.equal(turing.row.powerW, 111.5);
  assert.equal(turing.row.powerAveraged, false, 'power.draw.average [N/A]: not an averaging GPU');
  assert.deepEqual(turing.row.issues, [{ field: 'power.draw.instant', marker: 'ERR!' }]);

  const none = parseNvidiaSmiPowerLine(line('[Not Supported]', '[N/A]', 'ERR!'), columns);
  assert.ok(none.ok, 'the line still identifies the GPU');
  assert.equal(none.row.powerW, null);
  assert.deepEqual(none.row.issues.map((i) => i.field), ['power.draw.instant', 'power.draw', 'power.draw.average']);

  const unknown = parseNvidiaSmiPowerLine('2026/07/14 09:00:44.579, 0, ' + UUID + ', 200.5', ['timestamp', 'index', 'uuid', 'power.draw']);
  assert.ok(unknown.ok);
  assert.equal(unknown.row.powerAveraged, true, 'unknown architecture: never claim instantaneous');
});

test('garbage lines are refused with the field and the reason', () => {
  const cases: [string, RegExp][] = [
    ['%%%% garbage %%%%', /expected 6 comma-separated fields/],
    ['GPU-00000000, 12', /expected 6/],
    [`2026/07/14 25:00:44.579, 0, ${UUID}, 1, 2, 3`, /timestamp/],
    [`yesterday, 0, ${UUID}, 1, 2, 3`, /timestamp/],
    ['2026/07/14 09:00:44.579, x, GPU-1, 1, 2, 3', /index/],
    ['2026/07/14 09:00:44.579, 0, GPU-1, 1, 2, 3', /uuid/],
    ['\u0000\u0001binary', /expected 6/],
  ];
  for (const [text, reason] of cases) {
    const parsed = parseNvidiaSmiPowerLine(text, columns);
    assert.equal(parsed.ok, false, text);
    assert.match(parsed.ok ? '' : parsed.reason, reason, text);
  }
  const implausible = parseNvidiaSmiPowerLine(line('-5', '[N/A]', '[N/A]'), columns);
  assert.ok(implausible.ok);
  assert.equal(implausible.row.powerW, null);
  assert.match(implausible.row.issues[0]?.marker ?? '', /implausible/);
});

test('timestamps: nvidia-smi format read as UTC or local time; malformed ones refused', () => {
  assert.equal(parseNvidiaSmiTimestamp('2026/07/14 09:00:44.579', 'utc'), Date.UTC(2026, 6, 14, 9, 0, 44, 579));
  assert.equal(parseNvidiaSmiTimestamp('2026/07/14 09:00:44.5', 'utc'), Date.UTC(2026, 6, 14, 9, 0, 44, 500));
  assert.equal(parseNvidiaSmiTimestamp('2026/07/14 09:00:44.579', 'local'), new Date(2026, 6, 14, 9, 0, 44, 579).getTime());
  for (const bad of ['2026-07-14 09:00:44.579', '2026/13/14 09:00:44', '2026/07/14', '']) assert.equal(parseNvidiaSmiTimestamp(bad, 'utc'), null, bad);
});

test('property: any well-formed noheader,nounits line parses back to its values', () => {
  const uuidHex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
  fc.assert(fc.property(
    fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) }),
    fc.integer({ min: 0, max: 63 }),
    fc.tuple(uuidHex(8), uuidHex(4), uuidHex(4), uuidHex(4), uuidHex(12)).map((p) => `GPU-${p.join('-')}`),
    fc.integer({ min: 0, max: 150_000 }).map((cw) => cw / 100),
    (ms, index, uuid, watts) => {
      const d = new Date(ms);
      const p = (n: number, w = 2) => String(n).padStart(w, '0');
      const stamp = `${d.getUTCFullYear()}/${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
      const parsed = parseNvidiaSmiPowerLine(`${stamp}, ${index}, ${uuid}, ${watts.toFixed(2)}, [N/A], ${watts.toFixed(2)}`, columns, { zone: 'utc' });
      return parsed.ok && parsed.row.timestampMs === ms && parsed.row.gpuIndex === index && parsed.row.gpuUuid === uuid && parsed.row.powerW === watts;
    },
  ));
});

test('a recorded -lms log parses with or without a header, bad lines reported by line number', () => {
  const noheader = [
    `2026/07/14 09:00:44.579, 0, ${UUID}, 447.35, 433.78, 433.78`,
    'NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver.',
    `2026/07/14 09:00:44.679, 0, ${UUID}, 70.72, 71.15, 71.15`,
    '',
  ].join('\n');
  const log = parseNvidiaSmiLog(noheader);
  assert.deepEqual(log.rows.map((r) => r.powerW), [447.35, 70.72]);
  assert.deepEqual(log.errors.map((e) => e.line), [2]);
  assert.equal(log.rows[1]?.timestampMs, Date.UTC(2026, 6, 14, 9, 0, 44, 679));

  const withHeader = [
    'timestamp, index, uuid, power.draw [W]',
    `2026/07/14 09:00:44.579, 0, ${UUID}, 433.78 W`,
  ].join('\n');
  const headed = parseNvidiaSmiLog(withHeader, { powerDrawAveraged: () => false });
  assert.deepEqual(headed.columns, ['timestamp', 'index', 'uuid', 'power.draw']);
  assert.equal(headed.rows[0]?.powerW, 433.78);
  assert.equal(headed.rows[0]?.powerAveraged, false);
  assert.deepEqual(headed.errors, []);
});

test('inventory lines parse per field; bad ones are reported, not dropped silently', () => {
  const fields = ['index', 'uuid', 'name', 'enforced.power.limit', 'mig.mode.current', 'compute_cap'];
  const text = [`0, ${UUID}, NVIDIA H100 80GB HBM3, 700.00, Enabled, 9.0`, `1, GPU-2, NVIDIA L40S, [N/A], [N/A], 8.9`, 'junk'].join('\n');
  const { gpus, errors } = parseInventory(text, fields);
  assert.deepEqual(gpus.map((g) => [g.index, g.name, g.powerLimitW, g.migEnabled, g.computeCapability]), [
    [0, 'NVIDIA H100 80GB HBM3', 700, true, '9.0'],
    [1, 'NVIDIA L40S', null, null, '8.9'],
  ]);
  assert.equal(errors.length, 1);
  assert.match(errors[0] ?? '', /line 3/);
  assert.deepEqual(['7.5', '8.0', '8.6', '9.0', null, 'x'].map(powerDrawAveragedFor), [false, false, true, true, true, true]);
});
