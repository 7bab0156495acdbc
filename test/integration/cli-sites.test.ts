/**
 * The `pagewright` CLI as a user runs it: the real command (cli/main.ts under tsx) as a child
 * process, with a kubeconfig holding only the user's client certificate and the RBAC of
 * deploy/k8s/user-roles.yaml, against the real kube-apiserver's aggregation layer, the real
 * review server with its previews (preview/review-api.ts, preview/app.ts) and real storage,
 * and the real manager (manager/main.ts), which mirrors sites into their status (list, history)
 * and answers approvals. No storage token is given to the CLI, nor anything but its kubeconfig.
 *
 * The API-only control plane has no kubelet: a job that "ran" gets its status and its output
 * written as the runner and the manager would have (as test/integration/site-controller.test.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorizationV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { expect } from 'chai';
import { DEFAULT_ARCHIVE_LIMITS } from '../../common/archive-rules.js';
import { GROUP, PLURAL, VERSION } from '../../common/job-resource.js';
import { silentLogger } from '../../common/logger.js';
import { createTimedServer } from '../../common/server-timeouts.js';
import { AccessReviewer } from '../../preview/access-review.js';
import { loadRequestHeaderConfig } from '../../preview/front-proxy.js';
import { PREVIEW_CSP } from '../../preview/headers.js';
import { KubeJobResolver } from '../../preview/resolvers.js';
import { createReviewApi } from '../../preview/review-api.js';
import { createPreviewApps } from '../../preview/server.js';
import { KubeSiteDirectory } from '../../preview/site-directory.js';
import { hostAddress, registerAggregatedApi } from '../support/aggregated-api.js';
import { type ControlPlane, createNamespace, sharedControlPlane } from '../support/control-plane.js';
import { selfOwner } from '../support/control-plane/owner.js';
import { ensureCrd, randomName } from '../support/manager-env.js';
import { type ManagerProcess, startManagerProcess } from '../support/manager-process.js';
import { getFreePort } from '../support/ports.js';
import { waitFor } from '../support/processes.js';
import { REPO_ROOT } from '../support/sites.js';
import { type TestStorage, startTestStorage } from '../support/storage.js';
import { writeSucceededJob } from '../support/succeeded-job.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('pagewright CLI against the review API (aggregation layer, RBAC, real storage and manager)', function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let ns: string;
  let storage: TestStorage;
  let server: Server;
  let manager: ManagerProcess;
  let scratch: string;
  let unregister: () => Promise<void>;
  let closePreviews: () => Promise<void>;
  let custom: CustomObjectsApi;
  const kubeconfigs: Record<'alice' | 'eve', string> = {} as never;
  const children: ChildProcess[] = [];

  /** Runs `pagewright ARGS` as `who`: only their kubeconfig (its context's namespace is the test's). */
  function cli(who: 'alice' | 'eve', args: string[], env: Record<string, string> = {}): Promise<Run> {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'cli', 'main.ts'), ...args], {
      env: { PATH: process.env.PATH, HOME: scratch, KUBECONFIG: kubeconfigs[who], ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    return once(proc, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  }
  const ok = async (who: 'alice' | 'eve', args: string[]) => {
    const r = await cli(who, args);
    expect(r.code, `pagewright ${args.join(' ')}: ${r.stderr}${r.stdout}`).to.equal(0);
    return r;
  };
  /** A failure: exit 1 and exactly one line on stderr. */
  const fails = async (who: 'alice' | 'eve', args: string[]) => {
    const r = await cli(who, args);
    expect(r.code, `pagewright ${args.join(' ')}: ${r.stdout}`).to.equal(1);
    expect(r.stderr.trimEnd().split('\n'), r.stderr).to.have.length(1);
    expect(r.stderr).to.match(/^error: /);
    return r.stderr.trim();
  };
  const until = <T>(what: string, probe: () => Promise<T | null | undefined | false>) =>
    waitFor(what, probe, 30_000, 200).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${(await readFile(join(scratch, 'manager.log'), 'utf8')).slice(-3000)}`);
    });
  async function tree(dir: string, files: Record<string, string>): Promise<string> {
    for (const [path, content] of Object.entries(files)) {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), content);
    }
    return dir;
  }
  async function readTree(dir: string, prefix = ''): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) Object.assign(out, await readTree(dir, rel));
      else out[rel] = await readFile(join(dir, rel), 'utf8');
    }
    return out;
  }
  const versionIn = (text: string) => /version ([a-f0-9]{64})/.exec(text)?.[1];

  /** A job that ran attempt 1 and succeeded, with its output (and a diff) in storage; the manager paused meanwhile. */
  async function succeededJob(site: string, base: string, files: Record<string, string>, diff?: string): Promise<string> {
    const name = randomName('ran');
    const output = await forgeTarGzBuffer(Object.entries(files).map(([path, content]) => ({ path, content })));
    await writeSucceededJob(
      { custom, storage: storage.admin, manager },
      { namespace: ns, name, site, base, output, files: Object.keys(files), diff },
    );
    return name;
  }

  before(async () => {
    cp = await sharedControlPlane();
    await ensureCrd(cp);
    ns = await createNamespace(cp, 'cli');
    scratch = await mkdtemp(join(tmpdir(), 'pw-cli-'));
    storage = await startTestStorage();
    const kc = cp.kubeConfig();
    custom = kc.makeApiClient(CustomObjectsApi);

    await cp.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/k8s/user-roles.yaml')]);
    await cp.kubectl(['-n', ns, 'create', 'rolebinding', 'alice-edit', '--clusterrole=pagewright-edit', '--user=alice']);
    for (const name of ['alice', 'eve'] as const) {
      const identity = await cp.pki.client(`cli-user-${name}`, `/CN=${name}`);
      kubeconfigs[name] = await cp.pki.kubeconfig(join(scratch, `${name}.kubeconfig`), cp.server, identity, ns);
    }

    // the preview service's review API, as preview/main.ts wires it (previews mounted)
    const sites = new KubeSiteDirectory(custom, storage.admin);
    const jobs = new KubeJobResolver(custom);
    const apps = createPreviewApps({
      storage: storage.admin,
      resolveJob: (namespace, name) => jobs.resolve(namespace, name),
      resolveSite: (namespace, name) => sites.reviewSite(namespace, name),
      cacheDir: join(scratch, 'cache'),
      cacheBytes: 64 * 1024 * 1024,
      logger: silentLogger,
    });
    closePreviews = () => apps.close();
    const requestHeader = await loadRequestHeaderConfig(kc.makeApiClient(CoreV1Api));
    const address = hostAddress();
    const serving = await cp.pki.server('cli-review-api', 'pagewright-preview', { ips: [address], dns: [`pagewright-preview.${ns}.svc`] });
    const app = createReviewApi({
      requestHeader: () => requestHeader,
      access: new AccessReviewer(kc.makeApiClient(AuthorizationV1Api)),
      storage: storage.admin,
      sites,
      previews: apps.router,
      limits: { maxArtifactBytes: 8 * 1024 * 1024, archive: DEFAULT_ARCHIVE_LIMITS },
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
    unregister = await registerAggregatedApi(cp, {
      group: 'review.pagewright.dev',
      version: 'v1alpha1',
      namespace: ns,
      service: 'pagewright-preview',
      address,
      port: (server.address() as AddressInfo).port,
      caBundle: await readFile(cp.pki.caCert),
    });

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
    });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await manager?.kill('SIGKILL');
    await unregister?.();
    server?.closeAllConnections();
    server?.close();
    await closePreviews?.();
    await storage?.close();
    await cp?.kubectl(['delete', 'namespace', ns, '--wait=false'], { allowFailure: true });
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('push, list, history, pull (the same files), rollback, history again: all as the user, recorded as hers', async () => {
    const v1dir = await tree(join(scratch, 'v1'), { 'index.html': '<h1>one</h1>\n', 'about/index.html': 'about\n' });
    const v2dir = await tree(join(scratch, 'v2'), { 'index.html': '<h1>two</h1>\n', 'about/index.html': 'about\n', 'news.html': 'news\n' });
    const v1 = versionIn((await ok('alice', ['sites', 'push', 'bakery', v1dir])).stdout)!;
    expect(v1, 'the first push prints its version').to.match(/^[a-f0-9]{64}$/);
    const v2 = versionIn((await ok('alice', ['sites', 'push', 'bakery', v2dir, '-n', ns])).stdout)!;
    expect((await storage.admin.getSite('bakery')).version).to.equal(v2);

    const listed = await until('the list to show both versions', async () => {
      const r = await ok('alice', ['sites', 'list']);
      return /bakery\s+[a-f0-9]{12}\s+alice\s+2\s/.test(r.stdout) ? r.stdout : null;
    });
    expect(listed)
      .to.match(/^NAME\s+CURRENT\s+PUBLISHED-BY\s+VERSIONS\s+AGE\n/)
      .and.to.contain(v2.slice(0, 12));
    const json = JSON.parse((await ok('alice', ['sites', 'list', '-o', 'json'])).stdout) as {
      items: Array<{ metadata: { name: string } }>;
    };
    expect(json.items.map((i) => i.metadata.name)).to.deep.equal(['bakery']);

    const history = (await ok('alice', ['sites', 'history', 'bakery'])).stdout.trim().split('\n');
    expect(history[0]).to.match(/^SEQ\s+VERSION\s+ACTION\s+BY\s+TIME/);
    expect(history[1]).to.match(new RegExp(`^2\\s+${v2.slice(0, 12)}\\s+pushed\\s+alice\\s+\\d{4}-.*\\(current\\)$`));
    expect(history[2]).to.match(new RegExp(`^1\\s+${v1.slice(0, 12)}\\s+pushed\\s+alice\\s`));

    await ok('alice', ['sites', 'pull', 'bakery', join(scratch, 'pulled')]);
    expect(await readTree(join(scratch, 'pulled'))).to.deep.equal(await readTree(v2dir));
    // an earlier version by a prefix the history lists
    await ok('alice', ['sites', 'pull', 'bakery', '--version', v1.slice(0, 8), join(scratch, 'pulled-v1')]);
    expect(await readTree(join(scratch, 'pulled-v1'))).to.deep.equal(await readTree(v1dir));
    expect(await fails('alice', ['sites', 'pull', 'bakery', join(scratch, 'pulled')])).to.match(/is not empty/);

    const back = await ok('alice', ['sites', 'rollback', 'bakery']);
    expect(back.stdout).to.contain(`to version ${v1} (was ${v2})`);
    expect((await storage.admin.getSite('bakery')).version).to.equal(v1);
    const after = await until('the rollback in the history', async () => {
      const r = await ok('alice', ['sites', 'history', 'bakery', '-o', 'json']);
      const items = JSON.parse(r.stdout) as Array<{ action: string; version: string; user?: string }>;
      return items[0]?.action === 'rolledback' ? items : null;
    });
    expect(after[0]).to.deep.include({ version: v1, user: 'alice' });
    expect(after).to.have.length(3);
  });

  it('fails in one line: an unknown site, an unknown version, a link leaving the site (nothing stored), a user without a role, bad usage (exit 2)', async () => {
    expect(await fails('alice', ['sites', 'history', 'nowhere'])).to.match(/pagewrightsites.* "nowhere" not found/);
    expect(await fails('alice', ['sites', 'pull', 'nowhere', join(scratch, 'x')])).to.match(/SiteNotFound/);
    expect(await fails('alice', ['sites', 'rollback', 'nowhere'])).to.match(/SiteNotFound/);

    const dir = await tree(join(scratch, 'cafe'), { 'index.html': 'cafe\n' });
    await ok('alice', ['sites', 'push', 'cafe', dir]);
    expect(await fails('alice', ['sites', 'rollback', 'cafe', '--to', 'a'.repeat(64)])).to.match(/VersionNotFound/);
    expect(await fails('alice', ['sites', 'rollback', 'cafe'])).to.match(/no earlier version/);

    const shady = await tree(join(scratch, 'shady'), { 'index.html': 'hi\n' });
    await symlink('/etc', join(shady, 'etc'));
    expect(await fails('alice', ['sites', 'push', 'shady', shady])).to.match(
      /UnsafeArchive: .*"etc": symlink to absolute path \/etc leaves the site/,
    );
    expect(await storage.admin.getSite('shady').catch((e: { code: string }) => e.code), 'storage kept nothing').to.equal('SiteNotFound');

    expect(await fails('eve', ['sites', 'list'])).to.match(/forbidden: User "eve" cannot list resource "pagewrightsites"/);
    expect(await fails('eve', ['sites', 'pull', 'cafe', join(scratch, 'eve')])).to.match(
      /forbidden: User "eve" cannot get resource "sites\/versions"/,
    );
    expect(await fails('eve', ['sites', 'push', 'cafe', dir])).to.match(/forbidden: User "eve"/);

    const usage = await cli('alice', ['sites', 'push', 'cafe']);
    expect([usage.code, usage.stderr]).to.deep.equal([2, "error: expected NAME DIR\nSee 'pagewright sites --help' for usage.\n"]);
    expect((await cli('alice', ['sites', 'list', '-o', 'yaml'])).code).to.equal(2);
  });

  it('diff prints the job diff, coloured only when asked; preview forwards GET/HEAD only, for this host, with the sandbox CSP', async () => {
    const dir = await tree(join(scratch, 'deli'), { 'index.html': '<h1>deli</h1>\n' });
    const base = versionIn((await ok('alice', ['sites', 'push', 'deli', dir])).stdout)!;
    const patch = 'diff --git a/index.html b/index.html\n--- a/index.html\n+++ b/index.html\n@@ -1 +1 @@\n-<h1>deli</h1>\n+<h1>Deli</h1>\n';
    const job = await succeededJob('deli', base, { 'index.html': '<h1>Deli</h1>\n' }, patch);
    expect((await ok('alice', ['diff', job])).stdout, 'not a terminal: plain').to.equal(patch);
    const coloured = (await ok('alice', ['diff', job, '--color=always'])).stdout;
    expect(coloured).to.contain('\x1b[32m+<h1>Deli</h1>\x1b[m').and.to.contain('\x1b[31m-<h1>deli</h1>\x1b[m');
    expect(await fails('eve', ['diff', job])).to.match(/forbidden/);

    const site = await startPreview(['--site', 'deli']);
    const page = await get(site.port, '/');
    expect(page.status).to.equal(200);
    expect(page.body).to.equal('<h1>deli</h1>\n');
    expect(page.headers['content-security-policy']).to.equal(PREVIEW_CSP);
    expect(page.headers['set-cookie']).to.equal(undefined);
    expect((await get(site.port, '/', { method: 'POST' })).status).to.equal(405);
    expect((await get(site.port, '/', { host: `evil.example:${site.port}` })).status).to.equal(421);
    // the browser's credentials never leave: a cookie or an Authorization header changes nothing
    expect((await get(site.port, '/', { headers: { authorization: 'Bearer stolen', cookie: 'a=b' } })).status).to.equal(200);
    await site.stop();

    const review = await startPreview([job]);
    const reviewPage = await get(review.port, '/review');
    expect(reviewPage.status).to.equal(200);
    expect(reviewPage.body).to.contain('<h1>Deli</h1>'.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
    const output = await get(review.port, '/output/');
    expect([output.status, output.body, output.headers['content-security-policy']]).to.deep.equal([200, '<h1>Deli</h1>\n', PREVIEW_CSP]);
    expect((await get(review.port, '/link')).status, 'a signed link is not served').to.equal(404);
    expect((await get(review.port, '/../../../../api/v1/namespaces')).status, 'dot segments resolved before the check').to.equal(404);
    await review.stop();

    expect(await fails('eve', ['preview', job])).to.match(/forbidden/);
  });

  it('approve publishes a Succeeded job and prints the version; a stale one is refused with PublishConflict; a job not Succeeded is refused', async () => {
    const dir = await tree(join(scratch, 'inn'), { 'index.html': 'inn\n' });
    const base = versionIn((await ok('alice', ['sites', 'push', 'inn', dir])).stdout)!;
    const first = await succeededJob('inn', base, { 'index.html': 'Inn\n' });
    const second = await succeededJob('inn', base, { 'index.html': 'INN\n' });
    const approved = await ok('alice', ['approve', first, '--timeout', '60s']);
    const published = versionIn(approved.stdout)!;
    expect((await storage.admin.getSite('inn')).version).to.equal(published);
    expect(published).to.not.equal(base);
    expect(await fails('alice', ['approve', second])).to.match(/refused \(PublishConflict\)/);
    expect((await ok('alice', ['approve', first])).stdout).to.contain('already published');

    await custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        name: second,
        body: { status: { phase: 'Failed', reason: 'CodexFailed' } },
      },
      MERGE,
    );
    const other = await succeededJob('inn', base, { 'index.html': 'x\n' });
    await custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        name: other,
        body: { status: { phase: 'Failed', reason: 'CodexFailed' } },
      },
      MERGE,
    );
    expect(await fails('alice', ['approve', other])).to.match(/is Failed \(CodexFailed\), not Succeeded/);

    // an output whose checks failed: refused, then published with --anyway
    const checked = await succeededJob('inn', published, { 'index.html': 'checked\n' });
    await custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        name: checked,
        body: {
          status: {
            conditions: [{ type: 'ChecksPassed', status: 'False', reason: 'ChecksFailed', message: 'links: 1 introduced by the change' }],
          },
        },
      },
      MERGE,
    );
    expect(await fails('alice', ['approve', checked])).to.match(/refused \(ChecksFailed\): .*links: 1 introduced.*publishAnyway/);
    expect((await storage.admin.getSite('inn')).version).to.equal(published);
    const anyway = versionIn((await ok('alice', ['approve', checked, '--anyway', '--timeout', '60s'])).stdout)!;
    expect((await storage.admin.getSite('inn')).version)
      .to.equal(anyway)
      .and.not.equal(published);
    expect(await fails('eve', ['approve', first])).to.match(/forbidden/);
  });

  /** `pagewright preview ARGS` as alice, once it printed its URL. */
  async function startPreview(args: string[]): Promise<{ port: number; stop(): Promise<void> }> {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'cli', 'main.ts'), 'preview', ...args], {
      env: { PATH: process.env.PATH, HOME: scratch, KUBECONFIG: kubeconfigs.alice },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(proc);
    let out = '';
    let err = '';
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      proc.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /^url: (http:\/\/127\.0\.0\.1:\d+\/\S*)$/m.exec(out);
        if (m) resolve(m[1]!);
      });
      proc.on('exit', (code) => reject(new Error(`preview exited ${code}: ${out}${err}`)));
    });
    return {
      port: Number(new URL(url).port),
      stop: async () => {
        const exited = once(proc, 'exit');
        proc.kill('SIGINT');
        const [code] = await exited;
        expect(code, 'stops cleanly on SIGINT').to.equal(0);
      },
    };
  }
});

function get(
  port: number,
  path: string,
  o: { method?: string; host?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: { host: o.host ?? `127.0.0.1:${port}`, ...o.headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
