/**
 * Run in a child process by test/nvml tests: starts NvmlPowerSource with no library path, so the
 * dynamic loader must find libnvidia-ml.so.1 itself (LD_LIBRARY_PATH) or TOKENWATT_NVML_LIBRARY
 * names it; prints one JSON line with what it found.
 */
import { NvmlPowerSource } from '../../collectors/nvml/nvml-power-source.js';
import type { PowerSample } from '../../model/power-sample.js';

const source = new NvmlPowerSource({ samplePeriodMs: 50, callTimeoutMs: 5000 });
try {
  const gpus = await source.init();
  const samples: PowerSample[] = [];
  source.start((batch) => samples.push(...batch), () => undefined);
  const deadline = Date.now() + 5000;
  while (samples.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  process.stdout.write(`${JSON.stringify({ gpus, samples, notes: source.quality().notes })}\n`);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ error: error instanceof Error ? error.message : String(error) })}\n`);
} finally {
  await source.shutdown();
}
