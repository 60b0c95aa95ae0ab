import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as nvmlSource from '../collectors/nvml/nvml-power-source.js';
import * as smiSource from '../collectors/nvidia-smi/nvidia-smi-power-source.js';
import type { PowerSource } from '../collectors/power-source.js';
import { installFakeNvml } from '../test/fakes/fake-nvml.js';
import { fakeNvidiaSmiBinary, linuxCaptures } from '../test/fakes/fake-nvidia-smi.js';

/**
 * Sampling overhead of the GPU power paths: 8 GPUs at 10 Hz for a fixed wall time, as CPU time of
 * this process (main thread and the NVML worker, process.cpuUsage) in % of one core, beside an
 * idle baseline of the same length. Target for NVML: <= 0.5 % of one core.
 *  - NVML: the real FFI code (koffi, worker thread, call watch) against the fake libnvidia-ml
 *    compiled from test/fakes/fake-nvml.c (its calls cost microseconds, like the real ones);
 *  - nvidia-smi: the real supervisor and parser reading a fake nvidia-smi that replays a capture
 *    for 8 GPUs; the child's own CPU (a Node script, not the real nvidia-smi) is shown apart.
 * The sources are taken from dist/ when it is built (`npm run bench` builds first): that is the
 * code a node runs, and its worker thread then runs plain JS instead of going through tsx.
 * Figures only: benchmarks never assert timings. BENCH_NVML_SECONDS sets the wall time (default 10).
 */
const GPUS = 8;
const PERIOD_MS = 100;
const TARGET_PERCENT = 0.5;

interface Measured {
  readonly percentOfCore: number;
  readonly samples: number;
  readonly childPercent: number | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU ticks (user+system) of this process's direct children, from /proc (Linux). */
function childTicks(): number | null {
  try {
    let ticks = 0;
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks;
  } catch {
    return null;
  }
}

/**
 * A worker thread that only wakes at the sampling rate, doing nothing else: what thread wake-ups
 * alone cost on this machine. `timer` sleeps in its event loop (setTimeout); `atomics` sleeps in
 * Atomics.wait, as the NVML worker does (collectors/nvml/worker-wake.ts).
 */
function bareWorker(sleep: 'timer' | 'atomics'): PowerSource {
  let worker: Worker | null = null;
  const code = sleep === 'timer'
    ? `const tick = () => setTimeout(tick, ${PERIOD_MS}); tick();`
    : `const word = new Int32Array(new SharedArrayBuffer(4)); let next = Date.now(); for (;;) { next += ${PERIOD_MS}; Atomics.wait(word, 0, 0, Math.max(0, next - Date.now())); }`;
  return {
    counterRestartsWithProcess: false,
    init: async () => [],
    start: () => {
      worker = new Worker(code, { eval: true });
    },
    shutdown: async () => { await worker?.terminate(); },
    quality: () => ({ kind: 'bare-timer', energyCounter: false, powerAveraged: false, simulated: true, samplePeriodMs: PERIOD_MS, notes: [] }),
  };
}

async function measure(seconds: number, source: PowerSource | null): Promise<Measured> {
  const stamps: number[] = [];
  source?.start((batch) => { for (const s of batch) stamps.push(s.timestampMs); }, (error) => console.log(`  source error: ${error.reason}: ${error.message}`));
  await sleep(1000); // warm-up: worker/child start, JIT, the start-up of this process itself
  const from = Date.now();
  const ticks0 = childTicks();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(seconds * 1000);
  const cpu = process.cpuUsage(cpu0);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const ticks1 = childTicks();
  const to = Date.now();
  await source?.shutdown(); // delivers what was read but not yet handed over
  const samples = stamps.filter((t) => t >= from && t < to).length;
  // Linux clock ticks are 10 ms (USER_HZ 100): ticks x 10 ms over the wall time, in %.
  const childPercent = ticks0 !== null && ticks1 !== null ? ((ticks1 - ticks0) * 1e6) / wallUs : null;
  return { percentOfCore: ((cpu.user + cpu.system) / wallUs) * 100, samples, childPercent };
}

/** The built module when dist/ has it, else the TypeScript source (run through tsx). */
async function builtOr<T>(relative: string, source: T): Promise<{ module: T; built: boolean }> {
  const url = new URL(`../dist/${relative}`, import.meta.url);
  if (!existsSync(fileURLToPath(url))) return { module: source, built: false };
  return { module: (await import(url.href)) as T, built: true };
}

export async function benchNvml(): Promise<void> {
  const seconds = Number(process.env.BENCH_NVML_SECONDS ?? 10);
  const { module: { NvmlPowerSource }, built } = await builtOr('collectors/nvml/nvml-power-source.js', nvmlSource);
  const { module: { NvidiaSmiPowerSource } } = await builtOr('collectors/nvidia-smi/nvidia-smi-power-source.js', smiSource);
  console.log(`${GPUS} GPUs at ${1000 / PERIOD_MS} Hz, ${seconds} s of wall time per run; CPU of this process in % of one core`);
  console.log(built ? 'sources: dist/ (built JavaScript, as deployed)' : 'sources: TypeScript through tsx (dist/ not built: figures include tsx loader threads; run `npm run build` first)');

  // The idle baseline is the lower of two runs: other work on a shared machine only adds.
  const idle = [await measure(seconds, null), await measure(seconds, null)].reduce((a, b) => (a.percentOfCore <= b.percentOfCore ? a : b));
  console.log(`idle baseline (no source)                      ${idle.percentOfCore.toFixed(3)} %`);

  const timerFloor = await measure(seconds, bareWorker('timer'));
  console.log(`a bare worker waking at 10 Hz, setTimeout      ${timerFloor.percentOfCore.toFixed(3)} %  (thread wake-ups through the event loop)`);
  const atomicsFloor = await measure(seconds, bareWorker('atomics'));
  console.log(`a bare worker waking at 10 Hz, Atomics.wait    ${atomicsFloor.percentOfCore.toFixed(3)} %  (how the NVML worker sleeps)`);

  const fake = installFakeNvml({ gpus: Array.from({ length: GPUS }, (_, i) => ({ powerMw: [100_000 + i * 50_000, 400_000] })) });
  try {
    const nvml = new NvmlPowerSource({ libraryPath: fake.libraryPath, samplePeriodMs: PERIOD_MS, callTimeoutMs: 2000 });
    await nvml.init();
    const r = await measure(seconds, nvml);
    const net = r.percentOfCore - idle.percentOfCore;
    console.log(`NVML (fake libnvidia-ml, worker)               ${r.percentOfCore.toFixed(3)} %  net of baseline ${net.toFixed(3)} %  target <= ${TARGET_PERCENT} %  ${net <= TARGET_PERCENT ? 'within target' : 'OVER target'}`);
    console.log(`                                               ${r.samples} samples = ${(r.samples / seconds).toFixed(1)}/s (expected ${(GPUS * 1000) / PERIOD_MS}/s)`);
  } finally {
    fake.cleanup();
  }

  const capture = linuxCaptures().find((c) => c.file.includes('h100-80gb'));
  if (!capture) throw new Error('no H100 capture in test/fixtures/nvidia-smi');
  const smi = new NvidiaSmiPowerSource({
    binary: fakeNvidiaSmiBinary(),
    samplePeriodMs: PERIOD_MS,
    env: { ...process.env, FAKE_NVIDIA_SMI_CAPTURE: capture.path, FAKE_NVIDIA_SMI_GPUS: String(GPUS) },
  });
  await smi.init();
  const s = await measure(seconds, smi);
  console.log(`nvidia-smi (fake child, parser)                ${s.percentOfCore.toFixed(3)} %  net of baseline ${(s.percentOfCore - idle.percentOfCore).toFixed(3)} %`);
  console.log(`                                               ${s.samples} samples = ${(s.samples / seconds).toFixed(1)}/s; the fake child itself: ${s.childPercent === null ? 'n/a' : `${s.childPercent.toFixed(2)} %`} (a Node script, not the real nvidia-smi)`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchNvml().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
