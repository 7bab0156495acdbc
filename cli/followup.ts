/**
 * `pagewright followup JOB PROMPT`: a new PagewrightJob with spec.followUpOf JOB. It edits JOB's
 * output and resumes JOB's codex session (manager/follow-up.ts), so "now make it blue" works.
 * The new job takes JOB's site, model, timeout and budget (a resumed thread must keep its
 * model); --publish publishes it at the end, --wait waits for it to end. Pure: followUpJob
 * (test/unit/follow-up-decision.test.ts).
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, PagewrightJob, VERSION, isTerminal } from '../common/job-resource.js';
import { Prompt } from '../common/schemas.js';
import { CliError, UsageError, durationMs, parseCommand } from './command.js';
import { loadKube } from './kube-context.js';

const FOLLOWUP_USAGE = `usage: pagewright followup JOB PROMPT [--name NAME] [--publish] [--wait [--timeout DURATION]] [-n NS] [--kubeconfig FILE] [--context NAME]

Creates a job that follows JOB: it edits JOB's output (not the site's current version) and
resumes JOB's agent session, so the agent has the earlier conversation ("now make it blue").
JOB must have Succeeded. The new job has JOB's site, model, timeout and budget; its name is
NAME, or JOB's with a generated suffix. Publishing it (--publish, or pagewright approve later)
replaces the site's version if the site is still at a version of the chain (what JOB edited,
or JOB's output once JOB is published).

  --publish   publish the output at the end of the job (spec.publish)
  --wait      wait until the job ends (up to --timeout, default 30m); exit 1 if it fails`;

/** The new job's object: JOB's site, model, timeout and budget, the prompt, followUpOf JOB. */
export function followUpJob(source: PagewrightJob, prompt: string, opts: { name?: string; publish: boolean }): Record<string, unknown> {
  const s = source.spec;
  // a generated name: at most 63 chars before the apiserver's 5-character suffix
  const metadata = opts.name
    ? { name: opts.name }
    : { generateName: `${source.metadata.name.slice(0, 48).replace(/[-.]+$/, '')}-followup-` };
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata,
    spec: {
      siteId: s.siteId,
      prompt,
      followUpOf: source.metadata.name,
      ...(s.model ? { model: s.model } : {}),
      timeoutSeconds: s.timeoutSeconds,
      ...(s.budget ? { budget: s.budget } : {}),
      ...(opts.publish ? { publish: true } : {}),
    },
  };
}

const POLL_MS = 1000;

export async function followupCommand(argv: string[], out: (line: string) => void): Promise<void> {
  const p = parseCommand(
    argv,
    { name: { type: 'string' }, publish: { type: 'boolean' }, wait: { type: 'boolean' }, timeout: { type: 'string' } },
    { min: 2, max: 2, names: 'JOB and PROMPT' },
  );
  if (p.help) return void out(FOLLOWUP_USAGE);
  const [sourceName, prompt] = p.positionals as [string, string];
  const checked = Prompt.safeParse(prompt);
  if (!checked.success) throw new UsageError(`PROMPT ${checked.error.issues[0]?.message}`);
  if (p.values.timeout !== undefined && p.values.wait !== true) throw new UsageError('--timeout goes with --wait');
  const timeoutMs = durationMs('timeout', typeof p.values.timeout === 'string' ? p.values.timeout : '30m');
  const target = loadKube(p.kube);
  const custom = target.kc.makeApiClient(CustomObjectsApi);
  const ref = { group: GROUP, version: VERSION, plural: PLURAL, namespace: target.namespace };
  const source = PagewrightJob.parse(await custom.getNamespacedCustomObject({ ...ref, name: sourceName }));
  // refused here already when it is sure to be refused (the manager decides it again)
  const phase = source.status.phase ?? 'Queued';
  if (isTerminal(source) && phase !== 'Succeeded')
    throw new CliError(
      `job ${sourceName} is ${phase}${source.status.reason ? ` (${source.status.reason})` : ''}: only a Succeeded job can be followed up`,
    );
  const created = PagewrightJob.parse(
    await custom.createNamespacedCustomObject({
      ...ref,
      body: followUpJob(source, prompt, {
        ...(typeof p.values.name === 'string' ? { name: p.values.name } : {}),
        publish: p.values.publish === true,
      }),
    }),
  );
  const name = created.metadata.name;
  out(`pagewrightjob.${GROUP}/${name} created (follows ${sourceName})`);
  if (p.values.wait !== true) return;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = PagewrightJob.parse(await custom.getNamespacedCustomObject({ ...ref, name }));
    if (isTerminal(job)) {
      if (job.status.phase !== 'Succeeded')
        throw new CliError(
          `job ${name} ${job.status.phase}${job.status.reason ? ` (${job.status.reason})` : ''}: ${job.status.message ?? ''}`.trim(),
        );
      const published = job.status.publishedVersion ? `; published as ${job.status.publishedVersion}` : '';
      return void out(
        `job ${name} Succeeded: ${job.status.filesChanged ?? 0} files changed${published}\n${job.status.summary ?? ''}`.trimEnd(),
      );
    }
    if (Date.now() >= deadline)
      throw new CliError(`timed out after ${timeoutMs / 1000}s waiting for job ${name} (kubectl get pwj ${name} -w follows it)`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
