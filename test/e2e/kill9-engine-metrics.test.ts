/**
 * kill -9 of an agent in engine-metrics mode: the real agent process (dist/) scrapes a fake vLLM
 * /metrics endpoint (real HTTP) whose counters keep climbing, is killed without any shutdown code,
 * and a new agent on the same ledger resumes from the baseline committed with the last records.
 * The tokens in the ledger must be exactly the engine counters' increase, downtime included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from '../../agent/sqlite-driver.js';
import { fakeEngine } from '../engine-metrics/fake-engine.js';
import { fixture, withValue } from '../engine-metrics/fixtures.js';
import { eventually, startAgent } from './agent-process.js';

const M = '{model_name="mistralai/Mistral-7B-Instruct-v0.3"}';
const PAGE = fixture('vllm-v0-engine-rendered.prom');
const P0 = 20480; // the page's counters
const G0 = 8192;

function engineTotals(db: string): { records: number; prompt: number; completion: number } {
  const file = new Database(db, { readonly: true });
  try {
    const row = file.prepare("SELECT count(*) AS n, coalesce(sum(prompt_tokens), 0) AS p, coalesce(sum(completion_tokens), 0) AS c FROM requests WHERE source = 'engine-metrics'").get() as { n: number; p: number; c: number };
    return { records: row.n, prompt: row.p, completion: row.c };
  } finally {
    file.close();
  }
}

test('kill -9 in engine-metrics mode: the restarted agent records exactly the engine\'s token increase, downtime included', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'tokenwatt-kill9-engine-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const engine = await fakeEngine();
  t.after(() => engine.close());
  let prompt = P0;
  let generation = G0;
  const serve = (): void => engine.set(withValue(withValue(PAGE, `vllm:prompt_tokens_total${M}`, prompt), `vllm:generation_tokens_total${M}`, generation));
  serve();
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ engineMetrics: { targets: [{ url: engine.url, engineId: 'vllm-e2e', gpus: [0] }], intervalMs: 1000, timeoutMs: 2000 } }));
  const db = join(dir, 'agent.db');
  const args = ['run', '--config', config, '--power', 'simulated', '--db', db, '--settle-lateness', '3', '--settle-period', '1'];

  const first = await startAgent(args); // its first scrape (the baseline at P0, G0) precedes "agent running"
  // Killed even when an assertion fails first: left running, it held the test file open for ever.
  t.after(() => first.kill9());
  // The engine serves: its counters climb every 50 ms, before, during and after the crash.
  const ticker = setInterval(() => {
    prompt += 731;
    generation += 97;
    serve();
  }, 50);
  t.after(() => clearInterval(ticker));
  await eventually('engine-metrics records committed by the first agent', 20_000, async () => (engineTotals(db).records >= 2 ? true : undefined));
  await new Promise((r) => setTimeout(r, 400)); // somewhere inside an interval
  // The engine counts once more just before the kill, in this same turn of the test's event loop,
  // which also serves the engine's page: the agent cannot have scraped it, so there is a tail to
  // lose for sure (a slow machine's delayed 50 ms ticks could leave none since the last scrape).
  prompt += 731;
  generation += 97;
  serve();
  await first.kill9();
  const beforeRestart = engineTotals(db);
  assert.ok(beforeRestart.prompt < prompt - P0, `the crash lost the tail of the counting (${beforeRestart.prompt} < ${prompt - P0})`);
  await new Promise((r) => setTimeout(r, 1500)); // the agent is down; the engine is not
  clearInterval(ticker);
  const [finalPrompt, finalGeneration] = [prompt, generation];

  const second = await startAgent(args);
  t.after(() => second.stop());
  // Its first scrape (before "agent running") recorded the interval since the baseline committed last.
  assert.equal(await second.stop(), 0);
  const after = engineTotals(db);
  assert.deepEqual(
    { prompt: after.prompt, completion: after.completion },
    { prompt: finalPrompt - P0, completion: finalGeneration - G0 },
    'every token the engine counted since the first agent\'s baseline, none twice',
  );
  assert.ok(after.records > beforeRestart.records, 'the downtime was recorded by the second agent');
  assert.match(second.stderr(), /resuming from the baseline stored at/);
});
