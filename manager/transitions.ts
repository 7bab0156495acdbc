/**
 * Every status transition of a job as a pure change (current job -> next status, or null when
 * the transition no longer applies). They re-check their preconditions on whatever state they
 * are given, so a change recomputed after a 409 or applied by a second manager replica can
 * never move a job backwards or apply a result to the wrong attempt.
 */
import type { FailureReason } from '../common/errors.js';
import type { CheckResult, JobProgress, JobResult, UsageReport } from '../common/schemas.js';
import { type Condition, type JobStatus, type PagewrightJob, isTerminal } from '../common/job-resource.js';
import type { StatusChange } from './status.js';
import { setCondition, withPhase } from './status.js';

/** How many changed paths the resource keeps (the manifest in storage has all of them). */
const STATUS_FILES_LIMIT = 100;

const gen = (job: PagewrightJob) => job.metadata.generation;

export function queued(message: string): StatusChange {
  return (job) => {
    if (job.status.phase !== undefined) return null;
    return withPhase(job.status, 'Queued', { jobId: job.metadata.uid, attempt: 0, message }, gen(job));
  };
}

/**
 * Admission: the next attempt starts; its pod is created after this is stored. A follow-up's
 * source (manager/follow-up.ts) is fixed with its first attempt and kept by the later ones.
 */
export function scheduled(attempt: number, podName: string, now = new Date(), followUp?: JobStatus['followUp']): StatusChange {
  return (job) => {
    if (isTerminal(job) || job.spec.cancel || (job.status.attempt ?? 0) >= attempt) return null;
    const { nextAttemptTime: _n, runnerPhase: _r, reason: _reason, message: _m, ...rest } = job.status;
    return withPhase(
      rest,
      'Scheduled',
      {
        jobId: job.metadata.uid,
        attempt,
        podName,
        startTime: job.status.startTime ?? now.toISOString(),
        attemptStartTime: now.toISOString(),
        message: `attempt ${attempt} scheduled`,
        ...(followUp && !rest.followUp ? { followUp } : {}),
      },
      gen(job),
      now,
    );
  };
}

export function running(attempt: number): StatusChange {
  return (job) => {
    if (job.status.phase !== 'Scheduled' || job.status.attempt !== attempt) return null;
    return withPhase(job.status, 'Running', { message: `attempt ${attempt} running` }, gen(job));
  };
}

/** The runner's live phase (best effort; ignored for other attempts and after the result). */
export function progressed(progress: JobProgress): StatusChange {
  return (job) => {
    const s = job.status;
    if (isTerminal(job) || s.attempt !== progress.attempt || s.reportedAttempt === progress.attempt) return null;
    if (s.phase !== 'Scheduled' && s.phase !== 'Running') return null;
    if (progress.phase === 'completed' || progress.phase === 'failed') return null; // the result says that
    return withPhase(s, 'Running', { runnerPhase: progress.phase }, gen(job));
  };
}

export type ResultOutcome = 'recorded' | 'duplicate' | 'stale';

/** Which of the three a result for `attempt` would be, given the job's current status. */
export function resultOutcome(job: PagewrightJob, attempt: number): ResultOutcome {
  if (job.status.reportedAttempt === attempt) return 'duplicate';
  if (isTerminal(job) || job.status.attempt !== attempt || (job.status.phase !== 'Scheduled' && job.status.phase !== 'Running'))
    return 'stale';
  return 'recorded';
}

/** The runner's result for the current attempt (from its callback or its manifest in storage). */
export function resultReported(result: JobResult): StatusChange {
  return (job) => {
    if (resultOutcome(job, result.attempt) !== 'recorded') return null;
    const failed = result.status === 'failed';
    // the summary is this attempt's or none: an earlier attempt's diff (or checks) is not this one's
    const { diffSummary: _earlier, checks: _earlierChecks, turns: _turns, threadId: _thread, ...rest } = job.status;
    const status = result.checks?.length
      ? { ...rest, conditions: setCondition(rest.conditions, checksCondition(result.checks, gen(job)), new Date().toISOString()) }
      : { ...rest, ...(rest.conditions ? { conditions: rest.conditions.filter((c) => c.type !== 'ChecksPassed') } : {}) };
    return withPhase(
      status,
      'Running',
      {
        reportedAttempt: result.attempt,
        runnerPhase: result.status,
        filesChanged: result.files_changed,
        files: result.files.slice(0, STATUS_FILES_LIMIT),
        summary: result.summary,
        ...(result.base_version ? { baseVersion: result.base_version } : {}),
        ...(result.output_version ? { outputVersion: result.output_version } : {}),
        ...(result.diff_summary ? { diffSummary: result.diff_summary } : {}),
        ...(result.checks?.length ? { checks: result.checks } : {}),
        ...(result.turns ? { turns: result.turns } : {}),
        ...(result.thread_id ? { threadId: result.thread_id } : {}),
        phaseDurationsMs: Object.fromEntries(Object.entries(result.phase_durations_ms).map(([k, v]) => [k, Math.round(v ?? 0)])),
        ...(failed
          ? { reason: result.reason ?? 'Internal', message: result.error ?? 'the runner failed' }
          : { message: `attempt ${result.attempt} finished` }),
      },
      gen(job),
    );
  };
}

/** ChecksPassed: True when no check found anything the change introduced. */
function checksCondition(checks: readonly CheckResult[], generation: number | undefined): Condition {
  const failed = checks.filter((c) => !c.passed);
  const g = generation === undefined ? {} : { observedGeneration: generation };
  if (failed.length === 0)
    return {
      type: 'ChecksPassed',
      status: 'True',
      reason: 'ChecksPassed',
      message: `${checks.map((c) => `${c.name}: passed (${c.preexisting} already in the base)`).join('; ')}`,
      ...g,
    };
  const first = failed[0]!.findings.find((f) => f.introduced);
  return {
    type: 'ChecksPassed',
    status: 'False',
    reason: 'ChecksFailed',
    message:
      failed.map((c) => `${c.name}: ${c.introduced} introduced by the change`).join('; ') +
      (first ? `; first: ${first.path}${first.line ? `:${first.line}` : ''}: ${first.message}` : ''),
    ...g,
  };
}

export function succeeded(
  attempt: number,
  publishedVersion: string | undefined,
  reviewLink?: { url: string; expiresAt: string },
): StatusChange {
  return (job) => {
    if (isTerminal(job) || job.status.attempt !== attempt || job.status.reportedAttempt !== attempt) return null;
    const { reason: _r, ...rest } = job.status;
    const published = publishedVersion ? { publishedVersion } : {};
    const link = reviewLink ? { reviewLink } : {};
    return withPhase(
      rest,
      'Succeeded',
      { ...published, ...link, message: job.status.summary ? 'the agent finished' : 'finished' },
      gen(job),
    );
  };
}

/**
 * Approval after the fact (spec.publish set on a Succeeded job): the publish went through, or
 * it was refused for `reason` (PublishConflict, UnsafeOutput, ...) at this generation of the
 * spec; the job stays Succeeded either way, and the Published condition says which.
 */
export function approved(outcome: { version: string } | { reason: FailureReason; message: string }, now = new Date()): StatusChange {
  return (job) => {
    if (job.status.phase !== 'Succeeded' || job.status.publishedVersion) return null;
    const g = gen(job) === undefined ? {} : { observedGeneration: gen(job) };
    const iso = now.toISOString();
    if ('version' in outcome) {
      const conditions = setCondition(
        job.status.conditions,
        {
          type: 'Published',
          status: 'True',
          reason: 'Published',
          message: `version ${outcome.version} was made the site's current version`,
          ...g,
        },
        iso,
      );
      return { ...job.status, publishedVersion: outcome.version, conditions };
    }
    const conditions = setCondition(
      job.status.conditions,
      { type: 'Published', status: 'False', reason: outcome.reason, message: outcome.message, ...g },
      iso,
    );
    return { ...job.status, conditions };
  };
}

/** Whether approval was already tried, and refused, for the spec as it is now (a new generation tries again). */
export function approvalRefused(job: PagewrightJob): boolean {
  const c = job.status.conditions?.find((x) => x.type === 'Published');
  return c?.status === 'False' && c.observedGeneration === gen(job);
}

/** The attempt failed for good. */
export function failed(attempt: number, reason: FailureReason, message: string): StatusChange {
  return (job) => {
    if (isTerminal(job) || job.status.attempt !== attempt) return null;
    return withPhase(job.status, 'Failed', { reason, message }, gen(job));
  };
}

/** The attempt failed for an infrastructure reason and a new one will follow after `delayMs`. */
export function retrying(attempt: number, reason: FailureReason, message: string, delayMs: number, now = new Date()): StatusChange {
  return (job) => {
    if (isTerminal(job) || job.status.attempt !== attempt || job.status.phase === 'Queued') return null;
    const next = new Date(now.getTime() + delayMs).toISOString();
    return withPhase(
      job.status,
      'Queued',
      { reason, message: `attempt ${attempt} failed (${reason}: ${message}); retrying after ${next}`, nextAttemptTime: next },
      gen(job),
      now,
    );
  };
}

/** Refused before any attempt (the model policy): Failed at once, nothing ran. */
export function refused(reason: FailureReason, message: string): StatusChange {
  return (job) => {
    if (isTerminal(job) || (job.status.attempt ?? 0) > 0) return null;
    return withPhase(job.status, 'Failed', { jobId: job.metadata.uid, attempt: 0, reason, message }, gen(job));
  };
}

/**
 * The gateway's count of the job's model usage (it only grows, so an older report arriving late
 * changes nothing), and a refusal of the current attempt's call for the job's own sake.
 */
export function usageReported(report: UsageReport): StatusChange {
  return (job) => {
    const was = job.status.usage ?? { requests: 0, inputTokens: 0, outputTokens: 0 };
    const usage = {
      requests: Math.max(was.requests, report.usage.requests),
      inputTokens: Math.max(was.inputTokens, report.usage.inputTokens),
      outputTokens: Math.max(was.outputTokens, report.usage.outputTokens),
    };
    const refusal =
      report.refusal && report.attempt === job.status.attempt && !isTerminal(job)
        ? { attempt: report.attempt, ...report.refusal }
        : undefined;
    const same = usage.requests === was.requests && usage.inputTokens === was.inputTokens && usage.outputTokens === was.outputTokens;
    if (same && (!refusal || job.status.gatewayRefusal?.attempt === refusal.attempt)) return null;
    return { ...job.status, usage, ...(refusal ? { gatewayRefusal: refusal } : {}) };
  };
}

export function cancelled(message: string): StatusChange {
  return (job) => {
    if (isTerminal(job)) return null;
    return withPhase(job.status, 'Cancelled', { reason: 'Cancelled', message }, gen(job));
  };
}

/** Retry delay after failed attempt n (1-based): base * 2^(n-1), capped. */
export function retryDelayMs(attempt: number, baseSeconds: number, maxSeconds: number): number {
  return Math.min(baseSeconds * 2 ** Math.max(0, attempt - 1), maxSeconds) * 1000;
}
