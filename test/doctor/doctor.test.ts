import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { doctorCommand } from '../../agent/commands/doctor.js';
import { NoMeasuredPowerSourceError, runDoctor, selectPowerSource } from '../../agent/doctor.js';
import { installFakeNvml, type FakeNvmlInstall } from '../fakes/fake-nvml.js';
import { fakeNvidiaSmiBinary, linuxCaptures } from '../fakes/fake-nvidia-smi.js';
import { buildFakePowercap, type FakePowercap } from '../fakes/fake-powercap.js';

const smi = fakeNvidiaSmiBinary();
const capture = linuxCaptures().find((c) => c.file.includes('h100-mig'));
assert.ok(capture);
const smiEnv = { ...process.env, FAKE_NVIDIA_SMI_CAPTURE: capture.path };
const nowhere = mkdtempSync(join(tmpdir(), 'tokenwatt-doctor-nothing-'));
const missingLib = join(nowhere, 'libnvidia-ml.so.1');
const missingSmi = join(nowhere, 'nvidia-smi');
const cleanups: (FakeNvmlInstall | FakePowercap)[] = [];
after(() => {
  cleanups.forEach((c) => c.cleanup());
  rmSync(nowhere, { recursive: true, force: true });
});

const MIG = ['MIG-0a000000-0000-0000-0000-000000000000', 'MIG-0b000000-0000-0000-0000-000000000000'];
function nvml(): FakeNvmlInstall {
  const install = installFakeNvml({
    gpus: [
      { name: 'NVIDIA H100 80GB HBM3', arch: 9, cc: [9, 0], migUuids: MIG, powerMw: [420000] },
      { name: 'NVIDIA A10', arch: 7, cc: [8, 6], instantSupported: false, powerMw: [150000] },
    ],
  });
  cleanups.push(install);
  return install;
}
function powercap(): FakePowercap {
  const tree = buildFakePowercap({ packages: [{ energyUj: 10, dram: { energyUj: 5 } }] });
  cleanups.push(tree);
  return tree;
}

test('doctor on a node with NVML: picks NVML, measures the period, reports counter, power kind, MIG and RAPL; exit 0', async () => {
  const { report, text, exitCode } = await runDoctor({
    nvmlLibrary: nvml().libraryPath, nvidiaSmi: smi, env: smiEnv, powercapRoot: powercap().root, probeMs: 800, hostInventory: false,
  });
  assert.equal(exitCode, 0);
  assert.equal(report.canRun, true);
  assert.equal(report.selected, 'nvml');
  assert.ok(report.nvml.available);
  assert.ok(report.nvml.achievedPeriodMs !== null && report.nvml.achievedPeriodMs >= 50 && report.nvml.achievedPeriodMs <= 400, `achieved ${report.nvml.achievedPeriodMs}`);
  assert.deepEqual(report.nvml.devices.map((d) => [d.energyCounter, d.powerMethod, d.powerAveraged, d.migInstances.length]), [
    [true, 'field_instant', false, 2], [true, 'power_usage', true, 0],
  ]);
  assert.ok(report.nvidiaSmi.available, 'the fallback is reported too');
  assert.ok(report.rapl.available);
  assert.deepEqual(report.rapl.available ? report.rapl.zones : [], ['package-0', 'package-0/dram']);
  const advice = report.advice.join('\n');
  assert.match(advice, /MIG is on for GPU 0: power exists per physical GPU only; send the MIG UUIDs/);
  assert.match(advice, /GPU 1 \(NVIDIA A10\) gives only 1 s averaged power/);
  assert.match(text, /The agent would use: nvml \(--power auto\)/);
  assert.match(text, /energy counter: yes; power: instantaneous \(NVML_FI_DEV_POWER_INSTANT\)/);
  assert.match(text, /MIG: enabled, 2 instance\(s\): MIG-0a000000/);
  assert.match(text, /sampling period: requested 100 ms, achieved \d+ ms/);
});

test('doctor without NVML: falls back to nvidia-smi, says what NVML would add and how to get it; exit 0', async () => {
  const { report, text, exitCode } = await runDoctor({ nvmlLibrary: missingLib, nvidiaSmi: smi, env: smiEnv, powercapRoot: powercap().root, probeMs: 600, hostInventory: false });
  assert.equal(exitCode, 0);
  assert.equal(report.selected, 'nvidia-smi');
  assert.ok(!report.nvml.available);
  assert.equal(report.nvml.available ? '' : report.nvml.failure.reason, 'library_missing');
  assert.ok(report.nvidiaSmi.available && report.nvidiaSmi.samples > 0);
  assert.match(report.advice[0] ?? '', /Make NVML loadable .*cumulative energy counter/);
  assert.match(text, /available: no \(library_missing\)/);
  assert.match(text, /The agent would use: nvidia-smi/);
  assert.match(text, /energy counter: no; power: instantaneous \(power.draw.instant\)/);
});

test('doctor with nothing measurable: exit 1, says the agent would not start and what to do, RAPL fix included', async () => {
  const { report, text, exitCode } = await runDoctor({ nvmlLibrary: missingLib, nvidiaSmi: missingSmi, powercapRoot: nowhere, probeMs: 300, hostInventory: false });
  assert.equal(exitCode, 1);
  assert.equal(report.canRun, false);
  assert.equal(report.selected, null);
  assert.match(report.advice[0] ?? '', /No measured GPU power source.*--power simulated/);
  assert.match(text, /would refuse to start/);
  assert.match(text, /Host power \(RAPL under .*\)\n {2}available: no \(absent\)/);
  assert.match(text, /overheadW/);
});

test('the doctor command: --json prints the report, the exit status is set, --help states the exit codes', async () => {
  const writes: string[] = [];
  const print = (text: string) => { writes.push(text); };
  const savedExit = process.exitCode;
  try {
    await doctorCommand(print).parseAsync(['--json', '--nvml-library', missingLib, '--nvidia-smi', missingSmi, '--powercap-root', nowhere, '--probe-ms', '200'], { from: 'user' });
    assert.equal(process.exitCode, 1);
    const report = JSON.parse(writes.join(''));
    assert.equal(report.canRun, false);
    assert.equal(report.exitCode, 1);
    assert.equal(report.nvml.failure.reason, 'library_missing');

    writes.length = 0;
    process.exitCode = undefined;
    await doctorCommand(print).parseAsync(['--probe-ms', 'soon'], { from: 'user' });
    assert.equal(process.exitCode, 2);
    assert.deepEqual(writes, []);
  } finally {
    process.exitCode = savedExit;
  }
  let help = '';
  const command = doctorCommand().configureOutput({ writeOut: (s) => { help += s; } });
  command.outputHelp();
  for (const flag of ['--json', '--nvml-library', '--nvidia-smi', '--powercap-root', 'TOKENWATT_NVML_LIBRARY']) assert.ok(help.includes(flag), flag);
  assert.match(help, /--probe-ms <ms>\s+how long each GPU source is sampled to measure its\s+period\s+\(default: 1500\)/, 'the default is a number, shown unquoted');
  assert.match(help, /Exit status:\n {2}0 {2}the agent can run on measured GPU data[\s\S]*\n {2}1 {2}no measured GPU power source[\s\S]*\n {2}2 {2}doctor could not run/);
});

test('selectPowerSource auto: NVML first, then nvidia-smi, else an error naming both fixes; never the simulator', async () => {
  const first = await selectPowerSource({ prefer: 'auto', samplePeriodMs: 100, callTimeoutMs: 2000, nvmlLibrary: nvml().libraryPath, nvidiaSmi: smi, env: smiEnv });
  assert.deepEqual(await first.source.init(), first.gpus, 'handed over initialised: init() again gives the same inventory');
  await first.source.shutdown();
  assert.equal(first.kind, 'nvml');
  assert.equal(first.gpus.length, 2);
  assert.deepEqual(first.skipped, []);

  const fallback = await selectPowerSource({ prefer: 'auto', samplePeriodMs: 100, callTimeoutMs: 2000, nvmlLibrary: missingLib, nvidiaSmi: smi, env: smiEnv });
  assert.deepEqual(await fallback.source.init(), fallback.gpus);
  await fallback.source.shutdown();
  assert.equal(fallback.kind, 'nvidia-smi');
  assert.equal(fallback.source.quality().kind, 'nvidia-smi');
  assert.deepEqual(fallback.skipped.map((s) => [s.kind, s.reason]), [['nvml', 'library_missing']]);

  await assert.rejects(
    selectPowerSource({ prefer: 'auto', samplePeriodMs: 100, callTimeoutMs: 2000, nvmlLibrary: missingLib, nvidiaSmi: missingSmi }),
    (error: unknown) => {
      assert.ok(error instanceof NoMeasuredPowerSourceError);
      assert.deepEqual(error.attempts.map((a) => [a.kind, a.reason]), [['nvml', 'library_missing'], ['nvidia-smi', 'binary_missing']]);
      assert.match(error.message, /--nvml-library[\s\S]*--nvidia-smi[\s\S]*--power simulated/);
      return true;
    },
  );
  await assert.rejects(
    selectPowerSource({ prefer: 'nvml', samplePeriodMs: 100, callTimeoutMs: 2000, nvmlLibrary: missingLib, nvidiaSmi: smi, env: smiEnv }),
    (error: unknown) => error instanceof NoMeasuredPowerSourceError && error.attempts.length === 1,
    '--power nvml never falls back to nvidia-smi',
  );
});

test('doctor where NVML gives no power or energy on any GPU: NVML counted unavailable, nvidia-smi used if present, else exit 1', async () => {
  const unmeasurable = { arch: 9, cc: [9, 0] as const, instantSupported: false, powerUsageSupported: false, energySupported: false };
  const install = installFakeNvml({ gpus: [unmeasurable, unmeasurable] });
  cleanups.push(install);
  const withSmi = await runDoctor({ nvmlLibrary: install.libraryPath, nvidiaSmi: smi, env: smiEnv, powercapRoot: nowhere, probeMs: 600, hostInventory: false });
  assert.equal(withSmi.exitCode, 0);
  assert.equal(withSmi.report.selected, 'nvidia-smi');
  assert.equal(withSmi.report.nvml.available ? '' : withSmi.report.nvml.failure.reason, 'no_gpus');
  const alone = await runDoctor({ nvmlLibrary: install.libraryPath, nvidiaSmi: missingSmi, powercapRoot: nowhere, probeMs: 300, hostInventory: false });
  assert.equal(alone.exitCode, 1);
  assert.equal(alone.report.canRun, false);
  assert.doesNotMatch(alone.text, /It can run with measured data/);
  assert.match(alone.text, /available: no \(no_gpus\): NVML started but found no usable GPU \(GPU 0: reports neither power/);
});

test('doctor where NVML starts but gives no sample in the probe: exit 1, not "It can run with measured data"', async () => {
  // The first nvmlDeviceGetFieldValues (start-up's) returns at once, the next one (the first tick's)
  // hangs for 3 s, beyond the 800 ms probe: NVML starts and samples nothing.
  const install = installFakeNvml({
    gpus: [{}],
    hangs: [
      { fn: 'nvmlDeviceGetFieldValues', gpu: 0, afterMs: 0, durationMs: 0, count: 1 },
      { fn: 'nvmlDeviceGetFieldValues', gpu: 0, afterMs: 0, durationMs: 3000, count: 1 },
    ],
  });
  cleanups.push(install);
  const { report, text, exitCode } = await runDoctor({ nvmlLibrary: install.libraryPath, nvidiaSmi: missingSmi, powercapRoot: nowhere, probeMs: 800, hostInventory: false });
  assert.ok(report.nvml.available, report.nvml.available ? '' : report.nvml.failure.message);
  assert.equal(report.nvml.samples, 0);
  assert.equal(exitCode, 1);
  assert.equal(report.canRun, false);
  assert.match(text, /The agent would use: nvml \(--power auto\), but it gave no sample while probed/);
  assert.match(report.advice.join('\n'), /NVML started but gave no sample in the probe/);
});

test('doctor names the reason for a missing energy counter by architecture: pre-Volta only on pre-Volta GPUs', async () => {
  const install = installFakeNvml({
    gpus: [
      { name: 'Tesla P100-PCIE-16GB', arch: 4, cc: [6, 0], energySupported: false },
      { name: 'NVIDIA H100 80GB HBM3', arch: 9, cc: [9, 0], energySupported: false },
    ],
  });
  cleanups.push(install);
  const { report } = await runDoctor({ nvmlLibrary: install.libraryPath, nvidiaSmi: missingSmi, powercapRoot: nowhere, probeMs: 300, hostInventory: false });
  const advice = report.advice.join('\n');
  assert.match(advice, /GPU 0 \(Tesla P100-PCIE-16GB\) has no energy counter \(pre-Volta\)/);
  assert.match(advice, /GPU 1 \(NVIDIA H100 80GB HBM3\) has no energy counter \(not supported by this Hopper board or driver, e\.g\. a vGPU guest\)/);
});

test('doctor names a GPU that appeared while it probed, and says that GPUs appearing later are learnt by the running agent', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-doctor-added-'));
  try {
    // nvidia-smi lists one GPU to the first GPU list read (start-up's); from then on two, in the
    // list and in the stream: GPU 1 appears while doctor probes.
    const count = join(dir, 'gpus');
    writeFileSync(count, '1');
    const wrapper = join(dir, 'nvidia-smi');
    writeFileSync(wrapper, `#!/bin/sh
${JSON.stringify(process.execPath)} ${JSON.stringify(smi)} "$@"
code=$?
case " $* " in *" --query-gpu="*) case " $* " in *" -lms "*) ;; *) echo 2 > ${JSON.stringify(`${count}.partial`)} && mv ${JSON.stringify(`${count}.partial`)} ${JSON.stringify(count)} ;; esac ;; esac
exit $code
`);
    chmodSync(wrapper, 0o755);
    const { report, text, exitCode } = await runDoctor({
      nvmlLibrary: missingLib, nvidiaSmi: wrapper, env: { ...smiEnv, FAKE_NVIDIA_SMI_GPUS_FILE: count }, powercapRoot: nowhere, probeMs: 800, hostInventory: false,
    });
    assert.equal(exitCode, 0);
    assert.ok(report.nvidiaSmi.available);
    const added = 'GPU-00000001-0000-0000-0000-000000000000';
    // Before the fix the report had the start-up list only: GPU 1 was sampled and never named.
    assert.deepEqual(report.nvidiaSmi.gpus.map((g) => [g.index, g.uuid, g.migInstances?.length]), [[0, 'GPU-00000000-0000-0000-0000-000000000000', 4], [1, added, 4]]);
    assert.deepEqual(report.nvidiaSmi.foundWhileProbing, [added]);
    assert.match(text, new RegExp(`nvidia-smi \\(.*\\)\\n {2}available: yes, 2 GPU\\(s\\)`));
    assert.match(text, new RegExp(`GPU 1 NVIDIA H100 80GB HBM3 ${added}; MIG: enabled, 4 instance\\(s\\); found while probing \\(not listed when the probe started\\)`));
    assert.match(text, /GPUs that appear later .* are learnt by the running agent without a restart/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('doctor with NVML: a GPU hung at start-up and identified while probing is named as found while probing', async () => {
  // GPU 1's UUID call hangs 600 ms at start-up, past the 200 ms deadline: left out by its index,
  // then opened and identified once that call has returned, within the probe.
  const install = installFakeNvml({
    gpus: [{ powerMw: [200000] }, { powerMw: [300000], name: 'NVIDIA H100 NVL' }],
    hangs: [{ fn: 'nvmlDeviceGetUUID', gpu: 1, afterMs: 0, durationMs: 600, count: 1 }],
  });
  cleanups.push(install);
  const { report, text } = await runDoctor({ nvmlLibrary: install.libraryPath, nvidiaSmi: missingSmi, powercapRoot: nowhere, probeMs: 3000, callTimeoutMs: 200, hostInventory: false });
  assert.ok(report.nvml.available, report.nvml.available ? '' : report.nvml.failure.message);
  assert.deepEqual(report.nvml.gpus.map((g) => [g.index, g.name]), [[0, 'NVIDIA H100 80GB HBM3'], [1, 'NVIDIA H100 NVL']]);
  assert.deepEqual(report.nvml.foundWhileProbing, [report.nvml.gpus[1]?.uuid]);
  assert.match(text, /GPU 1 NVIDIA H100 NVL \[Hopper\] GPU-\S+; found while probing \(not listed when the probe started\)/);
  assert.match(text, /NVML counts its GPUs and reads their MIG devices again every 10 s/);
});
