/**
 * spec.followUpOf: whether a job can follow the one it names, decided before its first attempt
 * (pure: the two jobs and the default model in, the decision out; test/unit/follow-up-decision.test.ts).
 *
 * A follow-up edits the output of the job it follows and resumes that job's codex thread, so:
 * - that job must be of the same site (its output is a version of that site), must have
 *   Succeeded with an output, and must have kept its session (status.threadId);
 * - it must run on the same model: codex refuses nothing on resume, but a thread resumed with
 *   another model is first compacted (notes: codex-resume), and the conversation is lost;
 * - it cannot also name a baseVersion: its base is the output it follows.
 * While the job it follows has not ended, the follow-up waits (queued). Once admitted, its source
 * is written into its status (followUp), so every later attempt and its publish read the same
 * source even if the job it follows is deleted meanwhile.
 */
import type { PagewrightJob } from '../common/job-resource.js';
import { isTerminal } from '../common/job-resource.js';

/** How many versions back a chain of follow-ups is remembered for its publish (status.followUp.lineage). */
const MAX_LINEAGE = 32;

type FollowUpSource = NonNullable<PagewrightJob['status']['followUp']>;

export type FollowUpDecision =
  | { state: 'none' }
  | { state: 'ready'; source: FollowUpSource }
  | { state: 'wait'; message: string }
  | { state: 'refused'; message: string };

export function followUpDecision(job: PagewrightJob, source: PagewrightJob | undefined, defaultModel: string): FollowUpDecision {
  const name = job.spec.followUpOf;
  if (name === undefined) return { state: 'none' };
  // decided once: later attempts keep the source their first one had
  if (job.status.followUp) return { state: 'ready', source: job.status.followUp };
  const { namespace } = job.metadata;
  if (job.spec.baseVersion)
    return {
      state: 'refused',
      message: 'spec.followUpOf and spec.baseVersion exclude each other: a follow-up edits the output it follows',
    };
  if (name === job.metadata.name) return { state: 'refused', message: 'a job cannot follow itself' };
  if (!source || source.metadata.deletionTimestamp)
    return { state: 'refused', message: `no PagewrightJob ${name} in namespace ${namespace} to follow` };
  if (source.spec.siteId !== job.spec.siteId)
    return {
      state: 'refused',
      message: `job ${name} edited site ${source.spec.siteId}, not ${job.spec.siteId}: a follow-up is of the same site`,
    };
  const model = job.spec.model ?? defaultModel;
  const sourceModel = source.spec.model ?? defaultModel;
  if (model !== sourceModel)
    return {
      state: 'refused',
      message: `job ${name} ran model ${sourceModel}: a follow-up resumes its session with the same model (set spec.model to ${sourceModel} or leave both unset)`,
    };
  if (!isTerminal(source)) return { state: 'wait', message: `waiting for job ${name}, which this job follows, to finish` };
  const s = source.status;
  if (s.phase !== 'Succeeded' || !s.outputVersion || !s.baseVersion)
    return {
      state: 'refused',
      message: `job ${name} ended ${s.phase}${s.reason ? ` (${s.reason})` : ''}: only a Succeeded job's output can be followed up`,
    };
  if (!s.threadId)
    return {
      state: 'refused',
      message: `job ${name} kept no codex session to resume (it ran before follow-ups existed, or its session could not be stored: see its log)`,
    };
  const lineage = [s.baseVersion, ...(s.followUp?.lineage ?? [])].slice(0, MAX_LINEAGE);
  return {
    state: 'ready',
    source: { job: name, jobId: source.metadata.uid, version: s.outputVersion, threadId: s.threadId, lineage },
  };
}

/**
 * The site versions a publish of this job may replace: the version it edited, and for a
 * follow-up every earlier version of its chain (the job it follows may not have been
 * published; its change is in this output too). Newest first.
 */
export function publishBases(job: PagewrightJob): string[] {
  const base = job.status.baseVersion;
  const lineage = job.status.followUp?.lineage ?? [];
  return [...new Set([...(base ? [base] : []), ...lineage])];
}
