/**
 * Every failure that can end a job is a PagewrightError carrying a machine-readable reason.
 * The reason travels unchanged into the runner's /status, the callback body and finally the
 * PagewrightJob's status.reason, so users (and the manager's retry policy) can act on it.
 */
import { z } from 'zod';

export const FailureReason = z.enum([
  // model / codex
  'LLMAuthFailed',
  'LLMUnavailable',
  'ModelNotFound',
  /** Refused before it ran: spec.model is not in the cluster's allowlist. */
  'ModelNotAllowed',
  /** Refused before it ran: spec.budget is above the cluster's caps. */
  'BudgetNotAllowed',
  /** The model gateway refused a call: the job used up its budget. */
  'LLMBudgetExceeded',
  /** The model endpoint's rate limit (429) outlasted the job's deadline. */
  'LLMRateLimited',
  'CodexFailed',
  'CodexTimeout',
  'InvalidAgentOutput',
  // artifacts and storage
  'ArtifactNotFound',
  'ArtifactCorrupt',
  'UnsafeArchive',
  /** The agent's output breaks the archive rules (links out of the site, devices, setuid, limits). */
  'UnsafeOutput',
  'ArtifactTooLarge',
  'StorageUnavailable',
  'UploadFailed',
  // job lifecycle
  'Killed',
  'Cancelled',
  'DeadlineExceeded',
  'OOMKilled',
  'Evicted',
  'ImagePullFailed',
  'PodLost',
  /** The runner was stopped from outside (SIGTERM); the manager reads why from the pod. */
  'PodTerminated',
  'RunnerFailed',
  'CallbackFailed',
  'PublishConflict',
  'InvalidConfig',
  'Internal',
]);
export type FailureReason = z.infer<typeof FailureReason>;

/** Reasons worth a new attempt: the infrastructure failed, not the job itself. */
export const INFRASTRUCTURE_REASONS: ReadonlySet<FailureReason> = new Set<FailureReason>([
  'StorageUnavailable',
  'UploadFailed',
  'OOMKilled',
  'Evicted',
  'PodLost',
  'RunnerFailed',
  'CallbackFailed',
]);

export function isInfrastructureFailure(reason: FailureReason): boolean {
  return INFRASTRUCTURE_REASONS.has(reason);
}

export class PagewrightError extends Error {
  readonly reason: FailureReason;

  constructor(reason: FailureReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PagewrightError';
    this.reason = reason;
  }
}

/** Maps anything thrown to a PagewrightError, keeping the reason of one that already has it. */
export function toPagewrightError(err: unknown, fallback: FailureReason = 'Internal'): PagewrightError {
  if (err instanceof PagewrightError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PagewrightError(fallback, message, { cause: err });
}
