/**
 * How an attempt, or a job, ends: the attempt's writes are sealed in storage and its Secret
 * deleted, then the transition is written, and only when this call wrote it is it counted,
 * announced (an Event) and logged, and the slot freed. Retries of infrastructure failures go
 * back to Queued with their backoff. A finished job is deleted once its TTL has passed.
 */
import { type FailureReason, isInfrastructureFailure } from '../common/errors.js';
import { type PagewrightJob, jobKey, timestamp } from '../common/job-resource.js';
import type { Logger } from '../common/logger.js';
import type { Admitter } from './admitter.js';
import type { ManagerConfig } from './config.js';
import type { EventRecorder } from './events.js';
import type { FinalizerPatcher } from './finalizer.js';
import type { ManagerMetrics } from './metrics.js';
import type { PodControl } from './pod-control.js';
import type { Publisher } from './publisher.js';
import { DONE, type ReconcileResult, requeueAfter } from './reconcile-result.js';
import type { StatusChange, StatusUpdate, StatusWriter } from './status.js';
import * as t from './transitions.js';

export interface OutcomeDeps {
  config: Pick<ManagerConfig, 'retryBaseSeconds' | 'retryMaxSeconds'>;
  status: StatusWriter;
  events: EventRecorder;
  metrics: ManagerMetrics;
  logger: Logger;
  admitter: Pick<Admitter, 'slotFreed'>;
  pods: PodControl;
  publisher: Publisher;
  finalizers: Pick<FinalizerPatcher, 'deleteJob'>;
}

export class Outcomes {
  constructor(private readonly d: OutcomeDeps) {}

  write(job: PagewrightJob, change: StatusChange): Promise<StatusUpdate> {
    return this.d.status.update(job, change);
  }

  /** The job as stored now (a GET), for a side effect the cache's copy must not decide alone. */
  stored(job: PagewrightJob): Promise<PagewrightJob> {
    return this.d.status.get(job.metadata.namespace, job.metadata.name);
  }

  /** The attempt is over: its writes are sealed and its credentials deleted. */
  async endAttempt(job: PagewrightJob, attempt: number): Promise<void> {
    await this.d.publisher.seal(job, attempt);
    await this.d.pods.deleteSecret(job, attempt);
  }

  /** An attempt failed: another one after its backoff if the infrastructure failed and retries remain, else the job fails. */
  async attemptFailed(job: PagewrightJob, attempt: number, reason: FailureReason, message: string): Promise<ReconcileResult> {
    await this.endAttempt(job, attempt);
    if (!isInfrastructureFailure(reason) || attempt > job.spec.retries) return this.end(job, t.failed(attempt, reason, message), 'Failed');
    const delay = t.retryDelayMs(attempt, this.d.config.retryBaseSeconds, this.d.config.retryMaxSeconds);
    const { job: stored, written } = await this.write(job, t.retrying(attempt, reason, message, delay));
    if (!written || stored.status.phase !== 'Queued') return DONE;
    this.d.metrics.transitions.inc({ phase: 'Queued', reason });
    this.d.events.warning(
      stored,
      'Retrying',
      `attempt ${attempt} failed (${reason}): ${message}; attempt ${attempt + 1} in ${Math.round(delay / 1000)} s`,
    );
    this.d.admitter.slotFreed();
    return requeueAfter(delay);
  }

  /**
   * The job ends. Its credentials go before the terminal phase is written, so a finished job
   * never needs another API call: a restarted manager's pass over 10,000 finished jobs makes none.
   */
  async end(job: PagewrightJob, change: StatusChange, phase: 'Succeeded' | 'Failed' | 'Cancelled'): Promise<ReconcileResult> {
    if ((job.status.attempt ?? 0) > 0) await this.endAttempt(job, job.status.attempt!);
    const { job: stored, written } = await this.write(job, change);
    if (!written || stored.status.phase !== phase) return DONE;
    const s = stored.status;
    this.d.metrics.transitions.inc({ phase, reason: s.reason ?? phase });
    if (s.startTime && s.completionTime)
      this.d.metrics.jobDuration.observe({ phase }, (timestamp(s.completionTime) - timestamp(s.startTime)) / 1000);
    for (const [p, ms] of Object.entries(s.phaseDurationsMs ?? {})) this.d.metrics.runnerPhaseDuration.observe({ phase: p }, ms / 1000);
    const what = phase === 'Succeeded' ? `${s.filesChanged ?? 0} file(s) changed: ${s.summary ?? ''}` : `${s.reason}: ${s.message ?? ''}`;
    if (phase === 'Succeeded') this.d.events.normal(stored, phase, what);
    else this.d.events.warning(stored, phase, what);
    this.d.logger.info('job finished', { job: jobKey(stored), phase, reason: s.reason, attempt: s.attempt, files_changed: s.filesChanged });
    this.d.admitter.slotFreed();
    return this.finished(stored);
  }

  /** A finished job: deleted once its TTL has passed. */
  async finished(job: PagewrightJob): Promise<ReconcileResult> {
    this.d.pods.forget(job);
    const ttl = job.spec.ttlSecondsAfterFinished;
    if (ttl === undefined || !job.status.completionTime) return DONE;
    const due = timestamp(job.status.completionTime) + ttl * 1000 - Date.now();
    if (due > 0) return requeueAfter(due);
    this.d.logger.info('deleting finished job after its TTL', { job: jobKey(job), ttl_seconds: ttl });
    await this.d.finalizers.deleteJob(job);
    return DONE;
  }
}
