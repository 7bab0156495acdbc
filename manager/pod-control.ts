/**
 * The manager's hands on runner pods and their Secrets (controller-runtime's PodControl):
 * create an attempt's Secret and pod, find a job's pods, delete them. It also keeps the
 * "expectations": pods this process created that its cache does not show yet, so a reconcile
 * does not mistake a pod on its way for a lost one.
 */
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { LABEL_ATTEMPT, LABEL_JOB, type PagewrightJob } from '../common/job-resource.js';
import { type AttemptSite, type PodSpecConfig, buildPod, buildSecret, podName, secretName } from './pod-spec.js';
import { apiCode } from './status.js';

/** How long a created pod may take to show up in the cache before the API is asked directly. */
export const EXPECTATION_TIMEOUT_MS = 5000;

export interface PodControl {
  createAttempt(
    job: PagewrightJob,
    attempt: number,
    credentials: { runnerToken: string; gatewayCredential: string },
    site?: AttemptSite,
  ): Promise<void>;
  /** The attempt's pod as the cache shows it. */
  attemptPod(job: PagewrightJob, attempt: number): V1Pod | undefined;
  /** True while a pod this process created may still be on its way into the cache. */
  expecting(job: PagewrightJob, attempt: number): boolean;
  /** The pod from the API itself (null: it does not exist). */
  readPod(job: PagewrightJob, attempt: number): Promise<V1Pod | null>;
  /** The job's pods from the API itself: cancel and delete must not trust a lagging cache. */
  livePods(job: PagewrightJob): Promise<V1Pod[]>;
  deletePods(job: PagewrightJob, pods: V1Pod[]): Promise<void>;
  deleteSecret(job: PagewrightJob, attempt: number): Promise<void>;
  /** Forget the job's expectations (it is finished). */
  forget(job: PagewrightJob): void;
}

export class KubePodControl implements PodControl {
  readonly #created = new Map<string, number>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly config: PodSpecConfig,
    private readonly cachedPods: (uid: string) => V1Pod[],
  ) {}

  async createAttempt(
    job: PagewrightJob,
    attempt: number,
    credentials: { runnerToken: string; gatewayCredential: string },
    site: AttemptSite = {},
  ): Promise<void> {
    const namespace = job.metadata.namespace;
    // the kubelet retries a pod whose Secret is not there yet, so both go out at once; both are
    // idempotent (a second create is a 409), so a crash between them is repaired by a re-run
    await Promise.all([
      ignore(409, this.core.createNamespacedSecret({ namespace, body: buildSecret(job, attempt, credentials) })),
      ignore(409, this.core.createNamespacedPod({ namespace, body: buildPod(job, attempt, this.config, site) })),
    ]);
    this.#created.set(podName(job, attempt), Date.now());
  }

  attemptPod(job: PagewrightJob, attempt: number): V1Pod | undefined {
    const pod = this.cachedPods(job.metadata.uid).find((p) => p.metadata?.labels?.[LABEL_ATTEMPT] === String(attempt));
    if (pod) this.#created.delete(podName(job, attempt));
    return pod;
  }

  expecting(job: PagewrightJob, attempt: number): boolean {
    const created = this.#created.get(podName(job, attempt));
    return created !== undefined && Date.now() - created < EXPECTATION_TIMEOUT_MS;
  }

  async readPod(job: PagewrightJob, attempt: number): Promise<V1Pod | null> {
    try {
      return await this.core.readNamespacedPod({ namespace: job.metadata.namespace, name: podName(job, attempt) });
    } catch (err) {
      if (apiCode(err) === 404) return null;
      throw err;
    }
  }

  async livePods(job: PagewrightJob): Promise<V1Pod[]> {
    return (await this.core.listNamespacedPod({ namespace: job.metadata.namespace, labelSelector: `${LABEL_JOB}=${job.metadata.uid}` }))
      .items;
  }

  async deletePods(job: PagewrightJob, pods: V1Pod[]): Promise<void> {
    const namespace = job.metadata.namespace;
    await Promise.all(
      pods
        .filter((p) => !p.metadata?.deletionTimestamp)
        .map((p) => ignore(404, this.core.deleteNamespacedPod({ namespace, name: p.metadata!.name! }))),
    );
  }

  async deleteSecret(job: PagewrightJob, attempt: number): Promise<void> {
    await ignore(404, this.core.deleteNamespacedSecret({ namespace: job.metadata.namespace, name: secretName(job, attempt) }));
  }

  forget(job: PagewrightJob): void {
    for (let a = 1; a <= (job.status.attempt ?? 0); a++) this.#created.delete(podName(job, a));
  }
}

async function ignore(code: number, p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (apiCode(err) !== code) throw err;
  }
}
