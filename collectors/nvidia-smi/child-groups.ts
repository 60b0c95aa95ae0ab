import type { ChildProcess } from 'node:child_process';

/**
 * nvidia-smi children run in their own process groups (spawned detached), so a terminal's Ctrl-C
 * or a SIGTERM to the agent no longer reaches them on its own. Every live group is killed when
 * this process exits or is ended by SIGINT, SIGTERM or SIGHUP, so a hung nvidia-smi (or a wrapper
 * script's child) does not outlive the agent or `doctor`. A SIGKILL of the agent still leaves them:
 * Node has no way to ask the kernel to end them with it.
 */
const liveGroups = new Set<ChildProcess>();
const ENDING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let hooked = false;

/** Kill the child's group when this process ends, until the child has exited. */
export function killGroupAtExit(child: ChildProcess): void {
  if (child.pid === undefined) return;
  liveGroups.add(child);
  child.once('exit', () => liveGroups.delete(child));
  child.once('error', () => liveGroups.delete(child));
  if (hooked) return;
  hooked = true;
  process.on('exit', killLiveGroups);
  for (const signal of ENDING_SIGNALS) process.on(signal, endedBy);
}

/** The number of child groups that would be killed now (for tests). */
export function liveGroupCount(): number {
  return liveGroups.size;
}

function endedBy(signal: NodeJS.Signals): void {
  killLiveGroups();
  // A process with its own handler (the agent's `run`) shuts down its way. Otherwise this listener
  // alone stopped the signal's default action: take it away and raise the signal again.
  if (process.listenerCount(signal) > 1) return;
  for (const s of ENDING_SIGNALS) process.removeListener(s, endedBy);
  process.removeListener('exit', killLiveGroups);
  hooked = false;
  process.kill(process.pid, signal);
}

function killLiveGroups(): void {
  for (const child of liveGroups) {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // ESRCH: the group is gone already
    }
  }
  liveGroups.clear();
}
