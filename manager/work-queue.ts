/**
 * A de-duplicating, rate-limited work queue with client-go's semantics: a key is queued at most
 * once; a key being processed is never handed to a second worker, and if it is added meanwhile it
 * is queued again when the worker calls done(). Failures back off per key (exponential, capped)
 * under an overall token bucket, so one broken object cannot starve the rest and a broken
 * apiserver is not hammered.
 */
export interface WorkQueueOptions {
  /** First retry delay after a failure (default 50 ms), doubled per consecutive failure. */
  baseDelayMs?: number;
  /** Cap of the per-key delay (default 60 s). */
  maxDelayMs?: number;
  /** Overall retry rate (default 10/s) and burst (default 100). */
  ratePerSecond?: number;
  burst?: number;
  now?: () => number;
}

/** The longest delay a Node timer keeps (2^31 - 1 ms, 24.8 days): a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: Array<(key: string | undefined) => void> = [];
  readonly #idle: Array<() => void> = [];
  readonly #o: Required<Omit<WorkQueueOptions, 'now'>>;
  readonly #now: () => number;
  #tokens: number;
  #tokensAt: number;
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.#o = {
      baseDelayMs: opts.baseDelayMs ?? 50,
      maxDelayMs: opts.maxDelayMs ?? 60_000,
      ratePerSecond: opts.ratePerSecond ?? 10,
      burst: opts.burst ?? 100,
    };
    this.#now = opts.now ?? Date.now;
    this.#tokens = this.#o.burst;
    this.#tokensAt = this.#now();
  }

  /** Keys waiting to be processed (not counting delayed or in-flight ones). */
  get length(): number {
    return this.#queue.length;
  }

  get processing(): number {
    return this.#processing.size;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // re-queued by done()
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      waiter(key);
    } else {
      this.#queue.push(key);
    }
  }

  /**
   * Adds the key after `delayMs`; an earlier pending add for the same key wins. A delay past
   * MAX_TIMER_MS adds it at that limit instead (its reconcile asks for the rest again): a finished
   * job's TTL may be a year.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.#now() + delayMs;
    const pending = this.#timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(
      () => {
        this.#timers.delete(key);
        this.add(key);
      },
      Math.min(delayMs, MAX_TIMER_MS),
    );
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Re-adds a key that failed, after its backoff. Returns the delay used. */
  addRateLimited(key: string): number {
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    const perKey = Math.min(this.#o.baseDelayMs * 2 ** (failures - 1), this.#o.maxDelayMs);
    const delay = Math.max(perKey, this.#bucketDelay());
    this.addAfter(key, delay);
    return delay;
  }

  /** The key succeeded: its next failure starts from the base delay again. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** The next key, waiting for one; undefined once shut down. Call done(key) after processing. */
  async get(): Promise<string | undefined> {
    if (this.#shuttingDown) return undefined;
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      return key;
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shuttingDown) {
      this.#dirty.delete(key);
      this.add(key);
    }
    if (this.#processing.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** Stops handing out keys; resolves when every key in flight is done. */
  async shutDown(): Promise<void> {
    this.#shuttingDown = true;
    for (const wake of this.#waiters.splice(0)) wake(undefined);
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#queue.length = 0;
    this.#dirty.clear();
    if (this.#processing.size > 0) await new Promise<void>((r) => this.#idle.push(r));
  }

  #bucketDelay(): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#o.burst, this.#tokens + ((now - this.#tokensAt) / 1000) * this.#o.ratePerSecond);
    this.#tokensAt = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#o.ratePerSecond) * 1000);
  }
}
