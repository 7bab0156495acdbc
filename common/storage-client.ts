/**
 * Typed client for the storage API (undici). Callers own retries (withRetry), because only they
 * know whether a body can be sent again. Non-2xx answers become StorageRequestError carrying
 * the HTTP status and the code of storage's error body (common/errors.ts), to switch on.
 */
import type { Readable } from 'node:stream';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { HttpStatusError, readErrorAnswer } from './retry.js';
import { StoredObject } from './schemas.js';

export class StorageRequestError extends HttpStatusError {
  constructor(status: number, code: string | undefined, message: string) {
    super(status, message, code);
    this.name = 'StorageRequestError';
  }
}

/** A site's current version and its history, newest first (storage/ref-store.ts SiteRecord). */
export const SiteInfo = z.object({
  site_id: z.string(),
  version: z.string(),
  size: z.number(),
  updated_at: z.string(),
  /** The seq of its latest change. */
  revision: z.number(),
  history: z.array(
    z.object({
      version: z.string(),
      size: z.number(),
      at: z.string(),
      job_id: z.string().nullable(),
      action: z.enum(['pushed', 'published', 'rolled_back']),
      by: z.string().nullable(),
      seq: z.number(),
    }),
  ),
});
export type SiteInfo = z.infer<typeof SiteInfo>;

export const JobObjects = z.object({
  job_id: z.string(),
  objects: z.record(z.string(), z.object({ version: z.string(), size: z.number(), updated_at: z.string() })),
  /** Job tokens of this attempt or earlier are refused (0: none). */
  sealed_through: z.number().default(0),
});
export type JobObjects = z.infer<typeof JobObjects>;

export const SealResult = z.object({ job_id: z.string(), sealed_through: z.number() });
export type SealResult = z.infer<typeof SealResult>;

export const DeleteJobResult = z.object({ job_id: z.string(), deleted: z.array(z.string()) });
export type DeleteJobResult = z.infer<typeof DeleteJobResult>;

/** One page of GET /sites: each site's current version; `next_after` when there are more. */
export const SitePage = z.object({
  sites: z.array(z.object({ site_id: z.string(), version: z.string(), size: z.number(), updated_at: z.string(), revision: z.number() })),
  next_after: z.string().optional(),
});
export type SitePage = z.infer<typeof SitePage>;

export const GcReport = z.object({ deleted: z.number(), kept: z.number(), bytes_freed: z.number() });
export type GcReport = z.infer<typeof GcReport>;

export type JobObjectName = 'output.tar.gz' | 'manifest.json' | 'log' | 'diff.patch' | 'session.jsonl';

export interface Download {
  body: Dispatcher.ResponseData['body'];
  /** The server's ETag: the sha256 of the body (content-addressed). */
  version: string;
  size: number | null;
}

export interface UploadOptions {
  sha256?: string;
  size?: number;
  ifMatch?: string;
  ifNoneMatch?: '*';
  signal?: AbortSignal;
  contentType?: string;
  /** Who pushes (a site artifact: recorded in its history). */
  by?: string;
}

type Body = Readable | Buffer | string;

export class StorageClient {
  readonly #base: string;
  readonly #token: string;
  readonly #dispatcher: Dispatcher | undefined;

  constructor(opts: { baseUrl: string; token: string; dispatcher?: Dispatcher }) {
    this.#base = opts.baseUrl.replace(/\/+$/, '');
    this.#token = opts.token;
    this.#dispatcher = opts.dispatcher;
  }

  async getSite(siteId: string, signal?: AbortSignal): Promise<SiteInfo> {
    return SiteInfo.parse(await this.#json('GET', `/sites/${enc(siteId)}`, signal));
  }

  /** Every site, by id, a page at a time (admin only): pass the previous page's next_after as `after`. */
  async listSites(opts: { limit?: number; after?: string; signal?: AbortSignal } = {}): Promise<SitePage> {
    const query = new URLSearchParams();
    if (opts.limit !== undefined) query.set('limit', String(opts.limit));
    if (opts.after !== undefined) query.set('after', opts.after);
    const qs = query.size > 0 ? `?${query}` : '';
    return SitePage.parse(await this.#json('GET', `/sites${qs}`, opts.signal));
  }

  async downloadArtifact(siteId: string, opts: { version?: string; signal?: AbortSignal } = {}): Promise<Download> {
    const query = opts.version ? `?version=${enc(opts.version)}` : '';
    return this.#download(`/sites/${enc(siteId)}/artifact${query}`, opts.signal);
  }

  /** A new version of the site (admin only): refused with 422 UnsafeArchive if a runner could not unpack it. */
  async putSiteArtifact(siteId: string, body: Body, opts: UploadOptions = {}): Promise<StoredObject> {
    return this.#upload(`/sites/${enc(siteId)}/artifact`, body, { contentType: 'application/gzip', ...opts });
  }

  /**
   * Makes `to`, a version in the site's history, current again, only if the site is still at
   * `ifMatch` (else 412 PreconditionFailed); recorded as rolled back by `by`. Admin only.
   */
  async rollBack(siteId: string, to: string, ifMatch: string, by: string | null, signal?: AbortSignal): Promise<StoredObject> {
    const body = JSON.stringify({ to, if_match: ifMatch, by });
    return StoredObject.parse(await this.#json('POST', `/sites/${enc(siteId)}/rollback`, signal, body));
  }

  async putJobObject(jobId: string, name: JobObjectName, body: Body, opts: UploadOptions = {}): Promise<StoredObject> {
    return this.#upload(`/jobs/${enc(jobId)}/${name}`, body, opts);
  }

  async getJobObject(jobId: string, name: JobObjectName, signal?: AbortSignal): Promise<Download> {
    return this.#download(`/jobs/${enc(jobId)}/${name}`, signal);
  }

  async getJob(jobId: string, signal?: AbortSignal): Promise<JobObjects> {
    return JobObjects.parse(await this.#json('GET', `/jobs/${enc(jobId)}`, signal));
  }

  /**
   * Makes the job's output the site's current version, only if the site is still at `ifMatch`
   * (else 409 PublishConflict), the job's stored output is `version`, the sha256 its runner
   * reported (else 409 OutputMismatch), and the output passes the archive rules (else 422
   * UnsafeOutput). Seal the attempt first, so that nothing can replace the output meanwhile.
   */
  async publish(
    siteId: string,
    jobId: string,
    ifMatch: string,
    version: string,
    opts: { by?: string; signal?: AbortSignal } = {},
  ): Promise<StoredObject> {
    const body = JSON.stringify({ job_id: jobId, if_match: ifMatch, version, ...(opts.by ? { by: opts.by } : {}) });
    return StoredObject.parse(await this.#json('POST', `/sites/${enc(siteId)}/publish`, opts.signal, body));
  }

  /**
   * The job's attempts up to `attempt` have ended: storage refuses their tokens from now on
   * (403 AttemptEnded). Idempotent, never lowers; admin only. Returns the sealed attempt.
   */
  async seal(jobId: string, attempt: number, signal?: AbortSignal): Promise<SealResult> {
    return SealResult.parse(await this.#json('POST', `/jobs/${enc(jobId)}/seal`, signal, JSON.stringify({ attempt })));
  }

  /** Removes the job's objects and refuses its tokens from now on; idempotent; admin only. */
  async deleteJob(jobId: string, signal?: AbortSignal): Promise<DeleteJobResult> {
    return DeleteJobResult.parse(await this.#json('DELETE', `/jobs/${enc(jobId)}`, signal));
  }

  /** One garbage collection of unreferenced blobs now; admin only. */
  async gc(signal?: AbortSignal): Promise<GcReport> {
    return GcReport.parse(await this.#json('POST', '/admin/gc', signal));
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.#token}`, ...extra };
  }

  async #download(path: string, signal?: AbortSignal): Promise<Download> {
    const res = await request(this.#base + path, {
      method: 'GET',
      headers: this.#headers(),
      ...(signal ? { signal } : {}),
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
    });
    if (res.statusCode !== 200) throw await toError(res);
    const etag = String(res.headers.etag ?? '').replace(/^"(.*)"$/, '$1');
    const length = res.headers['content-length'];
    return { body: res.body, version: etag, size: length === undefined ? null : Number(length) };
  }

  async #upload(path: string, body: Body, opts: UploadOptions): Promise<StoredObject> {
    const headers = this.#headers({ 'content-type': opts.contentType ?? 'application/octet-stream' });
    if (opts.sha256) headers['x-content-sha256'] = opts.sha256;
    if (opts.size !== undefined) headers['content-length'] = String(opts.size);
    if (opts.ifMatch) headers['if-match'] = `"${opts.ifMatch}"`;
    if (opts.ifNoneMatch) headers['if-none-match'] = opts.ifNoneMatch;
    if (opts.by) headers['x-pagewright-by'] = opts.by;
    const res = await request(this.#base + path, {
      method: 'PUT',
      headers,
      body,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
    });
    if (res.statusCode !== 201) throw await toError(res);
    return StoredObject.parse(await res.body.json());
  }

  async #json(method: 'GET' | 'POST' | 'DELETE', path: string, signal?: AbortSignal, body?: string): Promise<unknown> {
    const res = await request(this.#base + path, {
      method,
      headers: this.#headers(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(body === undefined ? {} : { body }),
      ...(signal ? { signal } : {}),
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
    });
    if (res.statusCode !== 200) throw await toError(res);
    return res.body.json();
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

async function toError(res: Dispatcher.ResponseData): Promise<StorageRequestError> {
  const text = await res.body.text().catch(() => '');
  const { code, detail } = readErrorAnswer(res.statusCode, text);
  return new StorageRequestError(res.statusCode, code, `storage answered ${res.statusCode} (${detail})`);
}
