/**
 * The s3 backend (backend.ts): blobs and records in an S3-compatible bucket, shared by any
 * number of storage replicas. Nothing it needs for correctness lives in process memory:
 *
 * - Records (PREFIX/records/...) change by conditional writes: If-Match on the ETag read,
 *   If-None-Match: * to create. init() proves the server honours both (a second create-only
 *   write must fail, a write against a made-up ETag must fail) and storage refuses to start
 *   otherwise, naming the server: without them two replicas would lose each other's updates.
 * - Blobs (PREFIX/blobs/<ms>-<random>) are one object per upload, named before the body's
 *   digest is known, so an upload streams straight to its final key (multipart for large
 *   bodies, through @aws-sdk/lib-storage; a failed or cut-off upload is aborted, and a replica
 *   killed mid-upload leaves an incomplete upload that the sweep aborts after the grace period).
 *   Equal content uploaded twice is stored twice; the collector frees what no record keeps.
 * - The collector may run in every replica at once. What keeps it off a blob about to be
 *   referenced, without pins:
 *     * an upload: its key carries its start time (ms); it must be referenced within
 *       grace - skew of that, or the upload fails (503-like, retried by the client); a sweep
 *       deletes only keys started more than grace ago. A reference written in time is thus
 *       written before the sweep read the records, so the sweep sees it.
 *     * publish and rollback, which reference an old blob anew: a lease
 *       (PREFIX/leases/<blob>/<ms>-<random>) is written before the record that already
 *       references the blob is read, and renewed while the operation runs; a sweep lists the
 *       leases after reading the records and keeps every blob with a lease younger than grace.
 *   Both rest on the replicas' clocks agreeing within `clockSkewSeconds`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { BlobBackend, BlobRef, PutBlobOptions, RecordBackend, StoredRecord, SweepReport, WriteCondition } from './backend.js';
import { HashingLimiter, tooLarge } from './blob-store.js';
import { StorageError } from './errors.js';
import { OffThreadHasher } from './off-thread-hasher.js';

export interface S3BackendConfig {
  bucket: string;
  /** Unset: AWS's endpoint for the region. */
  endpoint?: string | undefined;
  region: string;
  /** Prepended to every key ('' or ending in '/'). */
  prefix: string;
  forcePathStyle: boolean;
  /** A PEM bundle to trust for an https endpoint. */
  caFile?: string | undefined;
  /** How far apart the replicas' clocks may be (the collector's margin). */
  clockSkewSeconds: number;
  /** Credentials; unset: the SDK's default chain (env, web identity, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** SDK attempts per request (retries of throttling, 5xx and dropped connections). */
  maxAttempts?: number;
}

/** Parts of a multipart upload; memory per upload is about PART_BYTES * QUEUE_SIZE. */
const PART_BYTES = 8 * 1024 * 1024;
const QUEUE_SIZE = 4;
const BLOB_NAME = /^(\d{13})-[0-9a-f]{16}$/;
const LEASE_NAME = /^(\d{13})-[0-9a-f]{8}$/;

function createS3Client(config: S3BackendConfig): S3Client {
  const ca = config.caFile ? readFileSync(config.caFile) : undefined;
  return new S3Client({
    region: config.region,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    forcePathStyle: config.forcePathStyle,
    ...(config.credentials ? { credentials: config.credentials } : {}),
    // the SDK's default CRC checksums (since 2025) are refused by several S3-compatible servers
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: config.maxAttempts ?? 4,
    requestHandler: {
      connectionTimeout: 10_000,
      // no byte for this long on a request: the SDK retries it
      requestTimeout: 120_000,
      ...(ca ? { httpsAgent: new Agent({ ca, keepAlive: true }) } : {}),
    },
  });
}

export class S3Backend {
  readonly blobs: S3Blobs;
  readonly records: S3Records;
  readonly #client: S3Client;
  readonly #config: S3BackendConfig;

  /** `graceSeconds` must exceed twice config.clockSkewSeconds (open-backend.ts checks it). */
  constructor(config: S3BackendConfig, graceSeconds: number, client: S3Client = createS3Client(config)) {
    this.#client = client;
    this.#config = config;
    this.blobs = new S3Blobs(client, config, graceSeconds);
    this.records = new S3Records(client, config);
  }

  /** Proves the bucket is reachable with these credentials and honours conditional writes. */
  async init(): Promise<void> {
    await proveConditionalWrites(this.#client, this.#config);
  }

  close(): Promise<void> {
    return this.blobs.close();
  }
}

export class S3Blobs implements BlobBackend {
  readonly kind = 's3' as const;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #graceMs: number;
  readonly #skewMs: number;
  readonly #hasher = new OffThreadHasher();

  constructor(client: S3Client, config: S3BackendConfig, graceSeconds: number) {
    this.#client = client;
    this.#bucket = config.bucket;
    this.#prefix = config.prefix;
    this.#graceMs = graceSeconds * 1000;
    this.#skewMs = config.clockSkewSeconds * 1000;
  }

  close(): Promise<void> {
    return this.#hasher.close();
  }

  /** How long after its start a blob may still be referenced (the collector keeps it that long and then some). */
  get #protectedMs(): number {
    return this.#graceMs - 2 * this.#skewMs;
  }

  async put<T>(body: Readable, opts: PutBlobOptions, use: (blob: BlobRef) => Promise<T>): Promise<T> {
    const overflow = opts.tooLarge ?? (() => tooLarge(opts.maxBytes));
    if (opts.declaredSize !== undefined && opts.declaredSize > opts.maxBytes) throw overflow();
    const started = Date.now();
    const key = `blobs/${String(started).padStart(13, '0')}-${randomBytes(8).toString('hex')}`;
    const hash = this.#hasher.session();
    const meter = new HashingLimiter(opts.maxBytes, hash, overflow);
    // the request body feeds the meter; an error either side ends both
    body.on('error', (err) => meter.destroy(err));
    body.pipe(meter);
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.#bucket, Key: this.#prefix + key, Body: meter, ContentType: 'application/octet-stream' },
      partSize: PART_BYTES,
      queueSize: QUEUE_SIZE,
      // a failed multipart upload is aborted, so no part outlives it
      leavePartsOnError: false,
    });
    let version: string;
    try {
      await upload.done();
      version = await hash.digest();
    } catch (err) {
      hash.drop();
      body.unpipe(meter);
      if (meter.overflowed) throw overflow();
      throw asUpstream(err, 'storing a blob');
    }
    const blob: BlobRef = { version, size: meter.bytes, key };
    if (opts.expectedSha256 !== undefined && opts.expectedSha256 !== version) {
      await this.#delete(key);
      throw new StorageError('DigestMismatch', `body sha256 is ${version}, the request said ${opts.expectedSha256}`);
    }
    if (Date.now() - started > this.#protectedMs) {
      // the collector may already count this blob as abandoned: do not reference it
      await this.#delete(key);
      throw new StorageError(
        'UpstreamUnavailable',
        `the upload took longer than ${Math.round(this.#protectedMs / 1000)} s (the collector's grace period less the clock skew); send it again`,
      );
    }
    return use(blob);
  }

  async protect<T>(blob: BlobRef, fn: () => Promise<T>): Promise<T> {
    if (blob.key === undefined) return fn();
    const leases: string[] = [];
    const lease = async () => {
      const name = `leases/${blob.key}/${String(Date.now()).padStart(13, '0')}-${randomBytes(4).toString('hex')}`;
      await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + name, Body: '', ContentLength: 0 }));
      leases.push(name);
    };
    await lease().catch((err: unknown) => {
      throw asUpstream(err, 'leasing a blob');
    });
    // renewed well inside the protected window while the operation (a publish's scan) runs
    const renew = setInterval(() => void lease().catch(() => undefined), Math.max(1000, this.#protectedMs / 3));
    renew.unref();
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await Promise.all(leases.map((l) => this.#delete(l).catch(() => undefined)));
    }
  }

  referenceOf(blob: BlobRef): string {
    // a record without a key was not written by this backend: it keeps no object alive
    return blob.key ?? `sha256:${blob.version}`;
  }

  async size(blob: BlobRef): Promise<number | null> {
    if (blob.key === undefined) return null;
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + blob.key }));
      return head.ContentLength ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw asUpstream(err, 'reading a blob');
    }
  }

  async open(blob: BlobRef): Promise<{ body: Readable; size: number } | null> {
    if (blob.key === undefined) return null;
    try {
      const got = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + blob.key }));
      return { body: got.Body as Readable, size: got.ContentLength ?? blob.size };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw asUpstream(err, 'reading a blob');
    }
  }

  /** See the header for why this order is safe against uploads and publishes in any replica. */
  async sweep(referenced: () => Promise<Set<string>>, graceSeconds: number): Promise<SweepReport> {
    const cutoff = Date.now() - graceSeconds * 1000;
    const report: SweepReport = { deleted: 0, kept: 0, bytes_freed: 0 };
    const refs = await referenced();
    const leased = new Set<string>();
    const staleLeases: string[] = [];
    for await (const { key } of this.#list('leases/')) {
      const slash = key.lastIndexOf('/');
      const at = LEASE_NAME.exec(key.slice(slash + 1));
      if (!at) continue;
      if (Number(at[1]) >= cutoff) leased.add(key.slice('leases/'.length, slash));
      else staleLeases.push(key);
    }
    for await (const { key, size } of this.#list('blobs/')) {
      const at = BLOB_NAME.exec(key.slice('blobs/'.length));
      if (!at || refs.has(key) || leased.has(key) || Number(at[1]) >= cutoff) {
        report.kept++;
        continue;
      }
      await this.#delete(key);
      report.deleted++;
      report.bytes_freed += size;
    }
    for (const key of staleLeases) await this.#delete(key);
    await this.#abortAbandonedUploads(cutoff);
    return report;
  }

  /** Multipart uploads a killed replica left: older than the grace period, nobody completes them. */
  async #abortAbandonedUploads(cutoff: number): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.#client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.#bucket,
          Prefix: `${this.#prefix}blobs/`,
          ...(keyMarker ? { KeyMarker: keyMarker } : {}),
          ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
        }),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated?.getTime() ?? 0) >= cutoff) continue;
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: u.Key, UploadId: u.UploadId }));
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
  }

  async *#list(under: string): AsyncGenerator<{ key: string; size: number }> {
    yield* listKeys(this.#client, this.#bucket, this.#prefix, under);
  }

  async #delete(key: string): Promise<void> {
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
  }
}

export class S3Records implements RecordBackend {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(client: S3Client, config: S3BackendConfig) {
    this.#client = client;
    this.#bucket = config.bucket;
    this.#prefix = `${config.prefix}records/`;
  }

  async read(path: string): Promise<StoredRecord | null> {
    try {
      const got = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + path }));
      const text = (await got.Body?.transformToString('utf8')) ?? '';
      if (!got.ETag) throw new StorageError('UpstreamUnavailable', `the S3 server sent ${path} without an ETag`);
      return { text, tag: got.ETag };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw asUpstream(err, `reading ${path}`);
    }
  }

  async write(path: string, text: string, condition: WriteCondition): Promise<boolean> {
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#prefix + path,
          Body: text,
          ContentType: 'application/json',
          ...('absent' in condition ? { IfNoneMatch: '*' } : { IfMatch: condition.tag }),
        }),
      );
      return true;
    } catch (err) {
      // 412: the record moved on; 409: a conditional write racing another (AWS's answer)
      if (statusOf(err) === 412 || statusOf(err) === 409) return false;
      throw asUpstream(err, `writing ${path}`);
    }
  }

  async *list(dir: string): AsyncGenerator<string> {
    for await (const { key } of listKeys(this.#client, this.#bucket, this.#prefix, `${dir}/`)) {
      const name = key.slice(dir.length + 1);
      if (!name.includes('/')) yield name;
    }
  }
}

async function* listKeys(client: S3Client, bucket: string, prefix: string, under: string): AsyncGenerator<{ key: string; size: number }> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix + under, ...(token ? { ContinuationToken: token } : {}) }),
      );
    } catch (err) {
      throw asUpstream(err, `listing ${under}`);
    }
    for (const o of page.Contents ?? []) if (o.Key) yield { key: o.Key.slice(prefix.length), size: o.Size ?? 0 };
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/**
 * The start-up check: a create-only write, then the same again (must fail: 412), then a write
 * against a made-up ETag (must fail: 412). A server that lets either through would let two
 * replicas overwrite each other's site versions, so storage does not start on it.
 */
async function proveConditionalWrites(client: S3Client, config: Pick<S3BackendConfig, 'bucket' | 'prefix' | 'endpoint'>): Promise<void> {
  const key = `${config.prefix}probe/${randomUUID()}`;
  const where = `bucket ${config.bucket} at ${config.endpoint ?? 'AWS'}`;
  // the server's name, from its Server header, for the refusal message
  const server: { name?: string } = {};
  const probeName = 'pagewrightProbeServerHeader';
  client.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      server.name ??= (out.response as { headers?: Record<string, string> }).headers?.server;
      return out;
    },
    { step: 'deserialize', name: probeName },
  );
  const put = (extra: { IfNoneMatch?: string; IfMatch?: string }) =>
    client.send(new PutObjectCommand({ Bucket: config.bucket, Key: key, Body: 'pagewright conditional-write probe', ...extra }));
  const refused = async (extra: { IfNoneMatch?: string; IfMatch?: string }) => {
    try {
      await put(extra);
      return false;
    } catch (err) {
      server.name ??= serverOf(err);
      if (statusOf(err) === 412 || statusOf(err) === 409) return true;
      throw err;
    }
  };
  try {
    try {
      await put({ IfNoneMatch: '*' });
    } catch (err) {
      throw new StorageError('UpstreamUnavailable', `cannot write to ${where}: ${describe(err)}`);
    }
    const ignoredNoneMatch = !(await refused({ IfNoneMatch: '*' }));
    const ignoredMatch = !(await refused({ IfMatch: '"00000000000000000000000000000000"' }));
    if (ignoredNoneMatch || ignoredMatch) {
      const which = [ignoredNoneMatch ? 'If-None-Match: *' : null, ignoredMatch ? 'If-Match' : null].filter(Boolean).join(' and ');
      throw new StorageError(
        'BadRequest',
        `the S3 server of ${where}${server.name ? ` (${server.name})` : ''} ignores ${which} on PutObject; storage's compare-and-swap needs conditional writes, so it will not start on this server`,
      );
    }
  } finally {
    client.middlewareStack.remove(probeName);
    await client.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: key })).catch(() => undefined);
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function serverOf(err: unknown): string | undefined {
  const headers = (err as { $response?: { headers?: Record<string, string> } } | null)?.$response?.headers;
  return headers?.server;
}

function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404 || (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.name === 'NotFound'));
}

function describe(err: unknown): string {
  if (err instanceof S3ServiceException) return `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'}): ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

function asUpstream(err: unknown, what: string): unknown {
  if (err instanceof StorageError) return err;
  return new StorageError('UpstreamUnavailable', `S3 failed while ${what}: ${describe(err)}`);
}
