/**
 * The signed, expiring link to a job's review page that the manager writes into a Succeeded
 * job's status (status.reviewLink), where an Ingress serves the preview service's public port
 * (README "Review, approve, roll back"). The preview verifies it with the same secret
 * (common/preview-link.ts). Holding the link is the only credential the public port asks for, so
 * it goes only into the job's status, which RBAC guards as it guards the review page; it dies at
 * its expiry (a fresh one: GET .../jobs/NAME/link through the review API).
 */
import { previewLinkUrl, signPreviewLink } from '../common/preview-link.js';
import type { PagewrightJob } from '../common/job-resource.js';

export interface ReviewLinkSettings {
  secret: string;
  baseUrl: string;
  ttlSeconds: number;
}

/** The settings, or null where no Ingress is configured; half a configuration is a start-up error. */
export function reviewLinkSettings(c: {
  previewLinkSecret?: string | undefined;
  previewBaseUrl?: string | undefined;
  previewLinkTtlSeconds: number;
}): ReviewLinkSettings | null {
  if (!c.previewLinkSecret && !c.previewBaseUrl) return null;
  if (!c.previewLinkSecret || !c.previewBaseUrl)
    throw new Error('PAGEWRIGHT_PREVIEW_BASE_URL and PAGEWRIGHT_PREVIEW_LINK_SECRET are set together or not at all');
  return { secret: c.previewLinkSecret, baseUrl: c.previewBaseUrl, ttlSeconds: c.previewLinkTtlSeconds };
}

/** The link to `job`'s review page, valid `ttlSeconds` from `now`. */
export function reviewLinkFor(job: PagewrightJob, s: ReviewLinkSettings, now: Date): { url: string; expiresAt: string } {
  const expiresAt = new Date(Math.floor(now.getTime() / 1000) * 1000 + s.ttlSeconds * 1000);
  const token = signPreviewLink(
    { kind: 'job', namespace: job.metadata.namespace ?? 'default', name: job.metadata.name, expiresAt },
    s.secret,
  );
  return { url: previewLinkUrl(s.baseUrl, token, 'job'), expiresAt: expiresAt.toISOString() };
}
