/** The manager's finalizer on PagewrightJobs, and deleting a job (TTL). */
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { FINALIZER, GROUP, PLURAL, PagewrightJob, VERSION } from '../common/job-resource.js';
import { apiCode } from './status.js';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class FinalizerPatcher {
  readonly name = FINALIZER;
  readonly #api: CustomObjectsApi;

  constructor(api: CustomObjectsApi) {
    this.#api = api;
  }

  /** Returns the patched job (null if it is gone). */
  async add(job: PagewrightJob): Promise<PagewrightJob | null> {
    const patched = await this.#set(job, [...(job.metadata.finalizers ?? []), FINALIZER]);
    return patched ? PagewrightJob.parse(patched) : null;
  }

  async remove(job: PagewrightJob): Promise<void> {
    await this.#set(
      job,
      (job.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
    );
  }

  async deleteJob(job: PagewrightJob): Promise<void> {
    try {
      await this.#api.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: job.metadata.namespace,
        name: job.metadata.name,
        body: { preconditions: { uid: job.metadata.uid } },
      });
    } catch (err) {
      if (apiCode(err) !== 404 && apiCode(err) !== 409) throw err;
    }
  }

  /** A merge patch of the list guarded by resourceVersion: a concurrent change is a 409, retried by the queue. */
  async #set(job: PagewrightJob, finalizers: string[]): Promise<unknown> {
    try {
      return await this.#api.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: job.metadata.namespace,
          name: job.metadata.name,
          body: { metadata: { finalizers, resourceVersion: job.metadata.resourceVersion } },
        },
        MERGE_PATCH,
      );
    } catch (err) {
      if (apiCode(err) !== 404) throw err;
      return null;
    }
  }
}
