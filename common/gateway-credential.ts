/**
 * The agent's only credential: a per-attempt key for the model gateway (DESIGN "Security").
 * An HS256 JWT the manager signs with the gateway key (a secret of its own, never the job-token
 * secret, so nothing that verifies runner credentials accepts it and a leaked gateway key grants
 * no storage write), for the gateway only (its audience), naming the job, the attempt, the one
 * model the job may use and its budget, and expiring at the attempt's deadline. The gateway also
 * refuses it as soon as the attempt has ended (gateway/attempts.ts), whatever its expiry says.
 *
 * The agent can read it (codex must send it), and that is the point: what it allows is what the
 * agent may do anyway, talk to that model, for this attempt, within the budget.
 */
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { JobId } from './schemas.js';
import { TokenError, keyFrom } from './tokens.js';

const ISSUER = 'pagewright';
const GATEWAY_AUDIENCE = 'pagewright-gateway';

/** A job's model budget: every limit concrete (the manager applies the cluster's defaults). */
export const Budget = z.object({
  maxRequests: z.number().int().positive(),
  maxInputTokens: z.number().int().positive(),
  maxOutputTokens: z.number().int().positive(),
});
export type Budget = z.infer<typeof Budget>;

export interface GatewayClaims {
  jobId: string;
  namespace: string;
  /** The PagewrightJob's name (for logs and messages). */
  name: string;
  attempt: number;
  model: string;
  budget: Budget;
  /** Epoch seconds. */
  expiresAt: number;
}

const Payload = z.object({
  sub: JobId,
  ns: z.string().min(1),
  job: z.string().min(1),
  att: z.number().int().positive(),
  model: z.string().min(1),
  budget: Budget,
  exp: z.number(),
});

/** Verified credentials kept (each until it expires): a call pays an HMAC once per attempt, not per call. */
const VERIFIED_CACHE_SIZE = 10_000;

export class GatewayCredentials {
  readonly #key: Uint8Array;
  readonly #verified = new Map<string, GatewayClaims>();

  constructor(secret: string) {
    this.#key = keyFrom(secret);
  }

  async issue(claims: Omit<GatewayClaims, 'expiresAt'> & { ttlSeconds: number; now?: number }): Promise<string> {
    const now = Math.floor((claims.now ?? Date.now()) / 1000);
    return new SignJWT({ ns: claims.namespace, job: claims.name, att: claims.attempt, model: claims.model, budget: claims.budget })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(claims.jobId)
      .setIssuer(ISSUER)
      .setAudience(GATEWAY_AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + claims.ttlSeconds)
      .sign(this.#key);
  }

  async verify(token: string): Promise<GatewayClaims> {
    const known = this.#verified.get(token);
    if (known) {
      if (known.expiresAt * 1000 > Date.now()) return known;
      this.#verified.delete(token);
      throw new TokenError('TokenExpired', 'the gateway credential has expired (the attempt is over)');
    }
    const claims = await this.#verify(token);
    if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(token, claims);
    return claims;
  }

  async #verify(token: string): Promise<GatewayClaims> {
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, this.#key, { algorithms: ['HS256'], issuer: ISSUER, audience: GATEWAY_AUDIENCE }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired)
        throw new TokenError('TokenExpired', 'the gateway credential has expired (the attempt is over)');
      throw new TokenError('TokenInvalid', 'not a gateway credential');
    }
    const parsed = Payload.safeParse(payload);
    if (!parsed.success) throw new TokenError('TokenInvalid', 'the gateway credential has malformed claims');
    const p = parsed.data;
    return { jobId: p.sub, namespace: p.ns, name: p.job, attempt: p.att, model: p.model, budget: p.budget, expiresAt: p.exp };
  }
}
