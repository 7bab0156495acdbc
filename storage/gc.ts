/**
 * The blob collector: deletes blobs that no site (current version or history), no job object
 * references, once they are older than a grace period. Replaced job objects, deleted jobs and
 * site versions beyond the history limit otherwise stay on the volume for ever.
 *
 * Order, against concurrent uploads and publishes (a blob is written, then referenced):
 *   1. beginSweep(): from here on every pinned blob is kept (blob-store.ts: uploads pin their
 *      blob before it exists under its name, publishes pin the output before reading it);
 *   2. read every reference (a reference written before this read is seen; one written after
 *      comes from an operation that pinned its blob, so step 1 keeps it);
 *   3. list the blobs and remove each unreferenced one that is neither pinned, nor pinned since
 *      step 1, nor younger than the grace period, deciding under the blob's own lock.
 * The grace period is a second guard, for anything that writes a blob and references it later
 * without a pin. One storage process owns a data directory, so in-memory pins are enough.
 */
import type { Logger } from '../common/logger.js';
import type { BlobStore } from './blob-store.js';
import type { RefStore } from './ref-store.js';

export interface GcReport {
  deleted: number;
  kept: number;
  bytes_freed: number;
}

export interface GcOptions {
  graceSeconds: number;
  /** 0: no periodic sweeps (POST /admin/gc still runs one). */
  intervalSeconds: number;
}

type CollectorState = 'idle' | 'running' | 'closed';

export class BlobCollector {
  readonly #blobs: BlobStore;
  readonly #refs: RefStore;
  readonly #opts: GcOptions;
  readonly #logger: Logger;
  #state: CollectorState = 'idle';
  #timer: NodeJS.Timeout | null = null;
  /** The sweep running now, if any: sweeps never overlap. */
  #current: Promise<GcReport> | null = null;

  constructor(deps: { blobs: BlobStore; refs: RefStore; logger: Logger }, opts: GcOptions) {
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
    const cutoff = started - this.#opts.graceSeconds * 1000;
    const report: GcReport = { deleted: 0, kept: 0, bytes_freed: 0 };
    this.#blobs.beginSweep();
    try {
      const referenced = await this.#refs.referencedVersions();
      for await (const blob of this.#blobs.list()) {
        const freed = referenced.has(blob.version) || blob.mtimeMs > cutoff ? null : await this.#blobs.removeIfUnused(blob.version, cutoff);
        if (freed === null) report.kept++;
        else {
          report.deleted++;
          report.bytes_freed += freed;
        }
      }
    } finally {
      this.#blobs.endSweep();
    }
    this.#logger.info('blobs collected', { ...report, ms: Date.now() - started });
    return report;
  }
}
