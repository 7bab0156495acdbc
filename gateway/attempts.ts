/**
 * Which attempts are still live, from a watch on the PagewrightJobs the gateway serves: a
 * credential is refused as soon as its attempt has ended (the runner reported, the job moved to
 * another attempt, finished, was cancelled or deleted), whatever its expiry says. The watch is
 * the manager's own ResilientInformer; the verdict is pure (attemptVerdict) and unit-tested.
 */
import { CustomObjectsApi, type KubeConfig, type KubernetesListObject } from '@kubernetes/client-node';
import type { GatewayClaims } from '../common/gateway-credential.js';
import { ResilientInformer } from '../common/informer.js';
import { GROUP, PLURAL, PagewrightJob, VERSION, isTerminal } from '../common/job-resource.js';
import type { Logger } from '../common/logger.js';
import { NO_USAGE, type Usage } from '../common/schemas.js';

export type AttemptVerdict = { live: true } | { live: false; message: string };

/** Whether the attempt a credential names may still call the model. */
export function attemptVerdict(job: PagewrightJob | undefined, claims: Pick<GatewayClaims, 'attempt' | 'name'>): AttemptVerdict {
  const ended = (why: string): AttemptVerdict => ({
    live: false,
    message: `attempt ${claims.attempt} of job ${claims.name} has ended: ${why}`,
  });
  if (!job) return ended('the job no longer exists');
  if (job.metadata.deletionTimestamp) return ended('the job is being deleted');
  if (isTerminal(job)) return ended(`the job is ${job.status.phase}`);
  if (job.spec.cancel) return ended('the job was cancelled');
  if (job.status.attempt !== claims.attempt) return ended(`the job is at attempt ${job.status.attempt ?? 0}`);
  if (job.status.phase !== 'Scheduled' && job.status.phase !== 'Running') return ended(`the job is ${job.status.phase ?? 'not started'}`);
  if (job.status.reportedAttempt === claims.attempt) return ended('its runner reported the result');
  return { live: true };
}

/** What the informer hands over: raw objects, parsed here (as the manager's JobCache does). */
type RawJob = { apiVersion?: string; kind?: string; metadata?: { namespace?: string; name?: string; uid?: string } };

export class LiveAttempts {
  readonly #jobs = new Map<string, PagewrightJob>();
  readonly #informer: ResilientInformer<RawJob>;
  #synced = false;

  /** `onJobEnded`: a job finished or is gone, so nothing of it is live any more (the ledger forgets it). */
  constructor(kubeConfig: KubeConfig, namespace: string | undefined, logger: Logger, onJobEnded: (jobId: string) => void = () => {}) {
    const api = kubeConfig.makeApiClient(CustomObjectsApi);
    const path = namespace ? `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}` : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
    const list = async () =>
      (namespace
        ? await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })
        : await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as KubernetesListObject<RawJob>;
    this.#informer = new ResilientInformer<RawJob>({ name: 'jobs', kubeConfig, path, list, logger, cacheIdentityOnly: true });
    const keep = (obj: RawJob) => {
      const parsed = PagewrightJob.safeParse(obj);
      if (!parsed.success) return;
      this.#jobs.set(parsed.data.metadata.uid, parsed.data);
      if (isTerminal(parsed.data) || parsed.data.metadata.deletionTimestamp) onJobEnded(parsed.data.metadata.uid);
    };
    this.#informer.on('add', keep);
    this.#informer.on('update', keep);
    this.#informer.on('delete', (obj) => {
      const uid = obj.metadata?.uid ?? '';
      this.#jobs.delete(uid);
      onJobEnded(uid);
    });
  }

  async start(): Promise<void> {
    await this.#informer.start();
    this.#synced = true;
  }

  async stop(): Promise<void> {
    await this.#informer.stop();
  }

  get synced(): boolean {
    return this.#synced;
  }

  verdict(claims: GatewayClaims): AttemptVerdict {
    return attemptVerdict(this.#jobs.get(claims.jobId), claims);
  }

  /** What the job's status says it used (what a restarted gateway starts counting from). */
  recordedUsage(jobId: string): Usage {
    return this.#jobs.get(jobId)?.status.usage ?? NO_USAGE;
  }
}
