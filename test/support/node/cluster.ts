/**
 * A real single-node Kubernetes cluster on this machine, for the tests and `make dev-cluster`:
 * the test control plane (kube-apiserver + etcd, ServiceAccount admission on, the Node
 * authorizer), a second containerd with the CRI plugin and Debian's CNI plugins, and the kubelet,
 * kube-scheduler, kube-controller-manager and kube-proxy built from the same pinned Kubernetes
 * (control-plane/build.sh), plus CoreDNS as the cluster DNS, running as a pod, and kube-router
 * enforcing NetworkPolicies (kube-router.ts: a test enforcer, never shipped).
 *
 * Verified recipe: ../../../../shared/notes/real-node.md. What differs from a kubeadm node, and why:
 * - privileged containers cannot start here (no CAP_SYS_RESOURCE in the bounding set), so the
 *   components run as host processes, and containerd has `restrict_oom_score_adj` and the kubelet
 *   `oomScoreAdj: 0` (negative OOM scores need that capability);
 * - the node's address is the gateway of its own pod bridge (NODE_IP on `pw0`), created before
 *   anything starts: the apiserver, kubelet and host processes of the tests listen there, and pods
 *   reach them without depending on the machine's own addresses;
 * - no registry: images come from the local Docker engine (`docker save | ctr import`), the pause
 *   and CoreDNS images are built `FROM scratch` with binaries built from Go modules;
 * - one node per machine (the bridge, the iptables chains and the kubelet's cgroup root are
 *   machine-wide): a second start while one runs fails and names the owner; so the apiserver
 *   listens on the fixed port 6443 of the node's own address, as a kubeadm one does (a
 *   NetworkPolicy that lets a pod reach the API, such as the gateway's, names that port).
 *
 * Everything lives under one run directory; node-down.sh removes it all (processes, mounts,
 * cgroups, network namespaces, the bridge, iptables rules and ipsets), on stop(), when the owner
 * process exits or is interrupted, and before the next start after an owner was SIGKILLed.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { appendFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type V1Node } from '@kubernetes/client-node';
import { type ControlPlane, ensureControlPlaneBinaries, startControlPlane } from '../control-plane.js';
import { OWNER_ENV, isOwnerAlive, onTermination, selfOwner } from '../control-plane/owner.js';
import { waitFor } from '../processes.js';
import { REPO_ROOT } from '../sites.js';
import { type NodeContainer, Containerd } from './containerd.js';
import { ensureDockerImages, importImages, PAUSE_IMAGE } from './images.js';
import { applyDns } from './dns.js';
import { KUBE_ROUTER_USER, applyKubeRouterRbac, kubeRouterArgs, waitForKubeRouter } from './kube-router.js';

const run = promisify(execFile);

const NODE_NAME = 'pagewright-node';
/** The node's address: the gateway of its pod bridge. Pods reach the host here. */
export const NODE_IP = '10.244.0.1';
export const BRIDGE = 'pw0';
const POD_CIDR = '10.244.0.0/24';
const CLUSTER_CIDR = '10.244.0.0/16';
const SERVICE_CIDR = '10.0.0.0/24';
const KUBERNETES_SERVICE_IP = '10.0.0.1';
export const DNS_SERVICE_IP = '10.0.0.10';
/** The apiserver's port on NODE_IP (the `kubernetes` Service's endpoint). */
const API_PORT = 6443;
/** The kubelet's cgroupRoot: node-down.sh kills every process under it. */
export const CGROUP_ROOT = 'pagewright-node';
const KUBELET_PORT = 10350;
/**
 * The kubelet's podPidsLimit on this node (README "Runner pod limits": what a cluster must set):
 * a fork bomb in a runner pod stops there, with the node's process table (kernel.pid_max: 32768
 * here) left to everything else. A normal job peaks at about 55 (BENCHMARKS.md, section 8).
 */
const POD_PIDS_LIMIT = 1024;

export function nodeStateDir(): string {
  return join(process.env.PAGEWRIGHT_CACHE_DIR ?? join(homedir(), '.cache', 'pagewright'), 'node');
}
const RUN_DIR = join(nodeStateDir(), 'run');
const LOCK = join(nodeStateDir(), 'owner');
const NODE_DOWN = join(REPO_ROOT, 'test/support/node/node-down.sh');

export interface RealNode extends ControlPlane {
  nodeName: string;
  nodeIp: string;
  runDir: string;
  containerd: Containerd;
  /** The kubelet's podPidsLimit. */
  podPidsLimit: number;
  /** Containers on the node (all, or a pod's), as containerd reports them. */
  containers(podUid?: string): Promise<NodeContainer[]>;
  /** The tail of a component's log (kubelet, containerd, kube-proxy, ...), for failure messages. */
  componentLog(name: string, bytes?: number): Promise<string>;
}

export interface RealNodeOptions {
  /** Docker images to import into the node besides pause and CoreDNS (they must exist). */
  images?: string[];
  /**
   * The kubelet's podPidsLimit: the most tasks (processes and threads) one pod's cgroup may hold.
   * Default: PAGEWRIGHT_NODE_POD_PIDS_LIMIT, else POD_PIDS_LIMIT.
   */
  podPidsLimit?: number;
  /** Extra processes the caller starts next to the node get this env (the owner marker). */
  log?: (line: string) => void;
}

/** Prerequisites that only root can install: named all at once, with the command that installs them. */
async function checkPrerequisites(): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('the real node runs containerd, a kubelet and iptables: run as root');
  const commands = ['containerd', 'containerd-shim-runc-v2', 'runc', 'ctr', 'iptables', 'ip6tables', 'ip', 'conntrack', 'ipset', 'docker'];
  for (const cmd of commands) {
    if (
      !(await run('sh', ['-c', `command -v ${cmd}`]).then(
        () => true,
        () => false,
      ))
    )
      problems.push(`missing command: ${cmd}`);
  }
  for (const plugin of ['bridge', 'host-local', 'loopback', 'portmap']) {
    if (!existsSync(join('/usr/lib/cni', plugin)))
      problems.push(`missing CNI plugin /usr/lib/cni/${plugin} (Debian package containernetworking-plugins)`);
  }
  if (
    !problems.some((p) => p.endsWith('docker')) &&
    !(await run('docker', ['info', '--format', '{{.ServerVersion}}']).then(
      () => true,
      () => false,
    ))
  ) {
    problems.push('the Docker engine is not running (it builds the images)');
  }
  if (problems.length) {
    throw new Error(
      `the real node cannot start:\n  - ${problems.join('\n  - ')}\ninstall and start what it needs with: test/support/node/prereqs.sh (as root; .ci/run does)`,
    );
  }
}

/** Removes whatever an earlier node left (a no-op when there is none). Synchronous: also runs on exit. */
export function nodeDown(): void {
  execFileSync(NODE_DOWN, [RUN_DIR], {
    stdio: ['ignore', 'ignore', 'inherit'],
    // synchronous (it runs from exit handlers too), so no timer could interrupt a hung step
    // (an umount, iptables waiting on its lock): bound it here, and the caller sees the error
    timeout: 120_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, PAGEWRIGHT_NODE_BRIDGE: BRIDGE, PAGEWRIGHT_NODE_CGROUP: CGROUP_ROOT },
  });
}

/** The owner of the running node ("pid:starttime"), if one is alive. */
export async function runningNodeOwner(): Promise<string | null> {
  const owner = (await readFile(LOCK, 'utf8').catch(() => '')).trim();
  return owner && isOwnerAlive(owner) ? owner : null;
}

export async function startRealNode(opts: RealNodeOptions = {}): Promise<RealNode> {
  const log = opts.log ?? (() => {});
  await checkPrerequisites();
  const owner = selfOwner();
  const other = await runningNodeOwner();
  if (other && other !== owner) {
    throw new Error(
      `a Pagewright node is already running on this machine (owner pid ${other.split(':')[0]}); stop it first (make dev-cluster-down) or wait for that test run`,
    );
  }
  await mkdir(nodeStateDir(), { recursive: true });
  nodeDown(); // what a SIGKILLed owner left
  await writeFile(LOCK, owner);
  await mkdir(RUN_DIR, { recursive: true });

  const children: ChildProcess[] = [];
  let cp: ControlPlane | null = null;
  const unregister = onTermination(() => {
    for (const c of children) c.kill('SIGKILL');
    try {
      nodeDown();
    } finally {
      rmLockSync(owner);
    }
  });
  const stop = async () => {
    for (const child of [...children].reverse()) child.kill('SIGKILL');
    await cp?.stop();
    nodeDown();
    unregister();
    rmLockSync(owner);
  };

  try {
    const binDir = await ensureControlPlaneBinaries();
    log('node: building the images (docker)');
    await ensureDockerImages(binDir);
    await createBridge();
    log('node: control plane');
    cp = await startControlPlane({
      dir: join(RUN_DIR, 'control-plane'),
      node: { address: NODE_IP, port: API_PORT, serviceIp: KUBERNETES_SERVICE_IP, serviceCidr: SERVICE_CIDR },
    });
    const pki = cp.pki;
    const kubeconfigFor = async (name: string, subject: string) =>
      pki.kubeconfig(join(RUN_DIR, `${name}.kubeconfig`), cp!.server, await pki.client(name, subject));
    // kube-router's RBAC and identity while the node comes up (a rejection is kept for later)
    const kubeRouterKubeconfig = applyKubeRouterRbac(cp)
      .then(() => kubeconfigFor('kube-router', `/CN=${KUBE_ROUTER_USER}`))
      .then(
        (file) => ({ file }),
        (err: Error) => ({ err }),
      );
    const launch = (name: string, binary: string, args: string[]) => {
      const out = openSync(join(RUN_DIR, `${name}.log`), 'a');
      const child = spawn(binary, args, {
        stdio: ['ignore', out, out],
        env: { PATH: process.env.PATH, HOME: process.env.HOME, [OWNER_ENV]: owner },
      });
      children.push(child);
      return child;
    };

    log('node: containerd');
    const containerd = new Containerd(join(RUN_DIR, 'containerd'), {
      bridge: BRIDGE,
      podCidr: POD_CIDR,
      gateway: NODE_IP,
      pauseImage: PAUSE_IMAGE,
    });
    await containerd.writeConfig();
    const containerdProc = launch('containerd', 'containerd', ['--config', containerd.configPath]);
    await waitFor(
      'containerd',
      async () => {
        if (containerdProc.exitCode !== null) throw new Error(`containerd exited: ${await tail(join(RUN_DIR, 'containerd.log'))}`);
        return containerd.ping();
      },
      30_000,
      100,
    );
    log('node: importing images');
    await importImages(containerd, [PAUSE_IMAGE, ...dnsImages(), ...(opts.images ?? [])]);

    log('node: kubelet, kube-proxy, kube-scheduler, kube-controller-manager');
    await prepareCgroupRoot();
    const serving = await pki.server('kubelet-serving', NODE_NAME, { ips: [NODE_IP], dns: [NODE_NAME] });
    const kubeletDir = join(RUN_DIR, 'kubelet');
    await mkdir(kubeletDir, { recursive: true });
    const kubeletConfig = join(RUN_DIR, 'kubelet.yaml');
    const pidsLimit = podPidsLimit(opts);
    await writeFile(
      kubeletConfig,
      kubeletConfiguration({
        containerdSocket: containerd.socket,
        caCert: pki.caCert,
        serving,
        podLogsDir: join(RUN_DIR, 'pod-logs'),
        podPidsLimit: pidsLimit,
      }),
    );
    launch('kubelet', join(binDir, 'kubelet'), [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${await kubeconfigFor('kubelet', `/O=system:nodes/CN=system:node:${NODE_NAME}`)}`,
      `--root-dir=${kubeletDir}`,
      `--cert-dir=${join(kubeletDir, 'pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      '--v=1',
    ]);
    const proxyConfig = join(RUN_DIR, 'kube-proxy.yaml');
    await writeFile(proxyConfig, kubeProxyConfiguration(await kubeconfigFor('kube-proxy', '/CN=system:kube-proxy')));
    launch('kube-proxy', join(binDir, 'kube-proxy'), [`--config=${proxyConfig}`, '--v=1']);
    launch('kube-scheduler', join(binDir, 'kube-scheduler'), [
      `--kubeconfig=${await kubeconfigFor('kube-scheduler', '/CN=system:kube-scheduler')}`,
      '--leader-elect=false',
      '--secure-port=0',
    ]);
    launch('kube-controller-manager', join(binDir, 'kube-controller-manager'), [
      `--kubeconfig=${await kubeconfigFor('kube-controller-manager', '/CN=system:kube-controller-manager')}`,
      '--leader-elect=false',
      '--secure-port=0',
      // each controller acts as its own ServiceAccount, as in a kubeadm cluster
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${cp.serviceAccountKeys.key}`,
      `--root-ca-file=${pki.caCert}`,
      `--cluster-signing-cert-file=${pki.caCert}`,
      `--cluster-signing-key-file=${pki.caKey}`,
      // the node gets spec.podCIDR = POD_CIDR, the subnet of its bridge (the first /24 is allocated first)
      '--allocate-node-cidrs=true',
      `--cluster-cidr=${CLUSTER_CIDR}`,
      '--node-cidr-mask-size=24',
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
    ]);

    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    const nodeWhere = (what: string, predicate: (n: V1Node) => boolean) =>
      waitFor(
        what,
        async () => {
          for (const child of children) {
            if (child.exitCode !== null)
              throw new Error(
                `${child.spawnfile} exited with ${child.exitCode}: ${await tail(join(RUN_DIR, `${componentName(child)}.log`))}`,
              );
          }
          const n = await core.readNode({ name: NODE_NAME }).catch(() => null);
          return n && predicate(n) ? n : null;
        },
        120_000,
        250,
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}\n--- kubelet:\n${await tail(join(RUN_DIR, 'kubelet.log'))}`);
      });
    log('node: waiting for the node to register');
    // kube-router reads the node's podCIDR and InternalIP once, at start; the node has both
    // seconds before it is Ready, so its first sync runs meanwhile instead of after
    await nodeWhere(
      'node registered with its podCIDR and address',
      (n) => !!n.spec?.podCIDR && !!n.status?.addresses?.some((a) => a.type === 'InternalIP'),
    );
    const identity = await kubeRouterKubeconfig;
    if ('err' in identity) throw identity.err;
    log('node: kube-router (NetworkPolicy enforcement); waiting for the node to be Ready');
    const kubeRouter = launch(
      'kube-router',
      join(binDir, 'kube-router'),
      kubeRouterArgs({ kubeconfig: identity.file, nodeName: NODE_NAME, serviceCidr: SERVICE_CIDR }),
    );
    const kubeRouterReady = waitForKubeRouter(kubeRouter, () => tail(join(RUN_DIR, 'kube-router.log'))).then(
      () => null,
      (err: Error) => err,
    );
    const node = await nodeWhere('node Ready', (n) => isReady(n) && !n.spec?.taints?.some((t) => t.key === 'node.kubernetes.io/not-ready'));
    if (node.spec?.podCIDR !== POD_CIDR)
      throw new Error(`node podCIDR is ${node.spec?.podCIDR}, expected ${POD_CIDR} (the bridge's subnet)`);
    await waitFor(
      'the default ServiceAccount',
      async () =>
        core.readNamespacedServiceAccount({ namespace: 'default', name: 'default' }).then(
          () => true,
          () => false,
        ),
      60_000,
      250,
    );
    log('node: cluster DNS');
    await applyDns(cp, DNS_SERVICE_IP);
    const kubeRouterError = await kubeRouterReady;
    if (kubeRouterError) throw kubeRouterError;

    return {
      ...cp,
      stop,
      nodeName: NODE_NAME,
      nodeIp: NODE_IP,
      runDir: RUN_DIR,
      containerd,
      podPidsLimit: pidsLimit,
      containers: (podUid) => containerd.containers(podUid),
      componentLog: (name, bytes) => tail(join(RUN_DIR, `${name}.log`), bytes),
    };
  } catch (err) {
    const logs = await readdir(RUN_DIR).then(
      async (names) =>
        Promise.all(names.filter((n) => n.endsWith('.log')).map(async (n) => `--- ${n}\n${await tail(join(RUN_DIR, n), 2000)}`)),
      () => [],
    );
    await stop().catch(() => {});
    throw new Error(`the real node failed to start: ${(err as Error).message}\n${logs.join('\n')}`);
  }
}

function dnsImages(): string[] {
  return ['pagewright-coredns:1'];
}

function componentName(child: ChildProcess): string {
  return child.spawnfile.split('/').pop() ?? child.spawnfile;
}

function isReady(node: V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

async function tail(file: string, bytes = 4000): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-bytes);
}

/** Synchronous: it also runs in an exit handler. */
function rmLockSync(owner: string): void {
  try {
    if (readFileSync(LOCK, 'utf8').trim() === owner) rmSync(LOCK, { force: true });
  } catch {
    // no lock
  }
}

/** The bridge exists before anything listens on NODE_IP; the CNI bridge plugin adopts it. */
async function createBridge(): Promise<void> {
  await run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', BRIDGE]);
  await run('ip', ['link', 'set', BRIDGE, 'up']);
  // pods reach Services (kube-proxy's DNAT) and each other through the bridge's netfilter hooks
  await writeFile('/proc/sys/net/bridge/bridge-nf-call-iptables', '1').catch(() => {});
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
}

/**
 * The kubelet refuses a cgroupRoot that does not exist. Under cgroup v1 a new cpuset cgroup has
 * no CPUs or memory nodes until given its parent's.
 */
async function prepareCgroupRoot(): Promise<void> {
  const v1 = existsSync('/sys/fs/cgroup/memory');
  const hierarchies = v1 ? (await readdir('/sys/fs/cgroup')).map((h) => join('/sys/fs/cgroup', h)) : ['/sys/fs/cgroup'];
  for (const h of hierarchies) {
    if (!existsSync(join(h, 'cgroup.procs'))) continue; // a symlink such as cpu,cpuacct or not a hierarchy
    const dir = join(h, CGROUP_ROOT);
    await mkdir(dir, { recursive: true });
    if (v1 && h.endsWith('/cpuset')) {
      for (const f of ['cpuset.cpus', 'cpuset.mems']) await appendFile(join(dir, f), await readFile(join(h, f), 'utf8'));
    }
  }
}

function podPidsLimit(opts: RealNodeOptions): number {
  const fromEnv = process.env.PAGEWRIGHT_NODE_POD_PIDS_LIMIT;
  const limit = opts.podPidsLimit ?? (fromEnv ? Number(fromEnv) : POD_PIDS_LIMIT);
  if (!Number.isInteger(limit) || limit < 64)
    throw new Error(`podPidsLimit must be an integer of at least 64 (PAGEWRIGHT_NODE_POD_PIDS_LIMIT=${fromEnv ?? ''}), got ${limit}`);
  return limit;
}

function kubeletConfiguration(o: {
  containerdSocket: string;
  caCert: string;
  serving: { cert: string; key: string };
  podLogsDir: string;
  podPidsLimit: number;
}): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://${o.containerdSocket}
# cgroup v1 here, no systemd: cgroupfs; the node's own root so its pods are told apart
cgroupDriver: cgroupfs
cgroupRoot: /${CGROUP_ROOT}
# negative OOM scores need CAP_SYS_RESOURCE, which this machine lacks
oomScoreAdj: 0
failSwapOn: false
enforceNodeAllocatable: []
address: ${NODE_IP}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10348
tlsCertFile: ${o.serving.cert}
tlsPrivateKeyFile: ${o.serving.key}
# the apiserver reaches logs, exec and port-forward with a client certificate of the cluster CA
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${o.caCert}}
authorization: {mode: Webhook}
clusterDNS: [${DNS_SERVICE_IP}]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: ${o.podLogsDir}
# no registry can be reached: never garbage-collect the imported images, never evict for disk
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
nodeStatusReportFrequency: 10s
# every pod's cgroup holds at most this many tasks (processes and threads): a fork bomb in one
# pod stops there instead of filling the node's process table
podPidsLimit: ${o.podPidsLimit}
`;
}

function kubeProxyConfiguration(kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${kubeconfig}}
hostnameOverride: ${NODE_NAME}
mode: iptables
clusterCIDR: ${CLUSTER_CIDR}
# leave the machine's conntrack table size alone
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
metricsBindAddress: 127.0.0.1:10349
healthzBindAddress: 127.0.0.1:10356
`;
}
