/**
 * The real node itself (test/support/node): a kubelet from the pinned modules on a second
 * containerd, with the scheduler, controller-manager, kube-proxy and CoreDNS. What the other
 * suites rely on is checked here first: pods run as containers and report what really happened
 * to them (exit codes, the kernel's OOM kill, deadlines, deletion), Services and DNS work from a
 * pod, ServiceAccount tokens are mounted, and `kubectl logs`, `exec` and `port-forward` reach the
 * kubelet. And the node leaves nothing behind, even when its owner is SIGKILLed: kube-router's
 * chains and ipsets included (egress.test.ts checks what it enforces).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { createNamespace } from '../support/control-plane.js';
import { BRIDGE, CGROUP_ROOT, type RealNode, nodeDown, nodeStateDir } from '../support/node/cluster.js';
import { RUNNER_IMAGE, sharedRealNode, stopSharedRealNode } from '../support/node/shared.js';
import { RESTRICTED_CONTAINER, waitForPod, waitForPodGone } from '../support/pods.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const run = promisify(execFile);

describe('the real node: containerd + kubelet from the pinned modules', function () {
  this.timeout(120_000);
  let node: RealNode;
  let core: CoreV1Api;
  let ns: string;

  /** A pod of the runner image running `script` in bash, as restricted as a runner pod. */
  function pod(name: string, script: string, container: Partial<V1Container> = {}, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
    return {
      metadata: { name, namespace: ns },
      spec: {
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 5,
        containers: [
          {
            name: 'main',
            image: RUNNER_IMAGE,
            imagePullPolicy: 'Never',
            command: ['bash', '-c', script],
            ...RESTRICTED_CONTAINER,
            ...container,
          },
        ],
        ...spec,
      },
    };
  }
  const terminated = (p: V1Pod) => p.status?.containerStatuses?.[0]?.state?.terminated;

  before(async function () {
    this.timeout(600_000);
    node = await sharedRealNode();
    core = node.kubeConfig().makeApiClient(CoreV1Api);
    ns = await createNamespace(node, 'node');
    await node.kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
  });
  after(async () => {
    // the last test stops the node: then there is nothing left to delete
    if (ns) await node.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
  });

  it('has one Ready node on containerd, its pod CIDR on the bridge, and cluster DNS running', async () => {
    const [n] = (await core.listNode()).items;
    expect(n?.metadata?.name).to.equal(node.nodeName);
    expect(n?.status?.nodeInfo?.containerRuntimeVersion).to.match(/^containerd:\/\/1\./);
    expect(n?.status?.nodeInfo?.kubeletVersion).to.match(/^v1\.33\./);
    expect(n?.status?.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
    expect(n?.spec?.podCIDR).to.equal('10.244.0.0/24');
    const dns = (await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'k8s-app=kube-dns' })).items;
    expect(dns.map((p) => p.status?.phase)).to.deep.equal(['Running']);
  });

  it('runs a pod to Succeeded and another to Failed with its exit code, as containerd containers', async () => {
    await core.createNamespacedPod({ namespace: ns, body: pod('ok', 'echo hello from a container; id -u') });
    await core.createNamespacedPod({ namespace: ns, body: pod('bad', 'exit 7') });
    const ok = await waitForPod(core, ns, 'ok', 'Succeeded', (p) => p.status?.phase === 'Succeeded', 60_000);
    expect(ok.status?.containerStatuses?.[0]?.containerID).to.match(/^containerd:\/\//);
    expect(ok.status?.podIP).to.match(/^10\.244\.0\.\d+$/);
    expect(await core.readNamespacedPodLog({ namespace: ns, name: 'ok' })).to.equal('hello from a container\n10001\n');
    const bad = await waitForPod(core, ns, 'bad', 'Failed', (p) => p.status?.phase === 'Failed', 60_000);
    expect(terminated(bad)).to.include({ exitCode: 7, reason: 'Error' });
  });

  it('a container over its memory limit: the kernel kills it (OOMKilled, 137)', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: pod('hog', 'exec tail /dev/zero', { resources: { limits: { memory: '64Mi' } } }),
    });
    const hog = await waitForPod(core, ns, 'hog', 'Failed', (p) => p.status?.phase === 'Failed', 60_000);
    expect(terminated(hog)).to.include({ exitCode: 137, reason: 'OOMKilled' });
  });

  it('a pod past activeDeadlineSeconds: Failed, DeadlineExceeded, its container stopped', async () => {
    const started = Date.now();
    const created = await core.createNamespacedPod({ namespace: ns, body: pod('late', 'sleep 600', {}, { activeDeadlineSeconds: 3 }) });
    const late = await waitForPod(core, ns, 'late', 'DeadlineExceeded', (p) => p.status?.reason === 'DeadlineExceeded', 60_000);
    expect(late.status?.phase).to.equal('Failed');
    expect(Date.now() - started).to.be.within(2500, 30_000);
    await waitFor(
      'no running container',
      async () => (await node.containers(created.metadata!.uid!)).every((c) => c.status !== 'RUNNING'),
      20_000,
      200,
    );
  });

  it('deleting a running pod stops its containers before the pod object goes', async () => {
    const created = await core.createNamespacedPod({ namespace: ns, body: pod('doomed', 'trap "exit 0" TERM; sleep 600 & wait') });
    await waitForPod(core, ns, 'doomed', 'Running', (p) => p.status?.phase === 'Running', 60_000);
    expect(
      (await node.containers(created.metadata!.uid!))
        .filter((c) => c.status === 'RUNNING')
        .map((c) => c.kind)
        .sort(),
    ).to.deep.equal(['container', 'sandbox']);
    await core.deleteNamespacedPod({ namespace: ns, name: 'doomed' });
    await waitForPodGone(core, ns, 'doomed', 30_000);
    expect((await node.containers(created.metadata!.uid!)).filter((c) => c.status === 'RUNNING')).to.deep.equal([]);
  });

  it('a pod resolves and reaches a Service by name (CoreDNS, kube-proxy), and has its ServiceAccount token', async () => {
    await node.kubectl(['-n', ns, 'create', 'service', 'clusterip', 'echo', '--tcp=8080:8080']);
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        ...pod('echo', `node -e "require('http').createServer((q, s) => s.end('pong')).listen(8080)"`),
        metadata: { name: 'echo', namespace: ns, labels: { app: 'echo' } },
      },
    });
    await node.kubectl(['-n', ns, 'patch', 'service', 'echo', '-p', '{"spec":{"selector":{"app":"echo"}}}']);
    await waitForPod(core, ns, 'echo', 'Running', (p) => p.status?.phase === 'Running', 60_000);
    const client = `for i in $(seq 50); do out=$(node -e "fetch('http://echo.${ns}.svc.cluster.local:8080').then(r => r.text()).then(t => console.log(t))" 2>/dev/null) && [ -n "$out" ] && break; sleep 0.2; done; echo "got:$out"; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-mounted`;
    await core.createNamespacedPod({ namespace: ns, body: pod('client', client, {}, { automountServiceAccountToken: true }) });
    await waitForPod(core, ns, 'client', 'Succeeded', (p) => p.status?.phase === 'Succeeded', 60_000);
    const log = await core.readNamespacedPodLog({ namespace: ns, name: 'client' });
    expect(log).to.contain('got:pong').and.to.contain('token-mounted');
  });

  it('kubectl exec and port-forward reach a container through the apiserver and kubelet', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: pod('web', `node -e "require('http').createServer((q, s) => s.end('hello ' + q.url)).listen(8088)"`),
    });
    await waitForPod(core, ns, 'web', 'Running', (p) => p.status?.phase === 'Running', 60_000);
    const exec = await node.kubectl(['-n', ns, 'exec', 'web', '--', 'cat', '/proc/1/cmdline']);
    expect(exec.stdout).to.contain('node');
    const forward = spawnCollecting(join(node.binDir, 'kubectl'), [
      `--kubeconfig=${node.kubeconfigPath}`,
      '-n',
      ns,
      'port-forward',
      'pod/web',
      ':8088',
    ]);
    try {
      const port = await waitFor('port-forward', async () => /Forwarding from 127\.0\.0\.1:(\d+)/.exec(forward.output())?.[1], 30_000, 100);
      const res = await waitFor(
        'a forwarded answer',
        async () => request(`http://127.0.0.1:${port}/through`).catch(() => null),
        10_000,
        200,
      );
      expect(await res.body.text()).to.equal('hello /through');
    } finally {
      forward.proc.kill();
    }
  });

  describe('nothing outlives it', () => {
    it('an owner SIGKILLed with a node running: everything is there, then node-down removes all of it', async function () {
      this.timeout(600_000);
      await stopSharedRealNode(); // one node per machine: the next suite starts a fresh one
      // a NetworkPolicy, so that kube-router has made ipsets too (one per set of pods a policy names)
      const policy =
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-egress, namespace: default}\nspec: {podSelector: {}, policyTypes: [Egress]}\n';
      const script = `
        const { execFileSync } = await import('node:child_process');
        const { startRealNode } = await import(${JSON.stringify(join(REPO_ROOT, 'test/support/node/cluster.ts'))});
        const node = await startRealNode();
        await node.kubectl(['apply', '-f', '-'], { input: ${JSON.stringify(policy)} });
        while (!/^KUBE-/m.test(execFileSync('ipset', ['list', '-n']).toString())) await new Promise((r) => setTimeout(r, 100));
        console.log('ready');
      `;
      const child = spawnCollecting(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
      await waitFor(
        'the other test process to start a node',
        async () => {
          if (child.proc.exitCode !== null) throw new Error(`it exited with ${child.proc.exitCode}: ${child.output()}`);
          return child.output().includes('ready');
        },
        300_000,
        250,
      );
      child.proc.kill('SIGKILL');
      await new Promise((r) => child.proc.once('exit', r));
      const runDir = join(nodeStateDir(), 'run');
      // nothing ran on the way out: the node lives on, orphaned
      expect(await leftovers(runDir)).to.include.members([
        'processes',
        'kube-router',
        'mounts',
        `link ${BRIDGE}`,
        'iptables',
        'kube-router chains',
        'ipsets',
        `cgroup ${CGROUP_ROOT}`,
      ]);
      nodeDown();
      expect(await leftovers(runDir)).to.deep.equal([]);
      // its lock names a dead owner, which the next start replaces; others waiting for the node
      // poll that file, so it goes too
      const lock = join(nodeStateDir(), 'owner');
      if ((await readFile(lock, 'utf8').catch(() => '')).startsWith(`${child.proc.pid}:`)) await rm(lock, { force: true });
    });
  });
});

/** What of a node is still on this machine, by kind. */
async function leftovers(runDir: string): Promise<string[]> {
  const found: string[] = [];
  const { stdout: ps } = await run('ps', ['-eo', 'args']);
  if (ps.split('\n').some((l) => l.includes(runDir) && !l.includes('node-down.sh'))) found.push('processes');
  if (ps.split('\n').some((l) => l.includes(runDir) && l.includes('/kube-router '))) found.push('kube-router');
  if ((await readFile('/proc/self/mountinfo', 'utf8')).includes(runDir)) found.push('mounts');
  if (
    await run('ip', ['link', 'show', BRIDGE]).then(
      () => true,
      () => false,
    )
  )
    found.push(`link ${BRIDGE}`);
  const rules = (await Promise.all(['filter', 'nat', 'mangle'].map(async (t) => (await run('iptables-save', ['-t', t])).stdout))).join(
    '\n',
  );
  if (/KUBE-|CNI-/.test(rules)) found.push('iptables');
  if (/^:KUBE-(ROUTER|POD-FW|NWPLCY)-/m.test(rules)) found.push('kube-router chains');
  if (/^KUBE-/m.test((await run('ipset', ['list', '-n'])).stdout)) found.push('ipsets');
  if ([`/sys/fs/cgroup/memory/${CGROUP_ROOT}`, `/sys/fs/cgroup/${CGROUP_ROOT}`].some((d) => existsSync(d)))
    found.push(`cgroup ${CGROUP_ROOT}`);
  return found;
}

/** A child process whose output (stdout and stderr) is collected from the start. */
function spawnCollecting(command: string, args: string[]): { proc: ChildProcess; output(): string } {
  const proc = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  return { proc, output: () => out };
}
