/**
 * Webhook signatures as the Standard Webhooks specification (https://www.standardwebhooks.com/,
 * spec/standard-webhooks.md, v1.0.0) defines them, so a receiver verifies them with any
 * off-the-shelf Standard Webhooks library (`standardwebhooks` on npm, PyPI, Go, ...) or ten lines
 * of its own:
 *   webhook-id         the event's id (the same on every retry: the idempotency key)
 *   webhook-timestamp  unix seconds of this attempt (new on each retry; receivers refuse old ones)
 *   webhook-signature  `v1,` + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`))
 * The key is the site's secret in the spec's serialisation, `whsec_` + base64 of 24 to 64 random
 * bytes; the HMAC key is those bytes (what the libraries decode it to). Make one with
 *   kubectl create secret generic my-hook --from-literal=secret="whsec_$(openssl rand -base64 32)"
 *   kubectl label secret my-hook pagewright.dev/webhook-secret=true
 * The label is the manager's rule, not the spec's: a site names its Secret, and the manager may
 * read Secrets its user may not, so without it a user could make the manager sign with a key of
 * another application of the namespace (the user sees signatures, never the key, but a verifier
 * of that application would accept them).
 */
import { createHmac } from 'node:crypto';

const PREFIX = 'whsec_';
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
export const WEBHOOK_SECRET_LABEL = 'pagewright.dev/webhook-secret';

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

/** The Secret as client-node returns it (data values base64, as the API serves them). */
export interface SecretLike {
  metadata?: { name?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

/** The signing key a site's `webhook.secretRef` names, from its Secret. Throws WebhookSecretError. */
export function signingKeyFromSecret(secret: SecretLike | undefined, key: string): Buffer {
  const name = secret?.metadata?.name ?? '';
  if (!secret) throw new WebhookSecretError('SecretNotFound', 'the webhook Secret does not exist');
  if (secret.metadata?.labels?.[WEBHOOK_SECRET_LABEL] !== 'true') {
    throw new WebhookSecretError('SecretInvalid', `Secret ${name} is not labelled ${WEBHOOK_SECRET_LABEL}=true`);
  }
  const value = secret.data?.[key];
  if (value === undefined) throw new WebhookSecretError('SecretNotFound', `Secret ${name} has no key ${JSON.stringify(key)}`);
  return parseSigningSecret(Buffer.from(value, 'base64').toString('utf8'));
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
