/**
 * PagewrightSites: each one's status mirrors what storage says of the site of its name (the
 * current version, who made it current, the latest changes: site-status.ts), so a site that
 * already has versions in storage is adopted with its history; and, where the site names a
 * webhook, its events are offered to webhook delivery (manager/webhooks/dispatcher.ts), which
 * owes one per history entry and one per ended job of the site.
 *
 * A site is reconciled on every watch event of it (the review API touches it after a push or a
 * rollback: preview/site-directory.ts), after the manager published one of its jobs, when one of
 * its jobs ends, and on the periodic resync (which also catches a change made in storage
 * directly). Its keys share the manager's work queue with the jobs' (SITE_KEY_PREFIX).
 */
import { ApiException, type CoreV1Api, type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { GROUP, type PagewrightJob, VERSION, isTerminal, splitKey } from '../common/job-resource.js';
import type { Logger } from '../common/logger.js';
import { PagewrightSite, SITE_KIND, SITE_PLURAL, WEBHOOK_SECRET_KEY, webhookSecretName } from '../common/site-resource.js';
import type { SiteInfo, StorageClient } from '../common/storage-client.js';
import { StorageRequestError } from '../common/storage-client.js';
import { DONE, type ReconcileResult, requeueAfter } from './reconcile-result.js';
import { type MirroredStatus, mirroredStatus } from './site-status.js';
import type { SiteSync } from './sites/site-sync.js';
import type { WebhookDispatcher } from './webhooks/dispatcher.js';
import type { EndedJob, SiteSnapshot } from './webhooks/outbox.js';
import { deriveSigningKey, formatSigningSecret } from './webhooks/signature.js';

/** Work-queue keys of sites start with this (jobs' keys are namespace/name). */
export const SITE_KEY_PREFIX = 'site:';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The status fields this controller owns (status.webhook is delivery's). */
const OWNED = ['currentVersion', 'currentVersionShort', 'publishedBy', 'versions', 'history', 'conditions', 'observedGeneration'] as const;

/** The sites the manager watches, parsed, by namespace/name. */
export class SiteCache {
  readonly #sites = new Map<string, PagewrightSite>();

  constructor(private readonly logger: Logger) {}

  put(raw: unknown): PagewrightSite | null {
    const parsed = PagewrightSite.safeParse(raw);
    if (!parsed.success) {
      this.logger.warn('ignoring a PagewrightSite the schema refuses', { error: parsed.error.issues[0]?.message });
      return null;
    }
    this.#sites.set(`${parsed.data.metadata.namespace}/${parsed.data.metadata.name}`, parsed.data);
    return parsed.data;
  }

  delete(raw: { metadata?: { namespace?: string; name?: string } }): PagewrightSite | undefined {
    const key = `${raw.metadata?.namespace}/${raw.metadata?.name}`;
    const gone = this.#sites.get(key);
    this.#sites.delete(key);
    return gone;
  }

  get(namespace: string, name: string): PagewrightSite | undefined {
    return this.#sites.get(`${namespace}/${name}`);
  }

  keys(): string[] {
    return [...this.#sites.keys()];
  }
}

export interface SiteControllerDeps {
  custom: CustomObjectsApi;
  core: CoreV1Api;
  /** What sites' webhook signing keys are derived from (the manager's token secret). */
  webhookKeyRoot: string;
  storage: StorageClient;
  sites: SiteCache;
  /** The jobs of a site in a namespace, from the job cache. */
  jobsOf: (namespace: string, siteId: string) => PagewrightJob[];
  /** Webhook delivery, on the leader (null: none runs). */
  webhooks: () => WebhookDispatcher | null;
  /** Publish targets' exports (null: sites have none here). */
  sync?: SiteSync;
  logger: Logger;
}

export class SiteController {
  /** Sites (by uid) whose webhook Secret this process has made or found. */
  readonly #secrets = new Set<string>();

  constructor(private readonly d: SiteControllerDeps) {}

  /** A site's webhook signing key (the Secret's content, derived, never read back). */
  signingKey(site: { uid: string }): Buffer {
    return deriveSigningKey(this.d.webhookKeyRoot, site.uid);
  }

  /** Whether a PagewrightSite of that name exists in the namespace: the cache, else the API (a site created a moment before its job may not be in the cache yet). */
  async exists(namespace: string, name: string): Promise<boolean> {
    if (this.d.sites.get(namespace, name)) return true;
    try {
      this.d.sites.put(
        await this.d.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: SITE_PLURAL, namespace, name }),
      );
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return false;
      throw err;
    }
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const site = this.d.sites.get(namespace, name);
    if (!site) return DONE;
    const info = await this.#storageSite(name);
    const next = mirroredStatus(info, site.status, site.metadata.generation, new Date().toISOString());
    let status = isDeepStrictEqual(owned(site.status), owned(next)) ? site.status : await this.#write(site, next);
    if (site.spec.webhook) status = await this.#webhookSecret(site, status);
    this.d.webhooks()?.offer(this.#snapshot(site, status));
    if (!this.d.sync || !site.spec.targets?.length) {
      if (site.status.targets?.length && this.d.sync) await this.d.sync.exportTargets({ ...site, status }, []);
      return DONE;
    }
    const history = [...(status.history ?? [])].reverse();
    const wait = await this.d.sync.exportTargets({ ...site, status }, history);
    return wait === null ? DONE : requeueAfter(Math.max(wait, 100));
  }

  /**
   * The Secret with the site's webhook signing key, made once (owned by the site, so it goes
   * with it), and named in the status for the site's users: the manager writes it, never reads
   * it (signature.ts says why).
   */
  async #webhookSecret(site: PagewrightSite, status: PagewrightSite['status']): Promise<PagewrightSite['status']> {
    const { namespace, name, uid } = site.metadata;
    const secret = webhookSecretName(name);
    if (!this.#secrets.has(uid)) {
      try {
        await this.d.core.createNamespacedSecret({
          namespace,
          body: {
            metadata: {
              name: secret,
              labels: { 'app.kubernetes.io/managed-by': 'pagewright-manager', 'pagewright.dev/site': name },
              ownerReferences: [{ apiVersion: `${GROUP}/${VERSION}`, kind: SITE_KIND, name, uid, controller: true }],
            },
            type: 'Opaque',
            stringData: { [WEBHOOK_SECRET_KEY]: formatSigningSecret(this.signingKey(site.metadata)) },
          },
        });
        this.d.logger.info('webhook signing key written', { site: `${namespace}/${name}`, secret });
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 409)) throw err;
      }
      this.#secrets.add(uid);
    }
    if (status.webhookSecret === secret) return status;
    const stored = await this.d.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: SITE_PLURAL, namespace, name, body: { status: { webhookSecret: secret } } },
      MERGE_PATCH,
    );
    return this.d.sites.put(stored)?.status ?? { ...status, webhookSecret: secret };
  }

  async #storageSite(name: string): Promise<SiteInfo | null> {
    try {
      return await this.d.storage.getSite(name);
    } catch (err) {
      if (err instanceof StorageRequestError && err.code === 'SiteNotFound') return null;
      throw err;
    }
  }

  /** A merge patch of the owned fields: what the mirror no longer has is removed (null). */
  async #write(site: PagewrightSite, next: MirroredStatus): Promise<PagewrightSite['status']> {
    const patch: Record<string, unknown> = {};
    for (const field of OWNED) patch[field] = next[field] ?? null;
    const stored = await this.d.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: SITE_PLURAL,
        namespace: site.metadata.namespace,
        name: site.metadata.name,
        body: { status: patch },
      },
      MERGE_PATCH,
    );
    const parsed = this.d.sites.put(stored);
    this.d.logger.debug('site status mirrored', {
      site: `${site.metadata.namespace}/${site.metadata.name}`,
      version: next.currentVersion ?? null,
    });
    return parsed?.status ?? { ...site.status, ...next };
  }

  #snapshot(site: PagewrightSite, status: PagewrightSite['status']): SiteSnapshot {
    const { namespace, name, uid } = site.metadata;
    const history = [...(status.history ?? [])];
    return {
      site: { namespace, name, uid },
      ...(site.spec.webhook
        ? { webhook: { url: site.spec.webhook.url, secretRef: { name: webhookSecretName(name), key: WEBHOOK_SECRET_KEY } } }
        : {}),
      // oldest first, each with the version it replaced (the entry before it, if still listed)
      history: history
        .map((h, i) => ({
          sequence: h.sequence,
          action: h.action,
          version: h.version,
          time: h.time,
          ...(history[i + 1] ? { previousVersion: history[i + 1]!.version } : {}),
          ...(h.job ? { job: h.job } : {}),
          ...(h.user ? { user: h.user } : {}),
        }))
        .reverse(),
      jobs: this.d
        .jobsOf(namespace, name)
        .filter(isTerminal)
        .flatMap((job) => endedJob(job)),
      ...(status.webhook ? { status: status.webhook } : {}),
    };
  }
}

function owned(status: Partial<MirroredStatus>): Record<string, unknown> {
  return Object.fromEntries(OWNED.map((f) => [f, status[f]]).filter(([, v]) => v !== undefined));
}

function endedJob(job: PagewrightJob): EndedJob[] {
  const s = job.status;
  if (!s.completionTime || (s.phase !== 'Succeeded' && s.phase !== 'Failed' && s.phase !== 'Cancelled')) return [];
  return [
    {
      namespace: job.metadata.namespace,
      name: job.metadata.name,
      uid: job.metadata.uid,
      attempt: s.attempt ?? 0,
      phase: s.phase,
      completionTime: s.completionTime,
      ...(s.reason ? { reason: String(s.reason) } : {}),
      ...(s.baseVersion ? { baseVersion: s.baseVersion } : {}),
      ...(s.outputVersion ? { outputVersion: s.outputVersion } : {}),
      ...(s.webhook ? { webhook: s.webhook } : {}),
    },
  ];
}
