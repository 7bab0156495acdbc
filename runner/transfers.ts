/**
 * Moving artifacts between the work dir and storage: streamed to and from files, sha256
 * checked, retried with backoff on transient failures (a fresh file stream per attempt).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { PagewrightError, isJobFailure } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type RetryOptions, isTransientError, withRetry } from '../common/retry.js';
import { type JobObjectName, type StorageClient, StorageRequestError } from '../common/storage-client.js';
import { Sha256Counter } from './archive.js';

export interface TransferOptions {
  deadline: number;
  signal: AbortSignal;
  logger: Logger;
  retries?: number;
  minRetryDelayMs?: number;
}

export interface FetchedArtifact {
  version: string;
  size: number;
}

/** Downloads the site's artifact (current, or `version`) into `dest`, verifying its sha256. */
export async function fetchSiteArtifact(
  storage: StorageClient,
  siteId: string,
  version: string | undefined,
  dest: string,
  opts: TransferOptions,
): Promise<FetchedArtifact> {
  return withRetry(
    async ({ signal }) => {
      try {
        const dl = await storage.downloadArtifact(siteId, { ...(version ? { version } : {}), signal });
        const counter = new Sha256Counter();
        await pipeline(dl.body, counter, createWriteStream(dest), { signal });
        const digest = counter.digest();
        // storage is content-addressed: the ETag is the sha256 the bytes must have
        if (digest !== dl.version || (version !== undefined && digest !== version)) {
          throw new PagewrightError('ArtifactCorrupt', `artifact sha256 ${digest} does not match ${version ?? dl.version}`);
        }
        return { version: digest, size: counter.bytes };
      } catch (err) {
        await rm(dest, { force: true });
        throw classifyStorageError(err, `site ${siteId} artifact`);
      }
    },
    retryPolicy(opts, 'artifact download failed, retrying'),
  );
}

/**
 * Downloads one object of another job (a follow-up's input: the output and the session of the
 * job it follows) into `dest`, verifying its sha256 against the ETag and, when given,
 * `version`; at most `maxBytes`. A missing object is FollowUpUnavailable: the job it follows
 * was deleted, or never stored it.
 */
export async function fetchJobObject(
  storage: StorageClient,
  jobId: string,
  name: JobObjectName,
  dest: string,
  want: { version?: string; maxBytes: number },
  opts: TransferOptions,
): Promise<FetchedArtifact> {
  return withRetry(
    async ({ signal }) => {
      try {
        const dl = await storage.getJobObject(jobId, name, signal);
        if (dl.size !== null && dl.size > want.maxBytes) {
          dl.body.destroy();
          throw new PagewrightError('ArtifactTooLarge', `job ${jobId} ${name} is ${dl.size} bytes, over the limit of ${want.maxBytes}`);
        }
        const counter = new Sha256Counter(want.maxBytes);
        await pipeline(dl.body, counter, createWriteStream(dest), { signal });
        const digest = counter.digest();
        if (digest !== dl.version || (want.version !== undefined && digest !== want.version)) {
          throw new PagewrightError(
            'ArtifactCorrupt',
            `job ${jobId} ${name} sha256 ${digest} does not match ${want.version ?? dl.version}`,
          );
        }
        return { version: digest, size: counter.bytes };
      } catch (err) {
        await rm(dest, { force: true });
        if (err instanceof StorageRequestError && err.status === 404)
          throw new PagewrightError('FollowUpUnavailable', `job ${jobId} has no ${name} (deleted, or never stored): ${err.message}`, {
            cause: err,
          });
        throw classifyStorageError(err, `job ${jobId} ${name}`);
      }
    },
    retryPolicy(opts, 'job object download failed, retrying', { job: jobId, object: name }),
  );
}

/** Uploads a file as one of the job's objects; the server must report the same sha256. */
export async function uploadJobFile(
  storage: StorageClient,
  jobId: string,
  name: JobObjectName,
  path: string,
  expected: { sha256: string; size: number },
  opts: TransferOptions,
): Promise<void> {
  await withRetry(
    async ({ signal }) => {
      try {
        const stored = await storage.putJobObject(jobId, name, createReadStream(path), { ...expected, signal });
        if (stored.version !== expected.sha256) {
          throw new PagewrightError('UploadFailed', `storage stored ${name} as ${stored.version}, expected ${expected.sha256}`);
        }
      } catch (err) {
        throw classifyStorageError(err, `job ${name}`, 'UploadFailed');
      }
    },
    retryPolicy(opts, 'upload failed, retrying', { object: name }),
  );
}

function isRetryableTransfer(err: unknown): boolean {
  if (!isJobFailure(err)) return isTransientError(err);
  switch (err.code) {
    // a digest mismatch is most likely a torn connection: worth another download
    case 'ArtifactCorrupt':
      return true;
    case 'StorageUnavailable':
    case 'UploadFailed':
      return isTransientError(err.cause);
    default:
      return false;
  }
}

/** Maps storage answers to job failure reasons; keeps the cause for retry decisions. */
function classifyStorageError(
  err: unknown,
  what: string,
  transientReason: 'StorageUnavailable' | 'UploadFailed' = 'StorageUnavailable',
): unknown {
  // before the job failures: a storage refusal is a PagewrightError too, with storage's code
  if (err instanceof StorageRequestError) {
    if (err.status === 404) return new PagewrightError('ArtifactNotFound', `${what} not found: ${err.message}`, { cause: err });
    return new PagewrightError(transientReason, `${what}: ${err.message}`, { cause: err });
  }
  if (err instanceof PagewrightError) return err;
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return err;
  if (isTransientError(err)) {
    return new PagewrightError(transientReason, `${what}: storage unreachable (${(err as Error).message})`, { cause: err });
  }
  return err;
}

/** Transfers retry transient failures with backoff, within the job's deadline, logging each retry. */
function retryPolicy(opts: TransferOptions, message: string, fields: Record<string, unknown> = {}): RetryOptions {
  return {
    retries: opts.retries ?? 6,
    deadline: opts.deadline,
    signal: opts.signal,
    minDelayMs: opts.minRetryDelayMs ?? 500,
    isRetryable: isRetryableTransfer,
    onRetry: ({ error, attempt, delayMs }) => opts.logger.warn(message, { ...fields, attempt, delay_ms: delayMs, error: String(error) }),
  };
}
