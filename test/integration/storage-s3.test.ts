/**
 * Storage on its s3 backend (storage/s3-backend.ts) against a real S3 server, SeaweedFS
 * (test/support/seaweedfs.ts), through storage's own HTTP API, as the runner and the manager use
 * it: the contract the fs backend keeps (storage.test.ts), then what only a shared bucket
 * asks for: two replicas racing on one site or one job, the collector running in a replica that
 * did not write, a lease, multipart uploads and what a cut-off one leaves, a replica SIGKILLed
 * mid-upload (the other serves the retry, the abandoned parts are aborted) and mid-publish (the
 * retry publishes exactly once), the S3 server restarted mid-upload (nothing acknowledged lost),
 * and the start-up refusal of a server that ignores conditional writes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { CreateBucketCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';
import { request } from 'undici';
import { silentLogger } from '../../common/logger.js';
import { StorageClient, StorageRequestError } from '../../common/storage-client.js';
import { STORAGE_DEFAULTS } from '../../storage/config.js';
import { s3Settings } from '../../storage/open-backend.js';
import { S3Backend } from '../../storage/s3-backend.js';
import { type StorageServerConfig, startStorageServer } from '../../storage/server.js';
import { getFreePort } from '../support/ports.js';
import { terminate, waitFor } from '../support/processes.js';
import { type SeaweedFs, s3Client, startSeaweedFs } from '../support/seaweedfs.js';
import { s3StorageConfig, snapshotBucket, startTestStorage, type TestStorage } from '../support/storage.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function failure(p: Promise<unknown>): Promise<StorageRequestError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof StorageRequestError)) throw new Error(`expected a storage error, got ${String(err)}`);
  return err;
}

async function readAll(body: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function pendingUploads(s3: S3Client, bucket: string): Promise<number> {
  return (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
}

describe('storage on S3 (real SeaweedFS)', function () {
  this.timeout(60_000);
  let server: SeaweedFs;
  let s3: S3Client;
  let n = 0;
  let bucket: string;
  const replicas: TestStorage[] = [];

  before(async function () {
    this.timeout(20 * 60_000); // a cold first run builds weed (make seaweedfs does it up front)
    server = await startSeaweedFs();
    s3 = s3Client(server, server);
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });
  // every test on a bucket of its own
  beforeEach(async () => {
    bucket = `pw-s3-${process.pid}-${++n}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.close()));
  });

  /** A storage replica on the test's bucket; replicas share the admin token and token secret. */
  async function replica(config: Parameters<typeof startTestStorage>[0] = {}): Promise<TestStorage> {
    const shared = replicas[0] ? { adminToken: replicas[0].adminToken, tokenSecret: replicas[0].tokenSecret } : {};
    const r = await startTestStorage({ ...config, s3: { server, bucket }, config: { ...shared, ...config.config } });
    replicas.push(r);
    return r;
  }

  it('keeps the fs contract: content-addressed versions, history, If-Match, If-None-Match, job objects, publish, rollback', async () => {
    const storage = await replica();
    const v1 = await storage.admin.putSiteArtifact('blog', Buffer.from('one'), { ifNoneMatch: '*' });
    expect(v1.version).to.equal(sha(Buffer.from('one')));
    expect((await failure(storage.admin.putSiteArtifact('blog', Buffer.from('x'), { ifNoneMatch: '*' }))).status).to.equal(412);
    const v2 = await storage.admin.putSiteArtifact('blog', Buffer.from('two'), { ifMatch: v1.version });
    expect((await failure(storage.admin.putSiteArtifact('blog', Buffer.from('x'), { ifMatch: v1.version }))).status).to.equal(412);
    const current = await storage.admin.downloadArtifact('blog');
    expect(current.version).to.equal(v2.version);
    expect((await readAll(current.body)).toString()).to.equal('two');
    const older = await storage.admin.downloadArtifact('blog', { version: v1.version });
    expect((await readAll(older.body)).toString()).to.equal('one');

    const out = await forgeTarGzBuffer([{ path: 'index.html', content: 'edited' }]);
    const stored = await storage.admin.putJobObject('job-1', 'output.tar.gz', out);
    const published = await storage.admin.publish('blog', 'job-1', v2.version, stored.version, { by: 'job-one' });
    expect(published.version).to.equal(sha(out));
    const rolled = await storage.admin.rollBack('blog', v2.version, published.version, 'alice');
    expect(rolled.version).to.equal(v2.version);
    const site = await storage.admin.getSite('blog');
    expect(site.history.map((h) => [h.action, h.seq])).to.deep.equal([
      ['rolled_back', 4],
      ['published', 3],
      ['pushed', 2],
      ['pushed', 1],
    ]);

    // the listing, one page at a time
    await storage.admin.putSiteArtifact('about', Buffer.from('a'));
    expect((await storage.admin.listSites({ limit: 1 })).next_after).to.equal('about');
    const rest = await storage.admin.listSites({ after: 'about' });
    expect(rest.sites.map((s) => [s.site_id, s.version])).to.deep.equal([['blog', v2.version]]);
    expect(rest.next_after).to.equal(undefined);
  });

  it('streams a large artifact as a multipart upload and back, byte for byte', async () => {
    // a grace period that leaves the upload time (the suite's is 3 s, for the collector's tests)
    const storage = await replica({ maxArtifactBytes: 64 * 1024 * 1024, config: { gcGraceSeconds: 120 } });
    const big = randomBytes(40 * 1024 * 1024); // 5 parts of 8 MiB
    const put = await storage.admin.putSiteArtifact('big', Readable.from([big.subarray(0, 1 << 20), big.subarray(1 << 20)]), {
      sha256: sha(big),
    });
    expect(put.size).to.equal(big.length);
    const got = await storage.admin.downloadArtifact('big');
    expect(sha(await readAll(got.body))).to.equal(sha(big));
    expect(await pendingUploads(s3, bucket)).to.equal(0);
  });

  it('refuses a body over the limit or with a wrong digest and leaves no object and no part behind', async () => {
    const storage = await replica({ maxArtifactBytes: 20 * 1024 * 1024 });
    const before = await snapshotBucket({ server, bucket });
    const over = await failure(storage.admin.putSiteArtifact('big', Readable.from([randomBytes(24 * 1024 * 1024)])));
    expect(over.status).to.equal(413);
    const wrong = await failure(storage.admin.putSiteArtifact('big', Buffer.from('body'), { sha256: sha(Buffer.from('other')) }));
    expect(wrong.code).to.equal('DigestMismatch');
    expect(await snapshotBucket({ server, bucket })).to.deep.equal(before);
    expect(await pendingUploads(s3, bucket)).to.equal(0);
  });

  describe('two replicas on one bucket', () => {
    it('of two publishes of one site through two replicas exactly one wins, the other is PublishConflict', async () => {
      const [a, b] = [await replica(), await replica()];
      for (let round = 0; round < 5; round++) {
        const base = await a!.admin.putSiteArtifact('blog', Buffer.from(`base ${round}`));
        const outA = await a!.admin.putJobObject(
          `job-a${round}`,
          'output.tar.gz',
          await forgeTarGzBuffer([{ path: 'a.html', content: `${round}` }]),
        );
        const outB = await b!.admin.putJobObject(
          `job-b${round}`,
          'output.tar.gz',
          await forgeTarGzBuffer([{ path: 'b.html', content: `${round}` }]),
        );
        const results = await Promise.allSettled([
          a!.admin.publish('blog', `job-a${round}`, base.version, outA.version),
          b!.admin.publish('blog', `job-b${round}`, base.version, outB.version),
        ]);
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(lost, `round ${round}`).to.have.length(1);
        expect((lost[0]!.reason as StorageRequestError).code).to.equal('PublishConflict');
        const site = await b!.admin.getSite('blog');
        expect(site.history[0]!.job_id).to.be.oneOf([`job-a${round}`, `job-b${round}`]);
        expect(site.history[1]!.version).to.equal(base.version);
      }
    });

    it('of ten compare-and-swap pushes split across the replicas exactly one lands, and none is lost from the history', async () => {
      const [a, b] = [await replica(), await replica()];
      const base = await a!.admin.putSiteArtifact('blog', Buffer.from('base'));
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? a! : b!).admin.putSiteArtifact('blog', Buffer.from(`v${i}`), { ifMatch: base.version }),
        ),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
      // and pushes without a precondition all land, each as its own history entry
      await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a! : b!).admin.putSiteArtifact('blog', Buffer.from(`free ${i}`))));
      const site = await a!.admin.getSite('blog');
      expect(site.history.map((h) => h.seq)).to.deep.equal([8, 7, 6, 5, 4, 3, 2, 1]);
    });

    it("a seal through one replica refuses the attempt's token at the other, and the job's quota holds across both", async () => {
      const [a, b] = [await replica({ config: { maxJobBytes: 1500 } }), await replica({ config: { maxJobBytes: 1500 } })];
      const token = await a!.tokens.issue({ jobId: 'job-1', siteId: 'blog', attempt: 1, ttlSeconds: 60 });
      const asJobAtB = new StorageClient({ baseUrl: b!.url, token });
      await asJobAtB.putJobObject('job-1', 'log', Buffer.alloc(1000, 1));
      // the other replica counts what the first stored
      expect(
        (await failure(new StorageClient({ baseUrl: a!.url, token }).putJobObject('job-1', 'diff.patch', Buffer.alloc(1000, 2)))).code,
      ).to.equal('JobQuotaExceeded');
      await a!.admin.seal('job-1', 1);
      expect((await failure(asJobAtB.putJobObject('job-1', 'log', Buffer.from('late')))).code).to.equal('AttemptEnded');
    });

    it('the collector in either replica frees what nothing references, after the grace period, and keeps the rest', async () => {
      const [a, b] = [await replica(), await replica()];
      const kept = await a!.admin.putSiteArtifact('blog', Buffer.from('kept'));
      await a!.admin.putJobObject('job-1', 'log', Buffer.from('first log'));
      await a!.admin.putJobObject('job-1', 'log', Buffer.from('second log')); // the first is now unreferenced
      expect(await b!.admin.gc()).to.deep.equal({ deleted: 0, kept: 3, bytes_freed: 0 }); // all younger than the grace
      await new Promise((r) => setTimeout(r, 4200));
      expect(await b!.admin.gc()).to.deep.equal({ deleted: 1, kept: 2, bytes_freed: 9 });
      expect((await readAll((await a!.admin.getJobObject('job-1', 'log')).body)).toString()).to.equal('second log');
      expect((await readAll((await b!.admin.downloadArtifact('blog')).body)).toString()).to.equal('kept');
      expect(kept.version).to.equal(sha(Buffer.from('kept')));
    });

    it('a lease keeps an old blob that nothing references through a sweep in another process, and only while it is held', async () => {
      // publish's case (storage/app.ts): the job record that referenced the output is gone by the time
      // the sweep reads the records, and the site record that will reference it is not written yet
      const grace = 4;
      const settings = s3Settings({
        ...STORAGE_DEFAULTS,
        ...s3StorageConfig({ server, bucket }),
        s3Bucket: bucket,
        s3Endpoint: server.endpoint,
        s3ForcePathStyle: true,
        s3CaFile: undefined,
        dataDir: '/nonexistent',
        gcGraceSeconds: grace,
      });
      const publisher = new S3Backend(settings, grace);
      const collector = new S3Backend(settings, grace);
      try {
        const blob = await publisher.blobs.put(Readable.from([Buffer.from('output')]), { maxBytes: 1024 }, async (b) => b);
        await new Promise((r) => setTimeout(r, grace * 1000 + 200)); // older than the grace period
        const during = await publisher.blobs.protect(blob, () => collector.blobs.sweep(async () => new Set(), grace));
        expect(during).to.deep.equal({ deleted: 0, kept: 1, bytes_freed: 0 });
        expect(await collector.blobs.size(blob)).to.equal(6);
        // released: the next sweep takes it, and no lease is left
        expect(await collector.blobs.sweep(async () => new Set(), grace)).to.deep.equal({ deleted: 1, kept: 0, bytes_freed: 6 });
        expect(await collector.blobs.size(blob)).to.equal(null);
        expect(Object.keys(await snapshotBucket({ server, bucket }))).to.deep.equal([]);
      } finally {
        await Promise.all([publisher.close(), collector.close()]);
      }
    });
  });

  /** A storage replica in a process of its own (to SIGKILL), on the test's bucket, with this grace period. */
  async function replicaProcess(opts: {
    adminToken: string;
    tokenSecret: string;
    graceSeconds: number;
  }): Promise<{ proc: ChildProcess; url: string }> {
    const port = await getFreePort();
    const env = {
      ...process.env,
      PAGEWRIGHT_STORAGE_BACKEND: 's3',
      PAGEWRIGHT_S3_BUCKET: bucket,
      PAGEWRIGHT_S3_ENDPOINT: server.endpoint,
      PAGEWRIGHT_S3_REGION: server.region,
      PAGEWRIGHT_S3_INSECURE: 'true',
      PAGEWRIGHT_S3_CLOCK_SKEW_SECONDS: String(s3StorageConfig({ server, bucket }).s3ClockSkewSeconds),
      PAGEWRIGHT_STORAGE_GC_GRACE_SECONDS: String(opts.graceSeconds),
      PAGEWRIGHT_STORAGE_GC_INTERVAL_SECONDS: '0',
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      PAGEWRIGHT_STORAGE_HOST: '127.0.0.1',
      PAGEWRIGHT_STORAGE_PORT: String(port),
      PAGEWRIGHT_STORAGE_ADMIN_TOKEN: opts.adminToken,
      PAGEWRIGHT_TOKEN_SECRET: opts.tokenSecret,
      PAGEWRIGHT_LOG_LEVEL: 'warn',
    };
    const proc = spawn(process.execPath, ['--import', 'tsx', 'storage/main.ts'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(
      'storage /healthz',
      async () => {
        if (proc.exitCode !== null) throw new Error(`storage exited with ${proc.exitCode}`);
        return request(`${url}/healthz`).then(
          (r) => r.body.text().then(() => r.statusCode === 200),
          () => false,
        );
      },
      20_000,
      50,
    );
    return { proc, url };
  }

  it('a replica SIGKILLed mid-upload: the other serves the retry, and the abandoned parts are aborted after the grace period', async function () {
    this.timeout(120_000);
    const adminToken = randomBytes(24).toString('hex');
    const tokenSecret = randomBytes(32).toString('hex');
    // a grace period that leaves B's upload time, then is waited out for A's abandoned parts
    const graceSeconds = 8;
    const [A, B] = [
      await replicaProcess({ adminToken, tokenSecret, graceSeconds }),
      await replicaProcess({ adminToken, tokenSecret, graceSeconds }),
    ];
    const [a, b] = [A.proc, B.proc];
    try {
      const body = randomBytes(30 * 1024 * 1024);
      // the upload to A: the first 20 MiB sent (two parts in the bucket), then A is killed
      const upload = httpRequest(`${A.url}/sites/blog/artifact`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${adminToken}`, 'content-length': String(body.length) },
      });
      upload.on('error', () => undefined);
      upload.write(body.subarray(0, 20 * 1024 * 1024));
      await waitFor('a multipart upload under way', async () => (await pendingUploads(s3, bucket)) > 0, 20_000, 50);
      a.kill('SIGKILL');
      upload.destroy();
      // the retry goes to B and lands
      const viaB = new StorageClient({ baseUrl: B.url, token: adminToken });
      const put = await viaB.putSiteArtifact('blog', body, { sha256: sha(body) });
      expect(put.version).to.equal(sha(body));
      expect(await pendingUploads(s3, bucket)).to.equal(1); // A's, abandoned
      await new Promise((r) => setTimeout(r, (graceSeconds + 0.5) * 1000));
      await viaB.gc();
      expect(await pendingUploads(s3, bucket)).to.equal(0);
      // nothing else left: the site's one blob and its record
      const keys = Object.keys(await snapshotBucket({ server, bucket })).sort();
      expect(keys.filter((k) => k.startsWith('blobs/'))).to.have.length(1);
      expect(keys.filter((k) => !k.startsWith('blobs/'))).to.deep.equal(['records/sites/blog.json']);
      expect(sha(await readAll((await viaB.downloadArtifact('blog')).body))).to.equal(sha(body));
    } finally {
      await Promise.all([terminate(a), terminate(b)]);
    }
  });

  it('a replica SIGKILLed mid-publish: the retry through the other publishes exactly once', async function () {
    this.timeout(120_000);
    const adminToken = randomBytes(24).toString('hex');
    const tokenSecret = randomBytes(32).toString('hex');
    const [A, B] = [
      await replicaProcess({ adminToken, tokenSecret, graceSeconds: 120 }),
      await replicaProcess({ adminToken, tokenSecret, graceSeconds: 120 }),
    ];
    try {
      const viaA = new StorageClient({ baseUrl: A.url, token: adminToken });
      const viaB = new StorageClient({ baseUrl: B.url, token: adminToken });
      const base = await viaA.putSiteArtifact('blog', Buffer.from('base'));
      // big enough that A is still scanning it when it is killed
      const files = Array.from({ length: 4000 }, (_, i) => ({ path: `p${i}.html`, content: randomBytes(256).toString('hex') }));
      const out = await viaA.putJobObject('job-1', 'output.tar.gz', await forgeTarGzBuffer(files));
      const dying = viaA.publish('blog', 'job-1', base.version, out.version).then(
        () => 'published',
        () => 'cut off',
      );
      await waitFor(
        'the lease of the publish',
        async () => Object.keys(await snapshotBucket({ server, bucket })).some((k) => k.startsWith('leases/')),
        10_000,
        5,
      );
      A.proc.kill('SIGKILL');
      const first = await dying;
      // the manager's retry lands on B: if A's write landed, B's is a conflict on the same version
      const retried = await viaB.publish('blog', 'job-1', base.version, out.version).then(
        (r) => r.version,
        (e: StorageRequestError) => e.code,
      );
      const site = await viaB.getSite('blog');
      expect(site.version).to.equal(out.version);
      expect(site.history.filter((h) => h.action === 'published')).to.have.length(1);
      expect(first === 'published' ? retried : 'retry published').to.be.oneOf(['PublishConflict', 'retry published']);
      if (first === 'cut off') expect(retried).to.equal(out.version);
      expect(sha(await readAll((await viaB.downloadArtifact('blog')).body))).to.equal(out.version);
    } finally {
      await Promise.all([terminate(A.proc), terminate(B.proc)]);
    }
  });

  it('the S3 server restarted mid-upload: the upload fails with 502 or lands, a retry lands, every acknowledged object is still there', async function () {
    this.timeout(120_000);
    const storage = await replica({ config: { gcGraceSeconds: 120 } });
    const site = await storage.admin.putSiteArtifact('blog', Buffer.from('before the restart'));
    const out = await forgeTarGzBuffer([{ path: 'index.html', content: 'edited' }]);
    const output = await storage.admin.putJobObject('job-1', 'output.tar.gz', out);
    await storage.admin.putJobObject('job-1', 'log', Buffer.from('a log'));
    // an upload under way (two of its three parts sent) when the server goes down
    const body = randomBytes(24 * 1024 * 1024);
    const parts = [body.subarray(0, 16 * 1024 * 1024), body.subarray(16 * 1024 * 1024)];
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const slow = Readable.from(
      (async function* () {
        yield parts[0]!;
        await held;
        yield parts[1]!;
      })(),
    );
    const inFlight = storage.admin.putJobObject('job-2', 'output.tar.gz', slow).then(
      (r) => r,
      (e: unknown) => e as StorageRequestError,
    );
    await waitFor('a multipart upload under way', async () => (await pendingUploads(s3, bucket)) > 0, 20_000, 50);
    await server.restart();
    release();
    const first = await inFlight;
    if (first instanceof Error) {
      expect([first.status, first.code]).to.deep.equal([502, 'UpstreamUnavailable']);
      const retried = await storage.admin.putJobObject('job-2', 'output.tar.gz', body);
      expect(retried.version).to.equal(sha(body));
    } else expect(first.version).to.equal(sha(body));
    // everything acknowledged before, during and after is readable, and the site moves on
    expect((await readAll((await storage.admin.downloadArtifact('blog')).body)).toString()).to.equal('before the restart');
    expect((await readAll((await storage.admin.getJobObject('job-1', 'log')).body)).toString()).to.equal('a log');
    expect(sha(await readAll((await storage.admin.getJobObject('job-2', 'output.tar.gz')).body))).to.equal(sha(body));
    const published = await storage.admin.publish('blog', 'job-1', site.version, output.version);
    expect(published.version).to.equal(output.version);
  });

  describe('start-up check of conditional writes', () => {
    /**
     * A stand-in for an S3 server that ignores If-None-Match and If-Match: a proxy in front of
     * SeaweedFS that answers 200 where SeaweedFS refused a conditional write (412). It does not
     * store what it "accepted"; it only makes the answers look like such a server's. (The real
     * server honouring them is the rest of this suite and seaweedfs.test.ts.)
     */
    let proxy: Server;
    before(async () => {
      const target = new URL(server.endpoint);
      proxy = createServer((req, res) => {
        const up = httpRequest(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
          (r) => {
            if (r.statusCode === 412) {
              r.resume();
              res.writeHead(200, { server: 'ForgetfulS3/1.0', etag: '"0"', 'content-length': '0' }).end();
              return;
            }
            res.writeHead(r.statusCode ?? 502, { ...r.headers, server: 'ForgetfulS3/1.0' });
            r.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      proxy.listen(0, '127.0.0.1');
      await new Promise((r) => proxy.once('listening', r));
    });
    after(() => new Promise((r) => proxy.close(r)));

    /** Starts storage with these settings (on top of small limits): its start-up error, or null if it started (then it is closed). */
    async function startupError(settings: Partial<StorageServerConfig>): Promise<Error | null> {
      return startStorageServer(
        {
          host: '127.0.0.1',
          port: 0,
          dataDir: '/nonexistent',
          adminToken: randomBytes(24).toString('hex'),
          tokenSecret: randomBytes(32).toString('hex'),
          maxArtifactBytes: 1024,
          maxManifestBytes: 1024,
          maxLogBytes: 1024,
          ...settings,
        },
        silentLogger,
      ).then(
        async (s) => {
          await s.close();
          return null;
        },
        (e: unknown) => e as Error,
      );
    }

    it('refuses to start on a server that ignores them, naming the server', async () => {
      const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const err = await startupError(s3StorageConfig({ server: { ...server, endpoint }, bucket }));
      expect(err?.message).to.match(/ForgetfulS3\/1\.0.*ignores If-None-Match: \* and If-Match/);
      // and on the real server behind it, it starts
      const ok = await startTestStorage({ s3: { server, bucket } });
      await ok.close();
    });

    it('refuses bad settings before it reaches the server, all at once', async () => {
      const err = await startupError({ backend: 's3', s3Endpoint: server.endpoint, gcGraceSeconds: 60 });
      expect(err?.message).to.include('PAGEWRIGHT_S3_BUCKET: is required');
      expect(err?.message).to.include('PAGEWRIGHT_S3_ENDPOINT: is plain http');
      expect(err?.message).to.include('PAGEWRIGHT_STORAGE_GC_GRACE_SECONDS: must be more than twice');
    });
  });
});
