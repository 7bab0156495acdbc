/**
 * The sandbox's network, enforced (DESIGN.md, Security): deploy/k8s/network-policies.yaml as
 * applied, on the real node, where kube-router enforces NetworkPolicies (support/node/kube-router.ts).
 * Stand-ins for storage, the manager, the gateway and the dev overlay's demo model carry the real
 * labels and ports, behind Services of the real names. A pod labelled as a runner reaches DNS, the
 * gateway, storage and the manager by Service name, and nothing else: no other pod, here or in
 * another namespace, no host process on the node's address, no Kubernetes API, no internet, no
 * model. The gateway reaches HTTPS outside, the API and the demo model, but not storage. Only the
 * manager reaches a runner.
 *
 * How a probe tells the policy apart from a broken network: kube-router REJECTs what no policy
 * allows, so a TCP connect fails at once with ECONNREFUSED, and every refused probe is also run
 * from a control pod that no policy selects, in a namespace without policies, where it connects
 * (for the outside address: where it does anything but ECONNREFUSED, e.g. EHOSTUNREACH on a machine
 * without a route). So this suite fails if enforcement is off. Probes open fresh connections in a
 * new process each time, after kube-router has the pod's chain (its caveats: kube-router.ts).
 */
import { readFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, DiscoveryV1Api, type V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { createNamespace } from '../support/control-plane.js';
import { DNS_SERVICE_IP, NODE_IP, type RealNode } from '../support/node/cluster.js';
import { podFirewallPolicies } from '../support/node/kube-router.js';
import { RUNNER_IMAGE, sharedRealNode } from '../support/node/shared.js';
import { RESTRICTED_CONTAINER, waitForPod } from '../support/pods.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const pagewright = (component: string) => ({ 'app.kubernetes.io/name': 'pagewright', 'app.kubernetes.io/component': component });
const RUNNER_LABELS = { 'app.kubernetes.io/name': 'pagewright-runner' };
const isReady = (p: V1Pod) => !!p.status?.podIP && !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
/** A public address on 443, standing for the LLM endpoint. */
const OUTSIDE = { host: '1.1.1.1', port: 443 };

/** One probe: a TCP connect (the name resolved as a pod resolves it), or a DNS query over UDP. */
type Probe = { tcp: string; port: number } | { udpDns: string };
/** `connected`, `resolved`, or the error's code (ECONNREFUSED, EHOSTUNREACH, ...), or `timeout`. */
type Outcome = string;

/**
 * Runs in the pod (the runner image's node): every probe at once, each within a short timeout, in
 * a fresh process, so no connection predates the pod's chain.
 */
const PROBE_SCRIPT = `
const net = require('net'), dns = require('dns');
const probes = JSON.parse(process.argv[1]);
const resolver = new dns.Resolver({ timeout: 1500, tries: 1 });
resolver.setServers(require('fs').readFileSync('/etc/resolv.conf', 'utf8').match(/^nameserver\\s+(\\S+)/m).slice(1));
const probe = (p) => new Promise((done) => {
  if (p.udpDns) return resolver.resolve4(p.udpDns, (err, a) => done(err ? err.code : a.length ? 'resolved' : 'empty'));
  const s = net.connect({ host: p.tcp, port: p.port });
  const timer = setTimeout(() => { s.destroy(); done('timeout'); }, 2500);
  s.once('connect', () => { clearTimeout(timer); s.destroy(); done('connected'); });
  s.once('error', (e) => { clearTimeout(timer); done(e.code || String(e)); });
});
Promise.all(probes.map(probe)).then((r) => console.log(JSON.stringify(r)));
`;

describe('NetworkPolicies on the real node: runner egress only to DNS, the gateway, storage and the manager', function () {
  this.timeout(120_000);
  let node: RealNode;
  let core: CoreV1Api;
  let ns: string;
  let elsewhereNs: string;
  let dnsNs: string | undefined;
  let hostServer: Server;
  let hostPort: number;
  const ips = new Map<string, string>();

  /** A small TCP/HTTP server of the runner image, as restricted as a runner pod, with a Service. */
  async function standIn(namespace: string, name: string, labels: Record<string, string>, port: number, service?: string): Promise<void> {
    const pod: V1Pod = {
      metadata: { name, namespace, labels },
      spec: {
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: RUNNER_IMAGE,
            imagePullPolicy: 'Never',
            command: ['node', '-e', `require('http').createServer((q, s) => s.end('${name}')).listen(${port})`],
            ports: [{ name: 'http', containerPort: port }],
            // Ready once it listens (an exec probe: the policies under test decide what reaches
            // the pod over the network, the kubelet's probes included): until then a connect is
            // refused as a policy refuses it, and the Service has no endpoint
            readinessProbe: {
              exec: {
                command: [
                  'node',
                  '-e',
                  `require('net').connect(${port}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`,
                ],
              },
              periodSeconds: 1,
              timeoutSeconds: 5,
            },
            ...RESTRICTED_CONTAINER,
          },
        ],
      },
    };
    await core.createNamespacedPod({ namespace, body: pod });
    if (service)
      await core.createNamespacedService({
        namespace,
        body: { metadata: { name: service }, spec: { selector: labels, ports: [{ name: 'http', port, targetPort: 'http' }] } },
      });
  }

  async function probe(namespace: string, pod: string, probes: Probe[]): Promise<Outcome[]> {
    const { stdout } = await node.kubectl(['-n', namespace, 'exec', pod, '--', 'node', '-e', PROBE_SCRIPT, JSON.stringify(probes)]);
    return JSON.parse(stdout) as Outcome[];
  }
  /** Probes by label, with the outcome of each: what a failure message shows. */
  async function probeAll(namespace: string, pod: string, probes: Record<string, Probe>): Promise<Record<string, Outcome>> {
    const names = Object.keys(probes);
    const outcomes = await probe(
      namespace,
      pod,
      names.map((n) => probes[n]!),
    );
    return Object.fromEntries(names.map((n, i) => [n, outcomes[i]!]));
  }
  const svc = (name: string, namespace: string, port: number): Probe => ({ tcp: `${name}.${namespace}.svc.cluster.local.`, port });
  /** What the runner and every pod of the namespace may reach by Service name. */
  const reachedByAll = { storage: { tcp: 'pagewright-storage', port: 8080 }, manager: { tcp: 'pagewright-manager', port: 8081 } };

  /** What runner pods must not reach; the control pod reaches all of it. */
  const forbidden = (): Record<string, Probe> => ({
    'another pod in the namespace': svc('other', ns, 8099),
    'a pod in another namespace': svc('elsewhere', elsewhereNs, 8099),
    'a host process on the node address': { tcp: NODE_IP, port: hostPort },
    'the Kubernetes API': { tcp: 'kubernetes.default.svc.cluster.local.', port: 443 },
    'an outside address on 443': { tcp: OUTSIDE.host, port: OUTSIDE.port },
  });

  before(async function () {
    this.timeout(600_000);
    node = await sharedRealNode();
    core = node.kubeConfig().makeApiClient(CoreV1Api);
    ns = await createNamespace(node, 'egress');
    elsewhereNs = await createNamespace(node, 'elsewhere');
    for (const n of [ns, elsewhereNs]) await node.kubectl(['label', 'namespace', n, 'pod-security.kubernetes.io/enforce=restricted']);
    hostServer = createServer((s) => s.end());
    await new Promise<void>((resolve) => hostServer.listen(0, NODE_IP, resolve));
    hostPort = (hostServer.address() as { port: number }).port;

    // the policies as a user installs them, and the dev overlay's for the demo model
    await node.kubectl(['-n', ns, 'apply', '-f', join(REPO_ROOT, 'deploy/k8s/network-policies.yaml')]);
    const devPolicies = (await readFile(join(REPO_ROOT, 'deploy/dev/demo-model.yaml'), 'utf8'))
      .split(/^---$/m)
      .filter((d) => /^kind: NetworkPolicy$/m.test(d));
    expect(devPolicies).to.have.length(2);
    await node.kubectl(['-n', ns, 'apply', '-f', '-'], { input: devPolicies.join('\n---\n') });

    await Promise.all([
      standIn(ns, 'storage', pagewright('storage'), 8080, 'pagewright-storage'),
      standIn(ns, 'manager', pagewright('manager'), 8081, 'pagewright-manager'),
      standIn(ns, 'gateway', pagewright('gateway'), 8085, 'pagewright-gateway'),
      standIn(ns, 'demo-model', pagewright('demo-model'), 8090, 'pagewright-demo-model'),
      standIn(ns, 'other', { app: 'other' }, 8099, 'other'),
      standIn(ns, 'runner', RUNNER_LABELS, 8082),
      standIn(elsewhereNs, 'elsewhere', { app: 'elsewhere' }, 8099, 'elsewhere'),
    ]);
    for (const [namespace, name] of [
      ...['storage', 'manager', 'gateway', 'demo-model', 'other', 'runner'].map((n) => [ns, n] as const),
      [elsewhereNs, 'elsewhere'] as const,
    ]) {
      const pod = await waitForPod(core, namespace, name, 'Ready', isReady, 60_000);
      ips.set(name, pod.status!.podIP!);
    }
    // and each Service has its pod as a ready endpoint (a Service without one is REJECTed by
    // kube-proxy: ECONNREFUSED, which is what a policy's refusal looks like here)
    const discovery = node.kubeConfig().makeApiClient(DiscoveryV1Api);
    for (const [namespace, service, pod] of [
      [ns, 'pagewright-storage', 'storage'],
      [ns, 'pagewright-manager', 'manager'],
      [ns, 'pagewright-gateway', 'gateway'],
      [ns, 'pagewright-demo-model', 'demo-model'],
      [ns, 'other', 'other'],
      [elsewhereNs, 'elsewhere', 'elsewhere'],
    ] as const) {
      await waitFor(
        `the Service ${namespace}/${service} with ${pod} as a ready endpoint`,
        async () => {
          const slices = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` });
          return slices.items.some((sl) =>
            (sl.endpoints ?? []).some((e) => e.conditions?.ready === true && e.addresses.includes(ips.get(pod)!)),
          );
        },
        30_000,
        100,
      );
    }
    // kube-router's chains for each pod, with the policies that select it (until then a new pod
    // is unrestricted); its syncs see every pod's address by then, so every ipset is complete
    const expected: Array<[string, string, string[]]> = [
      [ns, 'runner', ['pagewright-runner']],
      [ns, 'gateway', ['pagewright-gateway', 'pagewright-gateway-to-demo-model']],
      [ns, 'storage', ['default', 'pagewright-storage']],
      [ns, 'manager', ['default', 'pagewright-manager']],
      [ns, 'demo-model', ['default', 'pagewright-demo-model']],
      [ns, 'other', ['default']],
      [elsewhereNs, 'elsewhere', ['default']],
    ];
    for (const [namespace, name, policies] of expected) await waitForPodPolicies(namespace, name, policies);
    // kube-router fills the ipsets of a policy's peers (the pods a runner may reach) as it syncs,
    // which can come after the pod's own chain: until then an allowed peer is REJECTed as if no
    // policy allowed it (a run saw the runner refused by storage, then by the manager). So,
    // like an Eventually, until every allowed path answers; the tests then assert each path
    // and each refusal (a refusal is told from a gap by the control pod, which connects).
    const allowed: Array<[string, string, Record<string, Probe>]> = [
      [ns, 'runner', { gateway: { tcp: 'pagewright-gateway', port: 8085 }, ...reachedByAll }],
      [ns, 'gateway', { manager: reachedByAll.manager, 'demo model': { tcp: 'pagewright-demo-model', port: 8090 } }],
      [ns, 'manager', { runner: { tcp: ips.get('runner')!, port: 8082 } }],
      [ns, 'other', reachedByAll],
    ];
    for (const [namespace, pod, probes] of allowed) {
      let last: Record<string, Outcome> = {};
      await waitFor(
        `${namespace}/${pod} to reach ${Object.keys(probes).join(', ')}`,
        async () => {
          last = await probeAll(namespace, pod, probes);
          return Object.values(last).every((o) => o === 'connected');
        },
        60_000,
        500,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; the last probe got ${JSON.stringify(last)}`);
      });
    }
  });
  after(async () => {
    hostServer?.close();
    for (const n of [ns, elsewhereNs, dnsNs]) if (n) await node.kubectl(['delete', 'namespace', n, '--wait=false'], { allowFailure: true });
  });

  /** Until kube-router's chain for the pod runs through exactly these policies. */
  async function waitForPodPolicies(namespace: string, name: string, policies: string[]): Promise<void> {
    let last: string[] | null = null;
    await waitFor(
      `kube-router's chain for ${namespace}/${name} with ${policies.join(', ')}`,
      async () => {
        last = await podFirewallPolicies(namespace, name);
        return JSON.stringify(last) === JSON.stringify(policies);
      },
      30_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; it has ${JSON.stringify(last)}`);
    });
  }

  it('a runner reaches DNS (UDP and TCP), the gateway, storage and the manager by Service name', async () => {
    const outcomes = await probeAll(ns, 'runner', {
      'DNS over UDP': { udpDns: `pagewright-storage.${ns}.svc.cluster.local` },
      'DNS over TCP': { tcp: 'kube-dns.kube-system.svc.cluster.local.', port: 53 },
      gateway: { tcp: 'pagewright-gateway', port: 8085 },
      storage: { tcp: 'pagewright-storage', port: 8080 },
      manager: { tcp: 'pagewright-manager', port: 8081 },
    });
    expect(outcomes).to.deep.equal({
      'DNS over UDP': 'resolved',
      'DNS over TCP': 'connected',
      gateway: 'connected',
      storage: 'connected',
      manager: 'connected',
    });
  });

  it('a runner reaches nothing else: each is refused by the policy, and reached from a pod without one', async () => {
    const probes = forbidden();
    // the demo model admits the gateway only (deploy/dev): the gateway's test is its control
    const demoModel = { tcp: 'pagewright-demo-model', port: 8090 };
    const [runner, control] = await Promise.all([
      probeAll(ns, 'runner', { ...probes, 'the demo model (deploy/dev)': demoModel }),
      probeAll(elsewhereNs, 'elsewhere', probes),
    ]);
    const refused = Object.fromEntries([...Object.keys(probes), 'the demo model (deploy/dev)'].map((k) => [k, 'ECONNREFUSED']));
    expect(runner, 'from the runner pod').to.deep.equal(refused);
    const outside = 'an outside address on 443';
    expect(control[outside], 'the outside address from the control pod: no refusal of its own').to.not.equal('ECONNREFUSED');
    expect({ ...control, [outside]: 'not refused' }, 'from the control pod').to.deep.equal({
      ...Object.fromEntries(Object.keys(probes).map((k) => [k, 'connected'])),
      [outside]: 'not refused',
    });
  });

  it('the gateway reaches DNS, HTTPS outside, the Kubernetes API, the manager and the demo model, but not storage', async () => {
    const probes: Record<string, Probe> = {
      'DNS over UDP': { udpDns: `pagewright-manager.${ns}.svc.cluster.local` },
      'an outside address on 443': { tcp: OUTSIDE.host, port: OUTSIDE.port },
      'the Kubernetes API': { tcp: 'kubernetes.default.svc.cluster.local.', port: 443 },
      manager: { tcp: 'pagewright-manager', port: 8081 },
      'the demo model (deploy/dev)': { tcp: 'pagewright-demo-model', port: 8090 },
      storage: { tcp: 'pagewright-storage', port: 8080 },
      'another pod in the namespace': svc('other', ns, 8099),
    };
    const [gateway, control] = await Promise.all([
      probeAll(ns, 'gateway', probes),
      probeAll(elsewhereNs, 'elsewhere', { outside: probes['an outside address on 443']! }),
    ]);
    expect(gateway).to.deep.equal({
      'DNS over UDP': 'resolved',
      // what a pod without policies gets: `connected` here (and wherever there is a route)
      'an outside address on 443': control.outside,
      'the Kubernetes API': 'connected',
      manager: 'connected',
      'the demo model (deploy/dev)': 'connected',
      storage: 'ECONNREFUSED',
      'another pod in the namespace': 'ECONNREFUSED',
    });
  });

  it('only the manager reaches a runner (8082); storage and the manager are reached from their namespace only', async () => {
    const runner = { tcp: ips.get('runner')!, port: 8082 };
    const [fromManager, fromOther, fromElsewhere] = await Promise.all([
      probeAll(ns, 'manager', { runner }),
      probeAll(ns, 'other', {
        runner,
        gateway: { tcp: 'pagewright-gateway', port: 8085 },
        storage: { tcp: 'pagewright-storage', port: 8080 },
        manager: { tcp: 'pagewright-manager', port: 8081 },
      }),
      probeAll(elsewhereNs, 'elsewhere', {
        runner,
        storage: svc('pagewright-storage', ns, 8080),
        manager: svc('pagewright-manager', ns, 8081),
        gateway: svc('pagewright-gateway', ns, 8085),
      }),
    ]);
    expect(fromManager).to.deep.equal({ runner: 'connected' });
    expect(fromOther).to.deep.equal({ runner: 'ECONNREFUSED', gateway: 'ECONNREFUSED', storage: 'connected', manager: 'connected' });
    expect(fromElsewhere).to.deep.equal({
      runner: 'ECONNREFUSED',
      storage: 'ECONNREFUSED',
      manager: 'ECONNREFUSED',
      gateway: 'ECONNREFUSED',
    });
  });

  // why the policies allow DNS by port name as well as 53: pinned, so the names can go if CoreDNS
  // here ever serves on 53 itself
  it('DNS allowed by port 53 alone is refused here: policy ports match after the Service DNAT, and CoreDNS serves on 1053', async () => {
    dnsNs = await createNamespace(node, 'dns53');
    await node.kubectl(['label', 'namespace', dnsNs, 'pod-security.kubernetes.io/enforce=restricted']);
    await node.kubectl(['-n', dnsNs, 'apply', '-f', '-'], {
      input: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-by-number}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
`,
    });
    await standIn(dnsNs, 'client', { app: 'client' }, 8099);
    await waitForPod(core, dnsNs, 'client', 'Ready', isReady, 60_000);
    await waitForPodPolicies(dnsNs, 'client', ['default', 'dns-by-number']);
    expect(
      await probeAll(dnsNs, 'client', {
        'DNS over UDP': { udpDns: 'kubernetes.default.svc.cluster.local' },
        'DNS over TCP': { tcp: DNS_SERVICE_IP, port: 53 },
      }),
    ).to.deep.equal({
      'DNS over UDP': 'ECONNREFUSED',
      'DNS over TCP': 'ECONNREFUSED',
    });
  });
});
