/**
 * Per-job model usage and its budget. A request counts when it is let through (so a burst of
 * parallel requests cannot all pass the same check), and reserves the output tokens it may
 * spend (its max_output_tokens, which the gateway clamps to what is left, request-policy.ts), so
 * parallel requests cannot each spend the whole remainder. When its answer ends the reservation
 * is settled: the tokens the answer reported, or, for an answer that ended without reporting
 * them (cut off upstream), its whole reservation and an estimate of its input, so a call never
 * costs less than it could have. The counts start from what the job's status recorded (a
 * restarted gateway goes on from there, losing at most the calls it had not reported yet), and
 * only ever grow. A job that ended is forgotten (its status keeps the totals): the ledger holds
 * only live jobs.
 */
import type { Budget } from '../common/gateway-credential.js';
import { NO_USAGE, type Usage } from '../common/schemas.js';
import type { TokenUsage } from './usage-tap.js';

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

export type Admission = { admitted: true; usage: Usage; reservation: Reservation } | { admitted: false; message: string; usage: Usage };

/** The output tokens one admitted call may still spend; settled once when its answer ends. */
export interface Reservation {
  readonly jobId: string;
  readonly outputTokens: number;
}

interface Entry {
  usage: Usage;
  /** Output tokens reserved by calls whose answers have not ended. */
  reserved: number;
}

export class UsageLedger {
  readonly #jobs = new Map<string, Entry>();

  #entry(jobId: string, recorded: Usage): Entry {
    const entry = this.#jobs.get(jobId) ?? { usage: NO_USAGE, reserved: 0 };
    entry.usage = maxUsage(entry.usage, recorded);
    this.#jobs.set(jobId, entry);
    return entry;
  }

  /** The output tokens a next call may spend: the budget's, less what was used and what calls in flight reserved. */
  outputTokensLeft(jobId: string, budget: Budget, recorded: Usage): number {
    const entry = this.#jobs.get(jobId);
    const used = Math.max(entry?.usage.outputTokens ?? 0, recorded.outputTokens);
    return Math.max(0, budget.maxOutputTokens - used - (entry?.reserved ?? 0));
  }

  /** Counts one more request for the job, reserving its output tokens, unless its budget is spent. */
  admit(jobId: string, budget: Budget, recorded: Usage, outputTokens: number): Admission {
    const entry = this.#entry(jobId, recorded);
    const over = budgetExceeded(entry.usage, budget);
    if (over) return { admitted: false, message: over, usage: entry.usage };
    entry.usage = { ...entry.usage, requests: entry.usage.requests + 1 };
    entry.reserved += outputTokens;
    return { admitted: true, usage: entry.usage, reservation: { jobId, outputTokens } };
  }

  /**
   * A call's answer ended: its reservation becomes the tokens it reported, or, when it reported
   * none, all of the reserved output and `unreportedInput` input tokens. Returns the job's usage,
   * or null for a job that ended (and was forgotten) while the answer streamed: its status has the
   * totals, and a report from here would carry less than it.
   */
  settle(reservation: Reservation, reported: TokenUsage | null, unreportedInput: number): Usage | null {
    const spent = reported ?? { inputTokens: unreportedInput, outputTokens: reservation.outputTokens };
    const entry = this.#jobs.get(reservation.jobId);
    if (!entry) return null;
    entry.reserved = Math.max(0, entry.reserved - reservation.outputTokens);
    entry.usage = {
      ...entry.usage,
      inputTokens: entry.usage.inputTokens + spent.inputTokens,
      outputTokens: entry.usage.outputTokens + spent.outputTokens,
    };
    return entry.usage;
  }

  usage(jobId: string): Usage {
    return this.#jobs.get(jobId)?.usage ?? NO_USAGE;
  }

  /** A job that ended needs no counter (its status keeps the totals). */
  forget(jobId: string): void {
    this.#jobs.delete(jobId);
  }

  /** How many jobs the ledger holds (a gauge: it must not grow with finished jobs). */
  get size(): number {
    return this.#jobs.size;
  }
}
