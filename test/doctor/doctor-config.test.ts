import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { doctorCommand } from '../../agent/commands/doctor.js';
import { buildFakePowercap } from '../fakes/fake-powercap.js';

const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-doctor-config-'));
const tree = buildFakePowercap({ packages: [{ energyUj: 10, dram: { energyUj: 5 } }] });
after(() => {
  tree.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** Run the command as the CLI would; returns the JSON report (or null) and the exit status. */
async function doctor(args: string[], env: Record<string, string | undefined> = {}): Promise<{ report: { rapl: { available: boolean; root: string }; nvml: { failure?: { reason: string } } } | null; exitCode: number | undefined; stderr: string }> {
  const writes: string[] = [];
  const saved = { exitCode: process.exitCode, env: { ...process.env }, stderrWrite: process.stderr.write.bind(process.stderr) };
  let stderr = '';
  for (const name of ['TOKENWATT_CONFIG', 'TOKENWATT_POWERCAP_ROOT', 'TOKENWATT_NVML_LIBRARY', 'TOKENWATT_NVIDIA_SMI']) delete process.env[name];
  Object.assign(process.env, env);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    process.exitCode = undefined;
    await doctorCommand((text) => writes.push(text)).parseAsync(['--json', '--probe-ms', '200', ...args], { from: 'user' });
    const exitCode = process.exitCode as number | undefined;
    return { report: writes.length > 0 ? JSON.parse(writes.join('')) : null, exitCode, stderr };
  } finally {
    process.stderr.write = saved.stderrWrite;
    process.exitCode = saved.exitCode;
    for (const name of Object.keys(process.env)) if (!(name in saved.env)) delete process.env[name];
    Object.assign(process.env, saved.env);
  }
}

test('doctor looks where the agent would: nvmlLibrary, nvidiaSmi and hostPower.powercapRoot from --config / TOKENWATT_CONFIG; flags win', async () => {
  const missingLib = join(dir, 'libnvidia-ml.so.1');
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `nvmlLibrary: ${missingLib}\nnvidiaSmi: ${join(dir, 'nvidia-smi')}\nhostPower: { rapl: auto, powercapRoot: ${tree.root} }\n`);

  const fromFlag = await doctor(['--config', config]);
  assert.equal(fromFlag.report?.rapl.available, true, JSON.stringify(fromFlag.report?.rapl));
  assert.equal(fromFlag.report?.rapl.root, tree.root);
  assert.equal(fromFlag.report?.nvml.failure?.reason, 'library_missing', 'the config\'s nvmlLibrary is the one probed');

  const fromEnv = await doctor([], { TOKENWATT_CONFIG: config });
  assert.equal(fromEnv.report?.rapl.root, tree.root);

  const flagWins = await doctor(['--config', config, '--powercap-root', join(dir, 'none')]);
  assert.equal(flagWins.report?.rapl.root, join(dir, 'none'));
  assert.equal(flagWins.report?.rapl.available, false);
});

test('doctor with an invalid --config says so and exits 2', async () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'hostPower: { powercapRoot: 5 }\n');
  const result = await doctor(['--config', bad]);
  assert.equal(result.exitCode, 2);
  assert.equal(result.report, null);
  assert.match(result.stderr, /tokenwatt doctor: invalid configuration \(1 error\):\n {2}- bad\.yaml:1: hostPower\.powercapRoot: /);
});
