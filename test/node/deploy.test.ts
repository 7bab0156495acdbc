/**
 * deploy/k8s against the real apiserver: the kustomize base is accepted by server-side dry run,
 * the manager's runner pods pass Pod Security admission at "restricted", and the manager's Role
 * is enough to run a job and nothing more.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { expect } from 'chai';
import { buildPod } from '../../manager/pod-spec.js';
import { PagewrightJob } from '../../common/job-resource.js';
import { type ControlPlane, createNamespace } from '../support/control-plane.js';
import { sharedRealNode } from '../support/node/shared.js';
import { type ManagerEnv, ensureCrd, randomName, startManagerEnv } from '../support/manager-env.js';
import { defaultPodConfig } from '../support/pod-config.js';
import { REPO_ROOT } from '../support/sites.js';

const DEPLOY = join(REPO_ROOT, 'deploy/k8s');

describe('deploy/k8s on a real apiserver', function () {
  this.timeout(120_000);
  let cp: ControlPlane;

  before(async () => {
    cp = await sharedRealNode();
    await ensureCrd(cp);
  });

  it('kubectl apply -k deploy/k8s --dry-run=server accepts every object, without Pod Security warnings', async () => {
    await cp.kubectl(['apply', '-f', join(DEPLOY, 'namespace.yaml')]); // dry-run objects need their namespace
    const res = await cp.kubectl(['apply', '-k', DEPLOY, '--dry-run=server']);
    const applied = res.stdout.trim().split('\n');
    for (const object of [
      'customresourcedefinition.apiextensions.k8s.io/pagewrightjobs.pagewright.dev',
      'customresourcedefinition.apiextensions.k8s.io/pagewrightsites.pagewright.dev',
      'deployment.apps/pagewright-preview',
      'service/pagewright-preview',
      'apiservice.apiregistration.k8s.io/v1alpha1.review.pagewright.dev',
      'clusterrole.rbac.authorization.k8s.io/pagewright-edit',
      'clusterrole.rbac.authorization.k8s.io/pagewright-view',
      'serviceaccount/pagewright-manager',
      'role.rbac.authorization.k8s.io/pagewright-manager',
      'rolebinding.rbac.authorization.k8s.io/pagewright-manager',
      'persistentvolumeclaim/pagewright-storage',
      'deployment.apps/pagewright-storage',
      'deployment.apps/pagewright-manager',
      'service/pagewright-manager',
      'service/pagewright-storage',
      'networkpolicy.networking.k8s.io/pagewright-runner',
    ]) {
      expect(
        applied.some((l) => l.startsWith(`${object} `)),
        `${object} in:\n${res.stdout}`,
      ).to.equal(true);
    }
    expect(res.stderr).to.not.match(/violate PodSecurity/);
  });

  it('the S3 overlay (deploy/overlays/s3): 2 storage replicas, rolling, spread, a PDB, the bucket settings, no volume claim', async () => {
    await cp.kubectl(['apply', '-f', join(DEPLOY, 'namespace.yaml')]);
    const res = await cp.kubectl(['apply', '-k', join(REPO_ROOT, 'deploy/overlays/s3'), '--dry-run=server', '-o', 'json']);
    expect(res.stderr).to.not.match(/violate PodSecurity/);
    interface Obj {
      kind: string;
      metadata: { name: string; namespace?: string };
      spec?: Record<string, unknown>;
    }
    const parsed = JSON.parse(res.stdout) as { items?: Obj[] } & Obj;
    const items: Obj[] = parsed.items ?? [parsed];
    expect(items.filter((o) => o.kind === 'PersistentVolumeClaim')).to.deep.equal([]);
    const storage = items.find((o) => o.kind === 'Deployment' && o.metadata.name === 'pagewright-storage') as unknown as {
      spec: {
        replicas: number;
        strategy: { type: string; rollingUpdate: { maxUnavailable: number } };
        template: {
          metadata: { labels: Record<string, string> };
          spec: {
            topologySpreadConstraints: Array<{ topologyKey: string }>;
            volumes: Array<Record<string, unknown>>;
            containers: Array<{
              name: string;
              env: Array<{ name: string; value?: string; valueFrom?: Record<string, { name: string; key: string; optional?: boolean }> }>;
            }>;
          };
        };
      };
    };
    expect(storage.spec.replicas).to.equal(2);
    expect([storage.spec.strategy.type, storage.spec.strategy.rollingUpdate.maxUnavailable]).to.deep.equal(['RollingUpdate', 0]);
    expect(storage.spec.template.spec.topologySpreadConstraints.map((t) => t.topologyKey)).to.include('kubernetes.io/hostname');
    expect(storage.spec.template.spec.volumes.some((v) => 'persistentVolumeClaim' in v)).to.equal(false);
    const env = Object.fromEntries(storage.spec.template.spec.containers[0]!.env.map((e) => [e.name, e]));
    expect(env.PAGEWRIGHT_STORAGE_BACKEND?.value).to.equal('s3');
    expect(env.PAGEWRIGHT_S3_BUCKET?.valueFrom?.configMapKeyRef).to.deep.include({ name: 'pagewright-s3', key: 'bucket' });
    expect(env.AWS_ACCESS_KEY_ID?.valueFrom?.secretKeyRef).to.deep.include({ name: 'pagewright-s3-credentials', optional: true });
    const pdb = items.find((o) => o.kind === 'PodDisruptionBudget') as unknown as {
      metadata: { namespace: string };
      spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    };
    expect(pdb.metadata.namespace).to.equal('pagewright');
    expect(pdb.spec.minAvailable).to.equal(1);
    expect(storage.spec.template.metadata.labels).to.deep.include(pdb.spec.selector.matchLabels);
    // and the base is left as it was: one replica on its volume
    const base = await cp.kubectl(['apply', '-k', DEPLOY, '--dry-run=server']);
    expect(base.stdout).to.include('persistentvolumeclaim/pagewright-storage');
  });

  it('runner pods from the manager pass Pod Security admission at "restricted"', async () => {
    const ns = await createNamespace(cp, 'pss');
    await cp.kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
    const job = PagewrightJob.parse({
      metadata: { name: 'pss-check', namespace: ns, uid: '11111111-2222-3333-4444-555555555555', resourceVersion: '1' },
      spec: { siteId: 'site', prompt: 'x' },
    });
    const pod = buildPod(job, 1, defaultPodConfig());
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedPod({ namespace: ns, body: pod, dryRun: 'All' });
    // the control: the same pod without its hardening is refused, so admission really ran
    const weak = structuredClone(pod);
    delete weak.spec!.securityContext;
    delete weak.spec!.containers[0]!.securityContext;
    const refused = await core.createNamespacedPod({ namespace: ns, body: weak, dryRun: 'All' }).then(
      () => null,
      (err: { code?: number; body?: unknown }) => err,
    );
    expect(refused?.code).to.equal(403);
    expect(String(refused?.body)).to.match(/violates PodSecurity \\"restricted/);
  });

  describe('the manager with only its ServiceAccount', () => {
    let env: ManagerEnv;
    let saKubeconfig: string;

    before(async () => {
      env = await startManagerEnv('rbac');
      await cp.kubectl(['-n', env.namespace, 'apply', '-f', join(DEPLOY, 'rbac.yaml')]);
      const token = (await cp.kubectl(['-n', env.namespace, 'create', 'token', 'pagewright-manager', '--duration=1h'])).stdout.trim();
      saKubeconfig = join(cp.dir, `manager-${env.namespace}.kubeconfig`);
      await writeFile(
        saKubeconfig,
        `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: { server: ${cp.server}, insecure-skip-tls-verify: true }
users:
- name: manager
  user: { token: ${token} }
contexts:
- name: manager
  context: { cluster: test, user: manager, namespace: ${env.namespace} }
current-context: manager
`,
        { mode: 0o600 },
      );
    });
    after(async () => env?.stop());

    it('completes a job with the Role of deploy/k8s/rbac.yaml', async () => {
      await env.startManager({
        kubeconfigPath: saKubeconfig,
        env: { PAGEWRIGHT_LEADER_ELECTION: 'true', PAGEWRIGHT_LEASE_NAME: 'pagewright-manager' },
      });
      const name = randomName('rbac');
      await env.createJob(name, { siteId: 'site-a', prompt: 'Edit with least privilege', ttlSecondsAfterFinished: 0 });
      const done = await env
        .waitForJob(name, 'finished', (j) => ['Succeeded', 'Failed'].includes(j.status.phase ?? ''), 60_000)
        .catch(async (err: Error) => {
          throw new Error(`${err.message}\n${await env.diagnostics()}`);
        });
      expect(done.status.phase, await env.diagnostics()).to.equal('Succeeded');
      expect(await env.managerLogs()).to.not.match(/forbidden/i);
    });

    it("reads a site's credentials Secret only where a Role grants it by name", async () => {
      const as = (args: string[]) => cp.kubectl([`--kubeconfig=${saKubeconfig}`, ...args], { allowFailure: true });
      const ns = env.namespace;
      for (const name of ['site-git', 'other-app']) {
        await cp.kubectl(['-n', ns, 'create', 'secret', 'generic', name, '--from-literal=password=x']);
      }
      expect((await as(['-n', ns, 'auth', 'can-i', 'get', 'secret/site-git'])).stdout.trim()).to.equal('no');
      await cp.kubectl([
        '-n',
        ns,
        'create',
        'role',
        'pagewright-site-credentials',
        '--verb=get',
        '--resource=secrets',
        '--resource-name=site-git',
      ]);
      await cp.kubectl([
        '-n',
        ns,
        'create',
        'rolebinding',
        'pagewright-site-credentials',
        '--role=pagewright-site-credentials',
        `--serviceaccount=${ns}:pagewright-manager`,
      ]);
      expect((await as(['-n', ns, 'get', 'secret', 'site-git'])).code).to.equal(0);
      const other = await as(['-n', ns, 'get', 'secret', 'other-app']);
      expect([other.code !== 0, /forbidden/i.test(other.stderr)]).to.deep.equal([true, true]);
      expect((await as(['-n', ns, 'auth', 'can-i', 'list', 'secrets'])).stdout.trim()).to.equal('no');
    });

    it('is forbidden everything outside its Role', async () => {
      const as = (args: string[]) => cp.kubectl([`--kubeconfig=${saKubeconfig}`, ...args], { allowFailure: true });
      for (const args of [
        ['get', 'secrets'],
        ['get', 'secret', 'anything'],
        ['get', 'configmaps'],
        ['create', 'deployment', 'x', '--image=x'],
        ['get', 'pods', '-n', 'default'],
        ['get', 'pwj', '-n', 'default'],
        ['get', 'nodes'],
        ['get', 'lease', 'someone-elses-lease'],
      ]) {
        const res = await as(args);
        expect(res.code, args.join(' ')).to.not.equal(0);
        expect(res.stderr, args.join(' ')).to.match(/forbidden/i);
      }
      for (const [verb, resource, ...more] of [
        ['create', 'pods'],
        ['watch', 'pagewrightjobs.pagewright.dev'],
        ['update', 'pagewrightjobs.pagewright.dev', '--subresource=status'],
        ['watch', 'pagewrightsites.pagewright.dev'],
        ['patch', 'pagewrightsites.pagewright.dev', '--subresource=status'],
        ['delete', 'secrets'],
      ] as const) {
        const res = await as(['auth', 'can-i', verb, resource, ...more]);
        expect(res.stdout.trim(), `${verb} ${resource}`).to.equal('yes');
      }
    });
  });
});
