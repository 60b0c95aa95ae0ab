import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../agent/config.js';
import { assertExactly, errorsOf, withFiles } from './config-assertions.js';

test('carbon.region not in the shipped table is a configuration error, listed with the others and the file line', () => {
  withFiles({ 'c.yaml': 'carbon: { region: "nowhere", pue: 0.5 }\nport: 70000\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('c.yaml'), env: {} }), [
      /^c\.yaml:1: carbon\.pue: must be >= 1: PUE is/,
      /^c\.yaml:1: carbon\.region: unknown region\. The shipped table has \d+ regions .*, got 'nowhere'$/,
      /^c\.yaml:2: port: /,
    ]);
  });
  withFiles({ 'c.yaml': 'carbon: { region: "aws:us-east-11" }\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('c.yaml'), env: {} }), [/^c\.yaml:1: carbon\.region: unknown region\. Did you mean "aws:us-east-1"/]);
  });
  // Every accepted spelling of a known region still passes.
  for (const region of ['FR', 'fr', 'aws us-east-1', 'CAMX', 'world']) {
    withFiles({ 'c.yaml': `carbon: { region: "${region}" }\n` }, (path) => assert.ok(loadConfig({ configFile: path('c.yaml'), env: {} }).ok, region));
  }
});

test('carbon.intensityFile that is missing or does not parse is a configuration error; relative to the config file', () => {
  withFiles({ 'c.yaml': 'carbon: { intensityFile: missing.csv }\nport: 70000\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('c.yaml'), env: {} }), [/^c\.yaml:2: port: /, /^carbon\.intensityFile: cannot read .*\/missing\.csv \(ENOENT\)$/]);
  });
  withFiles({ 'c.yaml': 'carbon: { intensityFile: bad.csv }\n', 'bad.csv': 'timestamp,x\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('c.yaml'), env: {} }), [/^carbon\.intensityFile: .*bad\.csv, line 1: no intensity column/]);
  });
  withFiles({ 'c.yaml': 'carbon: { intensityFile: bad.csv }\n', 'bad.csv': 'timestamp,gco2e_per_kwh\nyesterday,100\nnoon,100\n' }, (path) => {
    const errors = errorsOf({ configFile: path('c.yaml'), env: {} });
    assertExactly(errors, [/^carbon\.intensityFile: .*bad\.csv, line 2: bad timestamp "yesterday".*; .*line 3: bad timestamp "noon"/]);
    assert.doesNotMatch(errors[0] ?? '', /\n/, 'one line per error');
  });
  withFiles({ 'c.yaml': 'carbon: { intensityFile: good.csv }\n', 'good.csv': 'timestamp,gco2e_per_kwh\n2026-07-01T00:00:00Z,100\n' }, (path) => {
    const loaded = loadConfig({ configFile: path('c.yaml'), env: {} });
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('\n'));
    assert.equal(loaded.config.carbon?.intensityFile, path('good.csv'), 'resolved against the config file, as documented');
  });
});

test('proxy cross-checks use the effective port and upstream, the proxy: section included', () => {
  // The section's port counts: --upstream alone is then enough.
  withFiles({ 'p.yaml': 'proxy: { port: 19480 }\n' }, (path) => {
    const loaded = loadConfig({ configFile: path('p.yaml'), env: {}, flags: { upstream: 'http://127.0.0.1:8000', port: '19477' } });
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('\n'));
  });
  // A section without an upstream anywhere: the proxy could not run.
  withFiles({ 'p.yaml': 'proxy: { replica: { gpus: [0] } }\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('p.yaml'), env: {} }), [/^proxy: the section needs an upstream, proxy\.upstream or --upstream \/ TOKENWATT_UPSTREAM/]);
    assert.ok(loadConfig({ configFile: path('p.yaml'), env: {}, flags: { upstream: 'http://127.0.0.1:8000', proxyPort: '19480' } }).ok);
  });
  // The section's port clashing with the agent's.
  withFiles({ 'p.yaml': 'proxy: { upstream: "http://127.0.0.1:8000", port: 19477 }\n' }, (path) => {
    assertExactly(errorsOf({ configFile: path('p.yaml'), env: {}, flags: { port: '19477' } }), [/^proxy\.port: 19477 is also --port \/ TOKENWATT_PORT; they need different ports/]);
    // --proxy-port wins over the section's port.
    assert.ok(loadConfig({ configFile: path('p.yaml'), env: {}, flags: { port: '19477', proxyPort: '19478' } }).ok);
  });
});

test('an engine-metrics target on the server the proxy forwards to is a configuration error (its requests would count twice)', () => {
  const config = (target: string, upstream: string) =>
    `proxy: { upstream: "${upstream}", port: 19480 }\nengineMetrics: { targets: [{ url: "http://10.0.0.9:8000/metrics", gpus: [1] }, { url: "${target}", gpus: [0] }] }\n`;
  const sameServer: [target: string, upstream: string][] = [
    ['http://127.0.0.1:8000/metrics', 'http://127.0.0.1:8000'],
    ['http://localhost:8000/metrics', 'http://127.0.0.1:8000/v1'],
    ['http://VLLM.internal/metrics', 'http://vllm.internal:80'],
  ];
  for (const [target, upstream] of sameServer) {
    withFiles({ 'c.yaml': config(target, upstream) }, (path) => {
      assertExactly(errorsOf({ configFile: path('c.yaml'), env: {} }), [
        new RegExp(`^engineMetrics\\.targets\\[1\\]\\.url: ${target.replace(/[.]/g, '\\.')} is the server the proxy forwards to .*counted twice`),
      ]);
    });
  }
  // Another port, host or scheme is another server.
  for (const [target, upstream] of [['http://127.0.0.1:8001/metrics', 'http://127.0.0.1:8000'], ['http://10.0.0.8:8000/metrics', 'http://127.0.0.1:8000'], ['https://vllm.internal/metrics', 'http://vllm.internal']]) {
    withFiles({ 'c.yaml': config(target as string, upstream as string) }, (path) => {
      const loaded = loadConfig({ configFile: path('c.yaml'), env: {} });
      assert.ok(loaded.ok, `${target} behind ${upstream}: ${loaded.ok ? '' : loaded.errors.join('\n')}`);
    });
  }
});

test('config messages show the value once, and hostPower speaks like the other sections', () => {
  withFiles({ 'c.yaml': 'carbon: { region: FR, pue: 0.5 }\nhostPower: { overheadW: -3, rapl: sometimes, powercapRoot: "" }\n' }, (path) => {
    const errors = errorsOf({ configFile: path('c.yaml'), env: {} });
    assertExactly(errors, [
      /^c\.yaml:1: carbon\.pue: must be >= 1: PUE is facility energy \/ IT energy, so it cannot be below 1, got 0\.5$/,
      /^c\.yaml:2: hostPower\.overheadW: must be a number 0\.\.100000 W, got -3$/,
      /^c\.yaml:2: hostPower\.rapl: must be auto or off, got 'sometimes'$/,
      /^c\.yaml:2: hostPower\.powercapRoot: must not be empty \(a directory path\), got ''$/,
    ]);
    for (const error of errors) assert.doesNotMatch(error, /Too small|Invalid option|expected number to be/, error);
  });
});

test('a bad entry in a section\'s gpus list is named by its path and told what an entry must be, with every other error at once', () => {
  const yaml = [
    'port: 70000', // line 1
    'proxy:',
    '  upstream: http://127.0.0.1:8000',
    '  replica: { gpus: [0, -1, true] }', // line 4
    '  models:',
    '    m1: { gpus: [""] }', // line 6
    '    m2: { gpus: 3 }', // line 7
    'engineMetrics:',
    '  targets:',
    '    - { url: "http://127.0.0.1:8001/metrics", gpus: [1.5, GPU-ok, 2000] }', // line 10
    'otlp: { replica: { gpus: [null] } }', // line 11
    '',
  ].join('\n');
  withFiles({ 'c.yaml': yaml }, (path) => {
    const errors = errorsOf({ configFile: path('c.yaml'), env: {} });
    const entry = 'must be a GPU index \\(0\\.\\.1023\\) or UUID';
    assertExactly(errors, [
      /^c\.yaml:1: port: must be an integer 0\.\.65535, got 70000$/,
      new RegExp(`^c\\.yaml:4: proxy\\.replica\\.gpus\\[1\\]: ${entry}, got -1$`),
      new RegExp(`^c\\.yaml:4: proxy\\.replica\\.gpus\\[2\\]: ${entry}, got true$`),
      new RegExp(`^c\\.yaml:6: proxy\\.models\\.m1\\.gpus\\[0\\]: ${entry}, got ''$`),
      /^c\.yaml:7: proxy\.models\.m2\.gpus: must be a list of GPU indices or UUIDs, got 3$/,
      new RegExp(`^c\\.yaml:10: engineMetrics\\.targets\\[0\\]\\.gpus\\[0\\]: ${entry}, got 1\\.5$`),
      new RegExp(`^c\\.yaml:10: engineMetrics\\.targets\\[0\\]\\.gpus\\[2\\]: ${entry}, got 2000$`),
      new RegExp(`^c\\.yaml:11: otlp\\.replica\\.gpus\\[0\\]: ${entry}, got null$`),
    ]);
  });
});
