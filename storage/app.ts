/**
 * The storage HTTP API (DESIGN.md "storage"). Bodies are streamed into the blob store; no
 * route buffers an artifact. Every error is a JSON {error, message} with a 4xx/5xx status
 * (common/error-middleware.ts), and a rejected request changes nothing on disk. Job objects,
 * seal and delete: job-routes.ts.
 */
import express from 'express';
import { z } from 'zod';
import type { ArchiveLimits } from '../common/archive-rules.js';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { JOB_ID_PATTERN, SHA256_PATTERN, SITE_ID_PATTERN, Sha256 } from '../common/schemas.js';
import type { Authorizer } from './auth.js';
import type { BlobBackend } from './backend.js';
import { StorageError } from './errors.js';
import type { BlobCollector } from './gc.js';
import type { StorageMetrics } from './metrics.js';
import { preconditionOf, putOptions, sendBlob, siteParam } from './http.js';
import { registerJobRoutes } from './job-routes.js';
import { checkStoredOutput } from './output-check.js';
import { blobOf, type RefStore } from './ref-store.js';

interface StorageLimits {
  maxArtifactBytes: number;
  maxManifestBytes: number;
  maxLogBytes: number;
  /** A job's live objects together. */
  maxJobBytes: number;
  /** What a published output may unpack to: the runners' unpack limits. */
  archive: ArchiveLimits;
}

export interface StorageAppDeps {
  blobs: BlobBackend;
  refs: RefStore;
  auth: Authorizer;
  collector: BlobCollector;
  metrics: StorageMetrics;
  limits: StorageLimits;
  logger: Logger;
}

/** `version`: the sha256 of the output the runner reported; only that output is published. */
const PublishBody = z.strictObject({
  job_id: z.string().regex(JOB_ID_PATTERN),
  if_match: Sha256,
  version: Sha256,
  /** The job's name (recorded as who published; job_id is its uid). */
  by: z.string().min(1).max(253).optional(),
});
/** `to`: a version in the site's history; `if_match`: the version the caller saw current; `by`: who asked (recorded). */
const RollbackBody = z.strictObject({ to: Sha256, if_match: Sha256, by: z.string().min(1).max(512).nullable().default(null) });
const SitePage = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(1000),
  after: z.string().regex(SITE_ID_PATTERN).optional(),
});
/** Who pushed a site version (the admin caller says so; recorded in the history). */
const BY_HEADER = 'x-pagewright-by';

export function createStorageApp(deps: StorageAppDeps): express.Express {
  const { blobs, refs, auth, collector, metrics, limits, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(metrics.middleware());

  // no credential: counts by route and code only, like the gateway's
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  app.get('/healthz', (_req, res) => void res.json({ ok: true }));
  app.get('/readyz', (_req, res) => void res.json({ ok: true }));

  app.put('/sites/:siteId/artifact', async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const pre = preconditionOf(req);
    const by = byHeader(req.headers[BY_HEADER]);
    await refs.checkSitePrecondition(siteId, pre);
    const { blob, site } = await blobs.put(req, putOptions(req, limits.maxArtifactBytes), async (blob) => ({
      blob,
      site: await refs.setSiteVersion(siteId, blob, pre, { action: 'pushed', by }),
    }));
    logger.info('site artifact stored', { site_id: siteId, version: blob.version, size: blob.size });
    res.status(201).setHeader('ETag', `"${site.version}"`).json({ version: blob.version, size: blob.size });
  });

  app.get('/sites/:siteId/artifact', async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'site', siteId }, 'site:read');
    const site = await refs.getSite(siteId);
    if (!site) throw new StorageError('SiteNotFound', `site ${siteId} has no artifact`);
    let blob = blobOf(site);
    const wanted = req.query.version;
    if (wanted !== undefined) {
      if (typeof wanted !== 'string' || !SHA256_PATTERN.test(wanted)) {
        throw new StorageError('InvalidVersion', 'version must be a lowercase hex sha256');
      }
      // only versions this site has had, so a token for one site cannot read another's blobs
      const entry = site.history.find((h) => h.version === wanted);
      if (!entry) throw new StorageError('VersionNotFound', `site ${siteId} has no version ${wanted}`);
      blob = blobOf(entry);
    }
    await sendBlob(req, res, blobs, blob, 'application/gzip');
  });

  // every site, by id, one page at a time: ?limit= (1..1000, default 1000) and ?after=<last id seen>
  app.get('/sites', async (req, res) => {
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const page = SitePage.safeParse(req.query);
    if (!page.success)
      throw new StorageError('BadRequest', `GET /sites takes ?limit=1..1000&after=SITE_ID: ${page.error.issues[0]?.message}`);
    const { limit, after } = page.data;
    const ids: string[] = [];
    for await (const id of refs.siteIds()) if (after === undefined || id > after) ids.push(id);
    ids.sort();
    const sites = [];
    for (const id of ids.slice(0, limit)) {
      const site = await refs.getSite(id);
      if (site) sites.push({ site_id: id, version: site.version, size: site.size, updated_at: site.updated_at, revision: site.revision });
    }
    res.json({ sites, ...(ids.length > limit ? { next_after: ids[limit - 1] } : {}) });
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
      throw new StorageError('BadRequest', `publish body must be {job_id, if_match, version}: ${body.error.issues[0]?.message}`);
    }
    const site = await publish(deps, siteId, body.data.job_id, body.data.if_match, body.data.version, body.data.by ?? null);
    logger.info('job output published', { site_id: siteId, job_id: body.data.job_id, version: site.version });
    res.setHeader('ETag', `"${site.version}"`).json({ version: site.version, size: site.size });
  });

  app.post('/sites/:siteId/rollback', express.json({ limit: '16kb' }), async (req, res) => {
    const siteId = siteParam(req);
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    const body = RollbackBody.safeParse(req.body);
    if (!body.success) {
      throw new StorageError('BadRequest', `rollback body must be {to, if_match, by?}: ${body.error.issues[0]?.message}`);
    }
    const site = await refs.rollBackSite(siteId, body.data.to, { ifMatch: body.data.if_match }, body.data.by);
    logger.info('site rolled back', { site_id: siteId, version: site.version, by: body.data.by });
    res.setHeader('ETag', `"${site.version}"`).json({ version: site.version, size: site.size });
  });

  app.post('/admin/gc', async (req, res) => {
    await auth.authorize(req.headers.authorization, { kind: 'admin' }, null);
    res.json(await collector.sweep());
  });

  registerJobRoutes(app, deps);

  installErrorHandling(app, { logger, onError: (code) => metrics.errors.inc({ code }) });
  return app;
}

/**
 * Makes the job's output the site's version if, in this order: the job has an output; it is
 * the version the runner reported (OutputMismatch); the site is at `ifMatch` (checked before the
 * long scan, and again atomically: PublishConflict); the output passes the archive rules
 * (UnsafeOutput). The output is protected from the collector (a pin, or a lease in the s3
 * backend) before the job's record is read again under that protection, so the collector
 * cannot take it even if the job's record moves on meanwhile; the manager seals the attempt
 * first, so it cannot.
 */
async function publish(deps: StorageAppDeps, siteId: string, jobId: string, ifMatch: string, version: string, by: string | null) {
  const { blobs, refs, limits } = deps;
  const currentOutput = async (key?: string) => {
    const output = (await refs.getJob(jobId))?.objects['output.tar.gz'];
    if (!output) throw new StorageError('ObjectNotFound', `job ${jobId} has no output.tar.gz`);
    if (output.version !== version) {
      throw new StorageError('OutputMismatch', `job ${jobId}'s output.tar.gz is ${output.version}, not the reported version ${version}`);
    }
    if (key !== undefined && output.key !== key)
      throw new StorageError('OutputMismatch', `job ${jobId}'s output.tar.gz was replaced meanwhile`);
    return blobOf(output);
  };
  const seen = await currentOutput();
  return blobs.protect(seen, async () => {
    // read again now that it is protected: this is the read the protection covers
    await currentOutput(seen.key);
    await asPublishConflict(refs.checkSitePrecondition(siteId, { ifMatch }));
    const stored = await blobs.open(seen);
    if (stored === null) throw new StorageError('Internal', `job ${jobId}'s output.tar.gz ${version} is missing from the store`);
    await checkStoredOutput(stored.body, limits.archive);
    // the scan takes a while: the job's output must still be the one checked
    const output = await currentOutput(seen.key);
    return asPublishConflict(refs.setSiteVersion(siteId, output, { ifMatch }, { action: 'published', jobId, by }));
  });
}

function byHeader(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  // one printable name: no control characters, which a log or a status would carry further
  if (typeof value !== 'string' || value.length === 0 || value.length > 512 || [...value].some((c) => c < ' '))
    throw new StorageError('BadRequest', `${BY_HEADER} must be one name of at most 512 characters`);
  return value;
}

async function asPublishConflict<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof PagewrightError && err.code === 'PreconditionFailed') {
      throw new StorageError('PublishConflict', `cannot publish: ${err.message}`);
    }
    throw err;
  }
}
