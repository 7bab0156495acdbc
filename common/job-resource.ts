/**
 * The PagewrightJob custom resource as the manager sees it: zod schemas mirroring
 * deploy/k8s/crd.yaml (the apiserver already validated the spec; parsing here turns `any` from
 * client-node into typed objects and applies the same defaults when an older object lacks them).
 *
 * JobSpec and the CRD's spec schema must accept exactly the same objects: a job the apiserver
 * takes but this schema refuses is ignored by the manager for good (job-cache.ts logs it and
 * skips it), and one this takes but the apiserver would not is a bound nobody enforces.
 * test/unit/job-spec-schema.test.ts compares the two field by field (type, bounds, lengths,
 * pattern, enum, default, required), so the integer bounds are written out on both sides,
 * including 2^53 - 1, the largest integer this side holds exactly.
 */
import { z } from 'zod';
import { FailureReason } from './errors.js';
import {
  CheckResult,
  DiffSummary,
  GatewayRefusalReason,
  Prompt,
  RunnerPhase,
  Sha256,
  SiteId,
  ThreadId,
  TIMEOUT_SECONDS,
  Usage,
} from './schemas.js';
import { JobWebhookStatus } from './webhook-status.js';

export const GROUP = 'pagewright.dev';
export const VERSION = 'v1alpha1';
export const PLURAL = 'pagewrightjobs';
export const KIND = 'PagewrightJob';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const FINALIZER = 'pagewright.dev/cleanup';

/** Labels on everything the manager creates for a job. */
export const LABEL_JOB = 'pagewright.dev/job';
export const LABEL_ATTEMPT = 'pagewright.dev/attempt';
export const LABEL_SITE = 'pagewright.dev/site';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'pagewright-manager';

export const JobPhase = z.enum(['Queued', 'Scheduled', 'Running', 'Succeeded', 'Failed', 'Cancelled']);
export type JobPhase = z.infer<typeof JobPhase>;
const TERMINAL_PHASES: ReadonlySet<JobPhase> = new Set(['Succeeded', 'Failed', 'Cancelled']);
const ACTIVE_PHASES: ReadonlySet<JobPhase> = new Set(['Scheduled', 'Running']);

/** spec.priority's range: orders admission (admission.ts compares by subtraction), far inside what a number holds exactly. */
const PRIORITY = { min: -1_000_000, max: 1_000_000 } as const;
/** A year: a finished job's deletion is a timer (work-queue.ts) and a year is plenty. */
const TTL_SECONDS_MAX = 31_536_000;
/** A budget limit: any positive integer held exactly; the cluster's caps bound it (BudgetNotAllowed). */
const budgetLimit = () => z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional();

export const JobSpec = z.object({
  // the pattern alone limits it to 1..63; the lengths are stated for the CRD's clearer message
  siteId: SiteId.min(1).max(63),
  prompt: Prompt,
  baseVersion: Sha256.optional(),
  /**
   * A follow-up: the name of a Succeeded job of the same site in this namespace. The job edits
   * that job's output (not the site's current version) and resumes its codex session, so the
   * agent has the earlier conversation. Not with baseVersion (manager/follow-up.ts).
   */
  followUpOf: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/)
    .optional(),
  model: z.string().min(1).max(200).optional(),
  timeoutSeconds: z.number().int().min(TIMEOUT_SECONDS.min).max(TIMEOUT_SECONDS.max).default(TIMEOUT_SECONDS.default),
  retries: z.number().int().min(0).max(10).default(2),
  priority: z.number().int().min(PRIORITY.min).max(PRIORITY.max).default(0),
  publish: z.boolean().default(false),
  /** Publish even when the output's checks failed (else the publish is refused: ChecksFailed). */
  publishAnyway: z.boolean().default(false),
  cancel: z.boolean().default(false),
  ttlSecondsAfterFinished: z.number().int().min(0).max(TTL_SECONDS_MAX).optional(),
  /** The model budget; unset limits take the cluster's defaults, all within its caps. */
  budget: z
    .object({
      maxRequests: budgetLimit(),
      maxInputTokens: budgetLimit(),
      maxOutputTokens: budgetLimit(),
    })
    .optional(),
});

export const Condition = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
  observedGeneration: z.number().int().optional(),
});
export type Condition = z.infer<typeof Condition>;

export const JobStatus = z.object({
  phase: JobPhase.optional(),
  runnerPhase: RunnerPhase.optional(),
  jobId: z.string().optional(),
  attempt: z.number().int().optional(),
  podName: z.string().optional(),
  startTime: z.string().optional(),
  /** When the current attempt was scheduled: its credentials are issued then. */
  attemptStartTime: z.string().optional(),
  completionTime: z.string().optional(),
  nextAttemptTime: z.string().optional(),
  baseVersion: z.string().optional(),
  outputVersion: z.string().optional(),
  publishedVersion: z.string().optional(),
  /** A signed, expiring link to the review page, where an Ingress serves previews (manager/review-link.ts). */
  reviewLink: z.object({ url: z.string(), expiresAt: z.string() }).optional(),
  filesChanged: z.number().int().optional(),
  files: z.array(z.string()).optional(),
  summary: z.string().optional(),
  reason: z.union([FailureReason, z.string()]).optional(),
  message: z.string().optional(),
  reportedAttempt: z.number().int().optional(),
  phaseDurationsMs: z.record(z.string(), z.number()).optional(),
  /** What the job used of the model, as the gateway counted it (all attempts). */
  usage: Usage.optional(),
  /** The reported attempt's diff.patch in numbers (runner/diff.ts); absent when the runner wrote none. */
  diffSummary: DiffSummary.optional(),
  /** The reported output's checks (runner/checks/), with their first findings. */
  checks: z.array(CheckResult).optional(),
  /** Agent turns of the reported attempt: 1, plus its repair turns. */
  turns: z.number().int().optional(),
  /** The codex thread the job's session.jsonl holds: a follow-up of this job resumes it. */
  threadId: z.string().optional(),
  /**
   * A follow-up's source, fixed when its first attempt is scheduled: the job it follows (name
   * and uid), that job's output (this job's base) and thread, and `lineage`, the versions that
   * output descends from, newest first. A publish compares the site against the base or one of
   * these (the site at an earlier version of the chain gets the whole chain's change).
   */
  followUp: z
    .object({
      job: z.string(),
      jobId: z.string(),
      version: Sha256,
      threadId: ThreadId,
      lineage: z.array(Sha256),
    })
    .optional(),
  /** The gateway refused a model call of this attempt for the job's own sake (budget, rate limit, model). */
  gatewayRefusal: z.object({ attempt: z.number().int(), reason: GatewayRefusalReason, message: z.string() }).optional(),
  /** Written by webhook delivery (merge patches of this field alone): kept by every other status write. */
  webhook: JobWebhookStatus.optional(),
  observedGeneration: z.number().int().optional(),
  conditions: z.array(Condition).optional(),
});
export type JobStatus = z.infer<typeof JobStatus>;

const JobMetadata = z.object({
  name: z.string(),
  namespace: z.string(),
  uid: z.string(),
  resourceVersion: z.string(),
  generation: z.number().int().optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
  finalizers: z.array(z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
});

export const PagewrightJob = z.object({
  apiVersion: z.string().default(API_VERSION),
  kind: z.string().default(KIND),
  metadata: JobMetadata,
  spec: JobSpec,
  status: JobStatus.default({}),
});
export type PagewrightJob = z.infer<typeof PagewrightJob>;

export function jobKey(job: { metadata: { namespace: string; name: string } }): string {
  return `${job.metadata.namespace}/${job.metadata.name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export function isTerminal(job: PagewrightJob): boolean {
  return job.status.phase !== undefined && TERMINAL_PHASES.has(job.status.phase);
}

export function isActive(job: PagewrightJob): boolean {
  return job.status.phase !== undefined && ACTIVE_PHASES.has(job.status.phase);
}

/** Queued or never seen: waiting for admission. */
export function isWaiting(job: PagewrightJob): boolean {
  return job.status.phase === undefined || job.status.phase === 'Queued';
}

export function timestamp(value: string | Date | undefined): number {
  if (value === undefined) return 0;
  return value instanceof Date ? value.getTime() : Date.parse(value);
}
