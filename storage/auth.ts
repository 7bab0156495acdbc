/**
 * Who may do what: the admin token may do everything; a job token may read its own site and
 * read/write its own job's objects, nothing else, and nothing at all once its attempt has
 * ended (the job is sealed through that attempt, or deleted). Reads are refused too: a
 * legitimate runner never reads after its attempt ended, and a leaked token should not keep
 * showing later versions of the site until it expires.
 */
import { type JobTokenClaims, type JobTokens, type TokenScope, TokenError, bearerToken, constantTimeEqual } from '../common/tokens.js';
import { StorageError } from './errors.js';

/**
 * `followable`: the job's output and session, which a follow-up's token (claims.follows) may
 * read with its site:read scope; nothing else of that job, and never a write.
 */
type Resource = { kind: 'site'; siteId: string } | { kind: 'job'; jobId: string; followable?: boolean } | { kind: 'admin' };

export type Principal = { kind: 'admin' } | { kind: 'job'; claims: JobTokenClaims };

export interface Authorizer {
  authorize(authorization: string | undefined, resource: Resource, scope: TokenScope | null): Promise<Principal>;
}

/** `checkAttempt` throws StorageError('AttemptEnded') when the job's attempt may no longer act. */
export function createAuthorizer(
  adminToken: string,
  tokens: JobTokens,
  checkAttempt: (jobId: string, attempt: number) => Promise<void>,
): Authorizer {
  return {
    async authorize(authorization, resource, scope) {
      const token = bearerToken(authorization);
      if (token === null) throw new StorageError('Unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
      if (constantTimeEqual(token, adminToken)) return { kind: 'admin' };
      let claims: JobTokenClaims;
      try {
        claims = await tokens.verify(token);
        // a follow-up reading the output and session of the job it follows: as a read of its site
        const following = resource.kind === 'job' && resource.followable === true && claims.follows === resource.jobId;
        const needed = following ? 'site:read' : scope;
        if (needed && !claims.scopes.includes(needed)) throw new TokenError('TokenForbidden', `job token lacks scope ${needed}`);
      } catch (err) {
        if (!(err instanceof TokenError)) throw err;
        // storage's clients read two codes: who-are-you and you-may-not
        switch (err.code) {
          case 'TokenForbidden':
          case 'AttemptEnded':
            throw new StorageError('Forbidden', err.message);
          case 'TokenMissing':
          case 'TokenInvalid':
          case 'TokenExpired':
            throw new StorageError('Unauthorized', err.message);
        }
      }
      // a valid job token still can never do admin-only operations
      if (resource.kind === 'admin' || scope === null) {
        throw new StorageError('Forbidden', 'this operation needs the admin token');
      }
      const allowed =
        resource.kind === 'site'
          ? claims.siteId === resource.siteId
          : claims.jobId === resource.jobId || (resource.followable === true && claims.follows === resource.jobId);
      if (!allowed) throw new StorageError('Forbidden', `job token of ${claims.jobId} may not access this ${resource.kind}`);
      await checkAttempt(claims.jobId, claims.attempt);
      return { kind: 'job', claims };
    },
  };
}

/** The attempt of a job token, for the checks a write repeats under the job's lock. */
export function attemptOf(principal: Principal): number | undefined {
  return principal.kind === 'job' ? principal.claims.attempt : undefined;
}
