/**
 * The blob collector: deletes blobs that no site (current version or history), no job object
 * references, once they are older than a grace period. Replaced job objects, deleted jobs and
 * site versions beyond the history limit otherwise stay in the backend for ever.
 *
 * This is the schedule (periodic, never two sweeps at once in this process); how a sweep stays
 * off a blob that is about to be referenced is the backend's: pins in the fs backend
 * (blob-store.ts), leases and upload deadlines in the s3 one (s3-backend.ts), whose sweeps may
 * run in every replica at once.
 */
import type { Logger } from '../common/logger.js';
import type { BlobBackend, SweepReport } from './backend.js';
import type { RefStore } from './ref-store.js';

export type GcReport = SweepReport;

export interface GcOptions {
  graceSeconds: number;
  /** 0: no periodic sweeps (POST /admin/gc still runs one). */
  intervalSeconds: number;
}

type CollectorState = 'idle' | 'running' | 'closed';

export class BlobCollector {
  readonly #blobs: BlobBackend;
  readonly #refs: RefStore;
  readonly #opts: GcOptions;
  readonly #logger: Logger;
  #state: CollectorState = 'idle';
  #timer: NodeJS.Timeout | null = null;
  /** The sweep running now, if any: sweeps never overlap. */
  #current: Promise<GcReport> | null = null;

  readonly #onSweep: ((report: GcReport | null) => void) | undefined;

  /** `onSweep`: told each sweep's report, or null when one failed (metrics). */
  constructor(deps: { blobs: BlobBackend; refs: RefStore; logger: Logger; onSweep?: (report: GcReport | null) => void }, opts: GcOptions) {
    this.#onSweep = deps.onSweep;
    this.#blobs = deps.blobs;
    this.#refs = deps.refs;
    this.#logger = deps.logger;
    this.#opts = opts;
  }

  /** Starts the periodic sweeps (if an interval is set). */
  start(): void {
    if (this.#opts.intervalSeconds <= 0 || this.#timer || this.#state === 'closed') return;
    this.#timer = setInterval(() => {
      if (this.#current !== null) return; // still busy: skip this tick
      this.sweep().catch((err: unknown) => this.#logger.error('blob collection failed', { error: String(err) }));
    }, this.#opts.intervalSeconds * 1000);
    this.#timer.unref();
  }

  /** One sweep now; waits for a running one first, so the answer reflects the state after the call. */
  async sweep(): Promise<GcReport> {
    while (this.#current !== null) await this.#current.catch(() => undefined);
    if (this.#state === 'closed') throw new Error('the blob collector is closed');
    const run = this.#sweepOnce();
    this.#current = run;
    this.#state = 'running';
    try {
      return await run;
    } finally {
      this.#current = null;
      if (this.#state === 'running') this.#state = 'idle';
    }
  }

  /** Stops the timer and waits for a running sweep. */
  async close(): Promise<void> {
    this.#state = 'closed';
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#current?.catch(() => undefined);
  }

  async #sweepOnce(): Promise<GcReport> {
    const started = Date.now();
    let report: GcReport;
    try {
      report = await this.#blobs.sweep(() => this.#refs.referencedBlobs(this.#blobs), this.#opts.graceSeconds);
    } catch (err) {
      this.#onSweep?.(null);
      throw err;
    }
    this.#logger.info('blobs collected', { ...report, ms: Date.now() - started });
    this.#onSweep?.(report);
    return report;
  }
}
