/**
 * `tokenwatt doctor` judges the power source the agent would use: `power` of --config, or
 * --power / TOKENWATT_POWER, not always `auto`. Through agent/cli.ts, with a working (fake)
 * nvidia-smi and no NVML library.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fakeNvidiaSmiBinary, linuxCaptures } from '../fakes/fake-nvidia-smi.js';

const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-doctor-power-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const capture = linuxCaptures().find((c) => c.file.includes('h100-80gb'))?.path;
const base = `nvmlLibrary: ${join(dir, 'no-such-libnvidia-ml.so.1')}\nnvidiaSmi: ${fakeNvidiaSmiBinary()}\n`;

function config(name: string, extra: string): string {
  const path = join(dir, name);
  writeFileSync(path, base + extra);
  return path;
}

interface Doctor {
  readonly status: number | null;
  readonly report: { selected: string | null; canRun: boolean; power: { setting: string; from: string } } | null;
  readonly text: string;
  readonly stderr: string;
}

function doctor(args: string[], env: Record<string, string> = {}): Doctor {
  const run = (json: boolean) => spawnSync(process.execPath, ['--import', 'tsx', 'agent/cli.ts', 'doctor', '--probe-ms', '300', ...(json ? ['--json'] : []), ...args], {
    encoding: 'utf8',
    env: { ...process.env, TOKENWATT_POWER: '', TOKENWATT_CONFIG: '', TOKENWATT_NVML_LIBRARY: '', TOKENWATT_NVIDIA_SMI: '', FAKE_NVIDIA_SMI_CAPTURE: capture ?? '', ...env },
    timeout: 60_000,
  });
  const json = run(true);
  const text = run(false);
  return { status: json.status, report: json.status === 2 ? null : JSON.parse(json.stdout), text: text.stdout, stderr: json.stderr };
}

test('the fixture: nvidia-smi answers and NVML is missing, so auto would use nvidia-smi', () => {
  assert.ok(capture, 'an H100 capture is in test/fixtures/nvidia-smi');
  const auto = doctor(['--config', config('auto.yaml', '')]);
  assert.equal(auto.status, 0, auto.stderr);
  assert.equal(auto.report?.selected, 'nvidia-smi');
  assert.deepEqual(auto.report?.power, { setting: 'auto', from: 'default' });
});

test('power: nvml in the config file, with NVML missing: exit 1 naming the key, though nvidia-smi answers (run would exit 3)', () => {
  const result = doctor(['--config', config('nvml.yaml', 'power: nvml\n')]);
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.report?.selected, null);
  assert.equal(result.report?.canRun, false);
  assert.deepEqual(result.report?.power, { setting: 'nvml', from: 'file' });
  assert.match(result.text, /`tokenwatt run` would refuse to start \(exit 3\) with power nvml \(from the config file's power\): NVML is not available/);
  assert.match(result.text, /nvidia-smi is: power auto or nvidia-smi would use it/);
});

test('TOKENWATT_POWER and --power win over the file, as for run', () => {
  const file = config('nvml2.yaml', 'power: nvml\n');
  const fromEnv = doctor(['--config', file], { TOKENWATT_POWER: 'nvidia-smi' });
  assert.equal(fromEnv.status, 0, fromEnv.stderr);
  assert.equal(fromEnv.report?.selected, 'nvidia-smi');
  assert.deepEqual(fromEnv.report?.power, { setting: 'nvidia-smi', from: 'env' });
  assert.match(fromEnv.text, /The agent would use: nvidia-smi \(power nvidia-smi, from TOKENWATT_POWER\)\. It can run with measured data\./);

  const fromFlag = doctor(['--config', file, '--power', 'auto'], { TOKENWATT_POWER: 'nvml' });
  assert.equal(fromFlag.status, 0, fromFlag.stderr);
  assert.deepEqual(fromFlag.report?.power, { setting: 'auto', from: 'flag' });
});

test('power: simulated or replay:FILE is no measured source: exit 1 saying so, and what auto would use', () => {
  for (const [name, setting] of [['sim.yaml', 'simulated'], ['replay.yaml', 'replay:/tmp/trace.csv']] as const) {
    const result = doctor(['--config', config(name, `power: "${setting}"\n`)]);
    assert.equal(result.status, 1, `${setting}: ${result.stderr}`);
    assert.equal(result.report?.selected, null);
    assert.deepEqual(result.report?.power, { setting, from: 'file' });
    assert.match(result.text, new RegExp(`The agent would use: ${setting.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(from the config file's power\\), not a measured source: no figure would be measured on this node\\. With power auto it would use nvidia-smi\\.`));
  }
});

test('a bad --power is a usage error (exit 2) naming the flag', () => {
  const result = doctor(['--power', 'nvml2']);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /tokenwatt doctor: --power \/ TOKENWATT_POWER: must be auto, nvml, nvidia-smi, simulated or replay:FILE, got "nvml2"/);
});
