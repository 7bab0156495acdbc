/**
 * The test control plane itself: a real kube-apiserver and etcd built from Go modules, and the
 * local kubelet that runs pods as local processes.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { expect } from 'chai';
import { type ControlPlane, startControlPlane } from '../support/control-plane.js';
import { reapOrphans } from '../support/control-plane/owner.js';
import { LocalKubelet } from '../support/local-kubelet.js';
import { waitForPod, waitForPodGone } from '../support/pods.js';
import { pidsWithCmdline, waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.pagewright.dev
spec:
  group: test.pagewright.dev
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: { type: integer, minimum: 1, maximum: 10 }
`;

describe('test control plane (real kube-apiserver + etcd) and local kubelet', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let core: CoreV1Api;
  let kubelet: LocalKubelet;
  const ns = 'default';

  before(async () => {
    cp = await startControlPlane();
    core = cp.kubeConfig().makeApiClient(CoreV1Api);
    kubelet = new LocalKubelet({
      kubeConfig: cp.kubeConfig(),
      namespace: ns,
      resyncMs: 500,
      images: {
        // the container's args[0] is a shell script
        'test/shell': { command: (c) => ['/bin/sh', '-c', c.args?.[0] ?? 'true'] },
        'test/node': { command: (c) => [process.execPath, '-e', c.args?.[0] ?? ''] },
      },
    });
    await kubelet.start();
  });
  after(async () => {
    await kubelet?.stop();
    if (cp) {
      const pids = (await readFile(`${cp.dir}/pids`, 'utf8')).split('\n').map(Number);
      await cp.stop();
      // nothing of the control plane survives stop()
      for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid} still alive`).to.throw();
    }
  });

  function pod(name: string, image: string, script: string, extra: Partial<NonNullable<V1Pod['spec']>> = {}, env: NonNullable<NonNullable<V1Pod['spec']>['containers'][0]['env']> = []): V1Pod {
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: { restartPolicy: 'Never', containers: [{ name: 'main', image, args: [script], env }], ...extra },
    };
  }

  it('serves the pinned Kubernetes version to the pinned kubectl', async () => {
    const { stdout } = await cp.kubectl(['version', '-o', 'json']);
    const v = JSON.parse(stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
    expect(v.serverVersion.gitVersion).to.match(/^v1\.33\.\d+$/);
    expect(v.clientVersion.gitVersion).to.equal(v.serverVersion.gitVersion);
  });

  it('applies a CRD with kubectl and rejects a schema-invalid custom resource', async () => {
    await cp.kubectl(['apply', '-f', '-'], { input: CRD });
    await cp.kubectl(['wait', '--for=condition=Established', 'crd/widgets.test.pagewright.dev', '--timeout=30s']);
    await cp.kubectl(['apply', '-f', '-'], { input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {size: 3}\n' });
    const bad = await cp.kubectl(['apply', '-f', '-'], { input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 99}\n', allowFailure: true });
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/spec\.size: Invalid value: 99: spec\.size in body should be less than or equal to 10/);
    const missing = await cp.kubectl(['apply', '-f', '-'], { input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: bad2}\nspec: {}\n', allowFailure: true });
    expect(missing.stderr).to.match(/spec\.size: Required value/);
  });

  it('runs a pod to Succeeded, and a failing one to Failed with its exit code', async () => {
    await core.createNamespacedPod({ namespace: ns, body: pod('ok', 'test/shell:1', 'echo hello from the pod') });
    await core.createNamespacedPod({ namespace: ns, body: pod('fails', 'test/shell', 'exit 3') });
    const ok = await waitForPod(core, ns, 'ok', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
    expect(ok.spec?.nodeName).to.equal(kubelet.nodeName);
    expect(ok.status?.containerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
    expect(ok.status?.podIP).to.match(/^127\.0\.0\.\d+$/);
    expect(await kubelet.logs(ns, 'ok')).to.contain('hello from the pod');
    const failed = await waitForPod(core, ns, 'fails', 'Failed', (p) => p.status?.phase === 'Failed');
    expect(failed.status?.containerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 3, reason: 'Error' });
  });

  it('resolves secretKeyRef and fieldRef env like a kubelet, and waits when the secret is missing', async () => {
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'creds' }, stringData: { token: 's3cret' } } });
    const env = [
      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
      { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'MY_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ];
    await core.createNamespacedPod({ namespace: ns, body: pod('env', 'test/shell', 'echo "token=$TOKEN ip=$MY_IP name=$MY_NAME"', {}, env) });
    await waitForPod(core, ns, 'env', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
    expect(await kubelet.logs(ns, 'env')).to.match(/token=s3cret ip=127\.0\.0\.\d+ name=env/);

    await core.createNamespacedPod({ namespace: ns, body: pod('nosecret', 'test/shell', 'true', {}, [{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'k' } } }]) });
    const waiting = await waitForPod(core, ns, 'nosecret', 'CreateContainerConfigError', (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError');
    expect(waiting.status?.phase).to.equal('Pending');
    // like the kubelet's sync loop, it retries: the pod starts once the secret exists
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'absent' }, stringData: { k: 'v' } } });
    await waitForPod(core, ns, 'nosecret', 'Succeeded after the secret appeared', (p) => p.status?.phase === 'Succeeded');
  });

  it('runs a dozen pods at once, each on its own loopback IP, with their own exit codes', async () => {
    const gate = await mkdtemp(join(tmpdir(), 'pw-gate-'));
    const names = Array.from({ length: 12 }, (_, i) => `many-${i}`);
    try {
      // every pod waits for the gate, so all twelve are Running at the same time
      await Promise.all(names.map((name, i) => core.createNamespacedPod({ namespace: ns, body: pod(name, 'test/shell', `while [ ! -e ${gate}/open ]; do sleep 0.1; done; exit ${i % 3}`) })));
      const running = await Promise.all(names.map((name) => waitForPod(core, ns, name, 'Running', (p) => p.status?.phase === 'Running')));
      expect(new Set(running.map((p) => p.status?.podIP)).size).to.equal(12);
      await writeFile(join(gate, 'open'), '');
      const done = await Promise.all(names.map((name) => waitForPod(core, ns, name, 'finished', (p) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed')));
      expect(done.map((p) => p.status?.containerStatuses?.[0]?.state?.terminated?.exitCode)).to.deep.equal(names.map((_, i) => i % 3));
    } finally {
      await rm(gate, { recursive: true, force: true });
    }
  });

  it('reports an unknown image as ErrImagePull', async () => {
    await core.createNamespacedPod({ namespace: ns, body: pod('noimage', 'nowhere/nothing:1', 'true') });
    await waitForPod(core, ns, 'noimage', 'ErrImagePull', (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ErrImagePull');
  });

  it('kills a pod over its memory limit: Failed, OOMKilled, exit code 137', async () => {
    const hog = pod('hog', 'test/node', 'const b = Buffer.alloc(300 * 1024 * 1024, 1); setInterval(() => b[0]++, 100)');
    hog.spec!.containers[0]!.resources = { limits: { memory: '150Mi' } };
    await core.createNamespacedPod({ namespace: ns, body: hog });
    const p = await waitForPod(core, ns, 'hog', 'Failed', (x) => x.status?.phase === 'Failed');
    expect(p.status?.containerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 137, reason: 'OOMKilled' });
  });

  it('ends a pod past activeDeadlineSeconds: Failed, DeadlineExceeded', async () => {
    await core.createNamespacedPod({ namespace: ns, body: pod('slow', 'test/shell', 'sleep 300', { activeDeadlineSeconds: 2 }) });
    const p = await waitForPod(core, ns, 'slow', 'Failed', (x) => x.status?.phase === 'Failed');
    expect(p.status?.reason).to.equal('DeadlineExceeded');
  });

  it('deletes a running pod: TERM, grace period, KILL, process gone, pod removed', async () => {
    const marker = `sleep 604.${process.pid % 1000}`;
    // the child ignores TERM, so only the KILL after the grace period ends it
    await core.createNamespacedPod({ namespace: ns, body: pod('running', 'test/shell', `trap '' TERM; ${marker} & wait`, { terminationGracePeriodSeconds: 1 }) });
    const running = await waitForPod(core, ns, 'running', 'Running', (p) => p.status?.phase === 'Running');
    expect(await pidsWithCmdline(marker)).to.have.length.above(0);
    expect(await kubelet.pids(running.metadata!.uid!)).to.have.length.above(0);
    const started = Date.now();
    await core.deleteNamespacedPod({ name: 'running', namespace: ns });
    await waitForPodGone(core, ns, 'running');
    expect(Date.now() - started).to.be.within(900, 15_000);
    expect(await pidsWithCmdline(marker)).to.deep.equal([]);
  });
});

describe('test control plane: nothing outlives the test process', function () {
  this.timeout(120_000);

  /**
   * Another test process with its own control plane, local kubelet and a running pod whose
   * grandchild escaped into its own session (as codex's commands do).
   */
  async function startDoomedRun(tag: string): Promise<{ pid: number; pids: number[]; needle: string; exited: Promise<void> }> {
    const needle = `sleep 611.${tag}`;
    const script = `
      const { startControlPlane } = await import(${JSON.stringify(join(REPO_ROOT, 'test/support/control-plane.ts'))});
      const { LocalKubelet } = await import(${JSON.stringify(join(REPO_ROOT, 'test/support/local-kubelet.ts'))});
      const { CoreV1Api } = await import('@kubernetes/client-node');
      const cp = await startControlPlane();
      const kubelet = new LocalKubelet({ kubeConfig: cp.kubeConfig(), images: { sh: { command: (c) => ['/bin/sh', '-c', c.args[0]] } } });
      await kubelet.start();
      const core = cp.kubeConfig().makeApiClient(CoreV1Api);
      await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'sh', args: ['setsid ${needle} & ${needle}'] }] } } });
      const { readFile } = await import('node:fs/promises');
      console.log(JSON.stringify({ pids: (await readFile(cp.dir + '/pids', 'utf8')).split('\\n').map(Number) }));
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const { pids } = await waitFor('the other test process to start', async () => {
      if (child.exitCode !== null) throw new Error(`the other test process exited early: ${out}`);
      return out.includes('\n') ? (JSON.parse(out) as { pids: number[] }) : null;
    }, 60_000, 100);
    await waitFor(`${needle} (twice) to run`, async () => (await pidsWithCmdline(needle)).length >= 2, 30_000, 100);
    return { pid: child.pid!, pids, needle, exited };
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('SIGTERM: the test process kills etcd, kube-apiserver and every pod process on its way out', async () => {
    const run = await startDoomedRun('1');
    process.kill(run.pid, 'SIGTERM');
    await run.exited;
    await waitFor('the control plane to be gone', async () => run.pids.every((p) => !alive(p)), 5000);
    expect(await pidsWithCmdline(run.needle)).to.deep.equal([]);
  });

  it('SIGKILL: what the dead run left behind is reaped at the next start', async () => {
    const run = await startDoomedRun('2');
    process.kill(run.pid, 'SIGKILL');
    await run.exited;
    // nothing ran on the way out: everything is still there, orphaned
    expect(run.pids.filter(alive)).to.have.length(2);
    expect(await pidsWithCmdline(run.needle)).to.have.length.of.at.least(2);
    // startControlPlane() and LocalKubelet.start() begin with this
    expect(reapOrphans()).to.have.length.of.at.least(4);
    await waitFor('the orphans to be gone', async () => run.pids.every((p) => !alive(p)) && (await pidsWithCmdline(run.needle)).length === 0, 5000);
  });
});
