import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { NVML_SYMBOLS_USED, NvmlBinding } from '../../collectors/nvml/nvml-binding.js';
import { CallWatchReader, CallWatchWriter, createCallWatchBuffer, WATCHED_CALLS } from '../../collectors/nvml/nvml-call-watch.js';
import { NvmlArchitecture, NvmlFieldId, NvmlReturn, nvmlReturnName } from '../../collectors/nvml/nvml-constants.js';
import { powerUsageIsAveraged } from '../../collectors/nvml/power-averaging.js';
import { ProblemThrottle } from '../../collectors/problem-throttle.js';
import { RestartBackoff } from '../../collectors/restart-backoff.js';
import { exportedSymbols, installFakeNvml, type FakeNvmlInstall } from '../fakes/fake-nvml.js';
import { findSection, linuxCaptures } from '../fakes/fake-nvidia-smi.js';

const installs: FakeNvmlInstall[] = [];
after(() => installs.forEach((i) => i.cleanup()));

test('every NVML symbol tokenwatt binds is exported by the real drivers in the captures', () => {
  const withSymbols = linuxCaptures().filter((c) => findSection(c.sections, 'capabilities', 'nvml-symbols'));
  assert.ok(withSymbols.length >= 2, 'captures with a symbol list');
  for (const c of withSymbols) {
    const exported = new Set(findSection(c.sections, 'capabilities', 'nvml-symbols')?.body.split('\n').map((s) => s.trim()));
    for (const symbol of NVML_SYMBOLS_USED) assert.ok(exported.has(symbol), `${symbol} missing from ${c.file}`);
  }
});

test('the fake library exports exactly the symbols tokenwatt binds, and every watched call is one of them', () => {
  const install = installFakeNvml({ gpus: [{}] });
  installs.push(install);
  assert.deepEqual(exportedSymbols(install.libraryPath).sort(), [...NVML_SYMBOLS_USED].sort());
  for (const call of WATCHED_CALLS) assert.ok((NVML_SYMBOLS_USED as readonly string[]).includes(call), call);
});

test('the binding reads nvmlFieldValue_t (40 bytes) and the out-parameters as NVML lays them out', () => {
  const install = installFakeNvml({
    driverVersion: '595.71.05',
    gpus: [
      { uuid: 'GPU-12345678-9abc-def0-1234-56789abcdef0', name: 'NVIDIA GeForce RTX 4080 SUPER', arch: 8, cc: [8, 9], limitMw: 320000, powerMw: [84240] },
      { instantSupported: false, energySupported: false },
    ],
  });
  installs.push(install);
  const nvml = new NvmlBinding(install.libraryPath);
  assert.equal(nvml.init(), NvmlReturn.SUCCESS);
  try {
    assert.deepEqual(nvml.driverVersion(), { ok: true, rc: 0, value: '595.71.05' });
    assert.deepEqual(nvml.deviceCount(), { ok: true, rc: 0, value: 2 });
    const h = nvml.handleByIndex(0);
    assert.ok(h.ok);
    assert.deepEqual(nvml.uuid(h.value), { ok: true, rc: 0, value: 'GPU-12345678-9abc-def0-1234-56789abcdef0' });
    assert.deepEqual(nvml.name(h.value), { ok: true, rc: 0, value: 'NVIDIA GeForce RTX 4080 SUPER' });
    assert.deepEqual(nvml.enforcedPowerLimitMw(h.value), { ok: true, rc: 0, value: 320000 });
    assert.deepEqual(nvml.architecture(h.value), { ok: true, rc: 0, value: NvmlArchitecture.ADA });
    assert.deepEqual(nvml.computeCapability(h.value), { ok: true, rc: 0, value: { major: 8, minor: 9 } });
    assert.deepEqual(nvml.migMode(h.value), { ok: true, rc: 0, value: { current: 0, pending: 0 } });
    assert.deepEqual(nvml.fieldValue(h.value, NvmlFieldId.POWER_INSTANT, 0), { ok: true, rc: 0, value: 84240 });
    assert.deepEqual(nvml.fieldValue(h.value, 12345, 0), { ok: false, rc: NvmlReturn.ERROR_NOT_SUPPORTED }, 'per-field return code');
    const energy = nvml.totalEnergyMj(h.value);
    assert.ok(energy.ok && energy.value >= 0);
    const h1 = nvml.handleByIndex(1);
    assert.ok(h1.ok);
    assert.deepEqual(nvml.totalEnergyMj(h1.value), { ok: false, rc: NvmlReturn.ERROR_NOT_SUPPORTED });
    assert.deepEqual(nvml.handleByIndex(7), { ok: false, rc: NvmlReturn.ERROR_INVALID_ARGUMENT });
    assert.equal(nvml.errorString(NvmlReturn.ERROR_GPU_IS_LOST), 'GPU is lost');
  } finally {
    nvml.shutdown();
  }
  assert.equal(nvmlReturnName(15), 'NVML_ERROR_GPU_IS_LOST');
  assert.equal(nvmlReturnName(18), 'NVML_ERROR_LIB_RM_VERSION_MISMATCH');
});

test('averaged power: Ampere and newer except GA100 (compute 8.0); unknown counts as averaged', () => {
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.TURING, { major: 7, minor: 5 }), false);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.VOLTA, { major: 7, minor: 0 }), false);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.AMPERE, { major: 8, minor: 0 }), false);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.AMPERE, { major: 8, minor: 6 }), true);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.ADA, { major: 8, minor: 9 }), true);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.HOPPER, { major: 9, minor: 0 }), true);
  assert.equal(powerUsageIsAveraged(NvmlArchitecture.UNKNOWN, null), true);
  assert.equal(powerUsageIsAveraged(null, null), true);
  fc.assert(fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 9 }), (arch, major, minor) =>
    powerUsageIsAveraged(arch, { major, minor }) === false));
});

test('call watch: the main thread sees which call is in flight and for how long', () => {
  const buffer = createCallWatchBuffer();
  const base = Date.now() - 5000;
  const writer = new CallWatchWriter(buffer, base);
  const reader = new CallWatchReader(buffer, base);
  assert.equal(reader.current(Date.now()), null);
  writer.begin('nvmlDeviceGetPowerUsage', 3);
  const inFlight = reader.current(Date.now() + 700);
  assert.equal(inFlight?.call, 'nvmlDeviceGetPowerUsage');
  assert.equal(inFlight?.gpuIndex, 3);
  assert.ok((inFlight?.elapsedMs ?? 0) >= 690 && (inFlight?.elapsedMs ?? 0) <= 750);
  writer.end();
  assert.equal(reader.current(Date.now()), null);
  writer.begin('nvmlInit_v2', -1);
  assert.equal(reader.current(Date.now())?.gpuIndex, null);
});

test('call watch: the UUID read while a GPU is opened is known for that index only, the last one written', () => {
  const buffer = createCallWatchBuffer();
  const writer = new CallWatchWriter(buffer, 0);
  const reader = new CallWatchReader(buffer, 0);
  assert.equal(reader.identity(0), null, 'none before any GPU was identified');
  writer.identify(0, 'GPU-0a0a0a0a-0000-0000-0000-000000000000');
  assert.equal(reader.identity(0), 'GPU-0a0a0a0a-0000-0000-0000-000000000000');
  writer.identify(1, 'GPU-1b1b');
  assert.equal(reader.identity(1), 'GPU-1b1b', 'a shorter UUID leaves nothing of the longer one before it');
  assert.equal(reader.identity(0), null, 'GPU 0 is no longer the one being opened');
});

test('problem throttle: first report passes, repeats are counted and reported with the count after the window', () => {
  const t = new ProblemThrottle(1000);
  assert.equal(t.admit('a', 'boom', 0), 'boom');
  assert.equal(t.admit('a', 'boom', 10), null);
  assert.equal(t.admit('a', 'boom', 20), null);
  assert.equal(t.admit('b', 'other', 30), 'other');
  assert.equal(t.admit('a', 'boom', 1500), 'boom (and 2 more times since the last report)');
  t.clear('a');
  assert.equal(t.admit('a', 'boom', 1600), 'boom');
});

test('restart back-off doubles to its cap and resets', () => {
  const b = new RestartBackoff(100, 1000);
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000]);
  assert.equal(b.consecutiveFailures, 6);
  b.reset();
  assert.equal(b.next(), 100);
  assert.throws(() => new RestartBackoff(0, 10), /back-off/);
});
