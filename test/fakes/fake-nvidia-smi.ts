/** Where the fake nvidia-smi and the captures it replays live, for tests and benchmarks. */
import { chmodSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { capturedQueryTable, findSection, readCapture, type CaptureSection } from './nvidia-smi-capture.mjs';

export const FAKE_NVIDIA_SMI = fileURLToPath(new URL('./fake-nvidia-smi.mjs', import.meta.url));
export const CAPTURE_DIR = fileURLToPath(new URL('../fixtures/nvidia-smi/', import.meta.url));

/** The fake must be executable (a clone may lose the mode bit). */
export function fakeNvidiaSmiBinary(): string {
  chmodSync(FAKE_NVIDIA_SMI, 0o755);
  return FAKE_NVIDIA_SMI;
}

/** Every Linux capture in test/fixtures/nvidia-smi. */
export function linuxCaptures(): { file: string; path: string; sections: CaptureSection[] }[] {
  return readdirSync(CAPTURE_DIR)
    .filter((f) => f.startsWith('linux-') && f.endsWith('.txt'))
    .sort()
    .map((file) => ({ file, path: `${CAPTURE_DIR}${file}`, sections: readCapture(readFileSync(`${CAPTURE_DIR}${file}`, 'utf8')) }));
}

/** A captured cell of the `--query-gpu` table of `phase`, exactly as nvidia-smi printed it. */
export function capturedCell(sections: readonly CaptureSection[], phase: 'idle' | 'load', column: string): string {
  const table = capturedQueryTable(sections, phase);
  const i = table?.columns.indexOf(column) ?? -1;
  const cell = i >= 0 ? table?.rows[0]?.[i] : undefined;
  if (cell === undefined) throw new Error(`capture has no ${phase} ${column}`);
  return cell;
}

/** A captured "447.35 W" cell as a number. */
export function capturedWatts(sections: readonly CaptureSection[], phase: 'idle' | 'load', column: string): number {
  const cell = capturedCell(sections, phase, column);
  const m = /^(\d+(?:\.\d+)?) W$/.exec(cell);
  if (!m) throw new Error(`captured ${phase} ${column} is ${cell}, not watts`);
  return Number(m[1]);
}

export { findSection, capturedQueryTable };

/**
 * Sets the GPU count the fake reads from FAKE_NVIDIA_SMI_GPUS_FILE, atomically: a file rewritten in
 * place can be read empty in between (0 GPUs: every GPU reported lost).
 */
export function writeGpuCount(path: string, count: number): void {
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, String(count));
  renameSync(partial, path);
}
