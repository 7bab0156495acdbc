/**
 * The credentials of one attempt: the runner's (storage, callbacks, /kill) and the agent's (the
 * model gateway), both expiring with the attempt's pod deadline. The runner's is derived from the
 * job's status alone (issued when the attempt was scheduled), so the manager re-creates the very
 * same token for /kill without reading the Secret back: it needs no read access to Secrets.
 */
import type { GatewayCredentials } from '../common/gateway-credential.js';
import { type PagewrightJob, jobKey, timestamp } from '../common/job-resource.js';
import type { JobTokens } from '../common/tokens.js';
import type { ManagerConfig } from './config.js';
import { modelPolicy } from './model-policy.js';

export interface AttemptCredentials {
  runnerToken(job: PagewrightJob, attempt: number): Promise<string>;
  /** Both, for the attempt's Secret. */
  issue(job: PagewrightJob, attempt: number): Promise<{ runnerToken: string; gatewayCredential: string }>;
}

export class SignedAttemptCredentials implements AttemptCredentials {
  constructor(
    private readonly config: ManagerConfig,
    private readonly tokens: JobTokens,
    private readonly gateway: GatewayCredentials,
  ) {}

  async runnerToken(job: PagewrightJob, attempt: number): Promise<string> {
    const { issuedAt, ttlSeconds } = this.#window(job);
    return this.tokens.issue({ jobId: job.metadata.uid, siteId: job.spec.siteId, attempt, ttlSeconds, now: issuedAt });
  }

  async issue(job: PagewrightJob, attempt: number): Promise<{ runnerToken: string; gatewayCredential: string }> {
    const policy = modelPolicy(job, this.config);
    if (!policy.allowed) throw new Error(`job ${jobKey(job)} passed admission but its model policy now refuses it: ${policy.message}`);
    const { ttlSeconds } = this.#window(job);
    const { uid: jobId, namespace, name } = job.metadata;
    return {
      runnerToken: await this.runnerToken(job, attempt),
      gatewayCredential: await this.gateway.issue({
        jobId,
        namespace,
        name,
        attempt,
        model: policy.model,
        budget: policy.budget,
        ttlSeconds,
      }),
    };
  }

  /** From the attempt's scheduling until its pod's deadline, and a minute for the callback. */
  #window(job: PagewrightJob): { issuedAt: number; ttlSeconds: number } {
    const issuedAt = timestamp(job.status.attemptStartTime) || timestamp(job.status.startTime) || timestamp(job.metadata.creationTimestamp);
    return { issuedAt, ttlSeconds: job.spec.timeoutSeconds + this.config.podDeadlineSlackSeconds + 60 };
  }
}
