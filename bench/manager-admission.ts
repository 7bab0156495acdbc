/**
 * Manager admission throughput and latency on the real local control plane: 500 PagewrightJobs
 * created as fast as the apiserver takes them; time until every runner pod exists, and per job
 * the latency from its create call returning to its pod appearing in a watch. Baseline in the
 * same run: the same 500 pods created directly by a client at the same concurrency. No kubelet
 * runs, so the pods stay Pending (admission is what is measured).
 * A second measurement: jobs created one at a time, each alone (isolatedLatencies).
 * Headline: manager rate / direct rate (goal >= 0.9), p50 latency (goal < 50 ms).
 *
 *   make bench-admission        (BENCH_RUNS=5, BENCH_JOBS=500, BENCH_CONCURRENCY=32, BENCH_WORKERS=8)
 */
import { createSiteIfAbsent } from '../common/site-resource.js';
import { CoreV1Api, CustomObjectsApi, type V1Pod, type V1Secret, Watch } from '@kubernetes/client-node';
import pLimit from 'p-limit';
import { buildPod } from '../manager/pod-spec.js';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../common/job-resource.js';
import { createNamespace } from '../test/support/control-plane.js';
import { waitFor } from '../test/support/processes.js';
import { defaultPodConfig } from '../test/support/pod-config.js';
import { RUNS, alternating, headline, percentile, printTable, record, sized, summarize, summarizeAll } from './lib.js';
import { startCluster, startManagerChild } from './support/cluster.js';

const JOBS = sized('BENCH_JOBS', 500, 20);
const ALONE = sized('BENCH_ALONE_JOBS', 20, 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const WORKERS = process.env.BENCH_WORKERS ?? '8';

const cp = await startCluster();

/** apiserver_request_total by "VERB resource[/subresource]", from the apiserver's own metrics. */
async function apiserverRequests(): Promise<Map<string, number>> {
  const text = (await cp.kubectl(['get', '--raw', '/metrics'])).stdout;
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    if (['WATCH', 'CONNECT'].includes(label('verb')) || !['pods', 'pagewrightjobs', 'secrets', 'events'].includes(label('resource')))
      continue;
    const key = `${label('verb')} ${label('resource')}${label('subresource') ? `/${label('subresource')}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(line.split(' ').pop()));
  }
  return counts;
}

function perJob(before: Map<string, number>, after: Map<string, number>): string {
  return [...after]
    .map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / JOBS] as const)
    .filter(([, v]) => v >= 0.01)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');
}
const requestMix = { direct: '', manager: '' };
const kc = cp.kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);

/**
 * Resolves when `count` pods have been seen in `namespace`; records when each was first seen.
 * Rejects if the watch ends before that (rather than leave the bench waiting for its timeout).
 */
async function watchPods(namespace: string, count: number, key: (pod: V1Pod) => string) {
  const seen = new Map<string, number>();
  let done!: () => void;
  let failed!: (err: Error) => void;
  let stopped = false;
  const all = new Promise<void>((resolve, reject) => {
    done = resolve;
    failed = reject;
  });
  const req = await new Watch(kc).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    {},
    (type, pod: V1Pod) => {
      if (type !== 'ADDED') return;
      const k = key(pod);
      if (!seen.has(k)) seen.set(k, performance.now());
      if (seen.size >= count) done();
    },
    (err: unknown) => {
      if (!stopped && seen.size < count) failed(new Error(`the pod watch ended after ${seen.size} of ${count} pods: ${String(err)}`));
    },
  );
  return {
    seen,
    all,
    stop: () => {
      stopped = true;
      req.abort();
    },
  };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer!: NodeJS.Timeout;
  const timeout = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)),
  );
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sitesLimit = pLimit(CONCURRENCY);

async function direct(): Promise<number> {
  const ns = await createNamespace(cp, 'bench-direct');
  const pods = Array.from({ length: JOBS }, (_, i) => {
    const job = PagewrightJob.parse({
      metadata: { name: `job-${i}`, namespace: ns, uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, resourceVersion: '1' },
      spec: { siteId: `site-${i}`, prompt: 'x' },
    });
    return buildPod(job, 1, podConfig);
  });
  const watch = await watchPods(ns, JOBS, (p) => p.metadata!.name!);
  const limit = pLimit(CONCURRENCY);
  const before = await apiserverRequests();
  const start = performance.now();
  await Promise.all(pods.map((body) => limit(() => core.createNamespacedPod({ namespace: ns, body }))));
  await within(watch.all, 300_000, 'every pod in the watch');
  const ms = performance.now() - start;
  watch.stop();
  requestMix.direct = perJob(before, await apiserverRequests());
  return JOBS / (ms / 1000);
}

async function viaManager(): Promise<{ rate: number; latencies: number[]; isolated: number[]; steps: Record<AloneStep, number[]> }> {
  const ns = await createNamespace(cp, 'bench-manager');
  const manager = await startManagerChild(cp, ns, { PAGEWRIGHT_MAX_CONCURRENT_JOBS: String(JOBS * 2), PAGEWRIGHT_WORKERS: WORKERS });
  const created = new Map<string, number>();
  // each job's site exists, as a user's would, before the clock starts
  await Promise.all(Array.from({ length: JOBS }, (_, i) => sitesLimit(() => createSiteIfAbsent(custom, ns, `site-${i}`))));
  const watch = await watchPods(ns, JOBS, (p) => p.metadata!.labels!['pagewright.dev/job']!);
  const limit = pLimit(CONCURRENCY);
  const before = await apiserverRequests();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: JOBS }, (_, i) =>
      limit(async () => {
        const job = (await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'PagewrightJob',
            metadata: { name: `job-${i}` },
            spec: { siteId: `site-${i}`, prompt: 'Edit the page' },
          },
        })) as { metadata: { uid: string } };
        created.set(job.metadata.uid, performance.now());
      }),
    ),
  );
  await within(watch.all, 300_000, 'every pod in the watch');
  const ms = performance.now() - start;
  watch.stop();
  await new Promise((r) => setTimeout(r, 500)); // the Scheduled events and status writes still in flight
  requestMix.manager = perJob(before, await apiserverRequests());
  const alone = await isolatedLatencies(ns);
  await manager.stop();
  const latencies = [...created].map(([uid, at]) => watch.seen.get(uid)! - at);
  return { rate: JOBS / (ms / 1000), latencies, isolated: alone.latencies, steps: alone.steps };
}

/** The steps of one job alone as watches see them, in order: where its CR -> pod time goes. */
const ALONE_STEPS = ['finalizer added', 'status Scheduled', 'Secret created', 'pod created'] as const;
type AloneStep = (typeof ALONE_STEPS)[number];

/**
 * CR create -> pod with nothing else going on: jobs one at a time (the manager's own latency),
 * timed from the start of the create call (the pod can appear before the call returns) to the
 * pod's ADDED event, with each of the manager's writes on the way (ALONE_STEPS). One watch per
 * kind for all of them, from the current resourceVersion: a watch started without one first
 * replays every object already there (500 pods after the burst, 4 MB of JSON) before it gets
 * to the new one, and that replay, not the manager, was most of what this measured before
 * (BENCHMARKS.md section 3).
 */
async function isolatedLatencies(ns: string): Promise<{ latencies: number[]; steps: Record<AloneStep, number[]> }> {
  const seen = new Map<string, Partial<Record<AloneStep, number>>>();
  const mark = (name: string | undefined, step: AloneStep) => {
    // jobs are single-<i>; their pods and Secrets <job>-<uid prefix>-a<attempt>[-creds]
    const job = /^(single-\d+)(-|$)/.exec(name ?? '')?.[1];
    if (!job) return;
    const steps = seen.get(job) ?? {};
    steps[step] ??= performance.now();
    seen.set(job, steps);
  };
  const from = async <T>(
    path: string,
    list: () => Promise<{ metadata?: { resourceVersion?: string } }>,
    onEvent: (type: string, o: T) => void,
  ) => new Watch(kc).watch(path, { resourceVersion: (await list()).metadata?.resourceVersion }, onEvent, () => undefined);
  const watches = [
    await from(
      `/api/v1/namespaces/${ns}/pods`,
      () => core.listNamespacedPod({ namespace: ns, limit: 1 }),
      (type, pod: V1Pod) => type === 'ADDED' && mark(pod.metadata?.name, 'pod created'),
    ),
    await from(
      `/api/v1/namespaces/${ns}/secrets`,
      () => core.listNamespacedSecret({ namespace: ns, limit: 1 }),
      (type, secret: V1Secret) => type === 'ADDED' && mark(secret.metadata?.name, 'Secret created'),
    ),
    await from(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
      () =>
        custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace: ns, limit: 1 }) as Promise<{
          metadata?: { resourceVersion?: string };
        }>,
      (_type, job: { metadata: { name: string; finalizers?: string[] }; status?: { phase?: string } }) => {
        if (job.metadata.finalizers?.length) mark(job.metadata.name, 'finalizer added');
        if (job.status?.phase === 'Scheduled') mark(job.metadata.name, 'status Scheduled');
      },
    ),
  ];
  const latencies: number[] = [];
  const steps = Object.fromEntries(ALONE_STEPS.map((k) => [k, [] as number[]])) as Record<AloneStep, number[]>;
  try {
    for (let i = 0; i < ALONE; i++) {
      const name = `single-${i}`;
      await createSiteIfAbsent(custom, ns, name);
      const start = performance.now();
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'PagewrightJob',
          metadata: { name },
          spec: { siteId: name, prompt: 'Edit the page' },
        },
      });
      const done = await waitFor(`pod of ${name}`, async () => (seen.get(name)?.['pod created'] ? seen.get(name) : undefined), 30_000, 2);
      latencies.push(done['pod created']! - start);
      for (const step of ALONE_STEPS) if (done[step] !== undefined) steps[step].push(done[step] - start);
    }
  } finally {
    for (const w of watches) w.abort();
  }
  return { latencies, steps };
}

const podConfig = defaultPodConfig();

const rows = {
  direct: [] as number[],
  manager: [] as number[],
  ratio: [] as number[],
  p50: [] as number[],
  p99: [] as number[],
  isolatedP50: [] as number[],
};
const aloneSteps = Object.fromEntries(ALONE_STEPS.map((k) => [k, [] as number[]])) as Record<AloneStep, number[]>;
try {
  for (let run = 0; run < RUNS; run++) {
    const [d, m] = await alternating(run, direct, viaManager);
    rows.direct.push(d);
    rows.manager.push(m.rate);
    rows.ratio.push(m.rate / d);
    rows.p50.push(percentile(m.latencies, 50));
    rows.p99.push(percentile(m.latencies, 99));
    rows.isolatedP50.push(percentile(m.isolated, 50));
    for (const step of ALONE_STEPS) aloneSteps[step].push(percentile(m.steps[step], 50));
  }
} finally {
  await cp.stop();
}
printTable(`admission of ${JOBS} jobs (client concurrency ${CONCURRENCY}, manager workers ${WORKERS})`, [
  ['direct pod creation', rows.direct, 'pods/s'],
  ['manager (CR -> pod)', rows.manager, 'jobs/s'],
  ['ratio manager/direct', rows.ratio, 'x'],
  ['CR create -> pod, p50', rows.p50, 'ms'],
  ['CR create -> pod, p99', rows.p99, 'ms'],
  ['CR create -> pod, one job alone, p50', rows.isolatedP50, 'ms'],
  ...ALONE_STEPS.map((step) => [`  alone: create -> ${step}, p50`, aloneSteps[step], 'ms'] as [string, number[], string]),
]);
console.log(`  apiserver requests per job (pods, jobs, secrets, events; no watches): direct: ${requestMix.direct}`);
console.log(`                                                             manager: ${requestMix.manager}`);
await record('manager-admission', {
  request_mix: requestMix,
  jobs: JOBS,
  concurrency: CONCURRENCY,
  workers: WORKERS,
  runs: RUNS,
  ...summarizeAll(rows),
  alone_steps: summarizeAll(aloneSteps),
});
headline(
  `manager ${summarize(rows.ratio).median.toFixed(2)}x the direct pod creation rate (goal >= 0.9); CR->pod p50 ${summarize(rows.p50).median.toFixed(0)} ms under the burst, ${summarize(rows.isolatedP50).median.toFixed(0)} ms for a job alone (goal < 50 ms)`,
);

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
