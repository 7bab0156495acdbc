/**
 * What the preview needs to know about a job, whoever resolved it (preview/main.ts from the
 * PagewrightJob, the aggregated API from the same object): one schema, validated where a
 * resolver hands it over, so a resolver's mistake is a clear error rather than a broken page.
 */
import { z } from 'zod';
import { JobPhase } from '../common/job-resource.js';
import { CheckResult, DiffSummary, ManifestCheck, Sha256, SiteId, Usage } from '../common/schemas.js';

export const ReviewJob = z.object({
  /** The job's uid: its objects in storage are under it. */
  uid: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().min(1),
  siteId: SiteId,
  prompt: z.string(),
  phase: JobPhase.optional(),
  reason: z.string().optional(),
  summary: z.string().optional(),
  usage: Usage.optional(),
  baseVersion: Sha256.optional(),
  /** A follow-up's base is the output of the job it follows (its uid), not a version of the site. */
  baseJobUid: z.string().min(1).optional(),
  outputVersion: Sha256.optional(),
  diffSummary: DiffSummary.optional(),
  /** The output's checks: from the status, the first 10 findings of each; the review page reads all of them from the manifest. */
  checks: z.array(z.union([CheckResult, ManifestCheck])).optional(),
  /**
   * Shell command lines the page shows, each as given (the resolver builds them: it knows the
   * CLI's and kubectl's spelling for this job), e.g. `pagewright approve NAME -n NS`.
   */
  commands: z.object({ approve: z.array(z.string()), rollback: z.array(z.string()) }),
});
export type ReviewJob = z.infer<typeof ReviewJob>;

/** A site as the preview needs it: the storage site behind the name, and its current version (none before the first push). */
export const ReviewSite = z.object({ siteId: SiteId, currentVersion: Sha256.optional() });
export type ReviewSite = z.infer<typeof ReviewSite>;
