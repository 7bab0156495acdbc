/**
 * Syncs one site version (a tar.gz already validated by the archive rules) into an S3 bucket
 * under a prefix, laid out as a static site host serves it: one object per file, at
 * `<prefix><path>`, with the Content-Type the host will send.
 *
 * Only what changed is written. ListObjectsV2 returns no metadata and a HEAD per object is one
 * round trip per file, so the sync keeps a manifest object (`<prefix>.pagewright-manifest.json`:
 * key -> sha256, Content-Type and the ETag S3 answered when it stored the object). A file is
 * unchanged when its sha256 and Content-Type match the manifest AND the listing still has the
 * object with that ETag and size. The ETag check is what makes a crashed sync safe to follow: a
 * sync that died after uploading leaves objects whose ETag the (old) manifest does not know, so
 * they are uploaded again even if the next version has the old content back.
 *
 * Order: uploads, then deletes of what the version no longer has, then the manifest. A sync
 * cut off anywhere leaves every file of the old site that the new one did not replace still
 * servable, and the old manifest, so the next sync redoes whatever was not finished. Deletes
 * come from a listing under `<prefix>` (which ends with `/`, so `site/` never matches
 * `site-old/x`), are checked against the prefix once more, and never include the manifest.
 * Two syncs of one prefix at once are not safe: the caller runs one per site at a time.
 *
 * Memory: the archive is extracted into a temp directory first (the first pass, which also
 * refuses any entry the archive rules would, before anything is written to S3), then each file
 * is hashed and uploaded from disk, `concurrency` files at a time (default 8). So memory does
 * not grow with the site; disk does (the version's unpacked size, which the archive limits
 * bound, under os.tmpdir()). PutObject streams from the file; files over 8 MiB go through
 * @aws-sdk/lib-storage's multipart Upload, which buffers queueSize * partSize per upload, so at
 * most MULTIPART_AT_ONCE of them run at once (about 32 MiB).
 *
 * Symlinks are skipped (counted in `skipped`): S3 has no links, and static hosts do not follow
 * them. Hard links are regular files that share content, so they become objects like any file.
 *
 * The caller builds the S3Client (storage/s3-backend.ts shows how) and owns its retries: the
 * SDK's maxAttempts; nothing here retries.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { contentType as contentTypeOf } from 'mime-types';
import pLimit from 'p-limit';
import { type ReadEntry, Unpack } from 'tar';
import { z } from 'zod';
import { entryViolation, isRegularFileType, normalizeEntryPath } from '../../common/archive-rules.js';
import { feedTar, headerOf } from '../../common/archive-scan.js';
import { PagewrightError } from '../../common/errors.js';

export interface S3TargetSpec {
  bucket: string;
  /** Key prefix of the site ('' or unset: the bucket's root). Leading and doubled slashes are dropped, a trailing one added. */
  prefix?: string;
}

export interface SyncOptions {
  signal?: AbortSignal;
  /** Files hashed and uploaded at once (default 8). */
  concurrency?: number;
}

export interface SyncResult {
  /** Objects written: new files and changed ones. */
  uploaded: number;
  /** Objects under the prefix removed because the version no longer has them. */
  deleted: number;
  /** Files already in the bucket with this content and Content-Type. */
  unchanged: number;
  /** Entries that did not become objects: symlinks. */
  skipped: number;
  /** Bytes of file content uploaded. */
  bytes: number;
}

const MANIFEST_NAME = '.pagewright-manifest.json';
const SHA256_METADATA = 'pagewright-sha256';
const DEFAULT_CONCURRENCY = 8;
/** Above this a file goes through multipart (also the part size). */
const MULTIPART_BYTES = 8 * 1024 * 1024;
const MULTIPART_QUEUE = 2;
const MULTIPART_AT_ONCE = 2;
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000;

/** S3's answers that retrying will not change: the target (bucket, credentials, region) is wrong. */
const TARGET_REFUSALS = new Set([
  'NoSuchBucket',
  'AccessDenied',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidBucketName',
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
]);

const ManifestEntry = z.object({ sha256: z.string(), contentType: z.string(), etag: z.string() });
type ManifestEntry = z.infer<typeof ManifestEntry>;
const Manifest = z.object({ version: z.literal(1), objects: z.record(z.string(), ManifestEntry) });

interface ListedObject {
  size: number;
  etag: string;
}

interface SiteFile {
  key: string;
  /** Where the first pass extracted it. */
  diskPath: string;
}

export async function syncVersionToBucket(
  client: S3Client,
  spec: S3TargetSpec,
  archivePath: string,
  opts: SyncOptions = {},
): Promise<SyncResult> {
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new PagewrightError('InvalidConfig', `concurrency must be a positive integer, got ${concurrency}`);
  }
  const prefix = normalizePrefix(spec.prefix ?? '');
  const manifestKey = prefix + MANIFEST_NAME;
  // the first failing upload stops the others (and a caller's abort stops all)
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const dir = await mkdtemp(join(tmpdir(), 'pagewright-s3-sync-'));
  try {
    const { files, skipped } = await extractVersion(archivePath, dir, prefix, manifestKey, signal);
    const listed = await listUnder(client, spec.bucket, prefix, signal);
    const previous = await readManifest(client, spec.bucket, manifestKey, signal);
    const next: Record<string, ManifestEntry> = {};
    const result: SyncResult = { uploaded: 0, deleted: 0, unchanged: 0, skipped, bytes: 0 };

    const limit = pLimit(concurrency);
    const multipart = pLimit(MULTIPART_AT_ONCE);
    const syncFile = async (file: SiteFile): Promise<void> => {
      signal.throwIfAborted();
      const { size, sha256 } = await hashFile(file.diskPath, signal);
      const contentType = contentTypeOfKey(file.key);
      const known = previous[file.key];
      const present = listed.get(file.key);
      if (
        known &&
        present &&
        known.sha256 === sha256 &&
        known.contentType === contentType &&
        known.etag === present.etag &&
        present.size === size
      ) {
        next[file.key] = known;
        result.unchanged++;
        return;
      }
      const put = { client, bucket: spec.bucket, key: file.key, path: file.diskPath, size, sha256, contentType, signal };
      const etag = size > MULTIPART_BYTES ? await multipart(() => uploadMultipart(put)) : await putObject(put);
      next[file.key] = { sha256, contentType, etag };
      result.uploaded++;
      result.bytes += size;
    };
    // the first failure in time, not in file order: the others it aborted fail with AbortErrors
    let firstFailure: { err: unknown } | undefined;
    await Promise.allSettled(
      [...files.values()].map((file) =>
        limit(() =>
          syncFile(file).catch((err: unknown) => {
            firstFailure ??= { err };
            stop.abort(err);
          }),
        ),
      ),
    );
    // every upload has settled, so none still reads the temp directory the finally removes
    if (firstFailure) throw firstFailure.err;

    const stale = [...listed.keys()].filter((key) => key !== manifestKey && key.startsWith(prefix) && !files.has(key));
    for (let i = 0; i < stale.length; i += DELETE_BATCH) {
      await deleteBatch(client, spec.bucket, stale.slice(i, i + DELETE_BATCH), signal);
      result.deleted += Math.min(DELETE_BATCH, stale.length - i);
    }
    await writeManifest(client, spec.bucket, manifestKey, next, signal);
    return result;
  } catch (err) {
    throw asSyncError(err, opts.signal);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `/a//b` -> `a/b/`; '' stays ''. `.` and `..` segments are refused: a host would resolve them, S3 does not. */
function normalizePrefix(prefix: string): string {
  const segments = prefix.split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new PagewrightError('TargetNotAllowed', `S3 prefix ${JSON.stringify(prefix)} has a "." or ".." segment`);
  }
  return segments.length === 0 ? '' : `${segments.join('/')}/`;
}

/**
 * From the extension only: mime-types would read a bare name such as `json` as an extension.
 * Text types carry `; charset=utf-8` (mime-types adds it).
 */
function contentTypeOfKey(key: string): string {
  const ext = posix.extname(key);
  return (ext && contentTypeOf(ext)) || 'application/octet-stream';
}

/**
 * Extracts the version's directories and files into `dir` and returns its files by key. The
 * archive was validated, but this is what decides the keys, so every entry's path, type and
 * link are checked again (common/archive-rules.ts) and the first unsafe one refuses the version
 * before anything reaches the bucket.
 */
async function extractVersion(
  archivePath: string,
  dir: string,
  prefix: string,
  manifestKey: string,
  signal: AbortSignal,
): Promise<{ files: Map<string, SiteFile>; skipped: number }> {
  const files = new Map<string, SiteFile>();
  let skipped = 0;
  let refusal: PagewrightError | null = null;
  const unpack: Unpack = new Unpack({
    cwd: dir,
    strict: true,
    preservePaths: false,
    preserveOwner: false,
    unlink: true,
    noMtime: true,
    filter: (_path, entry) => {
      const e = entry as ReadEntry;
      if (refusal) return false;
      const why = entryViolation(headerOf(e));
      const name = normalizeEntryPath(e.path);
      const key = prefix + name;
      if (why) refusal = new PagewrightError('UnsafeArchive', `site version entry ${JSON.stringify(e.path)}: ${why}`);
      else if (key === manifestKey)
        refusal = new PagewrightError('UnsafeArchive', `site version has a file at ${MANIFEST_NAME}, the sync's own manifest`);
      if (refusal) {
        unpack.abort(refusal);
        return false;
      }
      if (e.type === 'SymbolicLink') {
        skipped++;
        return false;
      }
      if (e.type === 'Directory') {
        // readable whatever the archive says: the sync runs as whoever the manager is
        e.mode = 0o755;
        return true;
      }
      if (isRegularFileType(e.type) || e.type === 'Link') {
        if (name === '.') {
          refusal = new PagewrightError('UnsafeArchive', `site version has a file at its root path ${JSON.stringify(e.path)}`);
          unpack.abort(refusal);
          return false;
        }
        e.mode = 0o644;
        // tar writes the raw path under dir; a later entry of the same path replaces it, as in the bucket
        files.set(key, { key, diskPath: join(dir, e.path) });
        return true;
      }
      return false;
    },
  });
  const input = createReadStream(archivePath, { highWaterMark: 1 << 20 });
  const onAbort = () => unpack.abort(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    signal.throwIfAborted();
    await feedTar(input, unpack);
  } catch (err) {
    if (refusal) throw refusal;
    if (signal.aborted) throw signal.reason;
    // feedTar rejects with the input's own error as the cause when the file could not be read
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') {
      throw new PagewrightError('ArtifactNotFound', `site version ${archivePath} does not exist`, { cause: err });
    }
    throw new PagewrightError('ArtifactCorrupt', `site version ${archivePath} could not be read: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return { files, skipped };
}

async function hashFile(path: string, signal: AbortSignal): Promise<{ size: number; sha256: string }> {
  const st = await lstat(path);
  if (!st.isFile()) throw new PagewrightError('ArtifactCorrupt', `site version entry ${path} did not extract as a regular file`);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { signal })) hash.update(chunk as Buffer);
  return { size: st.size, sha256: hash.digest('hex') };
}

async function listUnder(client: S3Client, bucket: string, prefix: string, signal: AbortSignal): Promise<Map<string, ListedObject>> {
  const listed = new Map<string, ListedObject>();
  let token: string | undefined;
  do {
    const page: ListObjectsV2CommandOutput = await client
      .send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: signal })
      .catch((err: unknown) => {
        throw s3Error(err, `listing s3://${bucket}/${prefix}`);
      });
    for (const o of page.Contents ?? []) {
      if (o.Key !== undefined) listed.set(o.Key, { size: o.Size ?? -1, etag: normalizeEtag(o.ETag) });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return listed;
}

/** The last sync's manifest; none, or one this code cannot read, means nothing is known unchanged. */
async function readManifest(client: S3Client, bucket: string, key: string, signal: AbortSignal): Promise<Record<string, ManifestEntry>> {
  let text: string;
  try {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
    text = (await out.Body?.transformToString('utf8')) ?? '';
  } catch (err) {
    if (
      err instanceof S3ServiceException &&
      (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404) &&
      err.name !== 'NoSuchBucket'
    ) {
      return {};
    }
    throw s3Error(err, `reading s3://${bucket}/${key}`);
  }
  try {
    const parsed = Manifest.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data.objects : {};
  } catch {
    return {};
  }
}

async function writeManifest(
  client: S3Client,
  bucket: string,
  key: string,
  objects: Record<string, ManifestEntry>,
  signal: AbortSignal,
): Promise<void> {
  // sorted: uploads finish in any order, and the same version should give the same manifest
  const sorted = Object.fromEntries(Object.entries(objects).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const body = JSON.stringify({ version: 1, objects: sorted });
  await client
    .send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: 'application/json',
        ContentLength: Buffer.byteLength(body),
        // a host serving the prefix may serve this too: never from a stale cache
        CacheControl: 'no-store',
      }),
      { abortSignal: signal },
    )
    .catch((err: unknown) => {
      throw s3Error(err, `writing s3://${bucket}/${key}`);
    });
}

interface PutFile {
  client: S3Client;
  bucket: string;
  key: string;
  path: string;
  size: number;
  sha256: string;
  contentType: string;
  signal: AbortSignal;
}

/** Stores the file and returns the ETag S3 gave it. */
async function putObject(f: PutFile): Promise<string> {
  const out = await f.client
    .send(
      new PutObjectCommand({
        Bucket: f.bucket,
        Key: f.key,
        Body: createReadStream(f.path),
        ContentLength: f.size,
        ContentType: f.contentType,
        Metadata: { [SHA256_METADATA]: f.sha256 },
      }),
      { abortSignal: f.signal },
    )
    .catch((err: unknown) => {
      throw s3Error(err, `uploading s3://${f.bucket}/${f.key}`);
    });
  return normalizeEtag(out.ETag);
}

async function uploadMultipart(f: PutFile): Promise<string> {
  f.signal.throwIfAborted();
  const upload = new Upload({
    client: f.client,
    params: {
      Bucket: f.bucket,
      Key: f.key,
      Body: createReadStream(f.path),
      ContentType: f.contentType,
      Metadata: { [SHA256_METADATA]: f.sha256 },
    },
    partSize: MULTIPART_BYTES,
    queueSize: MULTIPART_QUEUE,
    // a failed upload is aborted, so no part of it outlives the sync
    leavePartsOnError: false,
  });
  const onAbort = () => void upload.abort().catch(() => undefined);
  f.signal.addEventListener('abort', onAbort, { once: true });
  try {
    return normalizeEtag((await upload.done()).ETag);
  } catch (err) {
    throw s3Error(err, `uploading s3://${f.bucket}/${f.key} (multipart)`);
  } finally {
    f.signal.removeEventListener('abort', onAbort);
  }
}

async function deleteBatch(client: S3Client, bucket: string, keys: string[], signal: AbortSignal): Promise<void> {
  const out = await client
    .send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }), {
      abortSignal: signal,
    })
    .catch((err: unknown) => {
      throw s3Error(err, `deleting ${keys.length} objects from s3://${bucket}`);
    });
  // DeleteObjects answers 200 and lists the keys it could not delete
  const first = out.Errors?.[0];
  if (first) {
    const what = `deleting s3://${bucket}/${first.Key ?? '?'} (and ${out.Errors!.length - 1} more)`;
    const code = first.Code !== undefined && TARGET_REFUSALS.has(first.Code) ? 'TargetNotAllowed' : 'TargetUnavailable';
    throw new PagewrightError(code, `S3 failed while ${what}: ${first.Code ?? '?'}: ${first.Message ?? ''}`);
  }
}

/** ETags as S3 sends them are quoted; some servers drop the quotes in one answer and not another. */
function normalizeEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

/**
 * A refusal of the target itself (no such bucket, denied, bad credentials) is InvalidConfig:
 * the same sync would fail again. Anything else (5xx, throttling, a dropped connection) is
 * StorageUnavailable, an infrastructure failure worth a retry. The S3 error name stays in the
 * message either way.
 */
function s3Error(err: unknown, what: string): unknown {
  if (err instanceof PagewrightError || isAbort(err)) return err;
  if (err instanceof S3ServiceException) {
    const status = err.$metadata.httpStatusCode ?? '?';
    const code = TARGET_REFUSALS.has(err.name) ? 'TargetNotAllowed' : 'TargetUnavailable';
    return new PagewrightError(code, `S3 failed while ${what}: ${err.name} (HTTP ${status}): ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PagewrightError('TargetUnavailable', `S3 failed while ${what}: ${message}`, { cause: err });
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** The caller's abort is Cancelled; every other failure already is a PagewrightError, or becomes Internal. */
function asSyncError(err: unknown, callerSignal: AbortSignal | undefined): PagewrightError {
  if (callerSignal?.aborted && !(err instanceof PagewrightError)) {
    return new PagewrightError('Cancelled', 'the sync to S3 was aborted', { cause: callerSignal.reason });
  }
  if (err instanceof PagewrightError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PagewrightError('Internal', `syncing to S3 failed: ${message}`, { cause: err });
}
