/**
 * Serialises admission decisions and keeps the index they are made from (admission-index.ts) in
 * step with the cache, which tells it of every job stored or removed. Each decision sees the
 * cache plus the jobs this manager admitted that the cache does not show yet; an admission
 * counts as in flight (a reservation in the index) until the cache shows the job at (or past)
 * the admitted attempt, or the job is gone.
 *
 * Who looks at a job again: the index names each job that becomes admissible (a slot or its site
 * freed, a reservation dropped, a better job gone or lowered) and it is enqueued, O(1) per change.
 * Before the index, every decision enqueued all the jobs it would admit (O(maxConcurrent) each
 * time), a catch-all for changes nobody signalled; the index sees every change, so it signals them.
 */
import { AdmissionIndex } from './admission-index.js';
import type { JobCacheObserver } from './job-cache.js';
import { type PagewrightJob, jobKey } from '../common/job-resource.js';

/** What the Admitter reads of the JobCache. */
interface AdmitterCache {
  job(key: string): PagewrightJob | undefined;
  /** Tells the observer of every job cached now, then of every change. */
  observe(observer: JobCacheObserver): void;
}

export interface AdmitterOptions {
  maxConcurrent: number;
  cache: AdmitterCache;
  /** Whether the cache has synced since start (no decision on a partial view). */
  synced: () => boolean;
  enqueue: (key: string) => void;
  /** The wall clock, for retry backoff (tests move it). */
  now?: () => number;
}

export class Admitter {
  readonly #o: AdmitterOptions;
  readonly #now: () => number;
  readonly #index: AdmissionIndex;
  /** Reservations: key -> the attempt admitted. */
  readonly #inFlight = new Map<string, number>();
  /** The key whose failed admission is being undone: its own retry brings it back, not a wake-up. */
  #undoing: string | undefined;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(opts: AdmitterOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#index = new AdmissionIndex(opts.maxConcurrent, (key) => {
      if (key !== this.#undoing && this.#o.synced()) this.#o.enqueue(key);
    });
    opts.cache.observe({ put: (job) => this.#put(job), deleted: (key) => this.#deleted(key) });
  }

  /**
   * If `job` may start now, reserves its slot and site, runs `store` (which writes the Scheduled
   * status) and returns its result; otherwise null. Only the decision is serialised: the write
   * runs outside the lock, its reservation counting against capacity and the site until the
   * cache shows it (or the write fails).
   */
  async admit<T extends PagewrightJob>(job: PagewrightJob, attempt: number, store: () => Promise<T | null>): Promise<T | null> {
    const key = jobKey(job);
    const decide = this.#tail.then(() => {
      if (!this.#o.synced()) return false;
      if (this.#index.verdict(key, this.#now()) !== 'admit') return false;
      this.#reserve(key, job.spec.siteId, attempt);
      return true;
    });
    this.#tail = decide.catch(() => undefined);
    if (!(await decide)) return null;
    try {
      const stored = await store();
      if (!stored) this.#undo(key, attempt);
      return stored;
    } catch (err) {
      this.#undo(key, attempt);
      throw err;
    }
  }

  /**
   * A job stopped running (or waiting): the jobs admissible now get another look. The index
   * already names the jobs a change makes admissible; this stays for callers that know of a
   * change first (a status just written), O(f log f) for f free slots.
   */
  slotFreed(): void {
    if (!this.#o.synced()) return;
    for (const key of this.#index.admissible(this.#now())) this.#o.enqueue(key);
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  #reserve(key: string, siteId: string, attempt: number): void {
    // a cache already at this attempt has nothing left to catch up with: no reservation (the
    // rule the in-flight entries always expired by)
    const cached = this.#o.cache.job(key);
    if (!cached || (cached.status.attempt ?? 0) >= attempt) return;
    this.#inFlight.set(key, attempt);
    this.#index.reserve(key, siteId);
  }

  /** The write failed, or found the job moved on: its slot and site are free again. */
  #undo(key: string, attempt: number): void {
    if (this.#inFlight.get(key) !== attempt) return;
    this.#inFlight.delete(key);
    this.#undoing = key;
    try {
      this.#index.release(key);
    } finally {
      this.#undoing = undefined;
    }
  }

  #put(job: PagewrightJob): void {
    this.#index.upsert(job);
    const key = jobKey(job);
    const attempt = this.#inFlight.get(key);
    if (attempt !== undefined && (job.status.attempt ?? 0) >= attempt) {
      this.#inFlight.delete(key);
      this.#index.release(key);
    }
  }

  #deleted(key: string): void {
    this.#index.remove(key);
    if (this.#inFlight.delete(key)) this.#index.release(key);
  }
}
