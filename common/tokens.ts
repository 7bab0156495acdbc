/**
 * The runner's credential: an HS256 JWT (jose) naming one job, one site and one attempt, with
 * scopes and an expiry at the attempt's deadline. The manager issues it; storage and the
 * manager verify it, and refuse it once the attempt has ended (storage: the job is sealed
 * through that attempt; manager: the attempt is no longer the job's current one). Only the
 * runner's container holds it, never the agent's (DESIGN "Security"), and nothing holds the
 * signing secret but the manager and storage.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { type CodeSubset, PagewrightError } from './errors.js';
import { JobId, SiteId } from './schemas.js';

export const TokenScope = z.enum(['site:read', 'job:write', 'callback', 'kill']);
export type TokenScope = z.infer<typeof TokenScope>;
const ALL_JOB_SCOPES: readonly TokenScope[] = TokenScope.options;

const ISSUER = 'pagewright';
const AUDIENCE = 'pagewright';
export const MIN_SECRET_BYTES = 32;

export interface JobTokenClaims {
  jobId: string;
  siteId: string;
  attempt: number;
  scopes: TokenScope[];
  /** Epoch seconds. */
  expiresAt: number;
  /**
   * A follow-up's token: the job whose output and session it may read (storage, GET only). The
   * manager names it only after checking that job is of the same site and namespace.
   */
  follows?: string;
}

const Payload = z.object({
  sub: JobId,
  site: SiteId,
  att: z.number().int().positive(),
  scope: z.string(),
  exp: z.number(),
  fol: JobId.optional(),
});

export type TokenErrorCode = CodeSubset<'TokenMissing' | 'TokenInvalid' | 'TokenExpired' | 'TokenForbidden' | 'AttemptEnded'>;

/**
 * A credential refused; the code says why (and, through common/errors.ts's table, the status:
 * 401 for who-are-you problems, 403 for you-may-not (any more)).
 */
export class TokenError extends PagewrightError<TokenErrorCode> {
  constructor(code: TokenErrorCode, message: string) {
    super(code, message);
    this.name = 'TokenError';
  }
}

export function keyFrom(secret: string): Uint8Array {
  const key = new TextEncoder().encode(secret);
  if (key.length < MIN_SECRET_BYTES) throw new Error(`token secret must be at least ${MIN_SECRET_BYTES} bytes`);
  return key;
}

export class JobTokens {
  readonly #key: Uint8Array;

  constructor(secret: string) {
    this.#key = keyFrom(secret);
  }

  async issue(opts: {
    jobId: string;
    siteId: string;
    attempt: number;
    scopes?: readonly TokenScope[];
    ttlSeconds: number;
    now?: number;
    follows?: string;
  }): Promise<string> {
    const now = Math.floor((opts.now ?? Date.now()) / 1000);
    const claims = { site: opts.siteId, att: opts.attempt, scope: (opts.scopes ?? ALL_JOB_SCOPES).join(' ') };
    return new SignJWT(opts.follows ? { ...claims, fol: opts.follows } : claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(opts.jobId)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + opts.ttlSeconds)
      .sign(this.#key);
  }

  /** Verifies signature (constant time, in WebCrypto), expiry and, if given, one scope. */
  async verify(token: string, requiredScope?: TokenScope): Promise<JobTokenClaims> {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.#key, { algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new TokenError('TokenExpired', 'job token has expired');
      throw new TokenError('TokenInvalid', 'job token is invalid');
    }
    const parsed = Payload.safeParse(payload);
    if (!parsed.success) throw new TokenError('TokenInvalid', 'job token has malformed claims');
    const scopes = parsed.data.scope.split(' ').filter((s): s is TokenScope => TokenScope.safeParse(s).success);
    if (requiredScope && !scopes.includes(requiredScope)) {
      throw new TokenError('TokenForbidden', `job token lacks scope ${requiredScope}`);
    }
    const { sub, site, att, exp, fol } = parsed.data;
    return { jobId: sub, siteId: site, attempt: att, scopes, expiresAt: exp, ...(fol ? { follows: fol } : {}) };
  }
}

/** `Authorization: Bearer <token>` -> token, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}

/** Constant-time string equality that does not leak the length (both sides are hashed first). */
export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}
