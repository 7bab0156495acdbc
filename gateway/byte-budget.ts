/**
 * A cap on the memory that request bodies may hold across every call in flight. Each call
 * takes its share before it reads a byte of its body (from the Content-Length, times what a
 * body of that size costs once it is buffered, parsed and re-serialised), takes more once the
 * body's shape is known (its nodes, json-shape.ts), and gives it all back when its request has
 * gone upstream. Past the cap a call is answered 503 with Retry-After (codex retries those by
 * itself) instead of growing the process past its pod's memory limit, where the kernel would
 * kill it and every job's stream with it. Pure apart from the numbers.
 */
export class ByteBudget {
  #used = 0;

  constructor(readonly limit: number) {}

  /** One call's share, empty at first. */
  share(): Share {
    return new Share(this);
  }

  /** Takes `bytes` if they fit; a call larger than the whole cap never fits. */
  tryTake(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }

  get used(): number {
    return this.#used;
  }
}

/** What one call holds of the budget: grown with take(), given back once with release(). */
export class Share {
  #taken = 0;

  constructor(private readonly budget: ByteBudget) {}

  take(bytes: number): boolean {
    if (!this.budget.tryTake(bytes)) return false;
    this.#taken += bytes;
    return true;
  }

  release(): void {
    this.budget.give(this.#taken);
    this.#taken = 0;
  }
}
