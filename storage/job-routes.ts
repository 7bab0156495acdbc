/**
 * A job's objects (output.tar.gz, manifest.json, log, diff.patch, session.jsonl): one live object per name (a PUT
 * replaces the earlier one), all of them together within the job's quota, written only by the
 * admin or by a job token of an attempt that has not ended. Plus the admin's seal and delete.
 *
 * The quota is enforced while the body streams in: the upload may use what the job's other
 * objects leave of PAGEWRIGHT_STORAGE_MAX_JOB_BYTES, reading stops at the first byte over it
 * and the temp file is removed. The total is checked again under the job's lock when the
 * object is recorded, for two uploads racing to different names (the loser's blob is then
 * unreferenced and goes with the next collection).
 */
import { Readable } from 'node:stream';
import express, { type Express, type Request } from 'express';
import { z } from 'zod';
import { JobManifest } from '../common/schemas.js';
import { attemptOf } from './auth.js';
import type { StorageAppDeps } from './app.js';
import type { BlobBackend, BlobRef, PutBlobOptions } from './backend.js';
import { StorageError } from './errors.js';
import { jobParam, objectParam, putOptions, sendBlob } from './http.js';
import { blobOf, type JobObjectName, quotaExceeded } from './ref-store.js';

const CONTENT_TYPES: Record<JobObjectName, string> = {
  'output.tar.gz': 'application/gzip',
  'manifest.json': 'application/json',
  log: 'text/plain; charset=utf-8',
  'diff.patch': 'text/plain; charset=utf-8',
  'session.jsonl': 'application/jsonl',
};

/** What a follow-up's runner may read of the job it follows (storage/auth.ts). */
const FOLLOWABLE: ReadonlySet<JobObjectName> = new Set(['output.tar.gz', 'session.jsonl']);

const SealBody = z.strictObject({ attempt: z.number().int().positive() });

export function registerJobRoutes(app: Express, deps: StorageAppDeps): void {
  const { blobs, refs, auth, limits, logger } = deps;

  app.put('/jobs/:jobId/:name', async (req, res) => {
    const jobId = jobParam(req);
    const name = objectParam(req);
    const principal = await auth.authorize(req.headers.authorization, { kind: 'job', jobId }, 'job:write');
    const perObject = name === 'manifest.json' ? limits.maxManifestBytes : name === 'log' ? limits.maxLogBytes : limits.maxArtifactBytes;
    // the earlier object of this name is replaced, so it does not count
    const room = limits.maxJobBytes - (await refs.jobBytesExcept(jobId, name));
    const options = putOptions(
      req,
      Math.max(0, Math.min(perObject, room)),
      room < perObject ? () => quotaExceeded(jobId, limits.maxJobBytes) : undefined,
    );
    const record = (blob: BlobRef) =>
      refs.setJobObject(jobId, name, blob, { maxJobBytes: limits.maxJobBytes, ...withAttempt(attemptOf(principal)) }).then(() => blob);
    const blob = name === 'manifest.json' ? await putManifest(req, blobs, jobId, options, record) : await blobs.put(req, options, record);
    logger.info('job object stored', { job_id: jobId, object: name, version: blob.version, size: blob.size });
    res.status(201).setHeader('ETag', `"${blob.version}"`).json({ version: blob.version, size: blob.size });
  });

  app.get('/jobs/:jobId/:name', async (req, res) => {
    const jobId = jobParam(req);
    const name = objectParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'job', jobId, followable: FOLLOWABLE.has(name) }, 'job:write');
    const object = (await refs.getJob(jobId))?.objects[name];
    if (!object) throw new StorageError('ObjectNotFound', `job ${jobId} has no ${name}`);
    await sendBlob(req, res, blobs, blobOf(object), CONTENT_TYPES[name]);
  });

  app.get('/jobs/:jobId', async (req, res) => {
    const jobId = jobParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'job', jobId }, 'job:write');
    const job = await refs.getJob(jobId);
    // a deleted job's tombstone is not a job (unless the admin wrote to it since)
    if (!job || (job.deleted_at !== null && Object.keys(job.objects).length === 0))
      throw new StorageError('NotFound', `job ${jobId} has no objects`);
    res.json(job);
  });

  // the attempt has ended: its token may no longer write (or read); never lowered, idempotent
  app.post('/jobs/:jobId/seal', express.json({ limit: '4kb' }), async (req, res) => {
    const jobId = jobParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const body = SealBody.safeParse(req.body);
    if (!body.success)
      throw new StorageError('BadRequest', `seal body must be {attempt: positive integer}: ${body.error.issues[0]?.message}`);
    const sealedThrough = await refs.sealJob(jobId, body.data.attempt);
    logger.info('job sealed', { job_id: jobId, attempt: body.data.attempt, sealed_through: sealedThrough });
    res.json({ job_id: jobId, sealed_through: sealedThrough });
  });

  // the PagewrightJob is gone: drop its objects (the collector frees the blobs) and refuse its tokens
  app.delete('/jobs/:jobId', async (req, res) => {
    const jobId = jobParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const deleted = await refs.deleteJob(jobId);
    logger.info('job deleted', { job_id: jobId, objects: deleted });
    res.json({ job_id: jobId, deleted });
  });
}

function withAttempt(attempt: number | undefined): { attempt?: number } {
  return attempt === undefined ? {} : { attempt };
}

/** A manifest is validated whole before it is stored, so it is read into memory (it is small). */
async function putManifest(
  req: Request,
  blobs: BlobBackend,
  jobId: string,
  options: PutBlobOptions,
  record: (blob: BlobRef) => Promise<BlobRef>,
): Promise<BlobRef> {
  const overflow =
    options.tooLarge ?? (() => new StorageError('PayloadTooLarge', `manifest exceeds the limit of ${options.maxBytes} bytes`));
  if (options.declaredSize !== undefined && options.declaredSize > options.maxBytes) throw overflow();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > options.maxBytes) throw overflow();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks);
  let parsed: ReturnType<typeof JobManifest.safeParse>;
  try {
    parsed = JobManifest.safeParse(JSON.parse(text.toString('utf8')));
  } catch {
    throw new StorageError('InvalidManifest', 'manifest.json is not valid JSON');
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StorageError('InvalidManifest', `manifest.json: ${issue?.path.join('.')} ${issue?.message}`);
  }
  if (parsed.data.job_id !== jobId) throw new StorageError('InvalidManifest', `manifest.json is for job ${parsed.data.job_id}`);
  return blobs.put(Readable.from([text]), options, record);
}
