/**
 * What storage answers: a subset of Pagewright's one vocabulary (common/errors.ts, which also
 * holds the HTTP status of each code). Storage folds the token codes into Unauthorized (401) and
 * Forbidden (403), as its clients have always read them; AttemptEnded stays its own code.
 */
import { type CodeSubset, PagewrightError } from '../common/errors.js';

export type StorageErrorCode = CodeSubset<
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
  | 'UpstreamUnavailable'
  | 'Internal'
>;

export class StorageError extends PagewrightError<StorageErrorCode> {
  constructor(code: StorageErrorCode, message: string) {
    super(code, message);
    this.name = 'StorageError';
  }
}
