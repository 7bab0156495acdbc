/**
 * manager/sites/s3-target.ts against a real S3 server, SeaweedFS (test/support/seaweedfs.ts):
 * a site version synced into a bucket under a prefix as a static host serves it (one object per
 * file, Content-Type, sha256 metadata), only what changed uploaded again, what the version
 * dropped deleted and nothing outside the prefix, a large file through multipart, a missing
 * bucket named in the error, and a hostile archive that reaches no key at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { syncVersionToBucket } from '../../manager/sites/s3-target.js';
import { packDirectory } from '../../runner/archive.js';
import { type SeaweedFs, s3Client, startSeaweedFs } from '../support/seaweedfs.js';
import { forgeTarGzBuffer } from '../support/tar-forge.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MANIFEST = 'site/.pagewright-manifest.json';

describe('site versions synced to an S3 bucket (real SeaweedFS)', function () {
  this.timeout(60_000);
  let server: SeaweedFs;
  let s3: S3Client;
  let scratch: string;
  let n = 0;
  let bucket: string;

  before(async function () {
    this.timeout(20 * 60_000); // a cold first run builds weed (make seaweedfs does it up front)
    server = await startSeaweedFs();
    s3 = s3Client(server, server);
    scratch = await mkdtemp(join(tmpdir(), 'pw-s3-target-'));
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });
  // every test on a bucket of its own
  beforeEach(async () => {
    bucket = `pw-target-${process.pid}-${++n}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });

  /** Packs `files` (path -> content, or {link} for a symlink) with the runner's packer; returns the archive's path. */
  async function version(files: Record<string, string | Buffer | { link: string }>): Promise<string> {
    const dir = await mkdtemp(join(scratch, 'tree-'));
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      if (typeof content === 'object' && !Buffer.isBuffer(content)) await symlink(content.link, join(dir, path));
      else await writeFile(join(dir, path), content);
    }
    const archive = `${dir}.tar.gz`;
    await packDirectory(dir, archive);
    return archive;
  }

  async function keys(b = bucket): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await s3.send(new ListObjectsV2Command({ Bucket: b, ContinuationToken: token }));
      for (const o of page.Contents ?? []) found.set(o.Key!, o.ETag ?? '');
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  async function get(key: string): Promise<{ body: Buffer; contentType?: string; metadata: Record<string, string> }> {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return { body: Buffer.from(await out.Body!.transformToByteArray()), contentType: out.ContentType, metadata: out.Metadata ?? {} };
  }

  async function put(key: string, body: string): Promise<void> {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  const png = randomBytes(3000);
  const site = {
    'index.html': '<!doctype html><title>home</title>',
    'style.css': 'body { color: red }',
    'app.js': 'console.log("hi")',
    'img/image.png': png,
    LICENSE: 'Apache-2.0',
  };

  it('uploads every file of a first version with its Content-Type and sha256, byte for byte, and skips symlinks', async () => {
    const archive = await version({ ...site, 'latest.html': { link: 'index.html' } });
    const result = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive);
    const total = Object.values(site).reduce((sum, c) => sum + Buffer.byteLength(c), 0);
    expect(result).to.deep.equal({ uploaded: 5, deleted: 0, unchanged: 0, skipped: 1, bytes: total });

    expect([...(await keys()).keys()].sort()).to.deep.equal(
      [MANIFEST, 'site/LICENSE', 'site/app.js', 'site/img/image.png', 'site/index.html', 'site/style.css'].sort(),
    );
    const types: Record<string, string> = {
      'index.html': 'text/html; charset=utf-8',
      'style.css': 'text/css; charset=utf-8',
      'app.js': 'text/javascript; charset=utf-8',
      'img/image.png': 'image/png',
      LICENSE: 'application/octet-stream',
    };
    for (const [path, content] of Object.entries(site)) {
      const got = await get(`site/${path}`);
      const bytes = Buffer.from(content);
      expect(got.body.equals(bytes), path).to.equal(true);
      expect(got.contentType, path).to.equal(types[path]);
      expect(got.metadata['pagewright-sha256'], path).to.equal(sha(bytes));
    }
  });

  it('uploads nothing when the same version is synced again', async () => {
    const archive = await version(site);
    await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive);
    const before = await keys();
    const again = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive);
    expect(again).to.deep.equal({ uploaded: 0, deleted: 0, unchanged: 5, skipped: 0, bytes: 0 });
    expect(await keys()).to.deep.equal(before);
  });

  it('uploads only the changed and the new file and deletes the removed one', async () => {
    await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version(site));
    const { LICENSE: _removed, ...kept } = site;
    const next = { ...kept, 'style.css': 'body { color: blue }', 'about/index.html': '<title>about</title>' };
    const result = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version(next));
    expect(result).to.deep.equal({
      uploaded: 2,
      deleted: 1,
      unchanged: 3,
      skipped: 0,
      bytes: Buffer.byteLength(next['style.css']) + Buffer.byteLength(next['about/index.html']),
    });
    const now = await keys();
    expect(now.has('site/LICENSE')).to.equal(false);
    expect((await get('site/style.css')).body.toString()).to.equal('body { color: blue }');
    expect((await get('site/about/index.html')).body.toString()).to.equal('<title>about</title>');
    // and the manifest now describes this version: a third sync has nothing to do
    expect((await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version(next))).unchanged).to.equal(5);
  });

  it('re-uploads a file whose object changed behind the manifest (a crashed sync), even with the manifest unchanged', async () => {
    const archive = await version(site);
    await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive);
    // what a sync of another version that died before its manifest leaves; the same size, so
    // only the ETag the manifest recorded tells it apart
    await put('site/style.css', 'body { color: tan }');
    const result = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive);
    expect(result.uploaded).to.equal(1);
    expect((await get('site/style.css')).body.toString()).to.equal(site['style.css']);
  });

  it('never deletes outside the prefix, nor a key that only starts with the prefix string', async () => {
    const outside = ['other/keep.txt', 'site-old/x', 'sitemap.xml', 'keep.txt'];
    for (const key of outside) await put(key, 'not the site');
    await put('site/stale.html', 'from an older site');
    const result = await syncVersionToBucket(s3, { bucket, prefix: '/site/' }, await version(site));
    expect(result.deleted).to.equal(1);
    const now = await keys();
    expect(now.has('site/stale.html')).to.equal(false);
    for (const key of outside) expect(now.has(key), key).to.equal(true);
    // a version with nothing in common deletes the whole old site, and still only it
    const other = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version({ 'new.html': 'new' }));
    expect(other.deleted).to.equal(5);
    expect([...(await keys()).keys()].sort()).to.deep.equal([...outside, MANIFEST, 'site/new.html'].sort());
  });

  it('sends a 20 MiB file as a multipart upload that reads back identical', async () => {
    const big = randomBytes(20 * 1024 * 1024);
    const result = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version({ 'video/big.bin': big, 'index.html': 'x' }));
    expect(result).to.include({ uploaded: 2, bytes: big.length + 1 });
    // a multipart object's ETag is the digest of its parts' digests and their count: 3 parts of 8 MiB
    expect((await keys()).get('site/video/big.bin')).to.match(/-3"?$/);
    const got = await get('site/video/big.bin');
    expect(sha(got.body)).to.equal(sha(big));
    expect(got.metadata['pagewright-sha256']).to.equal(sha(big));
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).to.have.length(0);
  });

  it('names NoSuchBucket in the error for a bucket that does not exist', async () => {
    const archive = await version(site);
    const err = await syncVersionToBucket(s3, { bucket: `${bucket}-missing`, prefix: 'site' }, archive).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(PagewrightError);
    expect((err as PagewrightError).code).to.equal('TargetNotAllowed');
    expect((err as PagewrightError).message).to.include('NoSuchBucket');
  });

  it('refuses a hostile version, and no key outside the prefix appears', async () => {
    await syncVersionToBucket(s3, { bucket, prefix: 'site' }, await version(site));
    const before = await keys();
    for (const path of ['../escape.html', 'a/../../escape.html', '/abs.html', '..\\escape.html']) {
      const archive = join(scratch, `hostile-${randomBytes(4).toString('hex')}.tar.gz`);
      await writeFile(
        archive,
        await forgeTarGzBuffer([
          { path: 'index.html', content: 'defaced' },
          { path, content: 'escaped' },
        ]),
      );
      const err = await syncVersionToBucket(s3, { bucket, prefix: 'site' }, archive).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, path).to.be.instanceOf(PagewrightError);
      expect((err as PagewrightError).code, path).to.equal('UnsafeArchive');
    }
    const after = await keys();
    for (const key of after.keys()) expect(key.startsWith('site/'), key).to.equal(true);
    // refused before anything was written: not even index.html changed
    expect(after).to.deep.equal(before);
  });
});
