/** Storage API errors: a stable code, an HTTP status and a message for the JSON error body. */
export type StorageErrorCode =
  | 'BadRequest'
  | 'InvalidSiteId'
  | 'InvalidJobId'
  | 'InvalidVersion'
  | 'InvalidDigest'
  | 'DigestMismatch'
  | 'InvalidManifest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'SiteNotFound'
  | 'VersionNotFound'
  | 'ObjectNotFound'
  | 'PreconditionFailed'
  | 'PublishConflict'
  | 'OutputMismatch'
  | 'AttemptEnded'
  | 'PayloadTooLarge'
  | 'JobQuotaExceeded'
  | 'UnsafeOutput'
  | 'Internal';

const STATUS: Record<StorageErrorCode, number> = {
  BadRequest: 400,
  InvalidSiteId: 400,
  InvalidJobId: 400,
  InvalidVersion: 400,
  InvalidDigest: 400,
  DigestMismatch: 400,
  InvalidManifest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  SiteNotFound: 404,
  VersionNotFound: 404,
  ObjectNotFound: 404,
  PreconditionFailed: 412,
  PublishConflict: 409,
  /** publish: the job's stored output is not the version the runner reported. */
  OutputMismatch: 409,
  /** A job token of an attempt the job is sealed through (or of a deleted job). */
  AttemptEnded: 403,
  PayloadTooLarge: 413,
  /** The job's live objects would exceed PAGEWRIGHT_STORAGE_MAX_JOB_BYTES. */
  JobQuotaExceeded: 413,
  /** publish: the output breaks the archive rules (common/archive-rules.ts). */
  UnsafeOutput: 422,
  Internal: 500,
};

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  readonly status: number;
  constructor(code: StorageErrorCode, message: string) {
    super(message);
    this.name = 'StorageError';
    this.code = code;
    this.status = STATUS[code];
  }
}
