/**
 * The fs backend's blobs (backend.ts): content-addressed files, blobs/sha256/<aa>/<digest>. A blob is streamed to a temp file while
 * its size and its sha256 (on a worker thread: off-thread-hasher.ts) are computed, fsynced,
 * then renamed to its digest; memory use does not depend on the blob's size. Equal content is
 * stored once.
 *
 * Blobs are deleted only by the collector (gc.ts), through removeIfUnused(). What keeps it off
 * a blob that is about to be referenced: every operation that creates a reference pins the
 * blob from before it exists (put) or before it reads the record it copies (publish) until the
 * reference is durable; a pin taken while a sweep runs marks the blob for the whole sweep; and
 * the commit of a blob and its removal take the same per-blob lock, so a removal cannot land
 * on a file an upload has just renamed into place. One process owns the directory, so these
 * in-memory pins are enough here; the s3 backend, shared by replicas, uses leases instead.
 */
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StorageError } from './errors.js';
import { commitFile, tempPath } from './fs-durable.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { BlobBackend, BlobRef, PutBlobOptions, SweepReport } from './backend.js';
import { type HashSession, OffThreadHasher } from './off-thread-hasher.js';

interface StoredBlob {
  version: string;
  size: number;
  mtimeMs: number;
}

const SHA256_NAME = /^[a-f0-9]{64}$/;

export class BlobStore implements BlobBackend {
  readonly kind = 'fs' as const;
  readonly #root: string;
  readonly #tmp: string;
  readonly #hasher = new OffThreadHasher();
  readonly #locks = new KeyedMutex();
  readonly #pins = new Map<string, number>();
  /** Blobs pinned since the running sweep began (null: no sweep). */
  #touched: Set<string> | null = null;

  constructor(dataDir: string) {
    this.#root = join(dataDir, 'blobs', 'sha256');
    this.#tmp = join(dataDir, 'tmp');
  }

  get tmpDir(): string {
    return this.#tmp;
  }

  /** Creates the directories and drops temp files a crash left behind. */
  async init(): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await mkdir(this.#tmp, { recursive: true });
    for (const name of await readdir(this.#tmp)) await rm(join(this.#tmp, name), { force: true, recursive: true });
  }

  /** Stops the hashing worker. */
  close(): Promise<void> {
    return this.#hasher.close();
  }

  pathOf(version: string): string {
    return join(this.#root, version.slice(0, 2), version);
  }

  /**
   * Stores the body as a blob, then runs `use` (which records a reference to it) with the blob
   * pinned, so the collector cannot remove it in between.
   */
  async put<T>(body: Readable, opts: PutBlobOptions, use: (blob: BlobRef) => Promise<T>): Promise<T> {
    const overflow = opts.tooLarge ?? (() => tooLarge(opts.maxBytes));
    if (opts.declaredSize !== undefined && opts.declaredSize > opts.maxBytes) throw overflow();
    const tmp = tempPath(this.#tmp);
    const hash = this.#hasher.session();
    const meter = new HashingLimiter(opts.maxBytes, hash, overflow);
    let version: string;
    try {
      // flush: fsync before close, so a renamed blob is always complete on disk
      await pipeline(body, meter, createWriteStream(tmp, { flags: 'wx', mode: 0o640, flush: true, highWaterMark: 1 << 20 }));
      version = await hash.digest();
    } catch (err) {
      hash.drop();
      await rm(tmp, { force: true });
      if (meter.overflowed) throw overflow();
      throw err;
    }
    if (opts.expectedSha256 !== undefined && opts.expectedSha256 !== version) {
      await rm(tmp, { force: true });
      throw new StorageError('DigestMismatch', `body sha256 is ${version}, the request said ${opts.expectedSha256}`);
    }
    const blob = { version, size: meter.bytes };
    // pinned before the file exists under its name: see the header
    return this.withPin(version, async () => {
      try {
        await this.#locks.run(version, () => commitFile(tmp, this.pathOf(version)));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return use(blob);
    });
  }

  /** Runs `fn` with the blob safe from the collector (publish: while it checks and references it). */
  async withPin<T>(version: string, fn: () => Promise<T>): Promise<T> {
    this.#pins.set(version, (this.#pins.get(version) ?? 0) + 1);
    this.#touched?.add(version);
    try {
      return await fn();
    } finally {
      const left = (this.#pins.get(version) ?? 1) - 1;
      if (left > 0) this.#pins.set(version, left);
      else this.#pins.delete(version);
    }
  }

  protect<T>(blob: BlobRef, fn: () => Promise<T>): Promise<T> {
    return this.withPin(blob.version, fn);
  }

  referenceOf(blob: BlobRef): string {
    return blob.version;
  }

  /**
   * Order, against concurrent uploads and publishes (a blob is written, then referenced):
   *   1. beginSweep(): from here on every pinned blob is kept (uploads pin their blob before it
   *      exists under its name, publishes pin the output before reading it);
   *   2. read every reference (a reference written before this read is seen; one written after
   *      comes from an operation that pinned its blob, so step 1 keeps it);
   *   3. list the blobs and remove each unreferenced one that is neither pinned, nor pinned since
   *      step 1, nor younger than the grace period, deciding under the blob's own lock.
   * The grace period is a second guard, for anything that writes a blob and references it later
   * without a pin.
   */
  async sweep(referenced: () => Promise<Set<string>>, graceSeconds: number): Promise<SweepReport> {
    const cutoff = Date.now() - graceSeconds * 1000;
    const report: SweepReport = { deleted: 0, kept: 0, bytes_freed: 0 };
    this.beginSweep();
    try {
      const refs = await referenced();
      for await (const blob of this.list()) {
        const freed = refs.has(blob.version) || blob.mtimeMs > cutoff ? null : await this.removeIfUnused(blob.version, cutoff);
        if (freed === null) report.kept++;
        else {
          report.deleted++;
          report.bytes_freed += freed;
        }
      }
    } finally {
      this.endSweep();
    }
    return report;
  }

  /** A sweep is starting: from now until endSweep, every pinned blob is kept. */
  beginSweep(): void {
    this.#touched = new Set(this.#pins.keys());
  }

  endSweep(): void {
    this.#touched = null;
  }

  /** Every stored blob (for the collector). */
  async *list(): AsyncGenerator<StoredBlob> {
    for (const prefix of await readdir(this.#root)) {
      let names: string[];
      try {
        names = await readdir(join(this.#root, prefix));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTDIR' || (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const name of names) {
        if (!SHA256_NAME.test(name) || !name.startsWith(prefix)) continue;
        const st = await stat(join(this.#root, prefix, name)).catch(() => null);
        if (st?.isFile()) yield { version: name, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  /**
   * Deletes the blob unless it is pinned, was pinned during this sweep or was written after
   * `cutoffMs` (epoch ms; checked again under the blob's lock: an upload of the same content
   * may have just replaced it). Returns the bytes freed, or null if kept.
   */
  async removeIfUnused(version: string, cutoffMs: number): Promise<number | null> {
    return this.#locks.run(version, async () => {
      if (this.#pins.has(version) || this.#touched?.has(version)) return null;
      const path = this.pathOf(version);
      const st = await stat(path).catch(() => null);
      if (!st || st.mtimeMs > cutoffMs) return null;
      await rm(path, { force: true });
      return st.size;
    });
  }

  async size(blob: BlobRef): Promise<number | null> {
    try {
      return (await stat(this.pathOf(blob.version))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async open(blob: BlobRef): Promise<{ body: Readable; size: number } | null> {
    const size = await this.size(blob);
    return size === null ? null : { body: this.createReadStream(blob.version), size };
  }

  createReadStream(version: string): ReadStream {
    return createReadStream(this.pathOf(version), { highWaterMark: 1 << 20 });
  }
}

export function tooLarge(maxBytes: number): StorageError {
  return new StorageError('PayloadTooLarge', `body exceeds the limit of ${maxBytes} bytes`);
}

/** Passes bytes through while hashing and counting them; fails once the limit is passed. */
export class HashingLimiter extends Transform {
  readonly #hash: HashSession;
  readonly #max: number;
  readonly #overflow: () => StorageError;
  bytes = 0;
  overflowed = false;

  constructor(maxBytes: number, hash: HashSession, overflow: () => StorageError) {
    super();
    this.#max = maxBytes;
    this.#hash = hash;
    this.#overflow = overflow;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#max) {
      // stop reading here: the pipeline ends, the request body is not drained
      this.overflowed = true;
      done(this.#overflow());
      return;
    }
    const behind = this.#hash.update(chunk);
    if (behind !== undefined) behind.then(() => done(null, chunk), done);
    else done(null, chunk);
  }
}
