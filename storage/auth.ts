/**
 * Who may do what: the admin token may do everything; a job token may read its own site and
 * read/write its own job's objects, nothing else.
 */
import { type JobTokens, type TokenScope, TokenError, bearerToken, constantTimeEqual } from '../common/tokens.js';
import { StorageError } from './errors.js';

export type Resource = { kind: 'site'; siteId: string } | { kind: 'job'; jobId: string } | { kind: 'admin' };

export interface Authorizer {
  authorize(authorization: string | undefined, resource: Resource, scope: TokenScope | null): Promise<void>;
}

export function createAuthorizer(adminToken: string, tokens: JobTokens): Authorizer {
  return {
    async authorize(authorization, resource, scope) {
      const token = bearerToken(authorization);
      if (token === null) throw new StorageError('Unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
      if (constantTimeEqual(token, adminToken)) return;
      let claims;
      try {
        claims = await tokens.verify(token, scope ?? undefined);
      } catch (err) {
        if (err instanceof TokenError) {
          throw new StorageError(err.httpStatus === 403 ? 'Forbidden' : 'Unauthorized', err.message);
        }
        throw err;
      }
      // a valid job token still can never do admin-only operations
      if (resource.kind === 'admin' || scope === null) {
        throw new StorageError('Forbidden', 'this operation needs the admin token');
      }
      const allowed = resource.kind === 'site' ? claims.siteId === resource.siteId : claims.jobId === resource.jobId;
      if (!allowed) throw new StorageError('Forbidden', `job token of ${claims.jobId} may not access this ${resource.kind}`);
    },
  };
}
