/**
 * Named pointers to blobs: a site's current version (with its history) and a job's outputs.
 * Each record is one small JSON document in the backend's records (backend.ts), changed only by
 * compare-and-swap: read it, decide, write it if nobody wrote it since, else read and decide
 * again. So the compare-and-swap on a site's version holds across storage replicas, a crash
 * leaves the old or the new record, and every check made in a decision (a precondition, the
 * quota, the seal) held against the record that was replaced.
 *
 * A job record also holds what its credentials may still do: `sealed_through` (the highest
 * attempt that has ended; job tokens of that attempt or earlier are refused) and `deleted_at`
 * (the job's objects were removed; every job token is refused, so a leftover runner cannot
 * fill storage again for a job nobody will delete twice). The checks that matter are part of
 * the job record's compare-and-swap, so once seal or delete returned no write of an ended
 * attempt can land, whichever replica serves it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { JobId, Sha256, SiteId } from '../common/schemas.js';
import type { BlobBackend, BlobRef, RecordBackend } from './backend.js';
import { StorageError } from './errors.js';

/** session.jsonl: the codex session the runner kept (redacted), what a follow-up resumes. */
const JOB_OBJECT_NAMES = ['output.tar.gz', 'manifest.json', 'log', 'diff.patch', 'session.jsonl'] as const;
export const JobObjectName = z.enum(JOB_OBJECT_NAMES);
export type JobObjectName = z.infer<typeof JobObjectName>;

/** Versions older than this many updates can no longer be fetched by version. */
const SITE_HISTORY_LIMIT = 1000;

/** How a version became the site's current one. */
const SiteAction = z.enum(['pushed', 'published', 'rolled_back']);

/**
 * One change of the site's current version, newest first. `seq` numbers the site's changes
 * from 1 and never repeats (what a webhook subscriber has seen is "everything through seq N");
 * `by` is who made the change (a job's name for a publish, the user for a push or rollback).
 * Records written before these fields existed read as: pushed or published (by whether a job
 * did it), by nobody known, numbered from the oldest entry.
 */
const SiteVersionEntry = z.object({
  version: Sha256,
  size: z.number().int().nonnegative(),
  at: z.iso.datetime(),
  job_id: JobId.nullable(),
  action: SiteAction.optional(),
  by: z.string().max(512).nullable().optional(),
  seq: z.number().int().positive().optional(),
  /** The blob's key where the backend names blobs (s3). */
  key: z.string().min(1).max(1024).optional(),
});
type SiteVersionEntry = z.infer<typeof SiteVersionEntry>;
export const SiteRecord = z
  .object({
    site_id: SiteId,
    version: Sha256,
    size: z.number().int().nonnegative(),
    key: z.string().min(1).max(1024).optional(),
    updated_at: z.iso.datetime(),
    history: z.array(SiteVersionEntry),
    /** The seq of the latest change (the history keeps only the last SITE_HISTORY_LIMIT). */
    revision: z.number().int().nonnegative().optional(),
  })
  .transform((site) => {
    const revision = site.revision ?? site.history.length;
    const history = site.history.map((h, i) => ({
      ...h,
      action: h.action ?? (h.job_id ? ('published' as const) : ('pushed' as const)),
      by: h.by ?? null,
      seq: h.seq ?? revision - i,
    }));
    return { ...site, revision, history };
  });
export type SiteRecord = z.output<typeof SiteRecord>;

/** Who changes a site's version, and how (written into its history entry). */
export interface SiteChange {
  action: z.infer<typeof SiteAction>;
  by?: string | null;
  jobId?: string;
}

const JobObjectRecord = z.object({
  version: Sha256,
  size: z.number().int().nonnegative(),
  key: z.string().min(1).max(1024).optional(),
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

/** Compare-and-swap attempts before a write gives up (each loss means another writer made progress). */
const MAX_RACES = 32;

export class RefStore {
  readonly #records: RecordBackend;

  constructor(records: RecordBackend) {
    this.#records = records;
  }

  /**
   * Reads the record, asks `decide` for its next value (undefined: leave it as it is; a throw:
   * refuse) and writes it if nobody wrote it meanwhile, else decides again on the newer record.
   */
  async #update<S extends z.ZodType>(
    path: string,
    schema: S,
    decide: (current: z.output<S> | null) => z.output<S> | undefined,
  ): Promise<z.output<S> | null> {
    for (let race = 0; ; race++) {
      const stored = await this.#records.read(path);
      const current = stored === null ? null : parseRecord(path, stored.text, schema);
      const next = decide(current);
      if (next === undefined) return current;
      if (await this.#records.write(path, JSON.stringify(next), stored === null ? { absent: true } : { tag: stored.tag })) return next;
      if (race >= MAX_RACES) throw new StorageError('Internal', `${path}: lost ${MAX_RACES} compare-and-swap races in a row`);
      // another writer got there first: back off a little (jittered) and decide again
      await sleep(Math.random() * Math.min(100, 5 * 2 ** race));
    }
  }

  async #get<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S> | null> {
    const stored = await this.#records.read(path);
    return stored === null ? null : parseRecord(path, stored.text, schema);
  }

  async getSite(siteId: string): Promise<SiteRecord | null> {
    return this.#get(sitePath(siteId), SiteRecord);
  }

  /** Every site id with a record, in the backend's order (names are checked: a stray file is skipped). */
  async *siteIds(): AsyncGenerator<string> {
    for await (const name of this.#records.list('sites')) {
      const id = name.endsWith('.json') ? name.slice(0, -5) : null;
      if (id !== null && SiteId.safeParse(id).success) yield id;
    }
  }

  /** Fails fast (before a long upload) when the precondition already cannot hold. */
  async checkSitePrecondition(siteId: string, pre: Precondition): Promise<void> {
    checkPrecondition(await this.getSite(siteId), pre);
  }

  async setSiteVersion(siteId: string, blob: BlobRef, pre: Precondition, change: SiteChange): Promise<SiteRecord> {
    const site = await this.#update(sitePath(siteId), SiteRecord, (current) => {
      checkPrecondition(current, pre);
      const at = new Date().toISOString();
      const seq = (current?.revision ?? 0) + 1;
      const entry: SiteVersionEntry = {
        version: blob.version,
        size: blob.size,
        at,
        job_id: change.jobId ?? null,
        action: change.action,
        by: change.by ?? null,
        seq,
        ...keyOf(blob),
      };
      return {
        site_id: siteId,
        version: blob.version,
        size: blob.size,
        ...keyOf(blob),
        updated_at: at,
        revision: seq,
        history: [entry, ...(current?.history ?? [])].slice(0, SITE_HISTORY_LIMIT) as SiteRecord['history'],
      };
    });
    return site as SiteRecord;
  }

  /**
   * Makes an earlier version of the site current again (a rollback), compare-and-swap on the
   * current one. Only a version in the site's history qualifies: its blob is still referenced.
   */
  async rollBackSite(siteId: string, to: string, pre: Precondition, by: string | null): Promise<SiteRecord> {
    const site = await this.getSite(siteId);
    if (!site) throw new StorageError('SiteNotFound', `site ${siteId} has no artifact`);
    const earlier = site.history.find((h) => h.version === to);
    if (!earlier) throw new StorageError('VersionNotFound', `site ${siteId} has no version ${to} in its history`);
    if (site.version === to) throw new StorageError('BadRequest', `site ${siteId} is at version ${to} already`);
    return this.setSiteVersion(siteId, blobOf(earlier), pre, { action: 'rolled_back', by });
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    return this.#get(jobPath(jobId), JobRecord);
  }

  /**
   * Makes `blob` the job's one live object of that name (an earlier one is replaced, and left
   * to the collector). `attempt`: the writer's job token, refused if that attempt has ended.
   * The job's live objects together stay within `maxJobBytes`.
   */
  async setJobObject(
    jobId: string,
    name: JobObjectName,
    blob: BlobRef,
    opts: { attempt?: number; maxJobBytes: number },
  ): Promise<JobObjectRecord> {
    const record: JobObjectRecord = { version: blob.version, size: blob.size, ...keyOf(blob), updated_at: new Date().toISOString() };
    await this.#update(jobPath(jobId), JobRecord, (stored) => {
      const current = stored ?? emptyJob(jobId);
      if (opts.attempt !== undefined) assertAttemptLive(current, opts.attempt);
      const total = otherObjectsBytes(current, name) + blob.size;
      if (total > opts.maxJobBytes) throw quotaExceeded(jobId, opts.maxJobBytes);
      return { ...current, objects: { ...current.objects, [name]: record } };
    });
    return record;
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
    const job = await this.#update(jobPath(jobId), JobRecord, (stored) => {
      const current = stored ?? emptyJob(jobId);
      return current.sealed_through >= attempt ? undefined : { ...current, sealed_through: attempt };
    });
    return Math.max(job?.sealed_through ?? 0, attempt);
  }

  /**
   * Drops the job's objects and keeps a tombstone that refuses its tokens; returns the names
   * removed. The blobs go with the next collection unless something else references them.
   */
  async deleteJob(jobId: string): Promise<JobObjectName[]> {
    let removed: JobObjectName[] = [];
    await this.#update(jobPath(jobId), JobRecord, (stored) => {
      const current = stored ?? emptyJob(jobId);
      removed = JobObjectName.options.filter((n) => current.objects[n]);
      if (current.deleted_at !== null && removed.length === 0) return undefined;
      return { ...current, objects: {}, deleted_at: current.deleted_at ?? new Date().toISOString() };
    });
    return removed;
  }

  /**
   * What every site (current or history) and every job object references, as the backend names
   * it (blobs.referenceOf). Throws if any record cannot be read: a collector that missed a
   * reference would delete live data.
   */
  async referencedBlobs(blobs: Pick<BlobBackend, 'referenceOf'>): Promise<Set<string>> {
    const refs = new Set<string>();
    for await (const site of this.#all('sites', SiteRecord)) {
      refs.add(blobs.referenceOf(site));
      for (const h of site.history) refs.add(blobs.referenceOf(h));
    }
    for await (const job of this.#all('jobs', JobRecord)) {
      for (const object of Object.values(job.objects)) if (object) refs.add(blobs.referenceOf(object));
    }
    return refs;
  }

  async *#all<S extends z.ZodType>(dir: string, schema: S): AsyncGenerator<z.output<S>> {
    for await (const name of this.#records.list(dir)) {
      if (!name.endsWith('.json')) continue;
      // a record deleted between the listing and the read references nothing
      const record = await this.#get(`${dir}/${name}`, schema);
      if (record !== null) yield record;
    }
  }
}

function sitePath(siteId: string): string {
  return `sites/${siteId}.json`;
}

function jobPath(jobId: string): string {
  return `jobs/${jobId}.json`;
}

function keyOf(blob: BlobRef): { key?: string } {
  return blob.key === undefined ? {} : { key: blob.key };
}

/** The blob a site's version or a job's object refers to. */
export function blobOf(entry: { version: string; size: number; key?: string | undefined }): BlobRef {
  return entry.key === undefined
    ? { version: entry.version, size: entry.size }
    : { version: entry.version, size: entry.size, key: entry.key };
}

function parseRecord<S extends z.ZodType>(path: string, text: string, schema: S): z.output<S> {
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new StorageError('Internal', `record ${path} is unreadable: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
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
