#!/usr/bin/env node
// A stand-in for `nvidia-smi` that replays a real capture (test/fixtures/nvidia-smi/*.txt).
//
// Answers, from the capture: --version, --help-query-gpu, -L, and
// --query-gpu=F1,F2,... --format=csv[,noheader][,nounits] [-lms N | --loop-ms=N | -l N]
// with the captured values of the requested fields. Looping, it alternates the capture's idle and
// load rows and stamps each line with the current local time, as nvidia-smi does.
//
// Environment:
//   FAKE_NVIDIA_SMI_CAPTURE   path of the capture to replay (required)
//   FAKE_NVIDIA_SMI_MODE      replay (default) | garbage | hang | exit | fail | hang-help
//   FAKE_NVIDIA_SMI_AFTER     loop iterations replayed before the mode starts (default 3)
//   FAKE_NVIDIA_SMI_GPUS      replicate the captured GPU as N GPUs (index, UUID and MIG device UUIDs adjusted)
//   FAKE_NVIDIA_SMI_GPUS_FILE a file holding that N, read at each command and each loop tick (when
//                             it exists): GPUs added or gone while running, in the list and the stream
//   FAKE_NVIDIA_SMI_STREAM_FIXED  "1": a loop keeps the GPUs it started with (a driver whose running
//                             stream does not enumerate again): one the file drops is not printed by
//                             that loop again, even once the file lists it again (a stale handle);
//                             one-shot commands still read the file
//   FAKE_NVIDIA_SMI_DROP      comma-separated fields --help-query-gpu must not offer (older drivers)
//   FAKE_NVIDIA_SMI_SET       "field=value;field=value": override captured values (e.g. ERR!)
import { existsSync, readFileSync } from 'node:fs';
import { capturedQueryTable, findSection, readCapture } from './nvidia-smi-capture.mjs';

const env = process.env;
const capturePath = env.FAKE_NVIDIA_SMI_CAPTURE;
if (!capturePath) {
  process.stderr.write('fake-nvidia-smi: FAKE_NVIDIA_SMI_CAPTURE is not set\n');
  process.exit(2);
}
const sections = readCapture(readFileSync(capturePath, 'utf8'));
const mode = env.FAKE_NVIDIA_SMI_MODE ?? 'replay';
const after = Number(env.FAKE_NVIDIA_SMI_AFTER ?? 3);
const gpuCountFile = env.FAKE_NVIDIA_SMI_GPUS_FILE;
const gpuCount = () => {
  if (gpuCountFile && existsSync(gpuCountFile)) return Number(readFileSync(gpuCountFile, 'utf8').trim());
  return Number(env.FAKE_NVIDIA_SMI_GPUS ?? 1);
};
const dropped = new Set((env.FAKE_NVIDIA_SMI_DROP ?? '').split(',').filter(Boolean));
const overrides = new Map(
  (env.FAKE_NVIDIA_SMI_SET ?? '').split(';').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const ALIASES = { gpu_name: 'name', gpu_uuid: 'uuid', gpu_serial: 'serial', gpu_bus_id: 'pci.bus_id', 'gpu.power.draw.instant': 'power.draw.instant', 'gpu.power.draw.average': 'power.draw.average' };

const args = process.argv.slice(2);
const say = (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const section = (phase, prefix) => findSection(sections, phase, prefix)?.body ?? '';

if (mode === 'fail') {
  say("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.");
  process.exit(9);
}
if (args.includes('--version')) {
  say(section('capabilities', 'version'));
} else if (args.includes('--help-query-gpu')) {
  if (mode === 'hang-help') setInterval(() => undefined, 60_000);
  else say(helpWithout(section('capabilities', 'help-query-gpu'), dropped));
} else if (args.includes('-L') || args.includes('--list-gpus')) {
  say(replicateList(section('capabilities', 'list')));
} else {
  const query = args.find((a) => a.startsWith('--query-gpu='));
  const format = args.find((a) => a.startsWith('--format='));
  if (!query || !format) {
    process.stderr.write(`fake-nvidia-smi: unsupported arguments: ${args.join(' ')}\n`);
    process.exit(2);
  }
  queryGpu(query.slice('--query-gpu='.length).split(','), format.slice('--format='.length).split(','));
}

function helpWithout(help, fields) {
  if (fields.size === 0) return help;
  // Drop each "name" entry with its description paragraph.
  return help.split('\n\n').filter((para) => {
    const names = [...para.matchAll(/^"([^"]+)"/gm)].map((m) => m[1]);
    return !names.some((n) => fields.has(n));
  }).join('\n\n');
}

function replicateList(list) {
  const n = gpuCount();
  if (n <= 1) return list;
  const out = [];
  // Each GPU's MIG devices get UUIDs of their own (GPU 0's are the captured ones).
  for (let i = 0; i < n; i++) {
    out.push(list.replace(/^GPU 0:/m, `GPU ${i}:`).replace(/GPU-00000000/g, `GPU-${String(i).padStart(8, '0')}`)
      .replace(/(MIG-[0-9a-f]{8})-0000-/g, `$1-${String(i).padStart(4, '0')}-`));
  }
  return out.join('\n');
}

function loopPeriodMs() {
  const i = args.findIndex((a) => a === '-lms' || a === '-l');
  if (i >= 0) return Number(args[i + 1]) * (args[i] === '-l' ? 1000 : 1);
  const long = args.find((a) => a.startsWith('--loop-ms='));
  return long ? Number(long.slice('--loop-ms='.length)) : null;
}

function stamp(date) {
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${date.getFullYear()}/${p(date.getMonth() + 1)}/${p(date.getDate())} ${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}.${p(date.getMilliseconds(), 3)}`;
}

function queryGpu(fields, formats) {
  const tables = ['idle', 'load'].map((phase) => capturedQueryTable(sections, phase)).filter(Boolean);
  const table = tables[0];
  const columns = fields.map((f) => {
    const name = ALIASES[f] ?? f;
    const index = table.columns.indexOf(name);
    if (index < 0) {
      say(`Field "${f}" is not a valid field to query.`);
      process.exit(2);
    }
    return { name, index, unit: table.units[index] };
  });
  const nounits = formats.includes('nounits');
  if (!formats.includes('noheader')) say(columns.map((c) => table.headers[c.index]).join(', '));
  const line = (iteration, gpu) => {
    const row = tables[iteration % tables.length].rows[0];
    return columns.map((c) => {
      let value = overrides.get(c.name) ?? row[c.index] ?? '';
      if (c.name === 'timestamp') value = stamp(new Date());
      if (c.name === 'index') value = String(gpu);
      if (c.name === 'uuid') value = value.replace(/^GPU-00000000/, `GPU-${String(gpu).padStart(8, '0')}`);
      if (nounits && c.unit && value.endsWith(` ${c.unit}`)) value = value.slice(0, -(c.unit.length + 1));
      return value;
    }).join(', ');
  };
  const period = loopPeriodMs();
  if (period === null) {
    for (let gpu = 0, n = gpuCount(); gpu < n; gpu++) say(line(0, gpu));
    return;
  }
  let iteration = 0;
  const fixedCount = env.FAKE_NVIDIA_SMI_STREAM_FIXED === '1' ? gpuCount() : null;
  /** GPUs a fixed loop saw go: it holds their old handles and never prints them again. */
  const gone = new Set();
  const tick = () => {
    if (iteration >= after && mode !== 'replay') {
      if (mode === 'hang') return; // alive, silent (the interval keeps the process up)
      if (mode === 'exit') {
        process.stderr.write('Unable to determine the device handle for GPU0000:00:09.0: Unknown Error\n');
        process.exit(1);
      }
      if (mode === 'garbage') {
        say(['%%%% garbage %%%%', 'GPU-00000000, 12', `${stamp(new Date())}, x, y, z, w, v`, '\u0000\u0001binary'][iteration % 4]);
        iteration++;
        return;
      }
    }
    const listed = gpuCount();
    for (let gpu = 0, n = fixedCount ?? listed; gpu < n; gpu++) {
      if (gpu >= listed) gone.add(gpu);
      if (!gone.has(gpu)) say(line(iteration, gpu));
    }
    iteration++;
  };
  tick();
  setInterval(tick, period);
}
