/**
 * Manager memory at scale: 10,000 finished PagewrightJobs with a realistic status in the
 * informer cache. Measures the manager's RSS after its first full pass and after each periodic
 * resync, and the reconcile time per idle job (from its own reconcile histogram, between
 * resyncs). Baseline in the same run: the RSS of the same manager watching an empty namespace.
 * Headline: RSS with 10,000 jobs (goal < 300 MB) and reconcile time per idle job. The manager
 * runs with the NODE_OPTIONS of its Deployment; BENCH_MANAGER_ENV='{"NODE_OPTIONS":""}' (JSON,
 * merged into its env) runs it otherwise.
 *
 *   make bench-memory        (BENCH_RUNS=5 resyncs, BENCH_MEMORY_JOBS=10000)
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import pLimit from 'p-limit';
import { FINALIZER, GROUP, PLURAL, VERSION } from '../common/job-resource.js';
import { createNamespace } from '../test/support/control-plane.js';
import { waitFor } from '../test/support/processes.js';
import { RUNS, headline, printTable, record, rss, sized, summarize } from './lib.js';
import { startCluster, startManagerChild } from './support/cluster.js';

const JOBS = sized('BENCH_MEMORY_JOBS', 10_000, 50);
const RESYNC_SECONDS = sized('BENCH_MEMORY_RESYNC_SECONDS', 20, 2);
const cp = await startCluster();
const custom = cp.kubeConfig().makeApiClient(CustomObjectsApi);

function finishedStatus(i: number) {
  const done = new Date(Date.now() - 3600_000).toISOString();
  const files = Array.from({ length: 1 + (i % 12) }, (_, k) => `section-${k}/page-${i}-${k}.html`);
  return {
    phase: 'Succeeded',
    runnerPhase: 'completed',
    jobId: `uid-${i}`,
    attempt: 1,
    reportedAttempt: 1,
    podName: `job-${i}-abcdef12-a1`,
    startTime: done,
    completionTime: done,
    baseVersion: 'a'.repeat(64),
    outputVersion: 'b'.repeat(64),
    filesChanged: files.length,
    files,
    summary: `Updated the opening hours and the footer on ${files.length} pages, keeping the existing design and tone of the bakery's site.`,
    message: 'the agent finished',
    phaseDurationsMs: {
      preflight: 120,
      fetching_artifact: 340,
      unpacking: 220,
      patching_instructions: 3,
      executing_codex: 48_000,
      packing_result: 180,
      uploading: 260,
    },
    observedGeneration: 1,
    conditions: [
      { type: 'Running', status: 'False', reason: 'Succeeded', lastTransitionTime: done, observedGeneration: 1 },
      {
        type: 'Complete',
        status: 'True',
        reason: 'Succeeded',
        message: 'Updated the opening hours',
        lastTransitionTime: done,
        observedGeneration: 1,
      },
    ],
  };
}

try {
  const empty = await createNamespace(cp, 'bench-empty');
  const idleManager = await startManagerChild(cp, empty);
  await new Promise((r) => setTimeout(r, 2000));
  const emptyRss = (await rss(idleManager.pid)).rssMiB;
  await idleManager.stop();

  const ns = await createNamespace(cp, 'bench-memory');
  const limit = pLimit(32);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: JOBS }, (_, i) =>
      limit(async () => {
        const created = (await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'PagewrightJob',
            metadata: { name: `job-${i}`, finalizers: [FINALIZER] },
            spec: { siteId: `site-${i % 500}`, prompt: `Update the opening hours on every page (job ${i}). `.repeat(4) },
          },
        })) as { metadata: Record<string, unknown>; spec: unknown };
        await custom.replaceNamespacedCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: ns,
          name: `job-${i}`,
          body: { ...created, status: finishedStatus(i) },
        });
      }),
    ),
  );
  console.log(`created ${JOBS} finished jobs in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const t0 = performance.now();
  const manager = await startManagerChild(cp, ns, {
    PAGEWRIGHT_RESYNC_SECONDS: String(RESYNC_SECONDS),
    ...(process.env.BENCH_MANAGER_ENV ? JSON.parse(process.env.BENCH_MANAGER_ENV) : {}),
  });
  const syncMs = performance.now() - t0;
  const count = () => manager.metric('pagewright_reconcile_duration_seconds_count{result="ok"}');
  const sum = () => manager.metric('pagewright_reconcile_duration_seconds_sum{result="ok"}');
  // the first pass: every job reconciled once (finished jobs: their Secret deleted once)
  await waitFor('first pass', async () => (await count()) >= JOBS, 300_000, 500);
  const firstPassMs = performance.now() - t0;
  const afterFirst = (await rss(manager.pid)).rssMiB;
  const rssAfterResync: number[] = [];
  const perJobMs: number[] = [];
  let [c0, s0] = [await count(), await sum()];
  for (let i = 0; i < RUNS; i++) {
    await waitFor('a resync', async () => (await count()) >= c0 + JOBS, (RESYNC_SECONDS + 120) * 1000, 250);
    await new Promise((r) => setTimeout(r, 1000));
    const [c1, s1] = [await count(), await sum()];
    perJobMs.push(((s1 - s0) / (c1 - c0)) * 1000);
    rssAfterResync.push((await rss(manager.pid)).rssMiB);
    [c0, s0] = [c1, s1];
  }
  const peak = (await rss(manager.pid)).peakMiB;
  const heapMiB = (await manager.metric('pagewright_manager_nodejs_heap_size_used_bytes')) / 1024 / 1024;
  const heapTotalMiB = (await manager.metric('pagewright_manager_nodejs_heap_size_total_bytes')) / 1024 / 1024;
  await manager.stop();
  printTable(
    `manager with ${JOBS} finished jobs (resync every ${RESYNC_SECONDS} s)`,
    [
      ['RSS after a full resync', rssAfterResync, 'MiB'],
      ['reconcile per idle job', perJobMs, 'ms'],
    ],
    3,
  );
  console.log(
    `  RSS watching an empty namespace (baseline): ${emptyRss.toFixed(0)} MiB; after the first pass: ${afterFirst.toFixed(0)} MiB; peak: ${peak.toFixed(0)} MiB`,
  );
  console.log(`  V8 heap used ${heapMiB.toFixed(0)} MiB of ${heapTotalMiB.toFixed(0)} MiB allocated`);
  console.log(
    `  start to ready (list of ${JOBS} jobs): ${(syncMs / 1000).toFixed(1)} s; first pass over all jobs: ${(firstPassMs / 1000).toFixed(1)} s`,
  );
  await record('manager-memory', {
    jobs: JOBS,
    runs: RUNS,
    rss_mib: summarize(rssAfterResync),
    per_job_ms: summarize(perJobMs),
    empty_rss_mib: emptyRss,
    first_pass_rss_mib: afterFirst,
    peak_mib: peak,
    heap_used_mib: heapMiB,
    heap_total_mib: heapTotalMiB,
    sync_ms: syncMs,
    first_pass_ms: firstPassMs,
  });
  headline(
    `manager RSS ${summarize(rssAfterResync).median.toFixed(0)} MiB with ${JOBS} jobs after a full resync (goal < 300 MB; ${(summarize(rssAfterResync).median / emptyRss).toFixed(2)}x its empty-namespace RSS); ${summarize(perJobMs).median.toFixed(3)} ms reconcile per idle job`,
  );
} finally {
  await cp.stop();
}

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
