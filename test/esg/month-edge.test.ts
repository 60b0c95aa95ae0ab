import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ledger } from '../../agent/ledger.js';
import { Settler } from '../../agent/settler.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import type { EsgReport } from '../../exporters/esg/esg-report.js';
import { quarterPeriod } from '../../exporters/esg/report-period.js';
import type { ReportPeriod } from '../../exporters/esg/report-period.js';
import { rollupsOf } from '../../exporters/esg/rollup-source.js';
import { DEFAULT_ATTRIBUTION_CONFIG } from '../../model/attribution-config.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import type { PowerSample } from '../../model/power-sample.js';
import type { ResolvedRequest } from '../../model/request-record.js';
import { epochMs, joules, watts } from '../../model/units.js';
import { NullSettlementMetrics } from '../agent/null-settlement-metrics.js';
import { request } from '../model/helpers.js';
import { RETENTION } from './ledger-fixture.js';

/**
 * Requests across a month (and quarter) edge, settled by the agent's own settler into a ledger and
 * reported from it: each month's and quarter's J per output token must be that of the requests
 * whose energy it holds, not energy in one month and the tokens in the next.
 */

const H = 3_600_000;
const EDGE = Date.UTC(2026, 3, 1); // 2026-04-01T00:00Z: March/April, Q1/Q2
const GPU = { uuid: 'gpu-0', index: 0, name: 'H100' };
const CONFIG = { ...DEFAULT_ATTRIBUTION_CONFIG, samplePeriodMs: 1000, idleBaselineW: { 'gpu-0': 100 } };
const CARBON = (() => {
  const parsed = parseCarbonConfig({ intensityGPerKwh: 100, intensitySource: 'test', pue: 1.5 });
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.config;
})();

/** 100 W idle and 250 W more per running request, every second, with an energy counter. */
function samples(requests: readonly ResolvedRequest[], from: number, to: number): PowerSample[] {
  const powerAt = (t: number): number => 100 + 250 * requests.filter((r) => r.startMs <= t && t < r.endMs).length;
  const out: PowerSample[] = [];
  let energy = 0;
  for (let t = from; t <= to; t += 1000) {
    if (t > from) energy += powerAt(t - 1000);
    out.push({ timestampMs: epochMs(t), gpuUuid: GPU.uuid, gpuIndex: 0, powerW: watts(powerAt(t)), energyJ: joules(energy) });
  }
  return out;
}

/** A ledger holding the requests, settled over [from, to) as the agent settles it. */
function settledLedger(t: { after(fn: () => void): void }, requests: readonly ResolvedRequest[], from: number, to: number): Ledger {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-month-edge-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ledger = Ledger.open(join(dir, 'ledger.db'), { node: 'n', retention: RETENTION });
  t.after(() => ledger.close());
  ledger.insertRequests(requests, () => false);
  const settler = new Settler({
    ledger, metrics: new NullSettlementMetrics(), gpus: [GPU], node: 'n', periodMs: 10_000, latenessMs: 0, attribution: CONFIG, simulated: false,
    labelValue: (_n, v) => v ?? '', taskIdleMs: 60_000, log: { info() {}, warn() {}, error() {}, debug() {} },
  });
  settler.addSamples(samples(requests, from, to));
  while ((settler.settledUntil ?? 0) < to - 10_000) if (settler.settleDue(to) === 0) break;
  assert.equal(settler.pendingRequests, 0, 'every request is final');
  return ledger;
}

function report(ledger: Ledger, period: ReportPeriod): EsgReport {
  return buildEsgReport({ ...rollupsOf(ledger, period), carbon: CARBON, period, toolVersion: 't', generatedAt: '2026-07-01T00:00:00.000Z' });
}

const month = (r: EsgReport, key: string) => r.breakdowns.find((b) => b.by === 'month' && b.key === key);
const near = (actual: number | null | undefined, expected: number, rel: number, what: string): void => {
  assert.ok(actual !== null && actual !== undefined && Math.abs(actual - expected) <= rel * expected, `${what}: ${actual} J/token, expected ${expected}`);
};

test('a request across a month edge has the same J per output token on both sides, and the report adds up', (t) => {
  // 23:54 to 00:03: 6 minutes in March, 3 in April, at 350 W (100 W static + 250 W dynamic).
  const across = request({ requestId: 'across', startMs: EDGE - 6 * 60_000, endMs: EDGE + 3 * 60_000, promptTokens: 3000, cachedTokens: 1000, completionTokens: 900, reasoningTokens: 300 });
  const ledger = settledLedger(t, [across], EDGE - 10 * 60_000, EDGE + 10 * 60_000);
  const final = ledger.readRequests(epochMs(EDGE - H), epochMs(EDGE + H))[0]?.final;
  assert.ok(final);
  const jPerToken = final.joules / 900;
  near(jPerToken, (350 * 540) / 900, 1e-3, 'the request');

  const both = report(ledger, { fromMs: EDGE - 24 * H, toMs: EDGE + 24 * H, label: 'edge' });
  const march = month(both, '2026-03');
  const april = month(both, '2026-04');
  // The energy splits 2:1, and so do the tokens: each month shows the request's own J/token.
  near(march?.attributed_energy_kwh, (final.joules * 2) / 3 / 3.6e6, 1e-3, 'March energy');
  assert.equal(march?.completion_tokens, 600);
  assert.equal(april?.completion_tokens, 300);
  assert.equal(march?.prompt_tokens, 2000);
  assert.equal(march?.cached_tokens, 667); // 2/3 of 1000, rounded: cached stays within prompt
  near(march?.j_per_output_token, jPerToken, 2e-3, 'March');
  near(april?.j_per_output_token, jPerToken, 2e-3, 'April');
  // Nothing is lost or counted twice across the rows.
  assert.equal((march?.completion_tokens ?? 0) + (april?.completion_tokens ?? 0), both.totals.completion_tokens);
  assert.equal(both.totals.completion_tokens, 900);
  assert.equal(both.totals.prompt_tokens, 3000);
  assert.equal(both.totals.requests, 1);

  // Each quarter's report has its part of the tokens with its part of the energy.
  const q1 = report(ledger, quarterPeriod('2026-Q1'));
  const q2 = report(ledger, quarterPeriod('2026-Q2'));
  near(q1.totals.j_per_output_token, jPerToken, 2e-3, 'Q1');
  near(q2.totals.j_per_output_token, jPerToken, 2e-3, 'Q2');
  assert.equal(q1.totals.completion_tokens + q2.totals.completion_tokens, 900);
  assert.equal(q1.totals.reasoning_tokens + q2.totals.reasoning_tokens, 300);
  // SCI per token divides each quarter's emissions by that quarter's part of the tokens.
  assert.deepEqual([q1.sci.output_tokens, q2.sci.output_tokens], [600, 300]);
  assert.ok(q1.sci.per_token_gco2e !== null && q1.sci.per_token_gco2e > 0);
});

test('a request that ends exactly at a month edge has its tokens in the month its energy was drawn', (t) => {
  const onEdge = request({ requestId: 'on-edge', startMs: EDGE - 5 * 60_000, endMs: EDGE, promptTokens: 100, completionTokens: 70 });
  const ledger = settledLedger(t, [onEdge], EDGE - 10 * 60_000, EDGE + 10 * 60_000);
  const r = report(ledger, { fromMs: EDGE - 24 * H, toMs: EDGE + 24 * H, label: 'edge' });
  assert.equal(month(r, '2026-03')?.completion_tokens, 70);
  assert.equal(month(r, '2026-04')?.completion_tokens, 0);
  assert.ok((month(r, '2026-03')?.j_per_output_token ?? 0) > 0);
  assert.equal(quarterPeriodTokens(ledger, '2026-Q2'), 0);
});

function quarterPeriodTokens(ledger: Ledger, quarter: string): number {
  const period = quarterPeriod(quarter);
  let tokens = 0;
  for (const u of ledger.readHourlyUsage(epochMs(period.fromMs), epochMs(period.toMs))) tokens += u.completionTokens;
  return tokens;
}
