/**
 * Usage goes to the manager, the one writer of job status (POST /jobs/{id}/usage), which puts
 * it into status.usage and, for a refusal, status.gatewayRefusal. Reports are coalesced per job
 * (only the latest counts matter, they only grow) and retried until the manager acknowledges
 * them; a refusal is kept until it is delivered. The gateway never waits for them. Whether a
 * refused report is dropped or retried depends on the code the manager answered.
 */
import { Agent, request } from 'undici';
import type { Logger } from '../common/logger.js';
import { HttpStatusError, readErrorAnswer } from '../common/retry.js';
import type { UsageReport } from '../common/schemas.js';

const MAX_DELAY_MS = 30_000;

export class UsageReporter {
  readonly #pending = new Map<string, UsageReport>();
  readonly #sending = new Map<string, Promise<void>>();
  readonly #agent = new Agent({ keepAliveTimeout: 30_000, connections: 8 });
  #closed = false;

  constructor(private readonly o: { managerUrl: string; token: string; logger: Logger }) {}

  report(report: UsageReport): void {
    if (this.#closed) return;
    const earlier = this.#pending.get(report.job_id);
    // counts only grow; a refusal is news the manager must get even if later counts overtake it
    this.#pending.set(report.job_id, {
      ...report,
      ...((report.refusal ?? earlier?.refusal) ? { refusal: report.refusal ?? earlier?.refusal } : {}),
    });
    if (!this.#sending.has(report.job_id)) {
      const sending = this.#send(report.job_id).finally(() => this.#sending.delete(report.job_id));
      this.#sending.set(report.job_id, sending);
    }
  }

  /** Waits until every pending report is delivered (or dropped); for shutdown and tests. */
  async flush(): Promise<void> {
    while (this.#sending.size > 0) await Promise.all([...this.#sending.values()]);
  }

  async close(): Promise<void> {
    await Promise.race([this.flush(), new Promise((r) => setTimeout(r, 5000).unref())]);
    this.#closed = true;
    await this.#agent.close();
  }

  async #send(jobId: string): Promise<void> {
    let delay = 250;
    for (;;) {
      const report = this.#pending.get(jobId);
      if (!report || this.#closed) return;
      this.#pending.delete(jobId);
      const outcome = await this.#post(report);
      if (outcome === 'done') continue; // a newer report may have arrived meanwhile
      // failed: put it back unless something newer is waiting, then retry later
      if (!this.#pending.has(jobId)) this.#pending.set(jobId, report);
      else if (report.refusal && !this.#pending.get(jobId)!.refusal)
        this.#pending.set(jobId, { ...this.#pending.get(jobId)!, refusal: report.refusal });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  async #post(report: UsageReport): Promise<'done' | 'retry'> {
    try {
      const res = await request(`${this.o.managerUrl}/jobs/${encodeURIComponent(report.job_id)}/usage`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { authorization: `Bearer ${this.o.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(report),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = await res.body.text();
      if (res.statusCode < 300) return 'done';
      const { code, detail } = readErrorAnswer(res.statusCode, text);
      const refused = new HttpStatusError(res.statusCode, `manager answered ${res.statusCode} to a usage report (${detail})`, code);
      switch (refused.code) {
        // the job is gone (or was never the manager's), or the manager will never take this report: nothing left to account
        case 'JobNotFound':
        case 'NotFound':
        case 'BadRequest':
        case 'PayloadTooLarge':
          this.o.logger.warn('usage report dropped', {
            job: report.job_id,
            status: res.statusCode,
            code: refused.code,
            error: refused.message,
          });
          return 'done';
        default:
          this.o.logger.warn('usage report refused; retrying', { job: report.job_id, status: res.statusCode, code: refused.code });
          return 'retry';
      }
    } catch (err) {
      this.o.logger.warn('usage report failed; retrying', { job: report.job_id, error: String(err) });
      return 'retry';
    }
  }
}
