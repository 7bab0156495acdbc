/**
 * preview/main.ts's resolvers on a real apiserver: the PagewrightJob read through client-node
 * and common/job-resource.ts becomes the review page's job (storage uid, versions, summary,
 * usage, the commands), a missing job is null, and a change of the job shows within the
 * resolver's short memory; a site is a PagewrightSite of the namespace, its current version
 * storage's. Then the whole wiring as main runs it: the resolvers, real storage, the router, the
 * review page of that job. (Who may see them is the review API's: test/integration/review-api.test.ts.)
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { expect } from 'chai';
import { request } from 'undici';
import { GROUP, PLURAL, VERSION } from '../../common/job-resource.js';
import { silentLogger } from '../../common/logger.js';
import { SMALL_API_TIMEOUTS, listen } from '../../common/server-timeouts.js';
import { KubeJobResolver } from '../../preview/resolvers.js';
import { KubeSiteDirectory } from '../../preview/site-directory.js';
import { createSiteIfAbsent } from '../../common/site-resource.js';
import { REVIEW_API_PREFIX, createPreviewApps } from '../../preview/server.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { ensureCrd } from '../support/manager-env.js';
import { bakerySite, packTree, writeTree } from '../support/preview-fixture.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

describe("preview's job resolver on a real apiserver", function () {
  this.timeout(90_000);
  let cp: ControlPlane;
  let custom: CustomObjectsApi;
  let namespace: string;
  let storage: TestStorage;
  let scratch: string;
  let base: string;
  let output: string;

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    namespace = await createNamespace(cp, 'preview-resolver');
    custom = cp.kubeConfig().makeApiClient(CustomObjectsApi);
    storage = await startTestStorage();
    scratch = await mkdtemp(join(tmpdir(), 'pw-preview-resolver-'));
    await writeTree(join(scratch, 'base'), bakerySite());
    await writeTree(join(scratch, 'output'), bakerySite(true));
    base = (await storage.admin.putSiteArtifact('harbor-lane-bakery', await packTree(join(scratch, 'base')))).version;
    output = (await storage.admin.putJobObject('preview-resolver-uid', 'output.tar.gz', await packTree(join(scratch, 'output')))).version;
  });

  after(async () => {
    await storage?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function createJob(name: string, status?: Record<string, unknown>): Promise<void> {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'PagewrightJob',
        metadata: { name },
        spec: { siteId: 'harbor-lane-bakery', prompt: 'Add the holiday closure' },
      },
    });
    if (status) await setStatus(name, status);
  }

  async function setStatus(name: string, status: Record<string, unknown>): Promise<void> {
    const current = (await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name })) as {
      metadata: { resourceVersion: string };
      spec: unknown;
    };
    await custom.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      name,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'PagewrightJob',
        metadata: { name, namespace, resourceVersion: current.metadata.resourceVersion },
        spec: current.spec,
        status,
      },
    });
  }

  it('reads a job into what the review page needs, and a missing job as null', async () => {
    await createJob('done', {
      phase: 'Succeeded',
      jobId: 'preview-resolver-uid',
      baseVersion: base,
      outputVersion: output,
      summary: 'Added a notice',
      usage: { requests: 2, inputTokens: 10, outputTokens: 5 },
    });
    const resolver = new KubeJobResolver(custom);
    const job = await resolver.resolve(namespace, 'done');
    expect(job).to.deep.include({
      uid: 'preview-resolver-uid',
      name: 'done',
      namespace,
      siteId: 'harbor-lane-bakery',
      prompt: 'Add the holiday closure',
      phase: 'Succeeded',
      baseVersion: base,
      outputVersion: output,
      summary: 'Added a notice',
    });
    expect(job?.commands.approve[0]).to.equal(`pagewright approve done -n ${namespace}`);
    expect(await resolver.resolve(namespace, 'nope')).to.equal(null);
    expect(await resolver.resolve('no-such-namespace', 'done')).to.equal(null);
  });

  it('shows a change of the job within its short memory', async () => {
    await createJob('moving', { phase: 'Running', jobId: 'moving-uid' });
    const resolver = new KubeJobResolver(custom);
    expect((await resolver.resolve(namespace, 'moving'))?.phase).to.equal('Running');
    await setStatus('moving', { phase: 'Succeeded', jobId: 'moving-uid', summary: 'done' });
    const until = Date.now() + 10_000;
    let phase: string | undefined;
    while (Date.now() < until) {
      phase = (await resolver.resolve(namespace, 'moving'))?.phase;
      if (phase === 'Succeeded') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(phase).to.equal('Succeeded');
  });

  it("serves the job's review page and output as main wires it (the resolver, storage, the router)", async () => {
    const apps = createPreviewApps({
      storage: storage.admin,
      resolveJob: (ns, name) => new KubeJobResolver(custom).resolve(ns, name),
      resolveSite: (ns, name) => new KubeSiteDirectory(custom, storage.admin).reviewSite(ns, name),
      cacheDir: join(scratch, 'cache'),
      cacheBytes: 64 * 1024 * 1024,
      logger: silentLogger,
    });
    const server = await listen(apps.api, 0, '127.0.0.1', SMALL_API_TIMEOUTS);
    try {
      const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}${REVIEW_API_PREFIX.replace(':namespace', namespace)}`;
      const get = async (path: string) => {
        const res = await request(`${root}/${path}`);
        return { status: res.statusCode, text: await res.body.text() };
      };
      const review = await get('jobs/done/review');
      expect(review.status).to.equal(200);
      expect(review.text).to.include('Add the holiday closure');
      expect(review.text).to.include('No diff yet.');
      expect((await get('jobs/done/output/')).text).to.include('Closed from December 24 to 26.');
      expect((await get('jobs/done/base/')).text).not.to.include('Closed from');
      // a site in storage but not a PagewrightSite of this namespace is not served; once it is, it is
      expect((await get('sites/harbor-lane-bakery/versions/current/files/')).status).to.equal(404);
      await createSiteIfAbsent(custom, namespace, 'harbor-lane-bakery');
      expect((await get('sites/harbor-lane-bakery/versions/current/files/')).text).to.include('Open daily');
      expect((await get('sites/nope/versions/current/files/')).status).to.equal(404);
      expect((await get('jobs/nope/review')).status).to.equal(404);
    } finally {
      server.closeAllConnections();
      server.close();
      await apps.close();
    }
  });
});
