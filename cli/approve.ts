/**
 * `pagewright approve JOB`: sets spec.publish on a Succeeded PagewrightJob (a merge patch, as
 * `kubectl patch pwj JOB --type=merge -p '{"spec":{"publish":true}}'` does), then waits for the
 * manager's answer (manager/reconciler.ts #approve): the Published condition, True with the
 * job's status.publishedVersion, or False with the refusal's reason (PublishConflict: the site
 * moved since the job's base; ChecksFailed, unless --anyway sets spec.publishAnyway; UnsafeOutput, ...). The condition counts only once it was written
 * for the generation the patch made (observedGeneration), so an older refusal is not taken for
 * the answer. Pure: approvalState (test/unit/cli-logic.test.ts).
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, PLURAL, PagewrightJob, VERSION } from '../common/job-resource.js';
import { CliError, durationMs, parseCommand } from './command.js';
import { loadKube } from './kube-context.js';

const APPROVE_USAGE = `usage: pagewright approve JOB [--anyway] [--wait | --no-wait] [--timeout DURATION] [-n NS] [--kubeconfig FILE] [--context NAME]

Approves a Succeeded job: its output becomes the site's current version (the same
compare-and-swap on the version it edited, and the same checks, as a publish at the end of
the job). Waits (by default, up to --timeout, default 2m) for the manager to say how it went
and prints the published version; exits 1 with the reason when the publish is refused
(PublishConflict: the site changed since the job started; push or re-run the job.
ChecksFailed: the output's checks failed, see status.checks or the review page).

  --anyway   publish even if the output's checks failed (sets spec.publishAnyway)`;

type ApprovalState = { state: 'published'; version: string } | { state: 'refused'; reason: string; message: string } | { state: 'waiting' };

/** What the job says of its approval, for the spec generation `generation` (the one the patch made). */
export function approvalState(job: PagewrightJob, generation: number | undefined): ApprovalState {
  const c = job.status.conditions?.find((x) => x.type === 'Published');
  if (job.status.publishedVersion && (c === undefined || c.status === 'True'))
    return { state: 'published', version: job.status.publishedVersion };
  if (c?.status === 'False' && (generation === undefined || (c.observedGeneration ?? 0) >= generation))
    return { state: 'refused', reason: c.reason ?? 'PublishRefused', message: c.message ?? 'the publish was refused' };
  return { state: 'waiting' };
}

/** Why a job cannot be approved (it is not Succeeded), or null. */
export function notApprovable(job: PagewrightJob): string | null {
  const phase = job.status.phase ?? 'Queued';
  if (phase === 'Succeeded') return null;
  const why = job.status.reason ? ` (${job.status.reason})` : '';
  return `job ${job.metadata.name} is ${phase}${why}, not Succeeded: only a Succeeded job can be approved`;
}

const POLL_MS = 300;

export async function approveCommand(argv: string[], out: (line: string) => void): Promise<void> {
  const p = parseCommand(
    argv,
    { wait: { type: 'boolean' }, 'no-wait': { type: 'boolean' }, timeout: { type: 'string' }, anyway: { type: 'boolean' } },
    { min: 1, max: 1, names: 'JOB' },
  );
  if (p.help) return void out(APPROVE_USAGE);
  const wait = p.values['no-wait'] !== true;
  const timeoutMs = durationMs('timeout', typeof p.values.timeout === 'string' ? p.values.timeout : '120s');
  const name = p.positionals[0]!;
  const target = loadKube(p.kube);
  const custom = target.kc.makeApiClient(CustomObjectsApi);
  const ref = { group: GROUP, version: VERSION, plural: PLURAL, namespace: target.namespace, name };
  const get = async () => PagewrightJob.parse(await custom.getNamespacedCustomObject(ref));

  const job = await get();
  if (job.status.publishedVersion) return void out(`job ${name} is already published: version ${job.status.publishedVersion}`);
  const refusal = notApprovable(job);
  if (refusal) throw new CliError(refusal);
  const patched = PagewrightJob.parse(
    await custom.patchNamespacedCustomObject(
      { ...ref, body: { spec: { publish: true, ...(p.values.anyway === true ? { publishAnyway: true } : {}) } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ),
  );
  const generation = patched.metadata.generation;
  if (!wait)
    return void out(
      `job ${name} approved: the manager publishes it (pagewright approve ${name} --wait, or kubectl describe pwj ${name}, says how it went)`,
    );
  const deadline = Date.now() + timeoutMs;
  for (let current = patched; ; current = await get()) {
    const s = approvalState(current, generation);
    if (s.state === 'published')
      return void out(`job ${name} published: version ${s.version} is the current version of site ${current.spec.siteId}`);
    if (s.state === 'refused') throw new CliError(`approval of job ${name} refused (${s.reason}): ${s.message}`);
    if (Date.now() >= deadline)
      throw new CliError(`timed out after ${timeoutMs / 1000}s waiting for the manager to publish job ${name} (is it running?)`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
