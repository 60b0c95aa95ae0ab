/**
 * The plain manifests in deploy/kubernetes/ against the Kubernetes API schemas (no cluster runs
 * here) and against what the issue asks of them: GPU nodes only, NVML reachable, probes on /healthz
 * and /readyz, node-local ingest, least privilege.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type Manifest, REPO_ROOT, parseManifests, schemaErrors, typeErrors } from './support/k8s-validate.js';
import { type Loose, agentContainer, envOf, only, podSpec, selects } from './support/manifests.js';

const FILES = ['deploy/kubernetes/tokenwatt.yaml', 'deploy/kubernetes/monitoring.yaml', 'deploy/kubernetes/grafana-dashboard.yaml', 'deploy/kubernetes/optional/podmonitor.yaml'];

function load(file: string): Manifest[] {
  return parseManifests(readFileSync(join(REPO_ROOT, file), 'utf8'), file);
}

const all = FILES.flatMap((file) => load(file).map((doc) => ({ file, doc })));
const core = load('deploy/kubernetes/tokenwatt.yaml');

describe('deploy/kubernetes against the API schemas', () => {
  it('every document passes the kubernetes-models schema validators', () => {
    assert.ok(all.length >= 8, `expected the full set of documents, found ${all.length}`);
    for (const { file, doc } of all) {
      assert.equal(schemaErrors(doc), '', `${file}: ${doc.kind} ${(doc.metadata as Loose)?.name}`);
    }
  });

  it('no document has a field unknown to its API type', () => {
    const errors = typeErrors(all.map((a) => a.doc), all.map((a) => `${a.file} ${a.doc.kind}`));
    assert.deepEqual(errors, []);
  });

  it('the schema pass rejects a wrong enum and a missing required field (control)', () => {
    const service = structuredClone(only(core, 'Service', 'tokenwatt-ingest'));
    service.spec.internalTrafficPolicy = 'Nearby';
    assert.match(schemaErrors(service), /internalTrafficPolicy/);
    const ds = structuredClone(only(core, 'DaemonSet'));
    delete ds.spec.template.spec.containers[0].name;
    assert.match(schemaErrors(ds), /name/);
  });

  it('the type pass rejects a misspelt field (control)', () => {
    const ds = structuredClone(only(core, 'DaemonSet'));
    ds.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
    const errors = typeErrors([ds], ['misspelt']);
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /readOnlyRootFileSystem/);
  });
});

describe('the DaemonSet', () => {
  const pod = podSpec(core);
  const agent = agentContainer(core);

  it('runs only on GPU nodes and tolerates the usual GPU taints', () => {
    assert.equal(pod.nodeSelector['nvidia.com/gpu.present'], 'true');
    const tolerations: Loose[] = pod.tolerations;
    assert.ok(tolerations.some((t) => t.key === 'nvidia.com/gpu' && t.operator === 'Exists' && t.effect === undefined), 'nvidia.com/gpu, any effect');
    assert.ok(tolerations.some((t) => t.key === 'sku' && t.value === 'gpu' && t.effect === 'NoSchedule'), 'AKS sku=gpu');
  });

  it('reaches NVML through the NVIDIA runtime without allocating a GPU', () => {
    assert.equal(pod.runtimeClassName, 'nvidia');
    const env = envOf(agent);
    assert.equal(env.get('NVIDIA_VISIBLE_DEVICES')?.value, 'all');
    assert.equal(env.get('NVIDIA_DRIVER_CAPABILITIES')?.value, 'utility');
    for (const section of ['requests', 'limits']) {
      assert.equal(agent.resources[section]['nvidia.com/gpu'], undefined, `no nvidia.com/gpu ${section}`);
    }
  });

  it('probes /healthz for liveness and startup, /readyz for readiness, on the named port', () => {
    assert.equal(agent.livenessProbe.httpGet.path, '/healthz');
    assert.equal(agent.startupProbe.httpGet.path, '/healthz');
    assert.equal(agent.readinessProbe.httpGet.path, '/readyz');
    const http = (agent.ports as Loose[]).find((p) => p.name === 'http');
    assert.equal(http?.containerPort, 9477);
    for (const probe of [agent.livenessProbe, agent.readinessProbe, agent.startupProbe]) assert.equal(probe.httpGet.port, 'http');
  });

  it('has resource requests and limits', () => {
    assert.ok(agent.resources.requests.cpu && agent.resources.requests.memory);
    assert.ok(agent.resources.limits.memory);
  });

  it('runs unprivileged: non-root, read-only root filesystem, no capabilities, no escalation', () => {
    const sc = agent.securityContext;
    assert.equal(sc.runAsNonRoot, true);
    assert.ok(sc.runAsUser > 0);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.privileged, undefined);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.capabilities.add, undefined);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(pod.hostNetwork, undefined);
    assert.equal(pod.hostPID, undefined);
  });

  it('writes only to the ledger volume and /tmp', () => {
    const writable = (agent.volumeMounts as Loose[]).filter((m) => m.readOnly !== true).map((m) => m.mountPath).sort();
    assert.deepEqual(writable, ['/tmp', '/var/lib/tokenwatt']);
    const env = envOf(agent);
    assert.match(env.get('TOKENWATT_DB')?.value ?? '', /^\/var\/lib\/tokenwatt\//);
  });

  it('hands the hostPath ledger to the agent uid with CAP_CHOWN only', () => {
    const init: Loose[] = pod.initContainers;
    assert.equal(init.length, 1);
    const owner = init[0];
    assert.deepEqual(owner.securityContext.capabilities, { drop: ['ALL'], add: ['CHOWN'] });
    assert.ok(owner.command.includes(`${agent.securityContext.runAsUser}:${agent.securityContext.runAsGroup}`));
  });

  it('mounts the configuration and passes it with --config', () => {
    const configMount = (agent.volumeMounts as Loose[]).find((m) => m.name === 'config');
    assert.equal(configMount?.readOnly, true);
    const i = agent.args.indexOf('--config');
    assert.ok(i >= 0);
    assert.ok(String(agent.args[i + 1]).startsWith(`${configMount.mountPath}/`));
    const volume = (pod.volumes as Loose[]).find((v) => v.name === 'config');
    const configMap = only(core, 'ConfigMap', volume.configMap.name);
    const file = String(agent.args[i + 1]).slice(configMount.mountPath.length + 1);
    assert.ok(typeof configMap.data[file] === 'string', `ConfigMap has ${file}`);
  });

  it('uses an account without API permissions or a mounted token', () => {
    assert.equal(pod.automountServiceAccountToken, false);
    const account = only(core, 'ServiceAccount', pod.serviceAccountName);
    assert.equal(account.automountServiceAccountToken, false);
    const rbac = all.filter(({ doc }) => /Role|RoleBinding/.test(doc.kind));
    assert.deepEqual(rbac, []);
  });
});

describe('Services and monitors', () => {
  const podLabels = only(core, 'DaemonSet').spec.template.metadata.labels;
  const agent = agentContainer(core);
  const portNames = new Set((agent.ports as Loose[]).map((p) => p.name));

  it('the ingest Service is node-local and reaches the agent pods', () => {
    const ingest = only(core, 'Service', 'tokenwatt-ingest');
    assert.equal(ingest.spec.internalTrafficPolicy, 'Local');
    assert.ok(selects(ingest.spec.selector, podLabels));
    for (const port of ingest.spec.ports) assert.ok(portNames.has(port.targetPort), `targetPort ${port.targetPort}`);
  });

  it('the metrics Service is headless and reaches the agent pods', () => {
    const metrics = only(core, 'Service', 'tokenwatt-metrics');
    assert.equal(metrics.spec.clusterIP, 'None');
    assert.ok(selects(metrics.spec.selector, podLabels));
  });

  it('the ServiceMonitor selects the metrics Service only, by a port it has, as job tokenwatt', () => {
    const monitoring = load('deploy/kubernetes/monitoring.yaml');
    const sm = only(monitoring, 'ServiceMonitor');
    const services = core.filter((d) => d.kind === 'Service');
    const selected = services.filter((s) => selects(sm.spec.selector.matchLabels, (s.metadata as Loose).labels));
    assert.deepEqual(selected.map((s) => (s.metadata as Loose).name), ['tokenwatt-metrics']);
    const endpoint = sm.spec.endpoints[0];
    assert.ok((selected[0]?.spec as Loose).ports.some((p: Loose) => p.name === endpoint.port));
    assert.equal(endpoint.path, '/metrics');
    assert.ok(endpoint.relabelings.some((r: Loose) => r.targetLabel === 'job' && r.replacement === 'tokenwatt'));
  });

  it('the PodMonitor selects the agent pods by the container port name, as job tokenwatt', () => {
    const pm = only(load('deploy/kubernetes/optional/podmonitor.yaml'), 'PodMonitor');
    assert.ok(selects(pm.spec.selector.matchLabels, podLabels));
    const endpoint = pm.spec.podMetricsEndpoints[0];
    assert.ok(portNames.has(endpoint.port));
    assert.ok(endpoint.relabelings.some((r: Loose) => r.targetLabel === 'job' && r.replacement === 'tokenwatt'));
  });

  it('the PrometheusRule carries the rules file unchanged', async () => {
    const { parse } = await import('yaml');
    const rule = only(load('deploy/kubernetes/monitoring.yaml'), 'PrometheusRule');
    const file = parse(readFileSync(join(REPO_ROOT, 'deploy/prometheus/tokenwatt.rules.yaml'), 'utf8'));
    assert.deepEqual(rule.spec, file);
  });

  it('the dashboard ConfigMap carries the dashboard unchanged, for the Grafana sidecar', () => {
    const cm = only(load('deploy/kubernetes/grafana-dashboard.yaml'), 'ConfigMap');
    assert.equal(cm.metadata.labels.grafana_dashboard, '1');
    const file = readFileSync(join(REPO_ROOT, 'deploy/grafana/tokenwatt.json'), 'utf8');
    assert.deepEqual(JSON.parse(cm.data['tokenwatt.json']), JSON.parse(file));
  });
});
