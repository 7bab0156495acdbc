/**
 * Which waiting jobs may start now. Pure: the controller passes what its cache shows plus the
 * jobs it admitted that the cache has not caught up with yet, so a slow watch never lets two
 * jobs of one site (or more than maxConcurrent jobs) run at once.
 *
 * decideAdmission is the rule written as a full scan and sort, O(n log n) per decision. The
 * manager decides with the incremental AdmissionIndex (admission-index.ts) instead; this stays
 * as its specification: the property tests (test/unit/admission-index.test.ts) check the index
 * against it on random job sets, and bench/admission-index.ts uses it as the baseline.
 */
import { type PagewrightJob, isActive, isWaiting, jobKey, timestamp } from '../common/job-resource.js';

export interface AdmissionInput {
  jobs: readonly PagewrightJob[];
  maxConcurrent: number;
  /** Admitted by this manager but possibly not yet Scheduled in `jobs` (key -> siteId). */
  inFlight: ReadonlyMap<string, string>;
  now: number;
}

export interface AdmissionDecision {
  /** Keys to admit now, best first. */
  admit: string[];
  /** Keys waiting, with why (for status messages and metrics). */
  waiting: Map<string, 'capacity' | 'site-busy' | 'backoff'>;
}

/** Higher priority first, then older first, then by key for a total order. */
function admissionOrder(a: PagewrightJob, b: PagewrightJob): number {
  return (
    b.spec.priority - a.spec.priority ||
    timestamp(a.metadata.creationTimestamp) - timestamp(b.metadata.creationTimestamp) ||
    jobKey(a).localeCompare(jobKey(b))
  );
}

/** The fields admissionOrder reads, taken once per job version (the index compares these). */
export interface AdmissionRank {
  priority: number;
  created: number;
  key: string;
}

export function admissionRank(job: PagewrightJob): AdmissionRank {
  return { priority: job.spec.priority, created: timestamp(job.metadata.creationTimestamp), key: jobKey(job) };
}

/** admissionOrder on ranks: the same expression, so both orders agree (ties and NaN included). */
export function compareRanks(a: AdmissionRank, b: AdmissionRank): number {
  return b.priority - a.priority || a.created - b.created || a.key.localeCompare(b.key);
}

export function decideAdmission(input: AdmissionInput): AdmissionDecision {
  const busySites = new Set<string>(input.inFlight.values());
  let active = 0;
  const waiting: PagewrightJob[] = [];
  for (const job of input.jobs) {
    const key = jobKey(job);
    if (input.inFlight.has(key)) continue; // counted below, whatever the cache says
    if (isActive(job)) {
      active += 1;
      busySites.add(job.spec.siteId);
    } else if (isWaiting(job) && !job.spec.cancel && !job.metadata.deletionTimestamp) {
      waiting.push(job);
    }
  }
  active += input.inFlight.size;
  waiting.sort(admissionOrder);

  const decision: AdmissionDecision = { admit: [], waiting: new Map() };
  let free = Math.max(0, input.maxConcurrent - active);
  for (const job of waiting) {
    const key = jobKey(job);
    if (job.status.nextAttemptTime && timestamp(job.status.nextAttemptTime) > input.now) {
      decision.waiting.set(key, 'backoff');
    } else if (busySites.has(job.spec.siteId)) {
      decision.waiting.set(key, 'site-busy');
    } else if (free === 0) {
      decision.waiting.set(key, 'capacity');
    } else {
      decision.admit.push(key);
      busySites.add(job.spec.siteId);
      free -= 1;
    }
  }
  return decision;
}
