import { parseRequestRecord, toWire } from '../../model/request-record.js';
import type { RequestRecord } from '../../model/request-record.js';
import { BackpressureError } from '../../collectors/request-sink.js';
import type { IngestResult, RequestSink } from '../../collectors/request-sink.js';

/**
 * A RequestSink for tests: keeps every record it accepts, acknowledges repeats as duplicates (by
 * request_id, like the ledger), and checks that each record survives the wire schema round trip,
 * so a source cannot hand the agent a record the HTTP ingest would refuse.
 */
export class RecordingSink implements RequestSink {
  readonly records: RequestRecord[] = [];
  readonly submissions: number[] = [];
  /** Throw BackpressureError on this many next submits. */
  pushBack = 0;
  private readonly ids = new Set<string>();
  private waiters: { count: number; resolve: () => void }[] = [];

  async submit(records: readonly RequestRecord[]): Promise<IngestResult> {
    if (this.pushBack > 0) {
      this.pushBack--;
      throw new BackpressureError(0.1);
    }
    this.submissions.push(records.length);
    let accepted = 0;
    let duplicates = 0;
    const errors: IngestResult['errors'][number][] = [];
    records.forEach((record, index) => {
      const reparsed = parseRequestRecord(toWire(record), index);
      if (!reparsed.ok) {
        errors.push(...reparsed.errors);
        return;
      }
      if (this.ids.has(record.requestId)) {
        duplicates++;
        return;
      }
      this.ids.add(record.requestId);
      this.records.push(record);
      accepted++;
    });
    this.notify();
    return { accepted, duplicates, late: 0, errors };
  }

  /**
   * Resolves once at least `count` records are stored (rejects after `timeoutMs`). The default
   * deadline is generous: it costs nothing when the records come, and a slow machine needs it.
   */
  waitFor(count: number, timeoutMs = 30_000): Promise<void> {
    if (this.records.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${count} records (have ${this.records.length})`)), timeoutMs);
      this.waiters.push({
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** The first `n` stored records that match, once there are that many (polls; rejects after `timeoutMs`, generous as in waitFor). */
  async recordsWhere(match: (record: RequestRecord) => boolean, n = 1, timeoutMs = 30_000): Promise<RequestRecord[]> {
    for (const deadline = Date.now() + timeoutMs; ; ) {
      const found = this.records.filter(match);
      if (found.length >= n) return found.slice(0, n);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} matching record(s) (have ${found.length} of ${this.records.length})`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The record of the call sent with this x-task-id. */
  async recordOfTask(taskId: string): Promise<RequestRecord> {
    return (await this.recordsWhere((r) => r.taskId === taskId))[0] as RequestRecord;
  }

  private notify(): void {
    const ready = this.waiters.filter((w) => this.records.length >= w.count);
    this.waiters = this.waiters.filter((w) => this.records.length < w.count);
    ready.forEach((w) => w.resolve());
  }
}
