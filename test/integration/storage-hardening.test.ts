/**
 * Storage against an attacker holding a job token, and against careless clients: per-attempt
 * credentials refused once sealed, per-job quotas, one live object per name, publish checks,
 * job deletion, collection of unreferenced blobs, and connection timeouts. Real storage over
 * HTTP, as storage.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { StorageClient, StorageRequestError } from '../../common/storage-client.js';
import { startTestStorage, type TestStorage, type TestStorageOptions } from '../support/storage.js';
import { type ForgedEntry, forgeTarGzBuffer } from '../support/tar-forge.js';

async function refusal(p: Promise<unknown>, status: number, code: string): Promise<StorageRequestError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${status} ${code}`).to.be.instanceOf(StorageRequestError);
  expect((err as StorageRequestError).status, (err as Error).message).to.equal(status);
  expect((err as StorageRequestError).code).to.equal(code);
  return err as StorageRequestError;
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const blobPath = (storage: TestStorage, version: string) => join(storage.dataDir, 'blobs', 'sha256', version.slice(0, 2), version);
const blobExists = (storage: TestStorage, version: string) =>
  stat(blobPath(storage, version)).then(
    () => true,
    () => false,
  );
const blobCount = async (storage: TestStorage) => Object.keys(await storage.snapshot()).filter((p) => p.startsWith('blobs/')).length;

describe('storage hardening', function () {
  this.timeout(30_000);
  let storage: TestStorage;
  const open = async (opts: TestStorageOptions = {}) => (storage = await startTestStorage({ maxArtifactBytes: 8 * 1024 * 1024, ...opts }));
  const jobClient = async (jobId: string, attempt: number, siteId = 'blog') =>
    new StorageClient({ baseUrl: storage.url, token: await storage.tokens.issue({ jobId, siteId, attempt, ttlSeconds: 600 }) });
  afterEach(async () => storage?.close());

  describe('seal: an attempt credential is refused once the attempt has ended', () => {
    it('refuses writes and reads of a sealed attempt with 403 AttemptEnded, lets the next attempt in, never lowers, and survives a restart', async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'pw-storage-seal-'));
      const config = { adminToken: randomBytes(24).toString('hex'), tokenSecret: randomBytes(32).toString('hex') };
      try {
        await open({ dataDir, config });
        await storage.admin.putSiteArtifact('blog', Buffer.from('site'));
        const first = await jobClient('job-1', 1);
        await first.putJobObject('job-1', 'log', Buffer.from('attempt 1'));

        expect(await storage.admin.seal('job-1', 1)).to.deep.equal({ job_id: 'job-1', sealed_through: 1 });
        await refusal(first.putJobObject('job-1', 'log', Buffer.from('late write')), 403, 'AttemptEnded');
        await refusal(first.putJobObject('job-1', 'output.tar.gz', Buffer.from('late output')), 403, 'AttemptEnded');
        await refusal(first.downloadArtifact('blog'), 403, 'AttemptEnded');
        await refusal(first.getJobObject('job-1', 'log'), 403, 'AttemptEnded');
        expect(await (await storage.admin.getJobObject('job-1', 'log')).body.text()).to.equal('attempt 1');

        const second = await jobClient('job-1', 2);
        await second.putJobObject('job-1', 'log', Buffer.from('attempt 2'));
        // idempotent, and never lowered
        expect((await storage.admin.seal('job-1', 1)).sealed_through).to.equal(1);
        expect((await storage.admin.seal('job-1', 2)).sealed_through).to.equal(2);
        expect((await storage.admin.seal('job-1', 1)).sealed_through).to.equal(2);
        await refusal(second.putJobObject('job-1', 'log', Buffer.from('late')), 403, 'AttemptEnded');
        expect((await storage.admin.getJob('job-1')).sealed_through).to.equal(2);
        // other jobs are not affected
        await (await jobClient('job-2', 1)).putJobObject('job-2', 'log', Buffer.from('fine'));

        await storage.close();
        await open({ dataDir, config });
        await refusal((await jobClient('job-1', 2)).putJobObject('job-1', 'log', Buffer.from('after restart')), 403, 'AttemptEnded');
        await (await jobClient('job-1', 3)).putJobObject('job-1', 'log', Buffer.from('attempt 3'));
      } finally {
        await storage.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    });

    it('refuses an upload that was already streaming when its attempt was sealed, and records nothing', async () => {
      await open();
      const first = await jobClient('job-1', 1);
      let sealed = false;
      const body = Readable.from(
        (async function* () {
          for (let i = 0; i < 200 && !sealed; i++) {
            yield Buffer.alloc(16 * 1024, i);
            await new Promise((r) => setTimeout(r, 5));
          }
          yield Buffer.from('end');
        })(),
      );
      const upload = first.putJobObject('job-1', 'output.tar.gz', body);
      // the upload passed the token check and is writing its temp file
      await eventually(async () => (await readdir(join(storage.dataDir, 'tmp'))).length > 0, 'the upload to start');
      await storage.admin.seal('job-1', 1);
      sealed = true;
      await refusal(upload, 403, 'AttemptEnded');
      expect((await storage.admin.getJob('job-1')).objects).to.deep.equal({});
    });
  });

  describe('per-job quota and one live object per name', () => {
    const MiB = 1024 * 1024;

    it('cuts off an upload that takes the job over its quota: 413 JobQuotaExceeded, reading stops, nothing is left behind', async () => {
      await open({ config: { maxJobBytes: MiB } });
      await storage.admin.putJobObject('job-q', 'log', Buffer.alloc(600_000, 1));
      const before = await storage.snapshot();
      let produced = 0;
      const hundredMiB = Readable.from(
        (async function* () {
          for (let i = 0; i < 1600; i++) {
            produced += 64 * 1024;
            yield Buffer.alloc(64 * 1024, 2);
          }
        })(),
      );
      await refusal(storage.admin.putJobObject('job-q', 'output.tar.gz', hundredMiB), 413, 'JobQuotaExceeded');
      expect(produced, 'bytes the client got to send').to.be.below(32 * MiB);
      // no temp file, no blob, the record unchanged
      expect(await storage.snapshot()).to.deep.equal(before);
      expect(Object.keys((await storage.admin.getJob('job-q')).objects)).to.deep.equal(['log']);
      // announced up front: refused before reading
      await refusal(
        storage.admin.putJobObject('job-q', 'output.tar.gz', Buffer.alloc(500_000), { size: 500_000 }),
        413,
        'JobQuotaExceeded',
      );
      // the per-object limit still answers PayloadTooLarge when it is the tighter one
      await refusal(storage.admin.putJobObject('job-r', 'log', Buffer.alloc(MiB + 1)), 413, 'PayloadTooLarge');
      expect(await storage.snapshot()).to.deep.equal(before);
    });

    it('of two uploads racing to different names, only one fits the quota', async () => {
      await open({ config: { maxJobBytes: MiB } });
      // slow bodies: both pass the check at the start before either is recorded
      const slow = (fill: number) =>
        Readable.from(
          (async function* () {
            for (let i = 0; i < 10; i++) {
              await new Promise((r) => setTimeout(r, 20));
              yield Buffer.alloc(60_000, fill);
            }
          })(),
        );
      const results = await Promise.allSettled([
        storage.admin.putJobObject('job-race', 'output.tar.gz', slow(1)),
        storage.admin.putJobObject('job-race', 'log', slow(2)),
      ]);
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(lost).to.have.length(1);
      expect((lost[0]!.reason as StorageRequestError).code).to.equal('JobQuotaExceeded');
      const objects = Object.values((await storage.admin.getJob('job-race')).objects);
      expect(objects.map((o) => o.size)).to.deep.equal([600_000]);
    });

    it('a PUT of a name replaces the earlier object, so re-uploads never add up, and the replaced blobs are collected', async () => {
      await open({ config: { maxJobBytes: MiB, gcGraceSeconds: 0, gcIntervalSeconds: 0 } });
      const versions: string[] = [];
      // five 700 KB outputs under a 1 MiB quota: only possible if each replaces the last
      for (let i = 0; i < 5; i++) versions.push((await storage.admin.putJobObject('job-r', 'output.tar.gz', randomBytes(700_000))).version);
      const job = await storage.admin.getJob('job-r');
      expect(Object.keys(job.objects)).to.deep.equal(['output.tar.gz']);
      expect(job.objects['output.tar.gz']?.version).to.equal(versions[4]);
      expect(await blobCount(storage)).to.equal(5);
      expect(await storage.admin.gc()).to.deep.equal({ deleted: 4, kept: 1, bytes_freed: 4 * 700_000 });
      expect(await blobCount(storage)).to.equal(1);
      expect(await blobExists(storage, versions[4]!)).to.equal(true);
    });
  });

  describe('publish checks', () => {
    const LIMITED = { config: { maxArchiveEntries: 10, maxUnpackedBytes: 1000 } };
    const cases: Array<[string, ForgedEntry[] | Buffer, RegExp]> = [
      [
        'a symlink to /etc',
        [
          { path: 'index.html', content: 'x' },
          { path: 'etc-link', type: 'symlink', linkpath: '/etc' },
        ],
        /"etc-link": symlink to absolute path \/etc leaves the site/,
      ],
      ['a symlink that climbs', [{ path: 'up', type: 'symlink', linkpath: '../outside' }], /"up": symlink target \.\.\/outside climbs/],
      [
        'a setuid file',
        [
          { path: 'bin/', type: 'dir' },
          { path: 'bin/x', content: '#!/bin/sh\n', mode: 0o4755 },
        ],
        /"bin\/x": setuid bit \(mode 4755\)/,
      ],
      [
        'a FIFO',
        [
          { path: 'index.html', content: 'x' },
          { path: 'pipe', type: 'fifo' },
        ],
        /"pipe": entry type FIFO is not allowed/,
      ],
      ['a device', [{ path: 'null', type: 'chardev' }], /"null": entry type CharacterDevice is not allowed/],
      ['a path that climbs', [{ path: '../evil.txt', content: 'x' }], /"\.\.\/evil\.txt": path climbs/],
      [
        'a hard link out of the site',
        [{ path: 'h', type: 'hardlink', linkpath: '/etc/passwd' }],
        /"h": hard link to \/etc\/passwd outside/,
      ],
      [
        'too many entries',
        Array.from({ length: 11 }, (_, i): ForgedEntry => ({ path: `f${String(i).padStart(2, '0')}`, content: 'x' })),
        /more than 10 entries \(at "f10"\)/,
      ],
      [
        'too many bytes',
        [
          { path: 'small.txt', content: 'x' },
          { path: 'big.bin', content: Buffer.alloc(2000) },
        ],
        /more than 1000 bytes \(at "big\.bin"\)/,
      ],
      ['bytes that are not a tar.gz', Buffer.from('not an archive'), /output\.tar\.gz is not a valid tar\.gz/],
    ];
    for (const [name, entries, message] of cases) {
      it(`refuses ${name} with 422 UnsafeOutput naming it, and changes nothing`, async () => {
        await open(LIMITED);
        const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
        const body = Buffer.isBuffer(entries) ? entries : await forgeTarGzBuffer(entries);
        const output = await storage.admin.putJobObject('job-u', 'output.tar.gz', body);
        const before = await storage.snapshot();
        const err = await refusal(storage.admin.publish('blog', 'job-u', base.version, output.version), 422, 'UnsafeOutput');
        expect(err.message).to.match(message);
        expect(await storage.snapshot()).to.deep.equal(before);
        expect((await storage.admin.getSite('blog')).version).to.equal(base.version);
      });
    }

    it('publishes only the version the runner reported: 409 OutputMismatch once the output was replaced', async () => {
      await open(LIMITED);
      const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
      const reported = await storage.admin.putJobObject(
        'job-m',
        'output.tar.gz',
        await forgeTarGzBuffer([{ path: 'index.html', content: 'the runner' }]),
      );
      // something else with the job's token uploads after the runner reported
      const other = await (await jobClient('job-m', 1)).putJobObject(
        'job-m',
        'output.tar.gz',
        await forgeTarGzBuffer([{ path: 'index.html', content: 'someone else' }]),
      );
      const before = await storage.snapshot();
      const err = await refusal(storage.admin.publish('blog', 'job-m', base.version, reported.version), 409, 'OutputMismatch');
      expect(err.message).to.contain(other.version).and.to.contain(reported.version);
      expect(await storage.snapshot()).to.deep.equal(before);
      // the stored one, named by its version, publishes (the manager's choice, not storage's)
      const published = await storage.admin.publish('blog', 'job-m', base.version, other.version);
      expect(published.version).to.equal(other.version);
      expect((await storage.admin.getSite('blog')).history[0]).to.include({ version: other.version, job_id: 'job-m' });
    });
  });

  describe('DELETE /jobs/{jobId}', () => {
    it("removes the job's objects, refuses its tokens from then on, is idempotent, and frees the blobs at the next collection", async () => {
      await open({ config: { gcGraceSeconds: 0, gcIntervalSeconds: 0 } });
      const runner = await jobClient('job-d', 1);
      const output = await runner.putJobObject('job-d', 'output.tar.gz', Buffer.from('output'));
      const log = await runner.putJobObject('job-d', 'log', Buffer.from('log'));
      await storage.admin.putJobObject('job-keep', 'log', Buffer.from('another job'));

      expect(await storage.admin.deleteJob('job-d')).to.deep.equal({ job_id: 'job-d', deleted: ['output.tar.gz', 'log'] });
      await refusal(storage.admin.getJob('job-d'), 404, 'NotFound');
      await refusal(storage.admin.getJobObject('job-d', 'log'), 404, 'ObjectNotFound');
      await refusal(runner.putJobObject('job-d', 'log', Buffer.from('still here')), 403, 'AttemptEnded');
      await refusal((await jobClient('job-d', 7)).putJobObject('job-d', 'log', Buffer.from('a later attempt')), 403, 'AttemptEnded');
      expect(await storage.admin.deleteJob('job-d')).to.deep.equal({ job_id: 'job-d', deleted: [] });

      expect(await storage.admin.gc()).to.deep.equal({ deleted: 2, kept: 1, bytes_freed: output.size + log.size });
      expect(await blobExists(storage, output.version)).to.equal(false);
      expect(await (await storage.admin.getJobObject('job-keep', 'log')).body.text()).to.equal('another job');
    });
  });

  describe('garbage collection', () => {
    it('deletes exactly the unreferenced blobs older than the grace period', async () => {
      await open({ config: { gcGraceSeconds: 3600, gcIntervalSeconds: 0 } });
      const v1 = await storage.admin.putSiteArtifact('blog', Buffer.from('site v1')); // history
      const v2 = await storage.admin.putSiteArtifact('blog', Buffer.from('site v2')); // current
      const replaced = await storage.admin.putJobObject('job-a', 'output.tar.gz', Buffer.from('first output'));
      const live = await storage.admin.putJobObject('job-a', 'output.tar.gz', Buffer.from('second output'));
      const ofDeleted = await storage.admin.putJobObject('job-b', 'log', Buffer.from('log of a deleted job'));
      await storage.admin.deleteJob('job-b');
      // published, then its job deleted: the site still references it
      const shopBase = await storage.admin.putSiteArtifact('shop', Buffer.from('shop base'));
      const published = await storage.admin.putJobObject(
        'job-c',
        'output.tar.gz',
        await forgeTarGzBuffer([{ path: 'index.html', content: 'shop' }]),
      );
      await storage.admin.publish('shop', 'job-c', shopBase.version, published.version);
      await storage.admin.deleteJob('job-c');
      // everything so far is two hours old
      const old = new Date(Date.now() - 2 * 3600 * 1000);
      for (const v of [v1, v2, replaced, live, ofDeleted, shopBase, published]) await utimes(blobPath(storage, v.version), old, old);
      // young and unreferenced: an upload may be about to reference it
      const young = await storage.admin.putJobObject('job-y', 'log', Buffer.from('young, replaced'));
      const youngLive = await storage.admin.putJobObject('job-y', 'log', Buffer.from('young, live'));

      const report = await storage.admin.gc();
      expect(report).to.deep.equal({ deleted: 2, kept: 7, bytes_freed: replaced.size + ofDeleted.size });
      for (const gone of [replaced, ofDeleted]) expect(await blobExists(storage, gone.version), gone.version).to.equal(false);
      for (const kept of [v1, v2, live, shopBase, published, young, youngLive])
        expect(await blobExists(storage, kept.version), kept.version).to.equal(true);
      expect(await (await storage.admin.downloadArtifact('blog', { version: v1.version })).body.text()).to.equal('site v1');
      expect(await storage.admin.gc()).to.deep.equal({ deleted: 0, kept: 7, bytes_freed: 0 });
    });

    it('runs periodically when an interval is set', async () => {
      await open({ config: { gcGraceSeconds: 0, gcIntervalSeconds: 0.1 } });
      const first = await storage.admin.putJobObject('job-p', 'log', Buffer.from('first'));
      await storage.admin.putJobObject('job-p', 'log', Buffer.from('second'));
      await eventually(async () => !(await blobExists(storage, first.version)), 'the periodic collection');
    });

    it('keeps every referenced blob while uploads, replacements and publishes race the collector', async () => {
      await open({ config: { gcGraceSeconds: 0, gcIntervalSeconds: 0 } });
      const base = await storage.admin.putSiteArtifact('blog', Buffer.from('base'));
      let ifMatch = base.version;
      const work = async (i: number) => {
        const jobId = `job-race-${i % 4}`;
        // same content again and again: uploads rename over blobs the collector may be removing
        const output = await storage.admin.putJobObject(
          jobId,
          'output.tar.gz',
          await forgeTarGzBuffer([{ path: 'index.html', content: `v${i % 3}` }]),
        );
        await storage.admin.putJobObject(jobId, 'log', Buffer.from(`log ${i % 2}`));
        if (i % 5 === 0) {
          const published = await storage.admin.publish('blog', jobId, ifMatch, output.version).catch(() => null);
          if (published) ifMatch = published.version;
        }
      };
      const sweeps = (async () => {
        for (let n = 0; n < 40; n++) await storage.admin.gc();
      })();
      await Promise.all([...Array.from({ length: 40 }, (_, i) => work(i)), sweeps]);
      const site = await storage.admin.getSite('blog');
      const referenced = new Set([site.version, ...site.history.map((h) => h.version)]);
      for (let j = 0; j < 4; j++)
        for (const o of Object.values((await storage.admin.getJob(`job-race-${j}`)).objects)) referenced.add(o.version);
      for (const v of referenced) expect(await blobExists(storage, v), `referenced blob ${v}`).to.equal(true);
    });
  });

  describe('connection timeouts', () => {
    const rawConnection = async () => {
      const { hostname, port } = new URL(storage.url);
      const socket = connect(Number(port), hostname);
      await once(socket, 'connect');
      const received: Buffer[] = [];
      socket.on('data', (c: Buffer) => received.push(c));
      const closed = once(socket, 'close').then(() => Date.now());
      return { socket, closed, text: () => Buffer.concat(received).toString() };
    };

    it('closes a connection that sends nothing once the idle timeout has passed', async () => {
      await open({ config: { idleTimeoutSeconds: 0.5, headersTimeoutSeconds: 20 } });
      const started = Date.now();
      const { closed } = await rawConnection();
      const elapsed = (await closed) - started;
      expect(elapsed).to.be.within(400, 5000);
    });

    it('answers 408 and closes when the headers trickle in longer than the headers timeout', async () => {
      await open({ config: { idleTimeoutSeconds: 20, headersTimeoutSeconds: 1 } });
      const started = Date.now();
      const conn = await rawConnection();
      conn.socket.write('GET /healthz HTTP/1.1\r\nHost: storage\r\n');
      // a byte every 100 ms: never idle, never done
      const trickle = setInterval(() => conn.socket.writable && conn.socket.write('X'), 100);
      try {
        const elapsed = (await conn.closed) - started;
        expect(elapsed).to.be.within(900, 5000);
        expect(conn.text()).to.match(/^HTTP\/1\.1 408/);
      } finally {
        clearInterval(trickle);
      }
    });

    it('closes a kept-alive connection after the keep-alive timeout', async () => {
      await open({ config: { idleTimeoutSeconds: 20, keepAliveTimeoutSeconds: 0.5 } });
      const conn = await rawConnection();
      conn.socket.write('GET /healthz HTTP/1.1\r\nHost: storage\r\n\r\n');
      await eventually(async () => conn.text().includes('{"ok":true}'), 'the response');
      const answered = Date.now();
      const elapsed = (await conn.closed) - answered;
      expect(elapsed).to.be.within(300, 5000);
    });
  });
});
