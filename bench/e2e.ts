/**
 * End to end: 20 jobs through `kubectl apply` -> Succeeded on the local control plane, with the
 * real manager, runner pods (local kubelet), storage and Codex CLI and the scripted model, one
 * after another. Per job: the time from `kubectl apply` to Succeeded seen in a watch, minus the
 * Codex process's own time (the runner's executing_codex phase) = Pagewright's overhead.
 * Headline: median overhead per job (goal < 1 s) and the phase breakdown.
 *
 *   make bench-e2e        (BENCH_E2E_JOBS=20)
 */
import { Watch } from '@kubernetes/client-node';
import { WORK_PHASES } from '../common/schemas.js';
import type { PagewrightJob } from '../manager/resource.js';
import { stopSharedControlPlane } from '../test/support/control-plane.js';
import { startManagerEnv } from '../test/support/manager-env.js';
import { headline, printTable, record, summarize, summarizeAll } from './lib.js';

const JOBS = Number(process.env.BENCH_E2E_JOBS ?? 20);
const env = await startManagerEnv('bench-e2e');
await env.startManager({ env: { PAGEWRIGHT_LOG_LEVEL: 'info' } });
const succeededAt = new Map<string, number>();
const watch = await new Watch(env.cp.kubeConfig()).watch(`/apis/pagewright.dev/v1alpha1/namespaces/${env.namespace}/pagewrightjobs`, {}, (_t, obj: PagewrightJob) => {
  if (obj.status?.phase === 'Succeeded' && !succeededAt.has(obj.metadata.name)) succeededAt.set(obj.metadata.name, performance.now());
}, () => undefined);

const total: number[] = [];
const overhead: number[] = [];
const phases: Record<string, number[]> = {};
try {
  for (let i = 0; i < JOBS; i++) {
    const name = `e2e-${i}`;
    const manifest = `apiVersion: pagewright.dev/v1alpha1\nkind: PagewrightJob\nmetadata:\n  name: ${name}\nspec:\n  siteId: site-${'abc'[i % 3]}\n  prompt: Add a notice to the home page (job ${i}).\n`;
    const start = performance.now();
    await env.cp.kubectl(['-n', env.namespace, 'apply', '-f', '-'], { input: manifest });
    const job = await env.waitForJob(name, 'Succeeded', (j) => j.status.phase === 'Succeeded' || j.status.phase === 'Failed', 120_000);
    if (job.status.phase !== 'Succeeded') throw new Error(`${name}: ${JSON.stringify(job.status)}`);
    const end = succeededAt.get(name) ?? performance.now();
    const d = job.status.phaseDurationsMs ?? {};
    total.push(end - start);
    overhead.push(end - start - (d.executing_codex ?? 0));
    for (const p of WORK_PHASES) (phases[p] ??= []).push(d[p] ?? 0);
  }
} finally {
  watch.abort();
  await env.stop();
  await stopSharedControlPlane();
}
printTable(`${JOBS} jobs, kubectl apply -> Succeeded, one at a time (n = jobs)`, [
  ['apply -> Succeeded', total, 'ms'],
  ['overhead outside codex', overhead, 'ms'],
  ...WORK_PHASES.map((p) => [`  runner phase ${p}`, phases[p]!, 'ms'] as [string, number[], string]),
]);
const runnerOther = WORK_PHASES.filter((p) => p !== 'executing_codex').map((p) => summarize(phases[p]!).median).reduce((a, b) => a + b, 0);
console.log(`  of the overhead, runner phases other than codex: ${runnerOther.toFixed(0)} ms (medians); the rest is apply, admission, pod start and the callback`);
await record('e2e', { jobs: JOBS, total_ms: summarize(total), overhead_ms: summarize(overhead), phases: summarizeAll(phases) });
headline(`median overhead per job outside codex ${summarize(overhead).median.toFixed(0)} ms (goal < 1000 ms); apply -> Succeeded ${summarize(total).median.toFixed(0)} ms`);

// open handles (watches, agents) must not keep a finished benchmark alive
process.exit(0);
