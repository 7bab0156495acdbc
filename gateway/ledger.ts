/**
 * Per-job model usage and its budget. A request counts when it is let through (so a burst of
 * parallel requests cannot all pass the same check), its tokens when its response reports
 * them. The counts start from what the job's status recorded (a restarted gateway goes on from
 * there, losing at most the calls it had not reported yet), and only ever grow.
 */
import type { Budget } from '../common/gateway-credential.js';
import { NO_USAGE, type Usage } from '../common/schemas.js';

/** Why the next call would break the budget, or null. Pure. */
export function budgetExceeded(usage: Usage, budget: Budget): string | null {
  if (usage.requests >= budget.maxRequests) return `the job made ${usage.requests} of its ${budget.maxRequests} model requests`;
  if (usage.inputTokens >= budget.maxInputTokens) return `the job used ${usage.inputTokens} of its ${budget.maxInputTokens} input tokens`;
  if (usage.outputTokens >= budget.maxOutputTokens)
    return `the job used ${usage.outputTokens} of its ${budget.maxOutputTokens} output tokens`;
  return null;
}

function maxUsage(a: Usage, b: Usage): Usage {
  return {
    requests: Math.max(a.requests, b.requests),
    inputTokens: Math.max(a.inputTokens, b.inputTokens),
    outputTokens: Math.max(a.outputTokens, b.outputTokens),
  };
}

export type Admission = { admitted: true; usage: Usage } | { admitted: false; message: string; usage: Usage };

export class UsageLedger {
  readonly #usage = new Map<string, Usage>();

  /** Counts one more request for the job unless its budget is spent. */
  admit(jobId: string, budget: Budget, recorded: Usage): Admission {
    const usage = maxUsage(this.#usage.get(jobId) ?? NO_USAGE, recorded);
    const over = budgetExceeded(usage, budget);
    if (over) {
      this.#usage.set(jobId, usage);
      return { admitted: false, message: over, usage };
    }
    const next = { ...usage, requests: usage.requests + 1 };
    this.#usage.set(jobId, next);
    return { admitted: true, usage: next };
  }

  addTokens(jobId: string, tokens: { inputTokens: number; outputTokens: number }): Usage {
    const usage = this.#usage.get(jobId) ?? NO_USAGE;
    const next = { ...usage, inputTokens: usage.inputTokens + tokens.inputTokens, outputTokens: usage.outputTokens + tokens.outputTokens };
    this.#usage.set(jobId, next);
    return next;
  }

  usage(jobId: string): Usage {
    return this.#usage.get(jobId) ?? NO_USAGE;
  }

  /** A job that is gone needs no counter (its status keeps the totals). */
  forget(jobId: string): void {
    this.#usage.delete(jobId);
  }
}
