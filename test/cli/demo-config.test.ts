/**
 * `tokenwatt demo --config FILE` always runs its simulated node: the keys it cannot honour (a
 * measured power source, this machine's RAPL) are named in a warning, never dropped without a word,
 * and the simulated host's overhead is the only hostPower key it takes. Through agent/cli.ts;
 * ports 19530-19539 only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildFakePowercap } from '../fakes/fake-powercap.js';

const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-demo-config-'));
const tree = buildFakePowercap({ packages: [{ energyUj: 10, dram: { energyUj: 5 } }] });
after(() => {
  tree.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** Start the demo, wait until it serves, stop it; its stderr (the agent's JSON log) and exit status. */
async function demo(port: number, args: string[], env: Record<string, string> = {}): Promise<{ stderr: string; status: number | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli.ts', 'demo', '--port', String(port), '--duration', '30', '--summary-every', '0', ...args], {
    env: { ...process.env, TOKENWATT_DB: '', TOKENWATT_POWER: '', TOKENWATT_CONFIG: '', TOKENWATT_NVML_LIBRARY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 40_000;
  while (!out.includes('Metrics: curl') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGTERM');
  const status = await exited;
  assert.match(out, /Metrics: curl/, `the demo served: ${err}`);
  return { stderr: err, status };
}

/** The agent's log lines (pino JSON) with their messages. */
const messages = (stderr: string): string[] =>
  stderr.split('\n').flatMap((line) => {
    try {
      return [String((JSON.parse(line) as { msg?: unknown }).msg)];
    } catch {
      return [];
    }
  });

test('demo --config: a measured power source and the keys that serve it are named as ignored, not dropped silently', { timeout: 90_000 }, async () => {
  const file = join(dir, 'measured.yaml');
  writeFileSync(file, `power: nvml\nnvmlLibrary: ${join(dir, 'libnvidia-ml.so.1')}\nnvidiaSmi: /usr/bin/nvidia-smi\n`);
  const { stderr, status } = await demo(19530, ['--config', file]);
  assert.equal(status, 0, stderr);
  const logged = messages(stderr);
  assert.ok(logged.some((m) => /^--power \/ TOKENWATT_POWER: nvml \(from the config file\) is ignored: the demo always runs its simulated node/.test(m)), logged.join('\n'));
  assert.ok(logged.some((m) => /^--nvml-library \/ TOKENWATT_NVML_LIBRARY \(from the config file\) is ignored: the demo's GPUs are simulated/.test(m)), logged.join('\n'));
  assert.ok(logged.some((m) => /^--nvidia-smi \/ TOKENWATT_NVIDIA_SMI \(from the config file\) is ignored/.test(m)), logged.join('\n'));

  // From the environment too; power simulated is what the demo runs, so it is no warning.
  const env = await demo(19531, [], { TOKENWATT_POWER: 'replay:/tmp/x.csv' });
  assert.ok(messages(env.stderr).some((m) => /^--power \/ TOKENWATT_POWER: replay:\/tmp\/x\.csv \(from TOKENWATT_POWER\) is ignored/.test(m)), env.stderr);
  const simulated = await demo(19532, [], { TOKENWATT_POWER: 'simulated' });
  assert.ok(!messages(simulated.stderr).some((m) => /is ignored/.test(m)), simulated.stderr);
});

test('demo --config: hostPower.overheadW sets the simulated host; this machine\'s RAPL is never read into simulated figures', { timeout: 90_000 }, async () => {
  const file = join(dir, 'host.yaml');
  writeFileSync(file, `hostPower: { rapl: auto, powercapRoot: ${tree.root}, overheadW: 450 }\n`);
  const { stderr, status } = await demo(19533, ['--config', file]);
  assert.equal(status, 0, stderr);
  const logged = messages(stderr);
  assert.ok(!logged.includes('host energy: RAPL'), `the fake RAPL tree was read: ${logged.join('\n')}`);
  assert.ok(logged.includes('host energy: configured overhead (estimated)'), logged.join('\n'));
  assert.match(stderr, /a constant 450 W/, 'the configured overhead is the simulated host\'s');
  assert.ok(logged.some((m) => /^hostPower\.rapl, hostPower\.powercapRoot \(from the config file\) are ignored: the demo's host is simulated/.test(m)), logged.join('\n'));

  // The tree named by TOKENWATT_POWERCAP_ROOT (as the chart sets it) is not read either, and the
  // warning names the variable, not the file.
  const env = await demo(19534, [], { TOKENWATT_POWERCAP_ROOT: tree.root });
  assert.equal(env.status, 0, env.stderr);
  const fromEnv = messages(env.stderr);
  assert.ok(!fromEnv.includes('host energy: RAPL'), `the fake RAPL tree was read: ${fromEnv.join('\n')}`);
  assert.ok(fromEnv.some((m) => /^hostPower\.powercapRoot \(from TOKENWATT_POWERCAP_ROOT\) is ignored: the demo's host is simulated/.test(m)), fromEnv.join('\n'));
});
