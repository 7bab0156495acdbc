/**
 * PagewrightSites with the real manager (manager/main.ts as a process), on the real apiserver,
 * in front of real storage: a site's status mirrors storage (adopting a site storage already had,
 * its history kept), a job without its site fails SiteNotFound at admission, spec.publish set on
 * a Succeeded job publishes it (compare-and-swap on its base, the Published condition saying how
 * it went), and a site's webhook receives each event once, signed with the key in the Secret the
 * manager made for it, at a real HTTPS receiver.
 *
 * The API-only control plane has no kubelet: where a test needs a job that ran, it writes the
 * job's status and its output in storage as the runner and the manager would have (the runs
 * themselves are test/node's and the e2e's).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { HTTP } from 'cloudevents';
import { expect } from 'chai';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import { PagewrightSite, SITE_CHANGED_ANNOTATION, SITE_PLURAL, createSiteIfAbsent } from '../../common/site-resource.js';
import { type ControlPlane, createNamespace, eventsAbout, sharedControlPlane } from '../support/control-plane.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { type ManagerProcess, startManagerProcess } from '../support/manager-process.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { writeSucceededJob } from '../support/succeeded-job.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';
import { WebhookReceiver, verifyStandardWebhook } from '../support/webhook-receiver.js';

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('PagewrightSites with the real manager: mirror, adoption, SiteNotFound, approval, webhooks', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let ns: string;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let storage: TestStorage;
  let manager: ManagerProcess;
  let receiver: WebhookReceiver;
  let scratch: string;
  const archive = (text: string) => forgeTarGzBuffer([{ path: 'index.html', content: text }]);

  const getSite = async (name: string) =>
    PagewrightSite.parse(
      await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: SITE_PLURAL, namespace: ns, name }),
    );
  const getJob = async (name: string) =>
    PagewrightJob.parse(await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name }));
  const until = <T>(what: string, probe: () => Promise<T | null | undefined | false>) =>
    waitFor(what, probe, 30_000, 100).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${(await readFile(join(scratch, 'manager.log'), 'utf8')).slice(-3000)}`);
    });
  const touch = (name: string) =>
    custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: SITE_PLURAL,
        namespace: ns,
        name,
        body: { metadata: { annotations: { [SITE_CHANGED_ANNOTATION]: new Date().toISOString() } } },
      },
      MERGE,
    );
  /** A job that ran attempt 1 and succeeded, as the manager records it, with its output in storage. */
  const succeededJob = (site: string, base: string, output: Buffer, spec: Record<string, unknown> = {}): Promise<PagewrightJob> =>
    writeSucceededJob(
      { custom, storage: storage.admin, manager },
      { namespace: ns, name: randomName('ran'), site, base, output, files: ['index.html'], spec },
    );

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'sites');
    const kc = cp.kubeConfig();
    custom = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    storage = await startTestStorage();
    scratch = await mkdtemp(join(tmpdir(), 'pw-sites-'));
    const serving = await cp.pki.server('webhook-receiver', 'receiver', { ips: ['127.0.0.1'], dns: ['localhost'] });
    receiver = await WebhookReceiver.https(
      { cert: await readFile(serving.cert, 'utf8'), key: await readFile(serving.key, 'utf8') },
      '127.0.0.1',
    );
    const logPath = join(scratch, 'manager.log');
    manager = await startManagerProcess({
      kubeconfigPath: cp.kubeconfigPath,
      namespace: ns,
      host: '127.0.0.1',
      port: await getFreePort(),
      owner: selfOwner(),
      storage: { url: storage.url, adminToken: storage.adminToken, tokenSecret: storage.tokenSecret },
      gateway: { url: 'http://127.0.0.1:9/v1', secret: randomBytes(32).toString('hex'), reportToken: randomBytes(16).toString('hex') },
      runnerImage: 'pagewright-runner:0.1.0',
      log: createWriteStream(logPath, { flags: 'a' }),
      logPath,
      // the receiver is on loopback, which a webhook may reach only where the cluster allows it
      env: { PAGEWRIGHT_WEBHOOK_ALLOWED_CIDRS: '127.0.0.0/8', PAGEWRIGHT_WEBHOOK_CA_FILE: cp.pki.caCert, PAGEWRIGHT_RESYNC_SECONDS: '30' },
    });
  });
  after(async () => {
    await manager?.kill('SIGKILL');
    await receiver?.close();
    await storage?.close();
    await cp?.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('adopts a site storage already has: its status shows the current version, who made it current and its history', async () => {
    const v1 = await storage.admin.putSiteArtifact('adopted', await archive('one'), { by: 'alice' });
    const out = await storage.admin.putJobObject('job-uid-1', 'output.tar.gz', await archive('two'));
    await storage.admin.publish('adopted', 'job-uid-1', v1.version, out.version, { by: 'holiday-hours' });
    await createSiteIfAbsent(custom, ns, 'adopted');
    const site = await until('the mirror', async () => {
      const s = await getSite('adopted');
      return s.status.currentVersion === out.version ? s : null;
    });
    expect(site.status).to.deep.include({ currentVersionShort: out.version.slice(0, 12), publishedBy: 'holiday-hours', versions: 2 });
    expect(site.status.history?.map((h) => [h.sequence, h.action, h.job ?? null, h.user ?? null])).to.deep.equal([
      [2, 'published', 'holiday-hours', null],
      [1, 'pushed', null, 'alice'],
    ]);
    expect(site.status.conditions?.find((c) => c.type === 'Ready')).to.deep.include({ status: 'True', reason: 'HasVersion' });
    const table = await cp.kubectl(['-n', ns, 'get', 'pws', 'adopted']);
    expect(table.stdout)
      .to.match(/NAME\s+CURRENT\s+PUBLISHED-BY\s+VERSIONS\s+AGE/)
      .and.to.match(new RegExp(`adopted\\s+${out.version.slice(0, 12)}\\s+holiday-hours\\s+2\\s`));
  });

  it('a site without a version says so, and shows the version pushed next as soon as the site is touched', async () => {
    await createSiteIfAbsent(custom, ns, 'fresh');
    const empty = await until('Ready False', async () => {
      const s = await getSite('fresh');
      return s.status.conditions?.find((c) => c.type === 'Ready' && c.status === 'False') ? s : null;
    });
    expect(empty.status.conditions?.find((c) => c.type === 'Ready')).to.deep.include({ reason: 'NoVersion' });
    const v = await storage.admin.putSiteArtifact('fresh', await archive('hello'), { by: 'bob' });
    await touch('fresh');
    const mirrored = await until('the push mirrored', async () => {
      const s = await getSite('fresh');
      return s.status.currentVersion === v.version ? s : null;
    });
    expect(mirrored.status).to.deep.include({ publishedBy: 'bob', versions: 1 });
  });

  it('a job whose site has no PagewrightSite fails SiteNotFound at admission, with an Event, and starts no pod', async () => {
    const name = randomName('nosite');
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightJob', metadata: { name }, spec: { siteId: 'no-such-site', prompt: 'x' } },
    });
    const failed = await until('Failed', async () => {
      const j = await getJob(name);
      return j.status.phase === 'Failed' ? j : null;
    });
    expect(failed.status).to.deep.include({ reason: 'SiteNotFound', attempt: 0 });
    expect(failed.status.message).to.match(/no PagewrightSite no-such-site in namespace/);
    expect(
      (await core.listNamespacedPod({ namespace: ns, labelSelector: `pagewright.dev/job=${failed.metadata.uid}` })).items,
    ).to.deep.equal([]);
    expect(await eventsAbout((args) => cp.kubectl(args), ns, name, 'message')).to.match(/SiteNotFound/);
  });

  it('approval after the fact: spec.publish on a Succeeded job publishes it, compare-and-swap on its base; a stale one is refused and stays Succeeded', async () => {
    await createSiteIfAbsent(custom, ns, 'shop');
    const base = await storage.admin.putSiteArtifact('shop', await archive('base'));
    const first = await succeededJob('shop', base.version, await archive('first edit'));
    const second = await succeededJob('shop', base.version, await archive('second edit'));
    await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name: first.metadata.name, body: { spec: { publish: true } } },
      MERGE,
    );
    const published = await until('Published True', async () => {
      const j = await getJob(first.metadata.name);
      return j.status.conditions?.find((c) => c.type === 'Published' && c.status === 'True') ? j : null;
    });
    expect(published.status).to.deep.include({ phase: 'Succeeded', publishedVersion: first.status.outputVersion });
    expect((await storage.admin.getSite('shop')).history[0]).to.deep.include({ action: 'published', by: first.metadata.name });
    await until('the site shows it', async () => (await getSite('shop')).status.publishedBy === first.metadata.name);
    // the second edited the same base: the site moved on
    await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name: second.metadata.name, body: { spec: { publish: true } } },
      MERGE,
    );
    const refused = await until('Published False', async () => {
      const j = await getJob(second.metadata.name);
      return j.status.conditions?.find((c) => c.type === 'Published' && c.status === 'False') ? j : null;
    });
    expect(refused.status.phase).to.equal('Succeeded');
    expect(refused.status.publishedVersion).to.equal(undefined);
    expect(refused.status.conditions?.find((c) => c.type === 'Published')).to.deep.include({ reason: 'PublishConflict' });
    expect((await storage.admin.getSite('shop')).version, 'nothing changed by the refusal').to.equal(first.status.outputVersion);
  });

  it("a site's webhook gets each event once, a CloudEvent signed with the key in the Secret the manager made for the site", async () => {
    receiver.reset();
    const url = `https://127.0.0.1:${receiver.port}/hooks/pagewright`;
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: SITE_PLURAL,
      namespace: ns,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightSite', metadata: { name: 'hooked' }, spec: { webhook: { url } } },
    });
    // the signing key, as the site's user reads it
    const secretName = await until('the webhook Secret named', async () => (await getSite('hooked')).status.webhookSecret);
    expect(secretName).to.equal('hooked-webhook');
    const secret = await core.readNamespacedSecret({ namespace: ns, name: secretName });
    const key = Buffer.from(secret.data?.secret ?? '', 'base64').toString();
    expect(key).to.match(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(secret.metadata?.ownerReferences?.[0]).to.deep.include({ kind: 'PagewrightSite', name: 'hooked' });

    const v1 = await storage.admin.putSiteArtifact('hooked', await archive('v1'), { by: 'carol' });
    await touch('hooked');
    const job = await succeededJob('hooked', v1.version, await archive('v2'), {});
    await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name: job.metadata.name, body: { spec: { publish: true } } },
      MERGE,
    );
    const got = await receiver.waitForRequests(3, 30_000);
    // and nothing more arrives (each event once), through a resync
    await new Promise((r) => setTimeout(r, 2000));
    const events = got.map((r) => {
      expect(verifyStandardWebhook(key, r.headers, r.body), 'signature').to.equal(true);
      return HTTP.toEvent({ headers: r.headers, body: r.body }) as { type: string; id: string; data: Record<string, unknown> };
    });
    expect(events.map((e) => e.type).sort()).to.deep.equal([
      'dev.pagewright.job.succeeded',
      'dev.pagewright.site.published',
      'dev.pagewright.site.pushed',
    ]);
    expect(new Set(events.map((e) => e.id)).size, 'distinct ids').to.equal(3);
    expect(receiver.received).to.have.length(3);
    const pushed = events.find((e) => e.type === 'dev.pagewright.site.pushed')!;
    expect(pushed.data).to.deep.include({ site: 'hooked', namespace: ns, version: v1.version });
    expect(String((pushed.data.fetch as { command: string }).command)).to.contain(`pagewright sites pull hooked --version ${v1.version}`);
    await until('delivery recorded', async () => ((await getSite('hooked')).status.webhook?.deliveredThrough ?? 0) >= 2);
  });
});
