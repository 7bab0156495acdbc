/**
 * Admission kept up to date as the cache changes, so that deciding for one job costs O(1) plus
 * amortised O(log n) upkeep per cache event. Before it, every reconcile of a waiting job copied
 * the whole cache and sorted every waiting job (decideAdmission, O(n log n) a decision), which
 * made draining a queue of n jobs quadratic: bench/admission-index.ts measures both.
 *
 * The rule is decideAdmission's (admission.ts), and the property tests hold the two to the same
 * answers: at most maxConcurrent jobs Scheduled or Running, reservations (admitted here, not yet
 * in the cache) included; at most one active job per site; higher spec.priority first, then the
 * older, then by key; a job in retry backoff waits without holding its site; cancelled and
 * deleting jobs never start. Read that way, the jobs to admit are exactly the best `free` of the
 * site heads, a head being a free site's best waiting job past its backoff. So:
 *   - per site, a heap of its waiting jobs past their backoff (`ready`), and a count of its
 *     active jobs and reservations (`busy`);
 *   - `asleep`: the waiting jobs in backoff, by wake time; a decision first wakes the due ones;
 *   - the heads of the free sites, split in two heaps as a running median is: `top`, the best
 *     `free` of them (the jobs to admit; its worst first, to compare with `rest`), and `rest`
 *     (best first). Each change moves O(1) heads between the two.
 *
 * Costs, for n indexed jobs (waiting or active), S sites, f free slots (f <= maxConcurrent):
 *   upsert, remove (one cache event)   O(log n): a site heap or `asleep`, then O(1) heads
 *                                      moved between top and rest at O(log S) each
 *   reserve, release                   O(log n), the same steps
 *   verdict(key, now)                  O(1), plus O(log n) for each job whose backoff ended since
 *                                      the last call; a job wakes at most once per version
 *                                      stored, so that is paid by its upsert (amortised O(log n))
 *   admissible(now)                    O(f log f): the top heap sorted, plus waking as above
 * Memory: one entry per waiting or active job (finished jobs are not indexed), one per site.
 *
 * Time only moves forward here: `now` is the largest seen, so if the wall clock steps back a
 * job already woken stays awake (the reconciler requeues a job whose own nextAttemptTime is
 * ahead before asking for admission, so that job is not started early).
 */
import { type AdmissionRank, admissionRank, compareRanks } from './admission.js';
import { IndexedHeap } from './heap.js';
import { type PagewrightJob, isActive, isWaiting, jobKey, timestamp } from '../common/job-resource.js';

/** What decideAdmission would say of a waiting job: admit it now, or why it waits. */
export type Verdict = 'admit' | 'capacity' | 'site-busy' | 'backoff';

interface Entry extends AdmissionRank {
  readonly site: string;
  /** Scheduled or Running; otherwise waiting for admission. */
  readonly active: boolean;
  /** status.nextAttemptTime, -Infinity when there is none. */
  readonly wakeAt: number;
}

interface Site {
  /** Waiting jobs past their backoff, best first. */
  readonly ready: IndexedHeap<Entry>;
  /** Active jobs not reserved, plus reservations. */
  busy: number;
  /** The entry this site has in `top` or `rest`: ready's best while the site is free. */
  head: Entry | undefined;
}

const better = (a: Entry, b: Entry): boolean => compareRanks(a, b) < 0;

export class AdmissionIndex {
  readonly #maxConcurrent: number;
  readonly #onAdmissible: (key: string) => void;
  /** Waiting and active jobs by key; a reserved key keeps its entry but is counted as reserved. */
  readonly #entries = new Map<string, Entry>();
  /** key -> siteId of the reservations. */
  readonly #reserved = new Map<string, string>();
  readonly #sites = new Map<string, Site>();
  readonly #asleep = new IndexedHeap<Entry>((a, b) => a.wakeAt < b.wakeAt);
  readonly #top = new IndexedHeap<Entry>((a, b) => better(b, a));
  readonly #rest = new IndexedHeap<Entry>(better);
  /** Active entries not reserved. */
  #active = 0;
  #now = -Infinity;

  /**
   * `onAdmissible` is told each key that becomes admissible (enters `top`), so the caller can
   * look at that job again; it must not call back into the index.
   */
  constructor(maxConcurrent: number, onAdmissible: (key: string) => void = () => undefined) {
    this.#maxConcurrent = maxConcurrent;
    this.#onAdmissible = onAdmissible;
  }

  /** Slots left: maxConcurrent less the active jobs and the reservations. */
  get free(): number {
    return Math.max(0, this.#maxConcurrent - this.#active - this.#reserved.size);
  }

  /** The cache stored this version of a job. */
  upsert(job: PagewrightJob): void {
    const key = jobKey(job);
    this.#drop(key);
    const entry = entryOf(job, key);
    if (entry) {
      this.#entries.set(key, entry);
      if (!this.#reserved.has(key)) this.#count(entry);
    }
    this.#balance();
  }

  /** The cache no longer has this job. */
  remove(key: string): void {
    this.#drop(key);
    this.#balance();
  }

  /**
   * Admitted and being written: the key holds a slot and its site whatever the cache says of it,
   * until release().
   */
  reserve(key: string, siteId: string): void {
    this.#unreserve(key);
    const entry = this.#entries.get(key);
    if (entry) this.#uncount(entry);
    this.#reserved.set(key, siteId);
    const site = this.#site(siteId);
    site.busy += 1;
    this.#refresh(siteId, site);
    this.#balance();
  }

  release(key: string): void {
    if (this.#unreserve(key)) this.#balance();
  }

  /** decideAdmission's answer for one key, or undefined if it is not waiting (or is reserved). */
  verdict(key: string, now: number): Verdict | undefined {
    this.#wake(now);
    if (this.#reserved.has(key)) return undefined;
    const entry = this.#entries.get(key);
    if (!entry || entry.active) return undefined;
    if (this.#asleep.has(entry)) return 'backoff';
    const site = this.#sites.get(entry.site)!;
    if (site.busy > 0) return 'site-busy';
    // the site is free, so its head is listed: admitted iff it made `top`. A job behind an
    // admitted head waits for the site; behind a head that did not make it, for a slot.
    const headAdmitted = this.#top.has(site.head!);
    if (site.head === entry) return headAdmitted ? 'admit' : 'capacity';
    return headAdmitted ? 'site-busy' : 'capacity';
  }

  /** decideAdmission's `admit`: the keys to admit now, best first. */
  admissible(now: number): string[] {
    this.#wake(now);
    return this.#top
      .values()
      .sort(compareRanks)
      .map((e) => e.key);
  }

  #drop(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    if (!this.#reserved.has(key)) this.#uncount(entry);
  }

  #unreserve(key: string): boolean {
    const siteId = this.#reserved.get(key);
    if (siteId === undefined) return false;
    this.#reserved.delete(key);
    const site = this.#sites.get(siteId)!;
    site.busy -= 1;
    this.#refresh(siteId, site);
    const entry = this.#entries.get(key);
    if (entry) this.#count(entry);
    return true;
  }

  /** Adds an entry's weight: a busy site and a used slot, or a waiting job. */
  #count(entry: Entry): void {
    if (!entry.active && entry.wakeAt > this.#now) {
      this.#asleep.push(entry);
      return;
    }
    const site = this.#site(entry.site);
    if (entry.active) {
      this.#active += 1;
      site.busy += 1;
    } else {
      site.ready.push(entry);
    }
    this.#refresh(entry.site, site);
  }

  #uncount(entry: Entry): void {
    if (!entry.active && this.#asleep.remove(entry)) return;
    const site = this.#sites.get(entry.site)!;
    if (entry.active) {
      this.#active -= 1;
      site.busy -= 1;
    } else {
      site.ready.remove(entry);
    }
    this.#refresh(entry.site, site);
  }

  #site(id: string): Site {
    let site = this.#sites.get(id);
    if (!site) {
      site = { ready: new IndexedHeap(better), busy: 0, head: undefined };
      this.#sites.set(id, site);
    }
    return site;
  }

  /** Lists the site's head if it changed (in `rest`: #balance promotes it); forgets an empty site. */
  #refresh(id: string, site: Site): void {
    const head = site.busy === 0 ? site.ready.peek() : undefined;
    if (head !== site.head) {
      if (site.head && !this.#top.remove(site.head)) this.#rest.remove(site.head);
      if (head) this.#rest.push(head);
      site.head = head;
    }
    if (site.busy === 0 && site.ready.size === 0) this.#sites.delete(id);
  }

  #wake(now: number): void {
    if (now > this.#now) this.#now = now;
    let woke = false;
    for (let e = this.#asleep.peek(); e && e.wakeAt <= this.#now; e = this.#asleep.peek()) {
      this.#asleep.pop();
      const site = this.#site(e.site);
      site.ready.push(e);
      this.#refresh(e.site, site);
      woke = true;
    }
    if (woke) this.#balance();
  }

  /**
   * Restores: `top` holds the best min(free, heads) heads. After one change (a head listed or
   * delisted, free moved by one) each loop runs at most a few times.
   */
  #balance(): void {
    const free = this.free;
    const promoted = new Set<Entry>();
    while (this.#top.size > free) this.#rest.push(this.#top.pop()!);
    while (this.#top.size < free && this.#rest.size > 0) {
      const e = this.#rest.pop()!;
      this.#top.push(e);
      promoted.add(e);
    }
    while (this.#top.size > 0 && this.#rest.size > 0 && better(this.#rest.peek()!, this.#top.peek()!)) {
      const into = this.#rest.pop()!;
      this.#rest.push(this.#top.pop()!);
      this.#top.push(into);
      promoted.add(into);
    }
    for (const e of promoted) if (this.#top.has(e)) this.#onAdmissible(e.key);
  }
}

/** The job as admission sees it; undefined for a job that neither waits nor runs. */
function entryOf(job: PagewrightJob, key: string): Entry | undefined {
  const active = isActive(job);
  if (!active && !(isWaiting(job) && !job.spec.cancel && !job.metadata.deletionTimestamp)) return undefined;
  const next = job.status.nextAttemptTime;
  return { ...admissionRank(job), key, site: job.spec.siteId, active, wakeAt: next ? timestamp(next) : -Infinity };
}
