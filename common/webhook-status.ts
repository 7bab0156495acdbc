/**
 * What webhook delivery records in the objects' status (manager/webhooks/outbox.ts decides
 * it): here, in common/, because the PagewrightSite and PagewrightJob schemas carry it, and a
 * status written without it would erase it.
 */
import { z } from 'zod';

const Time = z.iso.datetime({ offset: true });

/** One event's retries so far (the site's head event, or a job's). */
const RetryState = z.strictObject({
  id: z.string(),
  attempts: z.number().int().positive(),
  lastAttemptAt: Time,
  nextAttemptAt: Time,
  lastError: z.string(),
});

const Failure = z.strictObject({ id: z.string(), code: z.string(), message: z.string(), at: Time });

/** PagewrightSite status.webhook. */
export const SiteWebhookStatus = z.strictObject({
  /** When delivery began for this webhook: jobs that ended before it are not sent. */
  since: Time,
  /** History entries up to this sequence are settled (delivered or given up). */
  deliveredThrough: z.number().int().nonnegative(),
  /** The site event being retried. */
  retrying: RetryState.optional(),
  lastDelivered: z.strictObject({ id: z.string(), at: Time }).optional(),
  /** The last event given up (site or job), and why. */
  lastError: Failure.optional(),
  /** The receiver answered 410 Gone at this URL (its sha256): nothing more goes there. */
  gone: z.strictObject({ urlSha256: z.string(), at: Time }).optional(),
});
export type SiteWebhookStatus = z.infer<typeof SiteWebhookStatus>;

/** PagewrightJob status.webhook. */
export const JobWebhookStatus = z.strictObject({
  id: z.string(),
  state: z.enum(['Retrying', 'Delivered', 'GaveUp']),
  attempts: z.number().int().positive(),
  lastAttemptAt: Time,
  nextAttemptAt: Time.optional(),
  lastError: z.string().optional(),
});
export type JobWebhookStatus = z.infer<typeof JobWebhookStatus>;
