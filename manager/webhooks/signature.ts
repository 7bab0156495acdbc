/**
 * Webhook signatures as the Standard Webhooks specification (https://www.standardwebhooks.com/,
 * spec/standard-webhooks.md, v1.0.0) defines them, so a receiver verifies them with any
 * off-the-shelf Standard Webhooks library (`standardwebhooks` on npm, PyPI, Go, ...) or ten lines
 * of its own:
 *   webhook-id         the event's id (the same on every retry: the idempotency key)
 *   webhook-timestamp  unix seconds of this attempt (new on each retry; receivers refuse old ones)
 *   webhook-signature  `v1,` + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`))
 * The key is the site's secret in the spec's serialisation, `whsec_` + base64 of 24 to 64 random
 * bytes; the HMAC key is those bytes (what the libraries decode it to).
 *
 * Where the key comes from: the manager derives each site's key (HKDF-SHA256 of its own token
 * secret, salted with the site's uid: deriveSigningKey) and writes it, once, into a Secret it
 * creates beside the site (`<site>-webhook`, key `secret`, owned by the PagewrightSite), where
 * the site's users read it to configure their receiver. So the manager never reads a Secret:
 * with `get` on Secrets it could read the namespace's others (the LLM key among them), and a
 * user-named Secret would let a user make it sign with another application's key. A new key:
 * delete and re-create the PagewrightSite (a new uid), or rotate the manager's token secret
 * (every site's key changes).
 */
import { createHmac, hkdfSync } from 'node:crypto';

const PREFIX = 'whsec_';
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
const KEY_BYTES = 32;
const HKDF_INFO = 'pagewright webhook signing key v1';

/** The site's Secret or its value is not a usable signing key; the message says why, never the value. */
export class WebhookSecretError extends Error {
  constructor(
    readonly code: 'SecretNotFound' | 'SecretInvalid',
    message: string,
  ) {
    super(message);
    this.name = 'WebhookSecretError';
  }
}

/** `whsec_<base64>` -> the HMAC key. Throws WebhookSecretError (SecretInvalid). */
export function parseSigningSecret(value: string): Buffer {
  const text = value.trim();
  const b64 = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : undefined;
  if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    throw new WebhookSecretError('SecretInvalid', 'the webhook secret must be "whsec_" followed by base64 (Standard Webhooks)');
  }
  const key = Buffer.from(b64, 'base64');
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new WebhookSecretError(
      'SecretInvalid',
      `the webhook secret must decode to ${MIN_KEY_BYTES}..${MAX_KEY_BYTES} bytes, not ${key.length}`,
    );
  }
  return key;
}

/** The site's signing key: the same for the same site (its uid) and root secret, different for every other. */
export function deriveSigningKey(rootSecret: string, siteUid: string): Buffer {
  return Buffer.from(hkdfSync('sha256', rootSecret, siteUid, HKDF_INFO, KEY_BYTES));
}

/** The key as Standard Webhooks serialises it (what the site's Secret holds for its users). */
export function formatSigningSecret(key: Buffer): string {
  return `${PREFIX}${key.toString('base64')}`;
}

export interface SignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** The three headers of one attempt. `timestampSeconds` is now, in unix seconds. */
export function signWebhook(key: Buffer, id: string, timestampSeconds: number, body: string): SignatureHeaders {
  if (id.includes('.')) throw new Error(`a webhook id must not contain "." (Standard Webhooks): ${id}`);
  const timestamp = String(Math.floor(timestampSeconds));
  const mac = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': `v1,${mac}` };
}
