/**
 * The test control plane itself: a real kube-apiserver and etcd built from Go modules, and
 * nothing of it outliving the test process. (Pods run on the real node: test/node/real-node.test.ts.)
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { type ControlPlane, startControlPlane } from '../support/control-plane.js';
import { reapOrphans } from '../support/control-plane/owner.js';
import { waitFor } from '../support/processes.js';
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

describe('test control plane (real kube-apiserver + etcd)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;

  before(async () => {
    cp = await startControlPlane();
  });
  after(async () => {
    if (cp) {
      const pids = (await readFile(`${cp.dir}/pids`, 'utf8')).split('\n').map(Number);
      await cp.stop();
      // nothing of the control plane survives stop()
      for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid} still alive`).to.throw();
    }
  });

  it('serves the pinned Kubernetes version to the pinned kubectl', async () => {
    const { stdout } = await cp.kubectl(['version', '-o', 'json']);
    const v = JSON.parse(stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
    expect(v.serverVersion.gitVersion).to.match(/^v1\.33\.\d+$/);
    expect(v.clientVersion.gitVersion).to.equal(v.serverVersion.gitVersion);
  });

  it('applies a CRD with kubectl and rejects a schema-invalid custom resource', async () => {
    await cp.kubectl(['apply', '-f', '-'], { input: CRD });
    await cp.kubectl(['wait', '--for=condition=Established', 'crd/widgets.test.pagewright.dev', '--timeout=30s']);
    await cp.kubectl(['apply', '-f', '-'], {
      input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {size: 3}\n',
    });
    const bad = await cp.kubectl(['apply', '-f', '-'], {
      input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 99}\n',
      allowFailure: true,
    });
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/spec\.size: Invalid value: 99: spec\.size in body should be less than or equal to 10/);
    const missing = await cp.kubectl(['apply', '-f', '-'], {
      input: 'apiVersion: test.pagewright.dev/v1\nkind: Widget\nmetadata: {name: bad2}\nspec: {}\n',
      allowFailure: true,
    });
    expect(missing.stderr).to.match(/spec\.size: Required value/);
  });
});

describe('test control plane: nothing outlives the test process', function () {
  this.timeout(120_000);

  /** Another test process with its own control plane (etcd and kube-apiserver). */
  async function startDoomedRun(): Promise<{ pid: number; pids: number[]; exited: Promise<void> }> {
    const script = `
      const { startControlPlane } = await import(${JSON.stringify(join(REPO_ROOT, 'test/support/control-plane.ts'))});
      const cp = await startControlPlane();
      const { readFile } = await import('node:fs/promises');
      console.log(JSON.stringify({ pids: (await readFile(cp.dir + '/pids', 'utf8')).split('\\n').map(Number) }));
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const { pids } = await waitFor(
      'the other test process to start',
      async () => {
        if (child.exitCode !== null) throw new Error(`the other test process exited early: ${out}`);
        return out.includes('\n') ? (JSON.parse(out) as { pids: number[] }) : null;
      },
      60_000,
      100,
    );
    return { pid: child.pid!, pids, exited };
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('SIGTERM: the test process kills etcd and kube-apiserver on its way out', async () => {
    const run = await startDoomedRun();
    process.kill(run.pid, 'SIGTERM');
    await run.exited;
    await waitFor('the control plane to be gone', async () => run.pids.every((p) => !alive(p)), 5000);
  });

  it('SIGKILL: what the dead run left behind is reaped at the next start', async () => {
    const run = await startDoomedRun();
    process.kill(run.pid, 'SIGKILL');
    await run.exited;
    // nothing ran on the way out: etcd and kube-apiserver are still there, orphaned
    expect(run.pids.filter(alive)).to.have.length(2);
    // startControlPlane() begins with this
    expect(reapOrphans()).to.include.members(run.pids);
    await waitFor('the orphans to be gone', async () => run.pids.every((p) => !alive(p)), 5000);
  });
});
