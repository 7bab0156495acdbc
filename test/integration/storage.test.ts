import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { request } from 'undici';
import { StorageClient, StorageRequestError } from '../../common/storage-client.js';
import { waitFor } from '../support/processes.js';
import { snapshotDir, startTestStorage, type TestStorage } from '../support/storage.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The temp files under a data dir's tmp/ (uploads being written), with their sizes. */
async function tempFiles(dataDir: string): Promise<Array<{ name: string; size: number }>> {
  const dir = join(dataDir, 'tmp');
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = await Promise.all(names.map(async (name) => ({ name, size: (await stat(join(dir, name)).catch(() => null))?.size ?? -1 })));
  return files.filter((f) => f.size >= 0);
}

async function raw(
  storage: TestStorage,
  method: string,
  path: string,
  opts: { token?: string | null; body?: Buffer | Readable; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? storage.adminToken : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await request(storage.url + path, { method: method as 'GET', headers, ...(opts.body ? { body: opts.body } : {}) });
  const text = await res.body.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // bytes
  }
  return { status: res.statusCode, headers: res.headers, text, json: json as { error?: string; message?: string; version?: string } };
}

function manifestFor(jobId: string) {
  const now = new Date().toISOString();
  return {
    manifest_version: 1,
    job_id: jobId,
    site_id: 'blog',
    attempt: 1,
    result: {
      job_id: jobId,
      attempt: 1,
      status: 'completed',
      reason: null,
      error: null,
      files_changed: 0,
      files: [],
      summary: 's',
      base_version: null,
      output_version: null,
      started_at: now,
      finished_at: now,
      phase_durations_ms: {},
    },
    changes: [],
    files: [],
    output_size: null,
    codex_version: null,
    model: null,
  };
}

describe('storage service', () => {
  let storage: TestStorage;
  beforeEach(async () => {
    storage = await startTestStorage({ maxArtifactBytes: 8 * 1024 * 1024 });
  });
  afterEach(async () => storage.close());

  it('stores an artifact content-addressed and serves it back with its version as ETag', async () => {
    const body = randomBytes(100_000);
    const stored = await storage.admin.putSiteArtifact('blog', body, { sha256: sha(body) });
    expect(stored).to.deep.equal({ version: sha(body), size: body.length });
    const dl = await storage.admin.downloadArtifact('blog');
    const got = Buffer.concat(await dl.body.toArray());
    expect(dl.version).to.equal(sha(body));
    expect(got.equals(body)).to.equal(true);
    const site = await storage.admin.getSite('blog');
    expect(site.version).to.equal(sha(body));
    expect(site.history).to.have.length(1);
  });

  it('serves an older version by ?version= and refuses versions the site never had', async () => {
    const v1 = await storage.admin.putSiteArtifact('blog', Buffer.from('one'));
    const v2 = await storage.admin.putSiteArtifact('blog', Buffer.from('two'));
    expect(await (await storage.admin.downloadArtifact('blog', { version: v1.version })).body.text()).to.equal('one');
    expect(await (await storage.admin.downloadArtifact('blog')).body.text()).to.equal('two');
    await storage.admin.putSiteArtifact('other', Buffer.from('secret'));
    const foreign = await raw(storage, 'GET', `/sites/blog/artifact?version=${sha(Buffer.from('secret'))}`);
    expect(foreign.status).to.equal(404);
    expect(foreign.json.error).to.equal('VersionNotFound');
    expect(v2.version).to.not.equal(v1.version);
  });

  it('compare-and-swap: of two concurrent If-Match writers exactly one wins', async () => {
    const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
    // both requests pass the early precondition check and are streaming their bodies before
    // either may finish: only the check at commit time can tell them apart
    const bothStreaming = Promise.withResolvers<void>();
    const heldBody = (fill: number) =>
      Readable.from(
        (async function* () {
          yield Buffer.alloc(64 * 1024, fill);
          await bothStreaming.promise;
          for (let i = 0; i < 19; i++) yield Buffer.alloc(64 * 1024, fill);
        })(),
      );
    const uploads = Promise.allSettled([
      storage.admin.putSiteArtifact('blog', heldBody(1), { ifMatch: base.version }),
      storage.admin.putSiteArtifact('blog', heldBody(2), { ifMatch: base.version }),
    ]);
    await waitFor('both uploads writing their temp files', async () => (await tempFiles(storage.dataDir)).length === 2);
    bothStreaming.resolve();
    const results = await uploads;
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).to.have.length(1);
    expect(lost).to.have.length(1);
    expect(lost[0]!.reason).to.be.instanceOf(StorageRequestError);
    expect((lost[0]!.reason as StorageRequestError).status).to.equal(412);
    const site = await storage.admin.getSite('blog');
    expect(site.version).to.equal((won[0] as PromiseFulfilledResult<{ version: string }>).value.version);
    expect(site.history.map((h) => h.version)).to.deep.equal([site.version, base.version]);
  });

  it('If-None-Match: * creates a site only once', async () => {
    await storage.admin.putSiteArtifact('fresh', Buffer.from('a'), { ifNoneMatch: '*' });
    const err = await storage.admin.putSiteArtifact('fresh', Buffer.from('b'), { ifNoneMatch: '*' }).catch((e: unknown) => e);
    expect((err as StorageRequestError).status).to.equal(412);
  });

  describe('rejects bad input with a clear 4xx JSON error and changes nothing on disk', () => {
    let before: Record<string, number>;
    beforeEach(async () => {
      await storage.admin.putSiteArtifact('blog', Buffer.from('current'));
      before = await storage.snapshot();
    });
    afterEach(async () => {
      expect(await snapshotDir(storage.dataDir)).to.deep.equal(before);
    });

    const cases: Array<
      [string, string, string, () => { token?: string | null; body?: Buffer; headers?: Record<string, string> }, number, string]
    > = [
      ['unknown route', 'GET', '/nope', () => ({}), 404, 'NotFound'],
      ['unknown job object', 'PUT', '/jobs/j1/passwd', () => ({ body: Buffer.from('x') }), 404, 'NotFound'],
      ['bad site id', 'PUT', '/sites/Bad_Site/artifact', () => ({ body: Buffer.from('x') }), 400, 'InvalidSiteId'],
      ['site id with dots', 'GET', '/sites/..%2F..%2Fetc/artifact', () => ({}), 400, 'InvalidSiteId'],
      ['bad job id', 'PUT', '/jobs/UPPER/log', () => ({ body: Buffer.from('x') }), 400, 'InvalidJobId'],
      ['oversized body', 'PUT', '/sites/blog/artifact', () => ({ body: Buffer.alloc(9 * 1024 * 1024) }), 413, 'PayloadTooLarge'],
      [
        'digest mismatch',
        'PUT',
        '/sites/blog/artifact',
        () => ({ body: Buffer.from('x'), headers: { 'x-content-sha256': 'a'.repeat(64) } }),
        400,
        'DigestMismatch',
      ],
      [
        'malformed digest',
        'PUT',
        '/sites/blog/artifact',
        () => ({ body: Buffer.from('x'), headers: { 'content-digest': 'md5=:x:' } }),
        400,
        'InvalidDigest',
      ],
      [
        'stale If-Match',
        'PUT',
        '/sites/blog/artifact',
        () => ({ body: Buffer.from('x'), headers: { 'if-match': `"${'b'.repeat(64)}"` } }),
        412,
        'PreconditionFailed',
      ],
      ['missing token', 'GET', '/sites/blog/artifact', () => ({ token: null }), 401, 'Unauthorized'],
      ['wrong admin token', 'PUT', '/sites/blog/artifact', () => ({ token: 'x'.repeat(48), body: Buffer.from('x') }), 401, 'Unauthorized'],
      ['manifest that is not JSON', 'PUT', '/jobs/j1/manifest.json', () => ({ body: Buffer.from('{nope') }), 400, 'InvalidManifest'],
      [
        'manifest for another job',
        'PUT',
        '/jobs/j1/manifest.json',
        () => ({ body: Buffer.from(JSON.stringify(manifestFor('j2'))) }),
        400,
        'InvalidManifest',
      ],
      [
        'publish without a body',
        'POST',
        '/sites/blog/publish',
        () => ({ body: Buffer.from('{}'), headers: { 'content-type': 'application/json' } }),
        400,
        'BadRequest',
      ],
      [
        'publish without the version',
        'POST',
        '/sites/blog/publish',
        () => ({
          body: Buffer.from(JSON.stringify({ job_id: 'j1', if_match: 'a'.repeat(64) })),
          headers: { 'content-type': 'application/json' },
        }),
        400,
        'BadRequest',
      ],
      [
        'seal without an attempt',
        'POST',
        '/jobs/j1/seal',
        () => ({ body: Buffer.from('{"attempt":0}'), headers: { 'content-type': 'application/json' } }),
        400,
        'BadRequest',
      ],
      [
        'seal with a bad job id',
        'POST',
        '/jobs/J1/seal',
        () => ({ body: Buffer.from('{"attempt":1}'), headers: { 'content-type': 'application/json' } }),
        400,
        'InvalidJobId',
      ],
      ['gc without a token', 'POST', '/admin/gc', () => ({ token: null }), 401, 'Unauthorized'],
    ];
    for (const [name, method, path, opts, status, code] of cases) {
      it(name, async () => {
        const res = await raw(storage, method, path, opts());
        expect(res.status, res.text).to.equal(status);
        expect(res.headers['content-type']).to.match(/application\/json/);
        expect(res.json.error).to.equal(code);
        expect(res.json.message).to.be.a('string').and.not.be.empty;
      });
    }

    it('an upload cut off mid-body', async () => {
      const clientDies = Promise.withResolvers<void>();
      const body = Readable.from(
        (async function* () {
          yield Buffer.alloc(100_000, 7);
          await clientDies.promise;
          throw new Error('client died');
        })(),
      );
      const upload = request(`${storage.url}/sites/blog/artifact`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${storage.adminToken}` },
        body,
      }).then(
        () => null,
        (e: unknown) => e,
      );
      // the server has the first bytes in a temp file: the upload is in flight when it is cut
      await waitFor('the upload in its temp file', async () => (await tempFiles(storage.dataDir)).some((f) => f.size === 100_000));
      clientDies.resolve();
      expect(await upload, 'the cut-off request must fail').to.be.instanceOf(Error);
      await waitFor('the temp file removed', async () => (await tempFiles(storage.dataDir)).length === 0);
      // the site is still at its version, and no blob of the partial body (afterEach: nothing on disk changed)
      expect(await (await storage.admin.downloadArtifact('blog')).body.text()).to.equal('current');
      expect((await storage.admin.getSite('blog')).history).to.have.length(1);
    });
  });

  describe('job tokens', () => {
    it('may read their own site and write their own job, nothing else', async () => {
      await storage.admin.putSiteArtifact('blog', Buffer.from('site'));
      await storage.admin.putSiteArtifact('shop', Buffer.from('other site'));
      const token = await storage.tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
      const job = new StorageClient({ baseUrl: storage.url, token });
      expect(await (await job.downloadArtifact('blog')).body.text()).to.equal('site');
      await job.putJobObject('job-1', 'log', Buffer.from('hello'));
      expect(await (await job.getJobObject('job-1', 'log')).body.text()).to.equal('hello');

      const denied = async (p: Promise<unknown>, status: number) => {
        const err = await p.then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(StorageRequestError);
        expect((err as StorageRequestError).status).to.equal(status);
      };
      await denied(job.downloadArtifact('shop'), 403);
      await denied(job.putJobObject('job-2', 'log', Buffer.from('x')), 403);
      await denied(job.putSiteArtifact('blog', Buffer.from('overwrite')), 403);
      await denied(job.publish('blog', 'job-1', sha(Buffer.from('site')), sha(Buffer.from('hello'))), 403);
      await denied(job.seal('job-1', 1), 403);
      await denied(job.deleteJob('job-1'), 403);
      await denied(job.gc(), 403);

      const readOnly = await storage.tokens.issue({ jobId: 'job-1', siteId: 'blog', scopes: ['site:read'], attempt: 1, ttlSeconds: 60 });
      await denied(new StorageClient({ baseUrl: storage.url, token: readOnly }).putJobObject('job-1', 'log', Buffer.from('x')), 403);
      const expired = await storage.tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 1, now: Date.now() - 10_000 });
      await denied(new StorageClient({ baseUrl: storage.url, token: expired }).downloadArtifact('blog'), 401);
      const forged = `${token.slice(0, -4)}AAAA`;
      await denied(new StorageClient({ baseUrl: storage.url, token: forged }).downloadArtifact('blog'), 401);
    });
  });

  describe('publish', () => {
    it('makes a job output current only if the site is still at if_match', async () => {
      const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
      const a = await storage.admin.putJobObject(
        'job-a',
        'output.tar.gz',
        await forgeTarGzBuffer([{ path: 'index.html', content: 'edit a' }]),
      );
      const b = await storage.admin.putJobObject(
        'job-b',
        'output.tar.gz',
        await forgeTarGzBuffer([{ path: 'index.html', content: 'edit b' }]),
      );
      const results = await Promise.allSettled([
        storage.admin.publish('blog', 'job-a', base.version, a.version),
        storage.admin.publish('blog', 'job-b', base.version, b.version),
      ]);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected).to.have.length(1);
      expect((rejected[0]!.reason as StorageRequestError).status).to.equal(409);
      expect((rejected[0]!.reason as StorageRequestError).code).to.equal('PublishConflict');
      const site = await storage.admin.getSite('blog');
      expect(site.history[0]!.job_id).to.be.oneOf(['job-a', 'job-b']);
    });

    it('refuses to publish a job without output', async () => {
      const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
      const err = await storage.admin.publish('blog', 'job-z', base.version, base.version).catch((e: unknown) => e);
      expect((err as StorageRequestError).code).to.equal('ObjectNotFound');
    });
  });

  describe('history and rollback', () => {
    const reject = async (p: Promise<unknown>) =>
      (await p.then(
        () => null,
        (e: unknown) => e,
      )) as StorageRequestError;

    it('records how each version became current, by whom, numbered without repeats', async () => {
      const v1 = await storage.admin.putSiteArtifact('blog', Buffer.from('one'), { by: 'alice@example.com' });
      const out = await storage.admin.putJobObject('job-a', 'output.tar.gz', await forgeTarGzBuffer([{ path: 'i.html', content: 'a' }]));
      await storage.admin.publish('blog', 'job-a', v1.version, out.version);
      await storage.admin.rollBack('blog', v1.version, out.version, 'bob');
      const site = await storage.admin.getSite('blog');
      expect(site.revision).to.equal(3);
      expect(site.history.map((h) => [h.seq, h.action, h.by, h.job_id, h.version])).to.deep.equal([
        [3, 'rolled_back', 'bob', null, v1.version],
        [2, 'published', null, 'job-a', out.version],
        [1, 'pushed', 'alice@example.com', null, v1.version],
      ]);
      expect(site.version).to.equal(v1.version);
    });

    it('reads records written before actions and numbers existed', async () => {
      const v1 = await storage.admin.putSiteArtifact('old', Buffer.from('one'));
      const v2 = await storage.admin.putSiteArtifact('old', Buffer.from('two'));
      // as an earlier storage wrote it: no revision, no action, by or seq
      const at = new Date().toISOString();
      const legacy = {
        site_id: 'old',
        version: v2.version,
        size: v2.size,
        updated_at: at,
        history: [
          { version: v2.version, size: v2.size, at, job_id: 'job-x' },
          { version: v1.version, size: v1.size, at, job_id: null },
        ],
      };
      await writeFile(join(storage.dataDir, 'sites', 'old.json'), JSON.stringify(legacy));
      const read = await storage.admin.getSite('old');
      expect(read.history.map((h) => [h.seq, h.action, h.by])).to.deep.equal([
        [2, 'published', null],
        [1, 'pushed', null],
      ]);
      // and the next change goes on from there
      await storage.admin.rollBack('old', v1.version, v2.version, null);
      expect((await storage.admin.getSite('old')).history[0]).to.deep.include({ seq: 3, action: 'rolled_back' });
    });

    it('refuses a rollback to a version the site never had, to its current one, or from a version it moved on from: nothing changes', async () => {
      const v1 = await storage.admin.putSiteArtifact('blog', Buffer.from('one'));
      const v2 = await storage.admin.putSiteArtifact('blog', Buffer.from('two'));
      await storage.admin.putSiteArtifact('shop', Buffer.from('shop'));
      const before = await storage.admin.getSite('blog');
      const unknown = await reject(storage.admin.rollBack('blog', sha(Buffer.from('shop')), v2.version, 'x'));
      expect([unknown.status, unknown.code]).to.deep.equal([404, 'VersionNotFound']);
      const current = await reject(storage.admin.rollBack('blog', v2.version, v2.version, 'x'));
      expect([current.status, current.code]).to.deep.equal([400, 'BadRequest']);
      const stale = await reject(storage.admin.rollBack('blog', v1.version, v1.version, 'x'));
      expect([stale.status, stale.code]).to.deep.equal([412, 'PreconditionFailed']);
      const missing = await reject(storage.admin.rollBack('nowhere', v1.version, v1.version, 'x'));
      expect(missing.code).to.equal('SiteNotFound');
      expect(await storage.admin.getSite('blog')).to.deep.equal(before);
      // and only the admin may
      const token = await storage.tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
      const job = new StorageClient({ baseUrl: storage.url, token });
      expect((await reject(job.rollBack('blog', v1.version, v2.version, 'x'))).status).to.equal(403);
      const bad = await raw(storage, 'POST', '/sites/blog/rollback', {
        body: Buffer.from(JSON.stringify({ to: v1.version, if_match: v2.version, by: 'x', extra: 1 })),
        headers: { 'content-type': 'application/json' },
      });
      expect([bad.status, bad.json.error]).to.deep.equal([400, 'BadRequest']);
    });
  });

  it('lists every site by id, a page at a time, to the admin only', async () => {
    for (const id of ['c-site', 'a-site', 'b-site']) await storage.admin.putSiteArtifact(id, Buffer.from(id));
    const first = await storage.admin.listSites({ limit: 2 });
    expect(first.sites.map((s) => s.site_id)).to.deep.equal(['a-site', 'b-site']);
    expect(first.sites[0]).to.include({ version: createHash('sha256').update('a-site').digest('hex'), size: 6, revision: 1 });
    const rest = await storage.admin.listSites({ after: first.next_after! });
    expect(rest.next_after).to.equal(undefined);
    expect(rest.sites.map((s) => s.site_id)).to.deep.equal(['c-site']);
    const token = await storage.tokens.issue({ jobId: 'job-1', siteId: 'a-site', attempt: 1, ttlSeconds: 60 });
    const asJob = new StorageClient({ baseUrl: storage.url, token });
    expect(((await asJob.listSites().catch((e: unknown) => e)) as StorageRequestError).status).to.equal(403);
    expect(((await storage.admin.listSites({ limit: 0 }).catch((e: unknown) => e)) as StorageRequestError).code).to.equal('BadRequest');
  });

  it('counts requests, bytes, errors and sweeps on /metrics', async () => {
    await storage.admin.putSiteArtifact('blog', Buffer.from('12345'));
    await (await storage.admin.downloadArtifact('blog')).body.text();
    await storage.admin.getSite('nope').catch(() => undefined);
    await storage.admin.gc();
    const res = await request(`${storage.url}/metrics`);
    expect(res.headers['content-type']).to.match(/^text\/plain/);
    const text = await res.body.text();
    const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('pagewright_storage_bytes_total{direction="in",backend="fs"}')).to.equal(5);
    expect(value('pagewright_storage_bytes_total{direction="out",backend="fs"}')).to.equal(5);
    expect(value('pagewright_storage_errors_total{code="SiteNotFound",backend="fs"}')).to.equal(1);
    expect(value('pagewright_storage_requests_total{route="/sites/:siteId/artifact",method="PUT",status="201",backend="fs"}')).to.equal(1);
    expect(value('pagewright_storage_gc_sweeps_total{outcome="ok",backend="fs"}')).to.equal(1);
    expect(text).to.not.include('blog'); // no site or job id in a label
  });

  it('accepts a valid manifest and lists job objects', async () => {
    await storage.admin.putJobObject('j1', 'manifest.json', Buffer.from(JSON.stringify(manifestFor('j1'))));
    const job = await storage.admin.getJob('j1');
    expect(Object.keys(job.objects)).to.deep.equal(['manifest.json']);
  });
});

describe('storage restart', function () {
  this.timeout(60_000);
  let dataDir: string;
  let child: ChildProcess | undefined;
  const adminToken = randomBytes(24).toString('hex');
  const env = (port: number) => ({
    ...process.env,
    PAGEWRIGHT_STORAGE_DIR: dataDir,
    PAGEWRIGHT_STORAGE_HOST: '127.0.0.1',
    PAGEWRIGHT_STORAGE_PORT: String(port),
    PAGEWRIGHT_STORAGE_ADMIN_TOKEN: adminToken,
    PAGEWRIGHT_TOKEN_SECRET: randomBytes(32).toString('hex'),
    PAGEWRIGHT_LOG_LEVEL: 'warn',
  });

  async function start(port: number): Promise<ChildProcess> {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'storage/main.ts'], {
      env: env(port),
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    try {
      await waitFor(
        'storage /healthz',
        async () => {
          if (proc.exitCode !== null) throw new Error(`storage exited with ${proc.exitCode}`);
          return request(`http://127.0.0.1:${port}/healthz`).then(
            (r) => r.body.text().then(() => r.statusCode === 200),
            () => false,
          );
        },
        10_000,
        50,
      );
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
    return proc;
  }

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'pw-storage-restart-'));
  });
  after(async () => {
    child?.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged object across a SIGKILL', async () => {
    const { getFreePort } = await import('../support/ports.js');
    const port = await getFreePort();
    child = await start(port);
    const client = new StorageClient({ baseUrl: `http://127.0.0.1:${port}`, token: adminToken });
    const acked: Array<{ site: string; body: Buffer; version: string }> = [];
    for (let i = 0; i < 20; i++) {
      const body = randomBytes(10_000 + i * 5_000);
      const site = `site-${i % 5}`;
      const stored = await client.putSiteArtifact(site, body);
      acked.push({ site, body, version: stored.version });
    }
    // one upload in flight when the process dies must not leave a torn object: it announces
    // the digest of a body it never finishes, the name a torn blob would have
    const sent = randomBytes(52_345); // a size no acknowledged body has
    const intended = Buffer.concat([sent, randomBytes(50_000)]);
    const neverSent = Promise.withResolvers<void>();
    const inflight = client
      .putSiteArtifact(
        'site-0',
        Readable.from(
          (async function* () {
            yield sent;
            await neverSent.promise; // the process dies first
          })(),
        ),
        { sha256: sha(intended) },
      )
      .then(
        () => null,
        (e: unknown) => e,
      );
    // the server has written what was sent of it (into tmp/, if all is well)
    const [partial] = await waitFor('the in-flight upload on disk', async () => {
      const files = Object.entries(await snapshotDir(dataDir)).filter(([, size]) => size === sent.length);
      return files.length > 0 ? files.map(([path]) => path) : null;
    });
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(await inflight, 'the upload cut by the crash must fail').to.be.instanceOf(Error);
    neverSent.resolve();

    child = await start(port);
    for (const { site, body, version } of acked) {
      const dl = await client.downloadArtifact(site, { version });
      expect(Buffer.concat(await dl.body.toArray()).equals(body)).to.equal(true);
    }
    // the last acknowledged write per site is still current
    for (let s = 0; s < 5; s++) {
      const last = acked.filter((a) => a.site === `site-${s}`).at(-1)!;
      expect((await client.getSite(`site-${s}`)).version).to.equal(last.version);
    }
    // no torn object: the cut-off upload's partial file is gone, every blob is whole (its
    // content hashes to its name), and there is one per acknowledged version, none other
    const files = await snapshotDir(dataDir);
    expect(files, 'the partial upload left by the crash').to.not.have.property(partial!);
    const blobs = Object.keys(files).filter((p) => p.startsWith('blobs/'));
    for (const path of blobs) expect(sha(await readFile(join(dataDir, path))), `blob ${path}`).to.equal(path.split('/').pop());
    expect(blobs.map((p) => p.split('/').pop()).sort()).to.deep.equal([...new Set(acked.map((a) => a.version))].sort());
  });
});
