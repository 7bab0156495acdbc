/**
 * The level-triggered reconcile of one PagewrightJob, as controller-runtime's Reconcile: look at
 * the resource (and, through the collaborators, its pods and its outputs in storage), take the
 * one next step towards the desired state, and return what to do next (done, or look again
 * after a while); the worker loop (controller.ts) owns the queue. It reads as a dispatch on the
 * job's state; the steps of a running attempt are in attempt-sync.ts, how attempts and jobs end in
 * outcomes.ts, and every side effect goes through a collaborator behind an interface: pods
 * (pod-control.ts), the runner (runner-client.ts), storage (publisher.ts), credentials
 * (attempt-credentials.ts), the status (status.ts), Events (events.ts). Nothing is remembered
 * between calls except what the cache has not caught up with, so a restarted manager simply
 * reconciles everything again.
 */
import type { FailureReason } from '../common/errors.js';
import { LABEL_ATTEMPT, type PagewrightJob, isTerminal, jobKey, timestamp } from '../common/job-resource.js';
import { refusalEndsAttempt } from '../common/schemas.js';
import type { Admitter } from './admitter.js';
import type { AttemptCredentials } from './attempt-credentials.js';
import { AttemptSync, type AttemptSyncDeps, POLL_MS } from './attempt-sync.js';
import type { ManagerConfig } from './config.js';
import type { EventRecorder } from './events.js';
import type { FinalizerPatcher } from './finalizer.js';
import type { Logger } from '../common/logger.js';
import type { ManagerMetrics } from './metrics.js';
import { followUpDecision } from './follow-up.js';
import { modelPolicy } from './model-policy.js';
import { Outcomes } from './outcomes.js';
import type { PodControl } from './pod-control.js';
import { podName } from './pod-spec.js';
import type { Publisher } from './publisher.js';
import { DONE, type ReconcileResult, requeueAfter } from './reconcile-result.js';
import type { RunnerClient } from './runner-client.js';
import type { StatusWriter } from './status.js';
import { reviewLinkSettings } from './review-link.js';
import * as t from './transitions.js';

/** How often a follow-up waiting for the job it follows looks again. */
const FOLLOW_UP_POLL_MS = 2000;

export interface ReconcilerDeps {
  config: ManagerConfig;
  cache: { job(key: string): PagewrightJob | undefined };
  status: StatusWriter;
  finalizers: FinalizerPatcher;
  pods: PodControl;
  runner: RunnerClient;
  publisher: Publisher;
  credentials: AttemptCredentials;
  admitter: Admitter;
  /** Whether a job's site exists (a PagewrightSite of its siteId in its namespace). */
  sites: { exists(namespace: string, name: string): Promise<boolean> };
  sources?: AttemptSyncDeps['sources'];
  events: EventRecorder;
  metrics: ManagerMetrics;
  logger: Logger;
}

export class Reconciler {
  readonly #d: ReconcilerDeps;
  readonly #outcomes: Outcomes;
  readonly #attempts: AttemptSync;

  constructor(d: ReconcilerDeps) {
    this.#d = d;
    this.#outcomes = new Outcomes(d);
    this.#attempts = new AttemptSync({
      ...d,
      imagePullTimeoutSeconds: d.config.imagePullTimeoutSeconds,
      reviewLinks: reviewLinkSettings(d.config),
      outcomes: this.#outcomes,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    let job = this.#d.cache.job(key);
    if (!job) return DONE; // deleted; its finalizer already ran
    if (job.metadata.deletionTimestamp) return this.#finalize(job);
    if (!job.metadata.finalizers?.includes(this.#d.finalizers.name)) {
      // go on with the patched object rather than wait for its watch event
      const patched = await this.#d.finalizers.add(job);
      if (!patched) return DONE;
      job = patched;
    }
    if (job.status.phase === 'Succeeded' && job.spec.publish && !job.status.publishedVersion && !t.approvalRefused(job))
      return this.#approve(job);
    if (isTerminal(job)) return this.#outcomes.finished(job);
    if (job.spec.cancel) return this.#cancel(job);
    const refusal = job.status.gatewayRefusal;
    if (refusal && refusal.attempt === job.status.attempt && refusalEndsAttempt(refusal.reason)) return this.#refused(job, refusal);
    switch (job.status.phase) {
      case undefined:
      case 'Queued':
        return this.#admit(job);
      case 'Scheduled':
      case 'Running':
        return this.#attempts.sync(job);
      default:
        return DONE;
    }
  }

  /**
   * A waiting job: refused by the model policy, waiting out a retry's backoff, or admitted when a
   * slot and its site are free. The policy is asked before every attempt, a retry's too: the
   * allowlist or the caps may have changed since the job was first admitted (a manager restarted
   * on new config), and a retry the gateway would refuse must fail now, not wait for a slot.
   */
  async #admit(job: PagewrightJob): Promise<ReconcileResult> {
    if ((job.status.attempt ?? 0) === 0 && !(await this.#d.sites.exists(job.metadata.namespace, job.spec.siteId))) {
      const message = `no PagewrightSite ${job.spec.siteId} in namespace ${job.metadata.namespace}: pagewright sites push ${job.spec.siteId} DIR creates one`;
      return this.#outcomes.end(job, t.refused('SiteNotFound', message), 'Failed');
    }
    const followUp = followUpDecision(
      job,
      job.spec.followUpOf ? this.#d.cache.job(`${job.metadata.namespace}/${job.spec.followUpOf}`) : undefined,
      this.#d.config.codexModel,
    );
    if (followUp.state === 'refused') return this.#outcomes.end(job, t.refused('FollowUpUnavailable', followUp.message), 'Failed');
    if (followUp.state === 'wait') {
      if (job.status.phase === undefined) await this.#outcomes.write(job, t.queued(followUp.message));
      // the job it follows ends in its own reconcile: look again soon (and at every resync)
      return requeueAfter(FOLLOW_UP_POLL_MS);
    }
    const policy = modelPolicy(job, this.#d.config);
    if (!policy.allowed) {
      const ended = job.status.attempt ?? 0;
      if (ended === 0) return this.#outcomes.end(job, t.refused(policy.reason, policy.message), 'Failed');
      return this.#outcomes.end(job, t.failed(ended, policy.reason, `attempt ${ended + 1} refused: ${policy.message}`), 'Failed');
    }
    const backoff = job.status.nextAttemptTime ? timestamp(job.status.nextAttemptTime) - Date.now() : 0;
    if (backoff > 0) return requeueAfter(backoff);
    const attempt = (job.status.attempt ?? 0) + 1;
    let written = false;
    const admitted = await this.#d.admitter.admit(job, attempt, async () => {
      const source = followUp.state === 'ready' ? followUp.source : undefined;
      const update = await this.#outcomes.write(job, t.scheduled(attempt, podName(job, attempt), new Date(), source));
      written = update.written;
      // scheduled by an earlier pass from a fresher copy: still ours to see through (creating
      // its pod again is a no-op)
      return update.job.status.phase === 'Scheduled' && update.job.status.attempt === attempt ? update.job : null;
    });
    if (admitted) {
      // refused after all (the stored copy is fresher than the one the policy was asked about)
      const refused = await this.#attempts.start(admitted, attempt);
      if (refused) return refused;
      // after the pod: the Event is not on the path from admission to a running pod
      if (written) this.#d.events.normal(admitted, 'Scheduled', `attempt ${attempt}: created runner pod ${podName(admitted, attempt)}`);
    } else if (job.status.phase === undefined) {
      await this.#outcomes.write(job, t.queued('waiting for a free slot or for another job of this site'));
    }
    return DONE;
  }

  /** spec.cancel: kill the runner, delete its pods, and only then say Cancelled. */
  async #cancel(job: PagewrightJob): Promise<ReconcileResult> {
    if (await this.#stopPods(job)) return requeueAfter(POLL_MS);
    return this.#outcomes.end(job, t.cancelled('cancelled by spec.cancel'), 'Cancelled');
  }

  /**
   * spec.publish set after the job succeeded (`pagewright approve`): its output becomes the
   * site's current version with the same compare-and-swap on its base and the same checks as a
   * publish at the end of the job; the job stays Succeeded, the Published condition says how it went.
   */
  async #approve(job: PagewrightJob): Promise<ReconcileResult> {
    const published = await this.#d.publisher.publish(job);
    const { job: stored, written } = await this.#outcomes.write(job, t.approved(published.ok ? { version: published.version } : published));
    if (!written) return DONE;
    if (published.ok) this.#d.events.normal(stored, 'Published', `approved: version ${published.version} is the site's current version`);
    else this.#d.events.warning(stored, 'PublishRefused', `approval refused (${published.reason}): ${published.message}`);
    return this.#outcomes.finished(stored);
  }

  /** The agent asked the gateway for what no job needs: its runner is killed, its pods deleted, and the job fails with that reason. */
  async #refused(job: PagewrightJob, refusal: { attempt: number; reason: FailureReason; message: string }): Promise<ReconcileResult> {
    if (await this.#stopPods(job)) return requeueAfter(POLL_MS);
    return this.#outcomes.attemptFailed(job, refusal.attempt, refusal.reason, refusal.message);
  }

  /** A job being deleted: its pods, Secrets and outputs go, then its finalizer. */
  async #finalize(job: PagewrightJob): Promise<ReconcileResult> {
    if (!job.metadata.finalizers?.includes(this.#d.finalizers.name)) return DONE;
    if (await this.#stopPods(job)) return requeueAfter(POLL_MS);
    for (let a = 1; a <= (job.status.attempt ?? 0); a++) await this.#d.pods.deleteSecret(job, a);
    // its outputs go too (a published one stays: the site's history holds it)
    await this.#d.publisher.deleteOutputs(job);
    await this.#d.finalizers.remove(job);
    if (!isTerminal(job)) this.#d.admitter.slotFreed();
    this.#d.logger.debug('job finalized', { job: jobKey(job) });
    return DONE;
  }

  /** Kills and deletes every pod of the job; true while some still exist. */
  async #stopPods(job: PagewrightJob): Promise<boolean> {
    const pods = await this.#d.pods.livePods(job);
    if (pods.length === 0) return false;
    await Promise.all(
      pods
        .filter((p) => !p.metadata?.deletionTimestamp)
        .map(async (p) => {
          const attempt = Number(p.metadata?.labels?.[LABEL_ATTEMPT]);
          if (attempt > 0) await this.#d.runner.kill(p, await this.#d.credentials.runnerToken(job, attempt));
        }),
    );
    await this.#d.pods.deletePods(job, pods);
    return true;
  }
}
