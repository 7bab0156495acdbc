/**
 * Named pointers to blobs: a site's current version (with its history) and a job's outputs.
 * Each record is one small JSON file rewritten durably under a per-key lock, so the
 * compare-and-swap on a site's version is atomic and a crash leaves the old or the new record.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { JobId, Sha256, SiteId } from '../common/schemas.js';
import type { BlobInfo } from './blob-store.js';
import { StorageError } from './errors.js';
import { writeFileDurably } from './fs-durable.js';
import { KeyedMutex } from './keyed-mutex.js';

export const JOB_OBJECT_NAMES = ['output.tar.gz', 'manifest.json', 'log'] as const;
export const JobObjectName = z.enum(JOB_OBJECT_NAMES);
export type JobObjectName = z.infer<typeof JobObjectName>;

/** Versions older than this many updates can no longer be fetched by version. */
export const SITE_HISTORY_LIMIT = 1000;

const SiteVersionEntry = z.object({
  version: Sha256,
  size: z.number().int().nonnegative(),
  at: z.iso.datetime(),
  job_id: JobId.nullable(),
});
export const SiteRecord = z.object({
  site_id: SiteId,
  version: Sha256,
  size: z.number().int().nonnegative(),
  updated_at: z.iso.datetime(),
  history: z.array(SiteVersionEntry),
});
export type SiteRecord = z.infer<typeof SiteRecord>;

const JobObjectRecord = z.object({
  version: Sha256,
  size: z.number().int().nonnegative(),
  updated_at: z.iso.datetime(),
});
export type JobObjectRecord = z.infer<typeof JobObjectRecord>;
export const JobRecord = z.object({
  job_id: JobId,
  objects: z.partialRecord(JobObjectName, JobObjectRecord),
});
export type JobRecord = z.infer<typeof JobRecord>;

export interface Precondition {
  /** The version the site must be at; '*' = any existing version. */
  ifMatch?: string;
  /** '*' = the site must not exist yet. */
  ifNoneMatch?: '*';
}

export class RefStore {
  readonly #dir: string;
  readonly #tmp: string;
  readonly #locks = new KeyedMutex();

  constructor(dataDir: string, tmpDir: string) {
    this.#dir = dataDir;
    this.#tmp = tmpDir;
  }

  #sitePath(siteId: string): string {
    return join(this.#dir, 'sites', `${siteId}.json`);
  }

  #jobPath(jobId: string): string {
    return join(this.#dir, 'jobs', `${jobId}.json`);
  }

  async getSite(siteId: string): Promise<SiteRecord | null> {
    return readRecord(this.#sitePath(siteId), SiteRecord);
  }

  /** Fails fast (before a long upload) when the precondition already cannot hold. */
  async checkSitePrecondition(siteId: string, pre: Precondition): Promise<void> {
    checkPrecondition(await this.getSite(siteId), pre);
  }

  async setSiteVersion(siteId: string, blob: BlobInfo, pre: Precondition & { jobId?: string }): Promise<SiteRecord> {
    return this.#locks.run(`site/${siteId}`, async () => {
      const current = await this.getSite(siteId);
      checkPrecondition(current, pre);
      const at = new Date().toISOString();
      const entry = { version: blob.version, size: blob.size, at, job_id: pre.jobId ?? null };
      const next: SiteRecord = {
        site_id: siteId,
        version: blob.version,
        size: blob.size,
        updated_at: at,
        history: [entry, ...(current?.history ?? [])].slice(0, SITE_HISTORY_LIMIT),
      };
      await writeFileDurably(this.#sitePath(siteId), JSON.stringify(next), this.#tmp);
      return next;
    });
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    return readRecord(this.#jobPath(jobId), JobRecord);
  }

  async setJobObject(jobId: string, name: JobObjectName, blob: BlobInfo): Promise<JobObjectRecord> {
    return this.#locks.run(`job/${jobId}`, async () => {
      const current = (await this.getJob(jobId)) ?? { job_id: jobId, objects: {} };
      const record = { version: blob.version, size: blob.size, updated_at: new Date().toISOString() };
      const next: JobRecord = { ...current, objects: { ...current.objects, [name]: record } };
      await writeFileDurably(this.#jobPath(jobId), JSON.stringify(next), this.#tmp);
      return record;
    });
  }
}

function checkPrecondition(current: SiteRecord | null, pre: Precondition): void {
  if (pre.ifNoneMatch === '*' && current) {
    throw new StorageError('PreconditionFailed', `site already exists at version ${current.version}`);
  }
  if (pre.ifMatch === undefined) return;
  if (!current) throw new StorageError('PreconditionFailed', 'site has no version yet, so If-Match cannot hold');
  if (pre.ifMatch !== '*' && pre.ifMatch !== current.version) {
    throw new StorageError('PreconditionFailed', `site is at version ${current.version}, not ${pre.ifMatch}`);
  }
}

async function readRecord<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S> | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return schema.parse(JSON.parse(text));
}
