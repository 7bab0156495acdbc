/**
 * A kustomize overlay of deploy/k8s (or deploy/dev) that moves the images to a registry, rendered
 * with `kubectl kustomize` (the pinned kubectl, kustomize v5): the runner image, which no
 * container of the manifests runs but the manager's PAGEWRIGHT_RUNNER_IMAGE names for runner
 * pods, follows the overlay's `images:` like the three images of the Deployments do, and no other
 * value changes (deploy/k8s/kustomizeconfig.yaml).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { type V1Deployment, loadAllYaml } from '@kubernetes/client-node';
import { expect } from 'chai';
import { loadConfig } from '../../common/config.js';
import { managerConfigSpec } from '../../manager/config.js';
import { ensureControlPlaneBinaries } from '../support/control-plane.js';
import { REPO_ROOT } from '../support/sites.js';

const run = promisify(execFile);
const DIGEST = `sha256:${'c'.repeat(64)}`;
/** Every image of the install moved: a new registry and tag, a digest, a tag alone, a name alone. */
const IMAGES = `images:
  - { name: pagewright-runner, newName: registry.example.com/pagewright/runner, newTag: "1.2.3" }
  - { name: pagewright-manager, newName: registry.example.com/pagewright/manager, digest: "${DIGEST}" }
  - { name: pagewright-storage, newTag: "1.2.3" }
  - { name: pagewright-gateway, newName: registry.example.com/pagewright/gateway }
  - { name: pagewright-preview, newName: registry.example.com/pagewright/preview, newTag: "1.2.3" }
`;

type Env = Record<string, string | undefined>;

describe('a kustomize images override of deploy/k8s reaches runner pods', function () {
  this.timeout(60_000);
  let kubectl: string;
  let scratch: string;

  before(async () => {
    kubectl = join(await ensureControlPlaneBinaries(), 'kubectl');
    scratch = await mkdtemp(join(tmpdir(), 'pw-kustomize-'));
  });
  after(async () => rm(scratch, { recursive: true, force: true }));

  /** The Deployments `kubectl kustomize` renders from `dir`. */
  async function render(dir: string): Promise<Map<string, V1Deployment>> {
    const { stdout } = await run(kubectl, ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
    const deployments = (loadAllYaml(stdout) as V1Deployment[]).filter((o) => o.kind === 'Deployment');
    return new Map(deployments.map((d) => [d.metadata!.name!, d]));
  }
  /** An overlay on `base` (a path in the repository) with `images`, in a directory of its own. */
  async function overlay(base: string, images: string): Promise<string> {
    const dir = await mkdtemp(join(scratch, 'overlay-'));
    // kustomize takes a base only by a relative path
    await writeFile(join(dir, 'kustomization.yaml'), `resources:\n  - ${relative(dir, join(REPO_ROOT, base))}\n${images}`);
    return dir;
  }
  const container = (d: V1Deployment) => d.spec!.template.spec!.containers[0]!;
  const envOf = (d: V1Deployment): Env => Object.fromEntries((container(d).env ?? []).map((e) => [e.name, e.value]));

  it("the base runs runners on the image the manager's own default names", async () => {
    const manager = (await render(join(REPO_ROOT, 'deploy/k8s'))).get('pagewright-manager')!;
    const defaults = loadConfig(managerConfigSpec, {
      PAGEWRIGHT_MANAGER_URL: 'http://m',
      PAGEWRIGHT_STORAGE_URL: 'http://s',
      PAGEWRIGHT_STORAGE_ADMIN_TOKEN: 'x'.repeat(16),
      PAGEWRIGHT_TOKEN_SECRET: 'x'.repeat(32),
      PAGEWRIGHT_GATEWAY_URL: 'http://g',
      PAGEWRIGHT_GATEWAY_SECRET: 'x'.repeat(32),
      PAGEWRIGHT_GATEWAY_REPORT_TOKEN: 'x'.repeat(16),
    });
    expect(envOf(manager).PAGEWRIGHT_RUNNER_IMAGE).to.equal(defaults.runnerImage);
  });

  for (const base of ['deploy/k8s', 'deploy/dev']) {
    it(`an overlay of ${base}: PAGEWRIGHT_RUNNER_IMAGE and the Deployments' images follow it, nothing else changes`, async () => {
      const before = await render(join(REPO_ROOT, base));
      const after = await render(await overlay(base, IMAGES));
      const manager = after.get('pagewright-manager')!;
      expect(envOf(manager).PAGEWRIGHT_RUNNER_IMAGE).to.equal('registry.example.com/pagewright/runner:1.2.3');
      expect(container(manager).image).to.equal(`registry.example.com/pagewright/manager@${DIGEST}`);
      expect(container(after.get('pagewright-storage')!).image).to.equal('pagewright-storage:1.2.3');
      expect(container(after.get('pagewright-gateway')!).image).to.equal('registry.example.com/pagewright/gateway:0.1.0');
      expect(container(after.get('pagewright-preview')!).image).to.equal('registry.example.com/pagewright/preview:1.2.3');
      // every other env value of every Deployment is what the base says
      expect([...after.keys()].sort()).to.deep.equal([...before.keys()].sort());
      for (const [name, deployment] of after) {
        const { PAGEWRIGHT_RUNNER_IMAGE: _moved, ...rest } = envOf(deployment);
        const { PAGEWRIGHT_RUNNER_IMAGE: _was, ...restBefore } = envOf(before.get(name)!);
        expect(rest, name).to.deep.equal(restBefore);
      }
    });
  }

  it('a tag alone moves the runner image too', async () => {
    const manager = (await render(await overlay('deploy/k8s', 'images:\n  - { name: pagewright-runner, newTag: "2.0.0" }\n'))).get(
      'pagewright-manager',
    )!;
    expect(envOf(manager).PAGEWRIGHT_RUNNER_IMAGE).to.equal('pagewright-runner:2.0.0');
    expect(container(manager).image, 'the manager image is not the runner one').to.equal('pagewright-manager:0.1.0');
  });
});
