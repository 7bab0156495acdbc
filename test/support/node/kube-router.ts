/**
 * NetworkPolicy enforcement on the real node: kube-router v2.1.0 as a host process, with only its
 * firewall on (`--run-firewall`; no routing, no service proxy: the CNI bridge and kube-proxy do
 * those). Without an enforcer a NetworkPolicy is an API object and nothing more, and Pagewright's
 * sandbox depends on them (deploy/k8s/network-policies.yaml; test/node/egress.test.ts).
 *
 * A TEST ENFORCER ON THIS MACHINE, NEVER SHIPPED: the Go module index flags reported security flaws
 * in kube-router v2.1.0. It is built from its Go module by control-plane/build.sh (the
 * kube-router/ wrapper module), runs only next to this throwaway node, and is in no image and no
 * deploy/ manifest.
 *
 * Verified recipe: ../../../../shared/notes/real-node.md ("NetworkPolicy enforcement"). What it
 * needs, and what this node gives it:
 * - `ipset` and `iptables` (prereqs.sh installs them), `net.bridge.bridge-nf-call-iptables=1`
 *   (cluster.ts sets it with the bridge: pods on one bridge reach each other through netfilter);
 * - the node object with spec.podCIDR and an InternalIP (the controller-manager allocates the
 *   CIDR; the kubelet's --node-ip), so it starts once the node has both (it reads them once);
 * - the Service CIDR (`--service-cluster-ip-range`), for its INPUT allowance to ClusterIPs;
 * - its own identity: a client certificate of the cluster CA (CN=pagewright:kube-router) bound
 *   to a ClusterRole that only reads what its informers list and watch. It starts informers for
 *   Services, Endpoints and EndpointSlices too, even with the proxy off, and waits for all of
 *   them to sync, so those are readable as well. It writes nothing.
 *
 * What it programs (all names start with KUBE-, so node-down.sh removes them with kube-proxy's
 * and the kubelet's): jumps from INPUT, FORWARD and OUTPUT to KUBE-ROUTER-{INPUT,FORWARD,OUTPUT},
 * a KUBE-POD-FW-* chain per local pod, a KUBE-NWPLCY-* chain per policy (KUBE-NWPLCY-DEFAULT for
 * pods no policy selects), and ipsets KUBE-SRC-* / KUBE-DST-* of the pods and blocks policies name.
 * Traffic a policy does not allow is REJECTed (icmp-port-unreachable): a TCP client sees
 * ECONNREFUSED at once. Its own `--cleanup-config` panicked in v2.1.0 (the notes), so
 * node-down.sh cleans up by name.
 *
 * Caveats a test must respect:
 * - connections opened before a policy existed keep working (conntrack ESTABLISHED);
 * - a new pod's chain appears shortly after the pod starts (its next sync after the pod has an
 *   IP), so its first moments are unrestricted: open fresh connections after
 *   `podFirewallPolicies` names the pod's policies.
 *
 * Measured on this 2-core machine: its build 5m26s with an empty Go build cache (its k8s.io client
 * libraries, v0.29, are not the pinned Kubernetes'; load average 4.5 from other work), 8 s when
 * only the link is left, 0.2 s when build.sh reuses it. From launch to its first sync in the kernel
 * ~1.3 s, started as soon as the node has registered (before it is Ready): a node start takes
 * ~0.5-1 s longer with it (median of 4: 9.65 s vs 9.0 s from the kubelet's start to a usable node).
 */
import { type ChildProcess, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ControlPlane } from '../control-plane.js';
import { waitFor } from '../processes.js';

const run = promisify(execFile);

/** Its client certificate's subject; the ClusterRoleBinding names this user. */
export const KUBE_ROUTER_USER = 'pagewright:kube-router';

export function kubeRouterArgs(o: { kubeconfig: string; nodeName: string; serviceCidr: string }): string[] {
  return [
    `--kubeconfig=${o.kubeconfig}`,
    `--hostname-override=${o.nodeName}`,
    '--run-firewall=true',
    '--run-router=false',
    '--run-service-proxy=false',
    `--service-cluster-ip-range=${o.serviceCidr}`,
    // no listener at all: its health server would bind 0.0.0.0:20244, metrics are off by default
    '--health-port=0',
    // a sync per pod and policy change; the log says how long each took
    '--v=1',
  ];
}

/** Least privilege: what its informers list and watch, and its own node. */
export async function applyKubeRouterRbac(cp: ControlPlane): Promise<void> {
  await cp.kubectl(['apply', '-f', '-'], {
    input: `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: 'pagewright:kube-router'}
rules:
  - apiGroups: ['']
    resources: [pods, namespaces, services, endpoints]
    verbs: [list, watch]
  # it reads its own node at start (podCIDR, InternalIP)
  - apiGroups: ['']
    resources: [nodes]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: 'pagewright:kube-router'}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'pagewright:kube-router'}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: '${KUBE_ROUTER_USER}'}]
`,
  });
}

async function filterRules(): Promise<string> {
  return (await run('iptables-save', ['-t', 'filter'], { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

/**
 * Until its first full sync is in the kernel: the jump from FORWARD to its chain, and the
 * explicit ACCEPT it appends to its chains at the end of every sync.
 */
export async function waitForKubeRouter(proc: ChildProcess, logTail: () => Promise<string>, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    'kube-router to program its chains',
    async () => {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`kube-router exited (${proc.exitCode ?? proc.signalCode}): ${await logTail()}`);
      const rules = await filterRules();
      return (
        /^-A FORWARD .*-j KUBE-ROUTER-FORWARD$/m.test(rules) &&
        /^-A KUBE-ROUTER-FORWARD .*rule to explicitly ACCEPT traffic that comply to network policies/m.test(rules)
      );
    },
    timeoutMs,
    100,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n--- kube-router:\n${await logTail()}`);
  });
}

/**
 * The NetworkPolicies kube-router applies to a pod on this node, from its pod chain as the kernel
 * has it; null while the pod has no chain yet. `default` is the chain of pods no policy selects
 * (in one direction).
 */
export async function podFirewallPolicies(namespace: string, pod: string): Promise<string[] | null> {
  const rules = await filterRules();
  const jump = new RegExp(
    `^-A KUBE-ROUTER-FORWARD .*"rule to jump traffic from POD name:${escapeRegExp(pod)} namespace: ${escapeRegExp(namespace)} to chain (KUBE-POD-FW-\\S+)"`,
    'm',
  ).exec(rules);
  if (!jump) return null;
  const chain = jump[1]!;
  const policies = new Set<string>();
  for (const line of rules.split('\n')) {
    if (!line.startsWith(`-A ${chain} `)) continue;
    const named = /"run through nw policy (\S+)"/.exec(line);
    if (named) policies.add(named[1]!);
    else if (line.includes('run through default')) policies.add('default');
  }
  return [...policies].sort();
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
