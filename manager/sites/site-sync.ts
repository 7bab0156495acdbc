/**
 * A site's settings that reach outside the cluster, carried out: spec.source.git imported as the
 * job's base before its pod starts, and every change of the current version exported to
 * spec.targets (git commits, bucket syncs), as export-plan.ts decides. The manager does it: it
 * has egress, and runner pods keep theirs closed (README "Sites from git").
 *
 * Credentials come only from the Secret the site names, in the site's namespace, which the
 * manager may read only where a Role grants it that one Secret by name (its ClusterRole has no
 * get on Secrets), and only from one that says it is for Pagewright sites: the annotation `pagewright.dev/sites` lists the
 * site names that may use it (or `*`). Without that, whoever may edit a PagewrightSite could
 * name any Secret of the namespace (a database password, another app's token) and have the
 * manager send it to a URL of their choosing; with it, only a Secret's own writers decide.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent as HttpsAgent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ApiException, type CoreV1Api, type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { S3Client } from '@aws-sdk/client-s3';
import { PagewrightError } from '../../common/errors.js';
import { GROUP, VERSION } from '../../common/job-resource.js';
import type { Logger } from '../../common/logger.js';
import { type PagewrightSite, SITE_PLURAL, type SiteTarget, type TargetStatus } from '../../common/site-resource.js';
import type { StorageClient } from '../../common/storage-client.js';
import { StorageRequestError } from '../../common/storage-client.js';
import { type Resolver, pinnedLookup, systemResolver, vetHost } from '../webhooks/delivery.js';
import type { UrlPolicy } from '../webhooks/url-policy.js';
import { type HistoryEntry, commitMessage, exported, failedTry, planTarget, tipHasChange } from './export-plan.js';
import { type GitAuth, type GitClient, GitError } from './git-client.js';
import { syncVersionToBucket } from './s3-target.js';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** The annotation a Secret carries to be usable by sites: their names, comma-separated, or `*`. */
const CREDENTIALS_ANNOTATION = 'pagewright.dev/sites';
/** Changes exported per target in one pass (the rest on the requeue, so one site cannot hold a worker for long). */
const EXPORTS_PER_PASS = 5;

export interface SiteSyncDeps {
  custom: CustomObjectsApi;
  core: CoreV1Api;
  storage: StorageClient;
  git: GitClient;
  /** What bucket endpoints may be (PAGEWRIGHT_SITE_* settings, like git URLs). */
  policy: UrlPolicy;
  resolve?: Resolver;
  scratchDir: string;
  retry: { baseBackoffMs: number };
  /** Told each site object a status write returned (the site cache: a requeue must not plan on the old status). */
  stored?: (raw: unknown) => void;
  logger: Logger;
  now?: () => number;
}

export type SourceOutcome =
  | { ok: true; version?: string }
  | { ok: false; reason: 'SourceNotAllowed' | 'SourceUnavailable' | 'UnsafeSource'; message: string };

export class SiteSync {
  readonly #d: SiteSyncDeps;
  readonly #now: () => number;

  constructor(d: SiteSyncDeps) {
    this.#d = d;
    this.#now = d.now ?? Date.now;
  }

  /**
   * Makes the site's current version the tree at spec.source.git.ref, unless it already is
   * (status.source names that commit and that version is current). Called with the job's site
   * reserved (admitter.ts: one job per site at a time), before the job's pod is made.
   */
  async importSource(site: PagewrightSite): Promise<SourceOutcome> {
    const src = site.spec.source?.git;
    if (!src) return { ok: true };
    const { namespace, name } = site.metadata;
    try {
      const auth = src.credentialsSecret ? await this.#gitAuth(namespace, name, src.credentialsSecret, 'SourceNotAllowed') : undefined;
      const current = await this.#currentVersion(name);
      // the commit imported last, still current, and the ref still there: nothing to fetch
      const known = site.status.source;
      if (
        known?.commit &&
        known.url === src.url &&
        known.ref === src.ref &&
        (known.path ?? '') === (src.path ?? '') &&
        known.version === current
      ) {
        const commit = await this.#d.git.resolveRef({ url: src.url, ref: src.ref, ...(auth ? { auth } : {}) });
        if (commit === known.commit) return { ok: true, version: current };
      }
      const tree = await this.#d.git.importTree({
        url: src.url,
        ref: src.ref,
        ...(src.path ? { path: src.path } : {}),
        ...(auth ? { auth } : {}),
      });
      try {
        const stored =
          current === tree.sha256
            ? { version: current }
            : await this.#d.storage.putSiteArtifact(name, createReadStream(tree.archivePath), {
                sha256: tree.sha256,
                size: tree.size,
                by: `git ${tree.commit.slice(0, 12)}`,
                ...(current ? { ifMatch: current } : {}),
              });
        await this.#patchStatus(site, {
          source: {
            url: src.url,
            ref: src.ref,
            path: src.path ?? '',
            commit: tree.commit,
            version: stored.version,
            importedAt: new Date(this.#now()).toISOString(),
          },
        });
        this.#d.logger.info('site source imported', { site: `${namespace}/${name}`, commit: tree.commit, version: stored.version });
        return { ok: true, version: stored.version };
      } finally {
        await tree.dispose();
      }
    } catch (err) {
      if (err instanceof GitError && (err.code === 'SourceNotAllowed' || err.code === 'SourceUnavailable' || err.code === 'UnsafeSource')) {
        return { ok: false, reason: err.code, message: `source ${src.url}@${src.ref}: ${err.message}` };
      }
      if (err instanceof StorageRequestError && err.code === 'UnsafeArchive')
        return { ok: false, reason: 'UnsafeSource', message: err.message };
      throw err;
    }
  }

  /**
   * Exports what each target is owed. Returns the delay until the next try is due (a failed
   * export, or more changes than one pass takes), or null when every target is up to date.
   */
  async exportTargets(site: PagewrightSite, historyOldestFirst: readonly HistoryEntry[]): Promise<number | null> {
    const targets = site.spec.targets ?? [];
    const statuses = new Map((site.status.targets ?? []).map((t) => [t.name, t]));
    let next: number | null = null;
    const due = (ms: number) => {
      next = next === null ? ms : Math.min(next, ms);
    };
    const written: TargetStatus[] = [];
    for (const target of targets) {
      let status = statuses.get(target.name);
      for (let pass = 0; ; pass++) {
        const plan = planTarget(target, status, historyOldestFirst, this.#now());
        if (plan.kind === 'idle') break;
        if (plan.kind === 'wait') {
          due(plan.untilMs - this.#now());
          break;
        }
        if (plan.kind === 'start') {
          status = plan.status;
          continue;
        }
        if (pass >= EXPORTS_PER_PASS) {
          due(0);
          break;
        }
        const base = status ?? { name: target.name };
        try {
          const commit = await this.#exportOne(site, target, plan.entry);
          status = exported(base, plan.entry, new Date(this.#now()).toISOString(), commit);
          this.#d.logger.info('site version exported', {
            site: `${site.metadata.namespace}/${site.metadata.name}`,
            target: target.name,
            version: plan.entry.version,
            ...(commit ? { commit } : {}),
            missed: plan.missed,
          });
        } catch (err) {
          const code = err instanceof PagewrightError ? err.code : 'Internal';
          const message = err instanceof Error ? err.message : String(err);
          status = failedTry(base, plan.entry, { code, message }, this.#now(), this.#d.retry);
          this.#d.logger.warn('site export failed', {
            site: `${site.metadata.namespace}/${site.metadata.name}`,
            target: target.name,
            code,
            message,
          });
          due(Date.parse(status.nextAttemptTime ?? '') - this.#now());
          break;
        }
      }
      if (status) written.push(status);
    }
    const before = JSON.stringify(site.status.targets ?? []);
    if (JSON.stringify(written) !== before) await this.#patchStatus(site, { targets: written.length ? written : null });
    return next;
  }

  async #exportOne(site: PagewrightSite, target: SiteTarget, entry: HistoryEntry): Promise<string | undefined> {
    const { namespace, name, uid } = site.metadata;
    const dir = await mkdtemp(join(this.#d.scratchDir, 'export-'));
    try {
      const archivePath = join(dir, 'site.tar.gz');
      const download = await this.#d.storage.downloadArtifact(name, { version: entry.version });
      await pipeline(download.body, createWriteStream(archivePath));
      if (target.git) {
        const g = target.git;
        const auth = g.credentialsSecret ? await this.#gitAuth(namespace, name, g.credentialsSecret, 'TargetNotAllowed') : undefined;
        const { commit } = await this.#d.git.publish({
          url: g.url,
          branch: g.branch,
          ...(g.path ? { path: g.path } : {}),
          ...(auth ? { auth } : {}),
          author: g.author ?? { name: 'Pagewright', email: 'pagewright@localhost' },
          archivePath,
          message: commitMessage({ namespace, name, uid }, entry),
          alreadyPushed: (tip) => tipHasChange(tip, { uid }, entry.sequence),
        });
        return commit;
      }
      if (target.s3) {
        const client = await this.#s3Client(namespace, name, target.s3);
        try {
          await syncVersionToBucket(
            client,
            { bucket: target.s3.bucket, ...(target.s3.prefix ? { prefix: target.s3.prefix } : {}) },
            archivePath,
          );
        } finally {
          client.destroy();
        }
      }
      return undefined;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** An S3 client for a target: its endpoint judged like a git URL, connections pinned to the vetted addresses. */
  async #s3Client(namespace: string, site: string, s3: NonNullable<SiteTarget['s3']>): Promise<S3Client> {
    const secret = s3.credentialsSecret ? await this.#secret(namespace, site, s3.credentialsSecret, 'TargetNotAllowed') : null;
    const credentials = secret
      ? {
          accessKeyId: need(secret, 'accessKeyId', s3.credentialsSecret!),
          secretAccessKey: need(secret, 'secretAccessKey', s3.credentialsSecret!),
        }
      : undefined;
    if (!credentials)
      throw new PagewrightError('TargetNotAllowed', 'an s3 target needs credentialsSecret (the manager never lends its own credentials)');
    let agent: HttpAgent | HttpsAgent | undefined;
    if (s3.endpoint) {
      const decided = this.#d.policy.checkUrl(s3.endpoint);
      if (!decided.allowed) throw new PagewrightError('TargetNotAllowed', `endpoint ${s3.endpoint}: ${decided.message}`);
      const vetted = await vetHost(decided, this.#d.policy, this.#d.resolve ?? systemResolver);
      if (!vetted.ok) throw new PagewrightError(vetted.code === 'DnsFailed' ? 'TargetUnavailable' : 'TargetNotAllowed', vetted.message);
      const lookup = pinnedLookup(vetted.addresses);
      agent = decided.url.protocol === 'https:' ? new HttpsAgent({ lookup, keepAlive: true }) : new HttpAgent({ lookup, keepAlive: true });
    }
    return new S3Client({
      region: s3.region ?? 'us-east-1',
      credentials,
      ...(s3.endpoint ? { endpoint: s3.endpoint, forcePathStyle: true } : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      ...(agent ? { requestHandler: agent instanceof HttpsAgent ? { httpsAgent: agent } : { httpAgent: agent } } : {}),
    });
  }

  async #gitAuth(namespace: string, site: string, secretName: string, refused: 'SourceNotAllowed' | 'TargetNotAllowed'): Promise<GitAuth> {
    const data = await this.#secret(namespace, site, secretName, refused);
    return { username: data.username ?? 'git', password: need(data, 'password', secretName) };
  }

  /** The named Secret's data, if it says it is for this site. */
  async #secret(
    namespace: string,
    site: string,
    secretName: string,
    refused: 'SourceNotAllowed' | 'TargetNotAllowed',
  ): Promise<Record<string, string>> {
    let secret: Awaited<ReturnType<CoreV1Api['readNamespacedSecret']>>;
    try {
      secret = await this.#d.core.readNamespacedSecret({ namespace, name: secretName });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) throw new GitError(refused, `Secret ${namespace}/${secretName} does not exist`);
      if (err instanceof ApiException && err.code === 403) {
        throw new GitError(
          refused,
          `the manager may not read Secret ${namespace}/${secretName}: grant it with a Role (get, resourceNames: [${secretName}]) bound to the manager's ServiceAccount`,
        );
      }
      throw err;
    }
    const allowed = (secret.metadata?.annotations?.[CREDENTIALS_ANNOTATION] ?? '').split(',').map((s) => s.trim());
    if (!allowed.includes(site) && !allowed.includes('*')) {
      throw new GitError(
        refused,
        `Secret ${namespace}/${secretName} is not for this site: its annotation ${CREDENTIALS_ANNOTATION} must list "${site}" (or "*")`,
      );
    }
    return Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  }

  async #currentVersion(site: string): Promise<string | null> {
    try {
      return (await this.#d.storage.getSite(site)).version;
    } catch (err) {
      if (err instanceof StorageRequestError && err.code === 'SiteNotFound') return null;
      throw err;
    }
  }

  async #patchStatus(site: PagewrightSite, status: Record<string, unknown>): Promise<void> {
    const stored = await this.#d.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: SITE_PLURAL,
        namespace: site.metadata.namespace,
        name: site.metadata.name,
        body: { status },
      },
      MERGE_PATCH,
    );
    this.#d.stored?.(stored);
  }
}

function need(data: Record<string, string>, key: string, secret: string): string {
  const v = data[key];
  if (!v) throw new GitError('TargetNotAllowed', `Secret ${secret} has no key ${key}`);
  return v;
}
