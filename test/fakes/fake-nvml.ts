/**
 * Builds the fake libnvidia-ml.so.1 (test/fakes/fake-nvml.c) with gcc and lays out per-test copies
 * of it, each beside its own scenario file, so that tests in one process never share fake state.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NVML_SYMBOLS_USED } from '../../collectors/nvml/nvml-symbols.js';

const SOURCE = fileURLToPath(new URL('./fake-nvml.c', import.meta.url));

/** One fake GPU. Omitted fields take the fake's defaults (an H100 at 70 W, every feature present). */
export interface FakeGpu {
  readonly uuid?: string;
  readonly name?: string;
  /** nvmlDeviceArchitecture_t: 6 Turing, 7 Ampere, 8 Ada, 9 Hopper. */
  readonly arch?: number;
  readonly cc?: readonly [number, number];
  readonly limitMw?: number;
  readonly migUuids?: readonly string[];
  /** From this time the MIG devices are these instead (created or destroyed at run time; none: MIG off). */
  readonly migAt?: { readonly atMs: number; readonly uuids: readonly string[] };
  /** Power trace in mW, one value per trace step, repeated. */
  readonly powerMw?: readonly number[];
  readonly instantSupported?: boolean;
  /** false: nvmlDeviceGetPowerUsage (and NVML_FI_DEV_POWER_AVERAGE) answer NOT_SUPPORTED. */
  readonly powerUsageSupported?: boolean;
  /** NVML_FI_DEV_POWER_INSTANT stops answering at this time. */
  readonly instantOffAtMs?: number;
  readonly energySupported?: boolean;
  readonly energyOffsetMj?: number;
  readonly resetAtMs?: number;
  /** Counter reads in [fromMs, untilMs) are `mj` low (a glitch, not a reset). */
  readonly glitch?: { readonly fromMs: number; readonly untilMs: number; readonly mj: number };
  readonly lostAtMs?: number;
  /** ... and answers again from this time. */
  readonly recoveredAtMs?: number;
  /**
   * Lost from the moment a configured hang begins until NVML has refused `refusedLookups` handle
   * look-ups of it (by index or UUID): a loss tied to events, whatever the timing.
   */
  readonly lostOnHang?: { readonly refusedLookups: number };
  /**
   * The GPU is reset at this time: handles obtained before answer GPU_IS_LOST from then on, a
   * handle obtained afterwards works. With `needsInit`, NVML finds the GPU again only in an NVML
   * session begun after the reset (all nvmlInit_v2 matched by nvmlShutdown, then nvmlInit_v2).
   */
  readonly handleInvalidAfter?: { readonly ms: number; readonly needsInit?: boolean };
}

export interface FakeHang {
  /** Any function the fake exports (every NVML symbol tokenwatt binds). */
  readonly fn: (typeof NVML_SYMBOLS_USED)[number];
  /** GPU index, or -1 for any (library-wide functions match only -1). */
  readonly gpu: number;
  readonly afterMs: number;
  readonly durationMs: number;
  readonly count: number;
  /** Matching calls let through before the hanging ones. Default 0. */
  readonly skip?: number;
}

export interface FakeNvmlScenario {
  readonly initRc?: number;
  /**
   * The driver reloads right after the n-th nvmlDeviceGetTotalEnergyConsumption answer (all GPUs
   * together): calls in the NVML session from before answer NVML_ERROR_UNINITIALIZED, a session
   * begun afterwards works, and every energy counter restarts from 0 at the reload.
   */
  readonly reloadAfterReads?: number;
  readonly driverVersion?: string;
  readonly traceStepMs?: number;
  readonly gpus: readonly FakeGpu[];
  /** From `atMs` on, NVML counts `count` GPUs (more than `gpus`: hot-added ones, with the fake's defaults). */
  readonly gpusAt?: { readonly count: number; readonly atMs: number };
  readonly hangs?: readonly FakeHang[];
}

/** The scenario file format that fake-nvml.c reads (see its header comment). */
export function renderScenario(scenario: FakeNvmlScenario): string {
  const lines = ['# fake NVML scenario written by test/fakes/fake-nvml.ts'];
  if (scenario.initRc !== undefined) lines.push(`init_rc ${scenario.initRc}`);
  if (scenario.reloadAfterReads !== undefined) lines.push(`reload_after_reads ${scenario.reloadAfterReads}`);
  if (scenario.driverVersion) lines.push(`driver_version ${scenario.driverVersion}`);
  if (scenario.traceStepMs) lines.push(`trace_step_ms ${scenario.traceStepMs}`);
  lines.push(`gpus ${scenario.gpus.length}`);
  if (scenario.gpusAt) lines.push(`gpus_at_ms ${scenario.gpusAt.count} ${scenario.gpusAt.atMs}`);
  scenario.gpus.forEach((g, i) => {
    if (g.uuid) lines.push(`uuid ${i} ${g.uuid}`);
    if (g.name) lines.push(`name ${i} ${g.name}`);
    if (g.arch !== undefined) lines.push(`arch ${i} ${g.arch}`);
    if (g.cc) lines.push(`cc ${i} ${g.cc[0]} ${g.cc[1]}`);
    if (g.limitMw !== undefined) lines.push(`limit_mw ${i} ${g.limitMw}`);
    if (g.migUuids?.length) lines.push(`mig ${i} ${g.migUuids.join(' ')}`);
    if (g.migAt) lines.push(`mig_at_ms ${i} ${g.migAt.atMs} ${g.migAt.uuids.join(' ')}`.trimEnd());
    if (g.powerMw?.length) lines.push(`power_mw ${i} ${g.powerMw.map((p) => Math.round(p)).join(' ')}`);
    if (g.instantSupported === false) lines.push(`instant ${i} 0`);
    if (g.powerUsageSupported === false) lines.push(`power_usage ${i} 0`);
    if (g.instantOffAtMs !== undefined) lines.push(`instant_off_at_ms ${i} ${g.instantOffAtMs}`);
    if (g.energySupported === false) lines.push(`energy ${i} 0`);
    if (g.energyOffsetMj !== undefined) lines.push(`energy_offset_mj ${i} ${g.energyOffsetMj}`);
    if (g.resetAtMs !== undefined) lines.push(`reset_at_ms ${i} ${g.resetAtMs}`);
    if (g.glitch) lines.push(`glitch ${i} ${g.glitch.fromMs} ${g.glitch.untilMs} ${g.glitch.mj}`);
    if (g.lostAtMs !== undefined) lines.push(`lost_at_ms ${i} ${g.lostAtMs}`);
    if (g.recoveredAtMs !== undefined) lines.push(`recovered_at_ms ${i} ${g.recoveredAtMs}`);
    if (g.lostOnHang) lines.push(`lost_on_hang ${i} ${g.lostOnHang.refusedLookups}`);
    if (g.handleInvalidAfter) lines.push(`handle_invalid_after_ms ${i} ${g.handleInvalidAfter.ms}${g.handleInvalidAfter.needsInit ? ' init' : ''}`);
  });
  for (const h of scenario.hangs ?? []) lines.push(`hang ${h.fn} ${h.gpu} ${h.afterMs} ${h.durationMs} ${h.count} ${h.skip ?? 0}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Compiles the fake once per source version into os.tmpdir() (cached by the source's hash; the
 * rename makes concurrent builds safe) and returns the path of the built library.
 */
export function buildFakeNvml(): string {
  const source = readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `tokenwatt-fake-nvml-${hash}`);
  const lib = join(dir, 'libnvidia-ml.so.1');
  if (existsSync(lib)) return lib;
  mkdirSync(dir, { recursive: true });
  const partial = `${lib}.${process.pid}.partial`;
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-fvisibility=hidden', '-o', partial, SOURCE, '-lpthread'], { stdio: 'pipe' });
  renameSync(partial, lib);
  return lib;
}

/** A private copy of the fake library with its scenario beside it. */
export interface FakeNvmlInstall {
  readonly dir: string;
  readonly libraryPath: string;
  readonly scenarioPath: string;
  cleanup(): void;
}

export function installFakeNvml(scenario: FakeNvmlScenario): FakeNvmlInstall {
  const built = buildFakeNvml();
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-nvml-'));
  const libraryPath = join(dir, 'libnvidia-ml.so.1');
  const scenarioPath = join(dir, 'fake-nvml-scenario.txt');
  copyFileSync(built, libraryPath);
  writeFileSync(scenarioPath, renderScenario(scenario));
  return { dir, libraryPath, scenarioPath, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Exported dynamic symbols of a shared library (nm -D), to compare with a real driver's. */
export function exportedSymbols(libraryPath: string): string[] {
  const out = execFileSync('nm', ['-D', '--defined-only', libraryPath], { encoding: 'utf8' });
  return out.split('\n').map((l) => l.trim().split(/\s+/)[2]).filter((s): s is string => Boolean(s));
}
