/**
 * Typed views over the informers' caches: jobs parsed once per event (not per reconcile), jobs by
 * uid (callbacks name the uid), and pods by the job uid in their label. Observers hear of every
 * job stored or removed, as it happens here, so what they derive (the admission index) follows
 * exactly what the cache holds, including the versions it refuses to store.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { LABEL_JOB, PagewrightJob, isActive, jobKey } from '../common/job-resource.js';

/** Told of each change to the cache's jobs, after it is made. */
export interface JobCacheObserver {
  put(job: PagewrightJob): void;
  deleted(key: string): void;
}

export class JobCache {
  readonly #jobs = new Map<string, PagewrightJob>();
  readonly #observers: JobCacheObserver[] = [];
  readonly #keyByUid = new Map<string, string>();
  readonly #pods = new Map<string, Map<string, V1Pod>>();
  /** Job keys by namespace/siteId (a job's siteId is immutable: the CRD says so). */
  readonly #bySite = new Map<string, Set<string>>();
  readonly #log: Logger;

  constructor(logger: Logger) {
    this.#log = logger;
  }

  /** Stores the job; returns it and the previous version (null if new), or null if unparseable. */
  putJob(raw: unknown): { job: PagewrightJob; previous: PagewrightJob | undefined } | null {
    const parsed = PagewrightJob.safeParse(raw);
    if (!parsed.success) {
      const meta = (raw as { metadata?: { namespace?: string; name?: string } }).metadata;
      this.#log.error('ignoring a PagewrightJob that does not match the schema', {
        job: `${meta?.namespace}/${meta?.name}`,
        error: parsed.error.issues[0]?.message,
        path: parsed.error.issues[0]?.path.join('.'),
      });
      return null;
    }
    const job = parsed.data;
    const key = jobKey(job);
    const previous = this.#jobs.get(key);
    if (previous && previous.metadata.uid !== job.metadata.uid) this.#keyByUid.delete(previous.metadata.uid);
    if (previous) this.#unindex(previous, key);
    this.#jobs.set(key, job);
    this.#keyByUid.set(job.metadata.uid, key);
    const site = siteKey(job);
    this.#bySite.set(site, (this.#bySite.get(site) ?? new Set()).add(key));
    for (const o of this.#observers) o.put(job);
    return { job, previous };
  }

  deleteJob(raw: { metadata?: { namespace?: string; name?: string; uid?: string } }): PagewrightJob | undefined {
    const key = `${raw.metadata?.namespace}/${raw.metadata?.name}`;
    const previous = this.#jobs.get(key);
    if (previous && previous.metadata.uid === raw.metadata?.uid) {
      this.#jobs.delete(key);
      this.#keyByUid.delete(previous.metadata.uid);
      this.#unindex(previous, key);
      for (const o of this.#observers) o.deleted(key);
    }
    return previous;
  }

  /** Adds an observer and tells it of every job already cached. */
  observe(observer: JobCacheObserver): void {
    this.#observers.push(observer);
    for (const job of this.#jobs.values()) observer.put(job);
  }

  job(key: string): PagewrightJob | undefined {
    return this.#jobs.get(key);
  }

  /** The jobs of a site in a namespace (what its PagewrightSite owes webhook events for). */
  jobsOfSite(namespace: string, siteId: string): PagewrightJob[] {
    const keys = this.#bySite.get(`${namespace}/${siteId}`) ?? [];
    return [...keys].flatMap((k) => this.#jobs.get(k) ?? []);
  }

  #unindex(job: PagewrightJob, key: string): void {
    const site = siteKey(job);
    const keys = this.#bySite.get(site);
    keys?.delete(key);
    if (keys?.size === 0) this.#bySite.delete(site);
  }

  keyOfUid(uid: string): string | undefined {
    return this.#keyByUid.get(uid);
  }

  jobs(): IterableIterator<PagewrightJob> {
    return this.#jobs.values();
  }

  keys(): string[] {
    return [...this.#jobs.keys()];
  }

  get size(): number {
    return this.#jobs.size;
  }

  countByPhase(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const job of this.#jobs.values()) {
      const phase = job.status.phase ?? 'Pending';
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    return counts;
  }

  activeCount(): number {
    let n = 0;
    for (const job of this.#jobs.values()) if (isActive(job)) n += 1;
    return n;
  }

  /** Returns the owning job's uid. */
  putPod(pod: V1Pod): string | undefined {
    const uid = pod.metadata?.labels?.[LABEL_JOB];
    const name = pod.metadata?.name;
    if (!uid || !name) return undefined;
    let pods = this.#pods.get(uid);
    if (!pods) {
      pods = new Map();
      this.#pods.set(uid, pods);
    }
    pods.set(name, pod);
    return uid;
  }

  deletePod(pod: V1Pod): string | undefined {
    const uid = pod.metadata?.labels?.[LABEL_JOB];
    const name = pod.metadata?.name;
    if (!uid || !name) return undefined;
    const pods = this.#pods.get(uid);
    pods?.delete(name);
    if (pods?.size === 0) this.#pods.delete(uid);
    return uid;
  }

  podsOf(uid: string): V1Pod[] {
    return [...(this.#pods.get(uid)?.values() ?? [])];
  }
}

function siteKey(job: PagewrightJob): string {
  return `${job.metadata.namespace}/${job.spec.siteId}`;
}
