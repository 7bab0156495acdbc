/**
 * A job in Scheduled or Running: its attempt's pod and result, one step at a time. The pod says
 * how it goes (classify.ts); the runner's result (its callback, or its manifest in storage when
 * the callback was lost) says how it ended; the gateway's refusal, if any, says why the model
 * stopped answering. Side effects go through the collaborators; each step returns what to do next.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { FailureReason } from '../common/errors.js';
import { type PagewrightJob, jobKey } from '../common/job-resource.js';
import type { Logger } from '../common/logger.js';
import type { AttemptCredentials } from './attempt-credentials.js';
import { classifyPod } from './classify.js';
import type { EventRecorder } from './events.js';
import type { Outcomes } from './outcomes.js';
import type { PodControl } from './pod-control.js';
import { EXPECTATION_TIMEOUT_MS } from './pod-control.js';
import { type AttemptSite, podName } from './pod-spec.js';
import type { Publisher } from './publisher.js';
import { DONE, type ReconcileResult, requeueAfter } from './reconcile-result.js';
import * as t from './transitions.js';
import { type ReviewLinkSettings, reviewLinkFor } from './review-link.js';

/** How often a job waiting on what no event announces (an image pull, a kubelet's verdict) is looked at. */
export const POLL_MS = 1000;

export interface AttemptSyncDeps {
  imagePullTimeoutSeconds: number;
  /** Where an Ingress serves previews: a Succeeded job's status gets a signed review link. */
  reviewLinks: ReviewLinkSettings | null;
  pods: PodControl;
  publisher: Publisher;
  credentials: AttemptCredentials;
  outcomes: Outcomes;
  events: EventRecorder;
  /** A site's git source, imported as its current version before the attempt's pod (manager/sites/site-sync.ts). */
  sources?: { prepare(job: PagewrightJob): Promise<({ ok: true } & AttemptSite) | { ok: false; reason: FailureReason; message: string }> };
  logger: Logger;
}

export class AttemptSync {
  constructor(private readonly d: AttemptSyncDeps) {}

  async sync(job: PagewrightJob): Promise<ReconcileResult> {
    const attempt = job.status.attempt ?? 1;
    const s = job.status;
    if (s.reportedAttempt === attempt && (s.runnerPhase === 'completed' || s.runnerPhase === 'failed')) return this.#finish(job);
    const pod = this.d.pods.attemptPod(job, attempt);
    if (!pod) return this.#withoutPod(job, attempt);
    const verdict = classifyPod(pod, { now: Date.now(), imagePullTimeoutMs: this.d.imagePullTimeoutSeconds * 1000 });
    switch (verdict.state) {
      case 'pending':
        return requeueAfter(10 * POLL_MS); // image pulls are not watched as events
      case 'running':
        if (s.phase === 'Scheduled') {
          const { written } = await this.d.outcomes.write(job, t.running(attempt));
          if (written) this.d.events.normal(job, 'Started', `runner pod ${pod.metadata?.name} is running`);
        }
        return DONE;
      case 'succeeded':
        return (
          (await this.#recover(job, attempt)) ??
          this.d.outcomes.attemptFailed(
            job,
            attempt,
            'RunnerFailed',
            'the runner exited 0 without reporting a result or writing its manifest',
          )
        );
      case 'failed': {
        // a runner that failed late (after writing its manifest) still told us why
        const recovered = verdict.reason === 'DeadlineExceeded' ? null : await this.#recover(job, attempt);
        if (recovered) return recovered;
        if (verdict.reason === 'ImagePullFailed') await this.d.pods.deletePods(job, [pod]);
        return this.d.outcomes.attemptFailed(job, attempt, verdict.reason, verdict.message);
      }
    }
  }

  /**
   * Creates the pod of a Scheduled attempt, with its credentials. An attempt the model policy
   * refuses now (the allowlist or the caps changed since the job was admitted) never starts: the
   * job fails with that reason. Null when the pod was created.
   */
  async start(job: PagewrightJob, attempt: number): Promise<ReconcileResult | null> {
    const sourced = await this.d.sources?.prepare(job);
    if (sourced && !sourced.ok)
      return this.d.outcomes.attemptFailed(job, attempt, sourced.reason, `attempt ${attempt}: ${sourced.message}`);
    const issued = await this.d.credentials.issue(job, attempt);
    if (!issued.ok) return this.d.outcomes.attemptFailed(job, attempt, issued.reason, `attempt ${attempt} refused: ${issued.message}`);
    await this.d.pods.createAttempt(
      job,
      attempt,
      issued.secrets,
      sourced?.ok
        ? { ...(sourced.pathRules ? { pathRules: sourced.pathRules } : {}), ...(sourced.checks ? { checks: sourced.checks } : {}) }
        : {},
    );
    return null;
  }

  async #withoutPod(job: PagewrightJob, attempt: number): Promise<ReconcileResult> {
    // created by us a moment ago: its watch event is on its way (and will bring us back)
    if (this.d.pods.expecting(job, attempt)) return requeueAfter(EXPECTATION_TIMEOUT_MS);
    if (await this.d.pods.readPod(job, attempt)) return DONE; // the cache is behind; the pod's event will bring us back
    // stored as Scheduled, then the manager crashed before it created the pod. Or the cache is
    // behind our own write: this attempt already ended (its pod deleted, say, on ImagePullFailed)
    // and the job is Failed or retrying. Only the stored job can tell; a pod created from a stale
    // copy would run for a job that is over.
    if (job.status.phase === 'Scheduled') {
      const stored = await this.d.outcomes.stored(job);
      if (stored.status.phase !== 'Scheduled' || stored.status.attempt !== attempt) return DONE; // its watch event brings us back
      return (await this.start(stored, attempt)) ?? DONE;
    }
    return (
      (await this.#recover(job, attempt)) ??
      this.d.outcomes.attemptFailed(job, attempt, 'PodLost', `runner pod ${podName(job, attempt)} disappeared`)
    );
  }

  /** The runner's callback never arrived: its manifest in storage carries the same result. Null when it has none. */
  async #recover(job: PagewrightJob, attempt: number): Promise<ReconcileResult | null> {
    const result = await this.d.publisher.recoveredResult(job, attempt);
    if (!result) return null;
    this.d.logger.info('result recovered from the manifest in storage', { job: jobKey(job), attempt });
    const { job: stored, written } = await this.d.outcomes.write(job, t.resultReported(result));
    if (written) this.d.events.normal(stored, 'ResultRecovered', `attempt ${attempt}: result read from storage (the callback was lost)`);
    return stored.status.reportedAttempt === attempt ? this.#finish(stored) : DONE;
  }

  async #finish(job: PagewrightJob): Promise<ReconcileResult> {
    const attempt = job.status.attempt ?? 1;
    const s = job.status;
    if (s.runnerPhase === 'failed') {
      // the gateway knows why a model call was refused; the agent's own account cannot be trusted
      if (s.gatewayRefusal?.attempt === attempt)
        return this.d.outcomes.attemptFailed(job, attempt, s.gatewayRefusal.reason, s.gatewayRefusal.message);
      const reason = (s.reason as FailureReason | undefined) ?? 'Internal';
      if (reason === 'PodTerminated') return this.#podTerminated(job, attempt);
      return this.d.outcomes.attemptFailed(job, attempt, reason, s.message ?? 'the runner failed');
    }
    // nothing of this attempt may be written any more: what is published is what was reported
    await this.d.publisher.seal(job, attempt);
    const link = this.d.reviewLinks ? reviewLinkFor(job, this.d.reviewLinks, new Date()) : undefined;
    if (!job.spec.publish) return this.d.outcomes.end(job, t.succeeded(attempt, undefined, link), 'Succeeded');
    const published = await this.d.publisher.publish(job);
    if (!published.ok) return this.d.outcomes.attemptFailed(job, attempt, published.reason, published.message);
    return this.d.outcomes.end(job, t.succeeded(attempt, published.version, link), 'Succeeded');
  }

  /**
   * The runner reported that it was stopped from outside (SIGTERM): the pod says why. Deleted
   * (out of band, or a node going away) is PodLost and retried; past activeDeadlineSeconds or
   * evicted, the kubelet writes that into the pod's status, which may lag the runner's callback.
   */
  async #podTerminated(job: PagewrightJob, attempt: number): Promise<ReconcileResult> {
    const pod: V1Pod | null = this.d.pods.attemptPod(job, attempt) ?? (await this.d.pods.readPod(job, attempt));
    const name = podName(job, attempt);
    if (!pod || pod.metadata?.deletionTimestamp)
      return this.d.outcomes.attemptFailed(job, attempt, 'PodLost', `runner pod ${name} was deleted before the job finished`);
    const verdict = classifyPod(pod, { now: Date.now(), imagePullTimeoutMs: this.d.imagePullTimeoutSeconds * 1000 });
    if (verdict.state === 'failed' && verdict.reason !== 'RunnerFailed')
      return this.d.outcomes.attemptFailed(job, attempt, verdict.reason, verdict.message);
    if (verdict.state === 'failed' || verdict.state === 'succeeded')
      return this.d.outcomes.attemptFailed(job, attempt, 'PodLost', `runner pod ${name} was terminated from outside`);
    return requeueAfter(POLL_MS); // the kubelet has not written why yet
  }
}
