/**
 * What the chart hands the agent is what the agent accepts: the rendered config.yaml and the
 * DaemonSet's TOKENWATT_* environment go through the agent's own loadConfig, for the default
 * values and for each option that changes them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { CONFIG_OPTIONS, loadConfig } from '../../agent/config.js';
import { parseCarbonConfig } from '../../model/carbon/carbon-config.js';
import { DEFAULT_PUE } from '../../model/carbon/pue.js';
import { buildEsgReport } from '../../exporters/esg/build-esg-report.js';
import { makeRollups } from '../esg/rollup-fixtures.js';
import { renderChart } from '../../deploy/scripts/generate.js';
import { helmBinary } from '../../deploy/scripts/helm-binary.js';
import { type Manifest, parseManifests } from './support/k8s-validate.js';
import { type Loose, agentContainer, only } from './support/manifests.js';

let helm = '';

/** The agent's environment as the kubelet would set it (downward API and Secret resolved). */
function environment(docs: Manifest[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of agentContainer(docs).env as Loose[]) {
    if (typeof e.value === 'string') env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = 'gpu-node-1';
    else if (e.valueFrom?.secretKeyRef) env[e.name] = 'secret-token-from-the-secret';
    else assert.fail(`env ${e.name}: unexpected source ${JSON.stringify(e)}`);
  }
  return env;
}

function load(set: Record<string, string>) {
  const docs = parseManifests(renderChart({ helm, set }), 'chart');
  const configYaml: string = only(docs, 'ConfigMap', 'tokenwatt').data['config.yaml'];
  const dir = mkdtempSync(join(tmpdir(), 'tokenwatt-chart-config-'));
  try {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, configYaml);
    return { docs, result: loadConfig({ env: environment(docs), configFile: file }) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the chart configures the agent', () => {
  before(() => {
    helm = helmBinary();
  });

  it('sets only environment variables the agent knows (or NVIDIA runtime ones)', () => {
    const known = new Set(CONFIG_OPTIONS.map((o) => o.env));
    const variants: Record<string, string>[] = [{}, { 'nvidia.mode': 'hostPath', 'proxy.upstream': 'http://vllm:8000', 'ingestToken.secretName': 's' }];
    for (const set of variants) {
      const names = Object.keys(environment(parseManifests(renderChart({ helm, set }), 'chart')));
      const unknown = names.filter((n) => !known.has(n) && !n.startsWith('NVIDIA_'));
      assert.deepEqual(unknown, [], JSON.stringify(set));
    }
  });

  it('default values load, with the chart environment winning over the file', () => {
    const { result } = load({});
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.equal(result.config.host, '0.0.0.0');
    assert.equal(result.config.port, 9477);
    assert.equal(result.config.db, '/var/lib/tokenwatt/ledger.db');
    assert.equal(result.config.node, 'gpu-node-1');
    assert.equal(result.config.settleLateness, 120);
    assert.deepEqual(result.config.labels.user, ['team', 'feature']);
    assert.equal(result.config.labels.cap, 50);
    assert.equal(result.config.tiers['meta-llama/Llama-3.1-70B-Instruct'], 'large');
    assert.deepEqual(result.config.hostPower, { rapl: 'off' });
  });

  it('the default carbon factors pass the carbon section schema', () => {
    const { result } = load({});
    assert.ok(result.ok);
    const carbon = parseCarbonConfig(result.config.carbon);
    assert.ok(carbon.ok, carbon.ok ? '' : carbon.errors.join('\n'));
    assert.equal(carbon.config.pue, 1.58);
    assert.equal(carbon.config.region, 'world');
  });

  // README: "a default PUE or default embodied factors are labelled as defaults". A PUE the chart
  // sets for the operator (with a source of its own) is no site's PUE, yet reports called it configured.
  it('the default values leave PUE to the agent, so the ESG report labels it a default; a set one is the site\'s', () => {
    const pueOf = (set: Record<string, string>) => {
      const { result } = load(set);
      assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
      const carbon = parseCarbonConfig(result.config.carbon);
      assert.ok(carbon.ok, carbon.ok ? '' : carbon.errors.join('\n'));
      const fromMs = Date.UTC(2026, 6, 1);
      const report = buildEsgReport({
        ...makeRollups({ fromMs, hours: 1 }),
        carbon: carbon.config,
        period: { fromMs, toMs: fromMs + 3_600_000, label: 'an hour' },
        toolVersion: 'test',
        generatedAt: '2026-07-02T00:00:00.000Z',
      });
      const factor = report.factors.find((f) => f.role === 'pue');
      assert.ok(factor);
      return factor;
    };
    const byDefault = pueOf({});
    assert.equal(byDefault.value, DEFAULT_PUE);
    assert.match(byDefault.note ?? '', /default/);
    const set = pueOf({ 'config.carbon.pue': '2' }); // a whole number: helm's --set reads 1.2 as a string
    assert.equal(set.value, 2);
    assert.equal(set.note, null);
  });

  it('hostPath NVML, the proxy and the ingest token load and reach the agent', () => {
    const { result } = load({ 'nvidia.mode': 'hostPath', 'proxy.upstream': 'http://vllm.inference.svc:8000', 'ingestToken.secretName': 'tw' });
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.equal(result.config.nvmlLibrary, '/host/nvidia/lib/libnvidia-ml.so.1');
    assert.equal(result.config.proxyPort, 9478);
    assert.equal(result.config.upstream, 'http://vllm.inference.svc:8000');
    assert.equal(result.config.ingestToken, 'secret-token-from-the-secret');
  });

  it('RAPL on: the agent reads the mounted powercap tree', () => {
    const { result } = load({ 'rapl.enabled': 'true', 'config.hostPower.overheadW': '40' });
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.deepEqual(result.config.hostPower, { rapl: 'auto', powercapRoot: '/host/powercap/intel-rapl', overheadW: 40 });
  });

  it('a config value the agent refuses is reported by name (control)', () => {
    const { result } = load({ 'config.settlePeriod': '7' });
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.errors.join('\n'), /settlePeriod/);
  });
});
