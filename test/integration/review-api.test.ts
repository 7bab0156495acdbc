/**
 * The review API as users reach it: through the real kube-apiserver's aggregation layer, with
 * their own client certificates, under the RBAC of deploy/k8s/user-roles.yaml, in front of
 * real storage. The review server (preview/review-api.ts) runs here, registered as the
 * aggregated API review.pagewright.dev (test/support/aggregated-api.ts); it authenticates the
 * apiserver's front proxy and asks the apiserver about each object (SubjectAccessReview).
 *
 * Played as the attacker too: a user without the role, a viewer who tries to write, and a
 * caller who bypasses the apiserver and names a user in the X-Remote-User header itself, with
 * no certificate, with a certificate of the cluster CA, and with one of the front-proxy CA but
 * a name the apiserver does not use. Pushed archives a runner would refuse are refused before
 * storage keeps anything.
 *
 * The previews and review pages are served by the same server (preview/app.ts) and tested
 * with it in their own suites.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AuthorizationV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { expect } from 'chai';
import { Agent, request } from 'undici';
import { DEFAULT_ARCHIVE_LIMITS } from '../../common/archive-rules.js';
import { silentLogger } from '../../common/logger.js';
import { createTimedServer } from '../../common/server-timeouts.js';
import { SITE_CHANGED_ANNOTATION } from '../../common/site-resource.js';
import { AccessReviewer } from '../../preview/access-review.js';
import { API_ROOT } from '../../preview/discovery.js';
import { loadRequestHeaderConfig } from '../../preview/front-proxy.js';
import { createReviewApi } from '../../preview/review-api.js';
import { KubeSiteDirectory } from '../../preview/site-directory.js';
import { packDirectory } from '../../runner/archive.js';
import { hostAddress, registerAggregatedApi } from '../support/aggregated-api.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { ensureCrd } from '../support/manager-env.js';
import { type KeyPair, Pki } from '../support/pki.js';
import { EXAMPLE_SITE, REPO_ROOT } from '../support/sites.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

interface User {
  name: string;
  agent: Agent;
  kubeconfig: string;
}

describe('review API through the kube-apiserver (aggregation layer, RBAC, front-proxy authentication)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let ns: string;
  let storage: TestStorage;
  let server: Server;
  let serverUrl: string;
  let scratch: string;
  let unregister: () => Promise<void>;
  let siteArchive: Buffer;
  const users: Record<'alice' | 'bob' | 'eve', User> = {} as never;

  const api = (path: string) => `${cp.server}${API_ROOT}/namespaces/${ns}${path}`;
  async function call(
    who: User,
    method: 'GET' | 'POST',
    path: string,
    body?: Buffer | string | Readable,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: Buffer; json: { reason?: string; message?: string; version?: string } }> {
    const res = await request(api(path), { method, dispatcher: who.agent, body, headers });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    let json = {};
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      // bytes
    }
    return { status: res.statusCode, body: bytes, json };
  }
  const push = (who: User, site: string, archive: Buffer, headers: Record<string, string> = {}) =>
    call(who, 'POST', `/sites/${site}/versions`, archive, { 'content-type': 'application/gzip', ...headers });
  const kubectlAs = (who: User, args: string[], input?: string) =>
    cp.kubectl(['--kubeconfig', who.kubeconfig, '-n', ns, ...args], { allowFailure: true, ...(input ? { input } : {}) });
  const createSite = async (who: User, name: string) =>
    kubectlAs(who, ['apply', '-f', '-'], `apiVersion: pagewright.dev/v1alpha1\nkind: PagewrightSite\nmetadata: {name: ${name}}\n`);

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'review-api');
    scratch = await mkdtemp(join(tmpdir(), 'pw-review-api-'));
    storage = await startTestStorage();
    await packDirectory(EXAMPLE_SITE, join(scratch, 'site.tar.gz'));
    siteArchive = await readFile(join(scratch, 'site.tar.gz'));

    // the users, with client certificates of the cluster CA, and what deploy/k8s grants them
    await cp.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/k8s/user-roles.yaml')]);
    await cp.kubectl(['-n', ns, 'create', 'rolebinding', 'alice-edit', '--clusterrole=pagewright-edit', '--user=alice']);
    await cp.kubectl(['-n', ns, 'create', 'rolebinding', 'bob-view', '--clusterrole=pagewright-view', '--user=bob']);
    for (const name of ['alice', 'bob', 'eve'] as const) {
      const identity = await cp.pki.client(`user-${name}`, `/CN=${name}`);
      const kubeconfig = await cp.pki.kubeconfig(join(scratch, `${name}.kubeconfig`), cp.server, identity, ns);
      users[name] = { name, kubeconfig, agent: await agentFor(cp.pki.caCert, identity) };
    }

    // the review server, as preview/main.ts runs it: TLS, the front proxy's CA from the cluster
    const kc = cp.kubeConfig();
    const requestHeader = await loadRequestHeaderConfig(kc.makeApiClient(CoreV1Api));
    const address = hostAddress();
    const serving = await cp.pki.server('review-api', 'pagewright-preview', {
      ips: [address],
      dns: [`pagewright-preview.${ns}.svc`],
    });
    const app = createReviewApi({
      requestHeader: () => requestHeader,
      access: new AccessReviewer(kc.makeApiClient(AuthorizationV1Api)),
      storage: storage.admin,
      sites: new KubeSiteDirectory(kc.makeApiClient(CustomObjectsApi)),
      limits: { maxArtifactBytes: 8 * 1024 * 1024, archive: { ...DEFAULT_ARCHIVE_LIMITS, maxEntries: 50 } },
      scratchDir: scratch,
      logger: silentLogger,
    });
    server = createTimedServer(
      app,
      { headersMs: 10_000, requestMs: 60_000, keepAliveMs: 5_000 },
      {
        key: await readFile(serving.key),
        cert: await readFile(serving.cert),
        ca: requestHeader.clientCa,
        requestCert: true,
        rejectUnauthorized: false,
      },
    );
    server.listen(0, address);
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    serverUrl = `https://${address}:${port}`;
    unregister = await registerAggregatedApi(cp, {
      group: 'review.pagewright.dev',
      version: 'v1alpha1',
      namespace: ns,
      service: 'pagewright-preview',
      address,
      port,
      caBundle: await readFile(cp.pki.caCert),
    });
  });
  after(async () => {
    await unregister?.();
    server?.closeAllConnections();
    server?.close();
    await storage?.close();
    await cp?.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('is discovered through the apiserver: kubectl api-versions lists it, its resource list names the subresources', async () => {
    const versions = await kubectlAs(users.alice, ['api-versions']);
    expect(versions.stdout.split('\n')).to.include('review.pagewright.dev/v1alpha1');
    const list = JSON.parse((await kubectlAs(users.bob, ['get', '--raw', API_ROOT])).stdout) as { resources: Array<{ name: string }> };
    expect(list.resources.map((r) => r.name)).to.include.members(['sites/versions', 'sites/rollback', 'jobs/diff', 'jobs/review']);
  });

  it('an editor pushes a version with her own certificate: stored, recorded as hers, the site touched for the manager', async () => {
    expect((await createSite(users.alice, 'bakery')).code).to.equal(0);
    const pushed = await push(users.alice, 'bakery', siteArchive);
    expect(pushed.status, pushed.body.toString()).to.equal(201);
    const site = await storage.admin.getSite('bakery');
    expect(site.version).to.equal(pushed.json.version);
    expect(site.history[0]).to.deep.include({ action: 'pushed', by: 'alice', seq: 1 });
    const touched = await kubectlAs(users.bob, [
      'get',
      'pws',
      'bakery',
      '-o',
      `jsonpath={.metadata.annotations.pagewright\\.dev/storage-changed-at}`,
    ]);
    expect(touched.stdout, SITE_CHANGED_ANNOTATION).to.match(/^\d{4}-\d\d-\d\dT/);
    // If-Match: a push from an out-of-date copy is refused
    const stale = await push(users.alice, 'bakery', siteArchive, { 'if-match': `"${'0'.repeat(64)}"` });
    expect([stale.status, stale.json.reason]).to.deep.equal([412, 'PreconditionFailed']);
  });

  it('a viewer pulls and may not push or roll back; a user without a role may do nothing; a site without its object is not found', async () => {
    await createSite(users.alice, 'cafe');
    expect((await push(users.alice, 'cafe', siteArchive)).status).to.equal(201);
    const pulled = await call(users.bob, 'GET', '/sites/cafe/versions/current');
    expect(pulled.status).to.equal(200);
    expect(pulled.body.equals(siteArchive)).to.equal(true);
    // the apiserver refuses what RBAC does not grant on review.pagewright.dev before it proxies
    const bobPush = await push(users.bob, 'cafe', siteArchive);
    expect(bobPush.status).to.equal(403);
    expect((await call(users.bob, 'POST', '/sites/cafe/rollback', '{}', { 'content-type': 'application/json' })).status).to.equal(403);
    for (const path of ['/sites/cafe/versions/current', '/jobs/any/diff', '/jobs/any/review'])
      expect((await call(users.eve, 'GET', path)).status, path).to.equal(403);
    expect((await push(users.eve, 'cafe', siteArchive)).status).to.equal(403);
    expect((await kubectlAs(users.eve, ['get', 'pws'])).code, 'eve sees no sites either').to.not.equal(0);
    // in storage, but no PagewrightSite: the API serves only sites that are objects
    await storage.admin.putSiteArtifact('ghost', siteArchive);
    const ghost = await call(users.alice, 'GET', '/sites/ghost/versions/current');
    expect([ghost.status, ghost.json.reason]).to.deep.equal([404, 'SiteNotFound']);
    expect((await storage.admin.getSite('cafe')).history).to.have.length(1);
  });

  it('refuses a pushed archive a runner could not unpack, with the unpack reason, before storage keeps it', async () => {
    await createSite(users.alice, 'shady');
    const cases: Array<[string, Buffer, number, string, RegExp]> = [
      [
        'a link leaving the site',
        await forgeTarGzBuffer([{ path: 'etc', type: 'symlink', linkpath: '/etc' }]),
        422,
        'UnsafeArchive',
        /"etc": symlink to absolute path \/etc leaves the site/,
      ],
      [
        'a device',
        await forgeTarGzBuffer([{ path: 'dev-null', type: 'chardev' }]),
        422,
        'UnsafeArchive',
        /entry type CharacterDevice is not allowed/,
      ],
      ['a path climbing out', await forgeTarGzBuffer([{ path: '../outside.html', content: 'x' }]), 422, 'UnsafeArchive', /climbs out/],
      [
        'more entries than unpack takes',
        await forgeTarGzBuffer(Array.from({ length: 60 }, (_, i) => ({ path: `f${i}`, content: 'x' }))),
        422,
        'UnsafeArchive',
        /more than 50 entries/,
      ],
      ['not a gzip tar at all', Buffer.from('just some bytes'), 422, 'UnsafeArchive', /site archive is/],
    ];
    for (const [what, archive, status, reason, message] of cases) {
      const res = await push(users.alice, 'shady', archive);
      expect([res.status, res.json.reason], what).to.deep.equal([status, reason]);
      expect(res.json.message, what).to.match(message);
    }
    // a race (our answer against the apiserver's write): 20 tries made the old close-at-once fail here every time
    for (let i = 0; i < 20; i++) {
      const tooLarge = await push(users.alice, 'shady', Buffer.alloc(9 * 1024 * 1024));
      expect([tooLarge.status, tooLarge.json.reason], `try ${i}`).to.deep.equal([413, 'PayloadTooLarge']);
    }
    // without a Content-Length the limit is met while reading; still 413 through the apiserver's proxy, not its 503
    const megabytes = async function* () {
      for (let i = 0; i < 9; i++) yield Buffer.alloc(1024 * 1024, i);
    };
    const chunked = await call(users.alice, 'POST', '/sites/shady/versions', Readable.from(megabytes()), {
      'content-type': 'application/gzip',
    });
    expect([chunked.status, chunked.json.reason]).to.deep.equal([413, 'PayloadTooLarge']);
    const none = await storage.admin.getSite('shady').catch((e: { code: string }) => e.code);
    expect(none, 'storage kept nothing').to.equal('SiteNotFound');
  });

  it('rolls back to the version before the current one, or to a named one, compare-and-swap safe, recorded as the user', async () => {
    await createSite(users.alice, 'deli');
    const v1 = (await push(users.alice, 'deli', siteArchive)).json.version!;
    const v2 = (await push(users.alice, 'deli', await forgeTarGzBuffer([{ path: 'index.html', content: 'v2' }]))).json.version!;
    const back = await call(users.alice, 'POST', '/sites/deli/rollback', '{}', { 'content-type': 'application/json' });
    expect(back.status, back.body.toString()).to.equal(200);
    expect(back.json).to.deep.equal({ version: v1, previousVersion: v2 });
    expect((await storage.admin.getSite('deli')).history[0]).to.deep.include({ action: 'rolled_back', by: 'alice', version: v1 });
    const forward = await call(users.alice, 'POST', '/sites/deli/rollback', JSON.stringify({ to: v2 }), {
      'content-type': 'application/json',
    });
    expect(forward.json.version).to.equal(v2);
    const unknown = await call(users.alice, 'POST', '/sites/deli/rollback', JSON.stringify({ to: 'a'.repeat(64) }), {
      'content-type': 'application/json',
    });
    expect([unknown.status, unknown.json.reason]).to.deep.equal([404, 'VersionNotFound']);
    const stale = await call(users.alice, 'POST', '/sites/deli/rollback', JSON.stringify({ to: v1, ifMatch: v1 }), {
      'content-type': 'application/json',
    });
    expect([stale.status, stale.json.reason]).to.deep.equal([412, 'PreconditionFailed']);
    expect((await storage.admin.getSite('deli')).version, 'nothing changed by the refusals').to.equal(v2);
  });

  it('believes no one but the front proxy: a forged X-Remote-User without its certificate is 401', async () => {
    await createSite(users.alice, 'vault');
    const direct = async (identity: KeyPair | null, user = 'alice') => {
      const agent = new Agent({
        connect: {
          rejectUnauthorized: false,
          ...(identity ? { cert: await readFile(identity.cert), key: await readFile(identity.key) } : {}),
        },
      });
      try {
        const res = await request(`${serverUrl}${API_ROOT}/namespaces/${ns}/sites/vault/versions`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'x-remote-user': user, 'x-remote-group': 'system:masters', 'content-type': 'application/gzip' },
          body: siteArchive,
        });
        return { status: res.statusCode, json: (await res.body.json()) as { reason?: string } };
      } finally {
        await agent.close();
      }
    };
    expect(await direct(null)).to.deep.include({ status: 401 });
    // a valid certificate of the cluster's CA is not the front proxy's
    const clusterCert = await cp.pki.client('not-the-proxy', '/CN=front-proxy-client');
    expect(await direct(clusterCert)).to.deep.include({ status: 401 });
    // the front proxy's CA, but not a name the apiserver's --requestheader-allowed-names lists
    const frontProxyCa = Pki.open(join(cp.dir, 'front-proxy'));
    const otherName = await frontProxyCa.client('impostor', '/CN=impostor');
    const refused = await direct(otherName);
    expect([refused.status, refused.json.reason]).to.deep.equal([401, 'Unauthorized']);
    expect(await storage.admin.getSite('vault').catch((e: { code: string }) => e.code)).to.equal('SiteNotFound');
  });
});

async function agentFor(ca: string, identity: KeyPair): Promise<Agent> {
  return new Agent({ connect: { ca: await readFile(ca), cert: await readFile(identity.cert), key: await readFile(identity.key) } });
}
