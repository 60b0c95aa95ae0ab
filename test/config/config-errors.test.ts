import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { assertExactly, errorsOf, withFiles } from './config-assertions.js';

function withFile<T>(name: string, text: string, body: (path: string) => T): T {
  return withFiles({ [name]: text }, (path) => body(path(name)));
}

test('every mistake in file, environment and flags is reported at once, each by name', () => {
  const yaml = [
    'port: 70000', // line 1
    'prot: 9000', // line 2: typo
    'tiers:',
    '  llama: 42', // line 4
    'retention:',
    '  samplesHour: 3', // line 6: typo
    'labels:',
    '  user: [team, user_id]', // line 8
    '',
  ].join('\n');
  withFile('tokenwatt.yaml', yaml, (path) => {
    const errors = errorsOf({
      configFile: path,
      env: { TOKENWATT_PORT: 'abc', TOKENWATT_POWER: 'gpu', TOKENWATT_TIERS: 'a=b,broken' },
      flags: { settleLateness: '-5', upstream: 'ftp://example.com', sampleRateHz: 'fast', replicas: '[{"model":"m","gpus":[]}]' },
    });
    assertExactly(errors, [
      /^tokenwatt\.yaml:1: port: must be an integer 0\.\.65535, got 70000$/,
      /^tokenwatt\.yaml:2: prot: unknown key 'prot' \(did you mean 'port'\?\)$/,
      /^tokenwatt\.yaml:4: tiers\.llama: expected a string \(a tier name\), got 42$/,
      /^tokenwatt\.yaml:6: retention\.samplesHour: unknown key 'samplesHour' \(did you mean 'samplesHours'\?\)$/,
      /^tokenwatt\.yaml:8: labels\.user\[1\]: looks like a request or user identifier.*got 'user_id'$/,
      /^--port \/ TOKENWATT_PORT: must be an integer 0\.\.65535, got 'abc' \(from TOKENWATT_PORT\)$/,
      /^--power \/ TOKENWATT_POWER: must be auto, nvml, nvidia-smi, simulated or replay:FILE, got 'gpu' \(from TOKENWATT_POWER\)$/,
      /^--tiers \/ TOKENWATT_TIERS: 'broken' is not key=value/,
      /^--settle-lateness \/ TOKENWATT_SETTLE_LATENESS: must be a number 0\.\.86400 seconds, got -5 \(from --settle-lateness\)$/,
      /^--upstream \/ TOKENWATT_UPSTREAM: must be an http\(s\) URL.*got 'ftp:\/\/example\.com' \(from --upstream\)$/,
      /^--sample-rate-hz \/ TOKENWATT_SAMPLE_RATE_HZ: must be a number > 0 and <= 100 Hz, got 'fast' \(from --sample-rate-hz\)$/,
      /^--replicas \/ TOKENWATT_REPLICAS: \[0\]\.gpus: must name at least one GPU/,
    ]);
  });
});

test('a mistake in a lower layer is reported even when a higher layer overrides it', () => {
  const errors = errorsOf({ env: { TOKENWATT_PORT: '-1' }, flags: { port: '9000' } });
  assertExactly(errors, [/^--port \/ TOKENWATT_PORT: must be an integer 0\.\.65535, got -1 \(from TOKENWATT_PORT\)$/]);
});

test('JSON files: syntax errors and unknown keys are named', () => {
  withFile('c.json', '{"port": 1,}', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.json: invalid JSON: /]);
  });
  withFile('c.json', JSON.stringify({ retention: { days: 3 }, logLevel: 'loud' }), (path) => {
    assertExactly(errorsOf({ configFile: path }), [
      /^c\.json:1: retention\.days: unknown key 'days' \(known: samplesHours, requestsDays, rollupsDays\)$/,
      /^c\.json:1: logLevel: must be one of fatal, error, warn, info, debug, trace, silent, got 'loud'$/,
    ]);
  });
});

test('YAML syntax errors carry their line; duplicate keys are errors', () => {
  withFile('c.yaml', 'port: 1\nport: 2\n', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.yaml:2: .*[Uu]nique/]);
  });
  withFile('c.yaml', '- just\n- a list\n', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.yaml: the top level must be a mapping/]);
  });
});

test('a missing config file is an error, not silently ignored', () => {
  assertExactly(errorsOf({ configFile: join(tmpdir(), 'no-such-tokenwatt-config.yaml') }), [/cannot read the config file \(ENOENT\)/]);
});

test('a YAML alias bomb, a directory and a device are config errors naming the file, not a crash or a hang', () => {
  const bomb = 'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n';
  withFile('bomb.yaml', bomb, (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^bomb\.yaml: .*alias/i]);
  });
  assertExactly(errorsOf({ configFile: tmpdir() }), [/: not a regular file; is this a config file\?$/]);
  assertExactly(errorsOf({ configFile: '/dev/zero' }), [/^\/dev\/zero: not a regular file/]);
});

test('a "__proto__" key in any mapping is an error naming its path and line, not a value dropped without a word', () => {
  const yaml = ['power: simulated', 'labels:', '  headers:', '    __proto__: x-evil', '    team: x-team', 'replicas:', '  - model: m', '    gpus: [0]', '    __proto__: 1', ''].join('\n');
  withFile('proto.yaml', yaml, (path) => {
    assertExactly(errorsOf({ configFile: path }), [
      /^proto\.yaml:4: labels\.headers\.__proto__: "__proto__" is not a usable key/,
      /^proto\.yaml:9: replicas\.0\.__proto__: "__proto__" is not a usable key/,
    ]);
  });
  withFile('proto.json', '{"tiers": {"__proto__": "small", "m": "large"}}', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^proto\.json:1: tiers\.__proto__: "__proto__" is not a usable key/]);
  });
});

test('the ingest token never appears in an error message', () => {
  const errors = errorsOf({ env: { TOKENWATT_INGEST_TOKEN: 'x'.repeat(5000) } });
  assert.equal(errors.length, 1);
  assert.ok(!errors[0]?.includes('xxxx'), errors[0]);
  assert.match(errors[0] ?? '', /--ingest-token \/ TOKENWATT_INGEST_TOKEN: must be at most 4096 characters, got \(redacted\)/);
});

test('cross-field checks name every key involved', () => {
  assertExactly(errorsOf({ flags: { proxyPort: '9000' } }), [/^--proxy-port \/ TOKENWATT_PROXY_PORT: the proxy needs --upstream \/ TOKENWATT_UPSTREAM/]);
  assertExactly(errorsOf({ env: { TOKENWATT_UPSTREAM: 'http://127.0.0.1:8000' } }), [/^--upstream \/ TOKENWATT_UPSTREAM: set --proxy-port/]);
  assertExactly(errorsOf({ flags: { proxyPort: '9477', upstream: 'http://127.0.0.1:8000' } }), [/9477 is also --port/]);
  assertExactly(errorsOf({ flags: { retentionSamplesHours: '0.01', settleLateness: '600' } }), [/^--retention-samples-hours .*would delete samples before their period is settled/]);
  assertExactly(errorsOf({ flags: { attributionMaxAttributableGapSeconds: '0.1', sampleRateHz: '10' } }), [/under 3 sampling periods/]);
  assertExactly(errorsOf({ flags: { retentionRequestsDays: '1', retentionSamplesHours: '48' } }), [/^--retention-requests-days .*1 d keeps request ids for less time than records are accepted \(--retention-samples-hours .*48 h\)/]);
  assert.equal(loadConfig({ flags: { retentionRequestsDays: '2', retentionSamplesHours: '48' } }).ok, true);
  assertExactly(errorsOf({ flags: { retentionRollupsDays: '3', retentionRequestsDays: '7' } }), [
    /^--retention-rollups-days .*3 d keeps hourly rollups and task rows for less time than requests \(--retention-requests-days .*7 d\)/,
  ]);
  assert.equal(loadConfig({ flags: { retentionRollupsDays: '7', retentionRequestsDays: '7' } }).ok, true);
  assertExactly(errorsOf({ env: { TOKENWATT_LABELS_HEADERS: 'team=x-who,feature=X-Who' } }), [/header 'x-who' would be read for both team and feature; give each label its own header$/]);
  assertExactly(errorsOf({ flags: { attributionWPrefill: '0', attributionWCached: '0', attributionWDecode: '0' } }), [/all 0/]);
});

test('checks that span keys are reported with the per-key mistakes, and skip keys whose own value was refused', () => {
  assertExactly(errorsOf({ env: { TOKENWATT_SAMPLE_RATE_HZ: 'fast' }, flags: { proxyPort: '9000' } }), [
    /^--sample-rate-hz \/ TOKENWATT_SAMPLE_RATE_HZ: .*got 'fast'/,
    /^--proxy-port \/ TOKENWATT_PROXY_PORT: the proxy needs --upstream \/ TOKENWATT_UPSTREAM/,
  ]);
  // The port was given, wrongly: saying it is missing would be false.
  assertExactly(errorsOf({ flags: { proxyPort: 'abc', upstream: 'http://127.0.0.1:8000' } }), [/^--proxy-port \/ TOKENWATT_PROXY_PORT: .*got 'abc'/]);
  // An unreadable file may hold the upstream: no check that spans keys is made without it.
  assertExactly(errorsOf({ configFile: join(tmpdir(), 'no-such-tokenwatt-config.yaml'), flags: { proxyPort: '9000' } }), [/cannot read the config file \(ENOENT\)/]);
  withFile('c.yaml', 'port: 70000\nretention:\n  samplesHours: 0.01\nsettleLateness: 600\n', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.yaml:1: port: must be an integer/, /^--retention-samples-hours .*would delete samples before their period is settled/]);
  });
});

test('labels.headers: a header read for two labels is refused, defaults included, with the other mistakes', () => {
  // team keeps its default header x-team unless mapped: project would read the same header.
  assertExactly(errorsOf({ flags: { labelsHeaders: 'project=x-team' } }), [
    /^--labels-headers \/ TOKENWATT_LABELS_HEADERS: header 'x-team' would be read for both team \(its default header\) and project; give each label its own header \(map team to another one to read x-team as project\)$/,
  ]);
  assertExactly(errorsOf({ env: { TOKENWATT_LABELS_HEADERS: 'tenant=X-Task-Id' } }), [/header 'x-task-id' would be read for both task_id \(its default header\) and tenant/]);
  // Moving the default label off the header frees it.
  assert.ok(loadConfig({ flags: { labelsHeaders: 'project=x-team,team=x-squad' }, env: {} }).ok);
  withFile('c.yaml', 'labels:\n  headers: { project: x-feature }\nport: 70000\n', (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.yaml:3: port: must be an integer/, /header 'x-feature' would be read for both feature \(its default header\) and project/]);
  });
});

test('settle period must divide an hour; user labels must not be reserved or ids', () => {
  assertExactly(errorsOf({ flags: { settlePeriod: '7' } }), [/--settle-period .*must divide 3600/]);
  assertExactly(errorsOf({ flags: { labelsUser: 'team,model,request_id,team' } }), [
    /\[1\]: reserved/,
    /\[2\]: looks like a request or user identifier/,
    /\[3\]: listed twice/,
  ]);
});

test('a tier or model named like one of the ESG report\'s own rows is refused, naming the key', () => {
  const yaml = [
    'tiers:',
    "  llama: '(unallocated)'", // line 2
    'replicas:',
    "  - { model: m, gpus: [0], tier: '(none)' }", // line 4
    'proxy:',
    '  upstream: http://127.0.0.1:8000',
    "  replica: { tier: '(unallocated)' }", // line 7
    'engineMetrics:',
    "  targets: [{ url: 'http://127.0.0.1:8001/metrics', model: '(unallocated)' }]", // line 9
    '',
  ].join('\n');
  withFile('tokenwatt.yaml', yaml, (path) => {
    assertExactly(errorsOf({ configFile: path }), [
      /^tokenwatt\.yaml:2: tiers\.llama: "\(unallocated\)" is reserved: the ESG report keys its row of facility energy that no request used so/,
      /^tokenwatt\.yaml:4: replicas\[0\]\.tier: "\(none\)" is reserved: the ESG report keys its rows of requests without a team or feature so/,
      /^tokenwatt\.yaml:7: proxy\.replica\.tier: "\(unallocated\)" is reserved/,
      /^tokenwatt\.yaml:9: engineMetrics\.targets\[0\]\.model: "\(unallocated\)" is reserved/,
    ]);
  });
});

test('labels.headers: each label is held to a record label\'s rules, and the proxy carries at most a record\'s 32 labels', () => {
  const long = `l${'x'.repeat(64)}`;
  assertExactly(errorsOf({ flags: { labelsHeaders: JSON.stringify({ [long]: 'x-long', project: 'x-project' }) } }), [
    new RegExp(`^--labels-headers / TOKENWATT_LABELS_HEADERS: ${long}: a label name must match .* and be at most 64 characters \\(from --labels-headers\\)$`),
  ]);
  // team and feature keep their default headers: 30 more make 32, 31 more too many.
  const labels = (n: number) => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, `x-l${i}`])));
  assert.ok(loadConfig({ flags: { labelsHeaders: labels(30) }, env: {} }).ok);
  assertExactly(errorsOf({ flags: { labelsHeaders: labels(31) } }), [/^--labels-headers \/ TOKENWATT_LABELS_HEADERS: the proxy would carry 33 labels \(team, feature, l0, .*, l30\) into each record; a record holds at most 32$/]);
});

test('otlp.attributes.labels: label names held to a record\'s rules, at most 32 labels with team and feature, one attribute per field', () => {
  const yaml = (labels: Record<string, unknown>) => `otlp:\n  attributes:\n    labels: ${JSON.stringify(labels)}\n`;
  withFile('c.yaml', yaml({ 'cost-center': ['app.cost_center'], team: ['app.team'], project: ['tokenwatt.feature'] }), (path) => {
    assertExactly(errorsOf({ configFile: path }), [
      /^c\.yaml:3: otlp\.attributes\.labels\.cost-center: a label name must match \[a-zA-Z_\]\[a-zA-Z0-9_\]\* and be at most 64 characters$/,
      /^c\.yaml:3: otlp\.attributes\.labels\.team: team has its own key: set otlp\.attributes\.team, got \["app\.team"\]$/,
      /^c\.yaml:3: otlp\.attributes\.labels\.project: attribute 'tokenwatt\.feature' is read for both feature and labels\.project; give each its own attribute, got \["tokenwatt\.feature"\]$/,
    ]);
  });
  const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, [`app.l${i}`]]));
  withFile('c.yaml', yaml(many(30)), (path) => assert.ok(loadConfig({ configFile: path, env: {} }).ok));
  withFile('c.yaml', yaml(many(31)), (path) => {
    assertExactly(errorsOf({ configFile: path }), [/^c\.yaml:3: otlp\.attributes\.labels: with team and feature, spans would carry 33 labels; a record holds at most 32, got .*/]);
  });
});
