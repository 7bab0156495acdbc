/**
 * The credentials of one attempt: the runner's (storage, callbacks, /kill) and the agent's (the
 * model gateway), both expiring with the attempt's pod deadline. The runner's is derived from the
 * job's status alone (issued when the attempt was scheduled), so the manager re-creates the very
 * same token for /kill without reading the Secret back: it needs no read access to Secrets.
 *
 * The gateway credential carries the job's model and budget, so it is issued only when the model
 * policy allows them now: every attempt is decided again (the allowlist or the caps may have
 * changed since the job was admitted, with a manager restarted on new config). A refusal is an
 * answer, not an exception: the caller fails the job with its reason (ModelNotAllowed,
 * BudgetNotAllowed), where a throw would fail the reconcile, retried for ever with the job
 * Scheduled and no pod, holding a slot and its site.
 */
import type { GatewayCredentials } from '../common/gateway-credential.js';
import { type PagewrightJob, timestamp } from '../common/job-resource.js';
import type { JobTokens } from '../common/tokens.js';
import type { ManagerConfig } from './config.js';
import { type ModelPolicy, modelPolicy } from './model-policy.js';

interface AttemptSecrets {
  runnerToken: string;
  gatewayCredential: string;
}

/** Both credentials, for the attempt's Secret; or why the model policy refuses the attempt. */
export type IssuedCredentials = { ok: true; secrets: AttemptSecrets } | ({ ok: false } & Extract<ModelPolicy, { allowed: false }>);

export interface AttemptCredentials {
  runnerToken(job: PagewrightJob, attempt: number): Promise<string>;
  issue(job: PagewrightJob, attempt: number): Promise<IssuedCredentials>;
}

export class SignedAttemptCredentials implements AttemptCredentials {
  constructor(
    private readonly config: ManagerConfig,
    private readonly tokens: JobTokens,
    private readonly gateway: GatewayCredentials,
  ) {}

  async runnerToken(job: PagewrightJob, attempt: number): Promise<string> {
    const { issuedAt, ttlSeconds } = this.#window(job);
    // a follow-up's may also read the output and session of the job it follows (storage/auth.ts)
    const follows = job.status.followUp?.jobId;
    return this.tokens.issue({
      jobId: job.metadata.uid,
      siteId: job.spec.siteId,
      attempt,
      ttlSeconds,
      now: issuedAt,
      ...(follows ? { follows } : {}),
    });
  }

  async issue(job: PagewrightJob, attempt: number): Promise<IssuedCredentials> {
    const policy = modelPolicy(job, this.config);
    if (!policy.allowed) return { ok: false, ...policy };
    const { ttlSeconds } = this.#window(job);
    const { uid: jobId, namespace, name } = job.metadata;
    const secrets = {
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
    return { ok: true, secrets };
  }

  /** From the attempt's scheduling until its pod's deadline, and a minute for the callback. */
  #window(job: PagewrightJob): { issuedAt: number; ttlSeconds: number } {
    const issuedAt = timestamp(job.status.attemptStartTime) || timestamp(job.status.startTime) || timestamp(job.metadata.creationTimestamp);
    return { issuedAt, ttlSeconds: job.spec.timeoutSeconds + this.config.podDeadlineSlackSeconds + 60 };
  }
}
