/**
 * Named pointers to blobs: a site's current version (with its history) and a job's outputs.
 * Each record is one small JSON file rewritten durably under a per-key lock, so the
 * compare-and-swap on a site's version is atomic and a crash leaves the old or the new record.
 *
 * A job record also holds what its credentials may still do: `sealed_through` (the highest
 * attempt that has ended; job tokens of that attempt or earlier are refused) and `deleted_at`
 * (the job's objects were removed; every job token is refused, so a leftover runner cannot
 * fill storage again for a job nobody will delete twice). The checks that matter run under
 * the job's lock, so once seal or delete returned no write of an ended attempt can land.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { JobId, Sha256, SiteId } from '../common/schemas.js';
import type { BlobInfo } from './blob-store.js';
import { StorageError } from './errors.js';
import { writeFileDurably } from './fs-durable.js';
import { KeyedMutex } from './keyed-mutex.js';

const JOB_OBJECT_NAMES = ['output.tar.gz', 'manifest.json', 'log', 'diff.patch'] as const;
export const JobObjectName = z.enum(JOB_OBJECT_NAMES);
export type JobObjectName = z.infer<typeof JobObjectName>;

/** Versions older than this many updates can no longer be fetched by version. */
const SITE_HISTORY_LIMIT = 1000;

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
  /** Job tokens with attempt <= this are refused (0: none sealed). */
  sealed_through: z.number().int().nonnegative().default(0),
  deleted_at: z.iso.datetime().nullable().default(null),
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

  /**
   * Makes `blob` the job's one live object of that name (an earlier one is replaced, and left
   * to the collector). `attempt`: the writer's job token, refused if that attempt has ended.
   * The job's live objects together stay within `maxJobBytes`.
   */
  async setJobObject(
    jobId: string,
    name: JobObjectName,
    blob: BlobInfo,
    opts: { attempt?: number; maxJobBytes: number },
  ): Promise<JobObjectRecord> {
    return this.#locks.run(`job/${jobId}`, async () => {
      const current = (await this.getJob(jobId)) ?? emptyJob(jobId);
      if (opts.attempt !== undefined) assertAttemptLive(current, opts.attempt);
      const total = otherObjectsBytes(current, name) + blob.size;
      if (total > opts.maxJobBytes) throw quotaExceeded(jobId, opts.maxJobBytes);
      const record = { version: blob.version, size: blob.size, updated_at: new Date().toISOString() };
      const next: JobRecord = { ...current, objects: { ...current.objects, [name]: record } };
      await writeFileDurably(this.#jobPath(jobId), JSON.stringify(next), this.#tmp);
      return record;
    });
  }

  /** Throws AttemptEnded if a job token of `attempt` may no longer act for the job. */
  async checkAttempt(jobId: string, attempt: number): Promise<void> {
    const job = await this.getJob(jobId);
    if (job) assertAttemptLive(job, attempt);
  }

  /** Bytes the job's other objects hold: what an upload of `name` may add up to the quota. */
  async jobBytesExcept(jobId: string, name: JobObjectName): Promise<number> {
    const job = await this.getJob(jobId);
    return job ? otherObjectsBytes(job, name) : 0;
  }

  /** Seals the job through `attempt` (never lowers it); returns the sealed attempt. */
  async sealJob(jobId: string, attempt: number): Promise<number> {
    return this.#locks.run(`job/${jobId}`, async () => {
      const current = (await this.getJob(jobId)) ?? emptyJob(jobId);
      if (current.sealed_through >= attempt) return current.sealed_through;
      const next: JobRecord = { ...current, sealed_through: attempt };
      await writeFileDurably(this.#jobPath(jobId), JSON.stringify(next), this.#tmp);
      return attempt;
    });
  }

  /**
   * Drops the job's objects and keeps a tombstone that refuses its tokens; returns the names
   * removed. The blobs go with the next collection unless something else references them.
   */
  async deleteJob(jobId: string): Promise<JobObjectName[]> {
    return this.#locks.run(`job/${jobId}`, async () => {
      const current = (await this.getJob(jobId)) ?? emptyJob(jobId);
      const removed = JobObjectName.options.filter((n) => current.objects[n]);
      if (current.deleted_at !== null && removed.length === 0) return removed;
      const next: JobRecord = { ...current, objects: {}, deleted_at: current.deleted_at ?? new Date().toISOString() };
      await writeFileDurably(this.#jobPath(jobId), JSON.stringify(next), this.#tmp);
      return removed;
    });
  }

  /**
   * Every blob version a site (current or history) or a job object references. Throws if any
   * record cannot be read: a collector that missed a reference would delete live data.
   */
  async referencedVersions(): Promise<Set<string>> {
    const versions = new Set<string>();
    for (const site of await readRecords(join(this.#dir, 'sites'), SiteRecord)) {
      versions.add(site.version);
      for (const h of site.history) versions.add(h.version);
    }
    for (const job of await readRecords(join(this.#dir, 'jobs'), JobRecord)) {
      for (const object of Object.values(job.objects)) if (object) versions.add(object.version);
    }
    return versions;
  }
}

function emptyJob(jobId: string): JobRecord {
  return { job_id: jobId, objects: {}, sealed_through: 0, deleted_at: null };
}

function assertAttemptLive(job: JobRecord, attempt: number): void {
  if (job.deleted_at !== null) throw new StorageError('AttemptEnded', `job ${job.job_id} was deleted; its tokens are no longer accepted`);
  if (attempt <= job.sealed_through) {
    throw new StorageError(
      'AttemptEnded',
      `attempt ${attempt} of job ${job.job_id} has ended (sealed through attempt ${job.sealed_through})`,
    );
  }
}

function otherObjectsBytes(job: JobRecord, name: JobObjectName): number {
  let bytes = 0;
  for (const n of JobObjectName.options) if (n !== name) bytes += job.objects[n]?.size ?? 0;
  return bytes;
}

export function quotaExceeded(jobId: string, maxJobBytes: number): StorageError {
  return new StorageError('JobQuotaExceeded', `job ${jobId} would hold more than ${maxJobBytes} bytes (PAGEWRIGHT_STORAGE_MAX_JOB_BYTES)`);
}

async function readRecords<S extends z.ZodType>(dir: string, schema: S): Promise<Array<z.output<S>>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records: Array<z.output<S>> = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const record = await readRecord(join(dir, name), schema);
    if (record !== null) records.push(record);
  }
  return records;
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
