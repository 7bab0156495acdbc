/**
 * The contracts between manager, runner, storage and the CLI: one zod schema each, with the
 * TypeScript types inferred from them. Wire format is snake_case JSON (the runner API predates
 * the operator); the CRD uses Kubernetes' camelCase and is mapped in manager/.
 */
import { z } from 'zod';
import { FailureReason } from './errors.js';

export const SITE_ID_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Job ids are DNS-label-like but longer (a namespace, a name and a uid fit). */
export const JOB_ID_PATTERN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const SHA256_PATTERN = /^[a-f0-9]{64}$/;

export const SiteId = z
  .string()
  .regex(SITE_ID_PATTERN, 'must be a DNS label: lowercase letters, digits and "-", 1-63 chars, starting and ending alphanumeric');
export const JobId = z
  .string()
  .regex(JOB_ID_PATTERN, 'must be lowercase letters, digits, "-" and ".", 1-253 chars, starting and ending alphanumeric');
export const Sha256 = z.string().regex(SHA256_PATTERN, 'must be a lowercase hex sha256 digest (64 chars)');
/**
 * A codex thread id (its `thread.started` event, a UUID): names the session a follow-up
 * resumes, and goes into codex's argv and a file name, so nothing else passes.
 */
export const ThreadId = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a lowercase UUID');
export const Prompt = z.string().min(1, 'must not be empty').max(20000, 'must be at most 20000 characters');

export const TIMEOUT_SECONDS = { min: 60, max: 86400, default: 1800 } as const;

/** The job a runner executes (PAGEWRIGHT_JOB). */
/**
 * A glob of site paths (picomatch syntax, matched with `dot: true`): `*`, `**`, `?`, `{a,b}`,
 * no character classes, relative, no `..`. The same grammar the PagewrightSite's CRD checks with
 * CEL, so a glob that does not parse is refused when the site is applied.
 */
export const PATH_GLOB_PATTERN = /^(?![/!])(?!.*(?:^|\/)\.\.(?:\/|$))(?:[A-Za-z0-9._+@=,~ /*?-]|\{[A-Za-z0-9._+@=,~ /*?-]*\})+$/;
export const PathGlob = z
  .string()
  .min(1)
  .max(500)
  .regex(PATH_GLOB_PATTERN, 'a glob of *, **, ?, {a,b} and plain path characters, relative, without ".."');

/** A site's path rules and change limits (PagewrightSite spec.paths), as the runner enforces them. */
export const PathRules = z.strictObject({
  /** Paths the agent may change (add, modify, delete); empty or absent: any path. */
  allow: z.array(PathGlob).max(100).default([]),
  /** Paths it may not, whatever allow says. */
  deny: z.array(PathGlob).max(100).default([]),
  /** The most files one job may change. */
  max_files: z.number().int().positive().optional(),
  /** The most bytes of added and modified files one job may write (their new sizes). */
  max_bytes: z.number().int().positive().optional(),
});
export type PathRules = z.infer<typeof PathRules>;

/**
 * Which checks the runner runs on the output before it is packed (runner/checks/), and how many
 * repair turns the agent gets when one fails (PagewrightSite spec.checks).
 */
export const CheckSettings = z.strictObject({
  html: z.boolean().default(true),
  links: z.boolean().default(true),
  repair_turns: z.number().int().min(0).max(3).default(1),
  /** The site's own check (a build, a test), run by a shell in the agent's place on a copy of the output. */
  command: z
    .strictObject({
      run: z.string().min(1).max(2000),
      timeout_seconds: z.number().int().min(1).max(3600).default(300),
    })
    .optional(),
});
export type CheckSettings = z.infer<typeof CheckSettings>;

const CHECK_NAMES = ['html', 'links', 'command'] as const;

/** One thing a check found, where it is (a site path, a 1-based line and column). */
export const CheckFinding = z.strictObject({
  path: z.string().max(4096),
  line: z.number().int().positive().optional(),
  column: z.number().int().positive().optional(),
  /** Stable: `broken-link`, `quirks-mode`, or the WHATWG parse error's name (`eof-in-tag`, ...). */
  code: z.string().max(100),
  message: z.string().max(2000),
  /** Made by this change: it fails the check. False: already in the base, reported only. */
  introduced: z.boolean(),
});
export type CheckFinding = z.infer<typeof CheckFinding>;

/** The findings a result carries (the manifest has up to MAX_MANIFEST_FINDINGS per check). */
export const MAX_RESULT_FINDINGS = 10;
export const MAX_MANIFEST_FINDINGS = 1000;

function checkResult(maxFindings: number) {
  return z.strictObject({
    name: z.enum(CHECK_NAMES),
    /** No finding was introduced by the change. */
    passed: z.boolean(),
    introduced: z.number().int().nonnegative(),
    preexisting: z.number().int().nonnegative(),
    /** The first ones, introduced first. */
    findings: z.array(CheckFinding).max(maxFindings),
  });
}
export const CheckResult = checkResult(MAX_RESULT_FINDINGS);
export type CheckResult = z.infer<typeof CheckResult>;
export const ManifestCheck = checkResult(MAX_MANIFEST_FINDINGS);
export type ManifestCheck = z.infer<typeof ManifestCheck>;

export const RunnerJob = z.strictObject({
  job_id: JobId,
  site_id: SiteId,
  prompt: Prompt,
  base_version: Sha256.optional(),
  model: z.string().min(1).max(200).optional(),
  timeout_seconds: z.number().int().min(TIMEOUT_SECONDS.min).max(TIMEOUT_SECONDS.max).default(TIMEOUT_SECONDS.default),
  attempt: z.number().int().min(1).default(1),
  path_rules: PathRules.optional(),
  checks: CheckSettings.optional(),
  /**
   * A follow-up (PagewrightJob spec.followUpOf): the runner edits that job's output (its
   * output.tar.gz, which must be `version`; base_version is the same) and resumes its codex
   * thread from the session it kept (session.jsonl), so the agent has the whole conversation.
   */
  follow_up: z
    .strictObject({
      job_id: JobId,
      version: Sha256,
      thread_id: ThreadId,
    })
    .optional(),
});
export type RunnerJob = z.infer<typeof RunnerJob>;
export type RunnerJobInput = z.input<typeof RunnerJob>;

/**
 * Runner phases in execution order. `preflight` (checking the model endpoint with the openai
 * SDK before touching storage) is a phase of its own so its time shows in the durations.
 */
export const WORK_PHASES = [
  'preflight',
  'fetching_artifact',
  'unpacking',
  'patching_instructions',
  'executing_codex',
  'checking',
  'packing_result',
  'uploading',
] as const;
export const RunnerPhase = z.enum(['idle', ...WORK_PHASES, 'completed', 'failed']);
export type RunnerPhase = z.infer<typeof RunnerPhase>;
export type WorkPhase = (typeof WORK_PHASES)[number];

export const RunnerState = z.enum(['idle', 'running', 'completed', 'failed']);
export type RunnerState = z.infer<typeof RunnerState>;

export const PhaseDurations = z.partialRecord(z.enum(WORK_PHASES), z.number().nonnegative());
export type PhaseDurations = z.infer<typeof PhaseDurations>;

export const FileChange = z.strictObject({
  path: z.string(),
  change: z.enum(['added', 'modified', 'deleted']),
});
export type FileChange = z.infer<typeof FileChange>;

/** GET /status of the runner. */
export const RunnerStatus = z.object({
  status: RunnerState,
  phase: RunnerPhase,
  files_changed: z.number().int().nonnegative(),
  summary: z.string(),
  error: z.string().nullable(),
  reason: FailureReason.nullable(),
  job_id: JobId,
  attempt: z.number().int().min(1),
  site_id: SiteId,
  started_at: z.iso.datetime().nullable(),
  finished_at: z.iso.datetime().nullable(),
  phase_durations_ms: PhaseDurations,
  output_version: Sha256.nullable(),
});
export type RunnerStatus = z.infer<typeof RunnerStatus>;

/**
 * What a job's diff.patch holds, counted by the runner over every file it compared (the counts
 * stay exact when the patch text is cut): status.diffSummary (camelCase, as the CRD), the
 * result's `diff_summary` and the manifest's. runner/diff.ts writes it; the preview reads it.
 */
export const DiffSummary = z.object({
  filesAdded: z.number().int().nonnegative(),
  filesModified: z.number().int().nonnegative(),
  filesDeleted: z.number().int().nonnegative(),
  linesAdded: z.number().int().nonnegative(),
  linesRemoved: z.number().int().nonnegative(),
  /** diff.patch was cut at the runner's limit (PAGEWRIGHT_MAX_DIFF_BYTES). */
  truncated: z.boolean(),
});
export type DiffSummary = z.infer<typeof DiffSummary>;

/** Files listed in results are capped; the manifest in storage has them all. */
export const MAX_RESULT_FILES = 1000;

/** POST {MANAGER_URL}/jobs/{job_id}/result: the runner's final word on one attempt. */
export const JobResult = z.object({
  job_id: JobId,
  attempt: z.number().int().min(1),
  status: z.enum(['completed', 'failed']),
  reason: FailureReason.nullable(),
  error: z.string().max(4000).nullable(),
  files_changed: z.number().int().nonnegative(),
  files: z.array(z.string()).max(MAX_RESULT_FILES),
  summary: z.string().max(20000),
  base_version: Sha256.nullable(),
  output_version: Sha256.nullable(),
  started_at: z.iso.datetime(),
  finished_at: z.iso.datetime(),
  phase_durations_ms: PhaseDurations,
  /**
   * Absent when the attempt failed before its output was packed, when the diff could not be
   * written (the job still succeeds: its log says why) and from runners older than the diff.
   */
  diff_summary: DiffSummary.optional(),
  /** The checks of the output that was packed (absent when none ran). */
  checks: z.array(CheckResult).max(CHECK_NAMES.length).optional(),
  /** Agent turns the job took: 1, plus its repair turns. */
  turns: z.number().int().positive().optional(),
  /**
   * The codex thread whose session the runner kept as the job's session.jsonl: what a follow-up
   * resumes. Absent when none was stored (the job failed, or the session was over its limit).
   */
  thread_id: ThreadId.optional(),
});
export type JobResult = z.infer<typeof JobResult>;

/** POST {MANAGER_URL}/jobs/{job_id}/progress: best-effort live phase. */
export const JobProgress = z.object({
  job_id: JobId,
  attempt: z.number().int().min(1),
  phase: RunnerPhase,
  at: z.iso.datetime(),
});
export type JobProgress = z.infer<typeof JobProgress>;

const ManifestFile = z.strictObject({
  path: z.string(),
  sha256: Sha256,
  size: z.number().int().nonnegative(),
});

/**
 * jobs/{job_id}/manifest.json. Written last, so its presence (with a matching output_version)
 * means the outputs are complete; it embeds the result so a manager that never got the callback
 * can recover it from storage.
 */
export const JobManifest = z.object({
  manifest_version: z.literal(1),
  job_id: JobId,
  site_id: SiteId,
  attempt: z.number().int().min(1),
  result: JobResult,
  changes: z.array(FileChange),
  files: z.array(ManifestFile),
  output_size: z.number().int().nonnegative().nullable(),
  codex_version: z.string().nullable(),
  model: z.string().nullable(),
  /** Every check with its findings (up to MAX_MANIFEST_FINDINGS each). */
  checks: z.array(ManifestCheck).max(CHECK_NAMES.length).optional(),
  /** The kept codex session (jobs/{id}/session.jsonl): its thread, digest and size. */
  session: z.strictObject({ thread_id: ThreadId, sha256: Sha256, size: z.number().int().nonnegative() }).optional(),
});
export type JobManifest = z.infer<typeof JobManifest>;

/** What the agent is asked to end with (passed to codex as --output-schema). */
export const AgentFinalMessage = z.object({
  summary: z.string().min(1).max(20000),
  files_changed: z.array(z.string()).max(10000).default([]),
});
export type AgentFinalMessage = z.infer<typeof AgentFinalMessage>;

/** Storage's answer to PUT of an object. */
export const StoredObject = z.object({
  version: Sha256,
  size: z.number().int().nonnegative(),
});
export type StoredObject = z.infer<typeof StoredObject>;

/** What a job used of the model, as the gateway counted it (status.usage: camelCase as the CRD). */
export const Usage = z.object({
  requests: z.number().int().nonnegative(),
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof Usage>;
export const NO_USAGE: Usage = { requests: 0, inputTokens: 0, outputTokens: 0 };

/** Reasons the gateway refuses a model call for the job itself (not for a bad credential). */
export const GatewayRefusalReason = FailureReason.extract([
  'LLMBudgetExceeded',
  'LLMRateLimited',
  'ModelNotAllowed',
  'HostedToolNotAllowed',
  'InputNotAllowed',
  'RequestNotAllowed',
]);
export type GatewayRefusalReason = z.infer<typeof GatewayRefusalReason>;

/**
 * Refusals of what no job needs (a hosted tool, a fetching input, a forbidden field): the agent
 * tried to reach past its sandbox, so its attempt ends at once, whatever codex goes on to do,
 * and nothing of it is published. The budget and rate-limit refusals end a job only when they
 * end codex's run (the runner then fails, and the refusal is why).
 */
export function refusalEndsAttempt(reason: GatewayRefusalReason): boolean {
  return reason === 'HostedToolNotAllowed' || reason === 'InputNotAllowed' || reason === 'RequestNotAllowed';
}

/** Gateway -> manager, POST /jobs/{job_id}/usage: the job's usage so far, and a refusal if one happened. */
export const UsageReport = z.object({
  job_id: JobId,
  attempt: z.number().int().positive(),
  usage: Usage,
  refusal: z.object({ reason: GatewayRefusalReason, message: z.string().max(2000) }).optional(),
});
export type UsageReport = z.infer<typeof UsageReport>;
