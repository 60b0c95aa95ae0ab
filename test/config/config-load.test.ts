import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { loadConfig, redactConfig } from '../../agent/config.js';

/** A temporary directory with the given files, removed after `body`. */
function withFiles<T>(files: Record<string, string>, body: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-config-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function mustLoad(input: Parameters<typeof loadConfig>[0]) {
  const result = loadConfig(input);
  if (!result.ok) assert.fail(`expected a valid config, got:\n${result.errors.join('\n')}`);
  return result;
}

test('nothing given: the documented defaults, every key from "default"', () => {
  const { config, sources } = mustLoad({ flags: {}, env: {} });
  assert.equal(config.port, 9477);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.db, './tokenwatt.db');
  assert.deepEqual(config.power, { kind: 'auto' });
  assert.equal(config.settleLateness, 120);
  assert.equal(config.settlePeriod, 10);
  assert.equal(config.sampleRateHz, 10);
  assert.deepEqual(config.retention, { samplesHours: 48, requestsDays: 7, rollupsDays: 400 });
  assert.equal(config.labels.cap, 50);
  assert.deepEqual(config.labels.user, ['team', 'feature']);
  assert.deepEqual(config.labels.headers, { task_id: 'x-task-id', attempt: 'x-attempt', team: 'x-team', feature: 'x-feature' });
  assert.equal(config.proxyPort, undefined);
  assert.ok(config.node.length > 0, 'node defaults to the host name');
  assert.ok(Object.values(sources).every((s) => s === 'default'));
});

test('precedence: flags over env over file over defaults, with sources', () => {
  withFiles({ 'c.yaml': 'port: 1001\ndb: /file.db\nsettleLateness: 30\nretention:\n  samplesHours: 24\n' }, (dir) => {
    const { config, sources } = mustLoad({
      configFile: join(dir, 'c.yaml'),
      env: { TOKENWATT_PORT: '1002', TOKENWATT_DB: '/env.db' },
      flags: { port: '1003' },
    });
    assert.equal(config.port, 1003);
    assert.equal(sources.port, 'flag');
    assert.equal(config.db, '/env.db');
    assert.equal(sources.db, 'env');
    assert.equal(config.settleLateness, 30);
    assert.equal(sources.settleLateness, 'file');
    assert.equal(config.retention.samplesHours, 24);
    assert.equal(sources['retention.samplesHours'], 'file');
    // A sibling the file did not set keeps its default.
    assert.equal(config.retention.requestsDays, 7);
    assert.equal(sources['retention.requestsDays'], 'default');
  });
});

test('property: the highest layer that sets the port wins, whatever the combination', () => {
  const port = fc.integer({ min: 1, max: 65535 });
  fc.assert(
    fc.property(fc.option(port), fc.option(port), fc.option(port), (fromFile, fromEnv, fromFlag) => {
      const files: Record<string, string> = fromFile === null ? {} : { 'c.json': JSON.stringify({ port: fromFile }) };
      withFiles(files, (dir) => {
        const { config, sources } = mustLoad({
          ...(fromFile === null ? {} : { configFile: join(dir, 'c.json') }),
          env: fromEnv === null ? {} : { TOKENWATT_PORT: String(fromEnv) },
          flags: fromFlag === null ? {} : { port: String(fromFlag) },
        });
        const expected = fromFlag ?? fromEnv ?? fromFile ?? 9477;
        const source = fromFlag !== null ? 'flag' : fromEnv !== null ? 'env' : fromFile !== null ? 'file' : 'default';
        assert.equal(config.port, expected);
        assert.equal(sources.port, source);
      });
    }),
    { numRuns: 40 },
  );
});

test('a YAML file and the same settings as JSON give the same config', () => {
  const yaml = [
    'host: 127.0.0.1',
    'power: replay:trace.csv',
    'tiers:',
    '  meta-llama/Llama-3.1-8B-Instruct: small',
    'replicas:',
    '  - model: meta-llama/Llama-3.1-8B-Instruct',
    '    gpus: [0, GPU-1f2e]',
    'attribution:',
    '  idleBaselineW: { "0": 61.5 }',
    'labels:',
    '  user: [team, tenant]',
    '  headers: { team: X-Team, tenant: x-tenant }',
    'carbon: { region: aws:eu-west-1 }',
    '',
  ].join('\n');
  const json = JSON.stringify({
    host: '127.0.0.1',
    power: 'replay:trace.csv',
    tiers: { 'meta-llama/Llama-3.1-8B-Instruct': 'small' },
    replicas: [{ model: 'meta-llama/Llama-3.1-8B-Instruct', gpus: [0, 'GPU-1f2e'] }],
    attribution: { idleBaselineW: { '0': 61.5 } },
    labels: { user: ['team', 'tenant'], headers: { team: 'X-Team', tenant: 'x-tenant' } },
    carbon: { region: 'aws:eu-west-1' },
  });
  withFiles({ 'c.yaml': yaml, 'c.json': json }, (dir) => {
    const fromYaml = mustLoad({ configFile: join(dir, 'c.yaml') });
    const fromJson = mustLoad({ configFile: join(dir, 'c.json') });
    assert.deepEqual(fromYaml.config, fromJson.config);
    const { config } = fromYaml;
    assert.deepEqual(config.power, { kind: 'replay', file: 'trace.csv' });
    assert.deepEqual(config.replicas, [{ model: 'meta-llama/Llama-3.1-8B-Instruct', gpus: ['0', 'GPU-1f2e'] }]);
    assert.equal(config.attribution.idleBaselineW['0'], 61.5);
    assert.equal(config.labels.headers.team, 'x-team', 'header names are case-insensitive: kept lower-case');
    assert.equal(config.carbon?.region, 'aws:eu-west-1');
    assert.equal(fromYaml.sources.carbon, 'file');
  });
});

test('YAML anchors and merge keys share a block between replicas', () => {
  const yaml = ['replicas:', '  - &big { model: m1, gpus: [1, 2], tier: large }', '  - { <<: *big, model: m2 }'].join('\n');
  withFiles({ 'merge.yaml': yaml }, (dir) => {
    const { config } = mustLoad({ configFile: join(dir, 'merge.yaml') });
    assert.deepEqual(config.replicas, [{ model: 'm1', gpus: ['1', '2'], tier: 'large' }, { model: 'm2', gpus: ['1', '2'], tier: 'large' }]);
  });
});

test('flag and env strings for lists, maps and replicas', () => {
  const { config } = mustLoad({
    env: {
      TOKENWATT_TIERS: 'llama-8b=small, llama-70b=large',
      TOKENWATT_LABELS_USER: 'team,tenant',
      TOKENWATT_ATTRIBUTION_IDLE_BASELINE_W: '0=60,GPU-abc=72.5',
    },
    flags: { replicas: 'llama-70b=0+1@large,llama-8b=2', labelsHeaders: '{"team":"x-team"}' },
  });
  assert.deepEqual(config.tiers, { 'llama-8b': 'small', 'llama-70b': 'large' });
  assert.deepEqual(config.labels.user, ['team', 'tenant']);
  assert.deepEqual(config.attribution.idleBaselineW, { '0': 60, 'GPU-abc': 72.5 });
  assert.deepEqual(config.replicas, [
    { model: 'llama-70b', gpus: ['0', '1'], tier: 'large' },
    { model: 'llama-8b', gpus: ['2'] },
  ]);
  assert.deepEqual(config.labels.headers, { team: 'x-team' });
});

test('the config file can be named by flags.config or TOKENWATT_CONFIG; an empty env value is unset', () => {
  withFiles({ 'a.yaml': 'port: 2001\n', 'b.yaml': 'port: 2002\n' }, (dir) => {
    assert.equal(mustLoad({ flags: { config: join(dir, 'a.yaml') }, env: { TOKENWATT_CONFIG: join(dir, 'b.yaml') } }).config.port, 2001);
    assert.equal(mustLoad({ env: { TOKENWATT_CONFIG: join(dir, 'b.yaml') } }).config.port, 2002);
    assert.equal(mustLoad({ env: { TOKENWATT_PORT: '', TOKENWATT_CONFIG: '' } }).config.port, 9477);
  });
});

test('an empty config file is all defaults', () => {
  withFiles({ 'empty.yaml': '# nothing yet\n' }, (dir) => {
    const { config, sources } = mustLoad({ configFile: join(dir, 'empty.yaml') });
    assert.equal(config.port, 9477);
    assert.equal(sources.port, 'default');
  });
});

test('warnings: shared GPUs, tier overrides, open ingest, a token on the command line, env typos', () => {
  const open = mustLoad({
    env: { TOKENWATT_REPLICAS: 'a=0@big,b=0', TOKENWATT_TIERS: 'a=small', TOKENWATT_PROT: '1' },
  });
  const text = open.warnings.join('\n');
  assert.match(text, /GPU 0 serves a, b/);
  assert.match(text, /replicas\[0\]\.tier: 'big' is overridden by tiers\.a = 'small'/);
  assert.match(text, /not set while listening on 0\.0\.0\.0/);
  assert.match(text, /TOKENWATT_PROT: not a tokenwatt setting \(did you mean TOKENWATT_PORT\?\)/);

  const flagged = mustLoad({ flags: { ingestToken: 'a-long-enough-secret-token', host: '127.0.0.1' }, env: { TOKENWATT_TEST_CONCURRENCY: '2' } });
  assert.match(flagged.warnings.join('\n'), /visible in the process list/);
  assert.ok(!flagged.warnings.some((w) => w.includes('TOKENWATT_TEST_CONCURRENCY')), 'unrelated TOKENWATT_ variables are not flagged');
  assert.equal(redactConfig(flagged.config).ingestToken, '(redacted)');
});

test('warnings: a settlement lateness shorter than the span an engine-metrics record may cover', () => {
  const target = 'targets: [{ url: "http://127.0.0.1:8000/metrics" }]';
  withFiles({ 'slow.yaml': `engineMetrics: { ${target}, intervalMs: 60000 }\n`, 'default.yaml': `engineMetrics: { ${target} }\n` }, (dir) => {
    const slow = mustLoad({ configFile: join(dir, 'slow.yaml') });
    assert.match(slow.warnings.join('\n'), /--settle-lateness .*120 s is shorter than 3 engine-metrics intervals \(180 s at engineMetrics\.intervalMs 60000\)/);
    assert.ok(!mustLoad({ configFile: join(dir, 'default.yaml') }).warnings.some((w) => /engine-metrics intervals/.test(w)), 'the default 15 s interval fits');
  });
});

test('programmatic overrides may pass typed values (the demo forcing the simulated source)', () => {
  const { config, sources } = mustLoad({ flags: { power: 'simulated', port: 0 + 9000 } });
  assert.deepEqual(config.power, { kind: 'simulated' });
  assert.equal(config.port, 9000);
  assert.equal(sources.power, 'flag');
});
