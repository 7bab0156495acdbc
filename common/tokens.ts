/**
 * Per-job capability tokens: HS256 JWTs (jose) naming one job and one site, with an expiry and
 * scopes. The manager issues them; storage and the manager verify them; a runner only ever holds
 * its own token and never the signing secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { JobId, SiteId } from './schemas.js';

export const TokenScope = z.enum(['site:read', 'job:write', 'callback', 'kill']);
export type TokenScope = z.infer<typeof TokenScope>;
export const ALL_JOB_SCOPES: readonly TokenScope[] = TokenScope.options;

const ISSUER = 'pagewright';
const AUDIENCE = 'pagewright';
export const MIN_SECRET_BYTES = 32;

export interface JobTokenClaims {
  jobId: string;
  siteId: string;
  scopes: TokenScope[];
  /** Epoch seconds. */
  expiresAt: number;
}

const Payload = z.object({
  sub: JobId,
  site: SiteId,
  scope: z.string(),
  exp: z.number(),
});

export type TokenErrorCode = 'TokenMissing' | 'TokenInvalid' | 'TokenExpired' | 'TokenForbidden';

export class TokenError extends Error {
  readonly code: TokenErrorCode;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = 'TokenError';
    this.code = code;
  }
  /** 401 for who-are-you problems, 403 for you-may-not. */
  get httpStatus(): 401 | 403 {
    return this.code === 'TokenForbidden' ? 403 : 401;
  }
}

function keyFrom(secret: string): Uint8Array {
  const key = new TextEncoder().encode(secret);
  if (key.length < MIN_SECRET_BYTES) throw new Error(`token secret must be at least ${MIN_SECRET_BYTES} bytes`);
  return key;
}

export class JobTokens {
  readonly #key: Uint8Array;

  constructor(secret: string) {
    this.#key = keyFrom(secret);
  }

  async issue(opts: { jobId: string; siteId: string; scopes?: readonly TokenScope[]; ttlSeconds: number; now?: number }): Promise<string> {
    const now = Math.floor((opts.now ?? Date.now()) / 1000);
    return new SignJWT({ site: opts.siteId, scope: (opts.scopes ?? ALL_JOB_SCOPES).join(' ') })
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
    return { jobId: parsed.data.sub, siteId: parsed.data.site, scopes, expiresAt: parsed.data.exp };
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
