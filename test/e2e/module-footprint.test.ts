/**
 * `tokenwatt run` is a long-lived process on every GPU node, held to an RSS target: it must not
 * load the modules of the other commands (the ESG export and its JSON-schema validator, analyze,
 * doctor's host probes) nor those of sources it was not configured for (NVML's koffi, the proxy,
 * the engine-metrics scraper, protobufjs until an OTLP protobuf request comes, yaml without a
 * config file). A module once loaded stays for the life of the process, so this is checked on
 * the real process: module-loader hooks log every module it resolves, ESM and CommonJS alike.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { eventually, startAgent } from './agent-process.js';

/** Loaded by a `tokenwatt run` only when configured or asked for: path fragments of their files. */
const NOT_LOADED_BY_A_PLAIN_RUN = [
  '/dist/agent/commands/export.js',
  '/dist/agent/commands/analyze.js',
  '/dist/agent/commands/doctor.js',
  '/dist/agent/commands/demo.js',
  '/dist/exporters/esg/',
  '/dist/collectors/nvml/nvml-binding.js',
  '/dist/collectors/proxy/openai-proxy.js',
  '/dist/collectors/engine-metrics/engine-metrics-scraper.js',
  '/node_modules/ajv/',
  '/node_modules/koffi/',
  '/node_modules/protobufjs/',
  '/node_modules/systeminformation/',
  '/node_modules/yaml/',
];

function hookFiles(dir: string): Record<string, string> {
  const log = join(dir, 'modules.log');
  // CommonJS: every resolution, createRequire() included, goes through Module._resolveFilename.
  const cjs = join(dir, 'log-cjs.cjs');
  writeFileSync(
    cjs,
    `const Module = require('node:module'); const { appendFileSync } = require('node:fs');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (...args) { const file = resolve.apply(this, args); appendFileSync(process.env.TW_MODULE_LOG, file + '\\n'); return file; };
`,
  );
  // ES modules: a resolve hook (it runs on the loader's thread; the log file is shared).
  const hooks = join(dir, 'log-esm-hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) { const r = await next(specifier, context); appendFileSync(process.env.TW_MODULE_LOG, r.url + '\\n'); return r; }
`,
  );
  const register = join(dir, 'log-esm.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  return { NODE_OPTIONS: `--require ${cjs} --import ${pathToFileURL(register).href}`, TW_MODULE_LOG: log };
}

const loaded = (log: string): string[] => readFileSync(log, 'utf8').split('\n').filter(Boolean);

test('a plain `tokenwatt run` loads only what it runs; protobufjs and yaml come when needed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-modules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = hookFiles(dir);
  const log = env.TW_MODULE_LOG as string;
  writeFileSync(log, '');

  const agent = await startAgent(['run', '--power', 'simulated', '--db', join(dir, 'plain.db'), '--log-level', 'info'], env);
  try {
    const modules = loaded(log);
    assert.ok(modules.some((m) => m.includes('/dist/collectors/simulated/simulated-gpu-node.js')), 'the hooks see the ESM modules the agent runs');
    assert.ok(modules.some((m) => m.includes('/node_modules/prom-client/lib/')), 'the hooks see the files a CommonJS package requires');
    for (const fragment of NOT_LOADED_BY_A_PLAIN_RUN) {
      assert.deepEqual(modules.filter((m) => m.includes(fragment)), [], `${fragment} is not loaded by a plain run`);
    }

    // The first OTLP protobuf request loads protobufjs (an empty export request is valid).
    const res = await agent.post('/v1/traces', '', { 'content-type': 'application/x-protobuf' });
    assert.equal(res.status, 200, res.body);
    await eventually('protobufjs to be loaded', 5000, async () => (loaded(log).some((m) => m.includes('/node_modules/protobufjs/')) ? true : undefined));
  } finally {
    assert.equal(await agent.stop(), 0, agent.stderr());
  }

  // With a config file (the DaemonSet's way), yaml is loaded, and still none of the rest.
  writeFileSync(log, '');
  const config = join(dir, 'tokenwatt.yaml');
  writeFileSync(config, `power: simulated\ndb: ${join(dir, 'config.db')}\n`);
  const configured = await startAgent(['run', '--config', config, '--log-level', 'info'], env);
  try {
    const modules = loaded(log);
    assert.ok(modules.some((m) => m.includes('/node_modules/yaml/')), 'a config file loads yaml');
    for (const fragment of NOT_LOADED_BY_A_PLAIN_RUN.filter((f) => f !== '/node_modules/yaml/')) {
      assert.deepEqual(modules.filter((m) => m.includes(fragment)), [], `${fragment} is not loaded by a run with a config file`);
    }
  } finally {
    assert.equal(await configured.stop(), 0, configured.stderr());
  }
});
