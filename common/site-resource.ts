/**
 * The PagewrightSite custom resource (deploy/k8s/site-crd.yaml): a site as a Kubernetes
 * object. Its name is what a PagewrightJob's spec.siteId names, in the job's namespace, and the
 * id of its versions in storage (so a site that already has versions there is adopted by the
 * PagewrightSite of the same name, its history kept). Its spec holds the site's settings; its
 * status mirrors what storage says of its versions (the manager's site controller writes it:
 * manager/site-controller.ts), so `kubectl get pws` shows each site's current version, who
 * made it current, and how many versions it has had.
 *
 * The versions themselves and the compare-and-swap on the current one stay storage's: the
 * status is a mirror, refreshed when a push, a publish or a rollback moved the site, never the
 * source of truth.
 */
import { ApiException, type CustomObjectsApi } from '@kubernetes/client-node';
import { z } from 'zod';
import { Condition, GROUP, VERSION } from './job-resource.js';
import { type CheckSettings, PathGlob, type PathRules, Sha256 } from './schemas.js';
import { SiteWebhookStatus } from './webhook-status.js';

export const SITE_PLURAL = 'pagewrightsites';
export const SITE_KIND = 'PagewrightSite';
/** The review API touches this annotation after a push or a rollback, so the manager mirrors the site at once. */
export const SITE_CHANGED_ANNOTATION = 'pagewright.dev/storage-changed-at';
/** How many of the latest versions the status lists (storage keeps more; `pagewright sites history` shows these). */
export const SITE_HISTORY_SHOWN = 20;

export const SiteAction = z.enum(['pushed', 'published', 'rolledback']);
export type SiteAction = z.infer<typeof SiteAction>;

/** One change of the site's current version, newest first in status.history. */
export const SiteHistoryItem = z.object({
  /** Numbers the site's changes from 1; never reused (webhooks say what they delivered by it). */
  sequence: z.number().int().positive(),
  action: SiteAction,
  version: Sha256,
  time: z.string(),
  /** The job that published it, or the user who pushed or rolled back. */
  job: z.string().optional(),
  user: z.string().optional(),
});
export type SiteHistoryItem = z.infer<typeof SiteHistoryItem>;

/** A Secret beside the site: for git, keys `username` and `password` (a token as the password); for s3, `accessKeyId` and `secretAccessKey`. */
const SecretName = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/);
const RepoPath = z.string().max(500).optional();

/** spec.source.git: a job's base is the tree at `ref`, imported as a version before the job's pod starts (manager/sites/). */
const GitSource = z.object({
  url: z.string().min(1).max(2048),
  /** A branch, a tag or a commit id. */
  ref: z.string().min(1).max(200).default('main'),
  /** The site is this directory of the repository (default: its root). */
  path: RepoPath,
  credentialsSecret: SecretName.optional(),
});

/** One place each published or rolled-back version goes (manager/sites/site-sync.ts, its plan in export-plan.ts). */
export const SiteTarget = z
  .object({
    /** The target's name in status.targets (unique in the site). */
    name: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/),
    git: z
      .object({
        url: z.string().min(1).max(2048),
        branch: z.string().min(1).max(200).default('main'),
        path: RepoPath,
        credentialsSecret: SecretName.optional(),
        author: z.object({ name: z.string().min(1).max(200), email: z.string().min(1).max(200) }).optional(),
      })
      .optional(),
    s3: z
      .object({
        bucket: z.string().min(3).max(63),
        prefix: z.string().max(500).optional(),
        /** An S3-compatible endpoint (default: AWS's for the region). */
        endpoint: z.string().max(2048).optional(),
        region: z.string().max(64).optional(),
        credentialsSecret: SecretName.optional(),
      })
      .optional(),
  })
  .refine((t) => (t.git ? 1 : 0) + (t.s3 ? 1 : 0) === 1, { message: 'a target is exactly one of git or s3' });
export type SiteTarget = z.infer<typeof SiteTarget>;

/** spec.paths: what a job of the site may change (runner/path-rules.ts enforces it). */
const SitePaths = z.object({
  allow: z.array(PathGlob).max(100).optional(),
  deny: z.array(PathGlob).max(100).optional(),
  maxFilesChanged: z.number().int().positive().optional(),
  maxBytesChanged: z.number().int().positive().optional(),
});

/** spec.paths as the runner's job input carries it. */
export function runnerPathRules(p: z.infer<typeof SitePaths>): PathRules {
  return {
    allow: p.allow ?? [],
    deny: p.deny ?? [],
    ...(p.maxFilesChanged !== undefined ? { max_files: p.maxFilesChanged } : {}),
    ...(p.maxBytesChanged !== undefined ? { max_bytes: p.maxBytesChanged } : {}),
  };
}

/** spec.checks: what the runner checks on a job's output (runner/checks/) and what a failure does. */
export const SiteChecks = z.object({
  html: z.boolean().default(true),
  links: z.boolean().default(true),
  repairTurns: z.number().int().min(0).max(3).default(1),
  publishAnyway: z.boolean().default(false),
  command: z.object({ run: z.string().min(1).max(2000), timeoutSeconds: z.number().int().min(1).max(3600).default(300) }).optional(),
});

/** spec.checks as the runner's job input carries it. */
export function runnerCheckSettings(c: z.infer<typeof SiteChecks>): CheckSettings {
  return {
    html: c.html,
    links: c.links,
    repair_turns: c.repairTurns,
    ...(c.command ? { command: { run: c.command.run, timeout_seconds: c.command.timeoutSeconds } } : {}),
  };
}

const SiteSpec = z.object({
  source: z.object({ git: GitSource }).optional(),
  paths: SitePaths.optional(),
  checks: SiteChecks.optional(),
  targets: z.array(SiteTarget).max(8).optional(),
  /**
   * Where the manager POSTs a signed CloudEvent when a version is published, pushed or rolled
   * back, and when a job of the site ends (manager/webhooks/). Its signing key is the manager's:
   * it writes it into the Secret status.webhookSecret names (webhookSecretName).
   */
  webhook: z.object({ url: z.string().min(1).max(2048) }).optional(),
});

/** The Secret, beside the site and owned by it, that holds its webhook signing key (key `secret`, whsec_ + base64). */
export function webhookSecretName(site: string): string {
  return `${site}-webhook`;
}
export const WEBHOOK_SECRET_KEY = 'secret';

/** What the exporter has done for one target (manager/sites/site-sync.ts, its plan in export-plan.ts). */
export const TargetStatus = z.object({
  name: z.string(),
  /** The target's settings it worked for (a changed target starts afresh). */
  specHash: z.string().optional(),
  /** The history sequence exported last: every change up to it is in the target. */
  exportedThrough: z.number().int().nonnegative().optional(),
  version: z.string().optional(),
  /** git: the commit pushed for it. */
  commit: z.string().optional(),
  time: z.string().optional(),
  /** Failed tries of the next change; it is retried with backoff. */
  attempts: z.number().int().nonnegative().optional(),
  nextAttemptTime: z.string().optional(),
  lastError: z.object({ code: z.string(), message: z.string(), time: z.string(), sequence: z.number().int().optional() }).optional(),
});
export type TargetStatus = z.infer<typeof TargetStatus>;

export const SiteStatus = z.object({
  currentVersion: z.string().optional(),
  /** Its first 12 hex digits (a printer column). */
  currentVersionShort: z.string().optional(),
  /** Who made it current: the job's name or the user's. */
  publishedBy: z.string().optional(),
  /** How many changes the site has had (the sequence of the latest). */
  versions: z.number().int().nonnegative().optional(),
  history: z.array(SiteHistoryItem).optional(),
  conditions: z.array(Condition).optional(),
  observedGeneration: z.number().int().optional(),
  /** The Secret with the webhook's signing key, once the manager made it. */
  webhookSecret: z.string().optional(),
  webhook: SiteWebhookStatus.optional(),
  /** The last import of spec.source: the commit, and the version it became. */
  source: z
    .object({ url: z.string(), ref: z.string(), path: z.string(), commit: z.string(), version: z.string(), importedAt: z.string() })
    .partial()
    .optional(),
  targets: z.array(TargetStatus).optional(),
});
export type SiteStatus = z.infer<typeof SiteStatus>;

const SiteMetadata = z.object({
  name: z.string(),
  namespace: z.string(),
  uid: z.string(),
  resourceVersion: z.string(),
  generation: z.number().int().optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const PagewrightSite = z.object({
  apiVersion: z.string().default(`${GROUP}/${VERSION}`),
  kind: z.string().default(SITE_KIND),
  metadata: SiteMetadata,
  spec: SiteSpec.default({}),
  status: SiteStatus.default({}),
});
export type PagewrightSite = z.infer<typeof PagewrightSite>;

/** Creates the PagewrightSite unless one of that name exists (what `pagewright sites push` does first). */
export async function createSiteIfAbsent(custom: CustomObjectsApi, namespace: string, name: string): Promise<void> {
  try {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: SITE_PLURAL,
      namespace,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: SITE_KIND, metadata: { name }, spec: {} },
    });
  } catch (err) {
    if (!(err instanceof ApiException && err.code === 409)) throw err;
  }
}
