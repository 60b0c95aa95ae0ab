import { spawn, type ChildProcess } from 'node:child_process';
import { killGroupAtExit } from './child-groups.js';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { RestartBackoff } from '../restart-backoff.js';

/** Why a supervised child was (or will be) restarted. */
export interface LineProcessProblem {
  /** hang: no useful line for too long; exited: the child ended; spawn: it could not be started. */
  readonly reason: 'hang' | 'exited' | 'spawn';
  readonly message: string;
}

export interface SupervisedLineProcessOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** A running child that made no progress (see markProgress) for this long is killed as hung. */
  readonly stallMs: number;
  /** Grace for the first useful line after a start (drivers without persistence mode are slow). */
  readonly startupMs: number;
  readonly backoffMs: { readonly initial: number; readonly max: number };
  /** Progress after this much uptime resets the back-off. Default 30 s. */
  readonly stableMs?: number;
  /** stop(): time the child gets after SIGTERM before SIGKILL. Default 1 s. */
  readonly stopGraceMs?: number;
  /**
   * Time to wait for a child's exit after SIGKILL before giving up on it (a child stuck in the
   * driver, D state): stop() returns, and the watchdog leaves a child killed as hung behind and
   * starts a replacement. Default 2 s.
   */
  readonly stopGiveUpMs?: number;
  /** Children left behind after SIGKILL and still alive, beyond which no replacement starts until one exits. Default 3. */
  readonly maxStuckChildren?: number;
  /**
   * Called as each child is spawned, before any line of it: `restart` is false for the first
   * child, true for one this supervisor started in place of a child that hung or exited.
   */
  readonly onStart?: (restart: boolean) => void;
  readonly onLine: (line: string) => void;
  readonly onProblem: (problem: LineProcessProblem) => void;
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
}

const STDERR_TAIL = 2048;

/**
 * Keeps one long-lived child process (spawned with an argument vector, never through a shell)
 * producing lines. A watchdog kills it when it stops making progress (reported once per child);
 * when it exits or cannot be started it is restarted with exponential back-off. A child killed as
 * hung that does not exit within stopGiveUpMs (stuck in the driver) is left behind and replaced,
 * up to maxStuckChildren such children alive at once. Problems go to `onProblem`; nothing throws.
 */
export class SupervisedLineProcess {
  private child: ChildProcess | null = null;
  private startedAt = 0;
  private lastProgress = 0;
  private progressed = false;
  private stopping = false;
  private watchdog: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly backoff: RestartBackoff;
  /** Children the watchdog killed, with when: their exit is the hang already reported, not a second problem. */
  private readonly killedAsHung = new WeakMap<ChildProcess, number>();
  /** Children killed as hung that did not exit within stopGiveUpMs: left behind, still alive. */
  private readonly leftBehind = new Set<ChildProcess>();
  private stuckReported = false;
  private starts = 0;

  constructor(private readonly options: SupervisedLineProcessOptions) {
    this.backoff = new RestartBackoff(options.backoffMs.initial, options.backoffMs.max);
  }

  start(): void {
    this.stopping = false;
    this.spawnChild();
    this.watchdog = setInterval(() => this.check(), Math.max(20, Math.min(1000, this.options.stallMs / 4)));
    this.watchdog.unref();
  }

  /** The owner saw a useful line: the child is alive and well. */
  markProgress(): void {
    const now = Date.now();
    this.lastProgress = now;
    this.progressed = true;
    if (now - this.startedAt >= (this.options.stableMs ?? 30_000)) this.backoff.reset();
  }

  /** How many times the child has been started. */
  get startCount(): number {
    return this.starts;
  }

  /**
   * Stops supervising and ends the child: SIGTERM, SIGKILL after a grace, and a bounded wait for
   * its exit. Never hangs: a child that was never spawned (no pid: the binary is missing; its
   * 'error' comes later and emits no 'exit') returns at once, and one that survives SIGKILL (stuck
   * in the driver) is logged and left behind.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.watchdog = null;
    this.restartTimer = null;
    const child = this.child;
    this.child = null;
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const timers: NodeJS.Timeout[] = [];
    const graceMs = this.options.stopGraceMs ?? 1000;
    const giveUpMs = this.options.stopGiveUpMs ?? 2000;
    const ended = await new Promise<boolean>((resolve) => {
      child.once('exit', () => resolve(true));
      child.once('error', () => resolve(true)); // e.g. it could not be signalled: no 'exit' to wait for
      timers.push(setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs));
      timers.push(setTimeout(() => resolve(false), graceMs + giveUpMs));
      signalGroup(child, 'SIGTERM');
    });
    for (const timer of timers) clearTimeout(timer);
    if (!ended) {
      this.options.log?.error({ command: this.options.command, pid: child.pid },
        `${this.options.command} (pid ${child.pid}) did not exit ${giveUpMs} ms after SIGKILL (stuck in the kernel or driver?); left behind`);
    }
  }

  private spawnChild(): void {
    this.starts++;
    this.options.onStart?.(this.starts > 1);
    this.startedAt = Date.now();
    this.lastProgress = this.startedAt;
    this.progressed = false;
    let stderr = '';
    let ended = false;
    const child = spawn(this.options.command, [...this.options.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.options.env ?? process.env,
      // Its own process group, signalled as a whole: a wrapper script that runs nvidia-smi without
      // `exec` (e.g. `chroot /run/nvidia/driver nvidia-smi "$@"`) must not leave it running.
      detached: true,
    });
    killGroupAtExit(child);
    this.child = child;
    const end = (problem: LineProcessProblem | null): void => {
      if (ended) return;
      ended = true;
      if (this.child !== child) {
        // A child left behind after SIGKILL finally ended: its replacement runs already, unless
        // too many stuck children held the restart back.
        if (this.leftBehind.delete(child)) {
          this.options.log?.info({ command: this.options.command, pid: child.pid }, `${this.options.command} (pid ${child.pid}), left behind as hung, has exited`);
          if (!this.stopping && !this.child) this.scheduleRestart();
        }
        return;
      }
      this.child = null;
      if (this.stopping) return;
      if (problem) this.options.onProblem(problem);
      this.scheduleRestart();
    };
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-STDERR_TAIL); });
    if (child.stdout) createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      if (this.child === child) this.options.onLine(line);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      end({ reason: 'spawn', message: `could not run ${this.options.command}: ${error.code ?? ''} ${error.message}`.trim() });
    });
    child.on('exit', (code, signal) => {
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const tail = stderr.trim().split('\n').slice(-3).join(' | ');
      end(this.killedAsHung.has(child) ? null : { reason: 'exited', message: `${this.options.command} ${why}${tail ? `: ${tail}` : ''}` });
    });
  }

  private check(): void {
    const child = this.child;
    if (!child || this.stopping) return;
    const killedAt = this.killedAsHung.get(child);
    if (killedAt !== undefined) {
      // Reported and SIGKILLed once already; its exit restarts it. One that does not exit (stuck
      // in the driver) is given up on after stopGiveUpMs, and a replacement is started.
      const giveUpMs = this.options.stopGiveUpMs ?? 2000;
      if (Date.now() - killedAt <= giveUpMs) return;
      this.child = null;
      this.leftBehind.add(child);
      this.options.log?.error({ command: this.options.command, pid: child.pid },
        `${this.options.command} (pid ${child.pid}) did not exit ${giveUpMs} ms after SIGKILL (stuck in the kernel or driver?); left behind, starting a new one`);
      this.scheduleRestart();
      return;
    }
    const limit = this.progressed ? this.options.stallMs : Math.max(this.options.startupMs, this.options.stallMs);
    const silentFor = Date.now() - this.lastProgress;
    if (silentFor <= limit) return;
    this.killedAsHung.set(child, Date.now());
    this.options.onProblem({
      reason: 'hang',
      message: `${this.options.command} gave no usable line for ${silentFor} ms${this.progressed ? '' : ' after starting'}; killed and restarting it`,
    });
    signalGroup(child, 'SIGKILL');
  }

  private scheduleRestart(): void {
    if (this.stopping || this.restartTimer) return;
    const maxStuck = this.options.maxStuckChildren ?? 3;
    if (this.leftBehind.size >= maxStuck) {
      if (!this.stuckReported) {
        this.stuckReported = true;
        this.options.log?.error({ command: this.options.command, stuck: this.leftBehind.size },
          `${this.leftBehind.size} ${this.options.command} processes killed as hung are still alive; no new one until one exits`);
      }
      return; // the exit of a left-behind child calls us again
    }
    this.stuckReported = false;
    const delay = this.backoff.next();
    this.options.log?.warn({ command: this.options.command, delayMs: delay }, 'restarting the child process');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.stopping) this.spawnChild();
    }, delay);
    this.restartTimer.unref();
  }
}

/**
 * Signals the child's process group (it leads one: spawned detached), so that whatever a wrapper
 * script started goes too. Falls back to the child alone when the group cannot be signalled
 * (already gone, or not spawned).
 */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid !== undefined) {
    try {
      process.kill(-child.pid, signal);
      return;
    } catch {
      // ESRCH: the group is gone; the child's own kill() below reports nothing either
    }
  }
  child.kill(signal);
}
