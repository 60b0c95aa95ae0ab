import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { addConfigOptions, CONFIG_OPTIONS, configSchema, loadConfig } from '../../agent/config.js';
import { createLogger } from '../../agent/logger.js';
import { createPowerSource } from '../../agent/power-source-factory.js';
import { createHostPowerSource } from '../../collectors/host/host-power-config.js';
import { buildFakePowercap } from '../fakes/fake-powercap.js';
import { fakeNvidiaSmiBinary, linuxCaptures } from '../fakes/fake-nvidia-smi.js';

/** Section keys owned by other parts of tokenwatt: file-only, no flags. */
const SECTIONS = new Set(['carbon', 'hostPower', 'proxy', 'engineMetrics', 'otlp']);

/** Leaf key paths of the schema: nested strict objects are descended, everything else is a leaf. */
function schemaLeaves(): string[] {
  type Node = { _zod: { def: { type: string; innerType?: Node } }; shape?: Record<string, Node> };
  const unwrap = (node: Node): Node => {
    let current = node;
    while (['default', 'prefault', 'optional'].includes(current._zod.def.type) && current._zod.def.innerType) current = current._zod.def.innerType;
    return current;
  };
  const walk = (node: Node, prefix: string): string[] =>
    Object.entries(unwrap(node).shape ?? {}).flatMap(([key, child]) => {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      const inner = unwrap(child);
      return inner._zod.def.type === 'object' ? walk(inner, path) : [path];
    });
  return walk(configSchema as unknown as Node, '');
}

/** Section keys that have a flag and env var all the same (doctor's --powercap-root before run's). */
const SECTION_OPTIONS = ['hostPower.powercapRoot'];

test('CONFIG_OPTIONS covers every schema key exactly once (sections aside), with unique flags and env vars', () => {
  const inSection = (k: string) => SECTIONS.has(k.split('.')[0] ?? k);
  const leaves = schemaLeaves();
  assert.deepEqual(CONFIG_OPTIONS.map((o) => o.key).filter((k) => !inSection(k)).sort(), leaves.filter((k) => !inSection(k)).sort());
  assert.deepEqual(CONFIG_OPTIONS.map((o) => o.key).filter(inSection), SECTION_OPTIONS);
  for (const key of SECTION_OPTIONS) assert.ok(leaves.includes(key), `${key} is a key of its section`);
  assert.equal(new Set(CONFIG_OPTIONS.map((o) => o.flag)).size, CONFIG_OPTIONS.length);
  assert.equal(new Set(CONFIG_OPTIONS.map((o) => o.env)).size, CONFIG_OPTIONS.length);
  for (const o of CONFIG_OPTIONS) {
    assert.match(o.env, /^TOKENWATT_[A-Z0-9_]+$/);
    assert.match(o.flag, /^--[a-z0-9-]+$/);
    assert.ok(o.description.length > 10, `${o.key} has a description`);
  }
});

test('the flag and env names DESIGN fixes exist', () => {
  const byFlag = new Map(CONFIG_OPTIONS.map((o) => [o.flag, o.env]));
  const fixed: [string, string][] = [
    ['--port', 'TOKENWATT_PORT'], ['--db', 'TOKENWATT_DB'], ['--power', 'TOKENWATT_POWER'],
    ['--nvml-library', 'TOKENWATT_NVML_LIBRARY'], ['--proxy-port', 'TOKENWATT_PROXY_PORT'],
    ['--upstream', 'TOKENWATT_UPSTREAM'], ['--settle-lateness', 'TOKENWATT_SETTLE_LATENESS'],
    // doctor's names for the RAPL tree, which run takes too.
    ['--powercap-root', 'TOKENWATT_POWERCAP_ROOT'],
  ];
  for (const [flag, env] of fixed) assert.equal(byFlag.get(flag), env, flag);
});

test('defaults in the table are the schema defaults', () => {
  const parsed = configSchema.parse({});
  const port = CONFIG_OPTIONS.find((o) => o.key === 'port');
  const samples = CONFIG_OPTIONS.find((o) => o.key === 'retention.samplesHours');
  assert.equal(port?.default, parsed.port);
  assert.equal(samples?.default, parsed.retention.samplesHours);
  assert.equal(CONFIG_OPTIONS.find((o) => o.key === 'power')?.defaultText, 'auto');
});

test('commander: flags parse into opts() that loadConfig understands; help shows default and env', () => {
  const command = new Command('run').exitOverride().option('--config <file>', 'config file');
  addConfigOptions(command);
  // The lead's own --config is kept, not duplicated.
  assert.equal(command.options.filter((o) => o.long === '--config').length, 1);
  command.parse(['--port', '9100', '--settle-lateness', '30', '--retention-samples-hours', '12', '--labels-user', 'team,tenant'], { from: 'user' });
  const result = loadConfig({ flags: command.opts(), env: {} });
  assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
  if (!result.ok) return;
  assert.equal(result.config.port, 9100);
  assert.equal(result.config.settleLateness, 30);
  assert.equal(result.config.retention.samplesHours, 12);
  assert.deepEqual(result.config.labels.user, ['team', 'tenant']);

  const help = command.helpInformation().replace(/\s+/g, ' ');
  assert.match(help, /--port <port> HTTP port .*\(default: 9477, env: TOKENWATT_PORT\)/);
  assert.match(help, /--settle-lateness <seconds> .*\(default: 120, env: TOKENWATT_SETTLE_LATENESS\)/);
});

test('commander: a bad value reaches loadConfig and is reported with its flag', () => {
  const command = new Command('run').exitOverride();
  addConfigOptions(command, ['port', 'db']);
  assert.deepEqual(command.options.map((o) => o.long), ['--config', '--port', '--db']);
  command.parse(['--port', 'abc'], { from: 'user' });
  const result = loadConfig({ flags: command.opts(), env: {} });
  assert.equal(result.ok, false);
  if (!result.ok) assert.deepEqual(result.errors, ["--port / TOKENWATT_PORT: must be an integer 0..65535, got 'abc' (from --port)"]);
  assert.throws(() => addConfigOptions(new Command('x'), ['nope']), /no config option 'nope'/);
});

test('run takes the nvidia-smi executable from --nvidia-smi, TOKENWATT_NVIDIA_SMI or the config file, and its power source uses it', async () => {
  const command = new Command('run').exitOverride();
  addConfigOptions(command);
  const help = command.helpInformation().replace(/\s+/g, ' ');
  assert.match(help, /--nvidia-smi <path> nvidia-smi executable .*\(default: nvidia-smi on PATH, env: TOKENWATT_NVIDIA_SMI\)/);
  command.parse(['--nvidia-smi', '/flag/nvidia-smi'], { from: 'user' });
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-config-'));
  try {
    writeFileSync(join(dir, 'c.yaml'), 'nvidiaSmi: /file/nvidia-smi\npower: nvidia-smi\n');
    const load = (input: Parameters<typeof loadConfig>[0]) => {
      const result = loadConfig(input);
      assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
      return result.config;
    };
    const configFile = join(dir, 'c.yaml');
    assert.equal(load({ configFile }).nvidiaSmi, '/file/nvidia-smi');
    assert.equal(load({ configFile, env: { TOKENWATT_NVIDIA_SMI: '/env/nvidia-smi' } }).nvidiaSmi, '/env/nvidia-smi');
    assert.equal(load({ configFile, env: { TOKENWATT_NVIDIA_SMI: '/env/nvidia-smi' }, flags: command.opts() }).nvidiaSmi, '/flag/nvidia-smi');
    assert.equal(load({}).nvidiaSmi, undefined);

    const log = createLogger({ level: 'silent' });
    // A path that is not there: the error names it (not "nvidia-smi" looked up on PATH).
    const missing = join(dir, 'bin', 'nvidia-smi');
    await assert.rejects(
      createPowerSource(load({ configFile, env: { TOKENWATT_NVIDIA_SMI: missing } }), log),
      (error: unknown) => error instanceof Error && error.message.includes(`${missing} could not be run (ENOENT)`),
    );
    // The fake nvidia-smi, named only by the config: run's source streams from it.
    const capture = linuxCaptures().find((c) => c.file.includes('h100-80gb'));
    assert.ok(capture);
    const saved = process.env.FAKE_NVIDIA_SMI_CAPTURE;
    process.env.FAKE_NVIDIA_SMI_CAPTURE = capture.path;
    try {
      const source = await createPowerSource(load({ configFile, env: { TOKENWATT_NVIDIA_SMI: fakeNvidiaSmiBinary() } }), log);
      try {
        assert.equal(source.quality().kind, 'nvidia-smi');
        assert.ok(source.quality().notes.some((n) => n.includes(fakeNvidiaSmiBinary())), source.quality().notes.join('\n'));
      } finally {
        await source.shutdown();
      }
    } finally {
      if (saved === undefined) delete process.env.FAKE_NVIDIA_SMI_CAPTURE;
      else process.env.FAKE_NVIDIA_SMI_CAPTURE = saved;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run takes the RAPL tree from --powercap-root, TOKENWATT_POWERCAP_ROOT or hostPower.powercapRoot (flag > env > file), and its host power reads it', async () => {
  const command = new Command('run').exitOverride();
  addConfigOptions(command);
  const help = command.helpInformation().replace(/\s+/g, ' ');
  assert.match(help, /--powercap-root <dir> where the RAPL powercap tree is .*\(default: \/sys\/class\/powercap, env: TOKENWATT_POWERCAP_ROOT\)/);
  command.parse(['--powercap-root', '/flag/powercap'], { from: 'user' });
  const tree = buildFakePowercap({ packages: [{ energyUj: 1_000, dram: { energyUj: 10 } }] });
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-config-'));
  try {
    const configFile = join(dir, 'c.yaml');
    writeFileSync(configFile, 'hostPower: { powercapRoot: /file/powercap, overheadW: 75 }\n');
    const load = (input: Parameters<typeof loadConfig>[0]) => {
      const result = loadConfig(input);
      assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
      return result;
    };
    const env = { TOKENWATT_POWERCAP_ROOT: tree.root };
    assert.deepEqual(load({ configFile }).config.hostPower, { powercapRoot: '/file/powercap', overheadW: 75 });
    // The env var replaces the file's tree and keeps the section's other keys.
    const fromEnv = load({ configFile, env });
    assert.deepEqual(fromEnv.config.hostPower, { powercapRoot: tree.root, overheadW: 75 });
    assert.equal(fromEnv.sources['hostPower.powercapRoot'], 'env');
    assert.equal(fromEnv.sources.hostPower, 'file', 'overheadW still comes from the file');
    assert.equal(load({ configFile, env, flags: command.opts() }).config.hostPower?.powercapRoot, '/flag/powercap');
    assert.deepEqual(load({ env }).config.hostPower, { powercapRoot: tree.root });
    // Empty counts as unset, as for every env var; no default written into the config.
    assert.equal(load({ env: { TOKENWATT_POWERCAP_ROOT: ' ' } }).config.hostPower, undefined);

    // What run does with it: the host source reads the tree the env var names.
    const host = await createHostPowerSource(load({ env }).config.hostPower ?? {});
    assert.equal(host.kind, 'rapl');
    assert.deepEqual(host.source?.quality().zones, ['package-0', 'package-0/dram']);
    assert.match(host.source?.quality().notes[0] ?? '', new RegExp(`^RAPL under ${tree.root}:`));
  } finally {
    tree.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
