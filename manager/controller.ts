/**
 * Wires the operator together: informers feed typed caches and enqueue keys (a job's
 * namespace/name, a site's `site:namespace/name`); workers take keys from the de-duplicating
 * queue and reconcile them (jobs: reconciler.ts; sites: site-controller.ts); with leader
 * election only the Lease holder runs workers and webhook delivery (every replica keeps its
 * caches warm and serves callbacks).
 */
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  PatchStrategy,
  type V1Pod,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import type { StorageClient } from '../common/storage-client.js';
import type { JobTokens } from '../common/tokens.js';
import { Admitter } from './admitter.js';
import type { ManagerConfig } from './config.js';
import { EventRecorder } from './events.js';
import { FinalizerPatcher } from './finalizer.js';
import { ResilientInformer, listInPages } from '../common/informer.js';
import { JobCache } from './job-cache.js';
import { runnerCheckSettings, runnerPathRules } from '../common/site-resource.js';
import { siteNetworkPolicy, gitClientSettings } from './sites/config.js';
import { GitClient } from './sites/git-client.js';
import { SiteSync } from './sites/site-sync.js';
import { LeaderElector } from './leader.js';
import { ManagerMetrics } from './metrics.js';
import { Reconciler } from './reconciler.js';
import { GROUP, LABEL_JOB, PLURAL, VERSION, isActive, isTerminal, jobKey } from '../common/job-resource.js';
import { JobGoneError, StatusWriter } from './status.js';
import { WorkQueue } from './work-queue.js';
import { GatewayCredentials } from '../common/gateway-credential.js';
import { SignedAttemptCredentials } from './attempt-credentials.js';
import { KubePodControl } from './pod-control.js';
import { CheckedPublisher, StoragePublisher } from './publisher.js';
import { HttpRunnerClient } from './runner-client.js';
import { SITE_KEY_PREFIX, SiteCache, SiteController } from './site-controller.js';
import { SITE_PLURAL } from '../common/site-resource.js';
import { loadWebhookSettings } from './webhooks/config.js';
import { WebhookSender } from './webhooks/delivery.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import { jobWebhookMergePatch, siteWebhookMergePatch } from './webhooks/outbox.js';
import { WebhookSecretError } from './webhooks/signature.js';
import { UrlPolicy } from './webhooks/url-policy.js';

export interface ControllerDeps {
  config: ManagerConfig;
  kubeConfig: KubeConfig;
  storage: StorageClient;
  tokens: JobTokens;
  logger: Logger;
  identity: string;
  /** Leadership was lost: the process should exit (client-go's behaviour) to drop all state. */
  onLostLeadership?: () => void;
}

type RawObject = { metadata?: { namespace?: string; name?: string; uid?: string } };

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class Controller {
  readonly cache: JobCache;
  readonly queue = new WorkQueue();
  readonly metrics: ManagerMetrics;
  readonly status: StatusWriter;
  readonly #d: ControllerDeps;
  readonly #jobs: ResilientInformer<RawObject & { apiVersion?: string; kind?: string }>;
  readonly #pods: ResilientInformer<V1Pod>;
  readonly #siteInformer: ResilientInformer<RawObject & { apiVersion?: string; kind?: string }>;
  readonly sites: SiteCache;
  readonly #siteController: SiteController;
  /** Webhook delivery: only while leading (two leaders would both deliver). */
  #webhooks: WebhookDispatcher | null = null;
  readonly #makeWebhooks: () => WebhookDispatcher;
  readonly #reconciler: Reconciler;
  readonly #admitter: Admitter;
  readonly #elector: LeaderElector | null;
  #workers: Promise<void>[] = [];
  #leading = false;
  #resync: NodeJS.Timeout | null = null;
  #stopping = false;

  constructor(d: ControllerDeps) {
    this.#d = d;
    const { config, kubeConfig, logger } = d;
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.cache = new JobCache(logger);
    this.status = new StatusWriter(custom);
    this.metrics = new ManagerMetrics({
      jobsByPhase: () => this.cache.countByPhase(),
      queueDepth: () => this.queue.length,
      isLeader: () => this.#leading,
    });
    const ns = config.watchNamespace;
    const onRestart = (informer: string) => (cause: 'error' | 'watchdog') => this.metrics.watchRestarts.inc({ informer, cause });

    this.#jobs = new ResilientInformer({
      name: 'pagewrightjobs',
      kubeConfig,
      logger,
      cacheIdentityOnly: true,
      path: ns ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}` : `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      list: () =>
        listInPages(
          async (page) =>
            (ns
              ? await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, ...page })
              : await custom.listClusterCustomObject({
                  group: GROUP,
                  version: VERSION,
                  plural: PLURAL,
                  ...page,
                })) as KubernetesListObject<RawObject>,
        ),
      onRestart: onRestart('pagewrightjobs'),
    });
    this.#pods = new ResilientInformer<V1Pod>({
      name: 'pods',
      kubeConfig,
      logger,
      path: ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods',
      labelSelector: LABEL_JOB,
      list: () =>
        listInPages((page) =>
          ns
            ? core.listNamespacedPod({ namespace: ns, labelSelector: LABEL_JOB, ...page })
            : core.listPodForAllNamespaces({ labelSelector: LABEL_JOB, ...page }),
        ),
      onRestart: onRestart('pods'),
    });

    this.sites = new SiteCache(logger);
    this.#siteInformer = new ResilientInformer({
      name: 'pagewrightsites',
      kubeConfig,
      logger,
      cacheIdentityOnly: true,
      path: ns ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${SITE_PLURAL}` : `/apis/${GROUP}/${VERSION}/${SITE_PLURAL}`,
      list: () =>
        listInPages(
          async (page) =>
            (ns
              ? await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SITE_PLURAL, ...page })
              : await custom.listClusterCustomObject({
                  group: GROUP,
                  version: VERSION,
                  plural: SITE_PLURAL,
                  ...page,
                })) as KubernetesListObject<RawObject>,
        ),
      onRestart: onRestart('pagewrightsites'),
    });
    const sitePolicy = new UrlPolicy(siteNetworkPolicy(config));
    const siteSync = new SiteSync({
      custom,
      core,
      storage: d.storage,
      git: new GitClient({ policy: sitePolicy, ...gitClientSettings(config) }),
      policy: sitePolicy,
      scratchDir: config.siteScratchDir,
      retry: { baseBackoffMs: config.siteExportBackoffSeconds * 1000 },
      stored: (raw) => this.sites.put(raw),
      logger,
    });
    this.#siteController = new SiteController({
      custom,
      core,
      sync: siteSync,
      webhookKeyRoot: config.tokenSecret,
      storage: d.storage,
      sites: this.sites,
      jobsOf: (namespace, siteId) => this.cache.jobsOfSite(namespace, siteId),
      webhooks: () => this.#webhooks,
      logger,
    });
    const webhookSettings = loadWebhookSettings(config);
    this.#makeWebhooks = () =>
      new WebhookDispatcher({
        sender: new WebhookSender({
          policy: new UrlPolicy(webhookSettings.network),
          timeoutMs: webhookSettings.timeoutMs,
          extraCa: webhookSettings.extraCa,
          logger,
        }),
        writer: {
          writeSite: async (site, status) => {
            await custom.patchNamespacedCustomObjectStatus(
              {
                group: GROUP,
                version: VERSION,
                plural: SITE_PLURAL,
                namespace: site.namespace,
                name: site.name,
                body: siteWebhookMergePatch(status),
              },
              MERGE_PATCH,
            );
          },
          writeJob: async (job, status) => {
            await custom.patchNamespacedCustomObjectStatus(
              {
                group: GROUP,
                version: VERSION,
                plural: PLURAL,
                namespace: job.namespace,
                name: job.name,
                body: jobWebhookMergePatch(status),
              },
              MERGE_PATCH,
            );
          },
        },
        // derived, as the site's Secret holds it (site-controller.ts): the manager reads no Secret
        signingKey: async (namespace, ref) => {
          const site = this.sites.get(namespace, ref.name.replace(/-webhook$/, ''));
          if (!site) throw new WebhookSecretError('SecretNotFound', `no PagewrightSite for the webhook Secret ${ref.name}`);
          return this.#siteController.signingKey(site.metadata);
        },
        retry: webhookSettings.retry,
        logger,
      });

    this.#admitter = new Admitter({
      maxConcurrent: config.maxConcurrentJobs,
      cache: this.cache,
      synced: () => this.#jobs.synced && this.#pods.synced,
      enqueue: (key) => this.queue.add(key),
    });
    this.#reconciler = new Reconciler({
      config,
      cache: this.cache,
      status: this.status,
      finalizers: new FinalizerPatcher(custom),
      pods: new KubePodControl(core, config, (uid) => this.cache.podsOf(uid)),
      runner: new HttpRunnerClient(config.runnerPort, logger),
      publisher: new CheckedPublisher(
        new StoragePublisher(d.storage),
        (job) => this.sites.get(job.metadata.namespace, job.spec.siteId)?.spec.checks?.publishAnyway === true,
      ),
      credentials: new SignedAttemptCredentials(config, d.tokens, new GatewayCredentials(config.gatewaySecret)),
      admitter: this.#admitter,
      sites: this.#siteController,
      sources: {
        prepare: async (job) => {
          const site = this.sites.get(job.metadata.namespace, job.spec.siteId);
          if (!site) return { ok: true };
          const imported = await siteSync.importSource(site);
          if (!imported.ok) return imported;
          return {
            ok: true,
            ...(site.spec.paths ? { pathRules: runnerPathRules(site.spec.paths) } : {}),
            ...(site.spec.checks ? { checks: runnerCheckSettings(site.spec.checks) } : {}),
          };
        },
      },
      events: new EventRecorder(core, logger, d.identity),
      metrics: this.metrics,
      logger,
    });
    this.#elector = config.leaderElection
      ? new LeaderElector({
          api: kubeConfig.makeApiClient(CoordinationV1Api),
          namespace: config.leaseNamespace ?? config.watchNamespace ?? config.podNamespace ?? 'default',
          name: config.leaseName,
          identity: d.identity,
          // whole milliseconds: AbortSignal.timeout takes no fraction (the default deadline is 2/3 of the duration)
          leaseDurationMs: Math.round(config.leaseDurationSeconds * 1000),
          renewDeadlineMs: Math.round(renewDeadlineSeconds(config) * 1000),
          renewMs: Math.round(config.leaseRenewSeconds * 1000),
          logger,
          onStartedLeading: () => this.#startLeading(),
          onStoppedLeading: () => this.#stopLeading(),
        })
      : null;
    this.#wireInformers();
  }

  get synced(): boolean {
    return this.#jobs.synced && this.#pods.synced && this.#siteInformer.synced;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  async start(): Promise<void> {
    await Promise.all([this.#jobs.start(), this.#pods.start(), this.#siteInformer.start()]);
    this.#d.logger.info('caches synced', { jobs: this.cache.size, namespace: this.#d.config.watchNamespace ?? '(all)' });
    this.#resync = setInterval(() => this.#enqueueAll(), this.#d.config.resyncSeconds * 1000);
    this.#resync.unref();
    if (this.#elector) this.#elector.start();
    else this.#startLeading();
  }

  /** Graceful: no new work, in-flight reconciles finish, the Lease is released, watches stop. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#resync) clearInterval(this.#resync);
    await this.queue.shutDown();
    await Promise.all(this.#workers);
    await this.#elector?.stop();
    await this.#closeWebhooks();
    await Promise.all([this.#jobs.stop(), this.#pods.stop(), this.#siteInformer.stop()]);
  }

  #wireInformers(): void {
    const onJob = (raw: RawObject) => {
      const put = this.cache.putJob(raw);
      if (!put) return;
      // a job that stops running frees a slot (and maybe its site) for the best waiting ones
      if (put.previous && isActive(put.previous) && !isActive(put.job)) this.#admitter.slotFreed();
      this.queue.add(jobKey(put.job));
      // an ended (or published) job is news for its site: its status and its webhook
      if (
        isTerminal(put.job) &&
        (!put.previous || !isTerminal(put.previous) || put.previous.status.publishedVersion !== put.job.status.publishedVersion)
      )
        this.queue.add(`${SITE_KEY_PREFIX}${put.job.metadata.namespace}/${put.job.spec.siteId}`);
    };
    this.#jobs.on('add', onJob);
    this.#jobs.on('update', onJob);
    this.#jobs.on('delete', (raw) => {
      const gone = this.cache.deleteJob(raw);
      if (gone && isActive(gone)) this.#admitter.slotFreed();
    });
    const onPod = (uid: string | undefined) => {
      const key = uid && this.cache.keyOfUid(uid);
      if (key) this.queue.add(key);
    };
    this.#pods.on('add', (pod) => onPod(this.cache.putPod(pod)));
    this.#pods.on('update', (pod) => onPod(this.cache.putPod(pod)));
    this.#pods.on('delete', (pod) => onPod(this.cache.deletePod(pod)));
    const onSite = (raw: RawObject) => {
      const site = this.sites.put(raw);
      if (site) this.queue.add(`${SITE_KEY_PREFIX}${site.metadata.namespace}/${site.metadata.name}`);
    };
    this.#siteInformer.on('add', onSite);
    this.#siteInformer.on('update', onSite);
    this.#siteInformer.on('delete', (raw) => {
      const gone = this.sites.delete(raw);
      if (gone) this.#webhooks?.forget({ namespace: gone.metadata.namespace, name: gone.metadata.name });
    });
  }

  #enqueueAll(): void {
    for (const key of this.cache.keys()) this.queue.add(key);
    for (const key of this.sites.keys()) this.queue.add(`${SITE_KEY_PREFIX}${key}`);
  }

  async #closeWebhooks(): Promise<void> {
    const webhooks = this.#webhooks;
    this.#webhooks = null;
    await webhooks?.close();
  }

  #startLeading(): void {
    if (this.#leading || this.#stopping) return;
    this.#leading = true;
    this.#webhooks = this.#makeWebhooks();
    this.#enqueueAll();
    this.#workers = Array.from({ length: this.#d.config.workers }, () => this.#work());
  }

  #stopLeading(): void {
    if (!this.#leading) return;
    this.#leading = false;
    void this.#closeWebhooks();
    if (!this.#stopping) this.#d.onLostLeadership?.();
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      if (!this.#leading) {
        this.queue.done(key);
        return;
      }
      const end = this.metrics.reconcileDuration.startTimer();
      try {
        const result = key.startsWith(SITE_KEY_PREFIX)
          ? await this.#siteController.reconcile(key.slice(SITE_KEY_PREFIX.length))
          : await this.#reconciler.reconcile(key);
        this.queue.forget(key);
        if (result.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
        end({ result: 'ok' });
      } catch (err) {
        if (err instanceof JobGoneError) {
          this.queue.forget(key);
          end({ result: 'gone' });
        } else {
          end({ result: 'error' });
          this.metrics.reconcileErrors.inc();
          const delay = this.queue.addRateLimited(key);
          this.#d.logger.warn('reconcile failed; will retry', { job: key, error: describe(err), retry_in_ms: delay });
        }
      } finally {
        this.queue.done(key);
      }
    }
  }
}

/** The renew deadline: as set, else two thirds of the lease duration (client-go's defaults are 10 s of 15). */
export function renewDeadlineSeconds(config: Pick<ManagerConfig, 'leaseDurationSeconds' | 'leaseRenewDeadlineSeconds'>): number {
  return config.leaseRenewDeadlineSeconds ?? (config.leaseDurationSeconds * 2) / 3;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const body = (err as { body?: unknown }).body;
    return body ? `${err.message}: ${typeof body === 'string' ? body.slice(0, 300) : JSON.stringify(body).slice(0, 300)}` : err.message;
  }
  return String(err);
}
