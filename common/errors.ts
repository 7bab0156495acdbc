/**
 * Pagewright's one error vocabulary (the undici/fastify pattern, notes/style.md): every failure
 * is a PagewrightError with a stable `code`, one table gives each code its HTTP status, and one
 * middleware (common/error-middleware.ts) turns errors into responses. Callers switch on `code`,
 * never on message text.
 *
 * Two kinds of code share the vocabulary:
 *   - FailureReason: what can end a job. It travels unchanged into the runner's /status, the
 *     callback body (JobResult.reason) and finally the PagewrightJob's status.reason, so users
 *     (and the manager's retry policy) can act on it. These names are wire values: never rename.
 *   - HttpErrorCode: what only an HTTP answer carries (a bad token, an unknown route, a quota).
 *     They travel as `error` in the `{error, message}` body of storage, manager and runner (the
 *     gateway: `error.code` in OpenAI's shape) and are wire values as well.
 * `reason` stays the name of the job's wire field; inside the code an error has a `code`.
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
  /** The model gateway refused a call that asked for a hosted tool the cluster does not allow (web_search, mcp, ...). */
  'HostedToolNotAllowed',
  /** The model gateway refused a call whose input makes the provider fetch a URL or read a stored file or item. */
  'InputNotAllowed',
  /** The model gateway refused a call with a field or value outside what it forwards (background, previous_response_id, ...). */
  'RequestNotAllowed',
  'CodexFailed',
  'CodexTimeout',
  'InvalidAgentOutput',
  // artifacts and storage
  /** Refused at admission: no PagewrightSite of the job's siteId in its namespace (also storage's and the review API's 404). */
  'SiteNotFound',
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
  /**
   * The agent's processes hit the pod's pids limit (the kubelet's podPidsLimit): the kernel
   * refused a fork, and the runner stopped the run at once. A fork bomb, or a job that needs more
   * processes than the cluster allows. Not retried: the same job would do it again.
   */
  'PidsLimitExceeded',
  /**
   * The agent filled its work directory (a tmpfs of PAGEWRIGHT_RUNNER_WORK_SIZE_LIMIT): writes past
   * it failed with ENOSPC, so what its tools left is not to be trusted. Not retried.
   */
  'WorkDirFull',
  'Evicted',
  'ImagePullFailed',
  'PodLost',
  /** The runner was stopped from outside (SIGTERM); the manager reads why from the pod. */
  'PodTerminated',
  'RunnerFailed',
  'CallbackFailed',
  'PublishConflict',
  /** Admission: the site's git source names a URL the cluster does not allow (a transport, an address). */
  'SourceNotAllowed',
  /** Admission: the site's git source could not be fetched (network, authentication, no such ref); retried. */
  'SourceUnavailable',
  /** Admission: the site's git source holds what a site may not (a submodule, a link out, too many or too large files). */
  'UnsafeSource',
  /** The output changes a path the site's rules (spec.paths allow/deny) do not let a job change. */
  'PathNotAllowed',
  /** The output changes more files or bytes than the site's spec.paths allows. */
  'ChangeTooLarge',
  /** A publish (at the end of the job or on approval) refused: the output's checks failed, and neither the site nor the job says to publish anyway. */
  'ChecksFailed',
  /**
   * spec.followUpOf names no job to follow: none of that name in the namespace, one of another
   * site or model, one that did not succeed, or one that kept no codex session to resume.
   */
  'FollowUpUnavailable',
  'InvalidConfig',
  'Internal',
]);
export type FailureReason = z.infer<typeof FailureReason>;

/** Codes only HTTP answers carry; a job never ends with one (its reason is a FailureReason). */
export const HttpErrorCode = z.enum([
  // who are you (401) / you may not (403)
  /** No bearer token (manager, gateway). */
  'TokenMissing',
  /** A bearer token that is not a valid credential (manager, gateway). */
  'TokenInvalid',
  'TokenExpired',
  /** A valid token for another job, attempt or scope (manager). */
  'TokenForbidden',
  /** A token of an attempt that has ended (storage, gateway). */
  'AttemptEnded',
  /** Storage and the runner's /kill: no valid bearer token (storage folds the Token* 401s into it). */
  'Unauthorized',
  /** Storage: the token may not do this (storage folds TokenForbidden into it). */
  'Forbidden',
  // the request
  'BadRequest',
  'InvalidSiteId',
  'InvalidJobId',
  'InvalidVersion',
  'InvalidDigest',
  /** The body's sha256 is not the one the request declared. */
  'DigestMismatch',
  'InvalidManifest',
  /** No such route (or storage: no such job object name, no job). */
  'NotFound',
  'VersionNotFound',
  'ObjectNotFound',
  /** The manager knows no PagewrightJob with this uid (any more). */
  'JobNotFound',
  /** An If-Match / If-None-Match that does not hold. */
  'PreconditionFailed',
  /** publish: the job's stored output is not the version the runner reported. */
  'OutputMismatch',
  /** The runner's /kill: the job has already ended. */
  'AlreadyFinished',
  /** The agent server: a run is already in progress. */
  'Busy',
  'PayloadTooLarge',
  /** The gateway: a request body without a Content-Length (its size must be known before it is read). */
  'LengthRequired',
  /** The gateway: a compressed request body (it is refused rather than inflated: a small body can expand without bound). */
  'UnsupportedMediaType',
  /** The job's live objects would exceed PAGEWRIGHT_STORAGE_MAX_JOB_BYTES. */
  'JobQuotaExceeded',
  // the service
  /** Starting: informers not synced yet; retry. */
  'NotReady',
  /** The gateway holds as many request bytes as its memory allows; retry after Retry-After. */
  'Overloaded',
  /** The gateway could not reach the model endpoint. */
  'UpstreamUnavailable',
  /** Client side: a non-2xx answer whose body names no code of this vocabulary (a proxy, a crash page). */
  'UnexpectedResponse',
  // a site's publish target (its status, not a job's end nor an HTTP answer)
  /** The target names a URL or bucket endpoint the cluster does not allow. */
  'TargetNotAllowed',
  /** The target could not be written (network, authentication, the server's refusal); retried. */
  'TargetUnavailable',
]);
export type HttpErrorCode = z.infer<typeof HttpErrorCode>;

export const ErrorCode = z.enum([...FailureReason.options, ...HttpErrorCode.options]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** A subset of the vocabulary (what one error class or one service may answer), checked: a misspelt code does not compile. */
export type CodeSubset<C extends ErrorCode> = C;

/**
 * The one table from code to HTTP status. A job's failure reasons never reach an HTTP answer
 * but the few that are refusals: the rest are 500 should one escape a route.
 */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  // failure reasons
  LLMAuthFailed: 500,
  LLMUnavailable: 500,
  ModelNotFound: 500,
  ModelNotAllowed: 403,
  BudgetNotAllowed: 403,
  // 403, not 429: codex retries 429 and 5xx by itself, and a spent budget must not look like a rate limit
  LLMBudgetExceeded: 403,
  LLMRateLimited: 403,
  HostedToolNotAllowed: 403,
  InputNotAllowed: 403,
  RequestNotAllowed: 403,
  CodexFailed: 500,
  CodexTimeout: 500,
  InvalidAgentOutput: 500,
  ArtifactNotFound: 500,
  ArtifactCorrupt: 500,
  // a pushed site the review API refuses to keep (the runner's unpack gives a job this reason)
  UnsafeArchive: 422,
  UnsafeOutput: 422,
  ArtifactTooLarge: 500,
  StorageUnavailable: 500,
  UploadFailed: 500,
  Killed: 500,
  Cancelled: 500,
  DeadlineExceeded: 500,
  OOMKilled: 500,
  PidsLimitExceeded: 500,
  WorkDirFull: 500,
  Evicted: 500,
  ImagePullFailed: 500,
  PodLost: 500,
  PodTerminated: 500,
  RunnerFailed: 500,
  CallbackFailed: 500,
  PublishConflict: 409,
  SourceNotAllowed: 500,
  SourceUnavailable: 500,
  UnsafeSource: 500,
  PathNotAllowed: 500,
  ChangeTooLarge: 500,
  ChecksFailed: 500,
  FollowUpUnavailable: 500,
  InvalidConfig: 500,
  Internal: 500,
  // HTTP only
  TokenMissing: 401,
  TokenInvalid: 401,
  TokenExpired: 401,
  TokenForbidden: 403,
  AttemptEnded: 403,
  Unauthorized: 401,
  Forbidden: 403,
  BadRequest: 400,
  InvalidSiteId: 400,
  InvalidJobId: 400,
  InvalidVersion: 400,
  InvalidDigest: 400,
  DigestMismatch: 400,
  InvalidManifest: 400,
  NotFound: 404,
  SiteNotFound: 404,
  VersionNotFound: 404,
  ObjectNotFound: 404,
  JobNotFound: 404,
  PreconditionFailed: 412,
  OutputMismatch: 409,
  AlreadyFinished: 409,
  Busy: 409,
  PayloadTooLarge: 413,
  LengthRequired: 411,
  UnsupportedMediaType: 415,
  JobQuotaExceeded: 413,
  NotReady: 503,
  Overloaded: 503,
  UpstreamUnavailable: 502,
  UnexpectedResponse: 502,
  TargetNotAllowed: 403,
  TargetUnavailable: 502,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(HTTP_STATUS, value);
}

function isFailureReason(value: unknown): value is FailureReason {
  return FailureReason.safeParse(value).success;
}

/** Reasons worth a new attempt: the infrastructure failed, not the job itself. */
const INFRASTRUCTURE_REASONS: ReadonlySet<FailureReason> = new Set<FailureReason>([
  'StorageUnavailable',
  'UploadFailed',
  // the git host, not the job: the next attempt fetches again
  'SourceUnavailable',
  'OOMKilled',
  'Evicted',
  'PodLost',
  'RunnerFailed',
  'CallbackFailed',
]);

export function isInfrastructureFailure(reason: FailureReason): boolean {
  return INFRASTRUCTURE_REASONS.has(reason);
}

/** The base of every Pagewright error; `C` narrows the codes a subclass may carry. */
export class PagewrightError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PagewrightError';
    this.code = code;
  }

  /**
   * @deprecated Read `code`. Kept only while test/integration/codex.test.ts (edited in parallel)
   * still reads `err.reason`; remove it once that file reads `err.code`.
   */
  get reason(): C {
    return this.code;
  }
}

/** A job's failure: a PagewrightError whose code is a FailureReason. */
export type JobFailure = PagewrightError<FailureReason>;

export function isJobFailure(err: unknown): err is JobFailure {
  return err instanceof PagewrightError && isFailureReason(err.code);
}

/**
 * Maps anything thrown to the job's failure, keeping the code of one that already is a job
 * failure. An error with an HTTP-only code (a refusal from storage or the manager that nobody
 * classified) becomes `fallback`, with the error as its cause: status.reason only holds reasons.
 */
export function toJobFailure(err: unknown, fallback: FailureReason = 'Internal'): JobFailure {
  if (isJobFailure(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PagewrightError(fallback, message, { cause: err });
}

/** The `{error, message}` body of storage, manager, runner and the agent server; `error` is a code. */
export const ApiErrorBody = z.object({ error: z.string(), message: z.string() });
export type ApiErrorBody = z.infer<typeof ApiErrorBody>;

/** The `{error, message}` of an error answer's text, or null (not JSON: a proxy or a crash page). */
export function parseApiErrorBody(text: string): ApiErrorBody | null {
  try {
    const parsed = ApiErrorBody.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
