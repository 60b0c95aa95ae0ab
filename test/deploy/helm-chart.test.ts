/**
 * The Helm chart, rendered by a real (pinned) helm: lint, and every documented option rendered and
 * validated against the Kubernetes API schemas, with what each option must change.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { raplAbsentError, raplPermissionError } from '../../collectors/host/rapl-errors.js';
import { CHART_DIR, REPO_ROOT, renderChart } from '../../deploy/scripts/generate.js';
import { helmBinary } from '../../deploy/scripts/helm-binary.js';
import { type Manifest, parseManifests, schemaErrors, typeErrors } from './support/k8s-validate.js';
import { type Loose, agentContainer, envOf, only, podSpec } from './support/manifests.js';

let helm = '';

function render(set: Record<string, string> = {}): Manifest[] {
  return parseManifests(renderChart({ helm, set }), `helm template ${JSON.stringify(set)}`);
}

function renderError(set: Record<string, string>): string {
  try {
    renderChart({ helm, set });
  } catch (error) {
    return String((error as { stderr?: unknown }).stderr ?? error);
  }
  return '';
}

/** Options a user sets, each rendered and validated. */
const VARIANTS: Record<string, Record<string, string>> = {
  defaults: {},
  'NVML through a hostPath mount': { 'nvidia.mode': 'hostPath' },
  'RAPL host energy': { 'rapl.enabled': 'true' },
  'ledger in an emptyDir': { 'ledger.type': 'emptyDir' },
  'proxy upstream and ingest token': {
    'proxy.upstream': 'http://vllm.inference.svc:8000',
    'ingestToken.secretName': 'tokenwatt-ingest',
  },
  'PodMonitor instead of ServiceMonitor': { 'podMonitor.enabled': 'true', 'serviceMonitor.enabled': 'false' },
  'no Prometheus operator': { 'serviceMonitor.enabled': 'false', 'prometheusRule.enabled': 'false', 'grafanaDashboard.enabled': 'false' },
};

describe('helm chart', () => {
  before(() => {
    helm = helmBinary();
  });

  it('passes helm lint --strict', () => {
    const out = execFileSync(helm, ['lint', '--strict', CHART_DIR], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  for (const [name, set] of Object.entries(VARIANTS)) {
    it(`${name}: renders documents valid against the API schemas, with no unknown field`, () => {
      const docs = render(set);
      for (const doc of docs) assert.equal(schemaErrors(doc), '', `${doc.kind} ${(doc.metadata as Loose)?.name}`);
      assert.deepEqual(typeErrors(docs, docs.map((d) => `${name}: ${d.kind}`)), []);
    });
  }

  it('hostPath NVML: driver directory read-only, TOKENWATT_NVML_LIBRARY inside it, privileged, no runtime class', () => {
    const docs = render(VARIANTS['NVML through a hostPath mount']);
    const pod = podSpec(docs);
    const agent = agentContainer(docs);
    assert.equal(pod.runtimeClassName, undefined);
    const mount = (agent.volumeMounts as Loose[]).find((m) => m.name === 'nvidia-driver');
    assert.equal(mount?.readOnly, true);
    const volume = (pod.volumes as Loose[]).find((v) => v.name === 'nvidia-driver');
    assert.equal(volume.hostPath.path, '/usr/lib/x86_64-linux-gnu');
    const library = envOf(agent).get('TOKENWATT_NVML_LIBRARY')?.value;
    assert.equal(library, `${mount.mountPath}/libnvidia-ml.so.1`);
    assert.equal(envOf(agent).has('NVIDIA_VISIBLE_DEVICES'), false);
    assert.equal(agent.securityContext.privileged, true);
    assert.deepEqual(agent.securityContext.capabilities.drop, ['ALL']);
  });

  it('RAPL: the host powercap tree read-only, uid 0 without capabilities, config told where to read', () => {
    const docs = render(VARIANTS['RAPL host energy']);
    const pod = podSpec(docs);
    const agent = agentContainer(docs);
    const volume = (pod.volumes as Loose[]).find((v) => v.name === 'powercap');
    assert.equal(volume.hostPath.path, '/sys/devices/virtual/powercap');
    const mount = (agent.volumeMounts as Loose[]).find((m) => m.name === 'powercap');
    assert.equal(mount.readOnly, true);
    assert.equal(agent.securityContext.runAsUser, 0);
    assert.equal(agent.securityContext.runAsNonRoot, false);
    assert.equal(agent.securityContext.privileged, undefined);
    assert.equal(agent.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(agent.securityContext.capabilities, { drop: ['ALL'] });
    const config = parse(only(docs, 'ConfigMap', 'tokenwatt').data['config.yaml']);
    assert.deepEqual(config.hostPower, { rapl: 'auto', powercapRoot: `${mount.mountPath}/intel-rapl` });
    // doctor's RAPL fix advises what the chart does: this mount, powercapRoot at its intel-rapl.
    for (const fix of [raplAbsentError('/sys/class/powercap').fix, raplPermissionError('/sys/class/powercap/intel-rapl:0/energy_uj').fix]) {
      assert.ok(fix.includes(`mount the host's ${volume.hostPath.path} read-only`), fix);
      assert.match(fix, /hostPower\.powercapRoot at its intel-rapl directory/);
      assert.match(fix, /--set rapl\.enabled=true/);
    }
    // `kubectl exec ... doctor` reads the same tree as the agent.
    assert.equal(envOf(agent).get('TOKENWATT_POWERCAP_ROOT')?.value, config.hostPower.powercapRoot);
    assert.equal(envOf(agentContainer(render())).has('TOKENWATT_POWERCAP_ROOT'), false);
    // Off by default, so that an unprivileged agent does not try to read it.
    const plain = parse(only(render(), 'ConfigMap', 'tokenwatt').data['config.yaml']);
    assert.deepEqual(plain.hostPower, { rapl: 'off' });
  });

  it('hostPath ledger: the init container hands it to the uid and gid the agent runs as, with or without RAPL', () => {
    // Switching rapl.enabled keeps the node's ledger, owned by the previous uid: the agent runs with
    // every capability dropped (no CAP_DAC_OVERRIDE), so even uid 0 can only write what it owns.
    for (const set of [{}, VARIANTS['RAPL host energy'], VARIANTS['NVML through a hostPath mount']]) {
      const docs = render(set);
      const agent = agentContainer(docs);
      const { runAsUser, runAsGroup } = agent.securityContext;
      const init = (podSpec(docs).initContainers as Loose[] | undefined) ?? [];
      assert.deepEqual(init.map((c) => c.name), ['ledger-owner'], JSON.stringify(set));
      const [owner] = init;
      assert.deepEqual(owner.command, ['chown', '-R', `${runAsUser}:${runAsGroup}`, '/var/lib/tokenwatt'], JSON.stringify(set));
      const ledgerMount = (m: Loose[]) => m.find((v) => v.name === 'ledger')?.mountPath;
      assert.equal(ledgerMount(owner.volumeMounts), ledgerMount(agent.volumeMounts));
      assert.deepEqual(owner.securityContext.capabilities, { drop: ['ALL'], add: ['CHOWN'] });
    }
    assert.equal(agentContainer(render(VARIANTS['RAPL host energy'])).securityContext.runAsUser, 0);
    assert.equal(agentContainer(render()).securityContext.runAsUser, 10001);
  });

  it('emptyDir ledger: no hostPath and no init container', () => {
    const docs = render(VARIANTS['ledger in an emptyDir']);
    const pod = podSpec(docs);
    assert.deepEqual((pod.volumes as Loose[]).find((v) => v.name === 'ledger').emptyDir, {});
    assert.equal(pod.initContainers, undefined);
  });

  it('proxy: a port on the pod and on the node-local ingest Service; token from the Secret', () => {
    const docs = render(VARIANTS['proxy upstream and ingest token']);
    const agent = agentContainer(docs);
    const proxyPort = (agent.ports as Loose[]).find((p) => p.name === 'proxy');
    assert.equal(proxyPort?.containerPort, 9478);
    assert.equal(envOf(agent).get('TOKENWATT_PROXY_PORT')?.value, '9478');
    assert.equal(envOf(agent).get('TOKENWATT_UPSTREAM')?.value, 'http://vllm.inference.svc:8000');
    const ingest = only(docs, 'Service', 'tokenwatt-ingest');
    assert.ok(ingest.spec.ports.some((p: Loose) => p.name === 'proxy' && p.targetPort === 'proxy'));
    assert.deepEqual(envOf(agent).get('TOKENWATT_INGEST_TOKEN')?.valueFrom, { secretKeyRef: { name: 'tokenwatt-ingest', key: 'token' } });
    // Without an upstream there is no proxy port anywhere.
    const plain = render();
    assert.equal((agentContainer(plain).ports as Loose[]).some((p) => p.name === 'proxy'), false);
  });

  it('never renders both a ServiceMonitor and a PodMonitor by default, and none without the operator', () => {
    const kinds = (docs: Manifest[]) => docs.map((d) => d.kind).filter((k) => k.endsWith('Monitor') || k === 'PrometheusRule').sort();
    assert.deepEqual(kinds(render()), ['PrometheusRule', 'ServiceMonitor']);
    assert.deepEqual(kinds(render(VARIANTS['PodMonitor instead of ServiceMonitor'])), ['PodMonitor', 'PrometheusRule']);
    assert.deepEqual(kinds(render(VARIANTS['no Prometheus operator'])), []);
  });

  it('a config change changes the pod template (rolling restart on new config)', () => {
    const checksum = (docs: Manifest[]) => only(docs, 'DaemonSet').spec.template.metadata.annotations['checksum/config'];
    assert.notEqual(checksum(render()), checksum(render({ 'config.labels.cap': '10' })));
  });

  it('rejects a proxy on the agent\'s own port, only when the proxy is on', () => {
    const upstream = 'http://vllm.inference.svc:8000';
    assert.match(renderError({ 'proxy.upstream': upstream, 'proxy.port': '9477' }), /proxy\.port must differ from port \(both are 9477\)/);
    assert.match(renderError({ 'proxy.upstream': upstream, port: '9000', 'proxy.port': '9000' }), /both are 9000/);
    // No upstream, no proxy: its port is unused.
    assert.equal(renderError({ 'proxy.port': '9477' }), '');
  });

  it('rejects a ServiceMonitor and a PodMonitor together (every agent scraped twice)', () => {
    assert.match(renderError({ 'podMonitor.enabled': 'true' }), /serviceMonitor\.enabled and podMonitor\.enabled are both true/);
  });

  it('long release names and fullnameOverride: every Service name stays a DNS label of at most 63 characters', () => {
    const dnsLabel = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
    const cases: { release: string; set?: string[] }[] = [
      { release: 'a-very-long-release-name-for-the-gpu-energy-agent-x' }, // 51 characters, plus "-tokenwatt"
      { release: 'energy-accounting-on-the-shared-gpu-cluster-tokenwatt' }, // helm's longest (53), chart name inside
      { release: 'tokenwatt', set: ['--set', `fullnameOverride=${'x'.repeat(70)}`] },
      { release: 'tokenwatt', set: ['--set', `fullnameOverride=${'x'.repeat(54)}-y`] }, // cut right after a "-"
    ];
    for (const { release, set = [] } of cases) {
      const out = execFileSync(helm, ['template', release, CHART_DIR, '--namespace', 'tokenwatt', ...set], { cwd: REPO_ROOT, encoding: 'utf8' });
      const services = parseManifests(out, release).filter((d) => d.kind === 'Service').map((d) => String((d.metadata as Loose).name));
      assert.equal(services.length, 2, release);
      for (const name of services) {
        assert.ok(name.length <= 63, `${name}: ${name.length} characters`);
        assert.match(name, dnsLabel);
      }
      assert.deepEqual(services.map((n) => n.replace(/^.*-/, '')).sort(), ['ingest', 'metrics']);
    }
  });

  it('rejects unknown modes with a message naming the value', () => {
    assert.match(renderError({ 'nvidia.mode': 'magic' }), /nvidia\/mode|nvidia\.mode/);
    assert.match(renderError({ 'ledger.type': 'pvc' }), /ledger\/type|ledger\.type/);
  });

  // Without --config, doctor judges `power: auto` and the default nvidia-smi whatever config.power
  // and config.nvidiaSmi say: the NOTES must give the command README gives (step 3, "Check it").
  it('NOTES run doctor as README does, on the agent\'s own config file', () => {
    const out = execFileSync(helm, ['install', 'tokenwatt', CHART_DIR, '--namespace', 'tokenwatt', '--dry-run=client'], { cwd: REPO_ROOT, encoding: 'utf8' });
    const notes = out.slice(out.indexOf('NOTES:'));
    const doctorIn = (text: string) => text.split('\n').map((l) => l.trim().replace(/\s+#.*$/, '')).filter((l) => / doctor\b/.test(l) && l.startsWith('kubectl '));
    const readme = doctorIn(readFileSync(join(REPO_ROOT, 'deploy/README.md'), 'utf8'));
    assert.equal(readme.length, 1, 'README has one doctor command');
    assert.deepEqual(doctorIn(notes), readme);
    const mounted = agentContainer(render()).volumeMounts as Loose[];
    assert.ok(mounted.some((m) => m.name === 'config' && readme[0]?.endsWith(`--config ${m.mountPath}/config.yaml`)), 'the config file is where the command reads it');
  });
});
