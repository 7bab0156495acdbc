/**
 * One backoff for every job: when the upstream answers 429, all calls wait until its
 * Retry-After (or an exponential default) has passed, instead of each job's codex retrying on
 * its own and hitting the limit again. Pure apart from the clock it is given.
 */
export class SharedBackoff {
  #until = 0;
  #streak = 0;

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long a call must wait before it may go upstream. */
  waitMs(): number {
    return Math.max(0, this.#until - this.now());
  }

  /** The upstream said 429: nobody goes before Retry-After (seconds or an HTTP date). */
  rateLimited(retryAfter: string | undefined): number {
    const now = this.now();
    const wait = parseRetryAfter(retryAfter, now) ?? Math.min(this.baseMs * 2 ** this.#streak, this.maxMs);
    this.#streak++;
    this.#until = Math.max(this.#until, now + wait);
    return wait;
  }

  succeeded(): void {
    this.#streak = 0;
  }
}

export function parseRetryAfter(value: string | undefined, now: number): number | null {
  if (!value) return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
