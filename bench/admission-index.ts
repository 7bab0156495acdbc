/**
 * Admission decisions at queue scale, in process (no apiserver: this measures the decision
 * structure). 5,000 queued jobs over 500 sites are drained with maxConcurrent 10; each freed slot
 * costs what it costs the manager: the cache stores the finished job, slotFreed() decides which
 * jobs are admissible, each of them asks admit() for itself (a decision), is reserved, and the
 * cache catches up with its Scheduled version. The oldest running job finishes at the next step.
 * Some jobs are in retry backoff (they wake as the simulated clock passes their time), some are
 * cancelled (never admitted); priorities, ages and sites are random (seeded, the same every run).
 *
 * Baseline in the same run, on the same inputs and the same sequence: the brute-force
 * decideAdmission as the Admitter called it before the index (copy the cache and the in-flight
 * map, scan, sort). Both sides must admit the same jobs in the same order, or the bench fails.
 * Runs alternate which side goes first. The baseline's whole drain takes minutes (about 4 on
 * this 2-core machine under load), so it drains the whole queue in the first run only, and the
 * first BENCH_QUEUE_WINDOW freed slots (the queue at its fullest) in the others; the indexed
 * side drains the whole queue in every run.
 * Headline: time per freed slot over the window, brute force / indexed; each side's drain time.
 *
 *   make bench-admission-index   (BENCH_RUNS=5, BENCH_QUEUE_JOBS=5000, BENCH_QUEUE_SITES=500,
 *                                 BENCH_QUEUE_CONCURRENCY=10, BENCH_QUEUE_WINDOW=250)
 */
import { decideAdmission } from '../manager/admission.js';
import { AdmissionIndex } from '../manager/admission-index.js';
import { type PagewrightJob, PagewrightJob as JobSchema, jobKey } from '../common/job-resource.js';
import { RUNS, alternating, headline, printTable, record, sized, summarize, summarizeAll } from './lib.js';

const JOBS = sized('BENCH_QUEUE_JOBS', 5000, 200);
const SITES = sized('BENCH_QUEUE_SITES', 500, 20);
const MAX_CONCURRENT = Number(process.env.BENCH_QUEUE_CONCURRENCY ?? 10);
const WINDOW = sized('BENCH_QUEUE_WINDOW', 250, 20);
/** One freed slot per simulated second; backoffs end within the first 80% of the drain. */
const STEP_MS = 1000;
const T0 = Date.parse('2026-12-01T00:00:00Z');

/** What the drain loop needs of an admission implementation: the Admitter's calls. */
interface Decider {
  /** The cache stored this version (informer event). */
  put(job: PagewrightJob): void;
  reserve(key: string, siteId: string, attempt: number): void;
  /** The cache caught up with the reservation. */
  release(key: string): void;
  /** slotFreed(): the keys admissible now. */
  admissible(now: number): string[];
  /** admit(): may this key start now? */
  admits(key: string, now: number): boolean;
}

/** The Admitter before the index, its decision path verbatim: expire, copy, decideAdmission. */
function bruteForce(): Decider {
  const cache = new Map<string, PagewrightJob>();
  const inFlight = new Map<string, { siteId: string; attempt: number }>();
  const decide = (now: number) => {
    for (const [key, entry] of inFlight) {
      const cached = cache.get(key);
      if (!cached || (cached.status.attempt ?? 0) >= entry.attempt) inFlight.delete(key);
    }
    return decideAdmission({
      jobs: [...cache.values()],
      maxConcurrent: MAX_CONCURRENT,
      inFlight: new Map([...inFlight].map(([k, v]) => [k, v.siteId])),
      now,
    });
  };
  return {
    put: (job) => void cache.set(jobKey(job), job),
    reserve: (key, siteId, attempt) => void inFlight.set(key, { siteId, attempt }),
    release: () => undefined, // expired by the next decision, as before
    admissible: (now) => decide(now).admit,
    admits: (key, now) => decide(now).admit.includes(key),
  };
}

function indexed(): Decider {
  const index = new AdmissionIndex(MAX_CONCURRENT);
  return {
    put: (job) => index.upsert(job),
    reserve: (key, siteId) => index.reserve(key, siteId),
    release: (key) => index.release(key),
    admissible: (now) => index.admissible(now),
    admits: (key, now) => index.verdict(key, now) === 'admit',
  };
}

/** mulberry32, so that every run and both sides drain the same queue. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface QueuedJob {
  key: string;
  site: string;
  queued: PagewrightJob;
  scheduled: PagewrightJob;
  finished: PagewrightJob;
  cancelled: boolean;
}

/** The queue, with each job's later versions made up front (not timed). */
function makeQueue(): QueuedJob[] {
  const random = rng(42);
  const int = (n: number) => Math.floor(random() * n);
  return Array.from({ length: JOBS }, (_, i) => {
    const site = `site-${int(SITES)}`;
    const cancelled = random() < 0.02;
    const backoff = random() < 0.1;
    const queued = JobSchema.parse({
      metadata: {
        name: `job-${i}`,
        namespace: 'bench',
        uid: `uid-${i}`,
        resourceVersion: '1',
        // a burst: many jobs share a creation second, so the key tie-break is exercised
        creationTimestamp: new Date(T0 - int(600) * 1000).toISOString(),
      },
      spec: { siteId: site, prompt: 'edit', priority: int(4), cancel: cancelled },
      status: backoff
        ? { phase: 'Queued', attempt: 1, nextAttemptTime: new Date(T0 + int(Math.floor(0.8 * JOBS)) * STEP_MS).toISOString() }
        : { phase: 'Queued' },
    });
    const attempt = (queued.status.attempt ?? 0) + 1;
    const scheduled = { ...queued, status: { ...queued.status, phase: 'Scheduled' as const, attempt } };
    const finished = { ...queued, status: { ...queued.status, phase: 'Succeeded' as const, attempt } };
    return { key: jobKey(queued), site, queued, scheduled, finished, cancelled };
  });
}

interface Drain {
  loadMs: number;
  /** Time to the WINDOW-th freed slot. */
  windowMs: number;
  /** Time to drain the whole queue; undefined when stopped after the window. */
  drainMs: number | undefined;
  slots: number;
  decisions: number;
  admitted: string[];
}

function drain(queue: QueuedJob[], decider: Decider, whole: boolean): Drain {
  const byKey = new Map(queue.map((q) => [q.key, q]));
  const toAdmit = queue.filter((q) => !q.cancelled).length;
  let now = T0;
  const loadStart = performance.now();
  for (const q of queue) decider.put(q.queued);
  const loadMs = performance.now() - loadStart;

  const running: QueuedJob[] = [];
  const admitted: string[] = [];
  let decisions = 0;
  let slots = 0;
  let windowMs = NaN;
  const admitFrom = (keys: string[]) => {
    for (const key of keys) {
      decisions += 1;
      if (!decider.admits(key, now)) continue;
      const q = byKey.get(key)!;
      decider.reserve(key, q.site, q.scheduled.status.attempt!);
      decider.put(q.scheduled);
      decider.release(key);
      running.push(q);
      admitted.push(key);
    }
  };
  const start = performance.now();
  decisions += 1;
  admitFrom(decider.admissible(now));
  while (admitted.length < toAdmit || running.length > 0) {
    now += STEP_MS;
    const done = running.shift();
    if (done) {
      decider.put(done.finished);
      slots += 1;
    }
    decisions += 1;
    admitFrom(decider.admissible(now));
    if (slots === WINDOW && Number.isNaN(windowMs)) {
      windowMs = performance.now() - start;
      if (!whole) break;
    }
  }
  return { loadMs, windowMs, drainMs: whole ? performance.now() - start : undefined, slots, decisions, admitted };
}

const queue = makeQueue();
const rows = {
  bruteWindowSlotMs: [] as number[],
  indexWindowSlotMs: [] as number[],
  windowSpeedup: [] as number[],
  bruteSlotMs: [] as number[],
  indexSlotMs: [] as number[],
  speedup: [] as number[],
  bruteDrainS: [] as number[],
  indexDrainMs: [] as number[],
  bruteLoadMs: [] as number[],
  indexLoadMs: [] as number[],
};
let decisionsPerSlot = 0;
for (let run = 0; run < RUNS; run++) {
  const [brute, index] = await alternating(
    run,
    async () => drain(queue, bruteForce(), run === 0),
    async () => drain(queue, indexed(), true),
  );
  if (brute.admitted.join() !== index.admitted.slice(0, brute.admitted.length).join()) {
    throw new Error('the indexed admission admitted other jobs, or in another order, than decideAdmission');
  }
  rows.bruteWindowSlotMs.push(brute.windowMs / WINDOW);
  rows.indexWindowSlotMs.push(index.windowMs / WINDOW);
  rows.windowSpeedup.push(brute.windowMs / index.windowMs);
  rows.indexSlotMs.push(index.drainMs! / index.slots);
  rows.indexDrainMs.push(index.drainMs!);
  if (brute.drainMs !== undefined) {
    if (brute.admitted.length !== index.admitted.length) throw new Error('the two sides drained different numbers of jobs');
    rows.bruteSlotMs.push(brute.drainMs / brute.slots);
    rows.speedup.push(brute.drainMs / brute.slots / (index.drainMs! / index.slots));
    rows.bruteDrainS.push(brute.drainMs / 1000);
  }
  rows.bruteLoadMs.push(brute.loadMs);
  rows.indexLoadMs.push(index.loadMs);
  decisionsPerSlot = index.decisions / index.slots;
  const bruteSays =
    brute.drainMs !== undefined
      ? `drained in ${(brute.drainMs / 1000).toFixed(1)} s`
      : `first ${WINDOW} slots in ${(brute.windowMs / 1000).toFixed(1)} s`;
  console.log(
    `run ${run + 1}/${RUNS}: brute force ${bruteSays}; indexed drained in ${index.drainMs!.toFixed(0)} ms (${index.slots} slots, ${index.admitted.length} admitted)`,
  );
}

printTable(
  `draining ${JOBS} queued jobs over ${SITES} sites, maxConcurrent ${MAX_CONCURRENT}, ${decisionsPerSlot.toFixed(2)} decisions per freed slot`,
  [
    [`per freed slot, first ${WINDOW} slots, brute force (baseline)`, rows.bruteWindowSlotMs, 'ms'],
    [`per freed slot, first ${WINDOW} slots, indexed`, rows.indexWindowSlotMs, 'ms'],
    [`speedup, first ${WINDOW} slots`, rows.windowSpeedup, 'x'],
    ['per freed slot, whole drain, brute force', rows.bruteSlotMs, 'ms'],
    ['per freed slot, whole drain, indexed', rows.indexSlotMs, 'ms'],
    ['speedup, whole drain', rows.speedup, 'x'],
    ['drain, brute force', rows.bruteDrainS, 's'],
    ['drain, indexed', rows.indexDrainMs, 'ms'],
    ['load the queue, brute force (a Map)', rows.bruteLoadMs, 'ms'],
    ['load the queue, indexed', rows.indexLoadMs, 'ms'],
  ],
  3,
);
await record('admission-index', {
  jobs: JOBS,
  sites: SITES,
  max_concurrent: MAX_CONCURRENT,
  window: WINDOW,
  runs: RUNS,
  decisions_per_slot: decisionsPerSlot,
  ...summarizeAll(rows),
});
const s = summarizeAll(rows);
headline(
  `admission per freed slot (${JOBS} queued jobs, ${SITES} sites, first ${WINDOW} slots): indexed ${(s.indexWindowSlotMs!.median * 1000).toFixed(1)} us vs brute force ${s.bruteWindowSlotMs!.median.toFixed(1)} ms (${summarize(rows.windowSpeedup).median.toFixed(0)}x); ` +
    `whole drain: indexed ${s.indexDrainMs!.median.toFixed(0)} ms vs brute force ${s.bruteDrainS!.median.toFixed(1)} s`,
);
