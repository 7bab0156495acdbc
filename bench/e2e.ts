/**
 * End to end on the real node (test/support/node: containerd + kubelet from the pinned modules):
 * jobs created one after another, each run to Succeeded by the real manager, runner pods as real
 * containers, storage and the Codex CLI, with the scripted model.
 *
 * Per job:
 *   - start latency: the create call -> the runner container started, from containerd's own
 *     /tasks/start event (nanosecond clock, no kubelet polling in between); and -> the pod
 *     Running as a watch sees it (the Kubernetes pod-startup SLO's definition: p99 <= 5 s,
 *     excluding image pulls; images here are on the node already);
 *   - apply -> Succeeded, and the overhead outside codex (minus the runner's executing_codex).
 * Baseline, alternated with the jobs in the same run: the manager's own runner pod spec created
 * directly (no CR, no manager; the container only sleeps), create call -> container started.
 * Headline: p50 and p99 start latency, and the ratio of job p50 to bare-pod p50.
 *
 *   make bench-e2e        (BENCH_E2E_JOBS=50)
 */
import { startManagerEnv } from '../test/support/manager-env.js';
import { stopSharedRealNode } from '../test/support/node/shared.js';
import { SMOKE, sized } from './lib.js';
import { runE2e } from './support/e2e-run.js';

const env = await startManagerEnv('bench-e2e');
try {
  await runE2e(env, { jobs: sized('BENCH_E2E_JOBS', 50, 1), record: !SMOKE });
} finally {
  await env.stop();
  await stopSharedRealNode();
}

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
