/**
 * Status writes through the status subresource with optimistic concurrency: each write carries
 * the resourceVersion it was computed from; on 409 the object is re-read and the change
 * recomputed from the fresh state. Changes are functions of the current status, so a write that
 * lost a race is re-decided rather than blindly repeated.
 */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { PagewrightError } from '../common/errors.js';
import { GROUP, type Condition, type JobPhase, type JobStatus, PLURAL, PagewrightJob, VERSION } from '../common/job-resource.js';

/** Returns the next status, or null to leave the object alone. */
export type StatusChange = (job: PagewrightJob) => JobStatus | null;

/** The job was deleted under a status write (the API answers it as 404 JobNotFound). */
export class JobGoneError extends PagewrightError<'JobNotFound'> {
  constructor(key: string) {
    super('JobNotFound', `job ${key} no longer exists`);
    this.name = 'JobGoneError';
  }
}

export function apiCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export interface StatusUpdate {
  job: PagewrightJob;
  written: boolean;
}

export class StatusWriter {
  readonly #api: CustomObjectsApi;

  constructor(api: CustomObjectsApi) {
    this.#api = api;
  }

  async get(namespace: string, name: string): Promise<PagewrightJob> {
    try {
      return PagewrightJob.parse(
        await this.#api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name }),
      );
    } catch (err) {
      if (apiCode(err) === 404) throw new JobGoneError(`${namespace}/${name}`);
      throw err;
    }
  }

  /**
   * Applies `change` to `job` (or to a fresh copy after a conflict) and writes it. Returns the
   * object as stored and whether this call wrote it: a caller working from a stale copy finds
   * the transition already made (the fresh copy's phase is the one it wanted, but `written` is
   * false), which must not count, log or announce it a second time.
   */
  async update(job: PagewrightJob, change: StatusChange, maxConflicts = 8): Promise<StatusUpdate> {
    let current = job;
    for (let conflicts = 0; ; conflicts++) {
      const next = change(current);
      if (next === null) return { job: current, written: false };
      const status = { ...next, observedGeneration: current.metadata.generation ?? next.observedGeneration };
      if (isDeepStrictEqual(status, current.status)) return { job: current, written: false };
      const { namespace, name } = current.metadata;
      try {
        const stored = await this.#api.replaceNamespacedCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace,
          name,
          body: {
            apiVersion: current.apiVersion,
            kind: current.kind,
            metadata: { name, namespace, resourceVersion: current.metadata.resourceVersion },
            spec: current.spec,
            status,
          },
        });
        return { job: PagewrightJob.parse(stored), written: true };
      } catch (err) {
        if (apiCode(err) === 404) throw new JobGoneError(`${namespace}/${name}`);
        if (apiCode(err) !== 409 || conflicts >= maxConflicts) throw err;
        current = await this.get(namespace, name);
      }
    }
  }
}

/** Sets (or updates) one condition, moving lastTransitionTime only when its status changes. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now: string,
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const previous = i >= 0 ? list[i] : undefined;
  const lastTransitionTime = previous && previous.status === next.status ? (previous.lastTransitionTime ?? now) : now;
  const merged: Condition = { ...next, lastTransitionTime };
  if (i >= 0) list[i] = merged;
  else list.push(merged);
  return list;
}

/**
 * The conditions for a phase: Running while Scheduled/Running; Complete or Failed when done
 * (`kubectl wait --for=condition=Complete` / `condition=Failed`); Cancelled counts as Failed.
 */
function conditionsFor(status: JobStatus, phase: JobPhase, now: string, generation: number | undefined): Condition[] {
  const reason = status.reason ?? phase;
  const message = status.message ?? '';
  const g = generation === undefined ? {} : { observedGeneration: generation };
  const active = phase === 'Scheduled' || phase === 'Running';
  let conditions = setCondition(status.conditions, { type: 'Running', status: active ? 'True' : 'False', reason: phase, ...g }, now);
  if (phase === 'Succeeded') {
    conditions = setCondition(
      conditions,
      { type: 'Complete', status: 'True', reason: 'Succeeded', message: status.summary ?? '', ...g },
      now,
    );
    if (status.publishedVersion) conditions = setCondition(conditions, publishedCondition(status.publishedVersion, g), now);
  }
  if (phase === 'Failed' || phase === 'Cancelled') {
    conditions = setCondition(conditions, { type: 'Failed', status: 'True', reason, message, ...g }, now);
  }
  return conditions;
}

/** Published: the job's output is (or was made) the site's current version. */
function publishedCondition(version: string, g: { observedGeneration?: number }): Omit<Condition, 'lastTransitionTime'> {
  return {
    type: 'Published',
    status: 'True',
    reason: 'Published',
    message: `version ${version} was made the site's current version`,
    ...g,
  };
}

/** A status moved to `phase`, with its conditions. */
export function withPhase(
  status: JobStatus,
  phase: JobPhase,
  fields: Partial<JobStatus>,
  generation: number | undefined,
  now = new Date(),
): JobStatus {
  const iso = now.toISOString();
  const next: JobStatus = { ...status, ...fields, phase };
  if ((phase === 'Succeeded' || phase === 'Failed' || phase === 'Cancelled') && !next.completionTime) next.completionTime = iso;
  next.conditions = conditionsFor(next, phase, iso, generation);
  return next;
}
