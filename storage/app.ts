/**
 * The storage HTTP API (DESIGN.md "storage"). Bodies are streamed into the blob store; no
 * route buffers an artifact. Every error is a JSON {error, message} with a 4xx/5xx status, and a
 * rejected request changes nothing on disk.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import type { Logger } from '../common/logger.js';
import { JOB_ID_PATTERN, JobManifest, SHA256_PATTERN, SITE_ID_PATTERN, Sha256 } from '../common/schemas.js';
import type { Authorizer } from './auth.js';
import type { BlobStore } from './blob-store.js';
import { contentDigestHeader, requestedSha256, unquoteEtag } from './digest.js';
import { StorageError } from './errors.js';
import { JobObjectName, type Precondition, type RefStore } from './ref-store.js';

export interface StorageLimits {
  maxArtifactBytes: number;
  maxManifestBytes: number;
  maxLogBytes: number;
}

export interface StorageAppDeps {
  blobs: BlobStore;
  refs: RefStore;
  auth: Authorizer;
  limits: StorageLimits;
  logger: Logger;
}

const PublishBody = z.strictObject({ job_id: z.string().regex(JOB_ID_PATTERN), if_match: Sha256 });

const CONTENT_TYPES: Record<JobObjectName, string> = {
  'output.tar.gz': 'application/gzip',
  'manifest.json': 'application/json',
  log: 'text/plain; charset=utf-8',
};

export function createStorageApp(deps: StorageAppDeps): express.Express {
  const { blobs, refs, auth, limits, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => void res.json({ ok: true }));
  app.get('/readyz', (_req, res) => void res.json({ ok: true }));

  app.put('/sites/:siteId/artifact', async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const pre = preconditionOf(req);
    await refs.checkSitePrecondition(siteId, pre);
    const blob = await blobs.put(req, putOptions(req, limits.maxArtifactBytes));
    const site = await refs.setSiteVersion(siteId, blob, pre);
    logger.info('site artifact stored', { site_id: siteId, version: blob.version, size: blob.size });
    res.status(201).setHeader('ETag', `"${site.version}"`).json({ version: blob.version, size: blob.size });
  });

  app.get('/sites/:siteId/artifact', async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'site', siteId }, 'site:read');
    const site = await refs.getSite(siteId);
    if (!site) throw new StorageError('SiteNotFound', `site ${siteId} has no artifact`);
    let version = site.version;
    const wanted = req.query.version;
    if (wanted !== undefined) {
      if (typeof wanted !== 'string' || !SHA256_PATTERN.test(wanted)) {
        throw new StorageError('InvalidVersion', 'version must be a lowercase hex sha256');
      }
      // only versions this site has had, so a token for one site cannot read another's blobs
      if (!site.history.some((h) => h.version === wanted)) {
        throw new StorageError('VersionNotFound', `site ${siteId} has no version ${wanted}`);
      }
      version = wanted;
    }
    await sendBlob(req, res, blobs, version, 'application/gzip');
  });

  app.get('/sites/:siteId', async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'site', siteId }, 'site:read');
    const site = await refs.getSite(siteId);
    if (!site) throw new StorageError('SiteNotFound', `site ${siteId} has no artifact`);
    res.setHeader('ETag', `"${site.version}"`).json(site);
  });

  app.post('/sites/:siteId/publish', express.json({ limit: '16kb' }), async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const body = PublishBody.safeParse(req.body);
    if (!body.success) {
      throw new StorageError('BadRequest', `publish body must be {job_id, if_match}: ${body.error.issues[0]?.message}`);
    }
    const job = await refs.getJob(body.data.job_id);
    const output = job?.objects['output.tar.gz'];
    if (!output) throw new StorageError('ObjectNotFound', `job ${body.data.job_id} has no output.tar.gz`);
    let site;
    try {
      site = await refs.setSiteVersion(siteId, output, { ifMatch: body.data.if_match, jobId: body.data.job_id });
    } catch (err) {
      if (err instanceof StorageError && err.code === 'PreconditionFailed') {
        throw new StorageError('PublishConflict', `cannot publish: ${err.message}`);
      }
      throw err;
    }
    logger.info('job output published', { site_id: siteId, job_id: body.data.job_id, version: site.version });
    res.setHeader('ETag', `"${site.version}"`).json({ version: site.version, size: site.size });
  });

  app.put('/jobs/:jobId/:name', async (req, res) => {
    const jobId = jobParam(req);
    const name = objectParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'job', jobId }, 'job:write');
    const blob =
      name === 'manifest.json'
        ? await putManifest(req, blobs, jobId, limits.maxManifestBytes)
        : await blobs.put(req, putOptions(req, name === 'log' ? limits.maxLogBytes : limits.maxArtifactBytes));
    await refs.setJobObject(jobId, name, blob);
    logger.info('job object stored', { job_id: jobId, object: name, version: blob.version, size: blob.size });
    res.status(201).setHeader('ETag', `"${blob.version}"`).json({ version: blob.version, size: blob.size });
  });

  app.get('/jobs/:jobId/:name', async (req, res) => {
    const jobId = jobParam(req);
    const name = objectParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'job', jobId }, 'job:write');
    const object = (await refs.getJob(jobId))?.objects[name];
    if (!object) throw new StorageError('ObjectNotFound', `job ${jobId} has no ${name}`);
    await sendBlob(req, res, blobs, object.version, CONTENT_TYPES[name]);
  });

  app.get('/jobs/:jobId', async (req, res) => {
    const jobId = jobParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'job', jobId }, 'job:write');
    const job = await refs.getJob(jobId);
    if (!job) throw new StorageError('NotFound', `job ${jobId} has no objects`);
    res.json(job);
  });

  app.use((req: Request) => {
    throw new StorageError('NotFound', `no route ${req.method} ${req.path}`);
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const storageError = toStorageError(err);
    if (storageError.status >= 500) logger.error('request failed', { method: req.method, path: req.path, error: String(err) });
    else logger.debug('request rejected', { method: req.method, path: req.path, code: storageError.code });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // the client may still be sending a body we refused; don't keep the socket to drain it
    if (!req.complete) res.setHeader('Connection', 'close');
    res.status(storageError.status).json({ error: storageError.code, message: storageError.message });
  });

  return app;
}

function siteParam(req: Request): string {
  const siteId = String(req.params.siteId);
  if (!SITE_ID_PATTERN.test(siteId)) {
    throw new StorageError('InvalidSiteId', 'site id must be a DNS label (lowercase letters, digits, "-", max 63 chars)');
  }
  return siteId;
}

function jobParam(req: Request): string {
  const jobId = String(req.params.jobId);
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new StorageError('InvalidJobId', 'job id must be lowercase letters, digits, "-" and ".", max 253 chars');
  }
  return jobId;
}

function objectParam(req: Request): JobObjectName {
  const parsed = JobObjectName.safeParse(req.params.name);
  if (!parsed.success) {
    throw new StorageError('NotFound', `job objects are ${JobObjectName.options.join(', ')}`);
  }
  return parsed.data;
}

function preconditionOf(req: Request): Precondition {
  const pre: Precondition = {};
  const ifMatch = req.headers['if-match'];
  if (ifMatch !== undefined) {
    const v = unquoteEtag(ifMatch);
    if (v !== '*' && !SHA256_PATTERN.test(v)) throw new StorageError('InvalidVersion', 'If-Match must be "*" or a sha256 version');
    pre.ifMatch = v;
  }
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw new StorageError('BadRequest', 'If-None-Match on PUT must be "*"');
    pre.ifNoneMatch = '*';
  }
  return pre;
}

function putOptions(req: Request, maxBytes: number) {
  const declared = req.headers['content-length'];
  const expected = requestedSha256(req.headers);
  return {
    maxBytes,
    ...(expected !== undefined ? { expectedSha256: expected } : {}),
    ...(declared !== undefined ? { declaredSize: Number(declared) } : {}),
  };
}

async function putManifest(req: Request, blobs: BlobStore, jobId: string, maxBytes: number) {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new StorageError('PayloadTooLarge', `manifest exceeds the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks);
  let parsed;
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
  return blobs.put(Readable.from([text]), putOptions(req, maxBytes));
}

async function sendBlob(req: Request, res: Response, blobs: BlobStore, version: string, contentType: string): Promise<void> {
  const size = await blobs.size(version);
  if (size === null) throw new StorageError('Internal', `blob ${version} is missing from the store`);
  res.setHeader('ETag', `"${version}"`);
  res.setHeader('X-Content-SHA256', version);
  res.setHeader('Repr-Digest', contentDigestHeader(version));
  const inm = req.headers['if-none-match'];
  if (inm !== undefined && inm.split(',').some((v) => unquoteEtag(v) === version)) {
    res.status(304).end();
    return;
  }
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(size));
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  try {
    await pipeline(blobs.createReadStream(version), res);
  } catch (err) {
    // a client that hangs up mid-download is not a server error
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
}

function toStorageError(err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  const e = err as { type?: string; status?: number; message?: string };
  // body-parser errors carry a status and a type
  if (e.type === 'entity.too.large') return new StorageError('PayloadTooLarge', 'request body is too large');
  if (e.type === 'entity.parse.failed') return new StorageError('BadRequest', 'request body is not valid JSON');
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return new StorageError('BadRequest', e.message ?? 'bad request');
  return new StorageError('Internal', 'internal error');
}
