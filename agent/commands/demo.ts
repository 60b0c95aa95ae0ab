import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { SimulatedGpuNode } from '../../collectors/simulated/simulated-gpu-node.js';
import { carbonConfigSchema } from '../../model/carbon/carbon-config.js';
import { addConfigOptions, type TokenwattConfig } from '../config.js';
import { defaultDemoNodeConfig, demoReplicaMap, DemoWorkload } from '../demo-workload.js';
import { DemoRecordPoster } from '../demo-record-poster.js';
import { DemoSummaryPrinter } from '../demo-summary.js';
import { loadConfigWithSources, runAgentUntilSignal } from '../run-agent.js';
import Database from '../sqlite-driver.js';
import type { ConfigSource } from '../config.js';
import { crossCheckConfig, keyName } from '../config-checks.js';
import { CONFIG_OPTION_BY_KEY } from '../config-options.js';

/**
 * Settlement defaults of the demo (flags, env and file still win): short enough that the first
 * table shows within a minute, long enough that most simulated requests (posted when they end)
 * arrive before their first period settles. Longer ones are counted as late, as in production.
 */
const DEMO_DEFAULTS: Partial<Record<keyof TokenwattConfig, unknown>> = { settleLateness: 30, settlePeriod: 5, port: 9477, host: '127.0.0.1' };

/** Exit status when the demo refuses its settings (as for an invalid configuration). */
const DEMO_USAGE_EXIT = 2;

/**
 * Host overhead of the simulated 8-GPU server (CPUs, DRAM, NICs, fans) in watts: an assumption of
 * the demo, of the order of a DGX-class host's non-GPU draw under load; shown as estimated.
 */
const DEMO_HOST_OVERHEAD_W = 900;

/** `tokenwatt demo` (what `npm start` runs): the agent on a SIMULATED 8-GPU node with a built-in workload. */
export function demoCommand(): Command {
  const command = new Command('demo')
    .description('Run the agent on a SIMULATED GPU node (8 x H100, three model tiers) with a built-in workload. Every figure is simulated, not measured.')
    .addOption(new Option('--seed <n>', 'seed of the simulated workload').default(1).argParser(wholeNumber(0, 2 ** 31 - 1)))
    .addOption(new Option('--summary-every <seconds>', 'print the summary table this often (0: never)').default(10).argParser(wholeNumber(0, 86_400)))
    .addOption(new Option('--duration <seconds>', 'stop after this many seconds (default: run until Ctrl-C)').argParser(wholeNumber(1, 31_536_000)));
  addConfigOptions(command, ['port', 'host', 'db', 'settleLateness', 'settlePeriod', 'sampleRateHz', 'logLevel', 'ingestToken', 'labels.cap'], {
    host: `${String(DEMO_DEFAULTS.host)}, this machine only; --host 0.0.0.0 serves every interface`,
    db: 'a new file in a temporary directory; a given one must hold no power samples yet',
    settleLateness: String(DEMO_DEFAULTS.settleLateness),
    settlePeriod: String(DEMO_DEFAULTS.settlePeriod),
  });
  command.action(async (flags: Record<string, unknown>) => {
    const { config: loaded, sources, warnings: loadedWarnings } = loadConfigWithSources(flags);
    const startedAtMs = Date.now();
    if (sources.db !== 'default') refuseUsedLedger(loaded.db, sources.db);
    const seed = flags.seed as number;
    const node = new SimulatedGpuNode(defaultDemoNodeConfig({ seed, samplePeriodMs: Math.round(1000 / loaded.sampleRateHz) }));
    const replicas = demoReplicaMap().map((r) => ({ model: r.model, gpus: [...r.gpuUuids], tier: r.tier }));
    const config: TokenwattConfig = {
      ...loaded,
      ...Object.fromEntries(Object.entries(DEMO_DEFAULTS).filter(([key]) => (sources[key] ?? 'default') === 'default')),
      // A fresh ledger per demo run unless --db / TOKENWATT_DB names one.
      db: sources.db === 'default' ? join(mkdtempSync(join(os.tmpdir(), 'tokenwatt-demo-')), 'demo.db') : loaded.db,
      replicas: [...loaded.replicas, ...replicas],
      // The simulated node's host: a configured overhead (labelled estimated), not this machine's
      // real RAPL counters, which would mix a real CPU into simulated figures.
      hostPower: { rapl: 'off', overheadW: loaded.hostPower?.overheadW ?? DEMO_HOST_OVERHEAD_W },
      // Emissions need a grid: the world average from the shipped table unless one is configured.
      carbon: loaded.carbon ?? carbonConfigSchema.parse({ region: 'world', site: 'demo (simulated)' }),
    };
    // The checks' warnings are about the config as the demo runs it (its own bind address, say).
    const loadedChecks = new Set(crossCheckConfig(loaded, sources).warnings);
    const warnings = [...ignoredByDemo(loaded, sources), ...crossCheckConfig(config, sources).warnings, ...loadedWarnings.filter((w) => !loadedChecks.has(w))];
    const summaryEvery = flags.summaryEvery as number;
    const durationS = flags.duration as number | undefined;
    await runAgentUntilSignal(config, {
      powerSource: node,
      onStarted: (agent, log) => {
        const workload = new DemoWorkload({ node, seed, onError: (error) => log.warn({ err: error }, 'demo workload tick failed') });
        // The address the demo's own clients (the poster, the banner's curl lines) reach the agent on.
        const address = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
        const poster = new DemoRecordPoster({ host: address, port: agent.port, token: config.ingestToken, bodyLimitBytes: config.bodyLimitBytes, log: log.child({ component: 'demo-poster' }) });
        const unsubscribe = node.onRequestDone((record) => poster.add(record));
        workload.start();
        const printer = new DemoSummaryPrinter({ dbPath: config.db, node: config.node, startedAtMs, address, port: agent.port, workload, health: () => agent.healthCounts(), taskIdleMs: agent.taskIdleMs, tables: { everyS: summaryEvery, figuresAfterS: config.settleLateness + config.settlePeriod, latenessS: config.settleLateness } });
        process.stdout.write(printer.banner());
        const timer = summaryEvery > 0 ? setInterval(() => process.stdout.write(printer.render()), summaryEvery * 1000) : undefined;
        timer?.unref();
        const stopTimer = durationS !== undefined ? setTimeout(() => process.kill(process.pid, 'SIGTERM'), durationS * 1000) : undefined;
        return async () => {
          if (timer) clearInterval(timer);
          if (stopTimer) clearTimeout(stopTimer);
          workload.dispose();
          unsubscribe();
          await poster.stop(); // the agent still serves: what the node finished is posted first
          if (summaryEvery > 0) process.stdout.write(printer.render());
          printer.close();
        };
      },
    }, warnings);
  });
  return command;
}

/** The keys that choose or serve a measured power source: the demo's GPUs are simulated. */
const GPU_SOURCE_KEYS = ['nvmlLibrary', 'nvidiaSmi', 'replayKeepTimestamps', 'replayLoop', 'replayNvidiaSmiUtcOffset'] as const;

/**
 * The settings the demo cannot honour, each named with where it came from: the demo runs its own
 * simulated node whatever `power` says, and its host is simulated too (only hostPower.overheadW,
 * the simulated host's draw, is taken). Said, not dropped silently.
 */
function ignoredByDemo(loaded: TokenwattConfig, sources: Readonly<Record<string, ConfigSource>>): string[] {
  const from = (key: string): string => {
    const source = sources[key];
    return source === 'env' ? (CONFIG_OPTION_BY_KEY.get(key)?.env ?? 'the environment') : source === 'flag' ? (CONFIG_OPTION_BY_KEY.get(key)?.flag ?? 'a flag') : 'the config file';
  };
  const warnings: string[] = [];
  const power = loaded.power;
  if (sources.power !== undefined && sources.power !== 'default' && power.kind !== 'simulated') {
    const setting = power.kind === 'replay' ? `replay:${power.file}` : power.kind;
    warnings.push(`${keyName('power')}: ${setting} (from ${from('power')}) is ignored: the demo always runs its simulated node; \`tokenwatt run\` uses this setting`);
  }
  for (const key of GPU_SOURCE_KEYS) {
    if (sources[key] !== undefined && sources[key] !== 'default') warnings.push(`${keyName(key)} (from ${from(key)}) is ignored: the demo's GPUs are simulated`);
  }
  const host = loaded.hostPower;
  // rapl: off and a powercapRoot beside it are what the demo does anyway.
  const raplKeys = host === undefined || host.rapl === 'off' ? [] : (['rapl', 'powercapRoot'] as const).filter((k) => host[k] !== undefined).map((k) => `hostPower.${k}`);
  if (raplKeys.length > 0) {
    // powercapRoot may come from --powercap-root / TOKENWATT_POWERCAP_ROOT too: each named with its own.
    const froms = raplKeys.map(from);
    const named = froms.every((f) => f === froms[0]) ? `${raplKeys.join(', ')} (from ${froms[0] ?? 'the config file'})` : raplKeys.map((k, i) => `${k} (from ${froms[i] ?? 'the config file'})`).join(', ');
    warnings.push(`${named} ${raplKeys.length === 1 ? 'is' : 'are'} ignored: the demo's host is simulated, and this machine's RAPL counters would mix a real CPU into its figures; hostPower.overheadW sets the simulated host's draw (default ${DEMO_HOST_OVERHEAD_W} W)`);
  }
  return warnings;
}

/**
 * A demo stands alone: on a ledger that already holds power samples, /metrics (seeded from the
 * ledger at start) and the settled figures would mix earlier runs into this one's, while the
 * summary table covers this run only. Such a ledger is refused (exit 2) before anything starts.
 */
function refuseUsedLedger(path: string, source: ConfigSource | undefined): void {
  if (!existsSync(path)) return;
  let holdsSamples = false;
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
    try {
      holdsSamples = db.prepare('SELECT 1 FROM power_samples LIMIT 1').get() !== undefined;
    } finally {
      db.close();
    }
  } catch {
    // Not a ledger with samples (an empty file, no power_samples table): the agent says what is wrong when it opens it.
    return;
  }
  if (!holdsSamples) return;
  const from = source === 'flag' ? '--db' : source === 'env' ? 'TOKENWATT_DB' : 'the config file\'s db';
  process.stderr.write(
    `tokenwatt demo: the ledger ${path} (from ${from}) already holds power samples. A demo must stand alone: ` +
      'its /metrics counters, seeded from the ledger, would mix earlier runs into this one, while its summary table covers this run only. ' +
      `Give a new file (e.g. --db ${join(os.tmpdir(), `tokenwatt-demo-${process.pid}.db`)}), or leave --db and TOKENWATT_DB unset for a fresh temporary ledger.\n`,
  );
  process.exit(DEMO_USAGE_EXIT);
}

/** A commander argument parser for a whole number in [min, max]: a bad value is a usage error (exit 2), named by commander. */
function wholeNumber(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (text.trim() === '' || !Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}.`);
    return value;
  };
}
