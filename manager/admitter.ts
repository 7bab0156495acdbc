/**
 * Serialises admission decisions. Each decision sees the cache plus the jobs this manager
 * admitted that the cache does not show yet; an admission counts as in flight until the cache
 * shows the job at (or past) the admitted attempt, or the job is gone.
 */
import { decideAdmission } from './admission.js';
import { type PagewrightJob, jobKey } from '../common/job-resource.js';

export interface AdmitterOptions {
  maxConcurrent: number;
  jobs: () => Iterable<PagewrightJob>;
  job: (key: string) => PagewrightJob | undefined;
  /** Whether the cache has synced since start (no decision on a partial view). */
  synced: () => boolean;
  enqueue: (key: string) => void;
}

export class Admitter {
  readonly #o: AdmitterOptions;
  readonly #inFlight = new Map<string, { siteId: string; attempt: number }>();
  #tail: Promise<unknown> = Promise.resolve();

  constructor(opts: AdmitterOptions) {
    this.#o = opts;
  }

  /**
   * If `job` may start now, reserves its slot and site, runs `store` (which writes the Scheduled
   * status) and returns its result; otherwise null. Only the decision is serialised: the write
   * runs outside the lock, its reservation counting against capacity and the site until the
   * cache shows it (or the write fails). Jobs the same decision would admit are enqueued.
   */
  async admit<T extends PagewrightJob>(job: PagewrightJob, attempt: number, store: () => Promise<T | null>): Promise<T | null> {
    const key = jobKey(job);
    const decide = this.#tail.then(() => {
      if (!this.#o.synced()) return false;
      const decision = this.#decide();
      for (const other of decision.admit) if (other !== key) this.#o.enqueue(other);
      if (!decision.admit.includes(key)) return false;
      this.#inFlight.set(key, { siteId: job.spec.siteId, attempt });
      return true;
    });
    this.#tail = decide.catch(() => undefined);
    if (!(await decide)) return null;
    try {
      const stored = await store();
      if (!stored) this.#inFlight.delete(key);
      return stored;
    } catch (err) {
      this.#inFlight.delete(key);
      throw err;
    }
  }

  /** A job stopped running (or waiting): the best waiting jobs get another look. */
  slotFreed(): void {
    if (!this.#o.synced()) return;
    const decision = this.#decide();
    decision.admit.forEach((key) => this.#o.enqueue(key));
  }

  /** One admission decision over the cache plus the reservations not yet in it. */
  #decide(): ReturnType<typeof decideAdmission> {
    this.#expire();
    return decideAdmission({
      jobs: [...this.#o.jobs()],
      maxConcurrent: this.#o.maxConcurrent,
      inFlight: new Map([...this.#inFlight].map(([k, v]) => [k, v.siteId])),
      now: Date.now(),
    });
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  #expire(): void {
    for (const [key, entry] of this.#inFlight) {
      const cached = this.#o.job(key);
      if (!cached || (cached.status.attempt ?? 0) >= entry.attempt) this.#inFlight.delete(key);
    }
  }
}
