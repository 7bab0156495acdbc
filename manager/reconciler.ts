/**
 * The level-triggered reconcile of one PagewrightJob: look at the resource, its pods and (when
 * the runner could not call back) its manifest in storage, and take the one next step towards
 * the desired state. Nothing is remembered between calls except admissions the cache has not
 * caught up with, so a restarted manager simply reconciles everything again.
 */
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { request } from 'undici';
import { type FailureReason, isInfrastructureFailure } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { JobManifest } from '../common/schemas.js';
import type { StorageClient } from '../common/storage-client.js';
import { StorageRequestError } from '../common/storage-client.js';
import type { GatewayCredentials } from '../common/gateway-credential.js';
import type { JobTokens } from '../common/tokens.js';
import type { Admitter } from './admitter.js';
import { classifyPod } from './classify.js';
import type { ManagerConfig } from './config.js';
import type { EventRecorder } from './events.js';
import { LABEL_ATTEMPT, type PagewrightJob, isTerminal, jobKey, timestamp } from '../common/job-resource.js';
import type { ManagerMetrics } from './metrics.js';
import { modelPolicy } from './model-policy.js';
import { buildPod, buildSecret, podName, secretName } from './pod-spec.js';
import { type StatusChange, type StatusUpdate, type StatusWriter, apiCode } from './status.js';
import * as t from './transitions.js';
import { FinalizerPatcher } from './finalizer.js';

export interface JobCacheView {
  job(key: string): PagewrightJob | undefined;
  podsOf(uid: string): V1Pod[];
}

export interface ReconcilerDeps {
  config: ManagerConfig;
  core: CoreV1Api;
  status: StatusWriter;
  finalizers: FinalizerPatcher;
  storage: StorageClient;
  tokens: JobTokens;
  gatewayCredentials: GatewayCredentials;
  events: EventRecorder;
  metrics: ManagerMetrics;
  logger: Logger;
  cache: JobCacheView;
  admitter: Admitter;
  requeueAfter: (key: string, delayMs: number) => void;
}

/** How often a job waiting on something outside the cache (pod removal, image pull) is looked at. */
const POLL_MS = 1000;
/** How long a created pod may take to show up in the cache before the API is asked directly. */
const EXPECTATION_TIMEOUT_MS = 5000;

export class Reconciler {
  readonly #d: ReconcilerDeps;
  /** Pods this process created and has not seen in its cache yet (controller-runtime's expectations). */
  readonly #createdPods = new Map<string, number>();

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
  }

  async reconcile(key: string): Promise<void> {
    let job = this.#d.cache.job(key);
    if (!job) return; // deleted; its finalizer already ran
    if (job.metadata.deletionTimestamp) return this.#finalize(job);
    if (!job.metadata.finalizers?.includes(this.#d.finalizers.name)) {
      // go on with the patched object rather than wait for its watch event
      const patched = await this.#d.finalizers.add(job);
      if (!patched) return;
      job = patched;
    }
    if (isTerminal(job)) return this.#finished(job);
    if (job.spec.cancel) return this.#cancel(job);
    switch (job.status.phase) {
      case undefined:
      case 'Queued':
        return this.#admit(job);
      case 'Scheduled':
      case 'Running':
        return this.#syncAttempt(job);
    }
  }

  // --- admission ---------------------------------------------------------------------------

  async #admit(job: PagewrightJob): Promise<void> {
    const key = jobKey(job);
    if ((job.status.attempt ?? 0) === 0) {
      const policy = modelPolicy(job, this.#d.config);
      if (!policy.allowed) return this.#end(job, t.refused(policy.reason, policy.message), 'Failed');
    }
    const next = job.status.nextAttemptTime ? timestamp(job.status.nextAttemptTime) - Date.now() : 0;
    if (next > 0) return this.#d.requeueAfter(key, next);
    const attempt = (job.status.attempt ?? 0) + 1;
    let written = false;
    const admitted = await this.#d.admitter.admit(job, attempt, async () => {
      const update = await this.#write(job, t.scheduled(attempt, podName(job, attempt)));
      written = update.written;
      // scheduled by an earlier pass from a fresher copy: still ours to see through (creating
      // its pod again is a no-op)
      return update.job.status.phase === 'Scheduled' && update.job.status.attempt === attempt ? update.job : null;
    });
    if (admitted) {
      await this.#createAttempt(admitted, attempt);
      // after the pod: the Event is not on the path from admission to a running pod
      if (written) this.#d.events.normal(admitted, 'Scheduled', `attempt ${attempt}: created runner pod ${podName(admitted, attempt)}`);
    } else if (job.status.phase === undefined) {
      await this.#write(job, t.queued('waiting for a free slot or for another job of this site'));
    }
  }

  async #createAttempt(job: PagewrightJob, attempt: number): Promise<void> {
    const { config, core } = this.#d;
    const policy = modelPolicy(job, config);
    if (!policy.allowed) throw new Error(`job ${jobKey(job)} passed admission but its model policy now refuses it: ${policy.message}`);
    const { ttlSeconds } = this.#attemptWindow(job);
    const credentials = {
      runnerToken: await this.#runnerToken(job, attempt),
      gatewayCredential: await this.#d.gatewayCredentials.issue({
        jobId: job.metadata.uid,
        namespace: job.metadata.namespace,
        name: job.metadata.name,
        attempt,
        model: policy.model,
        budget: policy.budget,
        ttlSeconds,
      }),
    };
    const ns = job.metadata.namespace;
    // the kubelet retries a pod whose Secret is not there yet, so both go out at once
    await Promise.all([
      ignoreConflict(core.createNamespacedSecret({ namespace: ns, body: buildSecret(job, attempt, credentials) })),
      ignoreConflict(core.createNamespacedPod({ namespace: ns, body: buildPod(job, attempt, config) })),
    ]);
    this.#createdPods.set(podName(job, attempt), Date.now());
  }

  // --- the running attempt -----------------------------------------------------------------

  async #syncAttempt(job: PagewrightJob): Promise<void> {
    const attempt = job.status.attempt ?? 1;
    const s = job.status;
    if (s.reportedAttempt === attempt && (s.runnerPhase === 'completed' || s.runnerPhase === 'failed')) return this.#finishAttempt(job);

    const pod = this.#attemptPod(job, attempt);
    const name = podName(job, attempt);
    if (!pod) {
      // created by us a moment ago: its watch event is on its way (and will bring us back)
      const created = this.#createdPods.get(name);
      if (created !== undefined && Date.now() - created < EXPECTATION_TIMEOUT_MS) return this.#d.requeueAfter(jobKey(job), EXPECTATION_TIMEOUT_MS);
      const live = await this.#readPod(job.metadata.namespace, name);
      if (live) return; // the cache is behind; the pod's event will bring us back
      if (s.phase === 'Scheduled') return this.#createAttempt(job, attempt); // stored, then crashed before creating it
      if (await this.#recoverFromManifest(job, attempt)) return;
      return this.#attemptFailed(job, attempt, 'PodLost', `runner pod ${s.podName} disappeared`);
    }
    this.#createdPods.delete(name);

    const verdict = classifyPod(pod, { now: Date.now(), imagePullTimeoutMs: this.#d.config.imagePullTimeoutSeconds * 1000 });
    switch (verdict.state) {
      case 'pending':
        return this.#d.requeueAfter(jobKey(job), 10 * POLL_MS); // image pulls are not watched as events
      case 'running':
        if (s.phase === 'Scheduled') {
          const { written } = await this.#write(job, t.running(attempt));
          if (written) this.#d.events.normal(job, 'Started', `runner pod ${pod.metadata?.name} is running`);
        }
        return;
      case 'succeeded':
        if (await this.#recoverFromManifest(job, attempt)) return;
        return this.#attemptFailed(job, attempt, 'RunnerFailed', 'the runner exited 0 without reporting a result or writing its manifest');
      case 'failed':
        // a runner that failed late (after writing its manifest) still told us why
        if (verdict.reason !== 'DeadlineExceeded' && (await this.#recoverFromManifest(job, attempt))) return;
        if (verdict.reason === 'ImagePullFailed') await this.#deletePods(job, [pod]);
        return this.#attemptFailed(job, attempt, verdict.reason, verdict.message);
    }
  }

  /** The runner's callback never arrived: its manifest in storage carries the same result. */
  async #recoverFromManifest(job: PagewrightJob, attempt: number): Promise<boolean> {
    let manifest: JobManifest;
    try {
      const download = await this.#d.storage.getJobObject(job.metadata.uid, 'manifest.json');
      manifest = JobManifest.parse(await download.body.json());
    } catch (err) {
      if (err instanceof StorageRequestError && err.status === 404) return false;
      throw err; // storage down: retried with backoff, the pod stays where it is
    }
    if (manifest.attempt !== attempt) return false;
    this.#d.logger.info('result recovered from the manifest in storage', { job: jobKey(job), attempt });
    const { job: stored, written } = await this.#write(job, t.resultReported(manifest.result));
    if (written) this.#d.events.normal(stored, 'ResultRecovered', `attempt ${attempt}: result read from storage (the callback was lost)`);
    if (stored.status.reportedAttempt === attempt) await this.#finishAttempt(stored);
    return true;
  }

  async #finishAttempt(job: PagewrightJob): Promise<void> {
    const attempt = job.status.attempt ?? 1;
    const s = job.status;
    if (s.runnerPhase === 'failed') {
      // the gateway knows why a model call was refused; the agent's own account cannot be trusted
      if (s.gatewayRefusal?.attempt === attempt) return this.#attemptFailed(job, attempt, s.gatewayRefusal.reason, s.gatewayRefusal.message);
      const reason = (s.reason as FailureReason | undefined) ?? 'Internal';
      if (reason === 'PodTerminated') return this.#podTerminated(job, attempt);
      return this.#attemptFailed(job, attempt, reason, s.message ?? 'the runner failed');
    }
    // nothing of this attempt may be written any more: what is published is what was reported
    await this.#d.storage.seal(job.metadata.uid, attempt);
    let published: string | undefined;
    if (job.spec.publish) {
      const outcome = await this.#publish(job);
      if (!outcome.ok) return this.#attemptFailed(job, attempt, outcome.reason, outcome.message);
      published = outcome.version;
    }
    await this.#end(job, t.succeeded(attempt, published), 'Succeeded');
  }

  /**
   * The runner reported that it was stopped from outside (SIGTERM): the pod says why. Deleted
   * (out of band, or a node going away) is PodLost and retried; past activeDeadlineSeconds or
   * evicted, the kubelet writes that into the pod's status, which may lag the runner's callback.
   */
  async #podTerminated(job: PagewrightJob, attempt: number): Promise<void> {
    const name = podName(job, attempt);
    const pod = this.#attemptPod(job, attempt) ?? (await this.#readPod(job.metadata.namespace, name));
    if (!pod || pod.metadata?.deletionTimestamp) return this.#attemptFailed(job, attempt, 'PodLost', `runner pod ${name} was deleted before the job finished`);
    const verdict = classifyPod(pod, { now: Date.now(), imagePullTimeoutMs: this.#d.config.imagePullTimeoutSeconds * 1000 });
    if (verdict.state === 'failed' && verdict.reason !== 'RunnerFailed') return this.#attemptFailed(job, attempt, verdict.reason, verdict.message);
    if (verdict.state === 'failed' || verdict.state === 'succeeded') return this.#attemptFailed(job, attempt, 'PodLost', `runner pod ${name} was terminated from outside`);
    return this.#d.requeueAfter(jobKey(job), POLL_MS); // the kubelet has not written why yet
  }

  /** Publishes exactly the output the runner reported; storage checks it against the archive rules first. */
  async #publish(job: PagewrightJob): Promise<{ ok: true; version: string } | { ok: false; reason: FailureReason; message: string }> {
    const { uid } = job.metadata;
    const base = job.status.baseVersion;
    const output = job.status.outputVersion;
    if (!base) return { ok: false, reason: 'PublishConflict', message: 'the runner did not report the base version it edited' };
    if (!output) return { ok: false, reason: 'PublishConflict', message: 'the runner reported no output version' };
    try {
      const stored = await this.#d.storage.publish(job.spec.siteId, uid, base, output);
      return { ok: true, version: stored.version };
    } catch (err) {
      if (!(err instanceof StorageRequestError)) throw err;
      if (err.code === 'UnsafeOutput') return { ok: false, reason: 'UnsafeOutput', message: err.message };
      // storage holds another output than the runner reported: never publish it; a new attempt uploads again
      if (err.code === 'OutputMismatch') return { ok: false, reason: 'UploadFailed', message: err.message };
      if (err.status !== 409) throw err;
      // published before a crash? then the site's history names this job
      const site = await this.#d.storage.getSite(job.spec.siteId);
      const ours = site.history.find((h) => h.job_id === uid);
      if (ours) return { ok: true, version: ours.version };
      return { ok: false, reason: 'PublishConflict', message: `site ${job.spec.siteId} moved from ${base.slice(0, 12)} to ${site.version.slice(0, 12)} while the job ran` };
    }
  }

  async #attemptFailed(job: PagewrightJob, attempt: number, reason: FailureReason, message: string): Promise<void> {
    const { config } = this.#d;
    await this.#endAttempt(job, attempt);
    if (isInfrastructureFailure(reason) && attempt <= job.spec.retries) {
      const delay = t.retryDelayMs(attempt, config.retryBaseSeconds, config.retryMaxSeconds);
      const { job: stored, written } = await this.#write(job, t.retrying(attempt, reason, message, delay));
      if (!written || stored.status.phase !== 'Queued') return;
      this.#d.metrics.transitions.inc({ phase: 'Queued', reason });
      this.#d.events.warning(stored, 'Retrying', `attempt ${attempt} failed (${reason}): ${message}; attempt ${attempt + 1} in ${Math.round(delay / 1000)} s`);
      this.#d.admitter.slotFreed();
      this.#d.requeueAfter(jobKey(job), delay);
      return;
    }
    await this.#end(job, t.failed(attempt, reason, message), 'Failed');
  }

  async #end(job: PagewrightJob, change: StatusChange, phase: 'Succeeded' | 'Failed' | 'Cancelled'): Promise<void> {
    // the credentials go before the terminal phase is written, so a finished job never needs
    // another API call: a restarted manager's pass over 10,000 finished jobs makes none
    if ((job.status.attempt ?? 0) > 0) await this.#endAttempt(job, job.status.attempt!);
    const { job: stored, written } = await this.#write(job, change);
    if (!written || stored.status.phase !== phase) return;
    const s = stored.status;
    this.#d.metrics.transitions.inc({ phase, reason: s.reason ?? phase });
    if (s.startTime && s.completionTime) {
      this.#d.metrics.jobDuration.observe({ phase }, (timestamp(s.completionTime) - timestamp(s.startTime)) / 1000);
    }
    for (const [p, ms] of Object.entries(s.phaseDurationsMs ?? {})) this.#d.metrics.runnerPhaseDuration.observe({ phase: p }, ms / 1000);
    const what = phase === 'Succeeded' ? `${s.filesChanged ?? 0} file(s) changed: ${s.summary ?? ''}` : `${s.reason}: ${s.message ?? ''}`;
    if (phase === 'Succeeded') this.#d.events.normal(stored, phase, what);
    else this.#d.events.warning(stored, phase, what);
    this.#d.logger.info('job finished', { job: jobKey(stored), phase, reason: s.reason, attempt: s.attempt, files_changed: s.filesChanged });
    this.#d.admitter.slotFreed();
    await this.#finished(stored);
  }

  // --- cancel, finish, delete --------------------------------------------------------------

  /** spec.cancel: kill the runner, delete its pods, and only then say Cancelled. */
  async #cancel(job: PagewrightJob): Promise<void> {
    if (await this.#stopPods(job)) return this.#d.requeueAfter(jobKey(job), POLL_MS);
    await this.#end(job, t.cancelled('cancelled by spec.cancel'), 'Cancelled');
  }

  /** A finished job (its Secret went in #end): deleted once its TTL has passed. */
  async #finished(job: PagewrightJob): Promise<void> {
    for (let a = 1; a <= (job.status.attempt ?? 0); a++) this.#createdPods.delete(podName(job, a));
    const ttl = job.spec.ttlSecondsAfterFinished;
    if (ttl === undefined || !job.status.completionTime) return;
    const due = timestamp(job.status.completionTime) + ttl * 1000 - Date.now();
    if (due > 0) return this.#d.requeueAfter(jobKey(job), due);
    this.#d.logger.info('deleting finished job after its TTL', { job: jobKey(job), ttl_seconds: ttl });
    await this.#d.finalizers.deleteJob(job);
  }

  async #finalize(job: PagewrightJob): Promise<void> {
    if (!job.metadata.finalizers?.includes(this.#d.finalizers.name)) return;
    if (await this.#stopPods(job)) return this.#d.requeueAfter(jobKey(job), POLL_MS);
    for (let a = 1; a <= (job.status.attempt ?? 0); a++) await this.#deleteSecret(job, a);
    // its outputs go too (a published one stays: the site's history holds it)
    await this.#d.storage.deleteJob(job.metadata.uid);
    await this.#d.finalizers.remove(job);
    if (!isTerminal(job)) this.#d.admitter.slotFreed();
  }

  /** Kills and deletes every pod of the job; true while some still exist. */
  async #stopPods(job: PagewrightJob): Promise<boolean> {
    const pods = await this.#livePods(job);
    if (pods.length === 0) return false;
    await Promise.all(pods.filter((p) => !p.metadata?.deletionTimestamp).map((p) => this.#killRunner(job, p)));
    await this.#deletePods(job, pods);
    return true;
  }

  async #killRunner(job: PagewrightJob, pod: V1Pod): Promise<void> {
    const ip = pod.status?.podIP;
    const attempt = Number(pod.metadata?.labels?.[LABEL_ATTEMPT]);
    if (!ip || pod.status?.phase !== 'Running' || !(attempt > 0)) return;
    const token = await this.#runnerToken(job, attempt);
    try {
      const res = await request(`http://${ip}:${this.#d.config.runnerPort}/kill`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        headersTimeout: 3000,
        bodyTimeout: 3000,
      });
      await res.body.dump();
    } catch (err) {
      // pod deletion (SIGTERM) stops the runner too; /kill just lets it report Killed first
      this.#d.logger.debug('runner /kill failed', { pod: pod.metadata?.name, error: String(err) });
    }
  }

  async #deletePods(job: PagewrightJob, pods: V1Pod[]): Promise<void> {
    await Promise.all(
      pods
        .filter((p) => !p.metadata?.deletionTimestamp)
        .map((p) => ignoreNotFound(this.#d.core.deleteNamespacedPod({ namespace: job.metadata.namespace, name: p.metadata!.name! }))),
    );
  }

  // --- helpers -----------------------------------------------------------------------------

  /**
   * The attempt's runner credential, derived from the job's status alone (issued when the
   * attempt was scheduled, expiring at its pod's deadline): the manager re-creates the very same
   * token for /kill without reading the Secret back, so it needs no read access to Secrets.
   */
  async #runnerToken(job: PagewrightJob, attempt: number): Promise<string> {
    const { issuedAt, ttlSeconds } = this.#attemptWindow(job);
    return this.#d.tokens.issue({ jobId: job.metadata.uid, siteId: job.spec.siteId, attempt, ttlSeconds, now: issuedAt });
  }

  /** An attempt's credentials live from its scheduling until its pod's deadline (and a little slack for the callback). */
  #attemptWindow(job: PagewrightJob): { issuedAt: number; ttlSeconds: number } {
    const issuedAt = timestamp(job.status.attemptStartTime) || timestamp(job.status.startTime) || timestamp(job.metadata.creationTimestamp);
    return { issuedAt, ttlSeconds: job.spec.timeoutSeconds + this.#d.config.podDeadlineSlackSeconds + 60 };
  }

  /** The attempt is over: its writes are sealed in storage and its Secret goes. */
  async #endAttempt(job: PagewrightJob, attempt: number): Promise<void> {
    await this.#d.storage.seal(job.metadata.uid, attempt);
    await this.#deleteSecret(job, attempt);
  }

  async #deleteSecret(job: PagewrightJob, attempt: number): Promise<void> {
    await ignoreNotFound(this.#d.core.deleteNamespacedSecret({ namespace: job.metadata.namespace, name: secretName(job, attempt) }));
  }

  #attemptPod(job: PagewrightJob, attempt: number): V1Pod | undefined {
    return this.#d.cache.podsOf(job.metadata.uid).find((p) => p.metadata?.labels?.[LABEL_ATTEMPT] === String(attempt));
  }

  /** Pods of the job from the API itself: cancel and delete must not trust a lagging cache. */
  async #livePods(job: PagewrightJob): Promise<V1Pod[]> {
    const list = await this.#d.core.listNamespacedPod({ namespace: job.metadata.namespace, labelSelector: `pagewright.dev/job=${job.metadata.uid}` });
    return list.items;
  }

  async #readPod(namespace: string, name: string): Promise<V1Pod | null> {
    try {
      return await this.#d.core.readNamespacedPod({ namespace, name });
    } catch (err) {
      if (apiCode(err) === 404) return null;
      throw err;
    }
  }

  async #write(job: PagewrightJob, change: StatusChange): Promise<StatusUpdate> {
    return this.#d.status.update(job, change);
  }
}

async function ignoreNotFound(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (apiCode(err) !== 404) throw err;
  }
}

async function ignoreConflict(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (apiCode(err) !== 409) throw err;
  }
}
