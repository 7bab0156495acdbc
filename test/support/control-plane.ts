/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver (built from Go modules by
 * control-plane/build.sh) on free loopback ports, with generated certificates, an admin
 * kubeconfig, and cleanup by PID that also covers a crashed earlier run.
 *
 * What is deliberately absent: kube-controller-manager (no garbage collection, namespaces stay
 * Terminating, no default ServiceAccount) and kube-scheduler (test/support/local-kubelet.ts binds
 * pods itself). Tests must clean up what they create and must not rely on GC.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../manager/kube-client.js';
import { Agent, request } from 'undici';
import { OWNER_ENV, isOwnerAlive, killOwnedBy, onTermination, reapOrphans, selfOwner } from './control-plane/owner.js';
import { getFreePort } from './ports.js';
import { REPO_ROOT } from './sites.js';

const run = promisify(execFile);

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  server: string;
  kubeconfigPath: string;
  dir: string;
  binDir: string;
  kubeConfig(): KubeConfig;
  /** kubectl (the pinned 1.33 build) against this control plane. */
  kubectl(args: string[], opts?: { input?: string; allowFailure?: boolean }): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

export function controlPlaneBinDir(): string {
  const versions = readFileSync(join(REPO_ROOT, 'test/support/control-plane/versions.env'), 'utf8');
  const k8s = /^K8S_VERSION=(\S+)/m.exec(versions)?.[1];
  const etcd = /^ETCD_VERSION=(\S+)/m.exec(versions)?.[1];
  const cache = process.env.PAGEWRIGHT_CACHE_DIR ?? join(homedir(), '.cache', 'pagewright');
  return join(cache, `k8s-${k8s}-etcd-${etcd}`);
}

/** Builds (or reuses) the binaries; fast when cached. */
export async function ensureControlPlaneBinaries(): Promise<string> {
  const dir = controlPlaneBinDir();
  if (!['kube-apiserver', 'etcd', 'kubectl'].every((b) => existsSync(join(dir, b)))) {
    await run(join(REPO_ROOT, 'test/support/control-plane/build.sh'), { maxBuffer: 64 * 1024 * 1024 });
  }
  return dir;
}

const STATE_ROOT = join(tmpdir(), 'pagewright-control-planes');

export async function startControlPlane(opts: { extraApiserverFlags?: string[] } = {}): Promise<ControlPlane> {
  const binDir = await ensureControlPlaneBinaries();
  await killStale();
  await mkdir(STATE_ROOT, { recursive: true });
  const owner = selfOwner();
  // the owner is in the name, so a parallel run can tell at once whether this directory is stale
  const dir = await mkdtemp(join(STATE_ROOT, `cp-${owner.replace(':', '-')}-`));
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
    const certs = await makeCertificates(dir);
    const [etcdPort, peerPort, apiPort] = [await getFreePort(), await getFreePort(), await getFreePort()];
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
    const server = `https://127.0.0.1:${apiPort}`;
    children.push(
      launch(dir, owner, 'kube-apiserver', join(binDir, 'kube-apiserver'), [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${certs.serverCert}`,
        `--tls-private-key-file=${certs.serverKey}`,
        `--client-ca-file=${certs.caCert}`,
        `--service-account-issuer=${server}/`,
        `--service-account-key-file=${certs.saPub}`,
        `--service-account-signing-key-file=${certs.saKey}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--allow-privileged=true',
        // no controller creates the default ServiceAccount, so this plugin would refuse every pod
        '--disable-admission-plugins=ServiceAccount',
        '--endpoint-reconciler-type=none',
        '--profiling=false',
        ...(opts.extraApiserverFlags ?? []),
      ]),
    );
    const tls = new Agent({ connect: { ca: await readFile(certs.caCert), cert: await readFile(certs.adminCert), key: await readFile(certs.adminKey) } });
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
    await writeFile(kubeconfigPath, await kubeconfigYaml(server, certs), { mode: 0o600 });
    await writeFile(join(dir, 'pids'), children.map((c) => c.pid).join('\n'));
    return {
      server,
      kubeconfigPath,
      dir,
      binDir,
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
      async (names) => Promise.all(names.filter((n) => n.endsWith('.log')).map(async (n) => `--- ${n}\n${(await readFile(join(dir, n), 'utf8')).slice(-3000)}`)),
      () => [],
    );
    await stop();
    throw new Error(`control plane failed to start: ${(err as Error).message}\n${logs.join('\n')}`);
  }
}

export async function kubectl(
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

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  // a pending timer would keep the test process alive after its last test: clear it
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))]);
  clearTimeout(timer);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
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
    const pids = (await readFile(join(STATE_ROOT, d, 'pids'), 'utf8').catch(() => '')).split('\n').map(Number).filter((p) => p > 0);
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
  caCert: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

async function makeCertificates(dir: string): Promise<Certs> {
  const p = (n: string) => join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const ecKey = (file: string) => ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(file));
  await ecKey('ca.key');
  await ossl('req', '-x509', '-new', '-key', p('ca.key'), '-days', '7', '-subj', '/CN=pagewright-test-ca', '-out', p('ca.crt'));
  const sign = async (name: string, subject: string, ext: string) => {
    await ecKey(`${name}.key`);
    await ossl('req', '-new', '-key', p(`${name}.key`), '-subj', subject, '-out', p(`${name}.csr`));
    await writeFile(p(`${name}.ext`), ext);
    await ossl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '7', '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`));
  };
  await sign('server', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  await sign('admin', '/O=system:masters/CN=pagewright-admin', 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  await ossl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('sa.key'));
  await ossl('pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub'));
  return {
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
}

async function kubeconfigYaml(server: string, certs: Certs): Promise<string> {
  const b64 = async (f: string) => (await readFile(f)).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- name: pagewright-test
  cluster:
    server: ${server}
    certificate-authority-data: ${await b64(certs.caCert)}
users:
- name: admin
  user:
    client-certificate-data: ${await b64(certs.adminCert)}
    client-key-data: ${await b64(certs.adminKey)}
contexts:
- name: pagewright-test
  context:
    cluster: pagewright-test
    user: admin
    namespace: default
current-context: pagewright-test
`;
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

/** A fresh namespace per suite: there is no GC here, so suites isolate by namespace. */
export async function createNamespace(cp: ControlPlane, prefix: string): Promise<string> {
  const name = `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e4)}`;
  await cp.kubectl(['create', 'namespace', name]);
  return name;
}
