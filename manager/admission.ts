/**
 * Which waiting jobs may start now. Pure: the controller passes what its cache shows plus the
 * jobs it admitted that the cache has not caught up with yet, so a slow watch never lets two
 * jobs of one site (or more than maxConcurrent jobs) run at once.
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
export function admissionOrder(a: PagewrightJob, b: PagewrightJob): number {
  return (
    b.spec.priority - a.spec.priority ||
    timestamp(a.metadata.creationTimestamp) - timestamp(b.metadata.creationTimestamp) ||
    jobKey(a).localeCompare(jobKey(b))
  );
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
