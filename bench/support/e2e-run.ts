/** bench/e2e.ts's measurement, on a given manager env: the bench runs it on a node of its own, the smoke test (test/node/bench-e2e-smoke.test.ts) on the suite's. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CoreV1Api, type V1Pod, Watch } from '@kubernetes/client-node';
import { WORK_PHASES } from '../../common/schemas.js';
import { buildPod, buildSecret } from '../../manager/pod-spec.js';
import { PagewrightJob } from '../../common/job-resource.js';
import type { ManagerEnv } from '../../test/support/manager-env.js';
import { defaultPodConfig } from '../../test/support/pod-config.js';
import { waitFor } from '../../test/support/processes.js';
import { alternating, headline, percentile, printTable, record, summarize, summarizeAll } from '../lib.js';

export interface E2eOptions {
  jobs: number;
  /** false: print the table and HEADLINE only, append nothing to bench/results (smoke runs). */
  record: boolean;
}

/**
 * The benchmark on a manager env of the real node (test/support/manager-env.ts): starts its
 * manager (the real runner image), runs the jobs alternated with bare pods, prints the table
 * and returns the HEADLINE. Leaves the env running: its caller stops it.
 */
export async function runE2e(env: ManagerEnv, opts: E2eOptions): Promise<string> {
  const JOBS = opts.jobs;
  const node = env.cp;
  await env.startManager({ env: { PAGEWRIGHT_LOG_LEVEL: 'info', PAGEWRIGHT_RUNNER_IMAGE: 'pagewright-runner:0.1.0' } });
  const core = node.kubeConfig().makeApiClient(CoreV1Api);

  // containerd's task start events, by container id, in epoch ms
  const taskStarts = new Map<string, number>();
  const events = spawn('ctr', ['--address', node.containerd.socket, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
  createInterface({ input: events.stdout }).on('line', (line) => {
    // 2026-12-01 00:00:00.123456789 +0000 UTC k8s.io /tasks/start {"container_id":"...","pid":1}
    const m = /^(\S+) (\d\d:\d\d:\d\d)(\.\d+)? ([+-]\d{4}) \S+ \S+ \/tasks\/start (\{.*\})$/.exec(line);
    if (!m) return;
    const at = Date.parse(`${m[1]}T${m[2]}${(m[3] ?? '.0').slice(0, 4)}${m[4]!.slice(0, 3)}:${m[4]!.slice(3)}`);
    taskStarts.set((JSON.parse(m[5]!) as { container_id: string }).container_id, at);
  });

  // pods seen Running through a watch, by pod name
  const podRunning = new Map<string, number>();
  const jobSucceeded = new Map<string, number>();
  const kw = new Watch(node.kubeConfig());
  const watches = [
    await kw.watch(
      `/api/v1/namespaces/${env.namespace}/pods`,
      {},
      (_t, pod: V1Pod) => {
        if (pod.status?.phase === 'Running' && !podRunning.has(pod.metadata!.name!)) podRunning.set(pod.metadata!.name!, Date.now());
      },
      () => undefined,
    ),
    await kw.watch(
      `/apis/pagewright.dev/v1alpha1/namespaces/${env.namespace}/pagewrightjobs`,
      {},
      (_t, obj: PagewrightJob) => {
        if (obj.status?.phase === 'Succeeded' && !jobSucceeded.has(obj.metadata.name)) jobSucceeded.set(obj.metadata.name, Date.now());
      },
      () => undefined,
    ),
  ];

  /** When containerd started the runner container of this pod (waits for the event). */
  async function containerStarted(podUid: string): Promise<number> {
    return waitFor(
      'the runner container start event',
      async () => {
        const runner = (await node.containers(podUid)).find((c) => c.kind === 'container');
        return runner ? taskStarts.get(runner.id) : undefined;
      },
      30_000,
      50,
    );
  }

  const startJob: number[] = [];
  const startJobWatch: number[] = [];
  const startPod: number[] = [];
  const total: number[] = [];
  const overhead: number[] = [];
  const phases: Record<string, number[]> = {};

  async function oneJob(i: number): Promise<void> {
    const name = `e2e-${i}`;
    const t0 = Date.now();
    await env.createJob(name, { siteId: `site-${'abc'[i % 3]}`, prompt: `Add a notice to the home page (job ${i}).` });
    const job = await env.waitForJob(name, 'Succeeded', (j) => j.status.phase === 'Succeeded' || j.status.phase === 'Failed', 120_000);
    if (job.status.phase !== 'Succeeded') throw new Error(`${name}: ${JSON.stringify(job.status)}\n${await env.diagnostics()}`);
    const pod = (await env.jobPods(job.metadata.uid))[0]!;
    startJob.push((await containerStarted(pod.metadata!.uid!)) - t0);
    startJobWatch.push(podRunning.get(pod.metadata!.name!)! - t0);
    const d = job.status.phaseDurationsMs ?? {};
    const end = jobSucceeded.get(name) ?? Date.now();
    total.push(end - t0);
    overhead.push(end - t0 - (d.executing_codex ?? 0));
    for (const p of WORK_PHASES) {
      phases[p] ??= [];
      phases[p].push(d[p] ?? 0);
    }
    // the runner lingers for its exit delay: let the node be quiet before the next measurement
    await waitFor(
      'the runner pod to end',
      async () =>
        ['Succeeded', 'Failed'].includes(
          (await core.readNamespacedPod({ namespace: env.namespace, name: pod.metadata!.name! })).status?.phase ?? '',
        ),
      30_000,
      100,
    );
  }

  /** The baseline: the manager's runner pod spec, created directly, its container only sleeping. */
  async function onePod(i: number): Promise<void> {
    const job = PagewrightJob.parse({
      metadata: {
        name: `bare-${i}`,
        namespace: env.namespace,
        uid: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`,
        resourceVersion: '1',
      },
      spec: { siteId: 'site-a', prompt: 'baseline' },
    });
    const cfg = { ...defaultPodConfig(), runnerImage: 'pagewright-runner:0.1.0', runnerImagePullPolicy: 'Never' as const };
    const body = buildPod(job, 1, cfg);
    delete body.metadata!.ownerReferences; // no such owner: the garbage collector would remove the pod
    body.spec!.containers[0]!.command = ['node', '-e', 'setInterval(() => {}, 1000)'];
    delete body.spec!.containers[0]!.readinessProbe;
    const secret = buildSecret(job, 1, { runnerToken: 'unused', gatewayCredential: 'unused' });
    delete secret.metadata!.ownerReferences;
    await core.createNamespacedSecret({ namespace: env.namespace, body: secret });
    const t0 = Date.now();
    const pod = await core.createNamespacedPod({ namespace: env.namespace, body });
    startPod.push((await containerStarted(pod.metadata!.uid!)) - t0);
    // a graceful delete: the object goes once the kubelet has torn the pod down, so that no
    // teardown overlaps the next measurement
    await core.deleteNamespacedPod({ namespace: env.namespace, name: pod.metadata!.name!, gracePeriodSeconds: 5 });
    await core.deleteNamespacedSecret({ namespace: env.namespace, name: secret.metadata!.name! });
    await waitFor(
      'the bare pod to be gone',
      async () =>
        core.readNamespacedPod({ namespace: env.namespace, name: pod.metadata!.name! }).then(
          () => false,
          () => true,
        ),
      30_000,
      100,
    );
  }

  try {
    for (let i = 0; i < JOBS; i++)
      await alternating(
        i,
        () => onePod(i),
        () => oneJob(i),
      );
  } finally {
    for (const w of watches) w.abort();
    events.kill();
  }

  const pct = (v: number[]) => `p50 ${percentile(v, 50).toFixed(0)} ms, p99 ${percentile(v, 99).toFixed(0)} ms`;
  printTable(`${JOBS} jobs on the real node, one at a time, alternated with ${JOBS} bare pods (n = jobs)`, [
    ['CR created -> runner container started (containerd)', startJob, 'ms'],
    ['CR created -> pod Running (watch; the SLO)', startJobWatch, 'ms'],
    ['baseline: pod created -> container started', startPod, 'ms'],
    ['create -> Succeeded', total, 'ms'],
    ['overhead outside codex', overhead, 'ms'],
    ...WORK_PHASES.map((p) => [`  runner phase ${p}`, phases[p]!, 'ms'] as [string, number[], string]),
  ]);
  console.log(`  start latency: ${pct(startJob)} (containerd); ${pct(startJobWatch)} (watch); baseline ${pct(startPod)}`);
  if (opts.record)
    await record('e2e', {
      jobs: JOBS,
      start_ms: { p50: percentile(startJob, 50), p99: percentile(startJob, 99), ...summarize(startJob) },
      start_watch_ms: { p50: percentile(startJobWatch, 50), p99: percentile(startJobWatch, 99) },
      baseline_pod_start_ms: { p50: percentile(startPod, 50), p99: percentile(startPod, 99) },
      total_ms: summarize(total),
      overhead_ms: summarize(overhead),
      phases: summarizeAll(phases),
    });
  const text =
    `CR -> runner container started p50 ${percentile(startJob, 50).toFixed(0)} ms, p99 ${percentile(startJob, 99).toFixed(0)} ms ` +
    `(${(percentile(startJob, 50) / percentile(startPod, 50)).toFixed(2)}x a bare pod's ${percentile(startPod, 50).toFixed(0)} ms); ` +
    `pod Running by watch p99 ${percentile(startJobWatch, 99).toFixed(0)} ms (SLO 5000); overhead outside codex median ${summarize(overhead).median.toFixed(0)} ms`;
  headline(text);
  return text;
}
