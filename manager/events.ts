/**
 * Kubernetes Events on a job's transitions (`kubectl describe pwj` shows them). Best effort: an
 * Event that cannot be written is logged, never allowed to fail a reconcile.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../common/logger.js';
import { API_VERSION, KIND, type PagewrightJob } from '../common/job-resource.js';

const EVENT_SOURCE = 'pagewright-manager';

export class EventRecorder {
  readonly #core: CoreV1Api;
  readonly #log: Logger;
  readonly #instance: string;

  constructor(core: CoreV1Api, logger: Logger, instance: string) {
    this.#core = core;
    this.#log = logger;
    this.#instance = instance;
  }

  normal(job: PagewrightJob, reason: string, message: string): void {
    this.#record(job, 'Normal', reason, message);
  }

  warning(job: PagewrightJob, reason: string, message: string): void {
    this.#record(job, 'Warning', reason, message);
  }

  #record(job: PagewrightJob, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const now = new Date();
    const { name, namespace, uid } = job.metadata;
    this.#core
      .createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${name}.`, namespace },
          involvedObject: { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion: job.metadata.resourceVersion },
          type,
          reason,
          message: message.slice(0, 1024),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: EVENT_SOURCE },
          reportingComponent: EVENT_SOURCE,
          reportingInstance: this.#instance,
        },
      })
      .catch((err: unknown) => this.#log.warn('could not record event', { job: `${namespace}/${name}`, reason, error: String(err) }));
  }
}
