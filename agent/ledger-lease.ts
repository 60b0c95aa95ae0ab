import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Database as Db } from 'better-sqlite3';

/**
 * The writer lease: one agent writes a ledger at a time. A second writer would settle the same
 * periods from its own idea of `settled_until` and fail on every tick, so the agent that opens a
 * ledger writes itself into `agent_state` (key `writer`) in an IMMEDIATE transaction, refreshes a
 * heartbeat while it runs, and removes the row when it closes. Readers (export) take no lease.
 *
 * A holder is taken over when it is stale: its heartbeat is older than the stale time, or it ran
 * on this machine (same host name, boot and pid namespace) and its process is gone.
 */

export const WRITER_KEY = 'writer';

/** A holder whose heartbeat is older than this is taken over (the agent beats every 10 s). */
export const DEFAULT_LEASE_STALE_MS = 60_000;

export interface LeaseHolder {
  readonly host: string;
  readonly pid: number;
  /** Boot id and pid namespace: a pid is only checked for liveness when both match ours. */
  readonly boot: string;
  readonly pidNamespace: string;
  /** Random per open, so two opens in one process (or a recycled pid) are told apart. */
  readonly token: string;
  readonly startedMs: number;
  readonly heartbeatMs: number;
}

/** A second writer was refused: another live agent holds the ledger. */
export class LedgerLockedError extends Error {
  constructor(
    message: string,
    readonly holder: LeaseHolder,
  ) {
    super(message);
    this.name = 'LedgerLockedError';
  }
}

/** Tokens of the leases held by ledgers open in this process. */
const heldHere = new Set<string>();

function readOr(read: () => string, fallback: string): string {
  try {
    return read().trim();
  } catch {
    return fallback;
  }
}

const machine = {
  host: hostname(),
  boot: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), ''),
  pidNamespace: readOr(() => readlinkSync('/proc/self/ns/pid'), ''),
};

function sameMachine(holder: LeaseHolder): boolean {
  return holder.host === machine.host && holder.boot === machine.boot && holder.pidNamespace === machine.pidNamespace;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/** Why a holder may be taken over, or null when it is live. */
export function staleReason(holder: LeaseHolder, nowMs: number, staleMs: number): string | null {
  const age = nowMs - holder.heartbeatMs;
  if (age > staleMs) return `its last heartbeat is ${Math.round(age / 1000)} s old`;
  if (!sameMachine(holder)) return null;
  if (holder.pid === process.pid) return heldHere.has(holder.token) ? null : 'it was an earlier process with this pid';
  return processAlive(holder.pid) ? null : `process ${holder.pid} is gone`;
}

export function describeHolder(h: LeaseHolder, nowMs: number): string {
  return `pid ${h.pid} on host ${h.host}, since ${new Date(h.startedMs).toISOString()}, last heartbeat ${Math.max(0, Math.round((nowMs - h.heartbeatMs) / 1000))} s ago`;
}

function parse(value: string | undefined): LeaseHolder | null {
  if (value === undefined) return null;
  try {
    const h = JSON.parse(value) as Partial<LeaseHolder>;
    if (typeof h.pid !== 'number' || typeof h.token !== 'string' || typeof h.heartbeatMs !== 'number') return null;
    return { host: String(h.host ?? ''), pid: h.pid, boot: String(h.boot ?? ''), pidNamespace: String(h.pidNamespace ?? ''), token: h.token, startedMs: Number(h.startedMs ?? 0), heartbeatMs: h.heartbeatMs };
  } catch {
    return null;
  }
}

const GET = 'SELECT value FROM agent_state WHERE key = ?';
const SET = 'INSERT INTO agent_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value';

function lockedError(path: string, current: LeaseHolder, nowMs: number, staleMs: number): LedgerLockedError {
  return new LedgerLockedError(
    `cannot open the ledger ${path}: another tokenwatt agent writes to it (${describeHolder(current, nowMs)}) ` +
      `(stop that agent, or give this one another --db / TOKENWATT_DB; a writer that stops its heartbeat is taken over after ${Math.round(staleMs / 1000)} s)`,
    current,
  );
}

/** The lease one open ledger holds. */
export class WriterLease {
  private lastBeatMs: number;

  private constructor(
    private readonly db: Db,
    private holder: LeaseHolder,
    /** The stale holder this open took over, if any (for a warning). */
    readonly takenOver: { holder: LeaseHolder; reason: string } | null,
  ) {
    this.lastBeatMs = holder.heartbeatMs;
  }

  /**
   * Refuse, reading only, a ledger whose lease a live agent holds: called before the migrations and
   * any other write, so that a refused agent (a newer one, say, during an upgrade) changes nothing
   * under the live one. `take` checks again, inside its transaction.
   */
  static assertFree(db: Db, path: string, nowMs: number, staleMs: number): void {
    const row = db.prepare(GET).get(WRITER_KEY) as { value: string } | undefined;
    const current = parse(row?.value);
    if (current !== null && staleReason(current, nowMs, staleMs) === null) throw lockedError(path, current, nowMs, staleMs);
  }

  /**
   * Take the lease in one IMMEDIATE transaction, or throw {@link LedgerLockedError} naming the
   * live holder. `agent_state` must exist (call after the migrations).
   */
  static take(db: Db, path: string, nowMs: number, staleMs: number): WriterLease {
    const mine: LeaseHolder = { ...machine, pid: process.pid, token: randomUUID(), startedMs: nowMs, heartbeatMs: nowMs };
    const takenOver = db.transaction(() => {
      const row = db.prepare(GET).get(WRITER_KEY) as { value: string } | undefined;
      const current = parse(row?.value);
      let over: { holder: LeaseHolder; reason: string } | null = null;
      if (current !== null) {
        const reason = staleReason(current, nowMs, staleMs);
        if (reason === null) throw lockedError(path, current, nowMs, staleMs);
        over = { holder: current, reason };
      }
      db.prepare(SET).run(WRITER_KEY, JSON.stringify(mine));
      return over;
    }).immediate();
    heldHere.add(mine.token);
    return new WriterLease(db, mine, takenOver);
  }

  get token(): string {
    return this.holder.token;
  }

  /**
   * Refresh the heartbeat (at most every `everyMs`). Returns the holder that took the lease over
   * when it is no longer ours (this process stalled past the stale time), else null.
   */
  beat(nowMs: number, everyMs: number): LeaseHolder | null {
    if (nowMs - this.lastBeatMs < everyMs && nowMs >= this.lastBeatMs) return null;
    return this.db.transaction(() => {
      const current = parse((this.db.prepare(GET).get(WRITER_KEY) as { value: string } | undefined)?.value);
      if (current !== null && current.token !== this.holder.token) return current;
      this.holder = { ...this.holder, heartbeatMs: nowMs };
      this.db.prepare(SET).run(WRITER_KEY, JSON.stringify(this.holder));
      this.lastBeatMs = nowMs;
      return null;
    }).immediate();
  }

  /** Remove the lease row if it is still ours. Errors are the caller's to ignore. */
  release(): void {
    heldHere.delete(this.holder.token);
    this.db.prepare(`DELETE FROM agent_state WHERE key = ? AND json_extract(value, '$.token') = ?`).run(WRITER_KEY, this.holder.token);
  }
}
