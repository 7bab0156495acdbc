/**
 * The admission index against the rule it replaces: decideAdmission (a full scan and sort) is the
 * specification, and on seeded random job sets, and after every step of random sequences of
 * cache changes, reservations and clock ticks, the index must give the same jobs to admit, in
 * the same order, and the same reason for every job that waits. Then the parts around it: the
 * heap, the JobCache's observers, and the Admitter's reservations and wake-ups.
 */
import { expect } from 'chai';
import { decideAdmission } from '../../manager/admission.js';
import { AdmissionIndex, type Verdict } from '../../manager/admission-index.js';
import { Admitter } from '../../manager/admitter.js';
import { IndexedHeap } from '../../manager/heap.js';
import { JobCache } from '../../manager/job-cache.js';
import { type JobPhase, PagewrightJob, jobKey } from '../../common/job-resource.js';
import { silentLogger } from '../../common/logger.js';

/** mulberry32: a small seeded generator, so a failing case can be replayed from its seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    chance: (p: number) => next() < p,
  };
}
type Rng = ReturnType<typeof rng>;

const T0 = 1_700_000_000_000;
let uid = 0;

interface JobOpts {
  ns?: string;
  name: string;
  site: string;
  priority?: number;
  created?: number;
  phase?: JobPhase;
  attempt?: number;
  nextAttempt?: number;
  cancel?: boolean;
  deleting?: boolean;
}

function raw(o: JobOpts) {
  uid += 1;
  return {
    metadata: {
      name: o.name,
      namespace: o.ns ?? 'ns',
      uid: `uid-${uid}`,
      resourceVersion: String(uid),
      ...(o.created !== undefined ? { creationTimestamp: new Date(o.created).toISOString() } : {}),
      ...(o.deleting ? { deletionTimestamp: new Date(T0).toISOString() } : {}),
    },
    spec: { siteId: o.site, prompt: 'edit', priority: o.priority ?? 0, cancel: o.cancel ?? false },
    status: {
      ...(o.phase ? { phase: o.phase } : {}),
      ...(o.attempt !== undefined ? { attempt: o.attempt } : {}),
      ...(o.nextAttempt !== undefined ? { nextAttemptTime: new Date(o.nextAttempt).toISOString() } : {}),
    },
  };
}
const job = (o: JobOpts) => PagewrightJob.parse(raw(o));

/**
 * A random job. Few sites, priorities and creation seconds, so that ties and busy sites are
 * common; names with "-", "." and digits, so that the key tie-break (localeCompare) is exercised.
 */
function randomJob(r: Rng, name: string, sites: number, now: number): PagewrightJob {
  const phase = r.pick<JobPhase | undefined>([
    undefined,
    undefined,
    'Queued',
    'Queued',
    'Queued',
    'Scheduled',
    'Running',
    'Succeeded',
    'Failed',
    'Cancelled',
  ]);
  const backoff = r.int(4);
  return job({
    ns: r.pick(['ns', 'ns', 'team-b']),
    name,
    site: `site-${r.int(sites)}`,
    priority: r.pick([-1, 0, 0, 0, 1, 5]),
    created: r.chance(0.05) ? undefined : T0 + r.int(4) * 1000,
    phase,
    attempt: r.int(3),
    // none, in the past, just due (== now is due) or in the future
    nextAttempt: [undefined, now - 1 - r.int(60_000), now, now + 1 + r.int(60_000)][backoff],
    cancel: r.chance(0.08),
    deleting: r.chance(0.08),
  });
}
const randomName = (r: Rng, pool: number) => `${r.pick(['a', 'b', 'job'])}${r.pick(['-', '.', ''])}${r.int(pool)}`;

/** The index must say what decideAdmission says, for the admit list and for every key. */
function expectSameAsBruteForce(
  index: AdmissionIndex,
  jobs: ReadonlyMap<string, PagewrightJob>,
  inFlight: ReadonlyMap<string, string>,
  maxConcurrent: number,
  now: number,
  context: string,
): string[] {
  const want = decideAdmission({ jobs: [...jobs.values()], maxConcurrent, inFlight, now });
  const admit = index.admissible(now);
  expect(admit, `${context}: admit`).to.deep.equal(want.admit);
  const verdicts = { want: [] as Array<[string, Verdict | undefined]>, got: [] as Array<[string, Verdict | undefined]> };
  for (const key of new Set([...jobs.keys(), ...inFlight.keys()])) {
    verdicts.want.push([key, want.admit.includes(key) ? 'admit' : want.waiting.get(key)]);
    verdicts.got.push([key, index.verdict(key, now)]);
  }
  expect(verdicts.got, `${context}: verdicts`).to.deep.equal(verdicts.want);
  return admit;
}

describe('admission index', () => {
  describe('IndexedHeap', () => {
    it('pops in order and removes any item, against a sorted array (seeded)', () => {
      const r = rng(7);
      const heap = new IndexedHeap<{ v: number }>((a, b) => a.v < b.v);
      const model: Array<{ v: number }> = [];
      for (let step = 0; step < 5000; step++) {
        const op = r.int(3);
        if (op === 0 || model.length === 0) {
          const item = { v: r.int(100) };
          heap.push(item);
          model.push(item);
        } else if (op === 1) {
          const min = Math.min(...model.map((x) => x.v));
          expect(heap.pop()!.v).to.equal(min);
          model.splice(
            model.findIndex((x) => x.v === min && !heap.has(x)),
            1,
          );
        } else {
          const item = model.splice(r.int(model.length), 1)[0]!;
          expect(heap.remove(item)).to.equal(true);
          expect(heap.remove(item)).to.equal(false);
        }
        expect(heap.size).to.equal(model.length);
        if (model.length) expect(heap.peek()!.v).to.equal(Math.min(...model.map((x) => x.v)));
      }
    });
  });

  describe('same decisions as decideAdmission', () => {
    it('on 300 random job sets with reservations, backoff, cancel and deletion (seeded)', () => {
      for (let seed = 1; seed <= 300; seed++) {
        const r = rng(seed);
        const now = T0 + 30_000;
        const maxConcurrent = 1 + r.int(6);
        const jobs = new Map<string, PagewrightJob>();
        for (let i = 0, n = r.int(40); i < n; i++) {
          const j = randomJob(r, randomName(r, 30), 1 + r.int(8), now);
          jobs.set(jobKey(j), j);
        }
        // reservations: cached jobs in any phase (their cache version is then ignored), and
        // admissions the cache has not seen at all
        const inFlight = new Map<string, string>();
        for (const key of jobs.keys()) if (r.chance(0.1)) inFlight.set(key, jobs.get(key)!.spec.siteId);
        if (r.chance(0.3)) inFlight.set('ns/unseen', `site-${r.int(8)}`);

        const index = new AdmissionIndex(maxConcurrent);
        // arrival order must not matter: reservations before, between or after the jobs
        const ops: Array<() => void> = [
          ...[...jobs.values()].map((j) => () => index.upsert(j)),
          ...[...inFlight].map(
            ([k, site]) =>
              () =>
                index.reserve(k, site),
          ),
        ];
        for (let i = ops.length - 1; i > 0; i--) {
          const k = r.int(i + 1);
          [ops[i], ops[k]] = [ops[k]!, ops[i]!];
        }
        for (const op of ops) op();
        expectSameAsBruteForce(index, jobs, inFlight, maxConcurrent, now, `seed ${seed}`);
      }
    });

    it('after every step of random cache changes, reservations and clock ticks, and names each newly admissible job (seeded)', () => {
      let checkedAdmits = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const r = rng(1000 + seed);
        let now = T0;
        const maxConcurrent = 1 + r.int(5);
        const sites = 1 + r.int(6);
        const jobs = new Map<string, PagewrightJob>();
        const inFlight = new Map<string, string>();
        const notified = new Set<string>();
        const index = new AdmissionIndex(maxConcurrent, (key) => notified.add(key));
        for (let step = 0; step < 150; step++) {
          const op = r.int(10);
          let what: string;
          if (op < 5) {
            // a new job or a new version of one (phase, priority, backoff... all may change)
            const j = randomJob(r, randomName(r, 12), sites, now);
            jobs.set(jobKey(j), j);
            index.upsert(j);
            what = `put ${jobKey(j)} ${j.status.phase ?? '-'}`;
          } else if (op === 5 && jobs.size > 0) {
            const key = r.pick([...jobs.keys()]);
            jobs.delete(key);
            index.remove(key);
            what = `delete ${key}`;
          } else if (op === 6) {
            const key = jobs.size > 0 && r.chance(0.9) ? r.pick([...jobs.keys()]) : `ns/ghost-${r.int(3)}`;
            const site = jobs.get(key)?.spec.siteId ?? `site-${r.int(sites)}`;
            inFlight.set(key, site);
            index.reserve(key, site);
            what = `reserve ${key}`;
          } else if (op === 7 && inFlight.size > 0) {
            const key = r.pick([...inFlight.keys()]);
            inFlight.delete(key);
            index.release(key);
            what = `release ${key}`;
          } else {
            now += r.int(20_000); // backoffs end as time passes
            what = `tick ${now - T0}`;
          }
          const admit = expectSameAsBruteForce(index, jobs, inFlight, maxConcurrent, now, `seed ${seed} step ${step} (${what})`);
          checkedAdmits += admit.length;
          // every admissible job was named when it became admissible (so it gets reconciled)
          for (const key of admit) expect(notified.has(key), `seed ${seed} step ${step}: ${key} admissible, never named`).to.equal(true);
          for (const key of notified) if (!admit.includes(key)) notified.delete(key);
        }
      }
      expect(checkedAdmits).to.be.greaterThan(1000); // the sequences did admit, so the comparison bit
    });
  });

  describe('incremental updates', () => {
    const now = T0 + 10_000;

    it('a job in backoff waits without holding its site, and is admissible once the time passes', () => {
      const index = new AdmissionIndex(5);
      const retrying = job({ name: 'retrying', site: 'a', priority: 9, phase: 'Queued', attempt: 1, nextAttempt: now + 5000 });
      const next = job({ name: 'next', site: 'a' });
      index.upsert(retrying);
      index.upsert(next);
      expect(index.verdict('ns/retrying', now)).to.equal('backoff');
      expect(index.admissible(now)).to.deep.equal(['ns/next']);
      expect(index.verdict('ns/retrying', now + 4999)).to.equal('backoff');
      expect(index.admissible(now + 5000)).to.deep.equal(['ns/retrying']);
      expect(index.verdict('ns/next', now + 5000)).to.equal('site-busy');
    });

    it('a reservation holds a slot and its site until released; the cache version of a reserved job is ignored', () => {
      const index = new AdmissionIndex(2);
      index.upsert(job({ name: 'x', site: 'a', priority: 2 }));
      index.upsert(job({ name: 'y', site: 'a', priority: 1 }));
      index.upsert(job({ name: 'z', site: 'b', created: T0 }));
      index.upsert(job({ name: 'w', site: 'c', created: T0 + 1000 }));
      expect(index.admissible(now)).to.deep.equal(['ns/x', 'ns/z']);
      index.reserve('ns/x', 'a');
      expect(index.verdict('ns/x', now)).to.equal(undefined); // never admitted twice
      expect(index.verdict('ns/y', now)).to.equal('site-busy');
      expect(index.admissible(now)).to.deep.equal(['ns/z']);
      expect(index.free).to.equal(1);
      // the cache catches up: still one slot and site a, now counted from the cache
      index.upsert(job({ name: 'x', site: 'a', priority: 2, phase: 'Scheduled', attempt: 1 }));
      index.release('ns/x');
      expect(index.free).to.equal(1);
      expect(index.verdict('ns/y', now)).to.equal('site-busy');
      // it finishes: site a's next job is its head again, and wins the slot on age over z
      index.upsert(job({ name: 'x', site: 'a', priority: 2, phase: 'Succeeded', attempt: 1 }));
      expect(index.admissible(now)).to.deep.equal(['ns/y', 'ns/z']);
    });

    it('cancelled and deleting jobs leave the queue, and their site next job takes the head', () => {
      const notified: string[] = [];
      const index = new AdmissionIndex(1, (k) => notified.push(k));
      index.upsert(job({ name: 'first', site: 'a', priority: 3 }));
      index.upsert(job({ name: 'second', site: 'a', priority: 2 }));
      index.upsert(job({ name: 'other', site: 'b', priority: 1 }));
      expect(index.admissible(now)).to.deep.equal(['ns/first']);
      notified.length = 0;
      index.upsert(job({ name: 'first', site: 'a', priority: 3, cancel: true }));
      expect(index.verdict('ns/first', now)).to.equal(undefined);
      expect(notified).to.deep.equal(['ns/second']);
      index.upsert(job({ name: 'second', site: 'a', priority: 2, deleting: true }));
      expect(notified).to.deep.equal(['ns/second', 'ns/other']);
      expect(index.admissible(now)).to.deep.equal(['ns/other']);
      index.remove('ns/other');
      expect(index.admissible(now)).to.deep.equal([]);
    });

    it('a lower priority or a finished job elsewhere names the job that now gets the slot', () => {
      const notified: string[] = [];
      const index = new AdmissionIndex(2, (k) => notified.push(k));
      index.upsert(job({ name: 'running', site: 'r', phase: 'Running', attempt: 1 }));
      index.upsert(job({ name: 'a', site: 'a', priority: 5 }));
      index.upsert(job({ name: 'b', site: 'b', priority: 4 }));
      expect(index.admissible(now)).to.deep.equal(['ns/a']);
      notified.length = 0;
      index.upsert(job({ name: 'a', site: 'a', priority: 0 }));
      expect(notified).to.deep.equal(['ns/b']);
      index.upsert(job({ name: 'running', site: 'r', phase: 'Failed', attempt: 1 }));
      expect(notified).to.deep.equal(['ns/b', 'ns/a']);
      expect(index.admissible(now)).to.deep.equal(['ns/b', 'ns/a']);
    });
  });
});

describe('JobCache observers', () => {
  it('hear of the jobs already cached, each job stored and each job removed, and nothing the cache refused', () => {
    const cache = new JobCache(silentLogger);
    cache.putJob(raw({ name: 'before', site: 'a' }));
    const heard: string[] = [];
    cache.observe({ put: (j) => heard.push(`put ${jobKey(j)}`), deleted: (k) => heard.push(`deleted ${k}`) });
    expect(heard).to.deep.equal(['put ns/before']);
    const after = raw({ name: 'after', site: 'a' });
    cache.putJob(after);
    cache.putJob({ metadata: { name: 'broken', namespace: 'ns' }, spec: { siteId: 'NOT A DNS LABEL' } });
    cache.deleteJob({ metadata: { name: 'after', namespace: 'ns', uid: 'some-other-uid' } }); // a newer job of that name stays
    cache.deleteJob(after);
    expect(heard).to.deep.equal(['put ns/before', 'put ns/after', 'deleted ns/after']);
  });
});

describe('Admitter', () => {
  function setup(maxConcurrent: number, opts: { synced?: boolean } = {}) {
    const cache = new JobCache(silentLogger);
    const enqueued: string[] = [];
    let clock = T0;
    let synced = opts.synced ?? true;
    const admitter = new Admitter({ maxConcurrent, cache, synced: () => synced, enqueue: (k) => enqueued.push(k), now: () => clock });
    const put = (o: JobOpts) => {
      const r = raw({ created: T0, ...o });
      cache.putJob(r);
      return cache.job(`ns/${o.name}`)!;
    };
    const stored = (j: PagewrightJob) => async () => j;
    return {
      cache,
      admitter,
      enqueued,
      put,
      stored,
      tick: (ms: number) => (clock += ms),
      setSynced: (v: boolean) => (synced = v),
    };
  }

  it('admits the best job and holds its slot and site until the cache shows it at the attempt', async () => {
    const { admitter, put, stored, enqueued } = setup(1);
    const a = put({ name: 'a', site: 'a', priority: 1 });
    const b = put({ name: 'b', site: 'b' });
    expect(await admitter.admit(b, 1, stored(b))).to.equal(null);
    let release!: () => void;
    const writing = admitter.admit(a, 1, () => new Promise<PagewrightJob>((r) => (release = () => r(a))));
    await new Promise((r) => setImmediate(r));
    expect(admitter.inFlight).to.equal(1);
    expect(await admitter.admit(b, 1, stored(b))).to.equal(null); // a's reservation holds the slot
    release();
    expect(await writing).to.equal(a);
    put({ name: 'a', site: 'a', priority: 1, phase: 'Scheduled', attempt: 1 });
    expect(admitter.inFlight).to.equal(0);
    expect(await admitter.admit(b, 1, stored(b))).to.equal(null); // now counted from the cache
    enqueued.length = 0;
    put({ name: 'a', site: 'a', priority: 1, phase: 'Succeeded', attempt: 1 });
    expect(enqueued).to.deep.equal(['ns/b']); // the freed slot names the next job
    expect(await admitter.admit(b, 1, stored(b))).to.equal(b);
  });

  it('a write that fails frees the slot for the next job, and does not requeue the failed one', async () => {
    const { admitter, put, enqueued } = setup(1);
    const a = put({ name: 'a', site: 'a', priority: 1 });
    put({ name: 'b', site: 'b' });
    enqueued.length = 0;
    await admitter
      .admit(a, 1, async () => {
        throw new Error('apiserver down');
      })
      .catch(() => undefined);
    expect(admitter.inFlight).to.equal(0);
    expect(enqueued).to.not.include('ns/a'); // its own retry, with its backoff, brings it back
    // cancelled while its Scheduled write was refused: the slot goes to b
    const writing = admitter.admit(a, 1, async () => {
      put({ name: 'a', site: 'a', priority: 1, cancel: true });
      return null;
    });
    expect(await writing).to.equal(null);
    expect(enqueued).to.deep.equal(['ns/b']);
  });

  it('a job the cache shows finished at the admitted attempt, without a Scheduled version, frees its slot', async () => {
    const { admitter, put, stored, enqueued } = setup(1);
    const a = put({ name: 'a', site: 'a', priority: 1 });
    put({ name: 'b', site: 'b' });
    expect(await admitter.admit(a, 1, stored(a))).to.equal(a);
    expect(admitter.inFlight).to.equal(1);
    enqueued.length = 0;
    put({ name: 'a', site: 'a', priority: 1, phase: 'Failed', attempt: 1 });
    expect(admitter.inFlight).to.equal(0);
    expect(enqueued).to.deep.equal(['ns/b']);
  });

  it('a job in backoff is admitted once its time has passed', async () => {
    const { admitter, put, stored, tick } = setup(2);
    const a = put({ name: 'a', site: 'a', phase: 'Queued', attempt: 1, nextAttempt: T0 + 1000 });
    expect(await admitter.admit(a, 2, stored(a))).to.equal(null);
    tick(1000);
    expect(await admitter.admit(a, 2, stored(a))).to.equal(a);
  });

  it('decides nothing and wakes nobody before the cache has synced', async () => {
    const { admitter, put, stored, enqueued, setSynced } = setup(1, { synced: false });
    const a = put({ name: 'a', site: 'a' });
    expect(await admitter.admit(a, 1, stored(a))).to.equal(null);
    admitter.slotFreed();
    expect(enqueued).to.deep.equal([]);
    setSynced(true);
    admitter.slotFreed();
    expect(enqueued).to.deep.equal(['ns/a']);
  });
});
