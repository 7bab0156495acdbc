/**
 * One attempt to deliver one event: POST it to the site's webhook URL and say what happened.
 * Retries are not made here (outbox.ts schedules them, across restarts); this gives the outcome
 * that decides: delivered, retry later, or give up.
 *
 * The connection goes where url-policy.ts allowed, and nowhere else:
 *   - the URL is checked (scheme, userinfo, an IP literal's address);
 *   - the host is resolved once, here, and every address it gives is checked: one refused address
 *     refuses the delivery (a name that answers with a public and a loopback address is an
 *     attack, not a receiver);
 *   - the socket connects only to those vetted addresses: the undici Agent's `connect.lookup`
 *     returns them and never asks DNS again, so a name re-bound between check and connect (DNS
 *     rebinding, TTL 0) gets nowhere;
 *   - TLS still verifies the certificate against the URL's host name (SNI and servername are the
 *     name, not the address), with node's CA bundle and the system's, plus
 *     PAGEWRIGHT_WEBHOOK_CA_FILE for private receivers;
 *   - redirects are never followed (undici's `request` does not, and no redirect interceptor is
 *     composed): a 3xx is a failed delivery, logged with its Location, so a public receiver
 *     cannot bounce the manager to 169.254.169.254;
 *   - no proxy from the environment (the Agent is our own, not EnvHttpProxyAgent);
 *   - one timeout bounds connect, TLS and the answer's headers; a 2xx body is not read, and at
 *     most 4 KiB of another answer's body (for the log).
 * Outcomes (Standard Webhooks' "delivery success and failure"): 2xx delivered; 408, 429, 5xx,
 * timeouts, connection, TLS and DNS errors retry (Retry-After is passed on); a 3xx, 410 Gone
 * (the receiver wants no more: the outbox stops sending to that URL), any other 4xx, a refused
 * URL or address, and an unusable secret give up.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupFunction } from 'node:net';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import type { Logger } from '../../common/logger.js';
import { type WebhookEvent, encodeEvent } from './events.js';
import { signWebhook } from './signature.js';
import type { UrlDecision, UrlPolicy } from './url-policy.js';

/** Stable codes of an attempt that may succeed later. */
export type RetryCode = 'ServerError' | 'RequestTimeout' | 'RateLimited' | 'Timeout' | 'ConnectionFailed' | 'TlsFailed' | 'DnsFailed';
/** Stable codes of an attempt that no retry can fix. */
export type GiveUpCode =
  | 'Redirected'
  | 'Gone'
  | 'ClientError'
  | 'InvalidUrl'
  | 'SchemeNotAllowed'
  | 'UserinfoNotAllowed'
  | 'AddressNotAllowed';

export type DeliveryOutcome =
  | { result: 'delivered'; status: number }
  | { result: 'retry'; code: RetryCode; message: string; status?: number; retryAfterMs?: number }
  | { result: 'giveUp'; code: GiveUpCode; message: string; status?: number; location?: string };

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Host name -> its addresses. The seam tests use to map a test name to an address. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const found = await dnsLookup(hostname, { all: true, order: 'verbatim' });
  return found.filter((a): a is ResolvedAddress => a.family === 4 || a.family === 6);
};

export interface SenderOptions {
  policy: UrlPolicy;
  /** Bounds one attempt: connect, TLS, headers and body together. */
  timeoutMs: number;
  /** Extra trusted CAs (PEM), added to node's and the system's. */
  extraCa?: readonly string[];
  resolve?: Resolver;
  logger?: Logger;
  userAgent?: string;
  /** Unix milliseconds (the signature's timestamp). */
  now?: () => number;
}

export interface DeliveryRequest {
  url: string;
  event: WebhookEvent;
  /** The site's HMAC key (signature.ts). */
  key: Buffer;
  /** Aborts the attempt (manager shutdown): send() then rejects with the abort reason. */
  signal?: AbortSignal;
}

const MAX_ANSWER_BYTES = 4096;
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/;
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

export class WebhookSender {
  readonly #opts: SenderOptions;
  readonly #ca: string[];
  readonly #resolve: Resolver;
  readonly #now: () => number;

  constructor(opts: SenderOptions) {
    this.#opts = opts;
    this.#resolve = opts.resolve ?? systemResolver;
    this.#now = opts.now ?? Date.now;
    // setting `ca` replaces node's defaults, so they are listed with the extra ones
    const system = [...tls.getCACertificates('default'), ...tls.getCACertificates('system')];
    this.#ca = [...new Set([...system, ...(opts.extraCa ?? [])])];
  }

  async send(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const log = this.#opts.logger?.child({ webhook_id: req.event.id, event_type: req.event.type, url: redactUrl(req.url) });
    const outcome = await this.#attempt(req);
    if (outcome.result === 'delivered') log?.info('webhook delivered', { status: outcome.status });
    else if (outcome.result === 'retry') log?.warn('webhook attempt failed; will retry', { ...outcome });
    else log?.warn('webhook delivery given up', { ...outcome });
    return outcome;
  }

  async #attempt(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const checked = this.#opts.policy.checkUrl(req.url);
    if (!checked.allowed) return { result: 'giveUp', code: checked.code, message: checked.message };

    const vetted = await vetHost(checked, this.#opts.policy, this.#resolve);
    if (!vetted.ok) {
      return vetted.code === 'DnsFailed'
        ? { result: 'retry', code: vetted.code, message: vetted.message }
        : { result: 'giveUp', code: vetted.code, message: vetted.message };
    }
    const { addresses } = vetted;

    const { body, contentType } = encodeEvent(req.event);
    const headers = {
      'content-type': contentType,
      'user-agent': this.#opts.userAgent ?? 'pagewright-webhooks',
      ...signWebhook(req.key, req.event.id, this.#now() / 1000, body),
    };
    const timeoutMs = this.#opts.timeoutMs;
    const agent = new Agent({
      connect: { lookup: pinnedLookup(addresses), timeout: timeoutMs, ca: this.#ca },
      allowH2: false,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connections: 1,
      pipelining: 0,
    });
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    try {
      const res = await request(checked.url, { method: 'POST', headers, body, dispatcher: agent, signal });
      // a 2xx is the delivery, whatever its body does; of other answers a little is kept for the log
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      res.body.on('error', () => undefined); // destroying an unread body errors it; that is the point
      const text = ok ? '' : await readBounded(res.body, MAX_ANSWER_BYTES).catch(() => '');
      res.body.destroy();
      return classify(res.statusCode, res.headers, text, this.#now());
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      return classifyError(err, timeout.aborted, timeoutMs);
    } finally {
      await agent.destroy().catch(() => undefined);
    }
  }
}

/**
 * A checked URL's host resolved once (an IP literal is its own address) and every address judged
 * by the policy: the addresses to pin connections to, or why not. Webhooks, git and bucket
 * targets (manager/sites/) all go through it.
 */
export async function vetHost(
  checked: Extract<UrlDecision, { allowed: true }>,
  policy: UrlPolicy,
  resolve: Resolver,
): Promise<{ ok: true; addresses: ResolvedAddress[] } | { ok: false; code: 'DnsFailed' | 'AddressNotAllowed'; message: string }> {
  let addresses: ResolvedAddress[];
  if (checked.literal) addresses = [checked.literal];
  else {
    try {
      addresses = await resolve(checked.host);
    } catch (err) {
      return { ok: false, code: 'DnsFailed', message: `cannot resolve ${checked.host}: ${describe(err)}` };
    }
    if (addresses.length === 0) return { ok: false, code: 'DnsFailed', message: `${checked.host} has no address` };
  }
  for (const a of addresses) {
    const d = policy.checkAddress(a.address);
    if (!d.allowed) return { ok: false, code: 'AddressNotAllowed', message: `${checked.host} resolves to ${d.message}` };
  }
  return { ok: true, addresses };
}

/** A `lookup` that answers with the vetted addresses, whatever it is asked. */
export function pinnedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
    if (wanted.length === 0) {
      callback(Object.assign(new Error('no vetted address of the requested family'), { code: 'ENOTFOUND' }), '');
    } else if (options.all)
      callback(
        null,
        wanted.map((a) => ({ address: a.address, family: a.family })),
      );
    else callback(null, wanted[0]!.address, wanted[0]!.family);
  };
}

type Headers = Record<string, string | string[] | undefined>;

function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function classify(status: number, headers: Headers, text: string, now: number): DeliveryOutcome {
  const detail = `HTTP ${status}${text ? `: ${oneLine(text, 200)}` : ''}`;
  if (status >= 200 && status < 300) return { result: 'delivered', status };
  if (status >= 300 && status < 400) {
    const location = header(headers, 'location');
    const shown = location === undefined ? 'no Location' : `Location ${oneLine(location, 500)}`;
    return {
      result: 'giveUp',
      code: 'Redirected',
      status,
      message: `HTTP ${status} redirect (${shown}): not followed; set the webhook URL to the final one`,
      ...(location !== undefined ? { location: oneLine(location, 500) } : {}),
    };
  }
  const retryAfterMs = parseRetryAfter(header(headers, 'retry-after'), now);
  const retry = (code: RetryCode): DeliveryOutcome => ({
    result: 'retry',
    code,
    status,
    message: detail,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
  if (status === 408) return retry('RequestTimeout');
  if (status === 429) return retry('RateLimited');
  if (status === 410) return { result: 'giveUp', code: 'Gone', status, message: `${detail} (the receiver asks for no more events)` };
  if (status >= 400 && status < 500) return { result: 'giveUp', code: 'ClientError', status, message: detail };
  return retry('ServerError');
}

function classifyError(err: unknown, timedOut: boolean, timeoutMs: number): DeliveryOutcome {
  const code = errorCode(err);
  if (timedOut || (code !== undefined && TIMEOUT_CODES.has(code)) || (err instanceof Error && err.name === 'TimeoutError')) {
    return { result: 'retry', code: 'Timeout', message: `no answer within ${timeoutMs} ms (${describe(err)})` };
  }
  if (code !== undefined && TLS_CODES.test(code)) return { result: 'retry', code: 'TlsFailed', message: describe(err) };
  return { result: 'retry', code: 'ConnectionFailed', message: describe(err) };
}

/** The error's own code, or its cause's (undici wraps socket errors). */
function errorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'UND_ERR_SOCKET') return code;
  }
  return undefined;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = errorCode(err);
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? `: ${err.cause.message}` : '';
  return oneLine(`${code ? `${code} ` : ''}${err.message}${cause}`, 300);
}

/** Retry-After as delay-seconds or an HTTP-date, in ms from now; undefined if absent or unreadable. */
function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

async function readBounded(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) break; // leaving the loop destroys the stream: the rest is never read
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

function oneLine(s: string, max: number): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** The URL without its query and fragment (receivers put tokens there), for logs and status. */
function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(invalid URL)';
  }
}
