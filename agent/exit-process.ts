import { createRequire } from 'node:module';
import { nvmlCallsBlocked } from '../collectors/nvml/blocked-calls.js';
import type { Log } from './logger.js';

/**
 * End the process with `code`. process.exit() joins every worker thread first, so an NVML worker
 * blocked in a hung driver call would hold it until the driver returns (forever on a wedged GPU).
 * When such a call is left, the process ends at once through libc's _exit(code) instead, which
 * keeps the exit status; where that cannot be called, through SIGKILL (status 137). Logs and
 * stderr are written synchronously, and the ledger is closed (or never opened) by the time this
 * is called, so ending hard loses nothing.
 */
export function exitProcess(code: number, log?: Log): never {
  const blocked = nvmlCallsBlocked();
  if (blocked > 0) {
    log?.warn({ stuck: blocked, code }, 'driver calls still hung: ending the process without waiting for them');
    hardExit(code);
  }
  process.exit(code);
}

function hardExit(code: number): never {
  try {
    // koffi is already loaded by the NVML worker that hung; loaded here only on this path.
    const koffi = createRequire(import.meta.url)('koffi') as { load(path: string): { func(signature: string): (status: number) => void } };
    koffi.load('libc.so.6').func('void _exit(int)')(code);
  } catch {
    // not glibc, or koffi unusable: the signal below still ends the process
  }
  process.kill(process.pid, 'SIGKILL');
  process.exit(code); // not reached
}
