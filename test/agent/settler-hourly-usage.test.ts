import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { request, T0 } from '../model/helpers.js';
import { NullSettlementMetrics } from './null-settlement-metrics.js';

/**
 * Hourly usage rows book a request's energy in the hours it was drawn (its tokens with it, the
 * request itself in the hour it ended), so each hour's usage energy equals its energy rows' attributed energy: what the ESG
 * export's fully loaded shares rely on. Across a restart too: the energy a pending request drew
 * in earlier hours is kept in the ledger.
 */

const H = 3_600_000;
const GPU = { uuid: 'gpu-0', index: 0, name: 'H100' };
const RETENTION = { samplesHours: 48, requestsDays: 7, rollupsDays: 400 };
const CONFIG = { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 1000, idleBaselineW: { 'gpu-0': 100 } };
const START = T0 + 58 * 60_000;
const END = T0 + 3 * H + 25 * 60_000;

const REQUESTS: ResolvedRequest[] = [
  // 09:59:00 to 10:00:05: 60 s in the first hour, 5 s in the next.
  request({ requestId: 'across', startMs: T0 + 59 * 60_000, endMs: T0 + H + 5000, completionTokens: 100, tier: 'a' }),
  request({ requestId: 'inside', startMs: T0 + H + 10 * 60_000, endMs: T0 + H + 10 * 60_000 + 30_000, completionTokens: 50, tier: 'a' }),
  // Ends exactly on the hour: all its energy is in the hour before the one it counts in.
  request({ requestId: 'on-the-hour', startMs: T0 + H + 30 * 60_000, endMs: T0 + 2 * H, completionTokens: 70, tier: 'b' }),
  // Three hours long.
  request({ requestId: 'long', startMs: T0 + H + 40 * 60_000, endMs: T0 + 3 * H + 20 * 60_000, completionTokens: 900, tier: 'c' }),
];

/** 100 W idle and 250 W more per running request, sampled every second with an energy counter. */
function samples(from: number, to: number): PowerSample[] {
  const powerAt = (t: number): number => 100 + 250 * REQUESTS.filter((r) => r.startMs <= t && t < r.endMs).length;
  const out: PowerSample[] = [];
  let energy = 0;
  for (let t = START; t <= to; t += 1000) {
    if (t > START) energy += (powerAt(t - 1000) * 1000) / 1000;
    if (t >= from) out.push({ timestampMs: epochMs(t), gpuUuid: GPU.uuid, gpuIndex: 0, powerW: watts(powerAt(t)), energyJ: joules(energy) });
  }
  return out;
}

function settler(ledger: Ledger): Settler {
  return new Settler({
    ledger, metrics: new NullSettlementMetrics(), gpus: [GPU], node: 'n', periodMs: 10_000, latenessMs: 0, attribution: CONFIG, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
}

function settleUntil(s: Settler, until: number): void {
  while ((s.settledUntil ?? 0) < until) {
    if (s.settleDue(until) === 0) break;
  }
}

test('usage energy and tokens are booked in the hours the energy was drawn, the request in the hour it ended, across a restart', (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-hourly-usage-'));
  const path = join(dir, 'ledger.db');
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // Run 1 settles to 10:00:00 (the request across the hour is pending) and stops.
  let ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  ledger.insertRequests(REQUESTS, () => false);
  const run1 = settler(ledger);
  run1.addSamples(samples(START, T0 + H + 30_000));
  settleUntil(run1, T0 + H);
  assert.equal(run1.settledUntil, T0 + H);
  assert.equal(run1.pendingRequests > 0, true, 'the request across the hour is not final yet');
  run1.flushSamples();
  ledger.close();

  // Run 2 goes on from the ledger alone.
  ledger = Ledger.open(path, { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  const run2 = settler(ledger);
  run2.restore(T0 + H + 30_000);
  run2.addSamples(samples(T0 + H + 30_001, END));
  settleUntil(run2, END - 10_000);
  assert.equal(run2.pendingRequests, 0, 'every request is final');

  const all = [epochMs(T0 - H), epochMs(T0 + 5 * H)] as const;
  const energy = ledger.readHourlyEnergy(...all);
  const usage = ledger.readHourlyUsage(...all);
  const hours = [T0, T0 + H, T0 + 2 * H, T0 + 3 * H];
  for (const hour of hours) {
    const attributed = energy.filter((e) => e.hourStartMs === hour).reduce((s, e) => s + e.staticJ + e.dynamicJ, 0);
    const booked = usage.filter((u) => u.hourStartMs === hour).reduce((s, u) => s + u.staticJ + u.dynamicJ, 0);
    assert.ok(attributed > 0, `${new Date(hour).toISOString()} has attributed energy`);
    assert.ok(Math.abs(booked - attributed) <= 1e-9 * attributed, `${new Date(hour).toISOString()}: usage rows hold ${booked} J, energy rows ${attributed} J`);
  }
  // The first hour holds 60 s of the request across it (250 W above idle), the next its last 5 s.
  const row = (hour: number, tier: string) => usage.find((u) => u.hourStartMs === hour && u.tier === tier);
  assert.ok(Math.abs((row(T0, 'a')?.dynamicJ ?? 0) - 60 * 250) < 1e-6, `dynamic ${row(T0, 'a')?.dynamicJ}`);
  assert.equal(row(T0, 'a')?.requests, 0);
  assert.deepEqual(hours.map((h) => usage.filter((u) => u.hourStartMs === h).reduce((s, u) => s + u.requests, 0)), [0, 2, 1, 1]);
  // Its tokens go with its energy: 60 s of 65 is 92 of its 100 tokens.
  assert.deepEqual([row(T0, 'a')?.completionTokens, usage.filter((u) => u.hourStartMs === T0 + H && u.tier === 'a').reduce((s, u) => s + u.completionTokens, 0)], [92, 8 + 50]);
  // The request ending on the hour counts in that hour with no energy there, and no tokens either.
  assert.equal(row(T0 + 2 * H, 'b')?.requests, 1);
  assert.equal((row(T0 + 2 * H, 'b')?.staticJ ?? Number.NaN) + (row(T0 + 2 * H, 'b')?.dynamicJ ?? Number.NaN), 0);
  assert.deepEqual([row(T0 + H, 'b')?.completionTokens, row(T0 + 2 * H, 'b')?.completionTokens], [70, 0]);
  // The long request's 900 tokens follow its energy over its three hours (it shares its first with 'on-the-hour').
  const long = [T0 + H, T0 + 2 * H, T0 + 3 * H].map((h) => row(h, 'c'));
  const longJ = long.reduce((s, u) => s + (u?.staticJ ?? 0) + (u?.dynamicJ ?? 0), 0);
  assert.equal(long.reduce((s, u) => s + (u?.completionTokens ?? 0), 0), 900);
  for (const u of long) assert.ok(Math.abs((u?.completionTokens ?? 0) - (900 * ((u?.staticJ ?? 0) + (u?.dynamicJ ?? 0))) / longJ) <= 1, `${u?.completionTokens} tokens`);
  // Nothing is lost or counted twice: the rows add up to the requests' own energy.
  const finals = ledger.readRequests(epochMs(T0 - H), epochMs(T0 + 5 * H)).reduce((s, r) => s + (r.final?.joules ?? 0), 0);
  const booked = usage.reduce((s, u) => s + u.staticJ + u.dynamicJ, 0);
  assert.ok(Math.abs(booked - finals) <= 1e-9 * finals, `usage rows ${booked} J = requests ${finals} J`);
  const phases = usage.reduce((s, u) => s + u.prefillJ + u.decodeJ, 0);
  assert.ok(Math.abs(phases - finals) <= 1e-9 * finals, `prefill + decode ${phases} J = requests ${finals} J`);
});
