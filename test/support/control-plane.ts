/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver (built from Go modules by
 * control-plane/build.sh) on free loopback ports, with generated certificates, an admin
 * kubeconfig, and cleanup by PID that also covers a crashed earlier run.
 *
 * Alone, it has no kube-controller-manager (no garbage collection, namespaces stay Terminating,
 * no default ServiceAccount), no kube-scheduler and no kubelet: the suites that need none of
 * them run on it (the API, informers, the status writer); tests on it must clean up what they
 * create and must not rely on GC. With `node`
 * options it is the control plane of a real node (test/support/node/cluster.ts), which adds those
 * components: then ServiceAccount admission is on, kubelets are authorized by the Node
 * authorizer, and the apiserver listens where pods can reach it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../common/kube-client.js';
import { Agent, request } from 'undici';
import { OWNER_ENV, isOwnerAlive, killOwnedBy, onTermination, reapOrphans, selfOwner } from './control-plane/owner.js';
import { type KeyPair, Pki } from './pki.js';
import { getFreePort } from './ports.js';
import { terminate } from './processes.js';
import { REPO_ROOT } from './sites.js';

const run = promisify(execFile);

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  server: string;
  kubeconfigPath: string;
  dir: string;
  binDir: string;
  kubeConfig(): KubeConfig;
  /** The cluster's CA, to issue the identities of further components. */
  pki: Pki;
  /** The key pair that signs ServiceAccount tokens (kube-controller-manager needs the private half). */
  serviceAccountKeys: { key: string; pub: string };
  /** kubectl (the pinned 1.33 build) against this control plane. */
  kubectl(args: string[], opts?: { input?: string; allowFailure?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

function controlPlaneBinDir(): string {
  const versions = readFileSync(join(REPO_ROOT, 'test/support/control-plane/versions.env'), 'utf8');
  const k8s = /^K8S_VERSION=(\S+)/m.exec(versions)?.[1];
  const etcd = /^ETCD_VERSION=(\S+)/m.exec(versions)?.[1];
  const cache = process.env.PAGEWRIGHT_CACHE_DIR ?? join(homedir(), '.cache', 'pagewright');
  return join(cache, `k8s-${k8s}-etcd-${etcd}`);
}

/** Builds (or reuses) the binaries; fast when cached. */
export async function ensureControlPlaneBinaries(): Promise<string> {
  const dir = controlPlaneBinDir();
  const binaries = [
    'kube-apiserver',
    'etcd',
    'kubectl',
    'kubelet',
    'kube-scheduler',
    'kube-controller-manager',
    'kube-proxy',
    'coredns',
    'pause',
    'kube-router',
  ];
  if (!binaries.every((b) => existsSync(join(dir, b)))) {
    await run(join(REPO_ROOT, 'test/support/control-plane/build.sh'), { maxBuffer: 64 * 1024 * 1024 });
  }
  return dir;
}

const STATE_ROOT = join(tmpdir(), 'pagewright-control-planes');

export interface ControlPlaneOptions {
  extraApiserverFlags?: string[];
  /** Where its state goes (default: a new directory under the OS temp dir). */
  dir?: string;
  /** Serve a real node: see the file header. */
  node?: {
    /** The address kube-apiserver binds and advertises (the node's address, reachable from pods). */
    address: string;
    /** Its port there (default: a free one). */
    port?: number;
    /** The `kubernetes` Service's ClusterIP: pods' in-cluster config connects there. */
    serviceIp: string;
    serviceCidr: string;
  };
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = await ensureControlPlaneBinaries();
  await killStale();
  await mkdir(STATE_ROOT, { recursive: true });
  const owner = selfOwner();
  // the owner is in the name, so a parallel run can tell at once whether this directory is stale
  const dir = opts.dir ?? (await mkdtemp(join(STATE_ROOT, `cp-${owner.replace(':', '-')}-`)));
  await mkdir(dir, { recursive: true });
  const children: ChildProcess[] = [];
  // a test process that exits or is interrupted without stop() takes everything it started
  // along (etcd, kube-apiserver, and the local kubelet's pods, which carry the same owner)
  const unregister = onTermination(() => {
    killOwnedBy(owner);
    rmSync(dir, { recursive: true, force: true });
  });
  const stop = async () => {
    for (const child of [...children].reverse()) await terminate(child);
    await rm(dir, { recursive: true, force: true });
    unregister();
  };
  try {
    const node = opts.node;
    const address = node?.address ?? '127.0.0.1';
    const certs = await makeCertificates(dir, node ? [address, node.serviceIp] : []);
    const [etcdPort, peerPort, apiPort] = [await getFreePort(), await getFreePort(), node?.port ?? (await getFreePort(address))];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    children.push(
      launch(dir, owner, 'etcd', join(binDir, 'etcd'), [
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ]),
    );
    await waitUntil(
      'etcd',
      async () => {
        const health = await request(`${etcdUrl}/health`);
        await health.body.text(); // an unread body keeps the socket, and this process, alive
        return health.statusCode === 200;
      },
      children[0]!,
    );
    const server = `https://${address}:${apiPort}`;
    const modeFlags = node
      ? [
          // kubelets act as `system:node:NAME` and may touch only their own node's objects
          '--authorization-mode=Node,RBAC',
          '--enable-admission-plugins=NodeRestriction',
          `--service-cluster-ip-range=${node.serviceCidr}`,
          // logs, exec and port-forward: the apiserver calls the kubelet, both sides verified
          `--kubelet-client-certificate=${certs.kubeletClient.cert}`,
          `--kubelet-client-key=${certs.kubeletClient.key}`,
          `--kubelet-certificate-authority=${certs.pki.caCert}`,
          '--kubelet-preferred-address-types=InternalIP',
        ]
      : [
          '--authorization-mode=RBAC',
          '--service-cluster-ip-range=10.0.0.0/24',
          // no controller creates the default ServiceAccount, so this plugin would refuse every pod
          '--disable-admission-plugins=ServiceAccount',
          '--endpoint-reconciler-type=none',
        ];
    children.push(
      launch(dir, owner, 'kube-apiserver', join(binDir, 'kube-apiserver'), [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${address}`,
        `--advertise-address=${address}`,
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${certs.server.cert}`,
        `--tls-private-key-file=${certs.server.key}`,
        `--client-ca-file=${certs.pki.caCert}`,
        `--service-account-issuer=${server}/`,
        `--service-account-key-file=${certs.sa.pub}`,
        `--service-account-signing-key-file=${certs.sa.key}`,
        '--allow-privileged=true',
        '--profiling=false',
        // the aggregation layer (Pagewright's review API is an aggregated API): the apiserver
        // proxies to extension servers with a client certificate of its own CA, and names the
        // authenticated user in the X-Remote-* headers (kubeadm's defaults); it reaches them at
        // their endpoints, as a host process here cannot route to service IPs
        `--requestheader-client-ca-file=${certs.frontProxy.ca}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${certs.frontProxy.client.cert}`,
        `--proxy-client-key-file=${certs.frontProxy.client.key}`,
        '--enable-aggregator-routing=true',
        ...modeFlags,
        ...(opts.extraApiserverFlags ?? []),
      ]),
    );
    const tls = new Agent({
      connect: { ca: await readFile(certs.pki.caCert), cert: await readFile(certs.admin.cert), key: await readFile(certs.admin.key) },
    });
    await waitUntil(
      'kube-apiserver /readyz',
      async () => {
        const ready = await request(`${server}/readyz`, { dispatcher: tls });
        await ready.body.text();
        if (ready.statusCode !== 200) return false;
        const ns = await request(`${server}/api/v1/namespaces/default`, { dispatcher: tls });
        await ns.body.text();
        return ns.statusCode === 200;
      },
      children[1]!,
      90_000,
    );
    await tls.close();
    const kubeconfigPath = join(dir, 'kubeconfig');
    await certs.pki.kubeconfig(kubeconfigPath, server, certs.admin);
    await writeFile(join(dir, 'pids'), children.map((c) => c.pid).join('\n'));
    return {
      server,
      kubeconfigPath,
      dir,
      binDir,
      pki: certs.pki,
      serviceAccountKeys: certs.sa,
      kubeConfig() {
        const kc = new PooledKubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      async kubectl(args, o = {}) {
        return kubectl(join(binDir, 'kubectl'), kubeconfigPath, args, o);
      },
      stop,
    };
  } catch (err) {
    const logs = await readdir(dir).then(
      async (names) =>
        Promise.all(
          names.filter((n) => n.endsWith('.log')).map(async (n) => `--- ${n}\n${(await readFile(join(dir, n), 'utf8')).slice(-3000)}`),
        ),
      () => [],
    );
    await stop();
    throw new Error(`control plane failed to start: ${(err as Error).message}\n${logs.join('\n')}`);
  }
}

async function kubectl(
  binary: string,
  kubeconfigPath: string,
  args: string[],
  opts: { input?: string; allowFailure?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [`--kubeconfig=${kubeconfigPath}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const result = { code: code ?? -1, stdout, stderr };
      if (code !== 0 && !opts.allowFailure) reject(new Error(`kubectl ${args.join(' ')} failed (${code}): ${stderr || stdout}`));
      else resolve(result);
    });
    child.stdin.end(opts.input ?? '');
  });
}

function launch(dir: string, owner: string, name: string, binary: string, args: string[]): ChildProcess {
  const log = openSync(join(dir, `${name}.log`), 'a');
  return spawn(binary, args, { stdio: ['ignore', log, log], detached: false, env: { ...process.env, [OWNER_ENV]: owner } });
}

async function waitUntil(what: string, probe: () => Promise<boolean>, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what}: process exited with code ${child.exitCode}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Kills what an earlier run that was SIGKILLed (so no exit handler ran) left behind: its etcd,
 * kube-apiserver and pod processes, found by their owner, and removes its state directories.
 * Directories of a live owner belong to another run in progress and are left alone.
 */
async function killStale(): Promise<void> {
  reapOrphans();
  const dirs = await readdir(STATE_ROOT).catch(() => [] as string[]);
  for (const d of dirs) {
    const owner = /^cp-(\d+)-(\d+)-/.exec(d);
    if (owner && isOwnerAlive(`${owner[1]}:${owner[2]}`)) continue;
    // the recorded PIDs too, in case a process's environment no longer names its owner
    const pids = (await readFile(join(STATE_ROOT, d, 'pids'), 'utf8').catch(() => ''))
      .split('\n')
      .map(Number)
      .filter((p) => p > 0);
    let alive = false;
    for (const pid of pids) {
      try {
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8');
        if (!cmd.includes(join(STATE_ROOT, d))) continue; // the PID was reused
        // a directory without an owner in its name is from an older harness: orphans only
        const orphan = owner || /^PPid:\s+1$/m.test(await readFile(`/proc/${pid}/status`, 'utf8'));
        if (orphan) process.kill(pid, 'SIGKILL');
        else alive = true;
      } catch {
        // gone
      }
    }
    if (!alive) await rm(join(STATE_ROOT, d), { recursive: true, force: true });
  }
}

interface Certs {
  pki: Pki;
  server: KeyPair;
  admin: KeyPair;
  /** The apiserver's identity towards kubelets (a real node only). */
  kubeletClient: KeyPair;
  /** The aggregation layer's CA and the apiserver's client certificate of it. */
  frontProxy: { ca: string; client: KeyPair };
  sa: { key: string; pub: string };
}

async function makeCertificates(dir: string, extraIps: string[]): Promise<Certs> {
  const pki = await Pki.create(dir);
  const server = await pki.server('server', 'kube-apiserver', {
    ips: ['127.0.0.1', ...extraIps],
    dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
  });
  const admin = await pki.client('admin', '/O=system:masters/CN=pagewright-admin');
  const kubeletClient = extraIps.length
    ? await pki.client('apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client')
    : admin;
  // the aggregation layer's own CA, apart from the cluster's (a client certificate of the
  // cluster CA must not pass for the front proxy): kubeadm's front-proxy-ca
  await mkdir(join(dir, 'front-proxy'), { recursive: true });
  const frontProxyPki = await Pki.create(join(dir, 'front-proxy'), 'pagewright-front-proxy-ca');
  const frontProxy = { ca: frontProxyPki.caCert, client: await frontProxyPki.client('front-proxy-client', '/CN=front-proxy-client') };
  return { pki, server, admin, kubeletClient, frontProxy, sa: await pki.serviceAccountKeys() };
}

let shared: Promise<ControlPlane> | null = null;

/** One control plane for all integration suites of a mocha run (stopped by the root hook). */
export function sharedControlPlane(): Promise<ControlPlane> {
  shared ??= startControlPlane();
  return shared;
}

export async function stopSharedControlPlane(): Promise<void> {
  if (!shared) return;
  const cp = await shared.catch(() => null);
  shared = null;
  await cp?.stop();
}

/**
 * kubectl's view of the Events about one object, by its name: the given field of each, space
 * separated, as `-o jsonpath` prints them. `kubectl` is any client that runs kubectl against the
 * right cluster (a ControlPlane's, a RealNode's).
 */
export async function eventsAbout(
  kubectl: (args: string[]) => Promise<{ stdout: string }>,
  namespace: string,
  name: string,
  field: 'reason' | 'message',
): Promise<string> {
  const args = ['-n', namespace, 'get', 'events', '--field-selector', `involvedObject.name=${name}`, '-o', `jsonpath={.items[*].${field}}`];
  return (await kubectl(args)).stdout;
}

/** A fresh namespace per suite: there is no GC here, so suites isolate by namespace. */
export async function createNamespace(cp: ControlPlane, prefix: string): Promise<string> {
  const name = `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e4)}`;
  await cp.kubectl(['create', 'namespace', name]);
  return name;
}
