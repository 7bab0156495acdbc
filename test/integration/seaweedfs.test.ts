/**
 * The S3 server the tests will run storage's S3 backend against (issue 18), a real SeaweedFS
 * (test/support/seaweedfs.ts), pinned on what that backend will rest on, through the client it will
 * use (@aws-sdk/client-s3, path style, checksums only when required):
 * - keys: a wrong key is refused;
 * - conditional writes: create-only (If-None-Match: *) and compare-and-swap (If-Match) answer 412
 *   when they lose, and of concurrent create-only writes of one key exactly one wins; refs and
 *   pins will be built on this, so a SeaweedFS upgrade that breaks it must fail here first;
 * - multipart: a three-part upload comes back byte for byte, and an aborted one leaves no object.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { expect } from 'chai';
import { type SeaweedFs, s3Client, startSeaweedFs } from '../support/seaweedfs.js';

/** The HTTP status of a rejected S3 call (throws if the call succeeded or failed otherwise). */
async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (err) {
    if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode ?? -1;
    throw err;
  }
  throw new Error('the call succeeded');
}

async function body(s3: S3Client, Bucket: string, Key: string): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

describe('SeaweedFS as the S3 backend (real weed mini)', function () {
  // a cold first run builds weed from its Go module (~10 min); `make seaweedfs` does it up front
  this.timeout(60_000);
  let server: SeaweedFs;
  let s3: S3Client;
  const Bucket = 'pagewright-test';

  before(async function () {
    this.timeout(20 * 60_000);
    server = await startSeaweedFs();
    s3 = s3Client(server, server);
    await s3.send(new CreateBucketCommand({ Bucket }));
  });
  after(async () => {
    s3?.destroy();
    await server?.stop();
  });

  it('stores an object and gives it back', async () => {
    const data = randomBytes(64 * 1024);
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: 'put-get/blob', Body: data }));
    expect(put.ETag).to.be.a('string');
    expect((await body(s3, Bucket, 'put-get/blob')).equals(data)).to.equal(true);
  });

  it('refuses a wrong secret and an unknown key with 403', async () => {
    await s3.send(new PutObjectCommand({ Bucket, Key: 'auth/blob', Body: 'secret' }));
    for (const credentials of [
      { accessKeyId: server.accessKeyId, secretAccessKey: `${server.secretAccessKey}x` },
      { accessKeyId: 'PWUNKNOWNKEY', secretAccessKey: server.secretAccessKey },
    ]) {
      const wrong = s3Client(server, credentials, 1);
      try {
        expect(await statusOf(wrong.send(new GetObjectCommand({ Bucket, Key: 'auth/blob' })))).to.equal(403);
        expect(await statusOf(wrong.send(new PutObjectCommand({ Bucket, Key: 'auth/other', Body: 'x' })))).to.equal(403);
      } finally {
        wrong.destroy();
      }
    }
    expect(await statusOf(s3.send(new HeadObjectCommand({ Bucket, Key: 'auth/other' })))).to.equal(404);
  });

  it('a second create-only write (If-None-Match: *) gets 412 and leaves the first', async () => {
    const Key = 'create-only/blob';
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: 'first', IfNoneMatch: '*' }));
    expect(await statusOf(s3.send(new PutObjectCommand({ Bucket, Key, Body: 'second', IfNoneMatch: '*' })))).to.equal(412);
    expect((await body(s3, Bucket, Key)).toString()).to.equal('first');
  });

  it('If-Match with a stale ETag gets 412; with the current one it writes (200)', async () => {
    const Key = 'cas/ref';
    const v1 = await s3.send(new PutObjectCommand({ Bucket, Key, Body: 'v1' }));
    const v2 = await s3.send(new PutObjectCommand({ Bucket, Key, Body: 'v2', IfMatch: v1.ETag }));
    expect(v2.$metadata.httpStatusCode).to.equal(200);
    expect(v2.ETag).to.not.equal(v1.ETag);
    // v1's ETag is stale now
    expect(await statusOf(s3.send(new PutObjectCommand({ Bucket, Key, Body: 'lost', IfMatch: v1.ETag })))).to.equal(412);
    expect((await body(s3, Bucket, Key)).toString()).to.equal('v2');
    const v3 = await s3.send(new PutObjectCommand({ Bucket, Key, Body: 'v3', IfMatch: v2.ETag }));
    expect(v3.$metadata.httpStatusCode).to.equal(200);
    expect((await body(s3, Bucket, Key)).toString()).to.equal('v3');
  });

  it('of 10 concurrent create-only writes of one key exactly one wins, and its body is stored', async () => {
    const Key = 'race/blob';
    // no SDK retries: a retried loser would turn a 412 into a second attempt
    const racers = Array.from({ length: 10 }, () => s3Client(server, server, 1));
    try {
      const outcomes = await Promise.allSettled(
        racers.map(async (c, i) => c.send(new PutObjectCommand({ Bucket, Key, Body: `writer ${i}`, IfNoneMatch: '*' })).then(() => i)),
      );
      const winners = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const losers = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
      expect(winners).to.have.length(1);
      expect(losers.map((e) => (e instanceof S3ServiceException ? e.$metadata.httpStatusCode : String(e)))).to.deep.equal(
        Array(9).fill(412),
      );
      expect((await body(s3, Bucket, Key)).toString()).to.equal(`writer ${winners[0]}`);
    } finally {
      for (const c of racers) c.destroy();
    }
  });

  it('a 3-part multipart upload of ~12 MiB comes back byte for byte', async () => {
    const Key = 'multipart/blob';
    // S3's minimum part is 5 MiB (all but the last)
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024), randomBytes(2 * 1024 * 1024 + 12345)];
    const whole = Buffer.concat(parts);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    const uploaded = [];
    for (const [i, part] of parts.entries()) {
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body: part }));
      uploaded.push({ ETag, PartNumber: i + 1 });
    }
    await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: uploaded } }));
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
    expect(head.ContentLength).to.equal(whole.length);
    const got = await body(s3, Bucket, Key);
    expect(got.length).to.equal(whole.length);
    expect(createHash('sha256').update(got).digest('hex')).to.equal(createHash('sha256').update(whole).digest('hex'));
  });

  it('an aborted multipart upload leaves no object and no pending upload', async () => {
    const Key = 'multipart/aborted';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(5 * 1024 * 1024) }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
    expect(await statusOf(s3.send(new HeadObjectCommand({ Bucket, Key })))).to.equal(404);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'multipart/aborted' }));
    expect(listed.Contents ?? []).to.have.length(0);
    const pending = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: 'multipart/aborted' }));
    expect((pending.Uploads ?? []).map((u) => u.UploadId)).to.not.include(UploadId);
  });
});
