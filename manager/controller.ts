/**
 * Wires the operator together: informers feed a typed cache and enqueue job keys; workers take
 * keys from the de-duplicating queue and reconcile them; with leader election only the Lease
 * holder runs workers (every replica keeps its cache warm and serves callbacks).
 */
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type V1Pod,
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
import { LeaderElector } from './leader.js';
import { ManagerMetrics } from './metrics.js';
import { Reconciler } from './reconciler.js';
import { GROUP, LABEL_JOB, PLURAL, VERSION, isActive, jobKey } from '../common/job-resource.js';
import { JobGoneError, StatusWriter } from './status.js';
import { WorkQueue } from './work-queue.js';
import { GatewayCredentials } from '../common/gateway-credential.js';
import { SignedAttemptCredentials } from './attempt-credentials.js';
import { KubePodControl } from './pod-control.js';
import { StoragePublisher } from './publisher.js';
import { HttpRunnerClient } from './runner-client.js';

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

export class Controller {
  readonly cache: JobCache;
  readonly queue = new WorkQueue();
  readonly metrics: ManagerMetrics;
  readonly status: StatusWriter;
  readonly #d: ControllerDeps;
  readonly #jobs: ResilientInformer<RawObject & { apiVersion?: string; kind?: string }>;
  readonly #pods: ResilientInformer<V1Pod>;
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
      publisher: new StoragePublisher(d.storage),
      credentials: new SignedAttemptCredentials(config, d.tokens, new GatewayCredentials(config.gatewaySecret)),
      admitter: this.#admitter,
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
    return this.#jobs.synced && this.#pods.synced;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  async start(): Promise<void> {
    await Promise.all([this.#jobs.start(), this.#pods.start()]);
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
    await Promise.all([this.#jobs.stop(), this.#pods.stop()]);
  }

  #wireInformers(): void {
    const onJob = (raw: RawObject) => {
      const put = this.cache.putJob(raw);
      if (!put) return;
      // a job that stops running frees a slot (and maybe its site) for the best waiting ones
      if (put.previous && isActive(put.previous) && !isActive(put.job)) this.#admitter.slotFreed();
      this.queue.add(jobKey(put.job));
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
  }

  #enqueueAll(): void {
    for (const key of this.cache.keys()) this.queue.add(key);
  }

  #startLeading(): void {
    if (this.#leading || this.#stopping) return;
    this.#leading = true;
    this.#enqueueAll();
    this.#workers = Array.from({ length: this.#d.config.workers }, () => this.#work());
  }

  #stopLeading(): void {
    if (!this.#leading) return;
    this.#leading = false;
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
        const result = await this.#reconciler.reconcile(key);
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
