/**
 * Signed, expiring preview links for an Ingress (issue 17 item 4): the manager puts one in a
 * job's status, and the preview service serves `/p/<token>/...` to whoever holds it, with no
 * other credential. Both sides use this module, so the format has one definition.
 *
 * A token is `<payload>.<mac>`, both base64url without padding: the payload is a small JSON
 * object (kind, namespace, name, optional version, expiry in epoch seconds) and the mac is
 * HMAC-SHA256 over a purpose label and the encoded payload, under the link secret. The label
 * keeps a link's mac from ever being valid as anything else signed with the same secret.
 * Verification recomputes the mac and compares in constant time before it parses anything,
 * then checks the expiry. The payload is not encrypted: it names the object, which the holder
 * of the link is allowed to see anyway.
 *
 * What a link grants: GET of one job's review page, output and base (kind `job`), or of one
 * site version (kind `site`; without a version, whatever is current when it is opened), until
 * it expires. There is no revocation short of rotating the secret (every link dies) or
 * deleting the object (a job link then answers 404).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { MIN_SECRET_BYTES, TokenError } from './tokens.js';
import { Sha256 } from './schemas.js';

/** Kubernetes names: a namespace is a DNS label, an object name a DNS subdomain. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const PURPOSE = 'pagewright-preview-link/v1.';
/** Far longer than any real token (about 200 characters): a bound before any work is done. */
const MAX_TOKEN_CHARS = 1024;

export const PreviewLinkKind = z.enum(['job', 'site']);
export type PreviewLinkKind = z.infer<typeof PreviewLinkKind>;

export interface PreviewLink {
  kind: PreviewLinkKind;
  namespace: string;
  /** The PagewrightJob's or the PagewrightSite's name. */
  name: string;
  /** Site links only: a sha256, or none for the version current when the link is opened. */
  version?: string | undefined;
  expiresAt: Date;
}

const Payload = z.strictObject({
  k: PreviewLinkKind,
  ns: z.string().regex(NAMESPACE),
  n: z.string().regex(OBJECT_NAME),
  v: Sha256.optional(),
  exp: z.number().int().positive(),
});

function key(secret: string): Buffer {
  const k = Buffer.from(secret, 'utf8');
  if (k.length < MIN_SECRET_BYTES) throw new Error(`preview link secret must be at least ${MIN_SECRET_BYTES} bytes`);
  return k;
}

function mac(payload: string, secret: string): Buffer {
  return createHmac('sha256', key(secret))
    .update(PURPOSE + payload)
    .digest();
}

/** The token for `link`, valid until `link.expiresAt` (rounded down to the second). */
export function signPreviewLink(link: PreviewLink, secret: string): string {
  if (link.kind === 'job' && link.version !== undefined) throw new Error('a job preview link names no version');
  const payload = Payload.parse({
    k: link.kind,
    ns: link.namespace,
    n: link.name,
    ...(link.version === undefined ? {} : { v: link.version }),
    exp: Math.floor(link.expiresAt.getTime() / 1000),
  });
  const encoded = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
  return `${encoded}.${mac(encoded, secret).toString('base64url')}`;
}

/**
 * The link a token grants, if its mac is right and it has not expired at `now`. Throws a
 * TokenError: TokenInvalid (malformed, forged, tampered, another secret), TokenExpired.
 */
export function verifyPreviewLink(token: string, secret: string, now: Date = new Date()): PreviewLink {
  const invalid = () => new TokenError('TokenInvalid', 'preview link is invalid');
  if (token.length > MAX_TOKEN_CHARS) throw invalid();
  const parts = token.split('.');
  if (parts.length !== 2) throw invalid();
  const [encoded, given] = parts as [string, string];
  if (!/^[A-Za-z0-9_-]+$/.test(encoded) || !/^[A-Za-z0-9_-]{43}$/.test(given)) throw invalid();
  // compared as text: a base64url string has one canonical form, so a token has exactly one spelling
  const expected = Buffer.from(mac(encoded, secret).toString('base64url'), 'ascii');
  if (!timingSafeEqual(Buffer.from(given, 'ascii'), expected)) throw invalid();
  let parsed: z.infer<typeof Payload>;
  try {
    parsed = Payload.parse(JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')));
  } catch {
    throw invalid();
  }
  if (parsed.k === 'job' && parsed.v !== undefined) throw invalid();
  const expiresAt = new Date(parsed.exp * 1000);
  if (now.getTime() >= expiresAt.getTime()) throw new TokenError('TokenExpired', 'preview link has expired');
  return { kind: parsed.k, namespace: parsed.ns, name: parsed.n, ...(parsed.v === undefined ? {} : { version: parsed.v }), expiresAt };
}

/** Where a token is opened under the preview's public base URL: a job's review page, or a site version's root. */
export function previewLinkUrl(baseUrl: string, token: string, kind: PreviewLinkKind): string {
  return `${baseUrl.replace(/\/+$/, '')}/p/${token}/${kind === 'job' ? 'review' : 'files/'}`;
}
