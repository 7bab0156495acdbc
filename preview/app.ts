/**
 * The preview's HTTP surface, independent of how a request arrived:
 *
 *   createPreviewRouter(deps)      mounted by whoever authenticates and authorizes the caller
 *                                  (the aggregated API at /apis/review.pagewright.dev/v1alpha1/
 *                                  namespaces/:namespace/; preview/main.ts on loopback for now):
 *     GET jobs/:job/review                       the review page (preview/review-page.ts)
 *     GET jobs/:job/review/style.css             its stylesheet (under review/: one RBAC subresource, jobs/review, covers the page and its style)
 *     GET jobs/:job/output/<path>                the job's output as a website
 *     GET jobs/:job/base/<path>                  the version it edited, as a website
 *     GET jobs/:job/diff                         diff.patch, as text/plain
 *     GET jobs/:job/link                         a signed link to the review page (when links are configured)
 *     GET sites/:site/versions/:version/files/<path>   a site version (a sha256, or `current`)
 *   createSignedLinkRouter(deps)   the same pages for the holder of a signed link (an Ingress):
 *     GET /p/:token/{review,review/style.css,diff,output/<path>,base/<path>}   job links
 *     GET /p/:token/files/<path>                                      site links
 *
 * The namespace comes from the mount's `:namespace` (the router merges its parent's params).
 * Trees are served by express.static (serve-static, send) from the artifact cache, behind the
 * path check of preview/tree-path.ts and with the isolation headers of preview/headers.ts; a
 * small file send has answered once is answered again from memory (preview/answer-memo.ts).
 * A directory without its trailing slash is redirected to it with a relative Location
 * (`./name/`), so it works under any prefix (the aggregated API's, the CLI's local server's,
 * a signed link's); serve-static's own redirect would name the absolute path this process saw.
 * Errors are PagewrightErrors, answered by the mounting app's common/error-middleware.ts.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import express, { type Request, type RequestHandler, type Response, Router } from 'express';
import { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from '../common/archive-rules.js';
import { PagewrightError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type PreviewLink, previewLinkUrl, signPreviewLink, verifyPreviewLink } from '../common/preview-link.js';
import { HttpStatusError } from '../common/retry.js';
import { JobManifest, SHA256_PATTERN } from '../common/schemas.js';
import type { Download, StorageClient } from '../common/storage-client.js';
import { AnswerMemo } from './answer-memo.js';
import { ArtifactCache, type CachedTree } from './artifact-cache.js';
import { setPreviewHeaders, setReviewHeaders } from './headers.js';
import { REVIEW_CSS, renderReviewPage } from './review-page.js';
import { ReviewJob, ReviewSite } from './review-job.js';
import { treePath } from './tree-path.js';

export interface PreviewDeps {
  /** Reads site versions, job outputs and diffs (the admin token for now). */
  storage: StorageClient;
  /** The job `name` in `namespace`, or null if there is none. */
  resolveJob(namespace: string, name: string): Promise<ReviewJob | null>;
  /** The site `name` in `namespace`, or null if there is none. */
  resolveSite(namespace: string, name: string): Promise<ReviewSite | null>;
  cacheDir: string;
  cacheBytes: number;
  logger: Logger;
  /** The unpack limits (default: the runner's defaults); keep them equal to the runners'. */
  limits?: ArchiveLimits;
  /** One cache shared by several routers (the API's and the signed links'); default: one of its own. */
  cache?: ArtifactCache;
  /** Memory for small files' answers (preview/answer-memo.ts; default 64 MiB, 0: none). */
  memoryBytes?: number;
  /** Signed links: the secret, the public base URL they are opened under, how long one lasts. */
  links?: { secret: string; baseUrl?: string | undefined; ttlSeconds: number };
  /** The clock of link expiry (tests). */
  now?: () => Date;
}

/** The largest manifest.json the review page reads its checks from (1,000 findings of each of 3 checks fit). */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
/** The largest diff.patch the review page renders; the raw route serves it whole. */
const MAX_RENDERED_DIFF_BYTES = 8 * 1024 * 1024;
/** How long a site's storage history vouches that a version is the site's. */
const MEMBERSHIP_TTL_MS = 30_000;
const MEMBERSHIP_MEMO_MAX = 10_000;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function notFound(message: string): PagewrightError {
  return new PagewrightError('NotFound', message);
}

/** A storage answer as this service's error: its 404s keep their code, anything else is storage being unavailable. */
function storageError(err: unknown): PagewrightError {
  if (err instanceof HttpStatusError) {
    if (err.status === 404) return new PagewrightError(err.code === 'NotFound' ? 'ObjectNotFound' : err.code, err.message);
    return new PagewrightError('StorageUnavailable', err.message, { cause: err });
  }
  if (err instanceof PagewrightError) return err;
  return new PagewrightError('StorageUnavailable', `storage: ${(err as Error).message}`, { cause: err });
}

function pathOnly(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q) };
}

interface Tree {
  version: string;
  open: () => Promise<Download>;
}

/** What a request for a job names, however it named it (path params or a signed link). */
type JobRef = (req: Request) => { namespace: string; name: string };

/** The routes' shared machinery: one per router, over one cache. */
class Preview {
  readonly cache: ArtifactCache;
  readonly #deps: PreviewDeps;
  /** `${siteId}/${version}` -> until when storage's history vouched for it. */
  readonly #members = new Map<string, number>();
  /** serve-static middlewares per cached tree dir. */
  readonly #statics = new Map<string, RequestHandler>();
  readonly memo: AnswerMemo;
  /** What the resolvers handed over and was validated already (a resolver that caches hands over the same object each time). */
  readonly #validSites: WeakSet<object>;
  readonly #validJobs: WeakSet<object>;

  constructor(deps: PreviewDeps) {
    this.#deps = deps;
    this.memo = new AnswerMemo(deps.memoryBytes ?? 64 * 1024 * 1024);
    this.#validSites = new WeakSet();
    this.#validJobs = new WeakSet();
    this.cache =
      deps.cache ??
      new ArtifactCache({
        dir: deps.cacheDir,
        maxBytes: deps.cacheBytes,
        limits: deps.limits ?? DEFAULT_ARCHIVE_LIMITS,
        logger: deps.logger,
      });
  }

  async job(namespace: string, name: string): Promise<ReviewJob> {
    if (!K8S_NAME.test(name)) throw new PagewrightError('JobNotFound', `no job ${namespace}/${name}`);
    const job = await this.#deps.resolveJob(namespace, name);
    if (!job) throw new PagewrightError('JobNotFound', `no job ${namespace}/${name}`);
    if (this.#validJobs.has(job)) return job;
    ReviewJob.parse(job);
    this.#validJobs.add(job);
    return job;
  }

  async siteTree(namespace: string, name: string, version: string): Promise<Tree> {
    if (version !== 'current' && !SHA256_PATTERN.test(version)) {
      throw new PagewrightError('InvalidVersion', 'a version is a lowercase hex sha256 or "current"');
    }
    if (!K8S_NAME.test(name)) throw new PagewrightError('SiteNotFound', `no site ${namespace}/${name}`);
    const found = await this.#deps.resolveSite(namespace, name);
    if (!found) throw new PagewrightError('SiteNotFound', `no site ${namespace}/${name}`);
    if (!this.#validSites.has(found)) {
      ReviewSite.parse(found);
      this.#validSites.add(found);
    }
    const site = found;
    let wanted = version;
    if (version === 'current') {
      if (!site.currentVersion) throw new PagewrightError('VersionNotFound', `site ${namespace}/${name} has no version yet`);
      wanted = site.currentVersion;
    } else if (version !== site.currentVersion) {
      await this.#checkMember(site.siteId, version, `${namespace}/${name}`);
    }
    return {
      version: wanted,
      open: () => this.#deps.storage.downloadArtifact(site.siteId, { version: wanted }).catch((e) => Promise.reject(storageError(e))),
    };
  }

  /** A version named by the caller must be one the site has had (the cache is keyed by version alone). */
  async #checkMember(siteId: string, version: string, what: string): Promise<void> {
    const key = `${siteId}/${version}`;
    if ((this.#members.get(key) ?? 0) > Date.now()) return;
    const info = await this.#deps.storage.getSite(siteId).catch((e: unknown) => {
      throw storageError(e);
    });
    if (info.version !== version && !info.history.some((h) => h.version === version)) {
      throw new PagewrightError('VersionNotFound', `site ${what} has no version ${version}`);
    }
    if (this.#members.size >= MEMBERSHIP_MEMO_MAX) this.#members.clear();
    this.#members.set(key, Date.now() + MEMBERSHIP_TTL_MS);
  }

  jobTree(job: ReviewJob, which: 'output' | 'base'): Tree {
    if (which === 'output') {
      const version = job.outputVersion;
      if (!version) throw new PagewrightError('ObjectNotFound', `job ${job.namespace}/${job.name} has no output yet`);
      return {
        version,
        open: () => this.#deps.storage.getJobObject(job.uid, 'output.tar.gz').catch((e) => Promise.reject(storageError(e))),
      };
    }
    const version = job.baseVersion;
    if (!version) throw new PagewrightError('VersionNotFound', `job ${job.namespace}/${job.name} has no base version recorded`);
    // a follow-up edited the output of the job it follows, which may never have been a site version
    const followed = job.baseJobUid;
    if (followed)
      return {
        version,
        open: () => this.#deps.storage.getJobObject(followed, 'output.tar.gz').catch((e) => Promise.reject(storageError(e))),
      };
    return {
      version,
      open: () => this.#deps.storage.downloadArtifact(job.siteId, { version }).catch((e) => Promise.reject(storageError(e))),
    };
  }

  /** diff.patch, or null when the job has none; `cutAt` when only its first bytes were read. */
  async readDiff(job: ReviewJob, maxBytes: number): Promise<{ text: string; cutAt?: number } | null> {
    let download: Download;
    try {
      download = await this.#deps.storage.getJobObject(job.uid, 'diff.patch');
    } catch (err) {
      const e = storageError(err);
      if (e.code === 'ObjectNotFound') return null;
      throw e;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of download.body) {
      const b = chunk as Buffer;
      chunks.push(b);
      bytes += b.length;
      if (bytes >= maxBytes) {
        // leaving the loop destroys the body
        const text = new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(chunks).subarray(0, maxBytes));
        // the last line may be cut: drop it
        return { text: text.slice(0, text.lastIndexOf('\n') + 1), cutAt: maxBytes };
      }
    }
    return { text: Buffer.concat(chunks).toString('utf8') };
  }

  async streamDiff(job: ReviewJob, res: Response): Promise<void> {
    let download: Download;
    try {
      download = await this.#deps.storage.getJobObject(job.uid, 'diff.patch');
    } catch (err) {
      const e = storageError(err);
      throw e.code === 'ObjectNotFound' ? new PagewrightError('ObjectNotFound', `job ${job.namespace}/${job.name} has no diff yet`) : e;
    }
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    if (download.size !== null) res.setHeader('Content-Length', String(download.size));
    await new Promise<void>((resolve, reject) => {
      download.body.once('error', reject);
      res.once('close', () => {
        download.body.destroy();
        resolve();
      });
      download.body.pipe(res);
    });
  }

  link(job: ReviewJob): { url: string; expiresAt: string } {
    const links = this.#deps.links;
    if (!links?.baseUrl)
      throw notFound('signed preview links are not configured (PAGEWRIGHT_PREVIEW_BASE_URL, PAGEWRIGHT_PREVIEW_LINK_SECRET)');
    const now = this.#deps.now?.() ?? new Date();
    const expiresAt = new Date(now.getTime() + links.ttlSeconds * 1000);
    const token = signPreviewLink({ kind: 'job', namespace: job.namespace, name: job.name, expiresAt }, links.secret);
    return { url: previewLinkUrl(links.baseUrl, token, 'job'), expiresAt: expiresAt.toISOString() };
  }

  verify(token: string): PreviewLink {
    const links = this.#deps.links;
    if (!links) throw notFound('signed preview links are not configured');
    return verifyPreviewLink(token, links.secret, this.#deps.now?.() ?? new Date());
  }

  /**
   * Every finding of the job's checks, from its manifest (status.checks has the first 10 of
   * each); the status's when the manifest is missing, too large, or of another attempt.
   */
  async readChecks(job: ReviewJob): Promise<ReviewJob['checks']> {
    let download: Download;
    try {
      download = await this.#deps.storage.getJobObject(job.uid, 'manifest.json');
    } catch (err) {
      const e = storageError(err);
      if (e.code === 'ObjectNotFound' || e.code === 'JobNotFound') return job.checks;
      throw e;
    }
    if (download.size !== null && download.size > MAX_MANIFEST_BYTES) {
      download.body.destroy();
      return job.checks;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of download.body) {
      chunks.push(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      if (bytes > MAX_MANIFEST_BYTES) return job.checks; // leaving the loop destroys the body
    }
    let manifest: JobManifest;
    try {
      manifest = JobManifest.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch {
      return job.checks;
    }
    // the manifest of the job's output (a later attempt's is written over it)
    if (manifest.result.output_version !== job.outputVersion || !manifest.checks) return job.checks;
    return manifest.checks;
  }

  async reviewPage(job: ReviewJob, res: Response): Promise<void> {
    const diff = await this.readDiff(job, MAX_RENDERED_DIFF_BYTES);
    const checks = await this.readChecks(job);
    if (checks) job = { ...job, checks };
    setReviewHeaders(res);
    res
      .type('html')
      .send(renderReviewPage(job, diff === null ? { text: null } : { text: diff.text, ...(diff.cutAt ? { cutAtBytes: diff.cutAt } : {}) }));
  }

  /**
   * Serves the rest of the URL (`req.url`, relative to the tree's mount) from `tree`. The
   * mount itself without its slash (`.../output`) is redirected to `./output/` first.
   */
  async serveTree(req: Request, res: Response, tree: () => Promise<Tree>): Promise<void> {
    setPreviewHeaders(res);
    if (req.method !== 'GET' && req.method !== 'HEAD') throw notFound(`no route ${req.method} ${pathOnly(req.originalUrl).path}`);
    const { path: raw, query } = pathOnly(req.url);
    if (raw === '/') {
      const { path: original } = pathOnly(req.originalUrl);
      if (!original.endsWith('/')) return redirect(res, original, query);
    }
    const path = treePath(raw);
    if (path === null) throw notFound('no such file');
    const { version, open } = await tree();
    if (this.memo.serve(version, path, req, res)) return;
    res.locals.previewFile = { version, path };
    const held = await this.cache.acquire(version, open);
    res.once('close', held.release);
    const served = await new Promise<boolean>((resolve, reject) => {
      res.once('close', () => resolve(true));
      // serve-static calls back only when it sends nothing (fallthrough, redirect: false) or fails
      this.#static(held)(req, res, (err?: unknown) => (err ? reject(err) : resolve(false)));
    });
    if (served) return;
    // a directory wants its slash; anything else is missing
    const st = await stat(join(held.dir, path)).catch(() => null);
    if (st?.isDirectory() && !path.endsWith('/')) return redirect(res, raw, query);
    throw notFound(`no file ${path}`);
  }

  #static(tree: CachedTree): RequestHandler {
    let handler = this.#statics.get(tree.dir);
    if (!handler) {
      const tag = tree.version.slice(0, 16);
      handler = express.static(tree.dir, {
        index: ['index.html'],
        redirect: false,
        fallthrough: true,
        dotfiles: 'ignore',
        cacheControl: false,
        // send's ETag is size and mtime, which two versions of a file can share: scope it to the version
        setHeaders: (res: Response, path, st) => {
          res.setHeader('ETag', `"${tag}-${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`);
          const file = res.locals.previewFile as { version: string; path: string } | undefined;
          if (file) this.memo.learn(file.version, file.path, res.req, res, path, st.size);
        },
      });
      if (this.#statics.size >= 256) this.#statics.clear();
      this.#statics.set(tree.dir, handler);
    }
    return handler;
  }
}

/** 301 to the same path with a trailing slash, as a relative reference to its last segment. */
function redirect(res: Response, path: string, query: string): void {
  const last = path.slice(path.lastIndexOf('/') + 1);
  const location = `./${last}/${query}`;
  res.status(301).setHeader('Location', location);
  res.type('text/plain').send(`Redirecting to ${location}\n`);
}

/** The job pages under `base` (`/jobs/:job` or `/p/:token`), registered on `router` itself (one router level fewer per request). */
function jobRoutes(router: Router, base: string, preview: Preview, ref: JobRef, opts: { link: boolean }): void {
  router.get(`${base}/review`, async (req, res) => {
    const { namespace, name } = ref(req);
    await preview.reviewPage(await preview.job(namespace, name), res);
  });
  router.get(`${base}/review/style.css`, (_req, res) => {
    setReviewHeaders(res);
    res.type('css').send(REVIEW_CSS);
  });
  router.get(`${base}/diff`, async (req, res) => {
    const { namespace, name } = ref(req);
    setPreviewHeaders(res);
    await preview.streamDiff(await preview.job(namespace, name), res);
  });
  if (opts.link) {
    router.get(`${base}/link`, async (req, res) => {
      const { namespace, name } = ref(req);
      res.json(preview.link(await preview.job(namespace, name)));
    });
  }
  for (const which of ['output', 'base'] as const) {
    router.use(`${base}/${which}`, async (req, res) => {
      const { namespace, name } = ref(req);
      await preview.serveTree(req, res, async () => preview.jobTree(await preview.job(namespace, name), which));
    });
  }
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  if (typeof v !== 'string' || v === '') throw notFound(`missing ${name}`);
  return v;
}

export interface PreviewRouter extends Router {
  /** The artifact cache behind it (shared with the signed-link router when passed in deps). */
  readonly cache: ArtifactCache;
  /** Small files' answers in memory (preview/answer-memo.ts). */
  readonly answers: AnswerMemo;
  /** Waits for background removals of evicted versions. */
  close(): Promise<void>;
}

/** The API routes; mount it at a path with a `:namespace` parameter. */
export function createPreviewRouter(deps: PreviewDeps): PreviewRouter {
  const preview = new Preview(deps);
  const router = Router({ mergeParams: true });
  router.use('/sites/:site/versions/:version/files', async (req, res) => {
    const namespace = param(req, 'namespace');
    await preview.serveTree(req, res, () => preview.siteTree(namespace, param(req, 'site'), param(req, 'version')));
  });
  jobRoutes(router, '/jobs/:job', preview, (req) => ({ namespace: param(req, 'namespace'), name: param(req, 'job') }), { link: true });
  return Object.assign(router, { cache: preview.cache, answers: preview.memo, close: () => preview.cache.close() });
}

/**
 * The public routes of signed links (`/p/:token/...`): the link is the authorization. A job
 * link opens the job's pages, a site link the site version's files; anything else is 404, an
 * expired or forged link 401. Needs `deps.links`.
 */
export function createSignedLinkRouter(deps: PreviewDeps & { links: NonNullable<PreviewDeps['links']> }): PreviewRouter {
  const preview = new Preview(deps);
  const router = Router();
  const linkOf = (req: Request, kind: PreviewLink['kind']): PreviewLink => {
    const link = preview.verify(param(req, 'token'));
    if (link.kind !== kind) throw notFound(`a ${link.kind} link has no such page`);
    return link;
  };
  router.use('/p/:token/files', async (req, res) => {
    const link = linkOf(req, 'site');
    await preview.serveTree(req, res, () => preview.siteTree(link.namespace, link.name, link.version ?? 'current'));
  });
  jobRoutes(
    router,
    '/p/:token',
    preview,
    (req) => {
      const link = linkOf(req, 'job');
      return { namespace: link.namespace, name: link.name };
    },
    { link: false },
  );
  return Object.assign(router, { cache: preview.cache, answers: preview.memo, close: () => preview.cache.close() });
}
