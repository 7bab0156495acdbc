/**
 * The client's sha256 of a body, from `Content-Digest: sha-256=:<base64>:` (RFC 9530) or
 * `X-Content-SHA256: <hex>`. Both present must agree.
 */
import { StorageError } from './errors.js';

export function requestedSha256(headers: Record<string, string | string[] | undefined>): string | undefined {
  const fromHex = single(headers['x-content-sha256']);
  const fromDigest = single(headers['content-digest']);
  let hex: string | undefined;
  if (fromHex !== undefined) {
    if (!/^[a-fA-F0-9]{64}$/.test(fromHex)) throw new StorageError('InvalidDigest', 'X-Content-SHA256 must be 64 hex chars');
    hex = fromHex.toLowerCase();
  }
  if (fromDigest !== undefined) {
    const match = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/]{43}=):/.exec(fromDigest);
    if (!match?.[1]) throw new StorageError('InvalidDigest', 'Content-Digest must carry sha-256=:<base64>:');
    const fromB64 = Buffer.from(match[1], 'base64').toString('hex');
    if (hex !== undefined && hex !== fromB64) throw new StorageError('InvalidDigest', 'Content-Digest and X-Content-SHA256 disagree');
    hex = fromB64;
  }
  return hex;
}

export function contentDigestHeader(hex: string): string {
  return `sha-256=:${Buffer.from(hex, 'hex').toString('base64')}:`;
}

function single(v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) throw new StorageError('InvalidDigest', 'digest header given more than once');
  return v;
}

/** An ETag-style header value ("v", W/"v" or v) -> v. */
export function unquoteEtag(v: string): string {
  return v
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}
