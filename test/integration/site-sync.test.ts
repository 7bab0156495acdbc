/**
 * Sites from and to where they live, with the real manager (manager/main.ts as a process) on
 * the real apiserver, in front of real storage, a real git server (git http-backend:
 * test/support/git-server.ts) and SeaweedFS:
 *   - spec.source.git: a job's admission imports the tree at the ref as the site's current
 *     version (once per commit), and a hostile source fails the job with the reason;
 *   - spec.targets: every change of the current version becomes one commit on the target
 *     branch (a moved branch is PublishConflict, retried, never force-pushed) and a bucket sync;
 *   - credentials only from a Secret annotated for the site.
 * The API-only control plane has no kubelet: a job's pod is made but never runs, which is all
 * admission needs (the import happens before the pod).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { expect } from 'chai';
import { list } from 'tar';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../../common/job-resource.js';
import { PagewrightSite, SITE_CHANGED_ANNOTATION, SITE_PLURAL } from '../../common/site-resource.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { type GitServer, git, startGitServer } from '../support/git-server.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { type ManagerProcess, startManagerProcess } from '../support/manager-process.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';
import { type SeaweedFs, s3Client, startSeaweedFs } from '../support/seaweedfs.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('sites from git and to git and buckets, with the real manager', function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let ns: string;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let storage: TestStorage;
  let manager: ManagerProcess;
  let gitServer: GitServer;
  let weed: SeaweedFs;
  let bucket: S3Client;
  let scratch: string;

  const getSite = async (name: string) =>
    PagewrightSite.parse(
      await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: SITE_PLURAL, namespace: ns, name }),
    );
  const getJob = async (name: string) =>
    PagewrightJob.parse(await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name }));
  const until = <T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 60_000) =>
    waitFor(what, probe, ms, 200).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${(await readFile(join(scratch, 'manager.log'), 'utf8')).slice(-4000)}`);
    });
  const createSite = (name: string, spec: Record<string, unknown>) =>
    custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: SITE_PLURAL,
      namespace: ns,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightSite', metadata: { name }, spec },
    });
  const createJob = async (site: string) => {
    const name = randomName('job');
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PagewrightJob', metadata: { name }, spec: { siteId: site, prompt: 'x' } },
    });
    return name;
  };
  const cancel = (job: string) =>
    custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, name: job, body: { spec: { cancel: true } } },
      MERGE,
    );
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
  const secret = (name: string, data: Record<string, string>, sites?: string) =>
    core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name, ...(sites ? { annotations: { 'pagewright.dev/sites': sites } } : {}) }, stringData: data },
    });
  const filesOf = async (archive: Buffer): Promise<string[]> => {
    const dir = await mkdtemp(join(scratch, 'a-'));
    const path = join(dir, 'a.tar.gz');
    await (await import('node:fs/promises')).writeFile(path, archive);
    const out: string[] = [];
    await list({ file: path, onReadEntry: (e) => void out.push(e.path) });
    return out.sort();
  };
  const currentFiles = async (site: string) => {
    const d = await storage.admin.downloadArtifact(site);
    return filesOf(Buffer.from(await d.body.arrayBuffer()));
  };
  const gitOut = async (repo: string, args: string[]) => (await git(['--git-dir', join(gitServer.root, `${repo}.git`), ...args])).stdout;

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'site-sync');
    const kc = cp.kubeConfig();
    custom = kc.makeApiClient(CustomObjectsApi);
    core = kc.makeApiClient(CoreV1Api);
    storage = await startTestStorage();
    gitServer = await startGitServer({ users: { bot: 'token-1' } });
    weed = await startSeaweedFs();
    bucket = s3Client(weed, weed);
    await bucket.send(new CreateBucketCommand({ Bucket: 'www' }));
    scratch = await mkdtemp(join(tmpdir(), 'pw-site-sync-'));
    await secret('git-bot', { username: 'bot', password: 'token-1' }, 'shop,shop-target,hostile-sub,hostile-link, mirror');
    await secret('bucket-creds', { accessKeyId: weed.accessKeyId, secretAccessKey: weed.secretAccessKey }, '*');
    await secret('not-for-sites', { username: 'bot', password: 'token-1' });
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
      // the git server and SeaweedFS are on loopback over http: allowed here only, as a cluster operator would for in-cluster servers
      env: {
        PAGEWRIGHT_SITE_ALLOW_HTTP: 'true',
        PAGEWRIGHT_SITE_ALLOWED_CIDRS: '127.0.0.0/8',
        PAGEWRIGHT_SITE_SCRATCH_DIR: scratch,
        PAGEWRIGHT_SITE_EXPORT_BACKOFF_SECONDS: '0.5',
        PAGEWRIGHT_RESYNC_SECONDS: '30',
      },
    });
  });
  after(async () => {
    await manager?.kill('SIGKILL');
    await storage?.close();
    await gitServer?.close();
    bucket?.destroy();
    await weed?.stop();
    await cp?.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("imports the source's tree at its ref as the job's base, once per commit, recorded as pushed by git", async () => {
    const url = await gitServer.createRepo('shop');
    const c1 = await gitServer.commit('shop', 'main', { 'site/index.html': '<h1>one</h1>', 'README.md': 'repo only' });
    await createSite('shop', { source: { git: { url, ref: 'main', path: 'site', credentialsSecret: 'git-bot' } } });
    const job1 = await createJob('shop');
    const site = await until('the import', async () => {
      const s = await getSite('shop');
      return s.status.source?.commit === c1 ? s : null;
    });
    expect(await currentFiles('shop')).to.deep.equal(['index.html']);
    expect(site.status.source?.version).to.equal((await storage.admin.getSite('shop')).version);
    expect((await storage.admin.getSite('shop')).history[0]).to.deep.include({ action: 'pushed', by: `git ${c1.slice(0, 12)}` });
    expect((await getJob(job1)).status.phase).to.be.oneOf(['Scheduled', 'Running']);
    await cancel(job1);
    await until('job 1 cancelled', async () => (await getJob(job1)).status.phase === 'Cancelled');
    // the same commit again: nothing new in storage
    const job2 = await createJob('shop');
    await until('job 2 scheduled', async () => (await getJob(job2)).status.phase === 'Scheduled');
    expect((await storage.admin.getSite('shop')).history).to.have.length(1);
    await cancel(job2);
    await until('job 2 cancelled', async () => (await getJob(job2)).status.phase === 'Cancelled');
    // the branch moved: the next job's base is the new tree
    const c2 = await gitServer.commit('shop', 'main', { 'site/index.html': '<h1>two</h1>', 'site/menu.html': 'menu' });
    const job3 = await createJob('shop');
    await until('the second import', async () => (await getSite('shop')).status.source?.commit === c2);
    expect(await currentFiles('shop')).to.deep.equal(['index.html', 'menu.html']);
    expect((await storage.admin.getSite('shop')).history).to.have.length(2);
    await cancel(job3);
  });

  it('fails a job whose source is hostile or not allowed, with the reason: submodule, link out, unannotated Secret, metadata address', async () => {
    const url = await gitServer.createRepo('hostile');
    await gitServer.commit('hostile', 'sub', { 'index.html': 'x', theme: { gitlink: 'b'.repeat(40) } });
    await gitServer.commit('hostile', 'link', { 'index.html': 'x', 'keys.html': { symlink: '../../../../root/.ssh/id_rsa' } });
    const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
      ['hostile-sub', { url, ref: 'sub', credentialsSecret: 'git-bot' }, 'UnsafeSource', /"theme" is a submodule/],
      ['hostile-link', { url, ref: 'link', credentialsSecret: 'git-bot' }, 'UnsafeSource', /keys\.html.*\.\./],
      [
        'hostile-secret',
        { url, ref: 'sub', credentialsSecret: 'not-for-sites' },
        'SourceNotAllowed',
        /annotation pagewright.dev\/sites must list "hostile-secret"/,
      ],
      ['hostile-meta', { url: 'http://169.254.169.254/latest/meta-data.git', ref: 'main' }, 'SourceNotAllowed', /metadata/],
    ];
    for (const [name, src] of cases) await createSite(name, { source: { git: src } });
    const jobs = await Promise.all(cases.map(([name]) => createJob(name)));
    for (const [i, [name, , reason, message]] of cases.entries()) {
      const job = await until(`${name} failed`, async () => {
        const j = await getJob(jobs[i]!);
        return j.status.phase === 'Failed' ? j : null;
      });
      expect(job.status.reason, name).to.equal(reason);
      expect(job.status.message, name).to.match(message);
      expect(await storage.admin.getSite(name).catch((e: { code: string }) => e.code), `${name}: storage kept nothing`).to.equal(
        'SiteNotFound',
      );
    }
    // and the API server refuses what is not an http(s) URL before the manager sees it
    const file = await createSite('hostile-file', {
      source: { git: { url: 'file:///var/run/secrets/kubernetes.io/serviceaccount' } },
    }).catch((e: { code?: number; body?: string }) => e);
    expect((file as { code?: number }).code).to.equal(422);
  });

  it('exports every change as one commit on the target branch, under its path, and a rollback too; on top of a hand-made commit, never over it', async () => {
    const url = await gitServer.createRepo('published');
    const base = await gitServer.commit('published', 'main', { 'README.md': 'docs repo', 'www/old.html': 'old' });
    await createSite('shop-target', {
      targets: [
        {
          name: 'pages',
          git: {
            url,
            branch: 'main',
            path: 'www',
            credentialsSecret: 'git-bot',
            author: { name: 'Pagewright Bot', email: 'bot@example.com' },
          },
        },
      ],
    });
    const v1 = await storage.admin.putSiteArtifact('shop-target', await forgeTarGzBuffer([{ path: 'index.html', content: 'v1' }]), {
      by: 'alice',
    });
    await touch('shop-target');
    const first = await until('the first export', async () => {
      const t = (await getSite('shop-target')).status.targets?.[0];
      return t?.version === v1.version ? t : null;
    });
    expect(first).to.deep.include({ name: 'pages', exportedThrough: 1 });
    expect(await gitOut('published', ['rev-parse', 'main'])).to.equal(`${first.commit}\n`);
    expect(await gitOut('published', ['rev-parse', 'main^'])).to.equal(`${base}\n`);
    expect((await gitOut('published', ['ls-tree', '-r', '--name-only', 'main'])).split('\n').filter(Boolean).sort()).to.deep.equal([
      'README.md',
      'www/index.html',
    ]);
    const message = await gitOut('published', ['log', '-1', '--format=%an <%ae>%n%B', 'main']);
    expect(message).to.match(/^Pagewright Bot <bot@example.com>\nPagewright: push [0-9a-f]{12} \(user alice\)/);
    expect(message).to.include('Pagewright-Sequence: 1');

    const v2 = await storage.admin.putSiteArtifact('shop-target', await forgeTarGzBuffer([{ path: 'index.html', content: 'v2' }]), {
      by: 'alice',
      ifMatch: v1.version,
    });
    await storage.admin.rollBack('shop-target', v1.version, v2.version, 'bob');
    await touch('shop-target');
    await until('two more commits', async () => (await getSite('shop-target')).status.targets?.[0]?.exportedThrough === 3);
    expect((await gitOut('published', ['log', '--format=%s', 'main'])).split('\n').filter(Boolean)).to.have.length(4);
    expect(await gitOut('published', ['show', 'main:www/index.html'])).to.equal('v1');
    expect(await gitOut('published', ['show', 'main^:www/index.html'])).to.equal('v2');
    expect(await gitOut('published', ['log', '-1', '--format=%s', 'main'])).to.match(/^Pagewright: roll back to [0-9a-f]{12} \(user bob\)/);

    // someone commits to the branch by hand, and the server refuses non-fast-forwards: the next
    // export builds on their commit (fetched at each export), it does not overwrite it
    const tipBefore = (await gitOut('published', ['rev-parse', 'main'])).trim();
    await git(['--git-dir', join(gitServer.root, 'published.git'), 'config', 'receive.denyNonFastForwards', 'true']);
    const theirs = await gitServer.commit('published', 'main', { 'www/index.html': 'hand edit', 'README.md': 'docs repo' });
    const v3 = await storage.admin.putSiteArtifact('shop-target', await forgeTarGzBuffer([{ path: 'index.html', content: 'v3' }]), {
      by: 'alice',
      ifMatch: v1.version,
    });
    await touch('shop-target');
    await until(
      'the export on top of their commit',
      async () => (await getSite('shop-target')).status.targets?.[0]?.version === v3.version,
    );
    expect(await gitOut('published', ['rev-parse', 'main^'])).to.equal(`${theirs}\n`);
    expect(tipBefore).to.not.equal(theirs);
  });

  it('syncs every change to a bucket under its prefix: uploads, content types, deletes of removed files', async () => {
    await createSite('mirror', {
      targets: [
        {
          name: 'www',
          s3: { bucket: 'www', prefix: 'mirror', endpoint: weed.endpoint, region: weed.region, credentialsSecret: 'bucket-creds' },
        },
      ],
    });
    const v1 = await storage.admin.putSiteArtifact(
      'mirror',
      await forgeTarGzBuffer([
        { path: 'index.html', content: '<h1>one</h1>' },
        { path: 'css/site.css', content: 'body{}' },
        { path: 'old.html', content: 'old' },
      ]),
      { by: 'alice' },
    );
    await touch('mirror');
    await until('the first sync', async () => (await getSite('mirror')).status.targets?.[0]?.version === v1.version);
    const keys = async () =>
      ((await bucket.send(new ListObjectsV2Command({ Bucket: 'www', Prefix: 'mirror/' }))).Contents ?? []).map((o) => o.Key).sort();
    expect(await keys()).to.include.members(['mirror/index.html', 'mirror/css/site.css', 'mirror/old.html']);
    const page = await bucket.send(new GetObjectCommand({ Bucket: 'www', Key: 'mirror/index.html' }));
    expect(page.ContentType).to.match(/^text\/html/);
    expect(await page.Body?.transformToString()).to.equal('<h1>one</h1>');
    const v2 = await storage.admin.putSiteArtifact('mirror', await forgeTarGzBuffer([{ path: 'index.html', content: '<h1>two</h1>' }]), {
      by: 'alice',
      ifMatch: v1.version,
    });
    await touch('mirror');
    await until('the second sync', async () => (await getSite('mirror')).status.targets?.[0]?.version === v2.version);
    expect((await keys()).filter((k) => !k?.includes('.pagewright-manifest'))).to.deep.equal(['mirror/index.html']);
  });

  it('records a failed export and retries it: an unannotated Secret, then the fix', async () => {
    const url = await gitServer.createRepo('retry');
    await createSite('retry-target', { targets: [{ name: 'pages', git: { url, branch: 'main', credentialsSecret: 'not-for-sites' } }] });
    const v1 = await storage.admin.putSiteArtifact('retry-target', await forgeTarGzBuffer([{ path: 'index.html', content: 'r1' }]), {
      by: 'alice',
    });
    await touch('retry-target');
    const failed = await until('the failure recorded', async () => (await getSite('retry-target')).status.targets?.[0]?.lastError);
    expect(failed).to.deep.include({ code: 'TargetNotAllowed', sequence: 1 });
    expect(failed.message).to.match(/annotation pagewright.dev\/sites/);
    await core.patchNamespacedSecret(
      { namespace: ns, name: 'not-for-sites', body: { metadata: { annotations: { 'pagewright.dev/sites': 'retry-target' } } } },
      MERGE,
    );
    const done = await until('the retry lands', async () => {
      const t = (await getSite('retry-target')).status.targets?.[0];
      return t?.version === v1.version ? t : null;
    });
    expect(done.lastError).to.equal(undefined);
    expect(await gitOut('retry', ['show', 'main:index.html'])).to.equal('r1');
  });
});
