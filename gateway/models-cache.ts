/**
 * The models routes, answered from a cache: the runner's preflight asks once per attempt
 * (GET /models/{id}, or the list where an endpoint only lists), so without a cache every job
 * start would be an unmetered upstream call on the organisation's key, and a hostile agent
 * could make as many as it liked. One upstream call per path per TTL serves every job, callers
 * of one path share a call in flight, and only successful answers are kept (an error is passed
 * on and asked again next time). A 429 here never sets the shared backoff: that is the
 * Responses route's alone (app.ts).
 */
export interface CachedAnswer {
  status: number;
  contentType: string;
  body: Buffer;
}

export class ModelsCache {
  readonly #entries = new Map<string, { answer: CachedAnswer; until: number }>();
  readonly #inFlight = new Map<string, Promise<CachedAnswer>>();

  constructor(
    private readonly ttlMs: number,
    /** Bounds the cache: ids are validated, but a job may ask for many (only its own model passes, see app.ts). */
    private readonly maxEntries = 64,
    private readonly now: () => number = Date.now,
  ) {}

  async get(path: string, fetch: () => Promise<CachedAnswer>): Promise<CachedAnswer & { cached: boolean }> {
    const hit = this.#entries.get(path);
    if (hit && hit.until > this.now()) return { ...hit.answer, cached: true };
    let pending = this.#inFlight.get(path);
    if (!pending) {
      pending = fetch().finally(() => this.#inFlight.delete(path));
      this.#inFlight.set(path, pending);
    }
    const answer = await pending;
    if (answer.status === 200) {
      if (this.#entries.size >= this.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
      this.#entries.set(path, { answer, until: this.now() + this.ttlMs });
    }
    return { ...answer, cached: false };
  }
}
