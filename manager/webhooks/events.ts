/**
 * What a site's webhook receives: one CloudEvent (CloudEvents 1.0, structured JSON mode, built
 * and encoded with the `cloudevents` SDK) per entry of the site's history and per ended job of
 * the site. An event is derived from Kubernetes state alone, so the same entry gives the same
 * event, byte for byte, after a manager restart: same `id` (the receiver's idempotency key, also
 * sent as `webhook-id`), same `time` (when it happened, not when it was sent), same body.
 *
 * Attributes:
 *   type     dev.pagewright.site.pushed | .site.published | .site.rolledback   (a history entry)
 *            dev.pagewright.job.succeeded | .job.failed | .job.cancelled        (a job ended)
 *   source   /namespaces/<ns>/pagewrightsites/<site>   (job events: /namespaces/<ns>/pagewrightjobs/<job>)
 *   subject  the site's name
 *   id       pws_<site uid>_<history sequence>, or pwj_<job uid>_<attempt>_<phase>: no `.`, which the
 *            Standard Webhooks signature scheme forbids in ids
 *   time     the history entry's time, or the job's completionTime
 *   datacontenttype application/json; data: WebhookEventData below.
 *
 * data (zod, exported as WebhookEventData; a receiver can copy the schema):
 *   site, namespace   the PagewrightSite
 *   action            pushed | published | rolledback | succeeded | failed | cancelled
 *   version           site events: the version that became current (sha256 of its tar.gz);
 *                     job events: the job's output version, when it produced one
 *   previousVersion   site events: the version that was current before, if any
 *   by                site events: who did it, { kind: job | user, name }
 *   job               job events: { name, uid, attempt, phase, reason?, baseVersion?, outputVersion? }
 *   fetch             whenever there is a version: { command: "pagewright sites pull <site>
 *                     --version <v> -n <ns> DIR", url?: the signed preview link, where an
 *                     Ingress base URL is configured }
 * Thin on purpose (Standard Webhooks' advice): no prompt, summary or file list, which are the
 * agent's words; the receiver fetches what it needs with its own credentials.
 */
import { CloudEvent, HTTP } from 'cloudevents';
import { z } from 'zod';
import { Sha256 } from '../../common/schemas.js';

const SITE_ACTIONS = ['pushed', 'published', 'rolledback'] as const;
type SiteAction = (typeof SITE_ACTIONS)[number];
const JOB_END_PHASES = ['Succeeded', 'Failed', 'Cancelled'] as const;
type JobEndPhase = (typeof JOB_END_PHASES)[number];

const Fetch = z.strictObject({ command: z.string().min(1), url: z.url({ protocol: /^https?$/ }).optional() });

const SiteEventData = z.strictObject({
  site: z.string().min(1),
  namespace: z.string().min(1),
  action: z.enum(SITE_ACTIONS),
  version: Sha256,
  previousVersion: Sha256.optional(),
  by: z.strictObject({ kind: z.enum(['job', 'user']), name: z.string().min(1) }).optional(),
  fetch: Fetch,
});

const JobEventData = z.strictObject({
  site: z.string().min(1),
  namespace: z.string().min(1),
  action: z.enum(['succeeded', 'failed', 'cancelled']),
  version: Sha256.optional(),
  job: z.strictObject({
    name: z.string().min(1),
    uid: z.string().min(1),
    attempt: z.number().int().nonnegative(),
    phase: z.enum(JOB_END_PHASES),
    /** The job's machine-readable status.reason (Failed and Cancelled jobs). */
    reason: z.string().optional(),
    baseVersion: Sha256.optional(),
    outputVersion: Sha256.optional(),
  }),
  fetch: Fetch.optional(),
});

/** The `data` of every event this manager sends. */
export const WebhookEventData = z.union([SiteEventData, JobEventData]);
export type WebhookEventData = z.infer<typeof WebhookEventData>;

const EVENT_TYPE_PREFIX = 'dev.pagewright.';

/** A site, as the controller knows it. */
export interface SiteRef {
  namespace: string;
  name: string;
  uid: string;
}

/** One entry of PagewrightSite status.history, as the controller gives it. */
export interface SiteHistoryEntry {
  /** Monotonically increasing per site, never reused. */
  sequence: number;
  action: SiteAction;
  version: string;
  /** When unset, the version of the entry before it (if the history still has it). */
  previousVersion?: string;
  /** RFC 3339. */
  time: string;
  /** Who did it: the job that published, or the user who pushed or rolled back. */
  job?: string;
  user?: string;
  /** The signed preview link of this version, where previews have an Ingress. */
  previewUrl?: string;
}

/** A PagewrightJob of the site that has ended. */
export interface EndedJobRef {
  namespace: string;
  name: string;
  uid: string;
  attempt: number;
  phase: JobEndPhase;
  /** RFC 3339. */
  completionTime: string;
  reason?: string;
  baseVersion?: string;
  outputVersion?: string;
  previewUrl?: string;
}

/** An event before encoding: what the outbox orders and the sender signs. */
export interface WebhookEvent {
  id: string;
  type: string;
  source: string;
  subject: string;
  time: string;
  data: WebhookEventData;
}

function fetchCommand(site: string, namespace: string, version: string): string {
  return `pagewright sites pull ${site} --version ${version} -n ${namespace} DIR`;
}

const fetchOf = (site: SiteRef, version: string, url: string | undefined) => ({
  command: fetchCommand(site.name, site.namespace, version),
  ...(url ? { url } : {}),
});

function siteEventId(siteUid: string, sequence: number): string {
  return `pws_${siteUid}_${sequence}`;
}

export function jobEventId(job: Pick<EndedJobRef, 'uid' | 'attempt' | 'phase'>): string {
  return `pwj_${job.uid}_${job.attempt}_${job.phase.toLowerCase()}`;
}

/** The event of one history entry; `before` is the entry preceding it, when the history has it. */
export function siteEvent(site: SiteRef, entry: SiteHistoryEntry, before?: SiteHistoryEntry): WebhookEvent {
  const previousVersion = entry.previousVersion ?? before?.version;
  const by = entry.job ? { kind: 'job' as const, name: entry.job } : entry.user ? { kind: 'user' as const, name: entry.user } : undefined;
  const data = SiteEventData.parse({
    site: site.name,
    namespace: site.namespace,
    action: entry.action,
    version: entry.version,
    ...(previousVersion && previousVersion !== entry.version ? { previousVersion } : {}),
    ...(by ? { by } : {}),
    fetch: fetchOf(site, entry.version, entry.previewUrl),
  });
  return {
    id: siteEventId(site.uid, entry.sequence),
    type: `${EVENT_TYPE_PREFIX}site.${entry.action}`,
    source: `/namespaces/${site.namespace}/pagewrightsites/${site.name}`,
    subject: site.name,
    time: new Date(entry.time).toISOString(),
    data,
  };
}

export function jobEvent(site: SiteRef, job: EndedJobRef): WebhookEvent {
  const version = job.phase === 'Succeeded' ? job.outputVersion : undefined;
  const data = JobEventData.parse({
    site: site.name,
    namespace: site.namespace,
    action: job.phase.toLowerCase(),
    ...(version ? { version } : {}),
    job: {
      name: job.name,
      uid: job.uid,
      attempt: job.attempt,
      phase: job.phase,
      ...(job.reason ? { reason: job.reason } : {}),
      ...(job.baseVersion ? { baseVersion: job.baseVersion } : {}),
      ...(job.outputVersion ? { outputVersion: job.outputVersion } : {}),
    },
    ...(version ? { fetch: fetchOf(site, version, job.previewUrl) } : {}),
  });
  return {
    id: jobEventId(job),
    type: `${EVENT_TYPE_PREFIX}job.${job.phase.toLowerCase()}`,
    source: `/namespaces/${job.namespace}/pagewrightjobs/${job.name}`,
    subject: site.name,
    time: new Date(job.completionTime).toISOString(),
    data,
  };
}

/** The HTTP request body and content type (structured mode), from the SDK, validated by it. */
export function encodeEvent(event: WebhookEvent): { body: string; contentType: string } {
  const ce = new CloudEvent(
    {
      specversion: '1.0',
      id: event.id,
      type: event.type,
      source: event.source,
      subject: event.subject,
      time: event.time,
      datacontenttype: 'application/json',
      data: event.data,
    },
    true,
  );
  const message = HTTP.structured(ce);
  const contentType = message.headers['content-type'];
  if (typeof message.body !== 'string' || typeof contentType !== 'string') throw new Error('cloudevents: unexpected structured message');
  return { body: message.body, contentType };
}
