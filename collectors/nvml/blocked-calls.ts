/**
 * Process-wide count of NVML worker threads that were terminated while blocked inside a driver
 * call and have not exited yet, across every NvmlPowerSource (the one `--power auto` tried and
 * gave up on included). Such a thread holds process.exit() until the driver returns, which on a
 * wedged GPU is never: the CLI asks here whether it must end the process another way
 * (agent/exit-process.ts). Kept apart from nvml-power-source.ts so that asking loads nothing.
 */
const blocked = new Set<object>();

export function markBlocked(worker: object): void {
  blocked.add(worker);
}

export function unmarkBlocked(worker: object): void {
  blocked.delete(worker);
}

/** Terminated NVML workers whose thread is still blocked in the driver. */
export function nvmlCallsBlocked(): number {
  return blocked.size;
}
