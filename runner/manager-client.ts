/**
 * The runner's calls to the manager: the final result (retried with backoff and jitter until
 * acknowledged or the deadline; the manager treats a repeat for the same attempt as a no-op)
 * and best-effort phase progress (one quick try each, in order, never blocking the job). A
 * refusal is an HttpStatusError carrying the code the manager answered (TokenExpired,
 * JobNotFound, ...); it is retried only for 408/425/429/5xx.
 */
import { request } from 'undici';
import type { Logger } from '../common/logger.js';
import { HttpStatusError, readErrorAnswer, withRetry } from '../common/retry.js';
import type { JobProgress, JobResult } from '../common/schemas.js';

export interface ManagerClientOptions {
  baseUrl: string;
  jobId: string;
  token: string;
  logger: Logger;
  progressTimeoutMs?: number;
  /** Backoff for result delivery; tests shorten it. */
  minRetryDelayMs?: number;
  maxRetryDelayMs?: number;
}

export class ManagerClient {
  readonly #opts: ManagerClientOptions;
  #progressChain: Promise<void> = Promise.resolve();

  constructor(opts: ManagerClientOptions) {
    this.#opts = { ...opts, baseUrl: opts.baseUrl.replace(/\/+$/, '') };
  }

  #url(kind: 'result' | 'progress'): string {
    return `${this.#opts.baseUrl}/jobs/${encodeURIComponent(this.#opts.jobId)}/${kind}`;
  }

  async #post(kind: 'result' | 'progress', body: unknown, signal: AbortSignal): Promise<void> {
    const res = await request(this.#url(kind), {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#opts.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) {
      // the code of the manager's {error, message} body, for callers to switch on
      const { code, detail } = readErrorAnswer(res.statusCode, text);
      throw new HttpStatusError(res.statusCode, `manager answered ${res.statusCode} to ${kind} (${detail})`, code);
    }
  }

  /** Resolves once the manager acknowledged; rejects at the deadline or on a permanent refusal. */
  async sendResult(result: JobResult, deadline: number): Promise<void> {
    const log = this.#opts.logger;
    await withRetry(({ signal }) => this.#post('result', result, signal), {
      retries: Infinity,
      deadline,
      minDelayMs: this.#opts.minRetryDelayMs ?? 500,
      maxDelayMs: this.#opts.maxRetryDelayMs ?? 15_000,
      onRetry: ({ error, attempt, delayMs }) =>
        log.warn('result callback failed, retrying', { attempt, delay_ms: delayMs, error: String(error) }),
    });
    log.info('result delivered to manager', { status: result.status });
  }

  /** Queues a progress report; failures are logged at debug and forgotten. */
  sendProgress(progress: JobProgress): void {
    this.#progressChain = this.#progressChain.then(async () => {
      try {
        await this.#post('progress', progress, AbortSignal.timeout(this.#opts.progressTimeoutMs ?? 2000));
      } catch (err) {
        this.#opts.logger.debug('progress report not delivered', { phase: progress.phase, error: String(err) });
      }
    });
  }

  /** Waits for queued progress reports (so they do not arrive after the result). */
  async flushProgress(): Promise<void> {
    await this.#progressChain;
  }
}
