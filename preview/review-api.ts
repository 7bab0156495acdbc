/**
 * The review API, an aggregated Kubernetes API (review.pagewright.dev/v1alpha1): what a user
 * does with sites and jobs beyond their objects, through the kube-apiserver, with their own
 * kubeconfig and RBAC, never with a storage token:
 *
 *   POST .../namespaces/{ns}/sites/{site}/versions            push a tar.gz as the site's new version
 *   GET  .../namespaces/{ns}/sites/{site}/versions/{v|current} pull a version (tar.gz)
 *   POST .../namespaces/{ns}/sites/{site}/rollback            {to?, ifMatch?}: an earlier version current again
 *   GET  .../namespaces/{ns}/sites/{site}/versions/{v}/files/...  a version as a website (the preview router)
 *   GET  .../namespaces/{ns}/jobs/{job}/{review,diff,output/...,base/...}  a job's review (the preview router)
 *
 * Why an aggregated API (README "Security"): the apiserver authenticates the caller whatever
 * their kubeconfig holds (a token, a client certificate, an exec plugin: a TokenReview would
 * need a token, and the service proxy strips it), authorizes the path, and forwards the
 * identity over its front-proxy connection (front-proxy.ts); this server then asks RBAC about
 * the objects themselves (access-review.ts). So the storage token stays in this pod, and what
 * a user may do is what RBAC gives them on PagewrightSites and PagewrightJobs.
 *
 * A push is refused before storage keeps anything if a runner could not unpack it: it is
 * spooled to this pod's disk, bounded, hashed, and read through the unpack rules
 * (common/archive-rules.ts), with unpack's codes and messages (UnsafeArchive,
 * ArtifactTooLarge). Every change (push, rollback) is recorded by storage in the site's
 * history with the user's name, and the PagewrightSite is touched so the manager mirrors it.
 * Errors are Kubernetes Status objects (what kubectl and client libraries read).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { type ArchiveLimits, unpackRules, unpackViolation } from '../common/archive-rules.js';
import { ArchiveFormatError, scanArchive } from '../common/archive-scan.js';
import { installErrorHandling } from '../common/error-middleware.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { HttpStatusError } from '../common/retry.js';
import { SHA256_PATTERN, SITE_ID_PATTERN } from '../common/schemas.js';
import type { StorageClient } from '../common/storage-client.js';
import type { AccessReviewer, ResourceAttributes } from './access-review.js';
import { API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_ROOT, GROUP } from './discovery.js';
import { type Caller, type RequestHeaderConfig, callerOf } from './front-proxy.js';

/** The PagewrightSites the API serves: the storage site behind a name, and a way to tell the manager it changed. */
export interface SiteDirectory {
  get(namespace: string, name: string): Promise<{ storageId: string } | null>;
  /** The site's storage history moved (a push, a rollback): the manager should mirror it now. */
  changed(namespace: string, name: string): Promise<void>;
}

export interface ReviewApiDeps {
  /** The front proxy's CA and headers, as last read from the cluster. */
  requestHeader: () => RequestHeaderConfig;
  access: AccessReviewer;
  storage: StorageClient;
  sites: SiteDirectory;
  /** The previews and review pages, mounted at {API_ROOT}/namespaces/:namespace (they find their jobs and sites themselves). */
  previews?: Router;
  limits: { maxArtifactBytes: number; archive: ArchiveLimits };
  /** Where pushes are spooled while they are checked. */
  scratchDir: string;
  logger: Logger;
}

const RollbackBody = z.strictObject({
  to: z.string().regex(SHA256_PATTERN, 'must be a sha256 version').optional(),
  ifMatch: z.string().regex(SHA256_PATTERN, 'must be a sha256 version').optional(),
});

const NS = `${API_ROOT}/namespaces/:namespace`;

export function createReviewApi(d: ReviewApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  // every request comes through the apiserver's front proxy, discovery included
  app.use((req: Request, res: Response, next: NextFunction) => {
    res.locals.caller = callerOf(req, d.requestHeader());
    next();
  });
  app.get('/apis', (_req, res) => void res.json(API_GROUP_LIST));
  app.get(`/apis/${GROUP}`, (_req, res) => void res.json(API_GROUP));
  app.get(API_ROOT, (_req, res) => void res.json(API_RESOURCE_LIST));

  const allowed = (req: Request, res: Response, attrs: Omit<ResourceAttributes, 'namespace'>) =>
    d.access.require(res.locals.caller as Caller, { ...attrs, namespace: String(req.params.namespace) });
  const siteOf = async (req: Request) => {
    const name = String(req.params.site);
    if (!SITE_ID_PATTERN.test(name)) throw new PagewrightError('InvalidSiteId', 'a site name is a DNS label');
    const site = await d.sites.get(String(req.params.namespace), name);
    if (!site) throw new PagewrightError('SiteNotFound', `no PagewrightSite ${name} in namespace ${req.params.namespace}`);
    return { name, ...site };
  };

  app.post(`${NS}/sites/:site/versions`, async (req, res) => {
    await allowed(req, res, { verb: 'update', resource: 'pagewrightsites', name: String(req.params.site) });
    const site = await siteOf(req);
    const ifMatch = req.headers['if-match']?.replace(/^"(.*)"$/, '$1');
    if (ifMatch !== undefined && !SHA256_PATTERN.test(ifMatch))
      throw new PagewrightError('InvalidVersion', 'If-Match must be a sha256 version');
    const by = (res.locals.caller as Caller).user;
    const spool = await mkdtemp(join(d.scratchDir, 'push-'));
    try {
      const file = join(spool, 'site.tar.gz');
      const { sha256, size } = await spoolBounded(req, file, d.limits.maxArtifactBytes);
      await checkUnpackable(file, d.limits.archive);
      const stored = await refusals(
        d.storage.putSiteArtifact(site.storageId, createReadStream(file), { sha256, size, by, ...(ifMatch ? { ifMatch } : {}) }),
      );
      await d.sites.changed(String(req.params.namespace), site.name);
      d.logger.info('site version pushed', { site: site.name, namespace: req.params.namespace, version: stored.version, by });
      res.status(201).json(stored);
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  });

  app.get(`${NS}/sites/:site/versions/:version`, async (req, res) => {
    await allowed(req, res, { verb: 'get', resource: 'pagewrightsites', name: String(req.params.site) });
    const site = await siteOf(req);
    const version = String(req.params.version);
    if (version !== 'current' && !SHA256_PATTERN.test(version))
      throw new PagewrightError('InvalidVersion', 'a version is a sha256 or "current"');
    const download = await refusals(d.storage.downloadArtifact(site.storageId, version === 'current' ? {} : { version }));
    res.setHeader('content-type', 'application/gzip');
    res.setHeader('etag', `"${download.version}"`);
    res.setHeader('content-disposition', `attachment; filename="${site.name}-${download.version.slice(0, 12)}.tar.gz"`);
    if (download.size !== null) res.setHeader('content-length', String(download.size));
    await pipeline(download.body, res);
  });

  app.post(`${NS}/sites/:site/rollback`, express.json({ limit: '4kb' }), async (req, res) => {
    await allowed(req, res, { verb: 'update', resource: 'pagewrightsites', name: String(req.params.site) });
    const site = await siteOf(req);
    const body = RollbackBody.safeParse(req.body ?? {});
    if (!body.success) throw new PagewrightError('BadRequest', `a rollback is {to?, ifMatch?}: ${body.error.issues[0]?.message}`);
    const info = await refusals(d.storage.getSite(site.storageId));
    // the version before the current one: what the latest change replaced
    const to = body.data.to ?? info.history[1]?.version;
    if (!to) throw new PagewrightError('VersionNotFound', `site ${site.name} has no earlier version to roll back to`);
    const by = (res.locals.caller as Caller).user;
    const stored = await refusals(d.storage.rollBack(site.storageId, to, body.data.ifMatch ?? info.version, by));
    await d.sites.changed(String(req.params.namespace), site.name);
    d.logger.info('site rolled back', { site: site.name, namespace: req.params.namespace, from: info.version, to, by });
    res.json({ version: stored.version, previousVersion: info.version });
  });

  // the previews: RBAC on the job or the site they show
  app.use(`${NS}/jobs/:job`, async (req, res, next) => {
    await allowed(req, res, { verb: 'get', resource: 'pagewrightjobs', name: String(req.params.job) });
    next();
  });
  app.use(`${NS}/sites/:site/versions/:version/files`, async (req, res, next) => {
    await allowed(req, res, { verb: 'get', resource: 'pagewrightsites', name: String(req.params.site) });
    next();
  });
  if (d.previews) app.use(NS, d.previews);

  installErrorHandling(app, { logger: d.logger, envelope: kubernetesStatus, routesHint: `the review API serves ${API_ROOT}` });
  return app;
}

/**
 * Storage's refusals are the caller's answer (412 a stale If-Match, 404 an unknown version), with
 * their code; storage failing (5xx, unreachable) stays this server's 500/502.
 */
async function refusals<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof HttpStatusError && err.status < 500)
      throw new PagewrightError(err.code, err.message.replace(/^storage answered \d+ \(([^:]+): /, '').replace(/\)$/, ''));
    throw err;
  }
}

/** Errors as Kubernetes Status objects: `reason` carries Pagewright's code. */
function kubernetesStatus(err: PagewrightError): unknown {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: err.code, message: `${err.code}: ${err.message}` };
}

/**
 * How much of an oversized push is read and thrown away before the refusal. The kube-apiserver
 * proxies the body to us; if we answer and close while it is still writing, its proxy sees the
 * connection reset and tells the user 503 "error trying to reach service" instead of our 413
 * (whichever of the two it notices first). Reading the rest lets it finish writing and relay the
 * real reason. Past this much more, we stop reading and close: the user then may see the 503,
 * and we don't spend more than this on a body we refused.
 */
const DISCARD_PAST_LIMIT_BYTES = 64 * 1024 * 1024;

/** Streams the body to `file`, hashing it, refusing it past `maxBytes` (PayloadTooLarge) once the body has been read. */
async function spoolBounded(req: Request, file: string, maxBytes: number): Promise<{ sha256: string; size: number }> {
  const refusal = () => new PagewrightError('PayloadTooLarge', `a site archive may be at most ${maxBytes} bytes`);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes + DISCARD_PAST_LIMIT_BYTES) throw refusal();
  const hash = createHash('sha256');
  let size = 0;
  // Once over, chunks are dropped, not kept: the file stops growing at maxBytes.
  let over = declared > maxBytes;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxBytes + DISCARD_PAST_LIMIT_BYTES) return done(refusal());
      if (over || size > maxBytes) {
        over = true;
        return done();
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(req, meter, createWriteStream(file));
  if (over) throw refusal();
  return { sha256: hash.digest('hex'), size };
}

/** What a runner's unpack would refuse, refused here with the same code and message. */
async function checkUnpackable(file: string, limits: ArchiveLimits): Promise<void> {
  let violation: Awaited<ReturnType<typeof scanArchive>>;
  try {
    violation = await scanArchive(createReadStream(file), unpackRules(limits));
  } catch (err) {
    if (err instanceof ArchiveFormatError) throw new PagewrightError('UnsafeArchive', `the site archive is ${err.message}`);
    throw err;
  }
  if (violation) {
    const { code, message } = unpackViolation(violation, limits);
    throw new PagewrightError(code, message);
  }
}
