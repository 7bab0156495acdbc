/**
 * The S3 overlay (deploy/overlays/s3: the base plus the component deploy/components/s3), rendered
 * with `kubectl kustomize` (the pinned kubectl, kustomize v5), without an apiserver: storage runs
 * as 2 replicas on the bucket named by the pagewright-s3 ConfigMap, rolls without dropping below
 * 2, spreads across nodes, has a PodDisruptionBudget that selects exactly its pods and no volume
 * claim; and the base render is still one replica on its ReadWriteOnce volume.
 * (test/node/deploy.test.ts dry-runs the same overlay on the real apiserver.)
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type KubernetesObject, type V1Deployment, type V1PodDisruptionBudget, loadAllYaml } from '@kubernetes/client-node';
import { expect } from 'chai';
import { ensureControlPlaneBinaries } from '../support/control-plane.js';
import { REPO_ROOT } from '../support/sites.js';

const run = promisify(execFile);
const STORAGE = 'pagewright-storage';

describe('deploy/overlays/s3: storage on S3 with two replicas', function () {
  this.timeout(60_000);
  let kubectl: string;
  let overlay: KubernetesObject[];
  let base: KubernetesObject[];

  async function render(path: string): Promise<KubernetesObject[]> {
    const { stdout } = await run(kubectl, ['kustomize', join(REPO_ROOT, path)], { maxBuffer: 16 * 1024 * 1024 });
    return loadAllYaml(stdout) as KubernetesObject[];
  }
  const storageOf = (objects: KubernetesObject[]): V1Deployment => {
    const found = objects.filter((o) => o.kind === 'Deployment' && o.metadata?.name === STORAGE);
    expect(found, 'one storage Deployment').to.have.length(1);
    return found[0] as V1Deployment;
  };
  const podSpec = (d: V1Deployment) => d.spec!.template.spec!;
  const envOf = (d: V1Deployment) => new Map((podSpec(d).containers.find((c) => c.name === 'storage')?.env ?? []).map((e) => [e.name, e]));

  before(async () => {
    kubectl = join(await ensureControlPlaneBinaries(), 'kubectl');
    [overlay, base] = await Promise.all([render('deploy/overlays/s3'), render('deploy/k8s')]);
  });

  it('2 replicas, a rolling update that never drops below them, spread across nodes', () => {
    const storage = storageOf(overlay);
    expect(storage.spec!.replicas).to.equal(2);
    expect(storage.spec!.strategy?.type).to.equal('RollingUpdate');
    expect(storage.spec!.strategy?.rollingUpdate?.maxUnavailable).to.equal(0);
    const spread = podSpec(storage).topologySpreadConstraints ?? [];
    const byHost = spread.find((t) => t.topologyKey === 'kubernetes.io/hostname');
    expect(byHost, 'a topology spread on kubernetes.io/hostname').to.not.equal(undefined);
    expect(byHost!.labelSelector?.matchLabels).to.deep.equal(storage.spec!.template.metadata!.labels);
    const anti = podSpec(storage).affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(anti.map((a) => a.podAffinityTerm.topologyKey)).to.include('kubernetes.io/hostname');
  });

  it('the s3 backend, the bucket from the pagewright-s3 ConfigMap, credentials from an optional Secret', () => {
    const env = envOf(storageOf(overlay));
    expect(env.get('PAGEWRIGHT_STORAGE_BACKEND')?.value).to.equal('s3');
    const bucket = env.get('PAGEWRIGHT_S3_BUCKET')?.valueFrom?.configMapKeyRef;
    expect(bucket).to.deep.include({ name: 'pagewright-s3', key: 'bucket' });
    // a missing bucket fails the pod's start instead of running storage unconfigured
    expect(bucket?.optional ?? false).to.equal(false);
    for (const [name, key] of [
      ['PAGEWRIGHT_S3_ENDPOINT', 'endpoint'],
      ['PAGEWRIGHT_S3_REGION', 'region'],
      ['PAGEWRIGHT_S3_PREFIX', 'prefix'],
      ['PAGEWRIGHT_S3_FORCE_PATH_STYLE', 'forcePathStyle'],
      ['PAGEWRIGHT_S3_INSECURE', 'insecure'],
    ] as const) {
      expect(env.get(name)?.valueFrom?.configMapKeyRef, name).to.deep.equal({ name: 'pagewright-s3', key, optional: true });
    }
    // optional, so that without the Secret the SDK's chain (IRSA, instance roles) finds credentials
    expect(env.get('AWS_ACCESS_KEY_ID')?.valueFrom?.secretKeyRef).to.deep.equal({
      name: 'pagewright-s3-credentials',
      key: 'accessKeyId',
      optional: true,
    });
    expect(env.get('AWS_SECRET_ACCESS_KEY')?.valueFrom?.secretKeyRef).to.deep.equal({
      name: 'pagewright-s3-credentials',
      key: 'secretAccessKey',
      optional: true,
    });
  });

  it('no PersistentVolumeClaim, no volume of the storage pod refers to one, and every mount has its volume', () => {
    expect(overlay.filter((o) => o.kind === 'PersistentVolumeClaim')).to.deep.equal([]);
    const spec = podSpec(storageOf(overlay));
    const volumes = spec.volumes ?? [];
    expect(volumes.filter((v) => v.persistentVolumeClaim !== undefined)).to.deep.equal([]);
    // each volume has exactly one source (a strategic merge that kept the claim beside the emptyDir would not)
    for (const v of volumes)
      expect(
        Object.keys(v).filter((k) => k !== 'name'),
        v.name,
      ).to.have.length(1);
    const names = new Set(volumes.map((v) => v.name));
    for (const c of spec.containers) for (const m of c.volumeMounts ?? []) expect(names, `${c.name} mounts ${m.name}`).to.include(m.name);
  });

  it("a PodDisruptionBudget (minAvailable 1) in storage's namespace whose selector is exactly storage's", () => {
    const storage = storageOf(overlay);
    const pdbs = overlay.filter((o) => o.kind === 'PodDisruptionBudget') as V1PodDisruptionBudget[];
    expect(pdbs).to.have.length(1);
    const pdb = pdbs[0]!;
    expect(pdb.metadata?.namespace).to.equal(storage.metadata?.namespace);
    expect(pdb.spec?.minAvailable).to.equal(1);
    expect(pdb.spec?.selector?.matchExpressions ?? []).to.deep.equal([]);
    const selector = pdb.spec?.selector?.matchLabels;
    expect(selector).to.deep.equal(storage.spec!.selector.matchLabels);
    expect(storage.spec!.template.metadata!.labels).to.deep.include(selector!);
    // and it selects no other pod of the install
    for (const d of overlay.filter((o) => o.kind === 'Deployment' && o.metadata?.name !== STORAGE) as V1Deployment[]) {
      const labels = d.spec!.template.metadata?.labels ?? {};
      const matches = Object.entries(selector!).every(([k, v]) => labels[k] === v);
      expect(matches, `the PDB selects ${d.metadata?.name}'s pods`).to.equal(false);
    }
  });

  it('the overlay changes only storage and adds only its PDB', () => {
    const key = (o: KubernetesObject) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    const before = new Map(base.map((o) => [key(o), o]));
    const after = new Map(overlay.map((o) => [key(o), o]));
    const added = [...after.keys()].filter((k) => !before.has(k));
    const removed = [...before.keys()].filter((k) => !after.has(k));
    const changed = [...after.keys()].filter((k) => before.has(k) && JSON.stringify(before.get(k)) !== JSON.stringify(after.get(k)));
    expect({ added, removed, changed }).to.deep.equal({
      added: [`PodDisruptionBudget/pagewright/${STORAGE}`],
      removed: [`PersistentVolumeClaim/pagewright/${STORAGE}`],
      changed: [`Deployment/pagewright/${STORAGE}`],
    });
  });

  it('the base (deploy/k8s) is unchanged: one replica, Recreate, on its ReadWriteOnce claim, no PDB', () => {
    const storage = storageOf(base);
    expect(storage.spec!.replicas).to.equal(1);
    expect(storage.spec!.strategy?.type).to.equal('Recreate');
    expect(envOf(storage).has('PAGEWRIGHT_STORAGE_BACKEND')).to.equal(false);
    const claims = base.filter((o) => o.kind === 'PersistentVolumeClaim' && o.metadata?.name === STORAGE);
    expect(claims).to.have.length(1);
    expect(podSpec(storage).volumes?.map((v) => v.persistentVolumeClaim?.claimName)).to.include(STORAGE);
    expect(base.filter((o) => o.kind === 'PodDisruptionBudget')).to.deep.equal([]);
  });
});
