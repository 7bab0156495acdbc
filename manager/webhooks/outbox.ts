/**
 * At-least-once webhook delivery without a database: what is owed is derived from Kubernetes
 * state, what was delivered is written into the objects' status, and both are pure functions
 * here (dispatcher.ts runs them). A manager that restarts, or a new leader, reads the same state
 * and owes the same events, with the same ids.
 *
 * Owed, per site with a webhook:
 *   - every entry of status.history whose sequence is above status.webhook.deliveredThrough
 *     (sequences start at 1 and only grow);
 *   - every ended job of the site whose completionTime is not before status.webhook.since and
 *     that has no final marker (Delivered, GaveUp) for its current event id in its own
 *     status.webhook.
 * They go out one at a time per site, oldest first (history in sequence order, jobs by
 * completionTime, merged by time; on a tie the job first: a job ends, then its output is
 * published). An event is retried until delivered or given up; the next one waits for it.
 *
 * Recorded:
 *   PagewrightSite status.webhook (SiteWebhookStatus): since, deliveredThrough, the retry state of
 *     the site event being retried, the last delivery and the last failure, and `gone` after a 410.
 *   PagewrightJob status.webhook (JobWebhookStatus): id, state, attempts, times, last error.
 * A delivery is recorded after the receiver answered, so a crash in between sends it again, with
 * the same webhook-id: receivers de-duplicate on it. Status writes are merge patches of
 * `status.webhook` only.
 *
 * Rules that are choices:
 *   - a webhook newly set on a site (no status.webhook yet) starts with the newest history entry
 *     (the receiver learns what is current at once) and the jobs that end from then on, not the
 *     whole history;
 *   - a 410 Gone stops delivery to that URL (Standard Webhooks: "disable the endpoint"): events
 *     are not sent or owed while the spec names that URL; a new URL starts afresh as above;
 *   - an event given up (a 4xx, a redirect, a refused address, retries spent) is settled: it is
 *     recorded in lastError and the next one goes out; no dead-letter queue;
 *   - entries that left the history before they were delivered are lost: the send says how many;
 *   - removing the webhook from the spec clears status.webhook.
 */
import { createHash } from 'node:crypto';
import type { DeliveryOutcome, GiveUpCode, RetryCode } from './delivery.js';
import { type EndedJobRef, type SiteHistoryEntry, type SiteRef, type WebhookEvent, jobEvent, jobEventId, siteEvent } from './events.js';

import { JobWebhookStatus, SiteWebhookStatus } from '../../common/webhook-status.js';

export { JobWebhookStatus, SiteWebhookStatus };

export interface JobKey {
  namespace: string;
  name: string;
  uid: string;
}

interface WebhookSpec {
  url: string;
  secretRef: { name: string; key: string };
}

/** An ended job of the site, with what its status says about its event. */
export interface EndedJob extends EndedJobRef {
  webhook?: JobWebhookStatus;
}

/** Everything the decision needs about one site, from the informers' caches. */
export interface SiteSnapshot {
  site: SiteRef;
  webhook?: WebhookSpec;
  history: readonly SiteHistoryEntry[];
  jobs: readonly EndedJob[];
  status?: SiteWebhookStatus;
}

type EventOrigin = { kind: 'site'; sequence: number } | { kind: 'job'; job: JobKey };

export interface PendingEvent {
  event: WebhookEvent;
  origin: EventOrigin;
  /** Attempts already made (0: never tried). */
  attempts: number;
}

/** A status change: `site` null removes status.webhook; absent fields are not written. */
export interface StatusWrite {
  site?: SiteWebhookStatus | null;
  job?: { ref: JobKey; status: JobWebhookStatus };
}

export type Plan =
  | { kind: 'idle'; why: string }
  | { kind: 'write'; write: StatusWrite; why: string }
  | { kind: 'wait'; pending: PendingEvent; until: number }
  | { kind: 'send'; pending: PendingEvent; url: string; secretRef: WebhookSpec['secretRef']; missed: number };

export interface RetryPolicy {
  /** Attempts per event, the first included. */
  maxAttempts: number;
  /** The first retry waits about this long; each next one twice as long. */
  baseBackoffMs: number;
  /** [0, 1); jitter. */
  random?: () => number;
}

/** The longest Retry-After honoured: a receiver cannot park a site's events for longer. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

const iso = (ms: number) => new Date(ms).toISOString();
const at = (text: string) => Date.parse(text);

export function urlSha256(url: string): string {
  return createHash('sha256').update(url).digest('hex');
}

/**
 * The wait before attempt `attempts + 1`: base * 2^(attempts-1), times a jitter in [0.5, 1), and
 * at least what Retry-After asked (at most MAX_RETRY_AFTER_MS). With the defaults (10 s, 10
 * attempts) the nine waits add up to 43..85 minutes, about an hour.
 */
export function retryDelayMs(attempts: number, policy: RetryPolicy, retryAfterMs?: number): number {
  const random = policy.random ?? Math.random;
  const backoff = policy.baseBackoffMs * 2 ** Math.max(0, attempts - 1) * (0.5 + random() / 2);
  return Math.round(retryAfterMs === undefined ? backoff : Math.max(backoff, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS)));
}

/** The events owed, oldest first (the head is what goes next). */
function pendingEvents(snap: SiteSnapshot, status: SiteWebhookStatus): PendingEvent[] {
  const history = [...snap.history].filter((e) => e.sequence >= 1).sort((a, b) => a.sequence - b.sequence);
  const siteEvents: PendingEvent[] = [];
  history.forEach((entry, i) => {
    if (entry.sequence <= status.deliveredThrough) return;
    const event = siteEvent(snap.site, entry, history[i - 1]?.sequence === entry.sequence - 1 ? history[i - 1] : undefined);
    const retrying = status.retrying?.id === event.id ? status.retrying.attempts : 0;
    siteEvents.push({ event, origin: { kind: 'site', sequence: entry.sequence }, attempts: retrying });
  });
  const since = at(status.since);
  const jobEvents = snap.jobs
    .filter((j) => at(j.completionTime) >= since)
    .filter((j) => !(j.webhook && j.webhook.id === jobEventId(j) && j.webhook.state !== 'Retrying'))
    .sort((a, b) => at(a.completionTime) - at(b.completionTime) || a.name.localeCompare(b.name))
    .map((j): PendingEvent => {
      const attempts = j.webhook?.id === jobEventId(j) ? j.webhook.attempts : 0;
      return {
        event: jobEvent(snap.site, j),
        origin: { kind: 'job', job: { namespace: j.namespace, name: j.name, uid: j.uid } },
        attempts,
      };
    });
  // merge by time, each list keeping its own order
  const out: PendingEvent[] = [];
  let s = 0;
  let j = 0;
  while (s < siteEvents.length || j < jobEvents.length) {
    const site = siteEvents[s];
    const job = jobEvents[j];
    if (site && (!job || at(site.event.time) < at(job.event.time))) {
      out.push(site);
      s++;
    } else if (job) {
      out.push(job);
      j++;
    }
  }
  return out;
}

function nextAttemptAt(snap: SiteSnapshot, status: SiteWebhookStatus, pending: PendingEvent): number | undefined {
  if (pending.attempts === 0) return undefined;
  if (pending.origin.kind === 'site') return status.retrying ? at(status.retrying.nextAttemptAt) : undefined;
  const { uid } = pending.origin.job;
  const marker = snap.jobs.find((j) => j.uid === uid)?.webhook;
  return marker?.nextAttemptAt ? at(marker.nextAttemptAt) : undefined;
}

/** What to do next for one site. */
export function planSite(snap: SiteSnapshot, now: number): Plan {
  const status = snap.status;
  if (!snap.webhook) return status ? { kind: 'write', write: { site: null }, why: 'webhook removed' } : { kind: 'idle', why: 'no webhook' };
  const urlHash = urlSha256(snap.webhook.url);
  if (!status || (status.gone && status.gone.urlSha256 !== urlHash)) {
    const newest = Math.max(0, ...snap.history.map((e) => e.sequence));
    return {
      kind: 'write',
      write: { site: { since: iso(now), deliveredThrough: Math.max(0, newest - 1) } },
      why: status ? 'webhook URL changed after 410 Gone' : 'webhook configured',
    };
  }
  if (status.gone) return { kind: 'idle', why: 'the receiver answered 410 Gone at this URL' };
  const pending = pendingEvents(snap, status)[0];
  if (!pending) return { kind: 'idle', why: 'nothing owed' };
  const due = nextAttemptAt(snap, status, pending);
  if (due !== undefined && due > now) return { kind: 'wait', pending, until: due };
  const missed = pending.origin.kind === 'site' ? pending.origin.sequence - status.deliveredThrough - 1 : 0;
  return { kind: 'send', pending, url: snap.webhook.url, secretRef: snap.webhook.secretRef, missed: Math.max(0, missed) };
}

/** A failure to send that is not the receiver's answer (the site's Secret), in the outcome's terms. */
export type SettleOutcome =
  | DeliveryOutcome
  | { result: 'retry'; code: 'SecretNotFound'; message: string }
  | { result: 'giveUp'; code: 'SecretInvalid'; message: string };

type SettleCode = GiveUpCode | RetryCode | 'SecretNotFound' | 'SecretInvalid';

/** The status change after one attempt of `pending` (the head of `snap`'s plan). */
export function settle(snap: SiteSnapshot, pending: PendingEvent, outcome: SettleOutcome, now: number, policy: RetryPolicy): StatusWrite {
  const status = snap.status;
  if (!status) throw new Error('settle: the site has no status.webhook (planSite writes it first)');
  const attempts = pending.attempts + 1;
  const id = pending.event.id;
  let final: { code: SettleCode; message: string } | undefined;
  let retry: { nextAttemptAt: string; lastError: string } | undefined;
  if (outcome.result === 'giveUp') final = { code: outcome.code, message: outcome.message };
  else if (outcome.result === 'retry') {
    if (attempts >= policy.maxAttempts) final = { code: outcome.code, message: `gave up after ${attempts} attempts: ${outcome.message}` };
    else {
      const retryAfterMs = 'retryAfterMs' in outcome ? outcome.retryAfterMs : undefined;
      retry = { nextAttemptAt: iso(now + retryDelayMs(attempts, policy, retryAfterMs)), lastError: `${outcome.code}: ${outcome.message}` };
    }
  }
  const failure = final ? { id, code: final.code, message: final.message, at: iso(now) } : undefined;
  const gone = final?.code === 'Gone' ? { urlSha256: urlSha256(snap.webhook?.url ?? ''), at: iso(now) } : undefined;
  const { retrying: _r, ...rest } = status;

  if (pending.origin.kind === 'site') {
    if (retry) return { site: { ...status, retrying: { id, attempts, lastAttemptAt: iso(now), ...retry } } };
    return {
      site: {
        ...rest,
        deliveredThrough: pending.origin.sequence,
        ...(failure ? { lastError: failure } : { lastDelivered: { id, at: iso(now) } }),
        ...(gone ? { gone } : {}),
      },
    };
  }
  const ref = pending.origin.job;
  const base = { id, attempts, lastAttemptAt: iso(now) };
  if (retry) return { job: { ref, status: { ...base, state: 'Retrying', ...retry } } };
  if (!failure) return { job: { ref, status: { ...base, state: 'Delivered' } } };
  return {
    job: { ref, status: { ...base, state: 'GaveUp', lastError: `${failure.code}: ${failure.message}` } },
    site: { ...status, lastError: failure, ...(gone ? { gone } : {}) },
  };
}

/**
 * The snapshot as it will be once the informers show what this manager wrote: `written` are the
 * writes not yet seen in `snap` (dispatcher.ts keeps them, and drops each once it is seen).
 */
export function overlay(
  snap: SiteSnapshot,
  written: { site?: SiteWebhookStatus | null; jobs: ReadonlyMap<string, JobWebhookStatus> },
): SiteSnapshot {
  const status = written.site === undefined ? snap.status : (written.site ?? undefined);
  const jobs = snap.jobs.map((j) => {
    const w = written.jobs.get(j.uid);
    return w ? { ...j, webhook: w } : j;
  });
  const { status: _s, ...rest } = snap;
  return { ...rest, jobs, ...(status ? { status } : {}) };
}

/**
 * The JSON merge patch (status subresource) that makes status.webhook exactly `next`: every key
 * of the schema is listed, absent ones as null, since a merge patch keeps keys it does not name.
 */
export function siteWebhookMergePatch(next: SiteWebhookStatus | null): { status: { webhook: Record<string, unknown> | null } } {
  return { status: { webhook: next === null ? null : exactly(Object.keys(SiteWebhookStatus.shape), next) } };
}

export function jobWebhookMergePatch(next: JobWebhookStatus): { status: { webhook: Record<string, unknown> } } {
  return { status: { webhook: exactly(Object.keys(JobWebhookStatus.shape), next) } };
}

function exactly(keys: readonly string[], value: object): Record<string, unknown> {
  const v = value as Record<string, unknown>;
  return Object.fromEntries(keys.map((k) => [k, v[k] ?? null]));
}
